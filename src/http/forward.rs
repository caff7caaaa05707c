//! Writing the heads the gateway forwards: the request head for the backend (new target,
//! Host, X-Forwarded-*, Via; hop-by-hop headers and everything `Connection` lists
//! removed) and the response head for the client (hop-by-hop removed, our own
//! `Connection` decision added). Writes into a bounded buffer and fails rather than grow.
//! Must not touch: sockets, routing decisions (it is told the target and authority).

use std::io::Write;

/// The output did not fit its bounded buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// A `Write` into a fixed slice: the bounded head buffer.
pub struct SliceWriter<'a> {
    buf: &'a mut [u8],
    pub len: usize,
}

impl<'a> SliceWriter<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        SliceWriter { buf, len: 0 }
    }
    pub fn put(&mut self, bytes: &[u8]) -> Result<(), Full> {
        let end = self.len.checked_add(bytes.len()).ok_or(Full)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(Full)?;
        dst.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }
}

impl Write for SliceWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.put(data).map_err(|_| std::io::ErrorKind::WriteZero)?;
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus the ones the gateway rewrites itself.
fn is_hop_by_hop(name: &str) -> bool {
    const HOP: [&str; 7] = [
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "transfer-encoding",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || name.len() > 6 && name[..6].eq_ignore_ascii_case("proxy-")
}

/// Most header names a `Connection` header may list that are honoured; further ones
/// pass as ordinary headers.
const MAX_CONNECTION_TOKENS: usize = 16;

/// The header names listed by `Connection` headers (other than close/keep-alive),
/// gathered once per head.
struct Listed<'h> {
    names: [&'h [u8]; MAX_CONNECTION_TOKENS],
    len: usize,
}

impl<'h> Listed<'h> {
    fn of(headers: &[httparse::Header<'h>]) -> Self {
        let mut listed = Listed {
            names: [&[]; MAX_CONNECTION_TOKENS],
            len: 0,
        };
        for h in headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.is_empty()
                    || token.eq_ignore_ascii_case(b"close")
                    || token.eq_ignore_ascii_case(b"keep-alive")
                {
                    continue;
                }
                if listed.len < MAX_CONNECTION_TOKENS {
                    listed.names[listed.len] = token;
                    listed.len += 1;
                }
            }
        }
        listed
    }
    fn contains(&self, name: &str) -> bool {
        self.names[..self.len]
            .iter()
            .any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
    }
}

/// Header changes made by policies, applied over the headers of a head as it is written:
/// each named header is replaced by its list (`None` = removed). Names compare without
/// case; the first spelling given is the one written.
#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    pub list: Vec<(String, Option<Vec<String>>)>,
}

