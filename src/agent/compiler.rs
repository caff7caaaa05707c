//! Where configs are compiled: on two long-lived worker threads, in turn. Each thread
//! allocates in its own malloc arena, so a runtime and the temporaries of its compile
//! (the JSON tree, the compiler's maps) share an arena that the running config does
//! not use. When a replaced runtime is freed, the worker that built it trims its arena
//! and the memory goes back to the system; compiled on one thread, each new runtime and
//! its temporaries would interleave with the running one and keep the heap at its peak.
//! Measured with `bench/federation_scale.py 10000 20` (100,000 operations): loaded 89
//! MiB; after 20 re-applies 89 MiB with the unit's GLIBC_TUNABLES, 232 MiB without.
//! The caller waits for the result (compiles are the agent's work; the loop never
//! calls this). Must not touch: the loop, sockets, disk.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Mutex, OnceLock};

use crate::config::{ConfigError, ConfigSource, Runtime};

type Outcome = Result<Runtime, Vec<ConfigError>>;

/// What a worker is asked to do.
enum Job {
    /// Compile: the document, its source, and where the answer goes.
    Compile {
        text: String,
        work: fn(&str, ConfigSource) -> Outcome,
        source: ConfigSource,
        reply: SyncSender<Outcome>,
    },
    /// A runtime was freed: give the arena's free memory back.
    Trim,
}

struct Workers {
    queues: Vec<Mutex<SyncSender<Job>>>,
    next: AtomicUsize,
}

static WORKERS: OnceLock<Option<Workers>> = OnceLock::new();

fn workers() -> Option<&'static Workers> {
    WORKERS
        .get_or_init(|| {
            let mut queues = Vec::new();
            for i in 0..2 {
                let (tx, rx) = mpsc::sync_channel::<Job>(1);
                let spawned = std::thread::Builder::new()
                    .name(format!("edgegate-compile-{i}"))
                    .spawn(move || serve(&rx));
                if spawned.is_err() {
                    return None;
                }
                queues.push(Mutex::new(tx));
            }
            Some(Workers {
                queues,
                next: AtomicUsize::new(0),
            })
        })
        .as_ref()
}

fn serve(jobs: &Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Compile {
                text,
                work,
                source,
                reply,
            } => {
                let outcome = work(&text, source);
                drop(text);
                let _ = reply.send(outcome);
            }
            Job::Trim => trim_arena(),
        }
    }
}

/// A replaced runtime has been freed: each worker trims its arena (without waiting: a
/// busy worker's queue is full, and it trims after the next runtime is freed).
pub fn trim() {
    let Some(w) = workers() else {
        return;
    };
    for queue in &w.queues {
        let queue = match queue.lock() {
            Ok(q) => q,
            Err(poisoned) => poisoned.into_inner(),
        };
        let _ = queue.try_send(Job::Trim);
    }
}

/// Runs `work(text, source)` on the next compile worker and waits for it; on this
/// thread when the workers cannot be started.
pub fn in_turn(
    text: &str,
    source: ConfigSource,
    work: fn(&str, ConfigSource) -> Outcome,
) -> Outcome {
    let Some(w) = workers() else {
        return work(text, source);
    };
    let turn = w.next.fetch_add(1, Ordering::Relaxed) % w.queues.len();
    let (reply, answer) = mpsc::sync_channel(1);
    let job = Job::Compile {
        text: text.to_string(),
        work,
        source,
        reply,
    };
    let sent = match w.queues[turn].lock() {
        Ok(queue) => queue.send(job).is_ok(),
        Err(poisoned) => poisoned.into_inner().send(job).is_ok(),
    };
    match (sent, answer.recv()) {
        (true, Ok(outcome)) => outcome,
        // the worker is gone (it panicked): compile here
        _ => work(text, source),
    }
}

/// Lets this thread's malloc arena give its free memory back to the system. glibc keeps
/// freed small blocks in fast bins, which nothing merges until a large block is asked
/// for or freed, and returns an arena's memory only from its free top. A block above
/// its consolidation size (64 KiB) and below its mmap threshold (128 KiB or more) comes
/// from the arena: asking for it merges the fast bins, freeing it trims the free top
/// (and unmaps heaps left empty). Blocks held in threads' caches still pin what lies
/// below them: the gateway's unit sets `glibc.malloc.tcache_count=0` for that. Other
/// allocators are unaffected.
fn trim_arena() {
    let block: Vec<u8> = Vec::with_capacity(96 * 1024);
    drop(std::hint::black_box(block));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_run_on_the_workers_and_give_the_same_result() {
        let doc = r#"{"schemaVersion": 1, "version": "w", "apis": [{"id": "a", "path": "a",
            "serviceUrl": "http://127.0.0.1:9", "subscriptionRequired": false,
            "operations": [{"id": "o", "method": "GET", "urlTemplate": "/x"}]}]}"#;
        fn on_worker(text: &str, source: ConfigSource) -> Outcome {
            let name = std::thread::current().name().unwrap_or("").to_string();
            assert!(name.starts_with("edgegate-compile-"), "ran on {name}");
            crate::config::compile(text, source)
        }
        for _ in 0..3 {
            let rt = in_turn(doc, ConfigSource::Local, on_worker).expect("compiles");
            assert_eq!(rt.version, "w");
        }
        let bad = in_turn("{", ConfigSource::Local, on_worker)
            .err()
            .expect("rejected");
        assert!(!bad.is_empty());
    }
}
