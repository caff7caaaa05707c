//! What the policies ask of the external cache (Redis, `cache.external.url`): the
//! commands (`Command`: a value's get, set and delete, a shared rate-limit count), what
//! comes back (`Reply`), what a call waits for (`ExternalAsk`: the command and where its
//! answer lands) and the commands nobody waits for (`External::queue`, bounded). The
//! loop hands commands to the Redis worker (`crate::agent::redis`); an unavailable
//! Redis is a miss for values and local counting for limits, never an error.
//! Must not touch: sockets, the protocol (the worker speaks RESP).

use super::expr::Val;

/// One command for the external cache. Keys are already prefixed (`edgegate:`…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Get(String),
    /// SET key value PX ttl.
    Set {
        key: String,
        value: Vec<u8>,
        ttl_ms: u64,
    },
    Del(String),
    /// Sliding-window counts shared by every gateway, one per window (a limit and its
    /// nested levels): drop what left each window, and if `n` more (at least one) fit
    /// under every limit, add them to all (`n` = 0: only look). Replies `[1, remaining,
    /// 0]` or `[0, 0, when the tightest window lets a call in again (ms)]`.
    Count {
        windows: Vec<Window>,
        now_ms: u64,
        n: u64,
        /// Tells this call's entries apart from others' in the same millisecond.
        id: String,
    },
    /// Whether a call fits every quota window (calls and bytes used so far against
    /// the limits, 0 = no limit). Replies the 1-based index of the first one it does
    /// not fit, or 0.
    QuotaCheck {
        windows: Vec<QuotaWindow>,
    },
    /// Counts a finished call (and its bytes) in a quota window, which ends in
    /// `ttl_ms`.
    QuotaAdd {
        key: String,
        bytes: u64,
        ttl_ms: u64,
    },
}

impl Command {
    /// The bytes of the value it carries (what the worker's queue holds of it).
    pub fn payload_len(&self) -> usize {
        match self {
            Command::Set { value, .. } => value.len(),
            _ => 0,
        }
    }
}

/// One shared quota window of `Command::QuotaCheck`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaWindow {
    pub key: String,
    pub calls: u64,
    pub bytes: u64,
}

/// The key of a shared quota window: its policy level, the caller's key, the window.
pub fn quota_key(label: &str, key: &str, window_start: u64) -> String {
    format!("edgegate:q:{label}:{key}:{window_start}")
}

/// One shared window of `Command::Count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub key: String,
    pub window_ms: u64,
    pub limit: u64,
}

/// What Redis answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Nil,
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Reply>),
    /// A simple status (`+OK`).
    Done,
}

/// Where a waited-for answer lands.
#[derive(Debug)]
pub enum Purpose {
    /// cache-lookup-value: the variable, and what it gets on a miss (unset if none).
    Lookup {
        variable: String,
        default: Option<Val<'static>>,
    },
    /// A shared limit's count: the policy runs again and reads it (`State::counted`).
    Count,
    /// cache-lookup's response: the policy runs again and reads it
    /// (`State::response_lookup`).
    Response,
}

/// A command a call waits for.
#[derive(Debug)]
pub struct ExternalAsk {
    pub command: Command,
    pub purpose: Purpose,
}

/// A shared limit's answer, as the policy that asked reads it when it runs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Redis decided: allowed (and calls left in the tightest window), or not (and
    /// when a call fits again, ms since 1970).
    Shared {
        allowed: bool,
        remaining: u64,
        again_ms: u64,
    },
    /// Redis checked the quota windows: the place of the first one the call does not
    /// fit, if any.
    Quota(Option<usize>),
    /// Redis could not be asked: the gateway counts on its own.
    Unavailable,
}

