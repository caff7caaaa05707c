//! A small blocking HTTP/1.1 server for the management plane: one thread per connection
//! (at most `MAX_CONNECTIONS`; beyond that a 503), keep-alive, Content-Length bodies up to
//! `MAX_BODY`, every socket with a timeout, TLS through rustls when configured. Requests
//! are parsed with httparse, as on the data plane. Handlers may block (long polls).
//! Must not touch: what requests mean (api.rs), the gateway's event loop.

use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const MAX_CONNECTIONS: usize = 1024;
pub const MAX_HEAD: usize = 64 * 1024;
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// Idle keep-alive and slow-client limit per read.
pub const READ_TIMEOUT: Duration = Duration::from_secs(75);
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
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
        if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            let _ = write_response(
                &mut tcp,
                &Response::error(503, "Too many connections"),
                true,
            );
            continue;
        }
        let _ = tcp.set_read_timeout(Some(READ_TIMEOUT));
        let _ = tcp.set_write_timeout(Some(WRITE_TIMEOUT));
        let _ = tcp.set_nodelay(true);
        let (handler, tls, active) = (handler.clone(), tls.clone(), active.clone());
        active.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name("edgegate-manage-conn".into())
            .spawn(move || {
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
                connection(stream, &*handler);
                active.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            log::warn!("cannot start a connection thread");
        }
    }
    Ok(())
}

fn connection(mut stream: Box<dyn Stream>, handler: &Handler) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let request = match read_request(&mut stream, &mut buf) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(status) => {
                let _ = write_response(&mut stream, &Response::error(status, "Bad request"), true);
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

/// One request from the stream; `buf` carries bytes past it to the next call.
/// `Ok(None)` = the peer closed (or timed out) between requests; `Err(status)` = bad input.
fn read_request(stream: &mut Box<dyn Stream>, buf: &mut Vec<u8>) -> Result<Option<Request>, u16> {
    let mut chunk = [0u8; 8192];
    let head_len = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(431);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Ok(None),
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&buf[..head_len]) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(400),
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let method = req.method.unwrap_or("").to_string();
    let (path, query) = (path.to_string(), query.to_string());
    if headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding"))
    {
        return Err(411);
    }
    let length = match headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        Some((_, v)) => v.trim().parse::<usize>().map_err(|_| 400u16)?,
        None => 0,
    };
    if length > MAX_BODY {
        return Err(413);
    }
    buf.drain(..head_len);
    while buf.len() < length {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Ok(None),
        }
    }
    let body: Vec<u8> = buf.drain(..length).collect();
    Ok(Some(Request {
        method,
        path,
        query,
        headers,
        body,
    }))
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
