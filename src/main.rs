//! The `edgegate` command: argument parsing, wiring and exit codes only. Every error is
//! printed here, once: 2 for usage and settings errors, 1 for runtime failures.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::process::ExitCode;
use std::sync::Arc;

use edgegate::agent::local::LocalConfig;
use edgegate::agent::scrape::{self, Mirror};
use edgegate::agent::service::ServiceSync;
use edgegate::agent::store::Store;
use edgegate::agent::{Agent, Loaded, Syncer};
use edgegate::cli::{self, BackupsVerb, Command, Flags};
use edgegate::config::{self, ConfigSource};
use edgegate::log_writer::LogWriter;
use edgegate::proxy::server::Server;
use edgegate::proxy::token;
use edgegate::settings::{
    GatewaySettings, Layered, LocalMetrics, LogFormat, ManageSettings, SettingError,
};
use edgegate::status::SyncState;
use edgegate::sys;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("edgegate: {}\n\n{}", e.message, e.usage);
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Gateway(flags) => gateway(&flags),
        Command::Manage(flags) => manage(&flags),
        Command::ManageImport(args, flags) => manage_import(&args, &flags),
        Command::Check(path) => check(&path),
        Command::Backups(verb, flags) => backups(&verb, &flags),
        Command::Version => {
            println!("{}", edgegate::version_line());
            ExitCode::SUCCESS
        }
        Command::Help(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
    }
}

/// A settings error: one line, exit 2.
fn settings_error(message: &str) -> ExitCode {
    eprintln!("edgegate: {message}");
    ExitCode::from(2)
}

fn check(path: &str) -> ExitCode {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("edgegate: cannot read {path}: {e}");
            return ExitCode::from(1);
        }
    };
    match config::compile(&text, ConfigSource::Local) {
        Ok(rt) => {
            let ops: usize = rt.apis.iter().map(|a| a.operations.len()).sum();
            println!(
                "{path}: ok (version {}, {} apis, {ops} operations)",
                rt.version,
                rt.apis.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                println!("{path}: {e}");
            }
            println!("{path}: {} error(s)", errors.len());
            ExitCode::from(1)
        }
    }
}

/// `edgegate backups …`: reads and pins versions in the backup store named by
/// `config.backup.path` (same settings layering as `gateway`).
fn backups(verb: &BackupsVerb, flags: &Flags) -> ExitCode {
    let settings = match layered(flags, GatewaySettings::defaults(sys::is_root())) {
        Ok(s) => s,
        Err(message) => return settings_error(&message),
    };
    let path = &settings.backup_path;
    let writes = matches!(verb, BackupsVerb::Rollback(_) | BackupsVerb::Unpin);
    let mut store = match Store::open_existing(path, writes) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("edgegate: {e}");
            return ExitCode::from(1);
        }
    };
    let result = match verb {
        BackupsVerb::List => store.list().map(|entries| {
            println!("{:>5}  {:<20}  {:<8}  {:<24}  {:>8}  {:<12}  STATE", "SEQ", "VERSION", "SOURCE", "APPLIED (UTC)", "BYTES", "SHA256");
            for e in entries {
                let when = std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.applied_at_ms.max(0) as u64);
                let state = match (e.intact, e.pinned) {
                    (false, _) => "corrupt",
                    (true, true) => "pinned",
                    (true, false) => "ok",
                };
                println!(
                    "{:>5}  {:<20}  {:<8}  {:<24}  {:>8}  {:<12}  {state}",
                    e.seq,
                    e.version,
                    e.source,
                    edgegate::telemetry::rfc3339(when),
                    e.size,
                    &e.sha256[..12.min(e.sha256.len())]
                );
            }
        }),
        BackupsVerb::Show(v) => store.get(v).map(|stored| {
            if !stored.entry.intact {
                eprintln!("edgegate: warning: version {v} does not match its checksum");
            }
            println!("{}", stored.document);
        }),
        BackupsVerb::Rollback(v) => store.pin(v).map(|e| {
            println!(
                "pinned backup #{} (version {}); a running gateway applies it at its next sync (SIGHUP in local mode) and keeps it until 'edgegate backups unpin'",
                e.seq, e.version
            );
        }),
        BackupsVerb::Unpin => store.unpin().map(|had| println!("{}", if had { "pin cleared" } else { "no pin was set" })),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgegate: {e}");
            ExitCode::from(1)
        }
    }
}

