//! Admission and policies for one call, between routing and the exchange: the
//! subscription key check (APIM's rules and 401 texts), the body completeness check for
//! plans that need the whole request body (and of a response body a plan reads).
//! Renders policy-made responses.
//! Must not touch: sockets, the poll, buffers (the connection owns them).

use crate::config::{Api, Runtime, SubscriptionScope};
use crate::http::chunked::ChunkedDecoder;
use crate::http::failure::reason_phrase;
use crate::http::forward::HeaderEdits;
use crate::http::request::{BodyKind, RequestHead};
use crate::http::response::ResponseBody;
use crate::http::spare;
use crate::http::Failure;
use crate::pipeline::exec::State;
use crate::policy::request::query_value;

/// Largest body the gateway buffers for a policy (set-body, find-and-replace) — request
/// or response. Larger ones get 413 (request) or 502 (response).
pub const BUFFERED_BODY_MAX: usize = 4 * 1024 * 1024;

/// Who the caller is, after the key check.
#[derive(Debug, Clone, Copy)]
pub struct Admitted<'h> {
    pub subscription: Option<u32>,
    pub product: Option<u32>,
    pub key: &'h str,
}

/// The key check: header first, then the query parameter. A presented key must belong
/// to an active subscription whose scope covers the API (a product scope only while
/// the product is published), even on an API without subscription requirement.
pub fn admit<'h>(
    rt: &Runtime,
    api_index: u32,
    api: &Api,
    head: &RequestHead<'h>,
) -> Result<Admitted<'h>, Failure> {
    let headers: &'h [httparse::Header<'h>] = head.headers;
    let presented = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(&api.key_header))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .or_else(|| query_value(head.query, &api.key_query));
    // without a (usable) key: an open product that includes the API admits the call
    // even when the API itself requires a subscription (APIM's open-product rule)
    let keyless = |missing: Failure| {
        if api.subscription_required && api.open_product.is_none() {
            return Err(missing);
        }
        Ok(Admitted {
            subscription: None,
            product: api.open_product,
            key: "",
        })
    };
    let Some(key) = presented else {
        return keyless(Failure::MissingSubscriptionKey);
    };
    let key = key.trim();
    let granted = rt.keys.get(key).and_then(|&si| {
        let sub = rt.subscriptions.get(si as usize).filter(|s| s.active)?;
        let product = match sub.scope {
            SubscriptionScope::AllApis => None,
            SubscriptionScope::Api(a) if a == api_index => None,
            SubscriptionScope::Api(_) => return None,
            SubscriptionScope::Product(p) => {
                let prod = rt.products.get(p as usize)?;
                if !(prod.published && prod.apis.contains(&api_index)) {
                    return None;
                }
                Some(p)
            }
        };
        Some((si, product))
    });
    match granted {
        Some((si, product)) => Ok(Admitted {
            subscription: Some(si),
            product,
            key,
        }),
        // an invalid key is ignored only where an open product includes the API
        None if api.open_product.is_some() => keyless(Failure::InvalidSubscriptionKey),
        None => Err(Failure::InvalidSubscriptionKey),
    }
}

/// The whole request body from the bytes after the head: `Ok(None)` = not all here yet.
pub fn whole_body(kind: BodyKind, bytes: &[u8]) -> Result<Option<(Vec<u8>, usize)>, Failure> {
    match kind {
        BodyKind::None => Ok(Some((Vec::new(), 0))),
        BodyKind::Length(n) => {
            if n > BUFFERED_BODY_MAX as u64 {
                return Err(Failure::BodyTooLarge);
            }
            let n = n as usize;
            Ok((bytes.len() >= n).then(|| (spare_copy(&bytes[..n]), n)))
        }
        BodyKind::Chunked => dechunk(bytes).map_err(|e| match e {
            None => Failure::BodyTooLarge,
            Some(why) => Failure::BadRequest(why),
        }),
    }
}

/// A body's bytes in a spare buffer (`http::spare`; the call gives it back when done).
fn spare_copy(body: &[u8]) -> Vec<u8> {
    let mut out = spare::bytes(body.len());
    out.extend_from_slice(body);
    out
}

/// De-chunks a complete chunked body; `Ok(None)` = incomplete; `Err(None)` = too large.
fn dechunk(bytes: &[u8]) -> Result<Option<(Vec<u8>, usize)>, Option<&'static str>> {
    let mut d = ChunkedDecoder::new();
    let mut out = spare::bytes(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let step = match d.feed(&bytes[at..]) {
            Ok(step) => step,
            Err(e) => {
                spare::give(out);
                return Err(Some(e.reason()));
            }
        };
        out.extend_from_slice(&bytes[at + step.data.0..at + step.data.1]);
        if out.len() > BUFFERED_BODY_MAX {
            return Err(None);
        }
        at += step.consumed;
        if step.done {
            return Ok(Some((out, at)));
        }
        if step.consumed == 0 {
            break;
        }
    }
    spare::give(out);
    Ok(None)
}

/// The whole response body after its head: `Ok(None)` = keep reading.
pub fn whole_response_body(
    kind: ResponseBody,
    bytes: &[u8],
    eof: bool,
) -> Result<Option<(Vec<u8>, usize)>, Failure> {
    let too_large = Failure::BackendBadResponse("backend_body_too_large_for_policy");
    match kind {
        ResponseBody::None => Ok(Some((Vec::new(), 0))),
        ResponseBody::Length(n) => {
            if n > BUFFERED_BODY_MAX as u64 {
                return Err(too_large);
            }
            let n = n as usize;
            Ok((bytes.len() >= n).then(|| (spare_copy(&bytes[..n]), n)))
        }
        ResponseBody::Chunked => dechunk(bytes).map_err(|e| match e {
            None => too_large,
            Some(_) => Failure::BackendBadResponse("backend_bad_chunk"),
        }),
        ResponseBody::UntilClose => {
            if bytes.len() > BUFFERED_BODY_MAX {
                return Err(too_large);
            }
            Ok(eof.then(|| (spare_copy(bytes), bytes.len())))
        }
    }
}

/// A complete response from the policy state: status, headers (over `base` headers
/// from the backend, if any), body with its exact Content-Length.
pub fn render_response(
    st: &State,
    base_status: u16,
    base_reason: &str,
    base: &[httparse::Header],
    close: bool,
    head_only: bool,
) -> Vec<u8> {
    use std::io::Write;
    let status = st.resp.status.unwrap_or(base_status);
    let reason = match (&st.resp.reason, st.resp.status) {
        (Some(r), _) if !r.is_empty() => r.as_str(),
        (_, Some(s)) if s != base_status || base_reason.is_empty() => reason_phrase(s),
        _ if !base_reason.is_empty() => base_reason,
        _ => reason_phrase(status),
    };
    let body: &[u8] = st.resp.body.as_deref().unwrap_or(&[]);
    let mut out = Vec::with_capacity(256 + body.len());
    let _ = write!(out, "HTTP/1.1 {status} {reason}\r\n");
    let edits: &HeaderEdits = &st.resp.headers;
    for h in base {
        if crate::http::forward::is_managed_header(h.name) || edits.get(h.name).is_some() {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    for (name, values) in &edits.list {
        if crate::http::forward::is_managed_header(name) {
            continue;
        }
        for v in values.iter().flatten() {
            let _ = write!(out, "{name}: {v}\r\n");
        }
    }
    let bodiless = (100..200).contains(&status) || status == 204 || status == 304;
    if !bodiless {
        let _ = write!(out, "Content-Length: {}\r\n", body.len());
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only && !bodiless {
        out.extend_from_slice(body);
    }
    out
}
