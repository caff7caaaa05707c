//! Every way a request can fail, classified by source, and the one place that maps a
//! failure to a status, an APIM-style JSON message and a log reason. The gateway's own
//! answers never carry internal detail.
//! Must not touch: sockets, routing, config.

/// Who is probably at fault (for logs and metrics), as pingora classifies errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Client,
    Backend,
    Gateway,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    // ---- client (downstream)
    /// Malformed or ambiguous request; the text names the rule that was broken (for the log).
    BadRequest(&'static str),
    UriTooLong,
    HeadTooLarge,
    BodyTooLarge,
    HeadTimeout,
    BodyTimeout,
    ExpectationFailed,
    OperationNotFound,
    MissingSubscriptionKey,
    InvalidSubscriptionKey,
    // ---- backend (upstream)
    BackendUnresolved,
    BackendConnect,
    BackendConnectTimeout,
    BackendReset,
    /// An `https://` backend's TLS handshake failed (untrusted certificate, wrong name,
    /// no common protocol).
    BackendTls,
    BackendTimeout,
    BackendBadResponse(&'static str),
    // ---- gateway
    NoConfig,
    /// A local resource ran out (the text names it): the buffer budget, backend
    /// connection slots. Not the backend's fault, so never retried as if it were.
    Exhausted(&'static str),
    /// A bug: state the gateway expected was not there (the text says which). Logged
    /// as such, never blamed on the client or the backend.
    Internal(&'static str),
}

impl Failure {
    /// The backend could not be reached, reset the connection or did not answer in time.
    pub fn is_backend_transport(self) -> bool {
        matches!(
            self,
            Failure::BackendConnect
                | Failure::BackendConnectTimeout
                | Failure::BackendReset
                | Failure::BackendTls
                | Failure::BackendTimeout
        )
    }

    pub fn status(self) -> u16 {
        match self {
            Failure::BadRequest(_) => 400,
            Failure::UriTooLong => 414,
            Failure::HeadTooLarge => 431,
            Failure::BodyTooLarge => 413,
            Failure::HeadTimeout | Failure::BodyTimeout => 408,
            Failure::ExpectationFailed => 417,
            Failure::OperationNotFound => 404,
            Failure::MissingSubscriptionKey | Failure::InvalidSubscriptionKey => 401,
            Failure::BackendUnresolved
            | Failure::BackendConnect
            | Failure::BackendConnectTimeout
            | Failure::BackendReset
            | Failure::BackendTls
            | Failure::BackendBadResponse(_) => 502,
            Failure::BackendTimeout => 504,
            Failure::NoConfig | Failure::Exhausted(_) => 503,
            Failure::Internal(_) => 500,
        }
    }

    /// The `message` of the JSON body, as Azure API Management words it where it has one.
    pub fn message(self) -> &'static str {
        match self {
            Failure::BadRequest(_) => "Bad request",
            Failure::UriTooLong => "Request URI too long",
            Failure::HeadTooLarge => "Request header fields too large",
            Failure::BodyTooLarge => "Request entity too large",
            Failure::HeadTimeout | Failure::BodyTimeout => "Request timeout",
            Failure::ExpectationFailed => "Expectation failed",
            Failure::OperationNotFound => "Resource not found",
            Failure::MissingSubscriptionKey => {
                "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API."
            }
            Failure::InvalidSubscriptionKey => {
                "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."
            }
            Failure::BackendUnresolved | Failure::BackendConnect | Failure::BackendConnectTimeout => {
                "Backend service unavailable"
            }
            Failure::BackendReset | Failure::BackendTls | Failure::BackendBadResponse(_) => {
                "Bad gateway"
            }
            Failure::BackendTimeout => "Backend service timed out",
            Failure::NoConfig => "Gateway has no configuration yet",
            Failure::Exhausted(_) => "Service unavailable",
            Failure::Internal(_) => "Internal server error",
        }
    }

    /// Short machine-readable reason for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Failure::BadRequest(why) => why,
            Failure::UriTooLong => "uri_too_long",
            Failure::HeadTooLarge => "head_too_large",
            Failure::BodyTooLarge => "body_too_large",
            Failure::HeadTimeout => "client_head_timeout",
            Failure::BodyTimeout => "client_body_timeout",
            Failure::ExpectationFailed => "expectation_failed",
            Failure::OperationNotFound => "operation_not_found",
            Failure::MissingSubscriptionKey => "subscription_key_missing",
            Failure::InvalidSubscriptionKey => "subscription_key_invalid",
            Failure::BackendUnresolved => "backend_unresolved",
            Failure::BackendConnect => "backend_connect_failed",
            Failure::BackendConnectTimeout => "backend_connect_timeout",
            Failure::BackendReset => "backend_reset",
            Failure::BackendTls => "backend_tls_failed",
            Failure::BackendTimeout => "backend_timeout",
            Failure::BackendBadResponse(why) => why,
            Failure::NoConfig => "no_config",
            Failure::Exhausted(what) | Failure::Internal(what) => what,
        }
    }

    pub fn source(self) -> Source {
        match self {
            Failure::BackendUnresolved
            | Failure::BackendConnect
            | Failure::BackendConnectTimeout
            | Failure::BackendReset
            | Failure::BackendTls
            | Failure::BackendTimeout
            | Failure::BackendBadResponse(_) => Source::Backend,
            Failure::NoConfig | Failure::Exhausted(_) | Failure::Internal(_) => Source::Gateway,
            _ => Source::Client,
        }
    }

    /// Whether the client connection must close after this answer: when the request
    /// framing can no longer be trusted, or the client was too slow.
    pub fn closes_connection(self) -> bool {
        matches!(
            self,
            Failure::BadRequest(_)
                | Failure::UriTooLong
                | Failure::HeadTooLarge
                | Failure::BodyTooLarge
                | Failure::HeadTimeout
                | Failure::BodyTimeout
                | Failure::ExpectationFailed
        )
    }
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// A complete response from the gateway itself: JSON body, exact framing.
pub fn render_json(status: u16, body: &str, close: bool, head_only: bool, out: &mut Vec<u8>) {
    render(status, JSON, body, close, head_only, out);
}

pub const JSON: &str = "application/json; charset=utf-8";
/// The Prometheus text exposition format.
pub const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A complete response with the given content type.
pub fn render(
    status: u16,
    content_type: &str,
    body: &str,
    close: bool,
    head_only: bool,
    out: &mut Vec<u8>,
) {
    use std::io::Write;
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{}\r\n",
        reason_phrase(status),
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    );
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
}

/// `{"statusCode": N, "message": "…"}` for a failure.
pub fn failure_body(failure: Failure) -> String {
    message_body(failure.status(), failure.message())
}

/// APIM's error body: `{"statusCode": N, "message": "…"}` (gateway failures and the
/// answers of refusing policies alike).
pub fn message_body(status: u16, message: &str) -> String {
    let mut s = String::with_capacity(40 + message.len());
    s.push_str("{\"statusCode\": ");
    s.push_str(&status.to_string());
    s.push_str(", \"message\": ");
    crate::telemetry::push_json_str(&mut s, message);
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_exhaustion_and_bugs_are_the_gateways_and_never_retried() {
        let exhausted = Failure::Exhausted("buffers_exhausted");
        assert_eq!(
            (exhausted.status(), exhausted.source(), exhausted.reason()),
            (503, Source::Gateway, "buffers_exhausted")
        );
        assert!(!exhausted.is_backend_transport());
        let bug = Failure::Internal("internal_stale_route");
        assert_eq!(
            (bug.status(), bug.source(), bug.message()),
            (500, Source::Gateway, "Internal server error")
        );
        assert!(!bug.is_backend_transport());
        assert!(Failure::BackendConnect.is_backend_transport());
    }
}
