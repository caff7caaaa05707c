//! OpenID Connect sign-in to the portal (authorization code flow with PKCE, RFC 7636):
//! discovery of the provider (cached an hour), the redirect with `state`, `nonce` and a
//! S256 code challenge, and on return the code exchanged at the token endpoint (client
//! secret in the body) and the ID token checked: its signature with the provider's JWKS
//! (RS256 or ES256, `policy::jwt`), `iss`, `aud`, `exp` and the `nonce`. The `state` is
//! bound to the browser by a cookie and used once. A person new to the portal becomes a
//! pending user with the provider's identity, approved in the console as any other.
//! Must not touch: passwords, local accounts' pages (portal.rs).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use miniserde::json::{self, Object, Value};

use crate::manage::catalogue::text;
use crate::policy::jwt::{self, Key};

/// The provider's identity label in a user's `identities`.
pub const PROVIDER: &str = "oidc";
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
const TIMEOUT: Duration = Duration::from_secs(10);
/// Leeway on `exp` and `iat` for clocks that differ a little.
const SKEW_SECS: u64 = 60;
/// Largest document read from the provider.
const MAX_DOCUMENT: u64 = 1024 * 1024;

/// The settings of the provider.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    /// Inline, or `@/path/file` (read at each use, so a rotated file takes effect).
    pub client_secret: String,
}

/// What discovery found.
#[derive(Clone)]
struct Provider {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    keys: Vec<Key>,
}

pub struct Oidc {
    settings: OidcSettings,
    discovered: Mutex<Option<(Instant, Provider)>>,
}

/// Who signed in, as the ID token says.
#[derive(Debug, PartialEq)]
pub struct Claims {
    pub subject: String,
    pub email: String,
    pub given_name: String,
    pub family_name: String,
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(TIMEOUT))
            .build(),
    )
}

fn read_json(resp: ureq::http::Response<ureq::Body>, what: &str) -> Result<Object, String> {
    let status = resp.status().as_u16();
    let text = resp
        .into_body()
        .into_with_config()
        .limit(MAX_DOCUMENT)
        .read_to_string()
        .map_err(|e| format!("{what}: {e}"))?;
    if status != 200 {
        return Err(format!("{what}: HTTP {status}"));
    }
    match json::from_str::<Value>(&text) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(format!("{what}: not a JSON object")),
    }
}

/// base64url(SHA-256(verifier)): the S256 code challenge.
pub fn challenge(verifier: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref())
}

impl Oidc {
    pub fn new(settings: OidcSettings) -> Oidc {
        Oidc {
            settings,
            discovered: Mutex::new(None),
        }
    }

    /// The provider's host, to name it on the sign-in page.
    pub fn label(&self) -> &str {
        self.settings
            .issuer
            .split_once("://")
            .map_or(&self.settings.issuer, |(_, rest)| {
                rest.split('/').next().unwrap_or(rest)
            })
    }

