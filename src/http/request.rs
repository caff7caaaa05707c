//! Request heads: httparse over the connection's own buffer, then the strict checks
//! httparse leaves to us (framing ambiguity, Host rules, target form, dot-segments).
//! Partial is not an error; every rejection is a `Failure` with a reason naming the rule.
//! Must not touch: sockets, routing, buffers beyond the slice it is given.

use super::Failure;

/// Header slots per request; more headers than this is a 431.
pub const MAX_HEADERS: usize = 100;
/// Longest request line accepted before answering 414.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    None,
    Length(u64),
    Chunked,
}

impl BodyKind {
    /// The `Content-Length` to forward, if the body is length-delimited.
    pub fn content_length(self) -> Option<u64> {
        match self {
            BodyKind::Length(n) => Some(n),
            _ => None,
        }
    }
}

/// A parsed, validated request head borrowing from the connection buffer.
#[derive(Debug)]
pub struct RequestHead<'b> {
    pub method: &'b str,
    /// The path (origin form, no query).
    pub path: &'b str,
    /// After '?', without it; empty when there is none.
    pub query: Option<&'b str>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub headers: &'b [httparse::Header<'b>],
    pub head_len: usize,
    /// From the Host header (or the absolute-form target); may be empty on HTTP/1.0.
    pub host: &'b str,
    pub body: BodyKind,
    pub keep_alive: bool,
    pub expect_continue: bool,
}

impl RequestHead<'_> {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
    /// The host without its port, for routing.
    pub fn host_name(&self) -> &str {
        host_without_port(self.host)
    }
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Parses the head at the start of `buf`. `Ok(None)` = need more bytes.
pub fn parse<'b>(
    buf: &'b [u8],
    headers: &'b mut [httparse::Header<'b>],
    head_max: usize,
) -> Result<Option<RequestHead<'b>>, Failure> {
    let mut req = httparse::Request::new(headers);
    let status = req.parse(buf);
    let head_len = match status {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            let line_limit = MAX_REQUEST_LINE.min(head_max);
            let too_long = match buf.iter().position(|b| *b == b'\n') {
                Some(end) => end > line_limit,
                // no end of line yet, and already as long as allowed
                None => buf.len() >= line_limit,
            };
            if too_long {
                return Err(Failure::UriTooLong);
            }
            if buf.len() >= head_max {
                return Err(Failure::HeadTooLarge);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(Failure::HeadTooLarge),
        Err(httparse::Error::Version) => return Err(Failure::BadRequest("bad_version")),
        Err(httparse::Error::Token) => return Err(Failure::BadRequest("bad_method")),
        Err(httparse::Error::HeaderName) => return Err(Failure::BadRequest("bad_header_name")),
        Err(httparse::Error::HeaderValue) => return Err(Failure::BadRequest("bad_header_value")),
        Err(_) => return Err(Failure::BadRequest("malformed_head")),
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(Failure::BadRequest("malformed_head"));
    };
    if target.len() > MAX_REQUEST_LINE.min(head_max) {
        return Err(Failure::UriTooLong);
    }
    if head_len > head_max {
        return Err(Failure::HeadTooLarge);
    }
    let headers: &'b [httparse::Header<'b>] = req.headers;

    let mut host_header: Option<&str> = None;
    let mut host_count = 0;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut te_count = 0;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            host_count += 1;
            let v = std::str::from_utf8(h.value).map_err(|_| Failure::BadRequest("bad_host"))?;
            if !valid_authority(v) {
                return Err(Failure::BadRequest("bad_host"));
            }
            host_header = Some(v);
        } else if name.eq_ignore_ascii_case("content-length") {
            if length.is_some() {
                return Err(Failure::BadRequest("duplicate_content_length"));
            }
            let v = h.value;
            if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
                return Err(Failure::BadRequest("bad_content_length"));
            }
            length = Some(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')));
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            te_count += 1;
            if !h.value.eq_ignore_ascii_case(b"chunked") {
                return Err(Failure::BadRequest("unsupported_transfer_encoding"));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive_token = true;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if h.value.eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else {
                return Err(Failure::ExpectationFailed);
            }
        }
    }
    if te_count > 1 {
        return Err(Failure::BadRequest("duplicate_transfer_encoding"));
    }
    if chunked && length.is_some() {
        return Err(Failure::BadRequest("content_length_with_transfer_encoding"));
    }
    if chunked && minor == 0 {
        return Err(Failure::BadRequest("chunked_on_http10"));
    }
    if host_count > 1 {
        return Err(Failure::BadRequest("duplicate_host"));
    }
    if minor == 1 && host_count == 0 {
        return Err(Failure::BadRequest("missing_host"));
    }

    let (authority, path_and_query) = split_target(target)?;
    let host = authority.or(host_header).unwrap_or("");
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    check_path(path)?;
    let body = if chunked {
        BodyKind::Chunked
    } else {
        match length {
            Some(0) | None => BodyKind::None,
            Some(n) => BodyKind::Length(n),
        }
    };
    let keep_alive = if minor == 1 {
        !close
    } else {
        keep_alive_token && !close
    };
    Ok(Some(RequestHead {
        method,
        path,
        query,
        minor,
        headers,
        head_len,
        host,
        body,
        keep_alive,
        expect_continue: expect_continue && minor == 1,
    }))
}

