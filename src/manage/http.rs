//! A small blocking HTTP/1.1 server for the management plane: one thread per connection
//! (at most `MAX_CONNECTIONS`; beyond that a 503), keep-alive, Content-Length bodies up to
//! `MAX_BODY`, TLS through rustls when configured. Heads are parsed by the gateway's own
//! strict parser (`http::request`: duplicate or conflicting Content-Length, smuggling
//! forms, bad Host are 400 and close). Every phase has a deadline, not only each read:
//! a head must arrive within `HEAD_TIMEOUT` of its first byte, a body within
//! `BODY_TIMEOUT`, so a client dripping a byte at a time cannot hold a thread. Handlers
//! may block (long polls).
//! Must not touch: what requests mean (api.rs), the gateway's event loop.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::http::failure::Failure;
use crate::http::request::{self, BodyKind};

/// Most header fields of a request.
const MAX_HEADERS: usize = 64;

pub const MAX_CONNECTIONS: usize = 1024;
pub const MAX_HEAD: usize = 64 * 1024;
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// Idle keep-alive between requests.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// From a request's first byte to the end of its head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// From the end of the head to the end of the body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(60);
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The client's IP address (for the audit trail).
    pub peer: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|p| {
            p.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v)
        })
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

/// A response body: its own bytes, or a text shared with a cache (a gateway's document
/// goes to every gateway that asks without a copy per answer).
pub enum Body {
    Owned(Vec<u8>),
    Shared(Arc<str>),
}

impl Body {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Body::Owned(b) => b,
            Body::Shared(s) => s.as_bytes(),
        }
    }
}

const JSON_TYPE: &str = "application/json; charset=utf-8";

impl Response {
    pub fn json(status: u16, body: String) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", JSON_TYPE.into())],
            body: Body::Owned(body.into_bytes()),
        }
    }
    pub fn shared_json(status: u16, body: Arc<str>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", JSON_TYPE.into())],
            body: Body::Shared(body),
        }
    }
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Owned(Vec::new()),
        }
    }
    /// `{"statusCode": N, "message": "…"}`, as the gateway answers.
    pub fn error(status: u16, message: &str) -> Response {
        let mut body = format!("{{\"statusCode\": {status}, \"message\": ");
        crate::telemetry::push_json_str(&mut body, message);
        body.push('}');
        Response::json(status, body)
    }
}

pub type Handler = dyn Fn(&Request) -> Response + Send + Sync;

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// Accepts until the listener fails; each connection on its own thread.
pub fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: Arc<Handler>,
) -> io::Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let mut tcp = match conn {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        // before anything is written: a client that does not read cannot hold this thread
        let _ = tcp.set_write_timeout(Some(WRITE_TIMEOUT));
        if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            let _ = write_response(
                &mut tcp,
                &Response::error(503, "Too many connections"),
                true,
            );
            continue;
        }
        let _ = tcp.set_read_timeout(Some(IDLE_TIMEOUT));
        let _ = tcp.set_nodelay(true);
        let (handler, tls, active) = (handler.clone(), tls.clone(), active.clone());
        active.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name("edgegate-manage-conn".into())
            .spawn(move || {
                let Ok(socket) = tcp.try_clone() else {
                    active.fetch_sub(1, Ordering::SeqCst);
                    return;
                };
                let stream: Box<dyn Stream> = match tls {
                    Some(cfg) => match rustls::ServerConnection::new(cfg) {
                        Ok(server) => Box::new(rustls::StreamOwned::new(server, tcp)),
                        Err(_) => {
                            active.fetch_sub(1, Ordering::SeqCst);
                            return;
                        }
                    },
                    None => Box::new(tcp),
                };
                connection(stream, &socket, &*handler);
                active.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            log::warn!("cannot start a connection thread");
        }
    }
    Ok(())
}

