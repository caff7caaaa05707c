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

const CERTIFICATE_FIELDS: &[&str] = &["id", "hostnames", "certPem", "keyPem"];

/// Certificates by SNI host name.
#[derive(Debug)]
struct BySni {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` under "example.com".
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            return Some(Arc::clone(&self.default));
        };
        let name = name.to_ascii_lowercase();
        let found = self.exact.get(&name).or_else(|| {
            name.split_once('.')
                .and_then(|(_, parent)| self.wildcard.get(parent))
        });
        Some(Arc::clone(found.unwrap_or(&self.default)))
    }
}

/// One certificate entry: its chain and key, checked to belong together.
fn certified_key(f: &Fields, errors: &mut Errors) -> Option<Arc<CertifiedKey>> {
    let cert_pem = f.required_str("certPem", errors)?;
    let key_pem = f.required_str("keyPem", errors)?;
    let certs: Vec<CertificateDer<'static>> =
        match CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect() {
            Ok(c) => c,
            Err(e) => {
                errors.push(
                    &f.path("certPem"),
                    format!("not a PEM certificate chain: {e}"),
                );
                return None;
            }
        };
    if certs.is_empty() {
        errors.push(&f.path("certPem"), "no certificate in it");
        return None;
    }
    // the key's own text never goes into a message
    let Ok(key) = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()) else {
        errors.push(
            &f.path("keyPem"),
            "not a PEM private key (PKCS#8, PKCS#1 or SEC1)",
        );
        return None;
    };
    let provider = rustls::crypto::ring::default_provider();
    let signing = match provider.key_provider.load_private_key(key) {
        Ok(k) => k,
        Err(_) => {
            errors.push(&f.path("keyPem"), "unsupported private key type");
            return None;
        }
    };
    let certified = CertifiedKey::new(certs, signing);
    if certified.keys_match().is_err() {
        errors.push(
            &f.path("keyPem"),
            "does not belong to the first certificate of certPem",
        );
        return None;
    }
    Some(Arc::new(certified))
}

/// The server config for the document's certificates, or `None` when it has none.
pub fn certificates(top: &Fields, errors: &mut Errors) -> Option<Arc<rustls::ServerConfig>> {
    let mut default = None;
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
        let Some(key) = certified_key(&f, errors) else {
            continue;
        };
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
            } else if map.insert(name, Arc::clone(&key)).is_some() {
                errors.push(
                    &format!("{}[{i}]", f.path("hostnames")),
                    format!("'{h}' already has a certificate"),
                );
            }
        }
        default.get_or_insert(key);
    }
    let default = default?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = match rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b.with_no_client_auth().with_cert_resolver(Arc::new(BySni {
            exact,
            wildcard,
            default,
        })),
        Err(e) => {
            errors.push("certificates", e.to_string());
            return None;
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Some(Arc::new(config))
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
    BACKEND_CONFIG
        .get_or_init(|| build_client_config(BACKEND_CA.get().and_then(|c| c.as_deref())))
        .clone()
}

/// How `https://` backends are checked: Mozilla's roots (compiled in) and, when given,
/// the CA certificates in `ca` (PEM), for backends behind a private PKI. TLS 1.2 and 1.3,
/// ring, ALPN http/1.1.
fn build_client_config(ca: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_pki_types::pem::PemObject;
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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
