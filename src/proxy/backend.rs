//! Backend (upstream) connections: a slab of sockets and a bounded keep-alive pool per
//! backend address and TLS name (an `https://` backend's connections speak TLS through
//! `Transport`, with the runtime's client config: see `config::tls`). A connection is
//! either idle in the pool (held here) or owned by exactly one client exchange (moved
//! out as a `BackendLink`, the slab keeping only who owns it, so the loop can route
//! readiness); an idle one that becomes readable (the backend closed it or sent garbage)
//! is dropped. Connecting is non-blocking to an address already resolved
//! by the agent: no DNS here.
//! Must not touch: client sockets, HTTP parsing.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use std::sync::Arc;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls_pki_types::ServerName;
use slab::Slab;

use super::token;
use super::transport::Transport;
use super::tunnel::{ConnectVia, Tunnel};
use crate::route::FnvMap;

/// Where a pooled connection goes: the address, and for `https://` the TLS name, the
/// thumbprint of the client certificate it presents (if any) and, through a proxy, the
/// tunnel's destination.
type PoolKey = (
    SocketAddr,
    Option<(
        Arc<ServerName<'static>>,
        Option<Arc<str>>,
        Option<Arc<ConnectVia>>,
    )>,
);

/// How to speak TLS to a backend: the name its certificate must carry, the client
/// config, and the client certificate that config presents (its thumbprint), which
/// keeps those connections in a pool of their own.
#[derive(Clone, Copy)]
pub struct TlsTo<'a> {
    pub name: &'a Arc<ServerName<'static>>,
    pub config: &'a Arc<rustls::ClientConfig>,
    pub identity: Option<&'a Arc<str>>,
    /// Through an HTTP proxy (`addr` is the proxy's): the CONNECT tunnel to open.
    pub via: Option<&'a Arc<ConnectVia>>,
}

pub struct BackendConn {
    pub transport: Transport,
    key: PoolKey,
    pub readable: bool,
    pub writable: bool,
    /// The backend closed its side (EPOLLRDHUP): sticky, so reads go on to the end even
    /// after a short read (edge-triggered readiness would not report the close again).
    pub hup: bool,
    /// Set when the connection was taken from the idle pool (may be stale).
    pub reused: bool,
}

/// A backend connection checked out by one exchange, which owns it until it gives it
/// back (`Backends::checkin`) or closes it (`Backends::close`). `token` is the key of its
/// poll registration, through which the loop routes its readiness to the owner.
pub struct BackendLink {
    pub token: usize,
    pub conn: BackendConn,
}

/// What an exchange does with its backend connection when it lets go of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Back into the keep-alive pool: the response was complete and framed.
    Reuse,
    /// Closed, for this reason.
    Close(CloseReason),
}

/// Why a backend connection is closed rather than pooled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Connecting, sending or reading failed (or timed out).
    Failed,
    /// A `<retry>` attempt ended; the next one takes another connection.
    RetryAttempt,
    /// A pooled connection the backend had closed; a fresh one replaces it.
    Stale,
    /// The response did not end cleanly (`Connection: close`, read to the end, a body
    /// not read by the client, a policy answer that left bytes unread).
    NotReusable,
    /// The client went away or the gateway stopped the exchange.
    Aborted,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Failed => "failed",
            CloseReason::RetryAttempt => "retry_attempt",
            CloseReason::Stale => "stale",
            CloseReason::NotReusable => "not_reusable",
            CloseReason::Aborted => "aborted",
        }
    }
}

/// What the slab holds under a registered backend token.
enum Slot {
    /// In the keep-alive pool since `since`.
    Idle { conn: BackendConn, since: Instant },
    /// Owned by the exchange of client `owner` (its `BackendLink`).
    InUse { owner: usize },
}

pub struct Backends {
    slab: Slab<Slot>,
    idle: FnvMap<PoolKey, Vec<usize>>,
    max_idle_per_addr: usize,
    idle_timeout: Duration,
    max_total: usize,
    /// Sans-IO tests: new connections are these in-memory wires, in turn.
    #[cfg(test)]
    pub dial: std::collections::VecDeque<super::memory::MemoryWire>,
}

/// Most idle connections kept per backend address.
pub const MAX_IDLE_PER_BACKEND: usize = 512;
/// Idle backend connections older than this are closed.
pub const BACKEND_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

impl Backends {
    pub fn new(max_total: usize) -> Backends {
        Backends {
            slab: Slab::with_capacity(64),
            idle: FnvMap::default(),
            max_idle_per_addr: MAX_IDLE_PER_BACKEND,
            idle_timeout: BACKEND_IDLE_TIMEOUT,
            max_total,
            #[cfg(test)]
            dial: Default::default(),
        }
    }

