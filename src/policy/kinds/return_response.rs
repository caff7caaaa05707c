//! `return-response`: ends the pipeline with a response built from its set-status,
//! set-header and set-body children (on-error and outbound are skipped, as in APIM),
//! over the response a send-request stored in `response-variable-name` when it names
//! one.
//! Must not touch: the backend; nothing is forwarded.

use roxmltree::Node;

use super::set_body::{self, SetBody};
use super::set_header::{apply, Edit, NameRule};
use super::set_status::status_attributes;
use super::{policy, Compiled, Kind, ALL};
use crate::http::forward::{is_managed_header, HeaderEdits};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow, ResponseEdits};
use crate::policy::expr::message::Message;
use crate::policy::expr::{EvalError, Val};
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
    /// `response-variable-name`: the IResponse the answer starts from.
    pub variable: Option<String>,
    pub status: Option<(Text, Text)>,
    pub headers: Vec<Edit>,
    pub body: Option<SetBody>,
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["response-variable-name"])?;
    only_children(cx, n, &["set-status", "set-header", "set-body"])?;
    let mut r = ReturnResponse {
        variable: attr(n, "response-variable-name")
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string),
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
        let stored = match &self.variable {
            Some(name) => Some(or_fail!(call, step, stored_response(call, name))),
            None => None,
        };
        let (code, reason) = match (&self.status, &stored) {
            (Some((c, reason)), _) => {
                let c = or_fail!(call, step, call.text(c));
                let reason = or_fail!(call, step, call.text(reason));
                (c.trim().parse::<u16>().unwrap_or(200), reason)
            }
            (None, Some(m)) => (m.status, m.reason.clone()),
            (None, None) => (200, String::new()),
        };
        let mut headers = HeaderEdits::default();
        if let Some(m) = &stored {
            for (name, value) in m.headers.iter().filter(|(n, _)| !is_managed_header(n)) {
                headers.set(name, Some(vec![value.clone()]));
            }
        }
        for edit in &self.headers {
            let (name, action, vals) = or_fail!(call, step, edit.resolve(call, NameRule::Header));
            let current = headers.get(&name).cloned().flatten();
            headers.set(&name, apply(action, current, vals));
        }
        let body = match (&self.body, &stored) {
            (Some(b), _) => Some(or_fail!(call, step, b.render(call)).into_bytes()),
            (None, Some(m)) if !m.consumed.get() => Some(m.body.clone()),
            _ => None,
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

/// The IResponse in variable `name` (send-request's response).
fn stored_response(call: &Call, name: &str) -> Result<std::rc::Rc<Message>, EvalError> {
    match call.st.vars.iter().find(|(k, _)| k == name) {
        Some((_, Val::Response(m))) => Ok(std::rc::Rc::clone(m)),
        Some((_, other)) => Err(EvalError(
            format!(
                "response-variable-name: the variable '{name}' holds a {}, not a response",
                other.type_name()
            )
            .into(),
        )),
        None => Err(EvalError(
            format!("response-variable-name: there is no variable '{name}'").into(),
        )),
    }
}
