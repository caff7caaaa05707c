//! A socket of a connection: plain TCP, or TLS over it (rustls; the server side towards
//! clients on the HTTPS listener, the client side towards `https://` backends). The
//! connection state machine reads, writes and peeks through `Transport` (std's `Read`
//! and `Write`, with non-blocking semantics: `WouldBlock` when nothing can move) and
//! never sees which it is.
//!
//! TLS: the handshake runs inside the first reads. Records are read into rustls and
//! decrypted on demand. Plaintext written goes into rustls at most one record's worth
//! at a time, and only once the previous records have left the socket, so a slow client
//! pushes back as with plain TCP and memory per connection stays bounded. Records left
//! in rustls when the socket is full are sent by `flush_pending`, which the connection
//! calls whenever the socket is writable.
//! Must not touch: HTTP, the connection's buffers.

use std::io::{self, Read, Write};

use std::sync::Arc;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::Connection;

use crate::config::tls::ListenerTls;

/// Most plaintext handed to rustls per write (one TLS record).
const TLS_WRITE_CHUNK: usize = 16 * 1024;

pub enum Transport {
    Plain(TcpStream),
    /// HTTPS when some certificate negotiates client certificates: the ClientHello is
    /// read first, and its SNI picks the config (one that asks for a certificate or
    /// not); then it becomes `Tls`.
    Accepting(Box<Hello>),
    Tls(TcpStream, Box<Connection>),
    /// `https://` through an HTTP proxy, while the CONNECT tunnel opens; then `Tls`.
    Tunnel(Box<super::tunnel::Tunnel>),
    /// An in-memory wire (sans-IO tests of the connection).
    #[cfg(test)]
    Memory(super::memory::MemoryWire),
}

/// A TLS connection before its ClientHello is whole.
pub struct Hello {
    /// Always there: taken only to become `Transport::Tls`.
    sock: Option<TcpStream>,
    acceptor: rustls::server::Acceptor,
    tls: Arc<ListenerTls>,
}

impl Hello {
    pub fn new(sock: TcpStream, tls: Arc<ListenerTls>) -> Hello {
        Hello {
            sock: Some(sock),
            acceptor: rustls::server::Acceptor::default(),
            tls,
        }
    }
}

/// How a non-blocking TCP connect stands.
fn tcp_state(sock: &TcpStream) -> Connect {
    match sock.take_error() {
        Ok(None) => match sock.peer_addr() {
            Ok(_) => Connect::Done,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Connect::Pending,
            Err(_) => Connect::Failed,
        },
        _ => Connect::Failed,
    }
}

/// How a non-blocking connect stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connect {
    Done,
    Pending,
    Failed,
}

