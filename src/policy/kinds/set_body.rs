//! `set-body`: replaces the request body (inbound, backend) or the response body
//! (outbound, on-error). The gateway reads a request body it replaces first.
//! Must not touch: headers (the connection frames the new body).

use roxmltree::Node;

use super::{policy, Compiled, Kind, ALL};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow, Phase};
use crate::policy::parse::{attr, element_text, no_attributes, text_value, Cx, R};
use crate::policy::{Step, Text};

pub const KIND: Kind = Kind {
    element: "set-body",
    sections: ALL,
    children: false,
    compile,
};

#[derive(Debug, Clone)]
pub struct SetBody(pub Text);

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["template", "xsi-nil"])?;
    if attr(n, "template").is_some() {
        return Err(cx.err(n, "<set-body>: template=\"liquid\" is not supported"));
    }
    if attr(n, "xsi-nil").is_some() {
        return Err(cx.err(n, "<set-body>: xsi-nil is not supported"));
    }
    policy(SetBody(text_value(cx, n, element_text(n))?))
}

impl Behaviour for SetBody {
    fn name(&self) -> &'static str {
        "set-body"
    }
    fn facts(&self) -> Facts {
        Facts {
            sets_body: true,
            ..Facts::reading([&self.0])
        }
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let body = or_fail!(call, step, call.text(&self.0)).into_bytes();
        match call.phase {
            Phase::Request => call.st.req.body = Some(body),
            Phase::Response => call.st.resp.body = Some(body),
        }
        Flow::Continue
    }
}
