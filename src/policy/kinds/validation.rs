//! What the validate-* policies share: the actions (ignore, prevent, detect), a found
//! problem in APIM's error format (Name, Type, ValidationRule, Details, Action), and how
//! a run ends: every problem goes to the errors variable (a JArray of JObjects) and, at
//! debug level, to the log; a `prevent` problem answers 400 in inbound (the public
//! message) or 502 elsewhere (an internal error, as APIM hides details of responses)
//! and goes through on-error with `context.LastError` (Reason "Bad request" or
//! "Response not allowed", Message the details).
//! Must not touch: what is validated (each policy), the schemas (policy::schema).

use roxmltree::Node;

use crate::policy::call::{Call, Flow, Phase};
use crate::policy::expr::{Json, Val};
use crate::policy::parse::{attr, Cx, R};
use crate::policy::Step;

/// APIM's public text for a response that failed validation.
pub const INTERNAL: &str =
    "The request could not be processed due to an internal error. Contact the API owner.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Ignore,
    Prevent,
    Detect,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Ignore => "ignore",
            Action::Prevent => "prevent",
            Action::Detect => "detect",
        }
    }
}

/// An action attribute: required (`default` None) or with a default.
pub fn action(cx: &Cx, n: Node, name: &str, default: Option<Action>) -> R<Action> {
    match (attr(n, name), default) {
        (Some("ignore"), _) => Ok(Action::Ignore),
        (Some("prevent"), _) => Ok(Action::Prevent),
        (Some("detect"), _) => Ok(Action::Detect),
        (Some(other), _) => Err(cx.err(
            n,
            format!(
                "<{}>: {name} must be ignore, prevent or detect, not '{other}'",
                n.tag_name().name()
            ),
        )),
        (None, Some(d)) => Ok(d),
        (None, None) => Err(cx.err(n, format!("<{}>: {name} is required", n.tag_name().name()))),
    }
}

/// An optional action attribute (a child's, overriding its parent's).
pub fn action_opt(cx: &Cx, n: Node, name: &str) -> R<Option<Action>> {
    match attr(n, name) {
        None => Ok(None),
        Some(_) => action(cx, n, name, None).map(Some),
    }
}

/// One problem, as APIM reports it.
#[derive(Debug, Clone)]
pub struct Found {
    pub name: String,
    pub kind: &'static str,
    pub rule: &'static str,
    pub details: String,
    /// What the client is told (requests); responses always get `INTERNAL`.
    pub public: String,
    pub action: Action,
}

/// The status of the response in hand (a policy's, else the backend's).
pub fn response_status(call: &Call) -> u16 {
    call.st
        .resp
        .status
        .or_else(|| call.host.response().map(|r| r.status))
        .unwrap_or(200)
}

/// Ends a validation run with what it found.
pub fn conclude(
    step: &Step,
    call: &mut Call,
    policy: &str,
    errors_var: Option<&str>,
    found: Vec<Found>,
) -> Flow {
    let found: Vec<Found> = found
        .into_iter()
        .filter(|f| f.action != Action::Ignore)
        .collect();
    if let Some(var) = errors_var {
        let list = found
            .iter()
            .map(|f| {
                let o = Json::new_object();
                for (k, v) in [
                    ("Name", f.name.as_str()),
                    ("Type", f.kind),
                    ("ValidationRule", f.rule),
                    ("Details", f.details.as_str()),
                    ("Action", f.action.as_str()),
                ] {
                    let _ = o.set(k, Json::Str(v.to_string()));
                }
                o
            })
            .collect();
        call.st.set_var(var, Val::Json(Json::new_array(list)));
    }
    for f in &found {
        log::debug!(
            "{policy}: {} {} {}: {}",
            f.kind,
            f.rule,
            f.action.as_str(),
            f.details
        );
    }
    let Some(first) = found.iter().find(|f| f.action == Action::Prevent) else {
        return Flow::Continue;
    };
    let (status, public, reason) = match (call.phase, step.section) {
        (Phase::Request, crate::policy::Section::Inbound) => {
            (400, first.public.as_str(), "Bad request")
        }
        _ => (502, INTERNAL, "Response not allowed"),
    };
    let details = first.details.clone();
    call.st.answer(status, public);
    call.st.fail(step, policy, reason, &details)
}
