//! validate-jwt: compiling the policy (keys, issuers, audiences, claims) and checking a
//! compact JWS with ring — HS256, RS256 and ES256, keys inline (`<key>`) or as a JWKS
//! document (`<jwks>`). The algorithm a token names must match the kind of key it is
//! checked with, so `alg: none` and key confusion (an HS256 token "signed" with an RSA
//! public key) fail. Time comes in as an argument.
//! Must not touch: the loop, sockets, the clock; tokens never reach a log line.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use miniserde::json::{Number, Value};
use ring::{hmac, signature};
use roxmltree::Node;

use super::expr::Expr;
use super::keyring::KeySet;
use super::Text;

#[derive(Debug, Clone)]
pub enum TokenSource {
    Header(String),
    Query(String),
    Value(Text),
}

#[derive(Debug, Clone)]
pub enum Key {
    Hmac {
        kid: Option<String>,
        secret: Vec<u8>,
    },
    Rsa {
        kid: Option<String>,
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed P-256 point (0x04 || x || y).
    Ec { kid: Option<String>, point: Vec<u8> },
}

#[derive(Debug, Clone)]
pub struct Claim {
    pub name: String,
    pub match_all: bool,
    pub separator: Option<String>,
    pub values: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ValidateJwt {
    /// Identity of this policy in the verified-token cache (unique per runtime).
    pub id: u64,
    pub source: TokenSource,
    pub failed_code: u16,
    pub failed_message: Option<String>,
    pub require_expiration: bool,
    pub require_scheme: Option<String>,
    pub require_signed: bool,
    pub clock_skew: u64,
    pub output_variable: Option<String>,
    pub keys: Vec<Key>,
    /// `<openid-config url>`: keys (and the issuer) from OpenID Connect discovery, as
    /// the agent fetched them (`policy::keyring`).
    pub openid: Vec<String>,
    /// Literals or expressions (an expression's value is computed per call, and such a
    /// policy does not remember verified tokens).
    pub audiences: Vec<Text>,
    /// validate-azure-ad-token's `client-application-ids`: the token's `azp` (v2) or
    /// `appid` (v1) must be one of them.
    pub client_apps: Vec<String>,
    /// The policy's name for `context.LastError.Source`.
    pub element: &'static str,
    pub issuers: Vec<String>,
    pub claims: Vec<Claim>,
}

static AUTHORITY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets where validate-azure-ad-token finds tenants (once, at start).
pub fn set_azure_ad_authority(url: String) {
    let _ = AUTHORITY.set(url);
}

/// Where validate-azure-ad-token finds tenants.
pub fn azure_ad_authority() -> &'static str {
    AUTHORITY
        .get()
        .map_or(crate::settings::AZURE_AD_AUTHORITY, String::as_str)
}

/// Why a token was refused: APIM's error reasons, with a message for `LastError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtError {
    pub reason: &'static str,
    pub message: String,
}

fn fail(reason: &'static str, message: impl Into<String>) -> JwtError {
    JwtError {
        reason,
        message: message.into(),
    }
}

/// What a valid token allows the gateway to remember (a verified-token cache entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub exp: Option<u64>,
    pub nbf: Option<u64>,
}

pub(crate) type PErr<'a, 'i> = (Option<Node<'a, 'i>>, String);

