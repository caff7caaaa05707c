//! TLS configs, built off the event loop. The config document's `certificates`: PEM
//! chains and keys compiled into one rustls server config for the gateway's HTTPS
//! listener, picking a certificate by the client's SNI host name (exact, then `*.`
//! wildcard one label deep, then the first certificate of the document); a key never
//! appears in an error. And the client config for `https://` backends, built once, the
//! first time a config has one (so a gateway without them never pays for it).
//! Must not touch: sockets (the loop runs the handshakes), HTTP.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::json::{Errors, Fields};

const CERTIFICATE_FIELDS: &[&str] = &[
    "id",
    "hostnames",
    "certPem",
    "keyPem",
    "negotiateClientCertificate",
    "listener",
];
const CA_CERTIFICATE_FIELDS: &[&str] = &["id", "certPem"];

/// A certificate the listener serves, and whether it asks clients for theirs.
#[derive(Debug, Clone)]
struct Served {
    key: Arc<CertifiedKey>,
    negotiate: bool,
}

/// Certificates by SNI host name.
#[derive(Debug)]
struct BySni {
    exact: HashMap<String, Served>,
    /// `*.example.com` under "example.com".
    wildcard: HashMap<String, Served>,
    default: Served,
}

impl BySni {
    /// The certificate for a name: exact, then a wildcard one label deep, then the
    /// default.
    fn find(&self, name: Option<&str>) -> &Served {
        let Some(name) = name else {
            return &self.default;
        };
        let name = name.to_ascii_lowercase();
        self.exact
            .get(&name)
            .or_else(|| {
                name.split_once('.')
                    .and_then(|(_, parent)| self.wildcard.get(parent))
            })
            .unwrap_or(&self.default)
    }
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.find(hello.server_name()).key))
    }
}

/// Why PEM text is not a usable certificate and key (never quoting the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemProblem {
    NotPemCertificates,
    NoCertificate,
    NotPemKey,
    UnsupportedKey,
    KeyMismatch,
}

impl PemProblem {
    /// The field of a certificate entry it concerns, and the message.
    pub fn explain(self) -> (&'static str, &'static str) {
        match self {
            PemProblem::NotPemCertificates => ("certPem", "not a PEM certificate chain"),
            PemProblem::NoCertificate => ("certPem", "no certificate in it"),
            PemProblem::NotPemKey => ("keyPem", "not a PEM private key (PKCS#8, PKCS#1 or SEC1)"),
            PemProblem::UnsupportedKey => ("keyPem", "unsupported private key type"),
            PemProblem::KeyMismatch => (
                "keyPem",
                "does not belong to the first certificate of certPem",
            ),
        }
    }
}

/// A PEM chain and its key, checked to belong together.
pub fn pem_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, PemProblem> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| PemProblem::NotPemCertificates)?;
    if certs.is_empty() {
        return Err(PemProblem::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| PemProblem::NotPemKey)?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|_| PemProblem::UnsupportedKey)?;
    let certified = CertifiedKey::new(certs, signing);
    if certified.keys_match().is_err() {
        return Err(PemProblem::KeyMismatch);
    }
    Ok(Arc::new(certified))
}

/// One certificate entry: its chain and key, checked to belong together.
fn certified_key(f: &Fields, errors: &mut Errors) -> Option<Arc<CertifiedKey>> {
    let cert_pem = f.required_str("certPem", errors)?;
    let key_pem = f.required_str("keyPem", errors)?;
    match pem_key(cert_pem.as_bytes(), key_pem.as_bytes()) {
        Ok(k) => Some(k),
        Err(problem) => {
            let (field, message) = problem.explain();
            errors.push(&f.path(field), message);
            None
        }
    }
}

/// A certificate of the document with its key: what `authentication-certificate`
/// presents to a backend (by id or thumbprint).
pub struct ClientKey {
    pub id: String,
    /// SHA-1 of the leaf certificate, upper-case hex.
    pub thumbprint: Arc<str>,
    key: Arc<CertifiedKey>,
    /// The client config presenting it to `https://` backends (set by the agent with the
    /// backends' trust, `Runtime::attach_backend_tls`).
    backend: OnceLock<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ClientKey {{ id: {:?}, thumbprint: {:?} }}",
            self.id, self.thumbprint
        )
    }
}

