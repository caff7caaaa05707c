//! Backend (upstream) connections: a slab of sockets and a bounded keep-alive pool per
//! backend address and TLS name (an `https://` backend's connections speak TLS through
//! `Transport`, with the runtime's client config: see `config::tls`). A connection is either checked out by exactly one client exchange
//! or idle in the pool; an idle one that becomes readable (the backend closed it or
//! sent garbage) is dropped. Connecting is non-blocking to an address already resolved
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
use crate::route::FnvMap;

/// Where a pooled connection goes: the address, and the TLS name for `https://`.
type PoolKey = (SocketAddr, Option<Arc<ServerName<'static>>>);

pub struct BackendConn {
    pub transport: Transport,
    key: PoolKey,
    pub readable: bool,
    pub writable: bool,
    pub connected: bool,
    /// Set when the connection was taken from the idle pool (may be stale).
    pub reused: bool,
    idle_since: Option<Instant>,
    /// The client slab key of the exchange using this connection (kept by the loop).
    pub owner: usize,
}

pub struct Backends {
    pub slab: Slab<BackendConn>,
    idle: FnvMap<PoolKey, Vec<usize>>,
    max_idle_per_addr: usize,
    idle_timeout: Duration,
    max_total: usize,
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
        }
    }

    /// An idle connection to `addr` (TLS to `tls`'s name, checked with its config, when
    /// given) unless `fresh`, or a new non-blocking connect.
    pub fn checkout(
        &mut self,
        addr: SocketAddr,
        tls: Option<(&Arc<ServerName<'static>>, &Arc<rustls::ClientConfig>)>,
        fresh: bool,
        registry: &Registry,
    ) -> io::Result<usize> {
        let pool_key = (addr, tls.map(|(name, _)| Arc::clone(name)));
        if let Some(list) = self.idle.get_mut(&pool_key).filter(|_| !fresh) {
            while let Some(key) = list.pop() {
                let Some(c) = self.slab.get_mut(key) else {
                    continue;
                };
                c.idle_since = None;
                if !c.readable {
                    c.reused = true;
                    return Ok(key);
                }
                // it became readable while idle: closed or confused; already off the list
                let mut dead = self.slab.remove(key);
                let _ = registry.deregister(dead.transport.sock());
            }
        }
        if self.slab.len() >= self.max_total && !self.evict_oldest_idle(registry) {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "backend connection limit",
            ));
        }
        let mut sock = TcpStream::connect(addr)?;
        // Heads and bodies go out in separate writes: never let Nagle hold the second.
        let _ = sock.set_nodelay(true);
        let entry = self.slab.vacant_entry();
        let key = entry.key();
        registry.register(
            &mut sock,
            token::backend(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let transport = match tls {
            None => Transport::Plain(sock),
            Some((name, config)) => {
                let conn = rustls::ClientConnection::new(Arc::clone(config), (**name).clone())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                Transport::Tls(sock, Box::new(rustls::Connection::Client(conn)))
            }
        };
        entry.insert(BackendConn {
            transport,
            key: pool_key,
            readable: false,
            writable: false,
            connected: false,
            reused: false,
            idle_since: None,
            owner: usize::MAX,
        });
        Ok(key)
    }

    /// Returns a healthy connection to the pool (or closes it when the pool is full).
    pub fn checkin(&mut self, key: usize, now: Instant, registry: &Registry) {
        let Some(c) = self.slab.get_mut(key) else {
            return;
        };
        let list = self.idle.entry(c.key.clone()).or_default();
        if list.len() >= self.max_idle_per_addr {
            self.remove(key, registry);
            return;
        }
        c.idle_since = Some(now);
        c.reused = true;
        list.push(key);
    }

    pub fn remove(&mut self, key: usize, registry: &Registry) {
        if let Some(mut c) = self.slab.try_remove(key) {
            let _ = registry.deregister(c.transport.sock());
            if c.idle_since.is_some() {
                if let Some(list) = self.idle.get_mut(&c.key) {
                    list.retain(|k| *k != key);
                }
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
            .filter_map(|&k| self.slab.get(k).and_then(|c| c.idle_since).map(|t| (t, k)))
            .min();
        match oldest {
            Some((_, key)) => {
                self.remove(key, registry);
                true
            }
            None => false,
        }
    }

    pub fn is_idle(&self, key: usize) -> bool {
        self.slab.get(key).is_some_and(|c| c.idle_since.is_some())
    }

    /// An event on an idle connection: the backend closed it or sent unsolicited bytes.
    pub fn on_idle_event(&mut self, key: usize, registry: &Registry) {
        self.remove(key, registry);
    }

    /// Closes idle connections past their timeout.
    pub fn sweep(&mut self, now: Instant, registry: &Registry) {
        let expired: Vec<usize> = self
            .slab
            .iter()
            .filter(|(_, c)| {
                c.idle_since
                    .is_some_and(|t| now.duration_since(t) >= self.idle_timeout)
            })
            .map(|(k, _)| k)
            .collect();
        for key in expired {
            self.remove(key, registry);
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
