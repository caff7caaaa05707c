//! `cross-domain`: the gateway serves the Adobe cross-domain policy the element holds at
//! `/crossdomain.xml` (for Flash clients), as APIM does. Global scope only, as in APIM:
//! a request for that path matches no API, so the global plan answers it.
//! Must not touch: any other request.

use roxmltree::Node;

use super::set_body::content;
use super::{policy, Compiled, Kind, INBOUND};
use crate::policy::call::{Behaviour, Call, Facts, Flow, ResponseEdits};
use crate::policy::parse::{elements, no_attributes, Cx, R};
use crate::policy::{Scope, Step};

pub const KIND: Kind = Kind {
    element: "cross-domain",
    sections: INBOUND,
    children: true,
    compile,
};

/// The path Flash asks for the policy.
pub const POLICY_PATH: &str = "/crossdomain.xml";

#[derive(Debug, Clone)]
pub struct CrossDomain {
    /// The policy document, as written inside the element.
    pub document: String,
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &[])?;
    if cx.ctx.scope != Scope::Global {
        return Err(cx.err(n, "<cross-domain> is allowed in the global policy only"));
    }
    if !elements(n).any(|e| e.has_tag_name("cross-domain-policy")) {
        return Err(cx.err(n, "<cross-domain> holds a <cross-domain-policy> document"));
    }
    policy(CrossDomain {
        document: content(n).trim().to_string(),
    })
}

impl Behaviour for CrossDomain {
    fn name(&self) -> &'static str {
        "cross-domain"
    }
    fn facts(&self) -> Facts {
        Facts {
            reads_request: true,
            ..Facts::default()
        }
    }
    fn run(&self, _step: &Step, call: &mut Call) -> Flow {
        let req = call.host.request();
        if !matches!(req.method, "GET" | "HEAD") || req.path != POLICY_PATH {
            return Flow::Continue;
        }
        call.st.resp = self.answer();
        Flow::Respond
    }
}

impl CrossDomain {
    /// The response that serves the policy file.
    pub fn answer(&self) -> ResponseEdits {
        let mut resp = ResponseEdits {
            status: Some(200),
            body: Some(format!("<?xml version=\"1.0\"?>\n{}\n", self.document).into_bytes()),
            ..ResponseEdits::default()
        };
        resp.headers.set(
            "Content-Type",
            Some(vec!["text/x-cross-domain-policy".into()]),
        );
        resp
    }
}
