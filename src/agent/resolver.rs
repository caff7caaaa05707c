//! The resolver thread: looks up host names that policies compute at request time
//! (a send-request URL from an expression) with the system resolver, one at a time, and
//! hands each answer to the loop through a channel plus the `mio::Waker`. The loop asks
//! with `try_send` on a bounded queue and never waits; a full queue is the loop's to
//! handle (the request fails as unresolvable).
//! Must not touch: the loop's state, sockets of the data plane.

use std::net::{IpAddr, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;

use mio::Waker;

/// Names waiting to be looked up, at most.
pub const RESOLVER_QUEUE: usize = 64;

/// The loop's ends of the resolver's channels.
pub struct Resolver {
    pub asks: SyncSender<String>,
    /// Each name asked, with its addresses (IPv4 first; none: it did not resolve).
    pub answers: Receiver<(String, Vec<IpAddr>)>,
}

/// Starts the resolver thread; it ends when the loop drops its `Resolver`.
pub fn spawn(waker: Arc<Waker>) -> std::io::Result<Resolver> {
    let (asks, asked) = mpsc::sync_channel::<String>(RESOLVER_QUEUE);
    let (answer, answers) = mpsc::sync_channel(RESOLVER_QUEUE);
    std::thread::Builder::new()
        .name("edgegate-resolver".into())
        .spawn(move || {
            while let Ok(host) = asked.recv() {
                let addrs = lookup(&host);
                if answer.send((host, addrs)).is_err() {
                    return;
                }
                let _ = waker.wake();
            }
        })?;
    Ok(Resolver { asks, answers })
}

/// The addresses of `host`, IPv4 first (the gateway connects to the first).
pub fn lookup(host: &str) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = (host, 0)
        .to_socket_addrs()
        .map(|it| it.map(|a| a.ip()).collect())
        .unwrap_or_default();
    ips.sort_by_key(|ip| ip.is_ipv6());
    ips.dedup();
    ips
}