/// Origin form `/p?q` or absolute form `http://host/p?q` → (authority, path-and-query).
fn split_target(target: &str) -> Result<(Option<&str>, &str), Failure> {
    if target.starts_with('/') {
        return Ok((None, target));
    }
    let lower_scheme = target.get(..8).map(|s| s.to_ascii_lowercase());
    let rest = match lower_scheme.as_deref() {
        Some(s) if s.starts_with("http://") => &target[7..],
        Some("https://") => &target[8..],
        _ => return Err(Failure::BadRequest("bad_target")),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], &rest[i..]),
        Some(_) => return Err(Failure::BadRequest("bad_target")),
        None => (rest, "/"),
    };
    if authority.is_empty() || !valid_authority(authority) {
        return Err(Failure::BadRequest("bad_target"));
    }
    Ok((Some(authority), path))
}

/// `uri-host [ ":" port ]` (RFC 9112 §3.2, RFC 3986 §3.2.2-3): an IP literal in
/// brackets, or a reg-name / IPv4 address of unreserved, percent-encoded and sub-delim
/// characters; then, optionally, a colon and at most five digits. Empty is allowed (a
/// request whose target has no authority sends an empty Host). No userinfo.
pub fn valid_authority(value: &str) -> bool {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let Some((literal, after)) = rest.split_once(']') else {
            return false;
        };
        if !valid_ip_literal(literal) {
            return false;
        }
        match after.strip_prefix(':') {
            Some(port) => ("", Some(port)),
            None if after.is_empty() => ("", None),
            None => return false,
        }
    } else {
        match value.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (value, None),
        }
    };
    let port_ok = port.is_none_or(|p| p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok && valid_reg_name(host)
}

/// reg-name = *( unreserved / pct-encoded / sub-delims ); an IPv4 address is one too.
fn valid_reg_name(host: &str) -> bool {
    let bytes = host.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b)) {
            return false;
        }
        i += 1;
    }
    true
}

/// IPv6address or IPvFuture, the inside of `[ ]`.
fn valid_ip_literal(literal: &str) -> bool {
    if literal.parse::<std::net::Ipv6Addr>().is_ok() {
        return true;
    }
    // IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
    let Some(rest) = literal.strip_prefix(['v', 'V']) else {
        return false;
    };
    let Some((version, tail)) = rest.split_once('.') else {
        return false;
    };
    !version.is_empty()
        && version.bytes().all(|b| b.is_ascii_hexdigit())
        && !tail.is_empty()
        && tail
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:".contains(&b))
}

