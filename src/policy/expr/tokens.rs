//! APIM's extension methods for credentials: `AsJwt()` / `TryParseJwt(out jwt)` on a
//! string (the token, with or without its `Bearer ` scheme) and the Jwt members
//! (Algorithm, Audiences, Claims, ExpirationTime, Id, Issuer, IssuedAt, NotBefore,
//! Subject, Type); `AsBasic()` / `TryParseBasic(out c)` and BasicAuthCredentials'
//! Username and Password. A token is decoded, not verified (validate-jwt verifies):
//! as in APIM, these only read it.
//! Must not touch: signatures and keys (policy::jwt), syntax.

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

use super::datetime::{Instant, Kind};
use super::eval::Machine;
use super::json::{self, Json};
use super::members::{not_a_member, M};
use super::value::list;
use super::*;

/// A decoded JWT: its header and claims as JSON objects.
#[derive(Debug)]
pub struct Jwt {
    pub raw: String,
    pub header: Json,
    pub claims: Json,
}

/// The token in `text` (a `Bearer ` scheme is dropped), if it is a JWT: three
/// base64url parts, the first two JSON objects.
pub fn decode(text: &str) -> Option<Jwt> {
    let t = text.trim();
    let t = match t.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => t[7..].trim_start(),
        _ => t,
    };
    let mut parts = t.split('.');
    let (h, c, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || t.len() > 64 * 1024 {
        return None;
    }
    let object = |part: &str| -> Option<Json> {
        let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
        match json::parse(std::str::from_utf8(&bytes).ok()?).ok()? {
            j @ Json::Object(_) => Some(j),
            _ => None,
        }
    };
    Some(Jwt {
        raw: t.to_string(),
        header: object(h)?,
        claims: object(c)?,
    })
}

/// `AsBasic()`: `Basic base64(user:password)`.
pub fn decode_basic(text: &str) -> Option<(String, String)> {
    let t = text.trim();
    t.get(..6).filter(|p| p.eq_ignore_ascii_case("basic "))?;
    let bytes = STANDARD.decode(t[6..].trim()).ok()?;
    let pair = String::from_utf8(bytes).ok()?;
    let (user, password) = pair.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// A claim's values as APIM lists them: a string, each element of an array, or the
/// JSON text of anything else.
fn claim_values(v: &Json) -> Vec<Val<'static>> {
    if let Json::Raw(r) = v {
        return claim_values(&super::lazy::open(r));
    }
    let text = |j: &Json| Val::Str(Cow::Owned(j.to_text().unwrap_or_default()));
    match v {
        Json::Array(a) => a.borrow().iter().map(text).collect(),
        Json::Object(_) => vec![Val::Str(Cow::Owned(v.print(false).unwrap_or_default()))],
        other => vec![text(other)],
    }
}

fn claim_text(j: &Jwt, name: &str) -> Val<'static> {
    match j.claims.get(name) {
        Some(Json::Str(s)) => Val::Str(Cow::Owned(s)),
        Some(Json::Null) | None => Val::Null,
        Some(other) => Val::Str(Cow::Owned(other.to_text().unwrap_or_default())),
    }
}

/// A numeric date claim (`exp`, `nbf`, `iat`) as a UTC DateTime, or null.
fn claim_time(j: &Jwt, name: &str) -> Val<'static> {
    let secs = match j.claims.get(name) {
        Some(Json::Int(i)) => i,
        Some(Json::Float(f)) if f.is_finite() => f as i64,
        _ => return Val::Null,
    };
    match secs
        .checked_mul(1000)
        .map(|ms| Instant::from_unix_ms(ms, Kind::Utc))
    {
        Some(Ok(t)) => Val::Date(t),
        _ => Val::Null,
    }
}

/// `AsJwt()`, `TryParseJwt(out jwt)`, `AsBasic()`, `TryParseBasic(out credentials)` on a
/// string.
pub(super) fn on_string<'e>(
    m: &mut Machine<'e>,
    s: &str,
    member: M,
    args: &'e [Node],
) -> Result<Val<'e>, EvalError> {
    m.ticks(s.len() / 64 + 1)?;
    let jwt = || decode(s).map(|j| Val::Jwt(Rc::new(j)));
    let basic = || decode_basic(s).map(|b| Val::Basic(Rc::new(b)));
    Ok(match member {
        M::AsJwt => jwt().unwrap_or(Val::Null),
        M::AsBasic => basic().unwrap_or(Val::Null),
        M::TryParseJwt | M::TryParseBasic => {
            let found = if member == M::TryParseJwt {
                jwt()
            } else {
                basic()
            };
            let ok = found.is_some();
            m.write_out(args.first(), found.unwrap_or(Val::Null))?;
            Val::Bool(ok)
        }
        _ => return Err(not_a_member("string", member)),
    })
}

pub(super) fn jwt_member<'e>(
    m: &mut Machine<'e>,
    j: &Jwt,
    member: M,
) -> Result<Val<'e>, EvalError> {
    Ok(match member {
        M::Algorithm => match j.header.get("alg") {
            Some(Json::Str(a)) => Val::Str(Cow::Owned(a)),
            _ => Val::Null,
        },
        M::Type => match j.header.get("typ") {
            Some(Json::Str(a)) => Val::Str(Cow::Owned(a)),
            _ => Val::Null,
        },
        M::Subject => claim_text(j, "sub"),
        M::Issuer => claim_text(j, "iss"),
        M::Id => claim_text(j, "jti"),
        M::ExpirationTime => claim_time(j, "exp"),
        M::NotBefore => claim_time(j, "nbf"),
        M::IssuedAt => claim_time(j, "iat"),
        M::Audiences => list(j.claims.get("aud").map_or(Vec::new(), |a| claim_values(&a))),
        M::Claims => {
            j.claims.open_children();
            let Json::Object(o) = &j.claims else {
                return Ok(Val::Null);
            };
            let entries: Vec<(String, Val<'static>)> = o
                .borrow()
                .iter()
                .map(|(k, v)| (k.clone(), list(claim_values(v))))
                .collect();
            m.charge(entries.len() * 64)?;
            Val::Dict(Rc::new(RefCell::new(entries)))
        }
        M::ToString => Val::Str(Cow::Owned(j.raw.clone())),
        _ => return Err(not_a_member("Jwt", member)),
    })
}

pub(super) fn basic_member<'e>(b: &(String, String), member: M) -> Result<Val<'e>, EvalError> {
    Ok(match member {
        // APIM's BasicAuthCredentials calls it UserId
        M::Username | M::UserId => Val::Str(Cow::Owned(b.0.clone())),
        M::Password => Val::Str(Cow::Owned(b.1.clone())),
        _ => return Err(not_a_member("BasicAuthCredentials", member)),
    })
}

/// A JWT as a value (validate-jwt's `output-token-variable-name`).
pub fn jwt_value(token: &str) -> Val<'static> {
    decode(token).map_or(Val::Null, |j| Val::Jwt(Rc::new(j)))
}
