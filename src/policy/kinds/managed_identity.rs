//! `authentication-managed-identity`: the gateway's own identity's access token for a
//! resource (`resource`, an expression allowed) in `Authorization: Bearer …`, or in
//! `output-token-variable-name` (then the header is left to the policies, as in
//! Microsoft's "set header manually" example). On a self-hosted host the identity is
//! an OAuth 2.0 client (`identity.*` settings) whose tokens the agent fetches ahead
//! (`policy::tokens`); a token not there yet fails the call through on-error, or is
//! skipped with `ignore-error`.
//! Must not touch: the token in any log line.

use roxmltree::Node;

use super::{policy, Compiled, Kind, INBOUND};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow};
use crate::policy::expr::{EvalError, Val};
use crate::policy::parse::{attr, boolean, no_attributes, required, text_value, Cx, R};
use crate::policy::{Step, Text};

pub const KIND: Kind = Kind {
    element: "authentication-managed-identity",
    sections: INBOUND,
    children: false,
    compile,
};

#[derive(Debug, Clone)]
pub struct ManagedIdentity {
    pub resource: Text,
    pub output_variable: Option<String>,
    pub ignore_error: bool,
}

/// Compiles the element (also inside send-request).
pub(crate) fn parse(cx: &mut Cx, n: Node) -> R<ManagedIdentity> {
    no_attributes(
        cx,
        n,
        &[
            "resource",
            "client-id",
            "output-token-variable-name",
            "ignore-error",
        ],
    )?;
    let resource = text_value(cx, n, required(cx, n, "resource")?.trim())?;
    if let Text::Lit(r) = &resource {
        cx.ctx.uses.identities.insert(r.clone());
    }
    Ok(ManagedIdentity {
        resource,
        output_variable: attr(n, "output-token-variable-name").map(str::to_string),
        ignore_error: boolean(cx, n, "ignore-error", false)?,
    })
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    policy(parse(cx, n)?)
}

impl ManagedIdentity {
    /// This call's token (a request for it is made when there is none).
    pub(crate) fn token(&self, call: &mut Call) -> Result<Option<String>, EvalError> {
        let resource = call.text(&self.resource)?;
        match call.counters.tokens.get(&resource, call.now_ms) {
            Some(t) => Ok(Some(t.to_string())),
            None => {
                if call.counters.tokens.want(&resource, call.now_ms) {
                    log::warn!("no access token for resource {resource} yet: asked the gateway's identity for one");
                }
                Ok(None)
            }
        }
    }
}

impl Behaviour for ManagedIdentity {
    fn name(&self) -> &'static str {
        "authentication-managed-identity"
    }
    fn facts(&self) -> Facts {
        Facts::reading([&self.resource])
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let Some(token) = or_fail!(call, step, self.token(call)) else {
            if self.ignore_error {
                return Flow::Continue;
            }
            call.st.answer(500, "Internal server error");
            return call.st.fail(
                step,
                "authentication-managed-identity",
                "TokenNotAvailable",
                "The gateway's identity has no access token for this resource yet.",
            );
        };
        match &self.output_variable {
            Some(var) => call.st.set_var(var, Val::Str(token.into())),
            None => call
                .st
                .req
                .headers
                .set("Authorization", Some(vec![format!("Bearer {token}")])),
        }
        Flow::Continue
    }
}