/// Rejects dot-segments (plain or percent-encoded), backslashes and fragments, so that
/// no backend ever sees a path that climbs out of its base.
fn check_path(path: &str) -> Result<(), Failure> {
    if path.contains(['\\', '#']) {
        return Err(Failure::BadRequest("bad_path"));
    }
    for seg in path.split('/') {
        // Only segments holding '.' or '%' can be dot-segments or encoded separators.
        if !seg.contains(['.', '%']) {
            continue;
        }
        let mut dots = 0;
        let mut rest = seg.as_bytes();
        let mut only_dots = true;
        while let Some(&b) = rest.first() {
            if b == b'.' {
                dots += 1;
                rest = &rest[1..];
            } else if rest.len() >= 3 && b == b'%' && rest[1] == b'2' && (rest[2] | 0x20) == b'e' {
                dots += 1;
                rest = &rest[3..];
            } else {
                only_dots = false;
                break;
            }
        }
        if only_dots && (dots == 1 || dots == 2) {
            return Err(Failure::BadRequest("dot_segment"));
        }
        let bytes = seg.as_bytes();
        for w in bytes.windows(3) {
            if w[0] == b'%'
                && ((w[1] == b'2' && (w[2] | 0x20) == b'f') || (w[1] == b'0' && w[2] == b'0'))
            {
                return Err(Failure::BadRequest("encoded_separator"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (path, query, body, keep_alive, expect_continue)
    type Summary = (String, Option<String>, BodyKind, bool, bool);

    fn run(raw: &str) -> Result<Option<Summary>, Failure> {
        let mut h = [httparse::EMPTY_HEADER; MAX_HEADERS];
        parse(raw.as_bytes(), &mut h, 32 * 1024).map(|o| {
            o.map(|r| {
                (
                    r.path.to_string(),
                    r.query.map(String::from),
                    r.body,
                    r.keep_alive,
                    r.expect_continue,
                )
            })
        })
    }

    fn bad(raw: &str) -> Failure {
        run(raw).expect_err(raw)
    }

    #[test]
    fn accepts_good_heads() {
        let r = run("GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            r,
            (
                "/a/b".into(),
                Some("x=1".into()),
                BodyKind::None,
                true,
                false
            )
        );
        let r =
            run("POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!((r.2, r.4), (BodyKind::Length(5), true));
        let r = run("POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((r.2, r.3), (BodyKind::Chunked, false));
        let r = run("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!r.3);
        let r = run("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(r.3);
        for good in [
            "example.test",
            "example.test:8080",
            "example.test:",
            "127.0.0.1:1",
            "[::1]:8080",
            "[::1]",
            "[v1.fe80::a+en1]",
            "caf%C3%A9.example",
            "",
        ] {
            assert!(valid_authority(good), "{good:?}");
        }
        for bad in [
            "example.test:abc",
            "example.test:123456",
            "a:1:2",
            "user@example.test",
            "[::1",
            "[::1]x",
            "[nonsense]",
            "bad%zz",
            "sp ace",
            "a/b",
        ] {
            assert!(!valid_authority(bad), "{bad:?}");
            assert_eq!(
                run(&format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n")).unwrap_err(),
                Failure::BadRequest("bad_host"),
                "{bad:?}"
            );
        }
        assert_eq!(
            run("GET http://a:b/x HTTP/1.1\r\nHost: h\r\n\r\n").unwrap_err(),
            Failure::BadRequest("bad_target")
        );
        let r = run("GET http://example.com/x?y HTTP/1.1\r\nHost: other\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((r.0.as_str(), r.1.as_deref()), ("/x", Some("y")));
        assert_eq!(run("GET / HTTP/1.1\r\nHost: h\r\n").unwrap(), None);
        // dots that are not dot-segments are ordinary path characters
        for ok in ["/a/.well-known/x", "/file.json", "/a/...", "/v1.2/%41"] {
            assert!(
                run(&format!("GET {ok} HTTP/1.1\r\nHost: h\r\n\r\n"))
                    .unwrap()
                    .is_some(),
                "{ok}"
            );
        }
    }

    #[test]
    fn rejects_ambiguity_and_garbage() {
        let cases: &[(&str, Failure)] = &[
            ("GET / HTTP/1.1\r\n\r\n", Failure::BadRequest("missing_host")),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Failure::BadRequest("duplicate_host")),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                Failure::BadRequest("content_length_with_transfer_encoding"),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
                Failure::BadRequest("duplicate_content_length"),
            ),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n", Failure::BadRequest("bad_content_length")),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", Failure::BadRequest("bad_content_length")),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", Failure::BadRequest("bad_content_length")),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                Failure::BadRequest("unsupported_transfer_encoding"),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                Failure::BadRequest("duplicate_transfer_encoding"),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
                Failure::BadRequest("unsupported_transfer_encoding"),
            ),
            (
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                Failure::BadRequest("chunked_on_http10"),
            ),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", Failure::BadRequest("bad_header_name")),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", Failure::BadRequest("bad_header_value")),
            ("GET / HTTP/1.1\r\nHost: a\r\nX : b\r\n\r\n", Failure::BadRequest("bad_header_name")),
            ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", Failure::BadRequest("bad_version")),
            ("GET /a/../b HTTP/1.1\r\nHost: a\r\n\r\n", Failure::BadRequest("dot_segment")),
            ("GET /a/%2E%2e/b HTTP/1.1\r\nHost: a\r\n\r\n", Failure::BadRequest("dot_segment")),
            ("GET /a%2fb HTTP/1.1\r\nHost: a\r\n\r\n", Failure::BadRequest("encoded_separator")),
            ("GET /a%2Fb HTTP/1.1\r\nHost: a\r\n\r\n", Failure::BadRequest("encoded_separator")),
            ("GET /a%00 HTTP/1.1\r\nHost: a\r\n\r\n", Failure::BadRequest("encoded_separator")),
            ("GET /. HTTP/1.1\r\nHost: a\r\n\r\n", Failure::BadRequest("dot_segment")),
            ("GET /a/.%2e HTTP/1.1\r\nHost: a\r\n\r\n", Failure::BadRequest("dot_segment")),
            ("GET x HTTP/1.1\r\nHost: a\r\n\r\n", Failure::BadRequest("bad_target")),
            ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", Failure::BadRequest("bad_host")),
            ("GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", Failure::ExpectationFailed),
        ];
        for (raw, want) in cases {
            assert_eq!(bad(raw), *want, "{raw:?}");
        }
    }

    #[test]
    fn size_limits() {
        let long_uri = format!(
            "GET /{} HTTP/1.1\r\nHost: a\r\n\r\n",
            "a".repeat(MAX_REQUEST_LINE + 10)
        );
        assert_eq!(bad(&long_uri), Failure::UriTooLong);
        let partial_long_uri = format!("GET /{}", "a".repeat(MAX_REQUEST_LINE + 10));
        assert_eq!(bad(&partial_long_uri), Failure::UriTooLong);
        // exactly a buffer's worth of request line and no end yet: already too long
        let mut h = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let line = format!("GET /{}", "a".repeat(4096 - 5));
        assert_eq!(
            parse(line.as_bytes(), &mut h, 4096).unwrap_err(),
            Failure::UriTooLong
        );
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "b".repeat(40 * 1024)
        );
        assert_eq!(bad(&big), Failure::HeadTooLarge);
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X{i}: v\r\n"))
            .collect();
        assert_eq!(
            bad(&format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n")),
            Failure::HeadTooLarge
        );
    }
}
