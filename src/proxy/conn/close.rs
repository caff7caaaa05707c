//! Why a client connection closes, as values (ureq-proto's `CloseReason`): decided where
//! the reason is known, carried with the answer, and named in the debug log when the
//! connection closes. `None` in `Client::close` means it stays open for the next request.
//! Must not touch: sockets, buffers.

use crate::http::Failure;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// `Connection: close`, or HTTP/1.0 without keep-alive.
    ClientAsked,
    /// The gateway is shutting down.
    Draining,
    /// The request's body was not read (answered before it, or still arriving when the
    /// answer ended): the next bytes on the connection cannot be trusted as a request.
    UnreadBody,
    /// The backend's body ends with its connection, so the client's must end too.
    BodyUntilClose,
    /// A chunked body relayed to an HTTP/1.0 client ends with the connection.
    Dechunked,
    /// The request's framing failed or the client was too slow (`Failure::reason`).
    Failure(&'static str),
    /// The client closed or reset the connection, or a write to it failed.
    ClientGone,
    /// The backend broke its body's framing after the head went out.
    BackendFraming,
    /// The backend closed or failed before its body was complete: the client must not
    /// take the truncated body as whole.
    BackendTruncated,
    /// No data for longer than the idle or header timeout.
    Timeout,
}

impl CloseReason {
    /// The reason as the log spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientAsked => "client_asked",
            CloseReason::Draining => "draining",
            CloseReason::UnreadBody => "request_body_unread",
            CloseReason::BodyUntilClose => "response_until_close",
            CloseReason::Dechunked => "dechunked_for_http10",
            CloseReason::Failure(reason) => reason,
            CloseReason::ClientGone => "client_gone",
            CloseReason::BackendFraming => "backend_framing_error",
            CloseReason::BackendTruncated => "backend_truncated_body",
            CloseReason::Timeout => "timeout",
        }
    }

    /// What a request's own head says: its `Connection` (or HTTP/1.0's default), and
    /// whether the gateway is draining.
    pub fn after_request(keep_alive: bool, draining: bool) -> Option<CloseReason> {
        (!keep_alive)
            .then_some(CloseReason::ClientAsked)
            .or(CloseReason::draining(draining))
    }

    /// `Draining` while the gateway shuts down.
    pub fn draining(draining: bool) -> Option<CloseReason> {
        draining.then_some(CloseReason::Draining)
    }

    /// `UnreadBody` when the request's body was not (wholly) read.
    pub fn unread_body(unread: bool) -> Option<CloseReason> {
        unread.then_some(CloseReason::UnreadBody)
    }

    /// A failure that leaves the connection unusable.
    pub fn failure(f: Failure) -> Option<CloseReason> {
        f.closes_connection()
            .then_some(CloseReason::Failure(f.reason()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_found_is_the_one_kept() {
        assert_eq!(CloseReason::after_request(true, false), None);
        assert_eq!(
            CloseReason::after_request(false, true),
            Some(CloseReason::ClientAsked)
        );
        assert_eq!(
            CloseReason::after_request(true, true).or(CloseReason::unread_body(true)),
            Some(CloseReason::Draining)
        );
        assert_eq!(
            CloseReason::after_request(true, false).or(CloseReason::unread_body(true)),
            Some(CloseReason::UnreadBody)
        );
    }

    #[test]
    fn only_failures_that_break_framing_or_time_close() {
        assert_eq!(CloseReason::failure(Failure::BackendConnect), None);
        let head = CloseReason::failure(Failure::HeadTooLarge);
        assert_eq!(
            head.map(CloseReason::as_str),
            Some(Failure::HeadTooLarge.reason())
        );
        assert_eq!(CloseReason::Timeout.as_str(), "timeout");
    }
}
