//! `set-query-parameter`: sets, appends, keeps or deletes a query parameter of the
//! request.
//! Must not touch: headers, the body, the path.

use roxmltree::Node;

use super::set_header::{Edit, NameRule};
use super::{policy, Compiled, Kind, REQUEST};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow};
use crate::policy::parse::{Cx, R};
use crate::policy::request::parse_query;
use crate::policy::{ExistsAction, Step};

pub const KIND: Kind = Kind {
    element: "set-query-parameter",
    sections: REQUEST,
    children: true,
    compile,
};

#[derive(Debug, Clone)]
pub struct SetQueryParameter(pub Edit);

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    policy(SetQueryParameter(Edit::compile(
        cx,
        n,
        NameRule::QueryParameter,
    )?))
}

impl Behaviour for SetQueryParameter {
    fn name(&self) -> &'static str {
        "set-query-parameter"
    }
    fn facts(&self) -> Facts {
        Facts::reading(self.0.texts())
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let (name, action, vals) =
            or_fail!(call, step, self.0.resolve(call, NameRule::QueryParameter));
        let original = call.host.request().query;
        let q = call
            .st
            .req
            .query
            .get_or_insert_with(|| parse_query(original));
        let name = &name;
        let exists = q.iter().any(|(k, _)| k == name);
        match action {
            ExistsAction::Override => {
                // the new values take the place of the first old one (the query keeps
                // its order), or go at the end when the parameter was absent
                let at = q.iter().position(|(k, _)| k == name).unwrap_or(q.len());
                q.retain(|(k, _)| k != name);
                let at = at.min(q.len());
                q.splice(at..at, vals.into_iter().map(|v| (name.to_string(), v)));
            }
            ExistsAction::Skip if exists => {}
            ExistsAction::Skip | ExistsAction::Append => {
                q.extend(vals.into_iter().map(|v| (name.to_string(), v)))
            }
            ExistsAction::Delete => q.retain(|(k, _)| k != name),
        }
        Flow::Continue
    }
}
