//! The agent's blocking HTTP(S) client for its own threads (OpenID discovery and keys,
//! the gateway identity's tokens): one request per connection, http or https with the
//! backends' trust settings (`net.backend.tls.ca`), connect and I/O timeouts, the
//! answer read whole and bounded (`http::whole`). Never used on the loop.
//! Must not touch: the loop, the store.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::http::whole::{Reader, Whole, WholeError};

/// Largest answer body.
pub const DOCUMENT_MAX: u64 = 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// `method url` with `headers` and `body`: the whole answer (at most `DOCUMENT_MAX`
/// bytes of body). Blocking, with timeouts.
pub fn call(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Whole, String> {
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
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nUser-Agent: edgegate/{}\r\nConnection: close\r\n",
        b.authority,
        env!("CARGO_PKG_VERSION")
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    match b.tls {
        None => exchange(sock, &bytes),
        Some(name) => {
            let config = crate::config::tls::backend_client_config()?;
            let conn = rustls::ClientConnection::new(config, (*name).clone())
                .map_err(|e| format!("TLS: {e}"))?;
            exchange(rustls::StreamOwned::new(conn, sock), &bytes)
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

/// When each item of a fetcher thread (an OpenID configuration, a resource's token) is
/// fetched next: at once when it is new, again when its answer says, sooner after a
/// failure (30 s doubling to 15 min), and on demand at most once per gap.
#[derive(Default)]
pub struct Schedule {
    items: std::collections::BTreeMap<String, Due>,
}

struct Due {
    next: std::time::Instant,
    last: Option<std::time::Instant>,
    failures: u32,
}

const FIRST_RETRY: Duration = Duration::from_secs(30);
const MAX_RETRY: Duration = Duration::from_secs(900);

impl Schedule {
    /// How long the thread may sleep before something is due (at most a minute).
    pub fn wait(&self) -> Duration {
        let now = std::time::Instant::now();
        self.items
            .values()
            .map(|d| d.next.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_secs(60))
            .min(Duration::from_secs(60))
    }

    /// Adds `key` (fetched at once) unless it is there.
    pub fn add(&mut self, key: String) {
        self.items.entry(key).or_insert(Due {
            next: std::time::Instant::now(),
            last: None,
            failures: 0,
        });
    }

    /// Forgets every item but `keys`.
    pub fn keep_only(&mut self, keys: &[String]) {
        self.items.retain(|k, _| keys.contains(k));
    }

    /// `key` again soon: now, or `gap` after its last fetch if that was more recent.
    pub fn soon(&mut self, key: &str, gap: Duration) {
        if let Some(d) = self.items.get_mut(key) {
            d.next = match d.last {
                Some(t) if t.elapsed() < gap => t + gap,
                _ => std::time::Instant::now(),
            };
        }
    }

    /// The items due now.
    pub fn due(&self) -> Vec<String> {
        let now = std::time::Instant::now();
        self.items
            .iter()
            .filter(|(_, d)| d.next <= now)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// `key` was fetched: again after `again` (`None`: it failed, so after the backoff).
    pub fn fetched(&mut self, key: &str, again: Option<Duration>) {
        let Some(d) = self.items.get_mut(key) else {
            return;
        };
        let now = std::time::Instant::now();
        d.last = Some(now);
        d.next = match again {
            Some(after) => {
                d.failures = 0;
                now + after
            }
            None => {
                let backoff = FIRST_RETRY.saturating_mul(1 << d.failures.min(5));
                d.failures += 1;
                now + backoff.min(MAX_RETRY)
            }
        };
    }
}
