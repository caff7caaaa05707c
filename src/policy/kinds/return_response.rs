//! `return-response`: ends the pipeline with a response built from its set-status,
//! set-header and set-body children (on-error and outbound are skipped, as in APIM).
//! Must not touch: the backend; nothing is forwarded.

use roxmltree::Node;

use super::set_body::{self, SetBody};
use super::set_header::{apply, Edit, NameRule};
use super::set_status::status_attributes;
use super::{policy, Compiled, Kind, ALL};
use crate::http::forward::HeaderEdits;
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow, ResponseEdits};
use crate::policy::parse::{attr, elements, no_attributes, only_children, Cx, R};
use crate::policy::{Step, Text};

pub const KIND: Kind = Kind {
    element: "return-response",
    sections: ALL,
    children: true,
    compile,
};

#[derive(Debug, Clone)]
pub struct ReturnResponse {
    pub status: Option<(Text, Text)>,
    pub headers: Vec<Edit>,
    pub body: Option<SetBody>,
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["response-variable-name"])?;
    if attr(n, "response-variable-name").is_some() {
        return Err(cx.err(
            n,
            "<return-response>: response-variable-name is not supported",
        ));
    }
    only_children(cx, n, &["set-status", "set-header", "set-body"])?;
    let mut r = ReturnResponse {
        status: None,
        headers: Vec::new(),
        body: None,
    };
    for el in elements(n) {
        match el.tag_name().name() {
            "set-status" => {
                no_attributes(cx, el, &["code", "reason"])?;
                r.status = Some(status_attributes(cx, el)?);
            }
            "set-header" => r.headers.push(Edit::compile(cx, el, NameRule::Header)?),
            _ => r.body = Some(set_body::body(cx, el)?),
        }
    }
    policy(r)
}

impl Behaviour for ReturnResponse {
    fn name(&self) -> &'static str {
        "return-response"
    }
    fn facts(&self) -> Facts {
        let status = self.status.iter().flat_map(|(c, r)| [c, r]);
        let headers = self.headers.iter().flat_map(Edit::texts);
        let facts = Facts::reading(status.chain(headers));
        match &self.body {
            Some(b) => {
                facts
                    | Facts {
                        sets_body: false,
                        ..b.facts()
                    }
            }
            None => facts,
        }
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let (code, reason) = match &self.status {
            Some((c, reason)) => {
                let c = or_fail!(call, step, call.text(c));
                let reason = or_fail!(call, step, call.text(reason));
                (c.trim().parse::<u16>().unwrap_or(200), reason)
            }
            None => (200, String::new()),
        };
        let mut headers = HeaderEdits::default();
        for edit in &self.headers {
            let (name, action, vals) = or_fail!(call, step, edit.resolve(call, NameRule::Header));
            let current = headers.get(&name).cloned().flatten();
            headers.set(&name, apply(action, current, vals));
        }
        let body = match &self.body {
            Some(b) => Some(or_fail!(call, step, b.render(call)).into_bytes()),
            None => None,
        };
        call.st.resp = ResponseEdits {
            status: Some(code),
            reason: (!reason.is_empty()).then_some(reason),
            headers,
            body: Some(body.unwrap_or_default()),
        };
        Flow::Respond
    }
}