fn b64url(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

/// Compiles `<validate-jwt>`.
pub fn parse_policy<'a, 'i>(n: Node<'a, 'i>) -> Result<ValidateJwt, PErr<'a, 'i>> {
    parse_policy_with(n, &[], false)
}

/// `parse_policy`, allowing `extra` attributes; `azure`: validate-azure-ad-token's form
/// (the token in `Authorization` unless said otherwise, keys and issuers from the
/// tenant, its application ids read by the caller).
pub(crate) fn parse_policy_with<'a, 'i>(
    n: Node<'a, 'i>,
    extra: &[&str],
    azure: bool,
) -> Result<ValidateJwt, PErr<'a, 'i>> {
    let element = n.tag_name().name();
    const ATTRS: &[&str] = &[
        "id",
        "header-name",
        "query-parameter-name",
        "token-value",
        "failed-validation-httpcode",
        "failed-validation-error-message",
        "require-expiration-time",
        "require-scheme",
        "require-signed-tokens",
        "clock-skew",
        "output-token-variable-name",
    ];
    let here = |m: String| (Some(n), m);
    for a in n.attributes() {
        if !ATTRS.contains(&a.name()) && !extra.contains(&a.name()) {
            return Err(here(format!(
                "<{element}>: attribute '{}' is not supported",
                a.name()
            )));
        }
    }
    let sources = [
        n.attribute("header-name"),
        n.attribute("query-parameter-name"),
        n.attribute("token-value"),
    ];
    let given = sources.iter().filter(|s| s.is_some()).count();
    if given > 1 || (given == 0 && !azure) {
        return Err(here(format!(
            "<{element}>: exactly one of header-name, query-parameter-name and token-value is required"
        )));
    }
    let source = if given == 0 {
        TokenSource::Header("Authorization".to_string())
    } else if let Some(h) = n.attribute("header-name") {
        TokenSource::Header(h.to_string())
    } else if let Some(q) = n.attribute("query-parameter-name") {
        TokenSource::Query(q.to_string())
    } else {
        let v = n.attribute("token-value").unwrap_or("").trim();
        let t = if let Some(inner) = v.strip_prefix("@(").and_then(|r| r.strip_suffix(')')) {
            Text::Expr(
                Expr::parse(inner, false)
                    .map_err(|e| here(format!("<validate-jwt>: token-value: {e}")))?,
            )
        } else {
            Text::Lit(v.to_string())
        };
        TokenSource::Value(t)
    };
    let flag = |name: &str, default: bool| -> Result<bool, PErr<'a, 'i>> {
        match n.attribute(name) {
            None => Ok(default),
            Some("true") | Some("True") => Ok(true),
            Some("false") | Some("False") => Ok(false),
            Some(_) => Err(here(format!(
                "<validate-jwt>: {name} must be true or false"
            ))),
        }
    };
    let failed_code = match n.attribute("failed-validation-httpcode") {
        None => 401,
        Some(c) => match c.trim().parse::<u16>() {
            Ok(c) if (200..=599).contains(&c) => c,
            _ => {
                return Err(here(
                    "<validate-jwt>: failed-validation-httpcode must be 200..599".into(),
                ))
            }
        },
    };
    let clock_skew = match n.attribute("clock-skew") {
        None => 0,
        Some(s) => s
            .trim()
            .parse()
            .map_err(|_| here("<validate-jwt>: clock-skew must be seconds".into()))?,
    };
    let mut v = ValidateJwt {
        id: 0,
        source,
        failed_code,
        failed_message: n
            .attribute("failed-validation-error-message")
            .map(str::to_string),
        require_expiration: flag("require-expiration-time", true)?,
        require_scheme: n.attribute("require-scheme").map(str::to_string),
        require_signed: flag("require-signed-tokens", true)?,
        clock_skew,
        output_variable: n
            .attribute("output-token-variable-name")
            .map(str::to_string),
        keys: Vec::new(),
        openid: Vec::new(),
        audiences: Vec::new(),
        client_apps: Vec::new(),
        element: "validate-jwt",
        issuers: Vec::new(),
        claims: Vec::new(),
    };
    if !v.require_signed {
        return Err(here(
            "<validate-jwt>: require-signed-tokens=\"false\" is not supported (unsigned tokens are never accepted)".into(),
        ));
    }
    parse_contents(n, &mut v, azure)?;
    if v.keys.is_empty() && v.openid.is_empty() && !azure {
        return Err(here(
            "<validate-jwt>: <issuer-signing-keys> (at least one key) or <openid-config> is required".into(),
        ));
    }
    Ok(v)
}

/// The children of `<validate-jwt>`: keys, audiences, issuers, required claims.
fn parse_contents<'a, 'i>(
    n: Node<'a, 'i>,
    v: &mut ValidateJwt,
    azure: bool,
) -> Result<(), PErr<'a, 'i>> {
    for el in n.children().filter(|c| c.is_element()) {
        let at = |m: String| (Some(el), m);
        let name = el.tag_name().name();
        if azure && !matches!(name, "audiences" | "required-claims") {
            // the tenant gives keys and issuers; application ids are the caller's
            continue;
        }
        match name {
            "issuer-signing-keys" => {
                for k in el.children().filter(|c| c.is_element()) {
                    match k.tag_name().name() {
                        "key" => v.keys.push(parse_key(k)?),
                        "jwks" => {
                            let keys = parse_jwks(k.text().unwrap_or(""))
                                .map_err(|m| (Some(k), format!("<jwks>: {m}")))?;
                            v.keys.extend(keys);
                        }
                        other => {
                            return Err((
                                Some(k),
                                format!("<{other}> is not supported in <issuer-signing-keys> (use <key> or <jwks>)"),
                            ))
                        }
                    }
                }
            }
            "audiences" => {
                for c in listed(el, "audience")? {
                    v.audiences.push(text_of(c, c.text().unwrap_or("").trim())?);
                }
            }
            "issuers" => {
                for c in listed(el, "issuer")? {
                    v.issuers.push(c.text().unwrap_or("").trim().to_string());
                }
            }
            "required-claims" => v.claims.extend(parse_claims(el)?),
            "openid-config" => {
                let url = el.attribute("url").map(str::trim).unwrap_or("");
                if !url.starts_with("https://") && !url.starts_with("http://") {
                    return Err(at(
                        "<openid-config>: url must be the http(s):// address of an OpenID configuration".into(),
                    ));
                }
                if el.attributes().any(|a| a.name() != "url")
                    || el.children().any(|c| c.is_element())
                {
                    return Err(at("<openid-config> takes only url".into()));
                }
                v.openid.push(url.to_string());
            }
            "decryption-keys" => {
                return Err(at(
                    "<decryption-keys> is not supported: encrypted tokens (JWE) are not accepted"
                        .into(),
                ))
            }
            other => return Err(at(format!("<{other}> is not supported in <validate-jwt>"))),
        }
    }
    Ok(())
}

/// The `<child>` elements of `el` (anything else is an error).
pub(crate) fn listed<'a, 'i>(
    el: Node<'a, 'i>,
    child: &str,
) -> Result<Vec<Node<'a, 'i>>, PErr<'a, 'i>> {
    el.children()
        .filter(|c| c.is_element())
        .map(|c| {
            if c.has_tag_name(child) {
                Ok(c)
            } else {
                Err((Some(c), format!("expected <{child}>")))
            }
        })
        .collect()
}

/// A value that may be an expression (`@(...)`).
pub(crate) fn text_of<'a, 'i>(n: Node<'a, 'i>, v: &str) -> Result<Text, PErr<'a, 'i>> {
    match v.strip_prefix("@(").and_then(|r| r.strip_suffix(')')) {
        Some(inner) => Expr::parse(inner, false)
            .map(Text::Expr)
            .map_err(|e| (Some(n), format!("<{}>: {e}", n.tag_name().name()))),
        None => Ok(Text::Lit(v.to_string())),
    }
}

/// `<required-claims>`: each `<claim>` with its values.
pub(crate) fn parse_claims<'a, 'i>(el: Node<'a, 'i>) -> Result<Vec<Claim>, PErr<'a, 'i>> {
    let mut claims = Vec::new();
    for c in el.children().filter(|c| c.is_element()) {
        if !c.has_tag_name("claim") {
            return Err((Some(c), "expected <claim>".into()));
        }
        let name = c
            .attribute("name")
            .ok_or_else(|| (Some(c), "<claim>: attribute 'name' is required".into()))?;
        let match_all = match c.attribute("match").unwrap_or("all") {
            "all" => true,
            "any" => false,
            _ => return Err((Some(c), "<claim>: match must be all or any".into())),
        };
        let mut values = Vec::new();
        for val in c.children().filter(|x| x.is_element()) {
            if !val.has_tag_name("value") {
                return Err((Some(val), "expected <value>".into()));
            }
            values.push(val.text().unwrap_or("").to_string());
        }
        claims.push(Claim {
            name: name.to_string(),
            match_all,
            separator: c.attribute("separator").map(str::to_string),
            values,
        });
    }
    Ok(claims)
}

fn parse_key<'a, 'i>(k: Node<'a, 'i>) -> Result<Key, PErr<'a, 'i>> {
    let kid = k.attribute("id").map(str::to_string);
    let bad = |m: &str| (Some(k), format!("<key>: {m}"));
    if k.attribute("certificate-id").is_some() {
        return Err(bad(
            "certificate-id is not supported; give n and e (RSA) or x and y (EC)",
        ));
    }
    if let (Some(n), Some(e)) = (k.attribute("n"), k.attribute("e")) {
        return Ok(Key::Rsa {
            kid,
            n: b64url(n).ok_or_else(|| bad("n is not base64url"))?,
            e: b64url(e).ok_or_else(|| bad("e is not base64url"))?,
        });
    }
    if let (Some(x), Some(y)) = (k.attribute("x"), k.attribute("y")) {
        if k.attribute("crv").unwrap_or("P-256") != "P-256" {
            return Err(bad("only crv=\"P-256\" is supported"));
        }
        return ec_key(kid, x, y).map_err(|m| bad(&m));
    }
    let text = k.text().unwrap_or("").trim();
    if text.is_empty() {
        return Err(bad("expected a base64 symmetric key, n and e, or x and y"));
    }
    let secret = STANDARD
        .decode(text)
        .map_err(|_| bad("a symmetric key must be base64"))?;
    Ok(Key::Hmac { kid, secret })
}

fn ec_key(kid: Option<String>, x: &str, y: &str) -> Result<Key, String> {
    let (x, y) = (
        b64url(x).ok_or("x is not base64url")?,
        b64url(y).ok_or("y is not base64url")?,
    );
    if x.len() != 32 || y.len() != 32 {
        return Err("x and y must be 32 bytes each (P-256)".into());
    }
    let mut point = vec![4u8];
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(Key::Ec { kid, point })
}

/// A JWKS document (`{"keys": [...]}`) → keys. RSA, EC P-256 and oct keys; any other
/// key is an error.
pub fn parse_jwks(text: &str) -> Result<Vec<Key>, String> {
    jwks_keys(text)?
        .iter()
        .enumerate()
        .map(|(i, k)| jwk(i, k))
        .collect()
}

/// A JWKS document an identity provider publishes: the signing keys edgegate can check
/// (RSA, EC P-256, oct); keys for encryption or of other kinds are left out. An error
/// when none is left.
pub fn parse_published_jwks(text: &str) -> Result<Vec<Key>, String> {
    let keys = jwks_keys(text)?;
    let usable: Vec<Key> = keys
        .iter()
        .enumerate()
        .filter(|(_, k)| !matches!(k, Value::Object(o) if matches!(o.get("use"), Some(Value::String(u)) if u != "sig")))
        .filter_map(|(i, k)| jwk(i, k).ok())
        .collect();
    if usable.is_empty() {
        return Err(format!(
            "none of its {} keys is an RSA, EC P-256 or oct signing key",
            keys.len()
        ));
    }
    Ok(usable)
}

fn jwks_keys(text: &str) -> Result<Vec<Value>, String> {
    let doc: Value = miniserde::json::from_str(text.trim()).map_err(|_| "not valid JSON")?;
    let Value::Object(mut o) = doc else {
        return Err("expected an object with \"keys\"".into());
    };
    match o.remove("keys") {
        Some(Value::Array(keys)) => Ok(keys.into_iter().collect()),
        _ => Err("expected an object with \"keys\"".into()),
    }
}

/// One JSON Web Key (`i`: its place, for errors).
fn jwk(i: usize, k: &Value) -> Result<Key, String> {
    let Value::Object(k) = k else {
        return Err(format!("keys[{i}] is not an object"));
    };
    let s = |name: &str| match k.get(name) {
        Some(Value::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let kid = s("kid").map(str::to_string);
    match s("kty") {
        Some("RSA") => {
            let (Some(n), Some(e)) = (s("n"), s("e")) else {
                return Err(format!("keys[{i}]: RSA key needs n and e"));
            };
            Ok(Key::Rsa {
                kid,
                n: b64url(n).ok_or(format!("keys[{i}].n is not base64url"))?,
                e: b64url(e).ok_or(format!("keys[{i}].e is not base64url"))?,
            })
        }
        Some("EC") => {
            if s("crv") != Some("P-256") {
                return Err(format!("keys[{i}]: only crv P-256 is supported"));
            }
            let (Some(x), Some(y)) = (s("x"), s("y")) else {
                return Err(format!("keys[{i}]: EC key needs x and y"));
            };
            ec_key(kid, x, y).map_err(|m| format!("keys[{i}]: {m}"))
        }
        Some("oct") => {
            let Some(k) = s("k") else {
                return Err(format!("keys[{i}]: oct key needs k"));
            };
            Ok(Key::Hmac {
                kid,
                secret: b64url(k).ok_or(format!("keys[{i}].k is not base64url"))?,
            })
        }
        other => Err(format!(
            "keys[{i}]: kty {} is not supported",
            other.unwrap_or("(missing)")
        )),
    }
}

/// The signature of `signed` checked with one of `keys` of the kind the token's algorithm
/// names (and its key id, when both have one).
fn check_signature<'k>(
    alg: &str,
    kid: Option<&str>,
    signed: &[u8],
    sig: &[u8],
    keys: impl Iterator<Item = &'k Key>,
) -> Result<(), JwtError> {
    let kind_ok = |k: &Key| {
        matches!(
            (alg, k),
            ("HS256", Key::Hmac { .. }) | ("RS256", Key::Rsa { .. }) | ("ES256", Key::Ec { .. })
        )
    };
    if !matches!(alg, "HS256" | "RS256" | "ES256") {
        return Err(fail(
            "TokenSignatureAlgorithmNotAllowed",
            format!("Signature algorithm '{alg}' is not allowed."),
        ));
    }
    let candidates: Vec<&Key> = keys
        .filter(|k| kind_ok(k))
        .filter(|k| {
            let key_id = match k {
                Key::Hmac { kid, .. } | Key::Rsa { kid, .. } | Key::Ec { kid, .. } => kid,
            };
            match (kid, key_id) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            }
        })
        .collect();
    if candidates.is_empty() {
        return Err(fail(
            "TokenSignatureKeyNotFound",
            "No signing key matches the token's algorithm and key id.",
        ));
    }
    let verified = candidates.iter().any(|k| match k {
        Key::Hmac { secret, .. } => {
            let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
            hmac::verify(&key, signed, sig).is_ok()
        }
        Key::Rsa { n, e, .. } => signature::RsaPublicKeyComponents { n, e }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed, sig)
            .is_ok(),
        Key::Ec { point, .. } => {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signed, sig)
                .is_ok()
        }
    });
    if !verified {
        return Err(fail(
            "TokenSignatureInvalid",
            "Signature validation failed.",
        ));
    }
    Ok(())
}