    fn provider(&self) -> Result<Provider, String> {
        let mut cached = self.discovered.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, p)) = cached.as_ref() {
            if at.elapsed() < DISCOVERY_TTL {
                return Ok(p.clone());
            }
        }
        let agent = agent();
        let url = format!("{}/.well-known/openid-configuration", self.settings.issuer);
        let doc = read_json(
            agent
                .get(&url)
                .call()
                .map_err(|e| format!("discovery: {e}"))?,
            "discovery",
        )?;
        let issuer = text(&doc, "issuer");
        if issuer.trim_end_matches('/') != self.settings.issuer {
            return Err(format!(
                "discovery: the document's issuer {issuer} is not {}",
                self.settings.issuer
            ));
        }
        let jwks_uri = text(&doc, "jwks_uri");
        let jwks = agent
            .get(&jwks_uri)
            .call()
            .map_err(|e| format!("jwks: {e}"))?
            .into_body()
            .into_with_config()
            .limit(MAX_DOCUMENT)
            .read_to_string()
            .map_err(|e| format!("jwks: {e}"))?;
        let provider = Provider {
            issuer,
            authorization_endpoint: text(&doc, "authorization_endpoint"),
            token_endpoint: text(&doc, "token_endpoint"),
            keys: jwt::parse_published_jwks(&jwks).map_err(|e| format!("jwks: {e}"))?,
        };
        let web_url = |u: &str| {
            (u.starts_with("https://") || u.starts_with("http://"))
                && !u.chars().any(|c| c.is_control() || c == ' ')
        };
        if !web_url(&provider.authorization_endpoint) || !web_url(&provider.token_endpoint) {
            return Err(
                "discovery: authorization_endpoint and token_endpoint must be http(s) URLs".into(),
            );
        }
        *cached = Some((Instant::now(), provider.clone()));
        Ok(provider)
    }

    /// Where to send the browser to sign in: the provider's authorization URL.
    pub fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<String, String> {
        let p = self.provider()?;
        let enc = super::html::url;
        let sep = if p.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        Ok(format!(
            "{}{sep}response_type=code&client_id={}&redirect_uri={}&scope=openid%20email%20profile\
             &state={}&nonce={}&code_challenge={}&code_challenge_method=S256",
            p.authorization_endpoint,
            enc(&self.settings.client_id),
            enc(redirect_uri),
            enc(state),
            enc(nonce),
            enc(&challenge(verifier))
        ))
    }

    fn client_secret(&self) -> Result<String, String> {
        match self.settings.client_secret.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .map_err(|e| format!("cannot read the client secret file {path}: {e}")),
            None => Ok(self.settings.client_secret.clone()),
        }
    }

    /// Exchanges `code` and checks the ID token against `nonce`.
    pub fn finish(
        &self,
        code: &str,
        redirect_uri: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<Claims, String> {
        let p = self.provider()?;
        let enc = super::html::url;
        let form = format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&client_id={}&client_secret={}&code_verifier={}",
            enc(code),
            enc(redirect_uri),
            enc(&self.settings.client_id),
            enc(&self.client_secret()?),
            enc(verifier)
        );
        let resp = agent()
            .post(&p.token_endpoint)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .send(form.as_bytes())
            .map_err(|e| format!("token endpoint: {e}"))?;
        let answer = read_json(resp, "token endpoint")?;
        let id_token = text(&answer, "id_token");
        if id_token.is_empty() {
            return Err("token endpoint: no id_token in the answer".into());
        }
        let claims = jwt::verified_claims(&id_token, &p.keys)
            .map_err(|e| format!("ID token: {}", e.message))?;
        check_claims(
            &claims,
            &p.issuer,
            &self.settings.client_id,
            nonce,
            crate::manage::store::now_unix(),
        )
    }
}

fn number(o: &Object, key: &str) -> Option<u64> {
    match o.get(key) {
        Some(Value::Number(n)) => json::to_string(n).split('.').next()?.parse().ok(),
        _ => None,
    }
}

/// `iss`, `aud` (and `azp` when there are several), `exp`, `nonce`; then who it is.
pub fn check_claims(
    claims: &Object,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: u64,
) -> Result<Claims, String> {
    if text(claims, "iss") != issuer {
        return Err("ID token: the issuer is not the provider's".into());
    }
    let audiences: Vec<String> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|a| match a {
                Value::String(a) => Some(a.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if !audiences.iter().any(|a| a == client_id)
        || (audiences.len() > 1 && text(claims, "azp") != client_id)
    {
        return Err("ID token: it was not issued to this portal".into());
    }
    match number(claims, "exp") {
        Some(exp) if exp + SKEW_SECS >= now => {}
        _ => return Err("ID token: expired or without exp".into()),
    }
    if text(claims, "nonce") != nonce {
        return Err("ID token: the nonce is not this sign-in's".into());
    }
    let subject = text(claims, "sub");
    if subject.is_empty() {
        return Err("ID token: no sub".into());
    }
    Ok(Claims {
        subject,
        email: text(claims, "email"),
        given_name: text(claims, "given_name"),
        family_name: text(claims, "family_name"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(text: &str) -> Object {
        match json::from_str::<Value>(text) {
            Ok(Value::Object(o)) => o,
            _ => panic!(),
        }
    }

    #[test]
    fn challenges_are_rfc_7636_s256() {
        // RFC 7636, appendix B
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn id_token_claims_are_checked() {
        let ok = r#"{"iss": "https://idp", "aud": "portal", "exp": 2000, "nonce": "n1", "sub": "42", "email": "a@b"}"#;
        let c = check_claims(&claims(ok), "https://idp", "portal", "n1", 1000).unwrap();
        assert_eq!((c.subject.as_str(), c.email.as_str()), ("42", "a@b"));
        for (bad, why) in [
            (ok.replace("https://idp", "https://evil"), "issuer"),
            (
                ok.replace("\"portal\"", "\"other\""),
                "not issued to this portal",
            ),
            (ok.replace("2000", "900"), "expired"),
            (ok.replace("n1", "n2"), "nonce"),
            (
                ok.replace("\"aud\": \"portal\"", "\"aud\": [\"portal\", \"x\"]"),
                "not issued to this portal",
            ),
        ] {
            let e = check_claims(&claims(&bad), "https://idp", "portal", "n1", 1000).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }
}
