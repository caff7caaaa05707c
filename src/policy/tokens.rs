//! Access tokens of the gateway's own identity (authentication-managed-identity), by
//! resource, as the loop holds them: the agent fetches them with the client-credentials
//! flow and hands them over before they expire; a policy reads one that is there, and
//! asks for a resource it has none for (at most once every ten seconds each). A request
//! never waits for a token. Tokens never reach a log line (`Debug` hides them).
//! Must not touch: the network, the identity's secret.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// One access token.
pub struct Token {
    pub value: String,
    /// When it stops being used (ms since 1970): a little before it expires.
    pub use_until_ms: u64,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(***, until {})", self.use_until_ms)
    }
}

/// Least time between two requests for one resource.
pub const ASK_EVERY_MS: u64 = 10_000;

#[derive(Debug, Default)]
pub struct TokenRing {
    tokens: HashMap<String, Arc<Token>>,
    asked: HashMap<String, u64>,
    wanted: Vec<String>,
}

impl TokenRing {
    /// The token for `resource`, unless there is none or it is too old.
    pub fn get(&self, resource: &str, now_ms: u64) -> Option<&str> {
        self.tokens
            .get(resource)
            .filter(|t| t.use_until_ms > now_ms)
            .map(|t| t.value.as_str())
    }

    pub fn insert(&mut self, resource: String, token: Arc<Token>) {
        self.tokens.insert(resource, token);
    }

    /// Asks the agent for a token for `resource` (unless asked recently). True when
    /// it asked.
    pub fn want(&mut self, resource: &str, now_ms: u64) -> bool {
        if self
            .asked
            .get(resource)
            .is_some_and(|at| now_ms.saturating_sub(*at) < ASK_EVERY_MS)
        {
            return false;
        }
        if self.asked.len() >= 1024 {
            self.asked.clear();
        }
        self.asked.insert(resource.to_string(), now_ms);
        self.wanted.push(resource.to_string());
        true
    }

    /// The resources to fetch tokens for, for the agent.
    pub fn take_wanted(&mut self) -> Vec<String> {
        std::mem::take(&mut self.wanted)
    }
}
