//! The request and response as a policy sees them: borrowed views of the heads the
//! connection parsed (`RequestView`, `ResponseView`, `HeaderSrc`), the copy kept when
//! later sections read the request (`OwnedRequest`).
//! Must not touch: sockets, buffers, the config's entities.

use std::borrow::Cow;
use std::sync::Arc;

use crate::x509::Presented;

use super::expr::Val;

/// Request headers as the executor sees them.
#[derive(Clone, Copy)]
pub enum HeaderSrc<'a> {
    Parsed(&'a [httparse::Header<'a>]),
    Owned(&'a [(String, String)]),
    Empty,
}

impl<'a> HeaderSrc<'a> {
    /// All values of `name`, joined by ", " when repeated (as APIM's dictionary does).
    pub fn get(self, name: &str) -> Option<Cow<'a, str>> {
        let mut found: Option<Cow<'a, str>> = None;
        let mut add = |v: &'a str| {
            found = Some(match found.take() {
                None => Cow::Borrowed(v),
                Some(prev) => Cow::Owned(format!("{prev}, {v}")),
            })
        };
        match self {
            HeaderSrc::Parsed(hs) => {
                for h in hs.iter().filter(|h| h.name.eq_ignore_ascii_case(name)) {
                    add(std::str::from_utf8(h.value).unwrap_or(""));
                }
            }
            HeaderSrc::Owned(hs) => {
                for (_, v) in hs.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)) {
                    add(v);
                }
            }
            HeaderSrc::Empty => {}
        }
        found
    }
    pub fn to_owned_list(self) -> Vec<(String, String)> {
        match self {
            HeaderSrc::Parsed(hs) => hs
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
            HeaderSrc::Owned(hs) => hs.to_vec(),
            HeaderSrc::Empty => Vec::new(),
        }
    }
}

/// The client request as received.
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The path after the API's path: what the operation template matched.
    pub rest: &'a str,
    pub host: &'a str,
    pub query: Option<&'a str>,
    pub headers: HeaderSrc<'a>,
    pub ip: &'a str,
    pub https: bool,
    /// The TLS client's certificate, when it presented one.
    pub certificate: Option<&'a Arc<Presented>>,
}

/// A copy of the request kept for outbound and on-error expressions.
#[derive(Debug, Clone)]
pub struct OwnedRequest {
    method: String,
    path: String,
    rest: String,
    host: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    ip: String,
    https: bool,
    certificate: Option<Arc<Presented>>,
}

impl OwnedRequest {
    pub fn of(r: &RequestView) -> OwnedRequest {
        OwnedRequest {
            method: r.method.to_string(),
            path: r.path.to_string(),
            rest: r.rest.to_string(),
            host: r.host.to_string(),
            query: r.query.map(str::to_string),
            headers: r.headers.to_owned_list(),
            ip: r.ip.to_string(),
            https: r.https,
            certificate: r.certificate.cloned(),
        }
    }
    /// The client's headers, in order.
    pub fn header_list(&self) -> &[(String, String)] {
        &self.headers
    }
    pub fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            path: &self.path,
            rest: &self.rest,
            host: &self.host,
            query: self.query.as_deref(),
            headers: HeaderSrc::Owned(&self.headers),
            ip: &self.ip,
            https: self.https,
            certificate: self.certificate.as_ref(),
        }
    }
}

/// The backend response (or none yet).
#[derive(Clone, Copy)]
pub struct ResponseView<'a> {
    pub status: u16,
    pub reason: &'a str,
    pub headers: HeaderSrc<'a>,
}

pub fn opt(v: Option<&str>) -> Val<'_> {
    v.map_or(Val::Null, |s| Val::Str(Cow::Borrowed(s)))
}

pub use crate::http::query::{decode, encode, join_query, parse_query, query_value};
