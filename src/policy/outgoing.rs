//! Requests the policies send themselves (`send-request`, `send-one-way-request`):
//! what a policy asks for (`Outgoing`), where its answer goes (`ReplyTo`), how a
//! sub-request can end (`Outcome`, `SubFailure`), and how an answer lands in the
//! call's state (`State::receive`). The loop's side (connecting, writing, reading,
//! bounds) is `crate::proxy::sub`; the policies only describe and receive.
//! Must not touch: sockets, DNS, the config's data model.

use std::rc::Rc;

use super::call::{Flow, LastError, State};
use super::expr::message::Message;
use super::expr::Val;

/// A request a policy sends.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub method: String,
    /// Absolute `http://` or `https://` URL.
    pub url: String,
    /// Header lines to send (Host, Content-Length and hop-by-hop headers are the
    /// sender's).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_secs: u64,
    /// Where the response goes; none for `send-one-way-request`.
    pub reply: Option<ReplyTo>,
    /// The client certificate to present (authentication-certificate inside it).
    pub client_tls: Option<super::call::ClientTls>,
    /// The HTTP proxy it goes through (proxy inside it).
    pub proxy: Option<super::call::ProxyVia>,
}

/// Where a `send-request`'s outcome goes.
#[derive(Debug, Clone)]
pub struct ReplyTo {
    /// `response-variable-name`.
    pub variable: String,
    /// `ignore-error`: a failure leaves the variable null and the call goes on.
    pub ignore_error: bool,
    /// The policy as `context.LastError` names it (source, scope, section, id).
    pub origin: LastError,
}

/// How a sub-request ended.
#[derive(Debug)]
pub enum Outcome {
    Received(Message),
    Failed(SubFailure),
}

/// Why a sub-request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubFailure {
    /// The URL is not an absolute http(s) URL the gateway can call.
    BadUrl(String),
    /// No address is known for the host (the agent resolves the names policies and
    /// backends use; a name only an expression computes is not looked up on the loop).
    Unresolved(String),
    /// Refused, reset, or the TLS handshake failed.
    Connect,
    /// No response within the policy's timeout.
    Timeout,
    /// The response was not HTTP the gateway can frame.
    BadResponse(&'static str),
    /// The response body is larger than `limits.send_request.response.max`.
    TooLarge(u64),
    /// The gateway had no room for another connection or buffer.
    Exhausted,
}

impl SubFailure {
    /// `context.LastError.Reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            SubFailure::Timeout => "Timeout",
            SubFailure::BadUrl(_) => "InvalidUrl",
            SubFailure::TooLarge(_) => "ResponseTooLarge",
            _ => "BackendConnectionFailure",
        }
    }
    /// `context.LastError.Message`.
    pub fn message(&self) -> String {
        match self {
            SubFailure::BadUrl(why) => format!("The request URL is not valid: {why}"),
            SubFailure::Unresolved(host) => {
                format!("The host name '{host}' could not be resolved")
            }
            SubFailure::Connect => {
                "Error occured while calling the service: the connection failed".into()
            }
            SubFailure::Timeout => "The request timed out before a response arrived".into(),
            SubFailure::BadResponse(why) => format!("The response is not valid HTTP ({why})"),
            SubFailure::TooLarge(max) => {
                format!("The response is larger than the {max} bytes a policy may receive")
            }
            SubFailure::Exhausted => "The gateway has no room for another request now".into(),
        }
    }
}

impl State {
    /// Lands a send-request's outcome: the response in its variable, or null when the
    /// error is ignored; otherwise the call fails (on-error runs) with the policy as
    /// `context.LastError`'s source.
    pub fn receive(&mut self, to: ReplyTo, outcome: Outcome) -> Flow {
        match outcome {
            Outcome::Received(m) => {
                self.set_var(&to.variable, Val::Response(Rc::new(m)));
                Flow::Continue
            }
            Outcome::Failed(_) if to.ignore_error => {
                self.set_var(&to.variable, Val::Null);
                Flow::Continue
            }
            Outcome::Failed(f) => {
                self.answer(500, "Internal server error");
                self.last_error = Some(Box::new(LastError {
                    reason: f.reason().to_string(),
                    message: f.message(),
                    ..to.origin
                }));
                Flow::Error
            }
        }
    }
}

/// One-way requests waiting for the loop to send them: bounded, and a request that
/// finds it full is dropped and counted (never a wait).
#[derive(Debug, Default)]
pub struct Outbox {
    queue: Vec<Outgoing>,
    /// One-way requests dropped because the outbox was full, since the start.
    pub dropped: u64,
}

/// Most one-way requests waiting in the outbox between two turns of the loop.
pub const OUTBOX_MAX: usize = 256;

impl Outbox {
    /// Queues `o`; false (and counted) when the outbox is full.
    pub fn push(&mut self, o: Outgoing) -> bool {
        if self.queue.len() >= OUTBOX_MAX {
            self.dropped += 1;
            return false;
        }
        self.queue.push(o);
        true
    }
    /// Everything queued, oldest first.
    pub fn take(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.queue)
    }
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}
