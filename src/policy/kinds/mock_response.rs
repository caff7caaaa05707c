//! `mock-response`: answers from the operation's response examples (the status asked
//! for, else the first 2xx, else 200; the content type asked for, else the first).
//! Must not touch: the backend; nothing is forwarded.

use roxmltree::Node;

use super::{policy, Compiled, Kind, ALL};
use crate::policy::call::{Behaviour, Call, Facts, Flow, ResponseEdits};
use crate::policy::parse::{attr, no_attributes, number, Cx, R};
use crate::policy::Step;

pub const KIND: Kind = Kind {
    element: "mock-response",
    sections: ALL,
    children: false,
    compile,
};

#[derive(Debug, Clone)]
pub struct MockResponse {
    pub status: Option<u16>,
    pub content_type: Option<String>,
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["status-code", "content-type"])?;
    let status = match attr(n, "status-code") {
        None => None,
        Some(_) => {
            let c = number(cx, n, "status-code", None)?;
            if !(100..=599).contains(&c) {
                return Err(cx.err(n, "<mock-response>: status-code must be 100..599"));
            }
            Some(c as u16)
        }
    };
    policy(MockResponse {
        status,
        content_type: attr(n, "content-type").map(str::to_string),
    })
}

impl Behaviour for MockResponse {
    fn name(&self) -> &'static str {
        "mock-response"
    }
    fn facts(&self) -> Facts {
        Facts::default()
    }
    fn run(&self, _step: &Step, call: &mut Call) -> Flow {
        let (code, ct, body) = call
            .host
            .mock_example(self.status, self.content_type.as_deref());
        let mut resp = ResponseEdits {
            status: Some(code),
            body: Some(body.as_bytes().to_vec()),
            ..ResponseEdits::default()
        };
        if let Some(ct) = ct {
            resp.headers.set("Content-Type", Some(vec![ct.to_string()]));
        }
        call.st.resp = resp;
        Flow::Respond
    }
}