impl HeaderEdits {
    pub fn get(&self, name: &str) -> Option<&Option<Vec<String>>> {
        self.list
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
    pub fn set(&mut self, name: &str, values: Option<Vec<String>>) {
        match self
            .list
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = values,
            None => self.list.push((name.to_string(), values)),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
    fn edits(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    fn write(&self, out: &mut SliceWriter) -> Result<(), Full> {
        for (name, values) in &self.list {
            for v in values.iter().flatten() {
                out.put(name.as_bytes())?;
                out.put(b": ")?;
                out.put(v.as_bytes())?;
                out.put(b"\r\n")?;
            }
        }
        Ok(())
    }
}

/// Headers whose framing the gateway owns: policies may not set them.
pub fn is_managed_header(name: &str) -> bool {
    is_hop_by_hop(name) || name.eq_ignore_ascii_case("content-length")
}

/// What the backend request head says beyond the client's own headers.
pub struct BackendRequest<'a> {
    pub method: &'a str,
    /// serviceUrl base path; `rest` (after the API path) and `query` are appended.
    pub base_path: &'a str,
    pub rest: &'a str,
    pub query: Option<&'a str>,
    pub authority: &'a str,
    /// The client address as text (formatted once per connection).
    pub client_ip: &'a str,
    pub proto: &'a str,
    pub original_host: &'a str,
    pub chunked: bool,
    pub length: Option<u64>,
    /// Header changes from policies (a `Host` edit replaces the backend authority).
    pub edits: Option<&'a HeaderEdits>,
    /// Through an HTTP proxy (an `http://` backend): the target in absolute form
    /// (`http://authority`, then the path), and the `Proxy-Authorization` value.
    pub proxy: Option<(&'a str, Option<&'a str>)>,
}

pub fn write_backend_request(
    out: &mut SliceWriter,
    req: &BackendRequest,
    headers: &[httparse::Header],
    trust_forwarded_proto: bool,
) -> Result<(), Full> {
    out.put(req.method.as_bytes())?;
    out.put(b" ")?;
    if let Some((origin, _)) = req.proxy {
        out.put(origin.as_bytes())?;
    }
    out.put(req.base_path.as_bytes())?;
    if req.rest.is_empty() || req.rest == "/" {
        if req.base_path.is_empty() || req.rest == "/" {
            out.put(b"/")?;
        }
    } else if req.rest.starts_with('/') {
        out.put(req.rest.as_bytes())?;
    } else {
        out.put(b"/")?;
        out.put(req.rest.as_bytes())?;
    }
    if let Some(q) = req.query {
        out.put(b"?")?;
        out.put(q.as_bytes())?;
    }
    out.put(b" HTTP/1.1\r\n")?;
    if let Some((_, Some(authorization))) = req.proxy {
        out.put(b"Proxy-Authorization: ")?;
        out.put(authorization.as_bytes())?;
        out.put(b"\r\n")?;
    }
    let host_edit = req.edits.and_then(|e| e.get("host"));
    if host_edit.is_none() {
        out.put(b"Host: ")?;
        out.put(req.authority.as_bytes())?;
        out.put(b"\r\n")?;
    }
    let listed = Listed::of(headers);
    let mut client_proto: Option<&[u8]> = None;
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("x-forwarded-proto") {
            client_proto = Some(h.value);
        }
        if req.edits.is_some_and(|e| e.edits(name)) {
            continue;
        }
        if is_hop_by_hop(name)
            || name.eq_ignore_ascii_case("host")
            || name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("x-forwarded-host")
            || name.eq_ignore_ascii_case("x-forwarded-proto")
            || name.eq_ignore_ascii_case("x-forwarded-for")
            || name.eq_ignore_ascii_case("via")
            || listed.contains(name)
        {
            continue;
        }
        out.put(name.as_bytes())?;
        out.put(b": ")?;
        out.put(h.value)?;
        out.put(b"\r\n")?;
    }
    // Appended lists: every earlier value in order, then ours.
    out.put(b"X-Forwarded-For: ")?;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
    {
        out.put(h.value)?;
        out.put(b", ")?;
    }
    out.put(req.client_ip.as_bytes())?;
    out.put(b"\r\n")?;
    out.put(b"X-Forwarded-Proto: ")?;
    match client_proto {
        Some(p) if trust_forwarded_proto => out.put(p)?,
        _ => out.put(req.proto.as_bytes())?,
    }
    out.put(b"\r\n")?;
    if !req.original_host.is_empty() {
        out.put(b"X-Forwarded-Host: ")?;
        out.put(req.original_host.as_bytes())?;
        out.put(b"\r\n")?;
    }
    out.put(b"Via: ")?;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("via"))
    {
        out.put(h.value)?;
        out.put(b", ")?;
    }
    out.put(b"1.1 edgegate\r\n")?;
    if let Some(e) = req.edits {
        e.write(out)?;
    }
    if req.chunked {
        out.put(b"Transfer-Encoding: chunked\r\n")?;
    } else if let Some(n) = req.length {
        write!(out, "Content-Length: {n}\r\n").map_err(|_| Full)?;
    }
    out.put(b"\r\n")
}

/// How the response body reaches the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    /// Body (if any) as the backend framed it; `Transfer-Encoding` kept when chunked.
    AsIs,
    /// Chunked from the backend, decoded for an HTTP/1.0 client (connection closes).
    Dechunk,
}

