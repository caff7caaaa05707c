//! System.Uri in expressions: `new Uri(text)`, `new Uri(baseUri, relative)`,
//! `Uri.TryCreate`, `Uri.IsWellFormedUriString`, `context.Request.Url.ToUri()` and
//! `context.Api.ServiceUrl`, with the members APIM documents read (`Host`,
//! `AbsolutePath`, `Query`, `Segments`, `Port`…). Absolute URIs with a scheme and an
//! authority only; the canonical form lower-cases the scheme and host, drops a default
//! port and gives an empty path as `/`, as .NET does.
//! Must not touch: syntax, the request.

use std::borrow::Cow;
use std::rc::Rc;

use super::eval::Machine;
use super::members::M;
use super::value::{list, Val};
use super::{EvalError, Node};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    original: String,
    scheme: String,
    user_info: String,
    host: String,
    port: Option<u16>,
    /// Starts with '/'.
    path: String,
    /// With its '?', or empty.
    query: String,
    /// With its '#', or empty.
    fragment: String,
}

fn invalid(text: &str) -> EvalError {
    EvalError(Cow::Owned(format!(
        "Invalid URI: The format of the URI could not be determined: '{text}'"
    )))
}

impl Uri {
    /// Parses an absolute URI (`scheme://[user@]host[:port][/path][?query][#fragment]`).
    pub fn parse(text: &str) -> Result<Uri, EvalError> {
        let t = text.trim();
        let (scheme, rest) = t.split_once("://").ok_or_else(|| invalid(text))?;
        let scheme_ok = scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !scheme_ok {
            return Err(invalid(text));
        }
        let (rest, fragment) = split_at_char(rest, '#');
        let (rest, query) = split_at_char(rest, '?');
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (user_info, host_port) = match authority.rsplit_once('@') {
            Some((u, h)) => (u, h),
            None => ("", authority),
        };
        let (host, port) = match host_port.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || host_port.starts_with('[') => {
                let port = p.parse::<u16>().map_err(|_| invalid(text))?;
                (h, Some(port))
            }
            _ => (host_port, None),
        };
        if host.is_empty() || host.contains([' ', '<', '>', '\\', '"']) {
            return Err(invalid(text));
        }
        let scheme = scheme.to_ascii_lowercase();
        let port = port.filter(|p| Some(*p) != default_port(&scheme));
        Ok(Uri {
            original: text.to_string(),
            scheme,
            user_info: user_info.to_string(),
            host: host.to_ascii_lowercase(),
            port,
            path: path.replace(' ', "%20"),
            query: query.to_string(),
            fragment: fragment.to_string(),
        })
    }

    /// `new Uri(base, relative)`: RFC 3986 resolution of a reference against `self`.
    pub fn join(&self, relative: &str) -> Result<Uri, EvalError> {
        if relative.contains("://") {
            return Uri::parse(relative);
        }
        let mut out = self.clone();
        out.original = relative.to_string();
        let (rest, fragment) = split_at_char(relative, '#');
        let (path, query) = split_at_char(rest, '?');
        out.fragment = fragment.to_string();
        if path.is_empty() {
            if !query.is_empty() {
                out.query = query.to_string();
            }
            return Ok(out);
        }
        out.query = query.to_string();
        let merged = match path.strip_prefix('/') {
            Some(_) => path.to_string(),
            None => {
                let dir = &self.path[..self.path.rfind('/').map_or(0, |i| i + 1)];
                format!("{dir}{path}")
            }
        };
        out.path = remove_dots(&merged);
        Ok(out)
    }

    fn authority(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }

    /// The canonical absolute form (`AbsoluteUri`, `ToString()`).
    pub fn text(&self) -> String {
        let user = match self.user_info.is_empty() {
            true => String::new(),
            false => format!("{}@", self.user_info),
        };
        format!(
            "{}://{user}{}{}{}{}",
            self.scheme,
            self.authority(),
            self.path,
            self.query,
            self.fragment
        )
    }

    /// `Segments`: the path split after each '/'.
    fn segments(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut start = 0;
        for (i, c) in self.path.char_indices() {
            if c == '/' {
                out.push(self.path[start..=i].to_string());
                start = i + 1;
            }
        }
        if start < self.path.len() {
            out.push(self.path[start..].to_string());
        }
        out
    }
}

/// `text` before the first `c`, and from it on (empty when there is none).
fn split_at_char(text: &str, c: char) -> (&str, &str) {
    match text.find(c) {
        Some(i) => (&text[..i], &text[i..]),
        None => (text, ""),
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        "ftp" => Some(21),
        _ => None,
    }
}

/// RFC 3986's remove_dot_segments.
fn remove_dots(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        match *part {
            "." => {
                if i == parts.len() - 1 {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if i == parts.len() - 1 {
                    out.push("");
                }
            }
            p => out.push(p),
        }
    }
    let joined = out.join("/");
    match joined.starts_with('/') {
        true => joined,
        false => format!("/{joined}"),
    }
}

/// Members of a Uri.
pub(super) fn member<'e>(
    m: &mut Machine<'e>,
    u: &Uri,
    member: M,
    args: &'e [Node],
) -> Result<Val<'e>, EvalError> {
    let a = m.values(args)?;
    let s = |v: String| Val::Str(Cow::Owned(v));
    Ok(match (member, a.as_slice()) {
        // APIM's IUrl (context.Api.ServiceUrl) names them Path and QueryString
        (M::AbsolutePath | M::Path, []) => s(u.path.clone()),
        (M::QueryString, []) => s(u.query.trim_start_matches('?').to_string()),
        (M::AbsoluteUri, []) | (M::ToString, []) => m.text(u.text())?,
        (M::Authority, []) => s(u.authority()),
        (M::Fragment, []) => s(u.fragment.clone()),
        (M::Host | M::DnsSafeHost, []) => s(u.host.clone()),
        (M::LocalPath, []) => s(super::statics::unescape(&u.path, false)),
        (M::OriginalString, []) => s(u.original.clone()),
        (M::PathAndQuery, []) => s(format!("{}{}", u.path, u.query)),
        (M::Port, []) => Val::Int(u.port.or(default_port(&u.scheme)).map_or(-1, i64::from)),
        (M::Query, []) => s(u.query.clone()),
        (M::Scheme, []) => s(u.scheme.clone()),
        (M::Segments, []) => list(u.segments().into_iter().map(s).collect()),
        (M::IsAbsoluteUri, []) => Val::Bool(true),
        (M::UserInfo, []) => s(u.user_info.clone()),
        (M::Equals, [other]) => Val::Bool(match other {
            Val::Uri(o) => o.text() == u.text(),
            Val::Str(t) => Uri::parse(t).is_ok_and(|o| o.text() == u.text()),
            _ => false,
        }),
        _ => {
            return Err(EvalError(Cow::Owned(format!(
                "'{member:?}' is not a member of Uri"
            ))))
        }
    })
}

/// `new Uri(text)` / `new Uri(baseUri, relative)` (a UriKind argument is accepted).
pub(super) fn new_uri(a: &[Val]) -> Result<Val<'static>, EvalError> {
    let uri = match a {
        [Val::Uri(base), rel, ..] if !matches!(rel, Val::Flag(_)) => base.join(&rel.to_text())?,
        [Val::Str(base), Val::Str(rel)] => Uri::parse(base)?.join(rel)?,
        [text, ..] => Uri::parse(&text.to_text())?,
        [] => return Err(invalid("")),
    };
    Ok(Val::Uri(Rc::new(uri)))
}
