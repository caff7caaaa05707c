//! Where configs are compiled: on two long-lived worker threads, in turn. Each thread
//! allocates in its own malloc arena, so a runtime and the temporaries of its compile
//! (the JSON tree, the compiler's maps) share one arena that holds nothing else. When
//! that runtime is replaced and freed, its arena empties and the allocator gives the
//! memory back to the system; compiled on one thread, the next runtime and its
//! temporaries would interleave with the running one and keep the heap at its peak
//! after every apply (measured with `bench/federation_scale.py`: 266 MiB after 10
//! re-applies of a 100,000-operation config that loads in 89 MiB).
//! The caller waits for the result (compiles are the agent's work; the loop never
//! calls this). Must not touch: the loop, sockets, disk.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Mutex, OnceLock};

use crate::config::{ConfigError, ConfigSource, Runtime};

type Outcome = Result<Runtime, Vec<ConfigError>>;

/// One compile: the document, its source, and where the answer goes.
struct Job {
    text: String,
    work: fn(&str, ConfigSource) -> Outcome,
    source: ConfigSource,
    reply: SyncSender<Outcome>,
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
        let outcome = (job.work)(&job.text, job.source);
        drop(job.text);
        let _ = job.reply.send(outcome);
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
    let job = Job {
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