/// Why no request could be read.
enum ReadError {
    /// The peer closed, or stayed idle past `IDLE_TIMEOUT`, between requests.
    Gone,
    /// A request that breaks a rule: answered with this status and message, then closed.
    Refused(u16, &'static str),
}

impl From<Failure> for ReadError {
    fn from(f: Failure) -> Self {
        ReadError::Refused(f.status(), f.message())
    }
}

fn connection(mut stream: Box<dyn Stream>, socket: &TcpStream, handler: &Handler) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let request = match read_request(&mut stream, socket, &mut buf) {
            Ok(r) => r,
            Err(ReadError::Gone) => return,
            Err(ReadError::Refused(status, message)) => {
                let _ = write_response(&mut stream, &Response::error(status, message), true);
                return;
            }
        };
        let close = request
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let response = handler(&request);
        if write_response(&mut stream, &response, close).is_err() || close {
            return;
        }
    }
}

/// Reads more bytes into `buf`, waiting at most until `deadline` (or `IDLE_TIMEOUT`
/// when none). `Ok(false)` = the peer closed; `Err(())` = the time is up or the read
/// failed.
fn read_more(
    stream: &mut Box<dyn Stream>,
    socket: &TcpStream,
    buf: &mut Vec<u8>,
    deadline: Option<Instant>,
) -> Result<bool, ()> {
    let wait = match deadline {
        Some(d) => d.saturating_duration_since(Instant::now()),
        None => IDLE_TIMEOUT,
    };
    if wait.is_zero() {
        return Err(());
    }
    let _ = socket.set_read_timeout(Some(wait));
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(true);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(()),
        }
    }
}

/// One request from the stream; `buf` carries bytes past it to the next call.
fn read_request(
    stream: &mut Box<dyn Stream>,
    socket: &TcpStream,
    buf: &mut Vec<u8>,
) -> Result<Request, ReadError> {
    // the head: within HEAD_TIMEOUT of its first byte
    let mut head_deadline = (!buf.is_empty()).then(|| Instant::now() + HEAD_TIMEOUT);
    let (request, head_len, length) = loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            if let Some(head) = request::parse(buf, &mut headers, MAX_HEAD)? {
                let length = match head.body {
                    BodyKind::None => 0,
                    BodyKind::Length(n) => usize::try_from(n).unwrap_or(usize::MAX),
                    BodyKind::Chunked => return Err(ReadError::Refused(411, "Length required")),
                };
                break (owned(&head), head.head_len, length);
            }
        }
        match read_more(stream, socket, buf, head_deadline) {
            Ok(true) => {
                head_deadline.get_or_insert_with(|| Instant::now() + HEAD_TIMEOUT);
            }
            Ok(false) if buf.is_empty() => return Err(ReadError::Gone),
            Err(()) if head_deadline.is_none() => return Err(ReadError::Gone),
            Ok(false) | Err(()) => return Err(Failure::HeadTimeout.into()),
        }
    };
    if length > MAX_BODY {
        return Err(Failure::BodyTooLarge.into());
    }
    buf.drain(..head_len);
    // the body: within BODY_TIMEOUT
    let body_deadline = Instant::now() + BODY_TIMEOUT;
    while buf.len() < length {
        match read_more(stream, socket, buf, Some(body_deadline)) {
            Ok(true) => {}
            Ok(false) => return Err(ReadError::Gone),
            Err(()) => return Err(Failure::BodyTimeout.into()),
        }
    }
    let body: Vec<u8> = buf.drain(..length).collect();
    let peer = socket
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    Ok(Request {
        body,
        peer,
        ..request
    })
}

/// The owned parts of a parsed head (the body is read next).
fn owned(head: &request::RequestHead) -> Request {
    Request {
        method: head.method.to_string(),
        path: head.path.to_string(),
        query: head.query.unwrap_or("").to_string(),
        headers: head
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: Vec::new(),
        peer: String::new(),
    }
}

fn write_response<W: Write + ?Sized>(w: &mut W, r: &Response, close: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Length: {}\r\n",
        r.status,
        crate::http::failure::reason_phrase(r.status),
        r.body.bytes().len()
    );
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.write_all(r.body.bytes())?;
    w.flush()
}

/// Reads PEM certificate chain and key into a rustls server config (ring provider).
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not match: {e}"))?;
    Ok(Arc::new(config))
}
