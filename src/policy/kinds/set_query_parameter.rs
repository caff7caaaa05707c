//! `set-query-parameter`: sets, appends, keeps or deletes a query parameter of the
//! request.
//! Must not touch: headers, the body, the path.

use roxmltree::Node;

use super::{policy, Compiled, Kind, REQUEST};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow};
use crate::policy::parse::{exists_action, no_attributes, required, values, Cx, R};
use crate::policy::request::parse_query;
use crate::policy::{ExistsAction, Step, Text};

pub const KIND: Kind = Kind {
    element: "set-query-parameter",
    sections: REQUEST,
    children: true,
    compile,
};

#[derive(Debug, Clone)]
pub struct SetQueryParameter {
    pub name: String,
    pub action: ExistsAction,
    pub values: Vec<Text>,
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["name", "exists-action"])?;
    let name = required(cx, n, "name")?.to_string();
    let action = exists_action(cx, n)?;
    let values = values(cx, n)?;
    if values.is_empty() && action != ExistsAction::Delete {
        return Err(cx.err(n, "<set-query-parameter>: at least one <value> is required"));
    }
    policy(SetQueryParameter {
        name,
        action,
        values,
    })
}

impl Behaviour for SetQueryParameter {
    fn name(&self) -> &'static str {
        "set-query-parameter"
    }
    fn facts(&self) -> Facts {
        Facts::reading(&self.values)
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let vals = or_fail!(call, step, call.texts(&self.values));
        let original = call.host.request().query;
        let q = call
            .st
            .req
            .query
            .get_or_insert_with(|| parse_query(original));
        let name = &self.name;
        let exists = q.iter().any(|(k, _)| k == name);
        match self.action {
            ExistsAction::Override => {
                // the new values take the place of the first old one (the query keeps
                // its order), or go at the end when the parameter was absent
                let at = q.iter().position(|(k, _)| k == name).unwrap_or(q.len());
                q.retain(|(k, _)| k != name);
                let at = at.min(q.len());
                q.splice(at..at, vals.into_iter().map(|v| (name.clone(), v)));
            }
            ExistsAction::Skip if exists => {}
            ExistsAction::Skip | ExistsAction::Append => {
                q.extend(vals.into_iter().map(|v| (name.clone(), v)))
            }
            ExistsAction::Delete => q.retain(|(k, _)| k != name),
        }
        Flow::Continue
    }
}
