//! The log writer: one small thread that owns stderr. The event loop hands it batches of
//! request records and its own buffered events; every other thread's log lines (the
//! agent's, the plane callers') go through it too, so no thread but this one ever waits
//! on a slow or stuck stderr. Its queue is bounded; a sender that finds it full keeps or
//! drops its line and counts it, and the writer reports the count once it can write.
//! Must not touch: the loop's state, the plane, the backup store.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

/// Batches the queue holds (each a loop batch of at most `telemetry::MAX_BATCH_BYTES`, or
/// one line from another thread).
pub const LOG_QUEUE: usize = 64;

pub enum LogMsg {
    Text(String),
    Stop,
}

/// The sending side, cloned by the loop and registered for other threads' log lines.
#[derive(Clone)]
pub struct LogSender {
    sender: SyncSender<LogMsg>,
    dropped: Arc<AtomicU64>,
}

impl LogSender {
    /// Queues `text` without waiting; gives it back when the queue is full.
    pub fn try_send(&self, text: String) -> Result<(), String> {
        match self.sender.try_send(LogMsg::Text(text)) {
            Ok(()) => Ok(()),
            Err(
                TrySendError::Full(LogMsg::Text(t)) | TrySendError::Disconnected(LogMsg::Text(t)),
            ) => Err(t),
            Err(_) => Ok(()),
        }
    }

    /// Queues a line from a thread other than the loop; a full queue drops it (counted).
    pub fn line(&self, text: String) {
        if self.try_send(text).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub struct LogWriter {
    sender: LogSender,
    handle: JoinHandle<()>,
}

/// Where other threads' log lines go once the writer runs (see `sys::init_logging`).
static SHARED: OnceLock<LogSender> = OnceLock::new();

/// The running writer's sender, if one was started in this process.
pub fn shared() -> Option<&'static LogSender> {
    SHARED.get()
}

impl LogWriter {
    /// Starts the writer on `out` (stderr in the gateway).
    pub fn spawn(out: Box<dyn Write + Send>) -> std::io::Result<LogWriter> {
        let (sender, inbox) = mpsc::sync_channel(LOG_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&dropped);
        let handle = std::thread::Builder::new()
            .name("edgegate-log".into())
            .spawn(move || write_all(out, &inbox, &counter))?;
        Ok(LogWriter {
            sender: LogSender { sender, dropped },
            handle,
        })
    }

    /// Routes every thread's log lines through this writer from now on.
    pub fn install(&self) {
        let _ = SHARED.set(self.sender.clone());
    }

    pub fn sender(&self) -> LogSender {
        self.sender.clone()
    }

    /// Lines other threads had to drop so far.
    pub fn dropped(&self) -> u64 {
        self.sender.dropped.load(Ordering::Relaxed)
    }

    /// Writes what is queued, then ends; waits at most `limit` (a stuck stderr must not
    /// keep the process from exiting).
    pub fn stop(self, limit: std::time::Duration) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            match self.sender.sender.try_send(LogMsg::Stop) {
                Err(TrySendError::Full(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                _ => break,
            }
        }
        while !self.handle.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if self.handle.is_finished() {
            let _ = self.handle.join();
        }
    }
}

fn write_all(mut out: Box<dyn Write + Send>, inbox: &Receiver<LogMsg>, dropped: &AtomicU64) {
    let mut reported = 0;
    while let Ok(LogMsg::Text(text)) = inbox.recv() {
        let _ = out.write_all(text.as_bytes());
        let now = dropped.load(Ordering::Relaxed);
        if now > reported {
            let line = format!(
                "{} WARN  [edgegate] {} log lines dropped: stderr could not keep up\n",
                crate::telemetry::rfc3339(std::time::SystemTime::now()),
                now - reported
            );
            let _ = out.write_all(line.as_bytes());
            reported = now;
        }
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_in_order_and_everything_before_stopping() {
        let sink = Sink::default();
        let writer = LogWriter::spawn(Box::new(sink.clone())).unwrap();
        let sender = writer.sender();
        for i in 0..10 {
            while sender.try_send(format!("{i}\n")).is_err() {
                std::thread::yield_now();
            }
        }
        writer.stop(std::time::Duration::from_secs(5));
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n");
    }

    /// A writer blocked on its output: the queue fills, senders never wait, and what
    /// they drop is counted and reported once the output moves again.
    #[test]
    fn a_stuck_output_never_blocks_senders_and_drops_are_reported() {
        struct Gate(Arc<Mutex<()>>, Sink);
        impl Write for Gate {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                let _held = self.0.lock().unwrap();
                self.1.write(b)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let gate = Arc::new(Mutex::new(()));
        let closed = gate.lock().unwrap();
        let sink = Sink::default();
        let writer = LogWriter::spawn(Box::new(Gate(Arc::clone(&gate), sink.clone()))).unwrap();
        let sender = writer.sender();
        let started = std::time::Instant::now();
        for i in 0..(LOG_QUEUE + 10) {
            sender.line(format!("line {i}\n"));
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "never waits"
        );
        assert!(writer.dropped() >= 9, "{}", writer.dropped());
        drop(closed);
        sender.line("after\n".into());
        writer.stop(std::time::Duration::from_secs(5));
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains("log lines dropped: stderr could not keep up"),
            "{text}"
        );
        assert!(text.starts_with("line 0\n"), "{text}");
    }
}
