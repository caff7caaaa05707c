//! Process-level plumbing: the logger (text through simple_logger, or one JSON object per
//! line) on stderr, and whether we run as root (for default paths).
//! Must not touch: sockets, config.

use std::io::Write;

use crate::settings::LogFormat;
use crate::telemetry::{push_json_str, rfc3339};

/// Events as JSON lines, for `telemetry.logs.std = json`.
struct JsonLogger {
    level: log::LevelFilter,
}

impl log::Log for JsonLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level
    }
    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = String::with_capacity(128);
        line.push_str("{\"time\":");
        push_json_str(&mut line, &rfc3339(std::time::SystemTime::now()));
        line.push_str(",\"level\":");
        push_json_str(&mut line, &record.level().as_str().to_ascii_lowercase());
        line.push_str(",\"message\":");
        push_json_str(&mut line, &record.args().to_string());
        line.push_str("}\n");
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
    fn flush(&self) {}
}

pub fn init_logging(format: LogFormat, level: log::LevelFilter) {
    match format {
        LogFormat::None => log::set_max_level(log::LevelFilter::Off),
        LogFormat::Text => {
            let _ = simple_logger::SimpleLogger::new()
                .with_level(level)
                .with_utc_timestamps()
                .init();
        }
        LogFormat::Json => {
            if log::set_boxed_logger(Box::new(JsonLogger { level })).is_ok() {
                log::set_max_level(level);
            }
        }
    }
}

pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
