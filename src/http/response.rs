//! Backend response heads: httparse, then the framing decision (RFC 9112 §6.3) and
//! whether the backend connection may be reused. A response the gateway cannot frame
//! with certainty is a `Failure::BackendBadResponse` (502), never passed on.
//! Must not touch: sockets, client state.

use super::Failure;

pub const MAX_RESPONSE_HEADERS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    None,
    Length(u64),
    Chunked,
    /// Delimited by the backend closing the connection.
    UntilClose,
}

#[derive(Debug)]
pub struct ResponseHead<'b> {
    pub status: u16,
    pub reason: &'b str,
    pub minor: u8,
    pub headers: &'b [httparse::Header<'b>],
    pub head_len: usize,
    pub body: ResponseBody,
    /// The backend connection may carry another request after this response.
    pub reusable: bool,
}

/// Parses a response head for a request made with `request_method_head`.
pub fn parse<'b>(
    buf: &'b [u8],
    headers: &'b mut [httparse::Header<'b>],
    request_was_head: bool,
    head_max: usize,
) -> Result<Option<ResponseHead<'b>>, Failure> {
    let mut res = httparse::Response::new(headers);
    let head_len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= head_max => {
            return Err(Failure::BackendBadResponse("backend_head_too_large"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Failure::BackendBadResponse("backend_malformed_response")),
    };
    let (Some(status), Some(minor)) = (res.code, res.version) else {
        return Err(Failure::BackendBadResponse("backend_malformed_response"));
    };
    let headers: &'b [httparse::Header<'b>] = res.headers;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut te = false;
    let mut close = minor == 0;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = h.value;
            if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
                return Err(Failure::BackendBadResponse("backend_bad_content_length"));
            }
            let n = v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            if length.is_some_and(|l| l != n) {
                return Err(Failure::BackendBadResponse("backend_bad_content_length"));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te = true;
            // The final coding decides: chunked, or the body runs until close.
            chunked = h
                .value
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && minor == 0 {
                    close = false;
                }
            }
        }
    }
    let no_body =
        request_was_head || (100..200).contains(&status) || status == 204 || status == 304;
    let body = if no_body {
        ResponseBody::None
    } else if te {
        // Transfer-Encoding overrides Content-Length; such a response is not reused.
        if length.is_some() {
            close = true;
        }
        if chunked {
            ResponseBody::Chunked
        } else {
            ResponseBody::UntilClose
        }
    } else {
        match length {
            Some(n) => ResponseBody::Length(n),
            None => ResponseBody::UntilClose,
        }
    };
    let reusable = !close && body != ResponseBody::UntilClose;
    Ok(Some(ResponseHead {
        status,
        reason: res.reason.unwrap_or(""),
        minor,
        headers,
        head_len,
        body,
        reusable,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(raw: &str, head: bool) -> Result<(u16, ResponseBody, bool), Failure> {
        let mut h = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        parse(raw.as_bytes(), &mut h, head, 64 * 1024).map(|r| {
            let r = r.unwrap();
            (r.status, r.body, r.reusable)
        })
    }

    #[test]
    fn framing_table() {
        let cases: &[(&str, bool, (u16, ResponseBody, bool))] = &[
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                false,
                (200, ResponseBody::Length(5), true),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                true,
                (200, ResponseBody::None, true),
            ),
            (
                "HTTP/1.1 204 No Content\r\n\r\n",
                false,
                (204, ResponseBody::None, true),
            ),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                false,
                (304, ResponseBody::None, true),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
                (200, ResponseBody::Chunked, true),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                false,
                (200, ResponseBody::Chunked, false),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                false,
                (200, ResponseBody::UntilClose, false),
            ),
            (
                "HTTP/1.1 200 OK\r\n\r\n",
                false,
                (200, ResponseBody::UntilClose, false),
            ),
            (
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
                false,
                (200, ResponseBody::Length(1), false),
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
                false,
                (200, ResponseBody::Length(1), false),
            ),
            (
                "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
                false,
                (200, ResponseBody::Length(1), true),
            ),
            (
                "HTTP/1.1 100 Continue\r\n\r\n",
                false,
                (100, ResponseBody::None, true),
            ),
        ];
        for (raw, head, want) in cases {
            assert_eq!(run(raw, *head).unwrap(), *want, "{raw:?}");
        }
        assert!(run(
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            false
        )
        .is_err());
        assert!(run("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
        assert!(run("garbage\r\n\r\n", false).is_err());
    }
}
