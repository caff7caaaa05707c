//! `find-and-replace`: replaces every occurrence of a string in the body (the gateway
//! reads the whole body first).
//! Must not touch: headers.

use roxmltree::Node;

use super::{policy, Compiled, Kind, ALL};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow, Phase};
use crate::policy::parse::{no_attributes, required, text_value, Cx, R};
use crate::policy::{Step, Text};

pub const KIND: Kind = Kind {
    element: "find-and-replace",
    sections: ALL,
    children: false,
    compile,
};

#[derive(Debug, Clone)]
pub struct FindAndReplace {
    pub from: Text,
    pub to: Text,
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["from", "to"])?;
    let from = text_value(cx, n, required(cx, n, "from")?)?;
    if matches!(&from, Text::Lit(f) if f.is_empty()) {
        return Err(cx.err(n, "<find-and-replace>: 'from' must not be empty"));
    }
    policy(FindAndReplace {
        from,
        to: text_value(cx, n, required(cx, n, "to")?)?,
    })
}

impl Behaviour for FindAndReplace {
    fn name(&self) -> &'static str {
        "find-and-replace"
    }
    fn facts(&self) -> Facts {
        Facts {
            needs_body: true,
            ..Facts::reading([&self.from, &self.to])
        }
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let from = or_fail!(call, step, call.text(&self.from));
        let to = or_fail!(call, step, call.text(&self.to));
        let body = match call.phase {
            Phase::Request => &mut call.st.req.body,
            Phase::Response => &mut call.st.resp.body,
        };
        if let Some(b) = body {
            if !from.is_empty() {
                let text = String::from_utf8_lossy(b).replace(&from, &to);
                *b = text.into_bytes();
            }
        }
        Flow::Continue
    }
}