impl ClientKey {
    pub fn new(id: String, key: Arc<CertifiedKey>) -> ClientKey {
        let leaf = key.cert.first().map_or(&[][..], |c| c.as_ref());
        ClientKey {
            id,
            thumbprint: crate::x509::thumbprint(leaf).into(),
            key,
            backend: OnceLock::new(),
        }
    }

    /// Builds the client config that presents this certificate (agent, off the loop).
    pub fn attach(&self) -> Result<(), String> {
        if self.backend.get().is_none() {
            let _ = self
                .backend
                .set(identity_client_config(Arc::clone(&self.key))?);
        }
        Ok(())
    }

    /// The client config presenting it, once attached.
    pub fn backend_config(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.backend.get()
    }
}

/// The identity `authentication-certificate` names: one of the config's certificates
/// by id or thumbprint (its client config built by the agent), or a PEM chain and key
/// given whole (built now: key parsing and a client config, no I/O).
pub fn client_identity(
    keys: &[Arc<ClientKey>],
    which: crate::policy::kinds::authentication_certificate::Named<'_>,
) -> Result<crate::policy::call::ClientTls, String> {
    use crate::policy::kinds::authentication_certificate::Named;
    let found = match which {
        Named::Id(id) => keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| format!("no certificate with id '{id}' in the config"))?,
        Named::Thumbprint(t) => {
            let wanted: String = t
                .chars()
                .filter(|c| !matches!(c, ' ' | ':'))
                .collect::<String>()
                .to_ascii_uppercase();
            keys.iter()
                .find(|k| *k.thumbprint == *wanted)
                .ok_or_else(|| format!("no certificate with thumbprint {wanted} in the config"))?
        }
        Named::Pfx(bytes, password) => {
            let pfx = super::pkcs12::read(bytes, password)
                .map_err(|p| format!("the certificate body: {p}"))?;
            let provider = rustls::crypto::ring::default_provider();
            let signing = provider
                .key_provider
                .load_private_key(pfx.key)
                .map_err(|_| "the certificate body: unsupported private key type")?;
            let certified = CertifiedKey::new(pfx.certificates, signing);
            if certified.keys_match().is_err() {
                return Err(
                    "the certificate body: the key does not belong to its first certificate".into(),
                );
            }
            return given_identity(Arc::new(certified));
        }
        Named::Pem(pem) => {
            if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
                return Err("the certificate body is not PEM (PKCS#12 bodies are not supported: give the chain and its private key as PEM)".into());
            }
            let pem = pem_lines(pem);
            let key = pem_key(&pem, &pem).map_err(|p| {
                let (field, message) = p.explain();
                let field = if field == "keyPem" {
                    "private key"
                } else {
                    "certificate"
                };
                format!("the certificate body's {field}: {message}")
            })?;
            return given_identity(key);
        }
    };
    let config = found
        .backend_config()
        .ok_or("the certificate's client config is not built (no https backends)")?;
    Ok(crate::policy::call::ClientTls {
        thumbprint: Arc::clone(&found.thumbprint),
        config: Arc::clone(config),
    })
}

/// PEM whose line breaks became spaces (an XML attribute's value is normalised so,
/// and a named value put into `body="…"` goes through that) with its lines back:
/// each `-----BEGIN …-----` / `-----END …-----` on a line of its own, the base64
/// between them without blanks in lines of 64.
fn pem_lines(text: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(text);
    let mut out = String::with_capacity(text.len() + text.len() / 64 + 8);
    for (i, piece) in text.split("-----").enumerate() {
        if i % 2 == 1 {
            out.push_str("-----");
            out.push_str(piece.trim());
            out.push_str("-----\n");
            continue;
        }
        let base64: String = piece.chars().filter(|c| !c.is_whitespace()).collect();
        for line in base64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
    }
    out.into_bytes()
}

