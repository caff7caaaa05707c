//! A connection to an `https://` server through an HTTP proxy (the `proxy` policy):
//! the socket goes to the proxy, `CONNECT host:port` (with `Proxy-Authorization` when
//! the policy gives credentials) asks it for a tunnel, and once it answers 200 the TLS
//! handshake with the server runs through the tunnel. All of it non-blocking, driven by
//! the connection's readiness while it is still connecting (`Transport::connect_state`).
//! Must not touch: HTTP beyond the CONNECT exchange, the pool.

use std::io::{self, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls_pki_types::ServerName;

use super::transport::Connect;

/// The longest answer to CONNECT the gateway reads.
const ANSWER_MAX: usize = 8 * 1024;

/// Where a tunnel goes and how the proxy is told who asks.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ConnectVia {
    /// `host:port` of the server.
    pub authority: String,
    /// The `Proxy-Authorization` value, if any.
    pub authorization: Option<String>,
}

impl std::fmt::Debug for ConnectVia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConnectVia {{ authority: {:?} }}", self.authority)
    }
}

/// A tunnel being opened.
pub struct Tunnel {
    /// Always there: taken only when the tunnel is open.
    sock: Option<TcpStream>,
    request: Vec<u8>,
    sent: usize,
    answer: Vec<u8>,
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

/// How opening a tunnel stands.
pub enum Opening {
    Pending,
    Failed,
    /// Open: the socket and the TLS connection to run over it.
    Open(TcpStream, Box<rustls::ClientConnection>),
}

impl Tunnel {
    pub fn new(
        sock: TcpStream,
        via: &ConnectVia,
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
    ) -> Tunnel {
        let mut request = format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n", via.authority);
        if let Some(a) = &via.authorization {
            request.push_str(&format!("Proxy-Authorization: {a}\r\n"));
        }
        request.push_str("\r\n");
        Tunnel {
            sock: Some(sock),
            request: request.into_bytes(),
            sent: 0,
            answer: Vec::new(),
            config,
            name,
        }
    }

    pub fn sock_mut(&mut self) -> Option<&mut TcpStream> {
        self.sock.as_mut()
    }

    /// One move: connect, send CONNECT, read the answer; `Open` once the proxy said 200.
    pub fn open(&mut self, tcp: impl Fn(&TcpStream) -> Connect) -> Opening {
        let Some(sock) = self.sock.as_mut() else {
            return Opening::Failed;
        };
        match tcp(sock) {
            Connect::Done => {}
            Connect::Pending => return Opening::Pending,
            Connect::Failed => return Opening::Failed,
        }
        while self.sent < self.request.len() {
            match sock.write(&self.request[self.sent..]) {
                Ok(0) => return Opening::Failed,
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Opening::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Opening::Failed,
            }
        }
        let mut buf = [0u8; 1024];
        let head_end = loop {
            if let Some(i) = self.answer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if self.answer.len() > ANSWER_MAX {
                return Opening::Failed;
            }
            match sock.read(&mut buf) {
                Ok(0) => return Opening::Failed,
                Ok(n) => self.answer.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Opening::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Opening::Failed,
            }
        };
        // "HTTP/1.1 200 …", and nothing after the head (the server has not spoken yet)
        let status = self.answer.get(9..12);
        let http = self.answer.starts_with(b"HTTP/1.");
        if !http || status != Some(b"200") || head_end != self.answer.len() {
            log::debug!(
                "the proxy refused CONNECT {}: {}",
                self.name.to_str(),
                String::from_utf8_lossy(self.answer.split(|&b| b == b'\r').next().unwrap_or(&[]))
            );
            return Opening::Failed;
        }
        let Ok(tls) = rustls::ClientConnection::new(Arc::clone(&self.config), self.name.clone())
        else {
            return Opening::Failed;
        };
        match self.sock.take() {
            Some(sock) => Opening::Open(sock, Box::new(tls)),
            None => Opening::Failed,
        }
    }
}
