//! Passwords of portal accounts and the sign-in throttle. A password is kept only as
//! PBKDF2-HMAC-SHA256 (ring, the crypto provider already under rustls) with a random
//! 16-byte salt and `ITERATIONS` rounds, OWASP's 2023 figure, written as
//! `pbkdf2-sha256$<rounds>$<salt>$<hash>` so the rounds can be raised later without
//! invalidating stored hashes. Sign-in attempts are counted per account and per client
//! address in memory (bounded), and refused for a while after too many failures.
//! Must not touch: sessions, the store.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;

pub const ITERATIONS: u32 = 600_000;
/// Shortest password accepted at sign-up.
pub const MIN_LENGTH: usize = 10;
/// Longest: PBKDF2 hashes it whole each round, so a megabyte password would be work.
pub const MAX_LENGTH: usize = 256;
const ALGORITHM: ring::pbkdf2::Algorithm = ring::pbkdf2::PBKDF2_HMAC_SHA256;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

/// The stored form of `password`.
pub fn hash(password: &str) -> String {
    use ring::rand::SecureRandom;
    let mut salt = [0u8; 16];
    let _ = ring::rand::SystemRandom::new().fill(&mut salt);
    let rounds = NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN);
    let mut out = [0u8; 32];
    ring::pbkdf2::derive(ALGORITHM, rounds, &salt, password.as_bytes(), &mut out);
    format!(
        "pbkdf2-sha256${ITERATIONS}${}${}",
        B64.encode(salt),
        B64.encode(out)
    )
}

/// Whether `password` is the one `stored` was made from (constant time).
pub fn verify(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("pbkdf2-sha256"), Some(rounds), Some(salt), Some(expected), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Some(rounds), Ok(salt), Ok(expected)) = (
        rounds.parse::<u32>().ok().and_then(NonZeroU32::new),
        B64.decode(salt),
        B64.decode(expected),
    ) else {
        return false;
    };
    ring::pbkdf2::verify(ALGORITHM, rounds, &salt, password.as_bytes(), &expected).is_ok()
}

/// Why a new password is refused, if it is.
pub fn weakness(password: &str) -> Option<String> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Some(format!(
            "A password needs at least {MIN_LENGTH} characters."
        ));
    }
    if password.len() > MAX_LENGTH {
        return Some(format!("A password may have at most {MAX_LENGTH} bytes."));
    }
    None
}

/// Failures allowed per account in `WINDOW` before sign-in is refused.
const PER_ACCOUNT: u32 = 5;
/// Failures allowed per client address in `WINDOW` (several accounts behind one NAT).
const PER_ADDRESS: u32 = 20;
/// Sign-ups allowed per client address in `WINDOW`.
const SIGN_UPS_PER_ADDRESS: u32 = 10;
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Most keys remembered; past it, the oldest windows are forgotten first.
const MAX_TRACKED: usize = 10_000;

/// Failed sign-ins per account and per address, and sign-ups per address, each counted in
/// a window from its first event.
#[derive(Default)]
pub struct Throttle {
    counts: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Throttle {
    /// How long `account` from `address` must wait, if sign-in is refused now.
    pub fn refused(&self, account: &str, address: &str) -> Option<Duration> {
        let map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        [
            (format!("a:{account}"), PER_ACCOUNT),
            (format!("ip:{address}"), PER_ADDRESS),
        ]
        .iter()
        .filter_map(|(key, limit)| {
            let (since, count) = map.get(key)?;
            let left = WINDOW.checked_sub(now.duration_since(*since))?;
            (*count >= *limit).then_some(left)
        })
        .max()
    }

    pub fn failed(&self, account: &str, address: &str) {
        self.count(&[format!("a:{account}"), format!("ip:{address}")]);
    }

    /// One more event for each of `keys`, in the window from its first.
    fn count(&self, keys: &[String]) {
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if map.len() >= MAX_TRACKED {
            map.retain(|_, (since, _)| now.duration_since(*since) < WINDOW);
            if map.len() >= MAX_TRACKED {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, (s, _))| *s)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    map.remove(&k);
                }
            }
        }
        for key in keys.iter().cloned() {
            let entry = map.entry(key).or_insert((now, 0));
            if now.duration_since(entry.0) >= WINDOW {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
    }

    /// Counts a sign-up from `address`; false once `SIGN_UPS_PER_ADDRESS` were made from
    /// it in the window (each costs a password hash and makes a pending account).
    pub fn sign_up(&self, address: &str) -> bool {
        let key = format!("s:{address}");
        let refused = {
            let map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            map.get(&key).is_some_and(|(since, count)| {
                Instant::now().duration_since(*since) < WINDOW && *count >= SIGN_UPS_PER_ADDRESS
            })
        };
        if !refused {
            self.count(&[key]);
        }
        !refused
    }

    /// A successful sign-in clears the account's failures (not the address's).
    pub fn succeeded(&self, account: &str) {
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&format!("a:{account}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_by_salt() {
        let h = hash("correct horse battery");
        assert!(h.starts_with("pbkdf2-sha256$600000$"));
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert_ne!(h, hash("correct horse battery"));
        assert!(!verify("x", "pbkdf2-sha256$0$AA$AA"));
        assert!(!verify("x", "md5$1$AA$AA"));
        assert!(!verify("x", ""));
    }

    #[test]
    fn short_and_huge_passwords_are_refused() {
        assert!(weakness("short").is_some());
        assert!(weakness(&"x".repeat(300)).is_some());
        assert_eq!(weakness("long enough pass"), None);
    }

    #[test]
    fn the_sixth_failure_in_a_window_is_refused_per_account() {
        let t = Throttle::default();
        for _ in 0..PER_ACCOUNT {
            assert_eq!(t.refused("a@x", "1.2.3.4"), None);
            t.failed("a@x", "1.2.3.4");
        }
        let wait = t.refused("a@x", "1.2.3.4").expect("refused");
        assert!(wait > Duration::from_secs(14 * 60));
        assert_eq!(t.refused("b@x", "1.2.3.4"), None, "another account");
        t.succeeded("a@x");
        assert_eq!(t.refused("a@x", "1.2.3.4"), None);
    }

    #[test]
    fn sign_ups_are_counted_per_address() {
        let t = Throttle::default();
        for _ in 0..SIGN_UPS_PER_ADDRESS {
            assert!(t.sign_up("1.2.3.4"));
        }
        assert!(!t.sign_up("1.2.3.4"));
        assert!(t.sign_up("5.6.7.8"));
    }
}