/// The identity of a key a policy gave whole (not one of the config's): its client
/// config is built now.
fn given_identity(key: Arc<CertifiedKey>) -> Result<crate::policy::call::ClientTls, String> {
    let k = ClientKey::new(String::new(), key);
    k.attach()?;
    Ok(crate::policy::call::ClientTls {
        thumbprint: Arc::clone(&k.thumbprint),
        config: k.backend.get().cloned().ok_or("no client config")?,
    })
}

/// Presents one certificate whenever a server asks for one.
#[derive(Debug)]
struct Present(Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for Present {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// A client config for `https://` backends that presents `key` (the backends' trust).
pub fn identity_client_config(key: Arc<CertifiedKey>) -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = backend_roots()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(Present(key)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Asks every client for a certificate and takes any (or none): the client proves it
/// holds the key, and `validate-client-certificate` decides what the certificate is
/// worth, as APIM's negotiateClientCertificate does.
#[derive(Debug)]
struct AskAnyClientCertificate {
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::server::danger::ClientCertVerifier for AskAnyClientCertificate {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
}

/// The HTTPS listener's TLS: one config that asks no client for a certificate, and,
/// when some certificate negotiates client certificates, one that asks. The certificate
/// the client's SNI picks decides (the loop reads the ClientHello first, `for_name`).
#[derive(Debug)]
pub struct ListenerTls {
    plain: Arc<rustls::ServerConfig>,
    asking: Option<Arc<rustls::ServerConfig>>,
    by_sni: Arc<BySni>,
}

impl ListenerTls {
    /// The config for every connection when no certificate negotiates client
    /// certificates (no need to read the ClientHello first).
    pub fn single(&self) -> Option<&Arc<rustls::ServerConfig>> {
        match self.asking {
            None => Some(&self.plain),
            Some(_) => None,
        }
    }

    /// The config for a connection whose ClientHello named `sni`.
    pub fn for_name(&self, sni: Option<&str>) -> &Arc<rustls::ServerConfig> {
        match &self.asking {
            Some(asking) if self.by_sni.find(sni).negotiate => asking,
            _ => &self.plain,
        }
    }
}

/// What the document's `certificates` and `caCertificates` become.
#[derive(Debug, Default)]
pub struct Certificates {
    /// The HTTPS listener's TLS, when any certificate is there.
    pub listener: Option<Arc<ListenerTls>>,
    /// Every certificate with its key, for `authentication-certificate`.
    pub keys: Vec<Arc<ClientKey>>,
    /// The CA certificates client certificates are checked against.
    pub trust: Option<Arc<ClientTrust>>,
}

/// The listener's certificates by host name (a certificate without `hostnames` serves
/// no name of its own; the default is the first with host names, else the first; one
/// with `"listener": false` is only for policies to present).
fn served_by_sni(
    top: &Fields,
    keys: &mut Vec<Arc<ClientKey>>,
    errors: &mut Errors,
) -> Option<BySni> {
    let mut default: Option<(bool, Served)> = None;
    let mut exact = HashMap::new();
    let mut wildcard = HashMap::new();
    let mut ids: HashMap<String, String> = HashMap::new();
    for (path, v) in top.array("certificates", errors) {
        let Some(f) = Fields::of(v, &path, CERTIFICATE_FIELDS, errors) else {
            continue;
        };
        let id = f.required_str("id", errors).unwrap_or_default();
        if let Some(first) = ids.insert(id.to_string(), path.clone()) {
            errors.push(
                &f.path("id"),
                format!("duplicate id '{id}' (first at {first})"),
            );
        }
        let hostnames = f.str_array("hostnames", errors).unwrap_or_default();
        let negotiate = f
            .bool("negotiateClientCertificate", errors)
            .unwrap_or(false);
        let on_listener = f.bool("listener", errors).unwrap_or(true);
        if !on_listener && (!hostnames.is_empty() || negotiate) {
            errors.push(
                &f.path("listener"),
                "a certificate kept off the listener has no hostnames and negotiates nothing",
            );
        }
        let Some(key) = certified_key(&f, errors) else {
            continue;
        };
        keys.push(Arc::new(ClientKey::new(id.to_string(), Arc::clone(&key))));
        if !on_listener {
            continue;
        }
        let served = Served { key, negotiate };
        for (i, h) in hostnames.iter().enumerate() {
            let h = h.to_ascii_lowercase();
            let (map, name) = match h.strip_prefix("*.") {
                Some(parent) => (&mut wildcard, parent.to_string()),
                None => (&mut exact, h.clone()),
            };
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !valid {
                errors.push(
                    &format!("{}[{i}]", f.path("hostnames")),
                    "not a valid host name",
                );
            } else if map.insert(name, served.clone()).is_some() {
                errors.push(
                    &format!("{}[{i}]", f.path("hostnames")),
                    format!("'{h}' already has a certificate"),
                );
            }
        }
        let named = !hostnames.is_empty();
        if default
            .as_ref()
            .is_none_or(|(had_names, _)| named && !had_names)
        {
            default = Some((named, served));
        }
    }
    let (_, default) = default?;
    Some(BySni {
        exact,
        wildcard,
        default,
    })
}

/// The document's certificates: the listener's TLS, the keys policies present, the
/// CA certificates.
pub fn certificates(top: &Fields, errors: &mut Errors) -> Certificates {
    let mut keys = Vec::new();
    let by_sni = served_by_sni(top, &mut keys, errors);
    let trust = client_trust(top, errors);
    let Some(by_sni) = by_sni else {
        return Certificates {
            listener: None,
            keys,
            trust,
        };
    };
    let negotiates = by_sni.default.negotiate
        || by_sni
            .exact
            .values()
            .chain(by_sni.wildcard.values())
            .any(|s| s.negotiate);
    let by_sni = Arc::new(by_sni);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let build = |asking: bool| -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?;
        let builder = match asking {
            false => builder.with_no_client_auth(),
            true => builder.with_client_cert_verifier(Arc::new(AskAnyClientCertificate {
                algorithms: provider.signature_verification_algorithms,
            })),
        };
        let mut config =
            builder.with_cert_resolver(Arc::clone(&by_sni) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    };
    let configs = build(false).and_then(|plain| {
        let asking = match negotiates {
            true => Some(build(true)?),
            false => None,
        };
        Ok((plain, asking))
    });
    let listener = match configs {
        Ok((plain, asking)) => Some(Arc::new(ListenerTls {
            plain,
            asking,
            by_sni,
        })),
        Err(e) => {
            errors.push("certificates", e.to_string());
            None
        }
    };
    Certificates {
        listener,
        keys,
        trust,
    }
}

/// The CA certificates client certificates chain to (`caCertificates`), for
/// `validate-client-certificate` and `context.Request.Certificate.Verify()`.
pub struct ClientTrust {
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    /// The CA certificates by id (issuer-certificate-id).
    pub authorities: Vec<(String, crate::x509::Certificate)>,
    /// Tells one trust from the next, for what a connection remembers.
    pub generation: u64,
}

impl std::fmt::Debug for ClientTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.authorities.iter().map(|(id, _)| id.as_str()).collect();
        write!(f, "ClientTrust {{ authorities: {ids:?} }}")
    }
}

impl ClientTrust {
    /// Whether a client's chain (leaf first) leads to one of the CA certificates, each
    /// certificate valid now and fit for client authentication (webpki).
    pub fn trusts(&self, leaf: &[u8], intermediates: &[Vec<u8>]) -> bool {
        let leaf = CertificateDer::from(leaf);
        let intermediates: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        self.verifier
            .verify_client_cert(&leaf, &intermediates, rustls_pki_types::UnixTime::now())
            .is_ok()
    }
}

/// Whether the client's certificate chains to the CA certificates (remembered per
/// connection and trust); no CA certificates trust nothing.
pub fn judge(trust: Option<&ClientTrust>, presented: &crate::x509::Presented) -> bool {
    trust.is_some_and(|t| presented.trusted(t.generation, |leaf, rest| t.trusts(leaf, rest)))
}

static TRUST_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn client_trust(top: &Fields, errors: &mut Errors) -> Option<Arc<ClientTrust>> {
    let mut roots = rustls::RootCertStore::empty();
    let mut authorities = Vec::new();
    for (path, v) in top.array("caCertificates", errors) {
        let Some(f) = Fields::of(v, &path, CA_CERTIFICATE_FIELDS, errors) else {
            continue;
        };
        let id = f.required_str("id", errors).unwrap_or_default().to_string();
        if authorities.iter().any(|(other, _)| *other == id) {
            errors.push(&f.path("id"), format!("duplicate id '{id}'"));
        }
        let Some(pem) = f.required_str("certPem", errors) else {
            continue;
        };
        let der = match CertificateDer::from_pem_slice(pem.as_bytes()) {
            Ok(d) => d,
            Err(e) => {
                errors.push(&f.path("certPem"), format!("not a PEM certificate: {e}"));
                continue;
            }
        };
        let parsed = match crate::x509::parse(&der) {
            Ok(c) => c,
            Err(e) => {
                errors.push(&f.path("certPem"), e.to_string());
                continue;
            }
        };
        if let Err(e) = roots.add(der) {
            errors.push(
                &f.path("certPem"),
                format!("not usable as a trust anchor: {e}"),
            );
            continue;
        }
        authorities.push((id, parsed));
    }
    if authorities.is_empty() {
        return None;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| errors.push("caCertificates", e.to_string()))
            .ok()?;
    Some(Arc::new(ClientTrust {
        verifier,
        authorities,
        generation: TRUST_GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
    }))
}

/// `net.backend.tls.ca`, set once at start.
static BACKEND_CA: OnceLock<Option<PathBuf>> = OnceLock::new();
static BACKEND_CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();

/// Records `net.backend.tls.ca` (at start, before any config is compiled). When it is
/// set the client config is built now, so that a bad file stops the start with its
/// reason rather than failing the first https call.
pub fn set_backend_ca(ca: Option<PathBuf>) -> Result<(), String> {
    let set = ca.is_some();
    let _ = BACKEND_CA.set(ca);
    if set {
        backend_client_config()?;
    }
    Ok(())
}

/// The client config for `https://` backends (reads the CA file the first time: call it
/// off the event loop).
pub fn backend_client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    BACKEND_CONFIG.get_or_init(build_client_config).clone()
}

static BACKEND_ROOTS: OnceLock<Result<Arc<rustls::RootCertStore>, String>> = OnceLock::new();

/// What `https://` backends are checked against: Mozilla's roots (compiled in) and,
/// when given, the CA certificates of `net.backend.tls.ca` (PEM), for backends behind a
/// private PKI. Read once (the first time: call it off the event loop).
fn backend_roots() -> Result<Arc<rustls::RootCertStore>, String> {
    BACKEND_ROOTS
        .get_or_init(|| read_roots(BACKEND_CA.get().and_then(|c| c.as_deref())))
        .clone()
}

fn read_roots(ca: Option<&std::path::Path>) -> Result<Arc<rustls::RootCertStore>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca {
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read net.backend.tls.ca {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "net.backend.tls.ca {}: no certificate found",
                path.display()
            ));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("net.backend.tls.ca {}: {e}", path.display()))?;
        }
    }
    Ok(Arc::new(roots))
}

/// How `https://` backends are checked: `backend_roots`, TLS 1.2 and 1.3, ring, ALPN
/// http/1.1, no client certificate.
fn build_client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(backend_roots()?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    #[test]
    fn pem_lines_come_back_after_attribute_normalisation() {
        let flat = b"-----BEGIN CERTIFICATE----- MIIB AAAA BBBB -----END CERTIFICATE----- -----BEGIN PRIVATE KEY----- CCCC -----END PRIVATE KEY-----";
        assert_eq!(
            String::from_utf8(super::pem_lines(flat)).unwrap(),
            "-----BEGIN CERTIFICATE-----\nMIIBAAAABBBB\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nCCCC\n-----END PRIVATE KEY-----\n"
        );
    }
}
