//! `validate-status-code`: a response whose status the operation's definition does not
//! list is handled by unspecified-status-code-action; `<status-code code action>` sets
//! the action for one code whether listed or not.
//! Must not touch: the response (it is read, never changed).

use roxmltree::Node;

use super::validation::{action, conclude, response_status, Action, Found, INTERNAL};
use super::{policy, Compiled, Kind, NOT_BACKEND};
use crate::policy::call::{Behaviour, Call, Facts, Flow};
use crate::policy::parse::{attr, elements, no_attributes, number, only_children, Cx, R};
use crate::policy::Step;

pub const KIND: Kind = Kind {
    element: "validate-status-code",
    sections: NOT_BACKEND,
    children: true,
    compile,
};

#[derive(Debug, Clone)]
pub struct ValidateStatusCode {
    unspecified: Action,
    errors_var: Option<String>,
    codes: Vec<(u16, Action)>,
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(
        cx,
        n,
        &["unspecified-status-code-action", "errors-variable-name"],
    )?;
    only_children(cx, n, &["status-code"])?;
    let mut codes = Vec::new();
    for c in elements(n) {
        no_attributes(cx, c, &["code", "action"])?;
        let code = number(cx, c, "code", None)?;
        if !(100..=599).contains(&code) {
            return Err(cx.err(c, "<status-code>: code must be 100..599"));
        }
        codes.push((code as u16, action(cx, c, "action", None)?));
    }
    policy(ValidateStatusCode {
        unspecified: action(cx, n, "unspecified-status-code-action", None)?,
        errors_var: attr(n, "errors-variable-name").map(str::to_string),
        codes,
    })
}

impl Behaviour for ValidateStatusCode {
    fn name(&self) -> &'static str {
        KIND.element
    }
    fn facts(&self) -> Facts {
        Facts::default()
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let status = response_status(call);
        let (contract, _) = call.host.contract();
        let action = match self.codes.iter().find(|(c, _)| *c == status) {
            Some((_, a)) => *a,
            None if contract.responses.iter().any(|r| r.status == status) => Action::Ignore,
            None => self.unspecified,
        };
        let found = vec![Found {
            name: status.to_string(),
            kind: "StatusCode",
            rule: "Unspecified",
            details: format!("Response status code {status} is not allowed."),
            public: INTERNAL.to_string(),
            action,
        }];
        conclude(step, call, KIND.element, self.errors_var.as_deref(), found)
    }
}
