//! The gateway identity's token fetcher (authentication-managed-identity on a
//! self-hosted host): an OAuth 2.0 client (`identity.*`) that gets an access token per
//! resource with the client-credentials flow, for every resource the running config
//! names and those the loop asks for, again a little before each expires (at 90 % of
//! its life, at least a minute ahead), sooner after a failure (30 s doubling to 15 min).
//! Tokens go to the agent's inbox and on to the loop (`Coordinator::token_fetched`);
//! they are never stored or logged. The client proves itself with a secret (`@/path/file`
//! read at each fetch), a client assertion from a file (a workload identity's federated
//! token, read at each fetch), or a certificate whose key signs an assertion (RFC 7523:
//! RS256 or ES256, with the `x5t` / `x5t#S256` thumbprints Entra asks for); none of them
//! leaves this thread.
//! Must not touch: the loop, the store.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::time::Duration;

use super::fetch::Schedule;
use super::ToAgent;
use crate::settings::Secret;

/// Least time between two fetches of one resource the loop asked for.
const MIN_REFETCH: Duration = Duration::from_secs(10);

/// How the gateway's client proves itself to the token endpoint.
#[derive(Debug, Clone)]
pub enum Credential {
    Secret(Secret),
    /// A JWT someone else issued (Kubernetes workload identity), read at each fetch.
    AssertionFile(PathBuf),
    /// A certificate (PEM) and its private key (PEM): the gateway signs the assertion.
    Certificate {
        certificate: PathBuf,
        key: PathBuf,
    },
}

/// The client the gateway is.
#[derive(Debug, Clone)]
pub struct Client {
    pub endpoint: String,
    pub client_id: String,
    pub credential: Credential,
    /// An Entra tenant's endpoint (scope `<resource>/.default` only) or any other
    /// OAuth 2.0 server (`resource` too).
    pub entra: bool,
}

/// What the agent asks of the fetcher.
pub enum Ask {
    /// The resources the running config names (others the loop asked for stay).
    Want(Vec<String>),
    /// A token for this one (the loop had none).
    Fetch(String),
}

/// One fetch's outcome: the token and its lifetime, or why not.
#[derive(Debug)]
pub struct Fetched {
    pub resource: String,
    pub result: Result<(Secret, Duration), String>,
}

pub struct Fetcher {
    asks: Sender<Ask>,
}

impl Fetcher {
    pub fn ask(&self, ask: Ask) {
        let _ = self.asks.send(ask);
    }
}

/// Starts the fetcher thread; outcomes go to `inbox`.
pub fn spawn(client: Client, inbox: SyncSender<ToAgent>) -> std::io::Result<Fetcher> {
    let (asks, asked) = mpsc::channel();
    std::thread::Builder::new()
        .name("edgegate-identity".into())
        .spawn(move || run(&client, &asked, &inbox))?;
    Ok(Fetcher { asks })
}