    /// An idle connection to `addr` (TLS to `tls`'s name, checked with its config, when
    /// given) unless `fresh`, or a new non-blocking connect; owned by client `owner`'s
    /// exchange from now on.
    pub fn checkout(
        &mut self,
        addr: SocketAddr,
        tls: Option<TlsTo<'_>>,
        fresh: bool,
        owner: usize,
        registry: &Registry,
    ) -> io::Result<BackendLink> {
        let pool_key = (
            addr,
            tls.map(|t| (Arc::clone(t.name), t.identity.cloned(), t.via.cloned())),
        );
        if let Some(list) = self.idle.get_mut(&pool_key).filter(|_| !fresh) {
            while let Some(token) = list.pop() {
                let Some(slot) = self.slab.get_mut(token) else {
                    continue;
                };
                let Slot::Idle { mut conn, .. } = std::mem::replace(slot, Slot::InUse { owner })
                else {
                    continue;
                };
                if !conn.readable {
                    conn.reused = true;
                    return Ok(BackendLink { token, conn });
                }
                // it became readable while idle: closed or confused; already off the list
                self.slab.remove(token);
                conn.transport.deregister(registry);
            }
        }
        if self.slab.len() >= self.max_total && !self.evict_oldest_idle(registry) {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "backend connection limit",
            ));
        }
        #[cfg(test)]
        if let Some(wire) = self.dial.pop_front() {
            let token = self.slab.insert(Slot::InUse { owner });
            let conn = BackendConn {
                transport: Transport::Memory(wire),
                key: pool_key,
                readable: true,
                writable: true,
                hup: false,
                reused: false,
            };
            return Ok(BackendLink { token, conn });
        }
        let mut sock = TcpStream::connect(addr)?;
        // Heads and bodies go out in separate writes: never let Nagle hold the second.
        let _ = sock.set_nodelay(true);
        let entry = self.slab.vacant_entry();
        let token = entry.key();
        registry.register(
            &mut sock,
            token::backend(token),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let transport = match tls {
            None => Transport::Plain(sock),
            Some(TlsTo {
                name,
                config,
                via: Some(via),
                ..
            }) => Transport::Tunnel(Box::new(Tunnel::new(
                sock,
                via,
                Arc::clone(config),
                (**name).clone(),
            ))),
            Some(TlsTo { name, config, .. }) => {
                let conn = rustls::ClientConnection::new(Arc::clone(config), (**name).clone())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                Transport::Tls(sock, Box::new(rustls::Connection::Client(conn)))
            }
        };
        entry.insert(Slot::InUse { owner });
        Ok(BackendLink {
            token,
            conn: BackendConn {
                transport,
                key: pool_key,
                readable: false,
                writable: false,
                hup: false,
                reused: false,
            },
        })
    }

    /// Takes a healthy connection back into the pool (or closes it when the pool is full).
    pub fn checkin(&mut self, link: BackendLink, now: Instant, registry: &Registry) {
        let BackendLink { token, mut conn } = link;
        let list = self.idle.entry(conn.key.clone()).or_default();
        if list.len() >= self.max_idle_per_addr {
            self.slab.try_remove(token);
            conn.transport.deregister(registry);
            return;
        }
        conn.reused = true;
        list.push(token);
        if let Some(slot) = self.slab.get_mut(token) {
            *slot = Slot::Idle { conn, since: now };
        }
    }

    /// Closes a checked-out connection.
    pub fn close(&mut self, link: BackendLink, why: CloseReason, registry: &Registry) {
        let BackendLink { token, mut conn } = link;
        log::debug!(
            "backend connection {} to {} closed: {}",
            token,
            conn.key.0,
            why.as_str()
        );
        self.slab.try_remove(token);
        conn.transport.deregister(registry);
    }

    /// Closes an idle connection.
    fn remove_idle(&mut self, token: usize, registry: &Registry) {
        if let Some(Slot::Idle { mut conn, .. }) = self.slab.try_remove(token) {
            conn.transport.deregister(registry);
            if let Some(list) = self.idle.get_mut(&conn.key) {
                list.retain(|k| *k != token);
            }
        }
    }

    /// Closes the idle connection that waited longest (of any backend), to make room
    /// for a new one: idle connections to one backend never keep another unreachable.
    /// False when none is idle.
    fn evict_oldest_idle(&mut self, registry: &Registry) -> bool {
        let oldest = self
            .idle
            .values()
            .filter_map(|list| list.first())
            .filter_map(|&k| match self.slab.get(k) {
                Some(Slot::Idle { since, .. }) => Some((*since, k)),
                _ => None,
            })
            .min();
        match oldest {
            Some((_, token)) => {
                self.remove_idle(token, registry);
                true
            }
            None => false,
        }
    }

    /// Readiness of a backend socket: an idle one that becomes readable was closed by
    /// the backend (or sent garbage) and is dropped; for one in use, the owning client.
    pub fn on_event(&mut self, token: usize, readable: bool, registry: &Registry) -> Option<usize> {
        match self.slab.get(token)? {
            Slot::Idle { .. } => {
                if readable {
                    self.remove_idle(token, registry);
                }
                None
            }
            Slot::InUse { owner } => Some(*owner),
        }
    }

    /// Closes idle connections past their timeout.
    pub fn sweep(&mut self, now: Instant, registry: &Registry) {
        let expired: Vec<usize> = self
            .slab
            .iter()
            .filter(|(_, slot)| {
                matches!(slot, Slot::Idle { since, .. } if now.duration_since(*since) >= self.idle_timeout)
            })
            .map(|(k, _)| k)
            .collect();
        for token in expired {
            self.remove_idle(token, registry);
        }
    }

    pub fn idle_count(&self) -> usize {
        self.idle.values().map(Vec::len).sum()
    }

    /// Registered token for a key, for tests of the token scheme.
    pub fn token_of(key: usize) -> Token {
        token::backend(key)
    }
}