/// Applies a settings file, the environment and flags over `settings`, in that order.
fn layered<S: Layered>(flags: &Flags, mut settings: S) -> Result<S, String> {
    if let Some(path) = &flags.settings_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SettingError::Unreadable {
                path: path.clone(),
                reason: e.to_string(),
            }
            .to_string()
        })?;
        settings
            .apply_file_text(&text, path)
            .map_err(|e| e.to_string())?;
    }
    let env: Vec<(String, String)> = std::env::vars().collect();
    settings
        .apply_env(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| e.to_string())?;
    for (k, v) in &flags.set {
        settings.apply(k, v, "--set").map_err(|e| e.to_string())?;
    }
    Ok(settings)
}

fn manage(flags: &Flags) -> ExitCode {
    let settings = match layered(flags, ManageSettings::defaults(sys::is_root())) {
        Ok(s) => s,
        Err(message) => return settings_error(&message),
    };
    if settings.tls_cert.is_some() != settings.tls_key.is_some() {
        return settings_error("manage.tls.cert and manage.tls.key must be set together");
    }
    sys::init_logging(LogFormat::Text, log::LevelFilter::Info);
    match edgegate::manage::run(&settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("edgegate: {message}");
            ExitCode::from(1)
        }
    }
}

fn manage_import(args: &cli::ImportArgs, flags: &Flags) -> ExitCode {
    use edgegate::manage::import::{import_file, ImportOptions};
    use edgegate::manage::openapi::RequiredQuery;
    let settings = match layered(flags, ManageSettings::defaults(sys::is_root())) {
        Ok(s) => s,
        Err(message) => return settings_error(&message),
    };
    let required_query = if args.query_as_query {
        RequiredQuery::Query
    } else {
        RequiredQuery::Template
    };
    let options = ImportOptions {
        path: args.path.clone(),
        service_url: args.service_url.clone(),
    };
    match import_file(
        &settings.db_path,
        &args.api,
        std::path::Path::new(&args.file),
        required_query,
        options,
    ) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in problems {
                eprintln!("edgegate: {p}");
            }
            ExitCode::from(1)
        }
    }
}

/// The gateway's settings, with the rules that span several keys.
fn gateway_settings(flags: &Flags) -> Result<GatewaySettings, String> {
    let s = layered(flags, GatewaySettings::defaults(sys::is_root()))?;
    if s.local_path.is_none() && s.service_endpoint.is_none() {
        return Err("no config source: set config.local.path (or pass --config FILE) or config.service.endpoint".into());
    }
    if s.local_path.is_some() && s.service_endpoint.is_some() {
        return Err("set either config.local.path or config.service.endpoint, not both".into());
    }
    if s.service_endpoint.is_some() && s.service_auth.is_none() {
        return Err("config.service.auth is required with config.service.endpoint".into());
    }
    Ok(s)
}

fn gateway(flags: &Flags) -> ExitCode {
    let settings = match gateway_settings(flags) {
        Ok(s) => s,
        Err(message) => return settings_error(&message),
    };
    sys::init_logging(settings.logs_std, settings.log_level);
    // stderr belongs to the log writer thread from here on, so no other thread waits on it
    let writer = match LogWriter::spawn(Box::new(std::io::stderr())) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("edgegate: cannot start the log writer thread: {e}");
            return ExitCode::from(1);
        }
    };
    writer.install();
    let result = run_gateway(&settings, &writer);
    writer.stop(LOG_STOP_WAIT);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("edgegate: {message}");
            ExitCode::from(1)
        }
    }
}