/// The claims of a compact JWS signed with one of `keys` (HS256, RS256, ES256): the
/// management plane's check of an OpenID Connect ID token, whose claims it then checks
/// itself. Nothing about the claims is checked here.
pub fn verified_claims(token: &str, keys: &[Key]) -> Result<miniserde::json::Object, JwtError> {
    let token = split_compact(token)?;
    let alg = token.header_field("alg").unwrap_or("");
    check_signature(
        alg,
        token.header_field("kid"),
        token.signed,
        &token.sig,
        keys.iter(),
    )?;
    token.claims()
}

/// A compact JWS taken apart: its header read, its signature decoded, the payload left
/// for after the signature is checked.
struct Compact<'t> {
    header: miniserde::json::Object,
    payload: &'t str,
    /// `header.payload` as sent: what the signature covers.
    signed: &'t [u8],
    sig: Vec<u8>,
}

fn split_compact(token: &str) -> Result<Compact<'_>, JwtError> {
    let invalid = |m: &str| fail("TokenInvalid", m);
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid(
            "The token is not a compact JWS (three dot-separated parts).",
        ));
    };
    let header: Value = b64url(h)
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|t| miniserde::json::from_str(&t).ok())
        .ok_or_else(|| invalid("The token header is not base64url JSON."))?;
    let Value::Object(header) = header else {
        return Err(invalid("The token header is not a JSON object."));
    };
    let sig = b64url(s).ok_or_else(|| invalid("The signature is not base64url."))?;
    Ok(Compact {
        header,
        payload: p,
        signed: &token.as_bytes()[..h.len() + 1 + p.len()],
        sig,
    })
}