fn run(client: &Client, asked: &Receiver<Ask>, inbox: &SyncSender<ToAgent>) {
    let mut resources = Schedule::default();
    loop {
        match asked.recv_timeout(resources.wait()) {
            Ok(Ask::Want(list)) => list.into_iter().for_each(|r| resources.add(r)),
            Ok(Ask::Fetch(r)) => {
                resources.add(r.clone());
                resources.soon(&r, MIN_REFETCH);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        for resource in resources.due() {
            let result = token(client, &resource);
            // renewed at 90 % of its life, at least a minute ahead
            let again = result.as_ref().ok().map(|(_, life)| {
                let ahead = (*life / 10).max(Duration::from_secs(60));
                life.saturating_sub(ahead).max(Duration::from_secs(10))
            });
            resources.fetched(&resource, again);
            if inbox
                .send(ToAgent::Token(Fetched { resource, result }))
                .is_err()
            {
                return;
            }
        }
    }
}

/// `application/x-www-form-urlencoded` escaping.
fn form(v: &str) -> String {
    crate::http::query::encode(v)
}

/// The secret: inline, or the content of `@/path/file`.
fn secret(s: &Secret) -> Result<String, String> {
    match s.0.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map(|t| t.trim().to_string())
            .map_err(|e| format!("cannot read identity.client.secret file {path}: {e}")),
        None => Ok(s.0.clone()),
    }
}

/// The form fields of a client assertion.
fn assertion(jwt: &str) -> String {
    format!(
        "client_assertion_type={}&client_assertion={}",
        form("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        form(jwt)
    )
}

/// How long a signed assertion is good for.
const ASSERTION_LIFE_S: u64 = 600;

/// A client assertion signed with the certificate's key (RFC 7523): issuer and
/// subject the client id, audience the token endpoint, ten minutes, a random id.
fn signed_assertion(client: &Client, certificate: &Path, key: &Path) -> Result<String, String> {
    use base64::Engine;
    use rustls_pki_types::pem::PemObject;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let cert = rustls_pki_types::CertificateDer::from_pem_file(certificate).map_err(|e| {
        format!(
            "cannot read identity.client.certificate {}: {e}",
            certificate.display()
        )
    })?;
    // the key's text never goes into a message
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key).map_err(|_| {
        format!(
            "identity.client.key {}: not a readable PEM private key",
            key.display()
        )
    })?;
    let signer = Signer::of(&key)?;
    let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, cert.as_ref());
    let sha256 = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    let header = format!(
        r#"{{"alg":"{}","typ":"JWT","x5t":"{}","x5t#S256":"{}"}}"#,
        signer.algorithm(),
        b64.encode(sha1),
        b64.encode(sha256)
    );
    let now = super::unix_now_s();
    let mut jti = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut jti)
        .map_err(|_| "no randomness for the assertion's id")?;
    let id = miniserde::json::to_string(&client.client_id);
    let claims = format!(
        r#"{{"aud":{},"iss":{id},"sub":{id},"jti":"{}","nbf":{now},"iat":{now},"exp":{}}}"#,
        miniserde::json::to_string(&client.endpoint),
        crate::x509::upper_hex(&jti).to_ascii_lowercase(),
        now + ASSERTION_LIFE_S
    );
    let input = format!("{}.{}", b64.encode(header), b64.encode(claims));
    let signature = signer.sign(input.as_bytes())?;
    Ok(format!("{input}.{}", b64.encode(signature)))
}

/// An assertion's signing key: RSA (RS256) or P-256 (ES256).
enum Signer {
    Rsa(ring::signature::RsaKeyPair),
    Ec(ring::signature::EcdsaKeyPair),
}

impl Signer {
    fn of(key: &rustls_pki_types::PrivateKeyDer) -> Result<Signer, String> {
        use rustls_pki_types::PrivateKeyDer as K;
        let unsupported = || {
            "identity.client.key: an RSA key (PKCS#8 or PKCS#1) or a P-256 key (PKCS#8) is needed"
                .to_string()
        };
        match key {
            K::Pkcs1(k) => ring::signature::RsaKeyPair::from_der(k.secret_pkcs1_der())
                .map(Signer::Rsa)
                .map_err(|_| unsupported()),
            K::Pkcs8(k) => {
                let der = k.secret_pkcs8_der();
                if let Ok(rsa) = ring::signature::RsaKeyPair::from_pkcs8(der) {
                    return Ok(Signer::Rsa(rsa));
                }
                ring::signature::EcdsaKeyPair::from_pkcs8(
                    &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    der,
                    &ring::rand::SystemRandom::new(),
                )
                .map(Signer::Ec)
                .map_err(|_| unsupported())
            }
            _ => Err(unsupported()),
        }
    }

    fn algorithm(&self) -> &'static str {
        match self {
            Signer::Rsa(_) => "RS256",
            Signer::Ec(_) => "ES256",
        }
    }

    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, String> {
        let rng = ring::rand::SystemRandom::new();
        match self {
            Signer::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&ring::signature::RSA_PKCS1_SHA256, &rng, input, &mut sig)
                    .map_err(|_| "signing the assertion failed")?;
                Ok(sig)
            }
            Signer::Ec(k) => k
                .sign(&rng, input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "signing the assertion failed".into()),
        }
    }
}

