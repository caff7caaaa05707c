//! The management plane (`edgegate manage`): the admin API that configures everything
//! and the gateway API that federated gateways poll. Plain blocking threads; not on the
//! hot path.
//! Must not touch: the gateway's event loop.

pub mod accounts;
pub mod api;
pub mod audit;
pub mod branding;
pub mod catalogue;
pub mod entities;
pub mod http;
pub mod import;
pub mod openapi;
pub mod store;
pub mod web;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::settings::ManageSettings;

/// The admin token: the setting (or the file it names with `@`), else one generated on
/// first start and kept next to the database (mode 0600). Returns the token and, when it
/// was generated now, the file it was written to.
pub fn admin_token(settings: &ManageSettings) -> Result<(String, Option<PathBuf>), String> {
    if let Some(secret) = &settings.admin_token {
        return match secret.0.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path)
                .map(|t| (t.trim().to_string(), None))
                .map_err(|e| format!("cannot read admin token file {path}: {e}")),
            None => Ok((secret.0.clone(), None)),
        };
    }
    let path = PathBuf::from(format!("{}.admin-token", settings.db_path.display()));
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok((existing.trim().to_string(), None));
    }
    let token = crate::federation::token::new_key().replace(['+', '/', '='], "");
    write_private(&path, &token)
        .map_err(|e| format!("cannot write admin token file {}: {e}", path.display()))?;
    Ok((token, Some(path)))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")
}

/// Why a listener address needs TLS: anything but loopback carries admin and gateway
/// tokens, subscription keys and private keys.
fn insecure_listener(settings: &ManageSettings, tls: bool) -> Option<String> {
    if tls || settings.listen.ip().is_loopback() || settings.listen_insecure {
        return None;
    }
    Some(format!(
        "manage.listen {} is not a loopback address and TLS is off: set manage.tls.cert and manage.tls.key, or manage.listen.insecure=true to serve plain HTTP there anyway",
        settings.listen
    ))
}

/// SIGTERM / SIGINT: say so in the log (and to systemd), then exit 0. Every write is a
/// committed SQLite transaction, so there is nothing to drain.
fn stop_on_signals() -> Result<(), String> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    std::thread::Builder::new()
        .name("edgegate-manage-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let name = if signal == SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                log::info!("{name}: stopping");
                if let Some(n) = crate::notify::Notifier::from_env() {
                    n.send("STOPPING=1");
                }
                std::process::exit(0);
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(())
}

/// Runs the management plane until the process is stopped. Everything that can fail
/// on the operator's input (TLS files, the listener, the database) is checked before
/// anything is written, so a failed start leaves no database or token behind.
pub fn run(settings: &ManageSettings) -> Result<(), String> {
    let tls = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => Some(http::tls_config(cert, key)?),
        (None, None) => None,
        _ => return Err("manage.tls.cert and manage.tls.key must be set together".into()),
    };
    if let Some(why) = insecure_listener(settings, tls.is_some()) {
        return Err(why);
    }
    let listener = std::net::TcpListener::bind(settings.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let audit = audit::Audit::open(settings.audit_path.as_deref())?;
    let store = store::PlaneStore::open(&settings.db_path)?;
    let (token, generated) = admin_token(settings)?;
    if let Some(path) = generated {
        log::info!(
            "generated an admin token; it is in {} (mode 0600)",
            path.display()
        );
    }
    let plane = Arc::new(api::Plane::new(
        store,
        token,
        settings.instances_prune_after,
        audit,
    )?);
    let oidc = match (
        &settings.portal_oidc_issuer,
        &settings.portal_oidc_client_id,
        &settings.portal_oidc_client_secret,
    ) {
        (Some(issuer), Some(client_id), Some(secret)) => Some(web::oidc::OidcSettings {
            issuer: issuer.clone(),
            client_id: client_id.clone(),
            client_secret: secret.0.clone(),
        }),
        (None, None, None) => None,
        _ => return Err("manage.portal.oidc.issuer, manage.portal.oidc.client.id and manage.portal.oidc.client.secret must be set together".into()),
    };
    stop_on_signals()?;
    log::info!(
        "listening on {}://{bound}",
        if tls.is_some() { "https" } else { "http" }
    );
    if let Some(n) = crate::notify::Notifier::from_env() {
        let scheme = if tls.is_some() { "https" } else { "http" };
        n.send(&format!("READY=1\nEDGEGATE_LISTEN={scheme}://{bound}"));
    }
    let web = web::Web::new(
        plane.clone(),
        web::PortalSettings {
            gateway_url: settings.portal_gateway_url.clone(),
            tls: tls.is_some(),
            public_url: settings.portal_url.clone(),
            oidc,
        },
    );
    let handler: Arc<http::Handler> = Arc::new(move |req: &http::Request| {
        if web::Web::handles(&req.path) {
            web.handle(req)
        } else {
            plane.handle(req)
        }
    });
    http::serve(listener, tls, handler).map_err(|e| e.to_string())
}