impl Compact<'_> {
    fn header_field(&self, key: &str) -> Option<&str> {
        match self.header.get(key) {
            Some(Value::String(v)) => Some(v.as_str()),
            _ => None,
        }
    }

    fn claims(&self) -> Result<miniserde::json::Object, JwtError> {
        let invalid = |m: &str| fail("TokenInvalid", m);
        let claims: Value = b64url(self.payload)
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|t| miniserde::json::from_str(&t).ok())
            .ok_or_else(|| invalid("The token payload is not base64url JSON."))?;
        match claims {
            Value::Object(claims) => Ok(claims),
            _ => Err(invalid("The token payload is not a JSON object.")),
        }
    }
}

fn num(v: Option<&Value>) -> Option<u64> {
    match v {
        Some(Value::Number(Number::U64(n))) => Some(*n),
        Some(Value::Number(Number::I64(n))) if *n >= 0 => Some(*n as u64),
        Some(Value::Number(Number::F64(f))) if *f >= 0.0 => Some(*f as u64),
        _ => None,
    }
}

impl ValidateJwt {
    /// Checks the signature and the time-independent claims; returns the lifetime to be
    /// checked against the clock (also on every cache hit, see `check_lifetime`).
    pub fn verify(&self, token: &str) -> Result<Lifetime, JwtError> {
        let audiences: Vec<String> = self
            .audiences
            .iter()
            .filter_map(|a| match a {
                Text::Lit(l) => Some(l.clone()),
                Text::Expr(_) => None,
            })
            .collect();
        self.verify_with(token, &[], &audiences)
    }