/// A token for `resource` with the client-credentials flow.
pub fn token(client: &Client, resource: &str) -> Result<(Secret, Duration), String> {
    let scope = if resource.ends_with("/.default") {
        resource.to_string()
    } else {
        format!("{}/.default", resource.trim_end_matches('/'))
    };
    let proof = match &client.credential {
        Credential::Secret(s) => format!("client_secret={}", form(&secret(s)?)),
        Credential::AssertionFile(path) => {
            let jwt = std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "cannot read identity.client.assertion.file {}: {e}",
                    path.display()
                )
            })?;
            assertion(jwt.trim())
        }
        Credential::Certificate { certificate, key } => {
            assertion(&signed_assertion(client, certificate, key)?)
        }
    };
    let mut body = format!(
        "grant_type=client_credentials&client_id={}&{proof}&scope={}",
        form(&client.client_id),
        form(&scope)
    );
    if !client.entra {
        body.push_str(&format!("&resource={}", form(resource)));
    }
    let answer = super::fetch::call(
        "POST",
        &client.endpoint,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )?;
    let text = answer.body_text();
    let doc: miniserde::json::Value = miniserde::json::from_str(&text)
        .map_err(|_| format!("the token endpoint answered {} without JSON", answer.status))?;
    let miniserde::json::Value::Object(o) = doc else {
        return Err("the token endpoint's answer is not a JSON object".into());
    };
    if answer.status != 200 {
        // the error code and description, never the request
        let said = |k: &str| match o.get(k) {
            Some(miniserde::json::Value::String(s)) => s.chars().take(200).collect(),
            _ => String::new(),
        };
        return Err(format!(
            "the token endpoint answered {}: {} {}",
            answer.status,
            said("error"),
            said("error_description")
        ));
    }
    let Some(miniserde::json::Value::String(access)) = o.get("access_token") else {
        return Err("the token endpoint's answer has no access_token".into());
    };
    let life = match o.get("expires_in") {
        Some(miniserde::json::Value::Number(n)) => match n {
            miniserde::json::Number::U64(u) => *u,
            miniserde::json::Number::I64(i) => (*i).max(0) as u64,
            miniserde::json::Number::F64(f) => f.max(0.0) as u64,
        },
        Some(miniserde::json::Value::String(s)) => s.parse().unwrap_or(3600),
        _ => 3600,
    };
    Ok((Secret(access.clone()), Duration::from_secs(life.max(1))))
}

impl super::Coordinator {
    /// The running config's resources go to the fetcher.
    pub(super) fn want_tokens(&mut self) {
        let resources = self.running.references.identity_resources();
        if resources == self.identity_resources {
            return;
        }
        self.identity_resources = resources.clone();
        if let Some(f) = &self.identity {
            f.ask(Ask::Want(resources));
        }
    }

    /// A token came back: to the loop, or a warning (never the token).
    pub(super) fn token_fetched(&mut self, fetched: Fetched, updates: &mut Vec<super::Update>) {
        match fetched.result {
            Ok((token, life)) => {
                log::info!(
                    "access token for {} obtained (valid {} s)",
                    fetched.resource,
                    life.as_secs()
                );
                let now_ms = super::unix_now_s().saturating_mul(1000);
                let ahead = (life / 10).max(Duration::from_secs(30));
                let use_for = life.saturating_sub(ahead).max(Duration::from_secs(1));
                let token = crate::policy::tokens::Token {
                    value: token.0,
                    use_until_ms: now_ms.saturating_add(use_for.as_millis() as u64),
                };
                updates.push(super::Update::Token(
                    fetched.resource,
                    std::sync::Arc::new(token),
                ));
            }
            Err(e) => log::warn!(
                "cannot obtain an access token for {}: {e}",
                fetched.resource
            ),
        }
    }

    /// The loop has no token for a resource.
    pub(super) fn fetch_token(&mut self, resource: String) {
        match &self.identity {
            Some(f) => f.ask(Ask::Fetch(resource)),
            None => log::warn!(
                "authentication-managed-identity needs the gateway's identity: set identity.token.url (or identity.tenant), identity.client.id and identity.client.secret"
            ),
        }
    }
}