impl Transport {
    pub fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Transport::Plain(s) | Transport::Tls(s, _) => registry.register(s, token, interest),
            Transport::Accepting(h) => match &mut h.sock {
                Some(s) => registry.register(s, token, interest),
                None => Ok(()),
            },
            Transport::Tunnel(t) => match t.sock_mut() {
                Some(s) => registry.register(s, token, interest),
                None => Ok(()),
            },
            #[cfg(test)]
            Transport::Memory(_) => Ok(()),
        }
    }

    pub fn deregister(&mut self, registry: &Registry) {
        match self {
            Transport::Plain(s) | Transport::Tls(s, _) => {
                let _ = registry.deregister(s);
            }
            Transport::Accepting(h) => {
                if let Some(s) = &mut h.sock {
                    let _ = registry.deregister(s);
                }
            }
            Transport::Tunnel(t) => {
                if let Some(s) = t.sock_mut() {
                    let _ = registry.deregister(s);
                }
            }
            #[cfg(test)]
            Transport::Memory(_) => {}
        }
    }

    /// Whether the connect of a socket that became writable (or, through a proxy's
    /// tunnel, readable) succeeded.
    pub fn connect_state(&mut self) -> Connect {
        let sock = match self {
            Transport::Plain(s) | Transport::Tls(s, _) => s,
            Transport::Tunnel(t) => {
                return match t.open(tcp_state) {
                    super::tunnel::Opening::Pending => Connect::Pending,
                    super::tunnel::Opening::Failed => Connect::Failed,
                    super::tunnel::Opening::Open(sock, tls) => {
                        *self = Transport::Tls(sock, Box::new(Connection::Client(*tls)));
                        Connect::Done
                    }
                }
            }
            // accepted, never connected by us
            Transport::Accepting(_) => return Connect::Done,
            #[cfg(test)]
            Transport::Memory(m) => {
                return match m.connected() {
                    Some(true) => Connect::Done,
                    Some(false) => Connect::Failed,
                    None => Connect::Pending,
                }
            }
        };
        tcp_state(sock)
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(..) | Transport::Accepting(_))
    }

    /// The certificates the TLS client presented (leaf first), once the handshake has
    /// them.
    pub fn peer_certificates(&self) -> Option<&[rustls_pki_types::CertificateDer<'static>]> {
        match self {
            Transport::Tls(_, tls) => tls.peer_certificates(),
            _ => None,
        }
    }

    /// Reads the ClientHello of an `Accepting` connection and, once it is whole, turns
    /// it into `Tls` with the config its SNI picks. `Ok(false)`: the client closed.
    fn accept(&mut self) -> io::Result<bool> {
        let Transport::Accepting(hello) = self else {
            return Ok(true);
        };
        let Some(sock) = hello.sock.as_mut() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        loop {
            match hello.acceptor.accept() {
                Ok(None) => {}
                Ok(Some(accepted)) => {
                    let sni = accepted.client_hello().server_name().map(str::to_owned);
                    let config = Arc::clone(hello.tls.for_name(sni.as_deref()));
                    let conn = match accepted.into_connection(config) {
                        Ok(c) => c,
                        Err((e, mut alert)) => {
                            let _ = alert.write_all(sock);
                            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                        }
                    };
                    let Some(sock) = hello.sock.take() else {
                        return Err(io::ErrorKind::NotConnected.into());
                    };
                    *self = Transport::Tls(sock, Box::new(Connection::Server(conn)));
                    // the server's first flight is ready: send it now, as a read would
                    self.flush_pending()?;
                    return Ok(true);
                }
                Err((e, mut alert)) => {
                    let _ = alert.write_all(sock);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
            if hello.acceptor.read_tls(sock)? == 0 {
                return Ok(false);
            }
        }
    }

    /// Whether a TLS handshake is still under way (a failure then is the handshake's).
    pub fn is_handshaking(&self) -> bool {
        match self {
            Transport::Tls(_, tls) => tls.is_handshaking(),
            Transport::Accepting(_) => true,
            _ => false,
        }
    }

    /// Whether encrypted records wait to be sent (the socket was full).
    pub fn has_pending_output(&self) -> bool {
        match self {
            Transport::Tls(_, tls) => tls.wants_write(),
            _ => false,
        }
    }

    /// Sends what rustls holds. `Ok(true)` when nothing is left; `Ok(false)` when the
    /// socket is full.
    pub fn flush_pending(&mut self) -> io::Result<bool> {
        let Transport::Tls(sock, tls) = self else {
            return Ok(true);
        };
        while tls.wants_write() {
            match tls.write_tls(sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Peeks at the socket: `Ok(0)` when the peer closed, `Ok(n)` when bytes wait
    /// (over TLS they may be a record of anything, not only a next request).
    pub fn peek(&mut self, probe: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.peek(probe),
            Transport::Accepting(h) => match &h.sock {
                Some(s) => s.peek(probe),
                None => Ok(0),
            },
            // nothing of the server's comes before the tunnel is open
            Transport::Tunnel(_) => Err(io::ErrorKind::WouldBlock.into()),
            Transport::Tls(s, tls) => {
                if tls.wants_read() {
                    s.peek(probe)
                } else {
                    // plaintext is already waiting in rustls
                    Ok(1)
                }
            }
            #[cfg(test)]
            Transport::Memory(m) => m.peek(probe),
        }
    }

    /// Best effort at the end of a TLS connection: a close_notify and what is pending.
    pub fn close(&mut self) {
        if let Transport::Tls(_, tls) = self {
            tls.send_close_notify();
        }
        let _ = self.flush_pending();
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if matches!(self, Transport::Accepting(_)) && !self.accept()? {
            return Ok(0);
        }
        let (sock, tls) = match self {
            Transport::Plain(s) => return s.read(buf),
            Transport::Tls(s, tls) => (s, tls),
            Transport::Accepting(_) | Transport::Tunnel(_) => {
                return Err(io::ErrorKind::WouldBlock.into())
            }
            #[cfg(test)]
            Transport::Memory(m) => return m.read(buf),
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                // no plaintext yet: read records from the socket
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // the peer closed without close_notify (common after `Connection: close`):
                // an end of stream; HTTP framing says whether anything was cut short
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            match tls.read_tls(sock) {
                Ok(0) => return Ok(0),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            if let Err(e) = tls.process_new_packets() {
                // send the alert rustls prepared, then give up on the connection
                while tls.wants_write() && tls.write_tls(sock).is_ok_and(|n| n > 0) {}
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // the handshake answers as it goes
            while tls.wants_write() {
                match tls.write_tls(sock) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

impl Write for Transport {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => return s.write(data),
            Transport::Accepting(_) | Transport::Tunnel(_) => {
                return Err(io::ErrorKind::WouldBlock.into())
            }
            #[cfg(test)]
            Transport::Memory(m) => return m.write(data),
            Transport::Tls(..) => {}
        }
        // records already in rustls go first: that is the back-pressure
        if !self.flush_pending()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let Transport::Tls(_, tls) = self else {
            return Ok(0);
        };
        let n = tls
            .writer()
            .write(&data[..data.len().min(TLS_WRITE_CHUNK)])?;
        // the socket may take them now; what it cannot goes with flush_pending
        self.flush_pending()?;
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => return s.write_vectored(bufs),
            Transport::Accepting(_) | Transport::Tunnel(_) => {
                return Err(io::ErrorKind::WouldBlock.into())
            }
            #[cfg(test)]
            Transport::Memory(m) => return m.write_vectored(bufs),
            Transport::Tls(..) => {}
        }
        if !self.flush_pending()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let Transport::Tls(_, tls) = self else {
            return Ok(0);
        };
        // the slices together, so a head and its body share a record: one record's worth
        let mut budget = TLS_WRITE_CHUNK;
        let mut slices: [io::IoSlice<'_>; 4] = [io::IoSlice::new(&[]); 4];
        let mut used = 0;
        for b in bufs.iter().take(slices.len()) {
            let take = b.len().min(budget);
            if take == 0 {
                break;
            }
            slices[used] = io::IoSlice::new(&b[..take]);
            used += 1;
            budget -= take;
        }
        let n = tls.writer().write_vectored(&slices[..used])?;
        self.flush_pending()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.flush_pending()? {
            true => Ok(()),
            false => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// What the connection's I/O helpers need of a socket: plain TCP (backends) or a
/// `Transport` (clients).
pub trait Wire: Read + Write {
    /// Whether a short read or write means the socket is drained or full, so that
    /// edge-triggered readiness must wait for a new event. Over TLS it does not: a read
    /// may end at a record boundary with more records waiting, and a write takes at most
    /// one record.
    fn short_io_is_final(&self) -> bool;
}

impl Wire for TcpStream {
    fn short_io_is_final(&self) -> bool {
        true
    }
}

impl Wire for Transport {
    fn short_io_is_final(&self) -> bool {
        !self.is_tls()
    }
}