    /// Whether an audience is computed per call (then verified tokens are not
    /// remembered: the next call may expect another audience).
    pub fn computes_audiences(&self) -> bool {
        self.audiences.iter().any(|a| matches!(a, Text::Expr(_)))
    }

    /// `verify` with the key sets fetched for `<openid-config>` as well (their keys
    /// sign, their issuers are allowed) and this call's audiences.
    pub fn verify_with(
        &self,
        token: &str,
        fetched: &[&KeySet],
        audiences: &[String],
    ) -> Result<Lifetime, JwtError> {
        let invalid = |m: &str| fail("TokenInvalid", m);
        let token = split_compact(token)?;
        let alg = token
            .header_field("alg")
            .ok_or_else(|| invalid("The token header has no alg."))?;
        let kid = token.header_field("kid");
        self.check_signature(alg, kid, token.signed, &token.sig, fetched)?;
        let claims = token.claims()?;
        let exp = num(claims.get("exp"));
        if claims.get("exp").is_some() && exp.is_none() {
            return Err(invalid("exp is not a number."));
        }
        if self.require_expiration && exp.is_none() {
            return Err(fail(
                "TokenExpirationTimeNotPresent",
                "The token has no expiration time.",
            ));
        }
        self.check_claims(&claims, fetched, audiences)?;
        Ok(Lifetime {
            exp,
            nbf: num(claims.get("nbf")),
        })
    }

