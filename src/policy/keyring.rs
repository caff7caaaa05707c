//! Signing keys fetched from OpenID Connect discovery (validate-jwt's and
//! validate-azure-ad-token's `openid-config`): the key sets the agent fetched (or kept
//! in the backup store), by configuration URL, as the loop holds them; and the URLs a
//! request asked to be fetched again (an unknown `kid`), at most once per
//! `REFRESH_ASK_EVERY_MS` each. A request never waits for a fetch.
//! Must not touch: the network, the store (the agent fetches and keeps them).

use std::collections::HashMap;
use std::sync::Arc;

use super::jwt::Key;

/// A fetched OpenID configuration's issuer and signing keys.
#[derive(Debug)]
pub struct KeySet {
    pub issuer: Option<String>,
    pub keys: Vec<Key>,
    /// When the agent fetched it (seconds since 1970).
    pub fetched_at: u64,
}

/// Least time between two requests to fetch one URL again.
pub const REFRESH_ASK_EVERY_MS: u64 = 10_000;

#[derive(Debug, Default)]
pub struct KeyRing {
    sets: HashMap<String, Arc<KeySet>>,
    asked: HashMap<String, u64>,
    wanted: Vec<String>,
}

impl KeyRing {
    pub fn get(&self, url: &str) -> Option<&Arc<KeySet>> {
        self.sets.get(url)
    }

    /// The agent's newest key set for `url`.
    pub fn insert(&mut self, url: String, set: Arc<KeySet>) {
        self.sets.insert(url, set);
    }

    /// A request met a key id no key set has: asks for `url` again, unless that was
    /// asked within `REFRESH_ASK_EVERY_MS`. True when it asked.
    pub fn want_refresh(&mut self, url: &str, now_ms: u64) -> bool {
        if let Some(at) = self.asked.get(url) {
            if now_ms.saturating_sub(*at) < REFRESH_ASK_EVERY_MS {
                return false;
            }
        }
        // bounded by the URLs the config names
        if self.asked.len() >= 1024 {
            self.asked.clear();
        }
        self.asked.insert(url.to_string(), now_ms);
        self.wanted.push(url.to_string());
        true
    }

    /// The URLs to fetch again, for the agent.
    pub fn take_wanted(&mut self) -> Vec<String> {
        std::mem::take(&mut self.wanted)
    }
}
