//! Host names the loop learned at request time (a send-request URL an expression
//! computed): a bounded cache of the resolver thread's answers (positive for a minute,
//! negative for five seconds) and who waits for a name being looked up. The loop never
//! resolves: it asks the resolver thread (`agent::resolver`) with `try_send` and drives
//! the waiting owners when the answer comes.
//! Must not touch: sockets, DNS itself.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

/// How long an answer is used.
const FOUND_FOR: Duration = Duration::from_secs(60);
const NOT_FOUND_FOR: Duration = Duration::from_secs(5);
/// Most names cached, and most looked up at once.
const MAX_NAMES: usize = 1024;
const MAX_PENDING: usize = 64;
/// Most owners waiting for one name (further ones fail as unresolvable).
const MAX_WAITING: usize = 1024;

/// Where a name stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Found(IpAddr),
    /// It did not resolve (or the resolver could not take the question).
    NotFound,
    /// Asked; the owner is driven when the answer comes.
    Waiting,
}

#[derive(Default)]
pub struct Names {
    cache: HashMap<String, (Vec<IpAddr>, Instant)>,
    waiting: HashMap<String, Vec<usize>>,
    asks: Option<SyncSender<String>>,
}

impl Names {
    /// Names resolved by the resolver thread behind `asks`.
    pub fn with_resolver(asks: SyncSender<String>) -> Names {
        Names {
            asks: Some(asks),
            ..Names::default()
        }
    }

    /// The address of `host` for `owner`: known, unknown, or asked for.
    pub fn lookup(&mut self, host: &str, owner: usize, now: Instant) -> Lookup {
        let host = host.to_ascii_lowercase();
        if let Some((ips, until)) = self.cache.get(&host) {
            if now < *until {
                return ips
                    .first()
                    .map_or(Lookup::NotFound, |ip| Lookup::Found(*ip));
            }
        }
        if let Some(owners) = self.waiting.get_mut(&host) {
            if owners.len() >= MAX_WAITING {
                return Lookup::NotFound;
            }
            if !owners.contains(&owner) {
                owners.push(owner);
            }
            return Lookup::Waiting;
        }
        let Some(asks) = &self.asks else {
            return Lookup::NotFound;
        };
        if self.waiting.len() >= MAX_PENDING || asks.try_send(host.clone()).is_err() {
            return Lookup::NotFound;
        }
        self.waiting.insert(host, vec![owner]);
        Lookup::Waiting
    }

    /// Keeps an answer; returns who waited for it.
    pub fn answered(&mut self, host: String, ips: Vec<IpAddr>, now: Instant) -> Vec<usize> {
        if self.cache.len() >= MAX_NAMES {
            self.cache.retain(|_, (_, until)| now < *until);
            if self.cache.len() >= MAX_NAMES {
                if let Some(k) = self.cache.keys().next().cloned() {
                    self.cache.remove(&k);
                }
            }
        }
        let until = now
            + if ips.is_empty() {
                NOT_FOUND_FOR
            } else {
                FOUND_FOR
            };
        let owners = self.waiting.remove(&host).unwrap_or_default();
        self.cache.insert(host, (ips, until));
        owners
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_asked_once_cached_and_bounded() {
        let (asks, asked) = std::sync::mpsc::sync_channel(4);
        let mut names = Names::with_resolver(asks);
        let now = Instant::now();
        assert_eq!(names.lookup("IdP.example", 1, now), Lookup::Waiting);
        assert_eq!(names.lookup("idp.example", 2, now), Lookup::Waiting);
        assert_eq!(asked.try_recv().as_deref(), Ok("idp.example"));
        assert!(asked.try_recv().is_err(), "asked once");
        let ip: IpAddr = "127.0.0.7".parse().unwrap();
        assert_eq!(
            names.answered("idp.example".into(), vec![ip], now),
            vec![1, 2]
        );
        assert_eq!(names.lookup("idp.example", 3, now), Lookup::Found(ip));
        assert_eq!(
            names.lookup("idp.example", 3, now + FOUND_FOR),
            Lookup::Waiting,
            "asked again once the answer is old"
        );
        assert_eq!(
            names.answered("gone.example".into(), vec![], now),
            Vec::<usize>::new()
        );
        assert_eq!(names.lookup("gone.example", 1, now), Lookup::NotFound);
        // a full queue: not found, never a wait
        for i in 0..10 {
            let _ = names.lookup(&format!("n{i}.example"), 1, now);
        }
        assert_eq!(names.lookup("late.example", 1, now), Lookup::NotFound);
        // without a resolver nothing is looked up
        assert_eq!(
            Names::default().lookup("x.example", 1, now),
            Lookup::NotFound
        );
    }
}