    /// The signature, with a key of the kind the token's algorithm names (and its key
    /// id, when both have one).
    fn check_signature(
        &self,
        alg: &str,
        kid: Option<&str>,
        signed: &[u8],
        sig: &[u8],
        fetched: &[&KeySet],
    ) -> Result<(), JwtError> {
        let keys = self
            .keys
            .iter()
            .chain(fetched.iter().flat_map(|set| set.keys.iter()));
        check_signature(alg, kid, signed, sig, keys)
    }

    /// Issuers, audiences and required claims.
    fn check_claims(
        &self,
        claims: &std::collections::BTreeMap<String, Value>,
        fetched: &[&KeySet],
        audiences: &[String],
    ) -> Result<(), JwtError> {
        let discovered = fetched.iter().filter_map(|set| set.issuer.as_deref());
        if !self.issuers.is_empty() || discovered.clone().next().is_some() {
            let iss = match claims.get("iss") {
                Some(Value::String(s)) => s.as_str(),
                _ => "",
            };
            let mut allowed = self.issuers.iter().map(String::as_str).chain(discovered);
            if !allowed.any(|i| i == iss) {
                return Err(fail("TokenIssuerNotAllowed", "Issuer validation failed."));
            }
        }
        if !self.client_apps.is_empty() {
            let app = match (claims.get("azp"), claims.get("appid")) {
                (Some(Value::String(a)), _) | (None, Some(Value::String(a))) => a.as_str(),
                _ => "",
            };
            if !self.client_apps.iter().any(|c| c == app) {
                return Err(fail(
                    "TokenClientApplicationNotAllowed",
                    "The token's client application is not allowed.",
                ));
            }
        }
        if !audiences.is_empty() {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => audiences.contains(a),
                Some(Value::Array(list)) => list
                    .iter()
                    .any(|a| matches!(a, Value::String(a) if audiences.contains(a))),
                _ => false,
            };
            if !ok {
                return Err(fail(
                    "TokenAudienceNotAllowed",
                    "Audience validation failed.",
                ));
            }
        }
        let mut missing = Vec::new();
        for c in &self.claims {
            let have: Vec<String> = match claims.get(&c.name) {
                None => {
                    missing.push(c.name.as_str());
                    continue;
                }
                Some(Value::String(s)) => match &c.separator {
                    Some(sep) if !sep.is_empty() => {
                        s.split(sep.as_str()).map(str::to_string).collect()
                    }
                    _ => vec![s.clone()],
                },
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => json_text(other),
                    })
                    .collect(),
                Some(other) => vec![json_text(other)],
            };
            if c.values.is_empty() {
                continue;
            }
            let ok = if c.match_all {
                c.values.iter().all(|v| have.contains(v))
            } else {
                c.values.iter().any(|v| have.contains(v))
            };
            if !ok {
                return Err(fail(
                    "TokenClaimValueNotAllowed",
                    format!("Claim {} value is not allowed.", c.name),
                ));
            }
        }
        if !missing.is_empty() {
            return Err(fail(
                "TokenClaimNotFound",
                format!(
                    "JWT is missing the following claims: {}",
                    missing.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// exp and nbf against `now` (Unix seconds) with the policy's clock skew.
    pub fn check_lifetime(&self, life: Lifetime, now: u64) -> Result<(), JwtError> {
        if let Some(exp) = life.exp {
            if now >= exp.saturating_add(self.clock_skew) {
                return Err(fail(
                    "TokenExpired",
                    "Lifetime validation failed. The token is expired.",
                ));
            }
        }
        if let Some(nbf) = life.nbf {
            if now.saturating_add(self.clock_skew) < nbf {
                return Err(fail(
                    "TokenNotYetValid",
                    "Lifetime validation failed. The token is not yet valid.",
                ));
            }
        }
        Ok(())
    }
}

fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}
