//! APIM's IResponse as expressions see it: the response a `send-request` stored in a
//! variable (`((IResponse)context.Variables["r"]).Body.As<JObject>()`), with its
//! StatusCode, StatusReason, Headers and a body that a read without `preserveContent`
//! consumes, as the call's own bodies are.
//! Must not touch: how the response was fetched (the proxy's sub-requests), the
//! call's request and response (those are `Env`'s).

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::value::Val;
use super::EvalError;

/// A response received by a policy's own request.
#[derive(Debug)]
pub struct Message {
    pub status: u16,
    pub reason: String,
    /// Header names as received, each with its values joined by ", ".
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// A read without `preserveContent` took the body: later reads see none.
    pub consumed: Cell<bool>,
}

impl Message {
    pub fn new(
        status: u16,
        reason: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Message {
        Message {
            status,
            reason,
            headers,
            body,
            consumed: Cell::new(false),
        }
    }
}

/// A member of an IResponse other than its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    StatusCode,
    StatusReason,
    Headers,
}

impl Part {
    pub fn named(name: &str) -> Option<Part> {
        Some(match name {
            "StatusCode" => Part::StatusCode,
            "StatusReason" => Part::StatusReason,
            "Headers" => Part::Headers,
            _ => return None,
        })
    }
}

/// The message a value holds (null: `safe` access gives null, otherwise C#'s
/// NullReferenceException).
pub(super) fn of<'v>(v: &'v Val, what: &str) -> Result<Option<&'v Rc<Message>>, EvalError> {
    match v {
        Val::Response(m) => Ok(Some(m)),
        Val::Null => Ok(None),
        other => Err(EvalError(Cow::Owned(format!(
            "'{what}' is a member of IResponse, not of {}",
            other.type_name()
        )))),
    }
}

/// StatusCode, StatusReason or Headers of a message.
pub(super) fn part(m: &Message, part: Part) -> Val<'static> {
    match part {
        Part::StatusCode => Val::Int(i64::from(m.status)),
        Part::StatusReason => Val::Str(Cow::Owned(m.reason.clone())),
        Part::Headers => Val::Dict(Rc::new(RefCell::new(
            m.headers
                .iter()
                .map(|(k, v)| (k.clone(), Val::Str(Cow::Owned(v.clone()))))
                .collect(),
        ))),
    }
}

/// The body's bytes for a read (none once consumed); a read without `preserve`
/// consumes it.
pub(super) fn take_body(m: &Message, preserve: bool) -> Option<&[u8]> {
    if m.consumed.get() {
        return None;
    }
    if !preserve {
        m.consumed.set(true);
    }
    Some(&m.body)
}
