//! The OpenID key fetcher thread (validate-jwt's `openid-config`): for each
//! configuration URL the running config names, it fetches the discovery document and
//! the JWKS it points to (http or https with the backends' trust settings, bounded,
//! with timeouts), again when the JWKS's `Cache-Control: max-age` (default an hour,
//! between five minutes and a day) runs out, sooner after a failure (30 s doubling to
//! 15 min) and when the loop met a key id it does not know (at most once every ten
//! seconds).
//! Results go to the agent's inbox; the agent keeps good key sets in the backup store
//! and hands them to the loop. Nothing here ever runs on the loop.
//! Must not touch: the loop, the store.

use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::time::Duration;

use super::fetch::Schedule;
use super::ToAgent;
use crate::http::whole::Whole;

/// How long a fetched key set is used before it is fetched again, without and within
/// the provider's `max-age`.
const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);
const MIN_REFRESH: Duration = Duration::from_secs(300);
const MAX_REFRESH: Duration = Duration::from_secs(86_400);
/// Least time between two fetches of one URL the loop asked for.
const MIN_REFETCH: Duration = Duration::from_secs(10);

/// What the agent asks of the fetcher.
pub enum Ask {
    /// The configuration URLs the running config names (others are forgotten).
    Want(Vec<String>),
    /// Fetch this one again soon (a token named a key id no key set has).
    Refresh(String),
}

/// A configuration's issuer and JWKS as fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub issuer: Option<String>,
    pub jwks: String,
}

/// One fetch's outcome, for the agent.
#[derive(Debug)]
pub struct Fetched {
    pub url: String,
    pub result: Result<Document, String>,
}

/// The agent's end of the fetcher.
pub struct Fetcher {
    asks: Sender<Ask>,
}

impl Fetcher {
    pub fn ask(&self, ask: Ask) {
        let _ = self.asks.send(ask);
    }
}

/// Starts the fetcher thread; outcomes go to `inbox`. It ends with the agent.
pub fn spawn(inbox: SyncSender<ToAgent>) -> std::io::Result<Fetcher> {
    let (asks, asked) = mpsc::channel();
    std::thread::Builder::new()
        .name("edgegate-openid".into())
        .spawn(move || run(&asked, &inbox))?;
    Ok(Fetcher { asks })
}

fn run(asked: &Receiver<Ask>, inbox: &SyncSender<ToAgent>) {
    let mut urls = Schedule::default();
    loop {
        match asked.recv_timeout(urls.wait()) {
            Ok(Ask::Want(list)) => {
                urls.keep_only(&list);
                for url in list {
                    urls.add(url);
                }
            }
            Ok(Ask::Refresh(url)) => urls.soon(&url, MIN_REFETCH),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        for url in urls.due() {
            let result = fetch(&url);
            let again = result
                .as_ref()
                .ok()
                .map(|(_, max_age)| (*max_age).clamp(MIN_REFRESH, MAX_REFRESH));
            urls.fetched(&url, again);
            let fetched = Fetched {
                url,
                result: result.map(|(doc, _)| doc),
            };
            if inbox.send(ToAgent::Keys(fetched)).is_err() {
                return;
            }
        }
    }
}

/// The discovery document at `url`, then its JWKS; and how long the JWKS may be used.
pub fn fetch(url: &str) -> Result<(Document, Duration), String> {
    let discovery = get_json(url)?;
    let miniserde::json::Value::Object(doc) = &discovery.0 else {
        return Err(format!(
            "{url}: the discovery document is not a JSON object"
        ));
    };
    let text = |name: &str| match doc.get(name) {
        Some(miniserde::json::Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let jwks_uri =
        text("jwks_uri").ok_or_else(|| format!("{url}: the discovery document has no jwks_uri"))?;
    let (_, jwks) = get_json(&jwks_uri)?;
    crate::policy::jwt::parse_published_jwks(&jwks.body_text())
        .map_err(|e| format!("{jwks_uri}: {e}"))?;
    let max_age = jwks
        .header("cache-control")
        .and_then(max_age)
        .unwrap_or(DEFAULT_REFRESH);
    Ok((
        Document {
            issuer: text("issuer"),
            jwks: jwks.body_text(),
        },
        max_age,
    ))
}

/// `max-age` of a Cache-Control value.
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|d| {
        let (k, v) = d.trim().split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        v.trim()
            .trim_matches('"')
            .parse()
            .ok()
            .map(Duration::from_secs)
    })
}

/// A JSON document at `url` (status 200).
fn get_json(url: &str) -> Result<(miniserde::json::Value, Whole), String> {
    let whole = super::fetch::call("GET", url, &[], b"").map_err(|e| format!("{url}: {e}"))?;
    if whole.status != 200 {
        return Err(format!("{url}: answered {} {}", whole.status, whole.reason));
    }
    let value = miniserde::json::from_str(&whole.body_text())
        .map_err(|_| format!("{url}: the answer is not JSON"))?;
    Ok((value, whole))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age("Max-Age=\"30\""), Some(Duration::from_secs(30)));
        assert_eq!(max_age("no-cache"), None);
    }
}
