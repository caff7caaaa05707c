//! `set-header`: sets, appends, keeps or deletes a request header (inbound, backend) or
//! a response header (outbound, on-error), values from literals or expressions.
//! Must not touch: the body, the path, the query.

use std::borrow::Cow;

use roxmltree::Node;

use super::{policy, Compiled, Kind, ALL};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow, Phase};
use crate::policy::expr::EvalError;
use crate::policy::parse::{
    exists_action, header_name_ok, no_attributes, required, text_value, values, Cx, R,
};
use crate::policy::{ExistsAction, Setting, Step, Text};

pub const KIND: Kind = Kind {
    element: "set-header",
    sections: ALL,
    children: true,
    compile,
};

#[derive(Debug, Clone)]
pub struct SetHeader(pub Edit);

/// What set-header (also inside return-response) and set-query-parameter hold: a name,
/// an exists-action and values, each a literal or an expression.
#[derive(Debug, Clone)]
pub struct Edit {
    pub name: Text,
    pub action: Setting<ExistsAction>,
    pub values: Vec<Text>,
}

/// What an edit's name must be: a header name (RFC 9110 token) or any non-empty
/// query parameter name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    Header,
    QueryParameter,
}

impl NameRule {
    fn admits(self, name: &str) -> bool {
        match self {
            NameRule::Header => header_name_ok(name),
            NameRule::QueryParameter => !name.is_empty(),
        }
    }
    fn what(self) -> &'static str {
        match self {
            NameRule::Header => "header",
            NameRule::QueryParameter => "query parameter",
        }
    }
}

impl Edit {
    pub(crate) fn compile(cx: &mut Cx, n: Node, rule: NameRule) -> R<Edit> {
        no_attributes(cx, n, &["name", "exists-action"])?;
        let name = text_value(cx, n, required(cx, n, "name")?)?;
        if let Text::Lit(l) = &name {
            if !rule.admits(l) {
                return Err(cx.err(
                    n,
                    format!(
                        "<{}>: '{l}' is not a valid {} name",
                        n.tag_name().name(),
                        rule.what()
                    ),
                ));
            }
        }
        let action = exists_action(cx, n)?;
        let values = values(cx, n)?;
        if values.is_empty() && !matches!(action, Setting::Fixed(ExistsAction::Delete)) {
            return Err(cx.err(
                n,
                format!(
                    "<{}>: at least one <value> is required",
                    n.tag_name().name()
                ),
            ));
        }
        Ok(Edit {
            name,
            action,
            values,
        })
    }

    /// The expressions it runs.
    pub fn texts(&self) -> impl Iterator<Item = &Text> {
        [&self.name]
            .into_iter()
            .chain(self.action.text())
            .chain(&self.values)
    }

    /// Its name (a literal borrowed), action and values for this call.
    pub fn resolve(
        &self,
        call: &mut Call,
        rule: NameRule,
    ) -> Result<(Cow<'_, str>, ExistsAction, Vec<String>), EvalError> {
        let name = call.text_cow(&self.name)?;
        if !rule.admits(&name) {
            return Err(EvalError(
                format!("'{name}' is not a valid {} name", rule.what()).into(),
            ));
        }
        let action = call.setting(&self.action)?;
        let values = call.texts(&self.values)?;
        Ok((name, action, values))
    }
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    policy(SetHeader(Edit::compile(cx, n, NameRule::Header)?))
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
        Facts::reading(self.0.texts())
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let (name, action, vals) = or_fail!(call, step, self.0.resolve(call, NameRule::Header));
        let name = &name;
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
        edits.set(name, apply(action, current, vals));
        Flow::Continue
    }
}
