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

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::time::{Duration, Instant};

use super::ToAgent;
use crate::http::whole::{Reader, Whole, WholeError};

/// Largest discovery or JWKS document.
pub const DOCUMENT_MAX: u64 = 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a fetched key set is used before it is fetched again, without and within
/// the provider's `max-age`.
const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);
const MIN_REFRESH: Duration = Duration::from_secs(300);
const MAX_REFRESH: Duration = Duration::from_secs(86_400);
/// Least time between two fetches of one URL the loop asked for.
const MIN_REFETCH: Duration = Duration::from_secs(10);
const FIRST_RETRY: Duration = Duration::from_secs(30);
const MAX_RETRY: Duration = Duration::from_secs(900);

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

/// When a URL is fetched next, and how its last fetches went.
struct Due {
    next: Instant,
    last: Option<Instant>,
    failures: u32,
}

fn run(asked: &Receiver<Ask>, inbox: &SyncSender<ToAgent>) {
    let mut urls: BTreeMap<String, Due> = BTreeMap::new();
    loop {
        let now = Instant::now();
        let wait = urls
            .values()
            .map(|d| d.next.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_secs(60))
            .min(Duration::from_secs(60));
        match asked.recv_timeout(wait) {
            Ok(Ask::Want(list)) => {
                urls.retain(|u, _| list.contains(u));
                for url in list {
                    urls.entry(url).or_insert(Due {
                        next: Instant::now(),
                        last: None,
                        failures: 0,
                    });
                }
            }
            Ok(Ask::Refresh(url)) => {
                if let Some(d) = urls.get_mut(&url) {
                    let recent = d.last.is_some_and(|t| t.elapsed() < MIN_REFETCH);
                    d.next = if recent {
                        d.last.map_or(Instant::now(), |t| t + MIN_REFETCH)
                    } else {
                        Instant::now()
                    };
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let due: Vec<String> = urls
            .iter()
            .filter(|(_, d)| d.next <= Instant::now())
            .map(|(u, _)| u.clone())
            .collect();
        for url in due {
            let result = fetch(&url);
            let Some(d) = urls.get_mut(&url) else {
                continue;
            };
            d.last = Some(Instant::now());
            match &result {
                Ok((_, max_age)) => {
                    d.failures = 0;
                    d.next = Instant::now() + (*max_age).clamp(MIN_REFRESH, MAX_REFRESH);
                }
                Err(_) => {
                    let backoff = FIRST_RETRY.saturating_mul(1 << d.failures.min(5));
                    d.failures += 1;
                    d.next = Instant::now() + backoff.min(MAX_RETRY);
                }
            }
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
    let whole = get(url).map_err(|e| format!("{url}: {e}"))?;
    if whole.status != 200 {
        return Err(format!("{url}: answered {} {}", whole.status, whole.reason));
    }
    let value = miniserde::json::from_str(&whole.body_text())
        .map_err(|_| format!("{url}: the answer is not JSON"))?;
    Ok((value, whole))
}

/// `GET url`, the whole answer (at most `DOCUMENT_MAX` bytes of body). Blocking, with
/// timeouts: the fetcher thread only.
pub fn get(url: &str) -> Result<Whole, String> {
    let (b, target) = crate::config::compile::parse_absolute_url(url)?;
    let addrs: Vec<_> = (b.host.trim_start_matches('[').trim_end_matches(']'), b.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", b.host))?
        .collect();
    let mut last = format!("{} did not resolve", b.host);
    let mut sock = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                sock = Some(s);
                break;
            }
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    let sock = sock.ok_or(last)?;
    sock.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    sock.set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nUser-Agent: edgegate/{}\r\nConnection: close\r\n\r\n",
        b.authority,
        env!("CARGO_PKG_VERSION")
    );
    match b.tls {
        None => exchange(sock, request.as_bytes()),
        Some(name) => {
            let config = crate::config::tls::backend_client_config()?;
            let conn = rustls::ClientConnection::new(config, (*name).clone())
                .map_err(|e| format!("TLS: {e}"))?;
            exchange(rustls::StreamOwned::new(conn, sock), request.as_bytes())
        }
    }
}

/// Writes `request` and reads the whole answer.
fn exchange(mut stream: impl Read + Write, request: &[u8]) -> Result<Whole, String> {
    stream
        .write_all(request)
        .map_err(|e| format!("sending: {e}"))?;
    stream.flush().map_err(|e| format!("sending: {e}"))?;
    let mut reader = Reader::new(false, DOCUMENT_MAX);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            // a TLS peer that closes without close_notify: the framing decides
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(format!("reading: {e}")),
        };
        match reader.feed(&chunk[..n], n == 0) {
            Ok(Some(whole)) => return Ok(whole),
            Ok(None) if n == 0 => {
                return Err("the connection closed before the answer ended".into())
            }
            Ok(None) => {}
            Err(WholeError::Bad(why)) => return Err(format!("not HTTP: {why}")),
            Err(WholeError::TooLarge(max)) => {
                return Err(format!("the answer is larger than {max} bytes"))
            }
        }
    }
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