pub fn write_client_response(
    out: &mut SliceWriter,
    status: u16,
    reason: &str,
    headers: &[httparse::Header],
    framing: ClientFraming,
    connection: Option<&str>,
    edits: Option<&HeaderEdits>,
) -> Result<(), Full> {
    let digits = [
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ];
    out.put(b"HTTP/1.1 ")?;
    out.put(&digits)?;
    out.put(b" ")?;
    out.put(reason.as_bytes())?;
    out.put(b"\r\n")?;
    let listed = Listed::of(headers);
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("transfer-encoding") {
            if framing == ClientFraming::AsIs {
                out.put(b"Transfer-Encoding: ")?;
                out.put(h.value)?;
                out.put(b"\r\n")?;
            }
            continue;
        }
        if is_hop_by_hop(name) || listed.contains(name) || edits.is_some_and(|e| e.edits(name)) {
            continue;
        }
        out.put(name.as_bytes())?;
        out.put(b": ")?;
        out.put(h.value)?;
        out.put(b"\r\n")?;
    }
    if let Some(e) = edits {
        e.write(out)?;
    }
    if let Some(c) = connection {
        out.put(b"Connection: ")?;
        out.put(c.as_bytes())?;
        out.put(b"\r\n")?;
    }
    out.put(b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{self, MAX_HEADERS};

    fn forward(raw: &str, base: &str, rest_from: usize, trust: bool) -> String {
        let mut h = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let r = request::parse(raw.as_bytes(), &mut h, 32 * 1024)
            .unwrap()
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let mut w = SliceWriter::new(&mut buf);
        let req = BackendRequest {
            method: r.method,
            base_path: base,
            rest: &r.path[rest_from..],
            query: r.query,
            authority: "backend:9000",
            client_ip: "10.1.2.3",
            proto: "http",
            original_host: r.host,
            edits: None,
            proxy: None,
            chunked: r.body == request::BodyKind::Chunked,
            length: r.body.content_length(),
        };
        write_backend_request(&mut w, &req, r.headers, trust).unwrap();
        let n = w.len;
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn request_head_rewrite() {
        let raw = "POST /echo/items/1?x=1 HTTP/1.1\r\nHost: gw.local\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Authorization: p\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-Proto: https\r\nVia: 1.0 other\r\nExpect: 100-continue\r\nContent-Length: 3\r\nAccept: */*\r\n\r\n";
        assert_eq!(
            forward(raw, "/v1", 5, false),
            "POST /v1/items/1?x=1 HTTP/1.1\r\nHost: backend:9000\r\nAccept: */*\r\nX-Forwarded-For: 1.1.1.1, 10.1.2.3\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: gw.local\r\nVia: 1.0 other, 1.1 edgegate\r\nContent-Length: 3\r\n\r\n"
        );
        assert!(forward(raw, "/v1", 5, true).contains("X-Forwarded-Proto: https\r\n"));
    }

    #[test]
    fn backend_paths() {
        let get = |path: &str, base: &str, from: usize| {
            let s = forward(
                &format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n"),
                base,
                from,
                false,
            );
            s.split(' ').nth(1).unwrap().to_string()
        };
        assert_eq!(get("/echo", "/v1", 5), "/v1");
        assert_eq!(get("/echo/", "/v1", 5), "/v1/");
        assert_eq!(get("/echo", "", 5), "/");
        assert_eq!(get("/echo/a?b", "", 5), "/a?b");
        assert_eq!(get("/a/b", "", 0), "/a/b");
        assert_eq!(get("/?q=1", "/base", 0), "/base/?q=1");
    }

    #[test]
    fn response_head_rewrite() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nX-Keep: 2\r\n\r\n";
        let mut h = [httparse::EMPTY_HEADER; 16];
        let r = crate::http::response::parse(raw, &mut h, false, 4096)
            .unwrap()
            .unwrap();
        let mut buf = vec![0u8; 1024];
        let mut w = SliceWriter::new(&mut buf);
        write_client_response(
            &mut w,
            r.status,
            r.reason,
            r.headers,
            ClientFraming::AsIs,
            None,
            None,
        )
        .unwrap();
        let n = w.len;
        assert_eq!(
            &buf[..n],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Keep: 2\r\n\r\n"
        );
        let mut w = SliceWriter::new(&mut buf);
        write_client_response(
            &mut w,
            r.status,
            r.reason,
            r.headers,
            ClientFraming::Dechunk,
            Some("close"),
            None,
        )
        .unwrap();
        let n = w.len;
        assert_eq!(
            &buf[..n],
            b"HTTP/1.1 200 OK\r\nX-Keep: 2\r\nConnection: close\r\n\r\n"
        );
        let mut small = [0u8; 10];
        let mut w = SliceWriter::new(&mut small);
        assert_eq!(
            write_client_response(
                &mut w,
                200,
                "OK",
                r.headers,
                ClientFraming::AsIs,
                None,
                None
            ),
            Err(Full)
        );
    }
}
