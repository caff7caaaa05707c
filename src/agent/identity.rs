//! The gateway identity's token fetcher (authentication-managed-identity on a
//! self-hosted host): an OAuth 2.0 client (`identity.*`) that gets an access token per
//! resource with the client-credentials flow, for every resource the running config
//! names and those the loop asks for, again a little before each expires (at 90 % of
//! its life, at least a minute ahead), sooner after a failure (30 s doubling to 15 min).
//! Tokens go to the agent's inbox and on to the loop (`Coordinator::token_fetched`);
//! they are never stored or logged, and the secret (`@/path/file` is read at each
//! fetch) never leaves this thread.
//! Must not touch: the loop, the store.

use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::time::Duration;

use super::fetch::Schedule;
use super::ToAgent;
use crate::settings::Secret;

/// Least time between two fetches of one resource the loop asked for.
const MIN_REFETCH: Duration = Duration::from_secs(10);

/// The client the gateway is.
#[derive(Debug, Clone)]
pub struct Client {
    pub endpoint: String,
    pub client_id: String,
    pub secret: Secret,
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

/// A token for `resource` with the client-credentials flow.
pub fn token(client: &Client, resource: &str) -> Result<(Secret, Duration), String> {
    let scope = if resource.ends_with("/.default") {
        resource.to_string()
    } else {
        format!("{}/.default", resource.trim_end_matches('/'))
    };
    let mut body = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}&scope={}",
        form(&client.client_id),
        form(&secret(&client.secret)?),
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