/// Longest the process waits for queued log lines to reach stderr when exiting.
const LOG_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn run_gateway(settings: &GatewaySettings, writer: &LogWriter) -> Result<(), String> {
    // how https backends are checked; a bad CA file stops the start here
    edgegate::config::tls::set_backend_ca(settings.backend_ca.clone())?;
    edgegate::policy::jwt::set_azure_ad_authority(settings.azure_ad_authority.clone());
    // Where configs come from: the management plane, or a local file.
    let (mut syncer, loaded, mut sync): (Box<dyn Syncer>, Loaded, SyncState) =
        if settings.service_endpoint.is_some() {
            let mut service = ServiceSync::new(settings)?;
            let loaded = service.initial()?;
            let mut sync = service.state();
            sync.last_sync_at = Some(std::time::SystemTime::now());
            (Box::new(service), loaded, sync)
        } else {
            let Some(path) = settings.local_path.clone() else {
                return Err("no config source".into());
            };
            let backup = settings
                .backup_enabled
                .then_some((settings.backup_path.as_path(), settings.backup_versions));
            let mut source = LocalConfig::new(path, backup)?;
            let loaded = source
                .initial()
                .map_err(|problems| format!("config rejected:\n{}", problems.join("\n")))?;
            let sync = SyncState {
                last_sync_at: Some(std::time::SystemTime::now()),
                last_error: loaded.problem.clone(),
                note: loaded.note.clone(),
                ..SyncState::default()
            };
            (Box::new(source), loaded, sync)
        };
    let listener = mio::net::TcpListener::bind(settings.http_listen)
        .map_err(|e| format!("cannot listen on {}: {e}", settings.http_listen))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let poll = mio::Poll::new().map_err(|e| format!("cannot create the event loop: {e}"))?;
    let waker =
        Arc::new(mio::Waker::new(poll.registry(), token::WAKER).map_err(|e| e.to_string())?);
    let runtime = Arc::new(loaded.runtime);
    let quotas = edgegate::agent::saved_quotas(syncer.as_mut());
    let keys = edgegate::agent::keys::saved_key_sets(syncer.as_mut(), &runtime);
    sync.backup_versions = edgegate::agent::backup_versions(syncer.as_mut());
    // request metrics are counted on the loop and added up here, for scrapes and uploads
    let wants_metrics = settings.metrics_local == LocalMetrics::Prometheus
        || (settings.metrics_cloud && settings.service_endpoint.is_some());
    let mirror = wants_metrics.then(|| Mirror::shared(settings.metrics_labels));
    if let (LocalMetrics::Prometheus, Some(mirror)) = (settings.metrics_local, &mirror) {
        let addr = settings.prometheus_listen;
        let metrics = std::net::TcpListener::bind(addr)
            .map_err(|e| format!("cannot listen on {addr} for metrics: {e}"))?;
        let bound = metrics.local_addr().map_err(|e| e.to_string())?;
        scrape::serve(metrics, Arc::clone(mirror))
            .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
        log::info!("metrics on http://{bound}/metrics");
    }
    let resolver = edgegate::agent::resolver::spawn(Arc::clone(&waker))
        .map_err(|e| format!("cannot start the resolver thread: {e}"))?;
    let external = match &settings.cache_external {
        Some(url) => Some(
            edgegate::agent::redis::spawn(url.clone(), Arc::clone(&waker))
                .map_err(|e| format!("cannot start the external cache thread: {e}"))?,
        ),
        None => None,
    };
    let client = identity_client(settings)?;
    let (agent, from_agent) = Agent::spawn(
        syncer,
        mirror,
        (Arc::clone(&runtime), loaded.text),
        waker,
        client,
    )
    .map_err(|e| format!("cannot start the agent thread: {e}"))?;
    log::info!(
        "config version {} ({}) loaded, {} apis",
        runtime.version,
        runtime.source.as_str(),
        runtime.apis.len()
    );
    let mut server = Server::new(
        poll,
        listener,
        settings,
        Some(runtime),
        sync,
        from_agent,
        agent.sender.clone(),
        agent.reload.clone(),
        writer.sender(),
    )
    .map_err(|e| format!("cannot start the event loop: {e}"))?;
    server.restore_quotas(quotas);
    server.restore_keys(keys);
    server.attach_resolver(resolver);
    if let Some(link) = external {
        server.attach_external(link, settings.counters_external);
    }
    log::info!("listening on http://{bound}");
    let result = server.run().map_err(|e| format!("event loop failed: {e}"));
    agent.stop();
    result
}

/// The gateway's OAuth 2.0 client (`identity.*`), when one is configured: a token
/// endpoint, a client id and exactly one way to prove itself.
fn identity_client(
    settings: &GatewaySettings,
) -> Result<Option<edgegate::agent::identity::Client>, String> {
    use edgegate::agent::identity::{Client, Credential};
    let id = &settings.identity;
    let mut credentials = Vec::new();
    if let Some(secret) = &id.client_secret {
        credentials.push(Credential::Secret(secret.clone()));
    }
    if let Some(file) = &id.client_assertion_file {
        credentials.push(Credential::AssertionFile(file.clone()));
    }
    match (&id.client_certificate, &id.client_key) {
        (Some(certificate), Some(key)) => credentials.push(Credential::Certificate {
            certificate: certificate.clone(),
            key: key.clone(),
        }),
        (None, None) => {}
        _ => {
            return Err(
                "identity.client.certificate and identity.client.key must be set together".into(),
            )
        }
    }
    if credentials.len() > 1 {
        return Err("set one of identity.client.secret, identity.client.assertion.file and identity.client.certificate".into());
    }
    let endpoint = id.endpoint(&settings.azure_ad_authority);
    Ok(match (endpoint, &id.client_id, credentials.pop()) {
        (Some(endpoint), Some(client_id), Some(credential)) => Some(Client {
            endpoint,
            client_id: client_id.clone(),
            credential,
            entra: id.token_url.is_none(),
        }),
        _ => None,
    })
}
