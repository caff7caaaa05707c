//! Query strings and percent-encoding: finding a parameter, decoding and encoding
//! values, splitting and joining a query. Names are compared as sent (not decoded).
//! Must not touch: sockets, heads, policies.

use std::borrow::Cow;

/// Percent-decoding of a query or path value ('+' is a space in queries only when
/// decoding forms; APIM keeps '+', and so do we).
pub fn decode(v: &str) -> Cow<'_, str> {
    if !v.contains('%') {
        return Cow::Borrowed(v);
    }
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(n) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(n);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Percent-encodes everything but unreserved characters.
pub fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The raw value of the first parameter `name` (`""` for a bare name).
pub fn query_value<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some((k, v)) if k == name => Some(v),
            None if pair == name => Some(""),
            _ => None,
        })
}

/// Every parameter, decoded, in order.
pub fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k).into_owned(), decode(v).into_owned()),
            None => (decode(p).into_owned(), String::new()),
        })
        .collect()
}

/// Parameters encoded and joined with `&`.
pub fn join_query(q: &[(String, String)]) -> String {
    let mut s = String::new();
    for (k, v) in q {
        if !s.is_empty() {
            s.push('&');
        }
        s.push_str(&encode(k));
        s.push('=');
        s.push_str(&encode(v));
    }
    s
}
