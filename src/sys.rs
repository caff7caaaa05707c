//! Process-level plumbing: the logger on stderr (text through simple_logger, or one JSON
//! object per line), and whether we run as root (for default paths).
//!
//! The event loop must never block on stderr (a stuck journald or a full pipe would
//! freeze traffic), so records logged on the loop thread are formatted into a bounded
//! thread-local buffer instead; the loop hands it to the log writer with its request-log
//! batch. Records from other threads go through the log writer when one runs (the
//! gateway), so they never wait on stderr either; elsewhere (the plane, the CLI) they
//! are written directly.
//! Must not touch: sockets, config.

use std::cell::RefCell;
use std::io::Write;

use crate::settings::LogFormat;
use crate::telemetry::{push_json_str, rfc3339};

/// Most bytes of loop-thread log records held between two flushes; beyond it they are
/// dropped (and counted in the next record that fits).
const LOOP_LOG_MAX: usize = 64 * 1024;

thread_local! {
    /// `Some` on the event loop thread: (buffered lines, records dropped).
    static LOOP_LOG: RefCell<Option<(String, u64)>> = const { RefCell::new(None) };
}

/// Marks the calling thread as the event loop: its log records are buffered.
pub fn mark_loop_thread() {
    LOOP_LOG.with(|l| *l.borrow_mut() = Some((String::new(), 0)));
}

/// Whether the loop thread has buffered log lines.
pub fn loop_logs_pending() -> bool {
    LOOP_LOG.with(|l| l.borrow().as_ref().is_some_and(|(buf, _)| !buf.is_empty()))
}

/// Takes the loop thread's buffered log lines (empty elsewhere).
pub fn take_loop_logs() -> String {
    LOOP_LOG.with(|l| match l.borrow_mut().as_mut() {
        Some((buf, _)) => std::mem::take(buf),
        None => String::new(),
    })
}

fn format_line(format: LogFormat, record: &log::Record) -> String {
    let now = rfc3339(std::time::SystemTime::now());
    match format {
        LogFormat::Json => {
            let mut line = String::with_capacity(128);
            line.push_str("{\"time\":");
            push_json_str(&mut line, &now);
            line.push_str(",\"level\":");
            push_json_str(&mut line, &record.level().as_str().to_ascii_lowercase());
            line.push_str(",\"message\":");
            push_json_str(&mut line, &record.args().to_string());
            line.push_str("}\n");
            line
        }
        // simple_logger's layout, so loop and agent lines look alike
        _ => format!(
            "{now} {:<5} [{}] {}\n",
            record.level().to_string(),
            record.target(),
            record.args()
        ),
    }
}

struct Logger {
    format: LogFormat,
    level: log::LevelFilter,
    /// Writes records from threads other than the loop (simple_logger for text).
    direct: Option<simple_logger::SimpleLogger>,
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let buffered = LOOP_LOG.with(|l| {
            let mut slot = l.borrow_mut();
            let Some((buf, dropped)) = slot.as_mut() else {
                return false;
            };
            let line = format_line(self.format, record);
            if buf.len() + line.len() > LOOP_LOG_MAX {
                *dropped += 1;
            } else {
                if *dropped > 0 {
                    buf.push_str(&format!(
                        "{} WARN  [edgegate] {dropped} log records dropped on the event loop\n",
                        rfc3339(std::time::SystemTime::now())
                    ));
                    *dropped = 0;
                }
                buf.push_str(&line);
            }
            true
        });
        if buffered {
            return;
        }
        if let Some(writer) = crate::log_writer::shared() {
            writer.line(format_line(self.format, record));
            return;
        }
        match &self.direct {
            Some(simple) => simple.log(record),
            None => {
                let _ = std::io::stderr().write_all(format_line(self.format, record).as_bytes());
            }
        }
    }

    fn flush(&self) {}
}

pub fn init_logging(format: LogFormat, level: log::LevelFilter) {
    if format == LogFormat::None {
        log::set_max_level(log::LevelFilter::Off);
        return;
    }
    let direct = (format == LogFormat::Text).then(|| {
        simple_logger::SimpleLogger::new()
            .with_level(level)
            .with_utc_timestamps()
    });
    if log::set_boxed_logger(Box::new(Logger {
        format,
        level,
        direct,
    }))
    .is_ok()
    {
        log::set_max_level(level);
    }
}

pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
