//! edgegate: a self-hosted API gateway (`edgegate gateway`) and its management plane
//! (`edgegate manage`) in one binary.
//!
//! ```text
//!                 ┌──────────────────────── event loop (main thread, mio) ───────────────────────┐
//!   clients ────▶ │ listener → conn state machine → route (Arc<Runtime>) → backend pool ────────▶ │ ───▶ backends
//!                 │   httparse over pooled buffers · policies (pipeline) · counters · timers      │
//!                 └───────▲──────────────────────────────────────┬───────────────┬────────────────┘
//!          Arc<Runtime>   │ channel + mio::Waker        try_send  │ records,      │ try_send: log
//!                 ┌───────┴──────────────────────────────────────▼─┐ counts, …    ▼ batches
//!                 │ agent: configs · compile · DNS · backups (SQLite)│        log writer ──▶ stderr
//!                 │ record batches · metrics · retired configs     │
//!                 └───────▲────────────┬───────────────────┬───────┘
//!                  replies│            │ calls             │ cumulative metrics
//!                 plane callers (poll · send) ──▶ plane     metrics thread ◀── scrapes
//! ```
//!
//! The core (`settings`, `cli`, `sqlite`, `config`, `policy`, `pipeline`, `route`,
//! `http`, `telemetry`, `metrics`, `status`) is pure: bytes and structs in, values out,
//! no sockets, tested without I/O. `federation` is the contract between the two
//! programs. `proxy` is the loop and must never block; `agent` is where the gateway's
//! blocking work goes; `manage` is the plane. Dependencies point inward, and `agent` and
//! `manage` never import each other (ARCHITECTURE.md; `scripts/check-layers.sh`).

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod agent;
pub mod cli;
pub mod config;
pub mod federation;
pub mod http;
pub mod log_writer;
pub mod manage;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod policy;
pub mod proxy;
pub mod route;
pub mod settings;
pub mod sqlite;
pub mod status;
pub mod sys;
pub mod telemetry;
pub mod x509;

/// `edgegate version` output.
pub fn version_line() -> String {
    format!(
        "edgegate {} ({}-{}, {} build)",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    )
}