impl Counted {
    /// The answer to a `Command::Count`.
    pub fn of(reply: Result<Reply, ()>) -> Counted {
        let items = match reply {
            Ok(Reply::List(items)) => items,
            Ok(Reply::Int(i)) => {
                return Counted::Quota(usize::try_from(i).ok().and_then(|i| i.checked_sub(1)))
            }
            _ => return Counted::Unavailable,
        };
        let num = |i: usize| match items.get(i) {
            Some(Reply::Int(n)) => Some(*n),
            Some(Reply::Bytes(b)) => std::str::from_utf8(b)
                .ok()?
                .parse::<f64>()
                .ok()
                .map(|f| f as i64),
            _ => None,
        };
        match (num(0), num(1), num(2)) {
            (Some(a), Some(remaining), Some(again)) => Counted::Shared {
                allowed: a == 1,
                remaining: remaining.max(0) as u64,
                again_ms: again.max(0) as u64,
            },
            _ => Counted::Unavailable,
        }
    }
}

/// Most fire-and-forget commands waiting for the loop's next turn.
pub const QUEUE_MAX: usize = 1024;

/// The policies' side of the external cache, held in the loop's counters.
#[derive(Debug, Default)]
pub struct External {
    /// An external cache is configured (`cache.external.url`).
    pub configured: bool,
    /// It answered the last command (the worker's view, refreshed each turn).
    pub up: bool,
    /// Shared counters are wanted (`limits.counters.external`).
    pub counters: bool,
    /// Commands nobody waits for (stores, removals, deferred counts).
    queue: Vec<Command>,
    /// Commands dropped because the queue was full, since the start.
    pub dropped: u64,
}

impl External {
    /// Whether values go to Redis.
    pub fn values(&self) -> bool {
        self.configured
    }
    /// Whether limits count in Redis now (configured, wanted and reachable).
    pub fn shares_counts(&self) -> bool {
        self.configured && self.counters && self.up
    }
    /// Queues `c` to send without waiting (dropped and counted when full).
    pub fn send(&mut self, c: Command) {
        if self.queue.len() >= QUEUE_MAX {
            self.dropped += 1;
            return;
        }
        self.queue.push(c);
    }
    pub fn take(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.queue)
    }
}

impl super::call::State {
    /// Lands an external cache's answer: a lookup's value (or its default on a miss or
    /// an unavailable Redis), or a shared count for the policy that runs again.
    pub fn answered(&mut self, purpose: Purpose, answer: Result<Reply, ()>) {
        match purpose {
            Purpose::Lookup { variable, default } => {
                let found = match answer {
                    Ok(Reply::Bytes(b)) => super::cache::decode_value(&b),
                    _ => None,
                };
                if let Some(v) = found.or(default) {
                    self.set_var(&variable, v);
                }
            }
            Purpose::Count => self.counted = Some(Counted::of(answer)),
            Purpose::Response => {
                let found = match answer {
                    Ok(Reply::Bytes(b)) => super::cache::decode_response(&b).map(std::rc::Rc::new),
                    _ => None,
                };
                self.response_lookup = Some(found);
            }
        }
    }
}

/// Where a shared limit stands for the step that counts (`ask_shared`).
pub enum Shared {
    /// Asked: the call waits, and the step runs again with the answer.
    Wait,
    Answered(Counted),
    /// Not shared now (no Redis, Redis down, inside `<wait>`): the gateway counts.
    Local,
}

/// The one way a limit counts in the external cache: on its first run the step asks
/// (`command` is built only then) and the call suspends; when it runs again it reads
/// the answer. An unavailable Redis is local counting.
pub fn ask_shared(
    call: &mut super::call::Call,
    command: impl FnOnce(&super::call::Call) -> Command,
) -> Shared {
    match call.st.counted.take() {
        Some(Counted::Unavailable) => Shared::Local,
        Some(answer) => Shared::Answered(answer),
        None if !call.counters.external.shares_counts() || call.st.collecting => Shared::Local,
        None => {
            let command = command(call);
            call.st.external.push(ExternalAsk {
                command,
                purpose: Purpose::Count,
            });
            call.st.rerun = true;
            call.st.wait_any = false;
            Shared::Wait
        }
    }
}
