//! `set-header`: sets, appends, keeps or deletes a request header (inbound, backend) or
//! a response header (outbound, on-error), values from literals or expressions.
//! Must not touch: the body, the path, the query.

use roxmltree::Node;

use super::{policy, Compiled, Kind, ALL};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow, Phase};
use crate::policy::parse::{exists_action, header_name_ok, no_attributes, required, values, Cx, R};
use crate::policy::{ExistsAction, Step, Text};

pub const KIND: Kind = Kind {
    element: "set-header",
    sections: ALL,
    children: true,
    compile,
};

#[derive(Debug, Clone)]
pub struct SetHeader {
    pub name: String,
    pub action: ExistsAction,
    pub values: Vec<Text>,
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["name", "exists-action"])?;
    let name = required(cx, n, "name")?;
    if !header_name_ok(name) {
        return Err(cx.err(
            n,
            format!("<set-header>: '{name}' is not a valid header name"),
        ));
    }
    let action = exists_action(cx, n)?;
    let values = values(cx, n)?;
    if values.is_empty() && action != ExistsAction::Delete {
        return Err(cx.err(n, "<set-header>: at least one <value> is required"));
    }
    policy(SetHeader {
        name: name.to_string(),
        action,
        values,
    })
}

/// A header's values after an exists-action: `current` (None = absent) and the new
/// `values`; None = delete.
pub fn apply(
    action: ExistsAction,
    current: Option<Vec<String>>,
    values: Vec<String>,
) -> Option<Vec<String>> {
    match action {
        ExistsAction::Override => Some(values),
        ExistsAction::Skip => Some(current.unwrap_or(values)),
        ExistsAction::Append => {
            let mut c = current.unwrap_or_default();
            c.extend(values);
            Some(c)
        }
        ExistsAction::Delete => None,
    }
}

impl Behaviour for SetHeader {
    fn name(&self) -> &'static str {
        "set-header"
    }
    fn facts(&self) -> Facts {
        Facts::reading(&self.values)
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let vals = or_fail!(call, step, call.texts(&self.values));
        let name = &self.name;
        let (edits, original) = match call.phase {
            Phase::Request => (
                &mut call.st.req.headers,
                call.host.request().headers.get(name),
            ),
            Phase::Response => {
                let orig = call.host.response().and_then(|r| r.headers.get(name));
                (&mut call.st.resp.headers, orig)
            }
        };
        let current: Option<Vec<String>> = match edits.get(name) {
            Some(v) => v.clone(),
            None => original.map(|o| vec![o.into_owned()]),
        };
        edits.set(name, apply(self.action, current, vals));
        Flow::Continue
    }
}
