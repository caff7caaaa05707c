//! Metrics off the event loop: the cumulative copy of the request metrics (the loop
//! hands over what it counted each second; the agent merges it here), and the thread
//! that answers Prometheus scrapes (`telemetry.metrics.local=prometheus`) from it.
//! Rendering tens of megabytes of exposition at the series cap happens here or on the
//! agent, never on the loop.
//! Must not touch: the loop, the plane, the backup store.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::http::request;
use crate::metrics::{GaugeValues, Metrics};

/// What the loop hands over each second.
pub struct MetricsDelta {
    pub counted: Metrics,
    pub gauges: GaugeValues,
}

/// The cumulative metrics and the newest gauges.
#[derive(Default)]
pub struct Mirror {
    pub metrics: Metrics,
    pub gauges: GaugeValues,
}

pub type SharedMirror = Arc<Mutex<Mirror>>;

impl Mirror {
    pub fn shared(labels: crate::metrics::LabelSet) -> SharedMirror {
        Arc::new(Mutex::new(Mirror {
            metrics: Metrics::new(labels),
            gauges: GaugeValues::default(),
        }))
    }

    pub fn apply(&mut self, delta: MetricsDelta) {
        self.metrics.merge(delta.counted);
        self.gauges = delta.gauges;
    }

    pub fn render(&self, detail: crate::metrics::Detail) -> String {
        self.metrics.render_with(&self.gauges.gauges(), detail)
    }
}

/// Longest a scraper may take to send its request or read the answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest scrape request head read.
const SCRAPE_HEAD_MAX: usize = 8 * 1024;

/// Answers scrapes on `listener` from `mirror`, one connection at a time, on a thread
/// of its own: `GET /metrics` (and HEAD) is 200 with the exposition, anything else 404.
pub fn serve(listener: TcpListener, mirror: SharedMirror) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("edgegate-metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(stream) => answer(stream, &mirror),
                    Err(e) => {
                        log::warn!("metrics listener: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .map(drop)
}

fn answer(mut stream: TcpStream, mirror: &SharedMirror) {
    let _ = stream.set_read_timeout(Some(SCRAPE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(SCRAPE_TIMEOUT));
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let (status, body, head_only) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        match request::parse(&buf, &mut headers, SCRAPE_HEAD_MAX) {
            Ok(Some(head)) => {
                let scrape = head.path == "/metrics" && matches!(head.method, "GET" | "HEAD");
                if !scrape {
                    break (404, None, false);
                }
                let text = mirror
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .render(crate::metrics::Detail::Full);
                break (200, Some(text), head.is_head());
            }
            Ok(None) => {}
            Err(f) => break (f.status(), None, false),
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let (content_type, body) = match body {
        Some(text) => (crate::http::failure::PROMETHEUS, text),
        None => {
            let message = match status {
                404 => "Resource not found",
                _ => crate::http::failure::reason_phrase(status),
            };
            (
                "application/json; charset=utf-8",
                crate::http::failure::message_body(status, message),
            )
        }
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        crate::http::failure::reason_phrase(status),
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    if !head_only {
        let _ = stream.write_all(body.as_bytes());
    }
}
