//! edgegate: a self-hosted API gateway. One process, two long-lived threads:
//!
//! ```text
//!                 ┌──────────────────────── event loop (main thread, mio) ───────────────────────┐
//!   clients ────▶ │ listener → conn state machine → route (Arc<Runtime>) → backend pool ────────▶ │ ───▶ backends
//!                 │   httparse over pooled buffers · timers · signals · request-log batch         │
//!                 └───────▲──────────────────────────────────────────────┬────────────────────────┘
//!          Arc<Runtime>   │ channel + mio::Waker              try_send    │ Reload / log batches
//!                 ┌───────┴──────────────────────────────────────────────▼────────────────────────┐
//!                 │ agent thread: read config file · compile + validate · resolve DNS · stderr    │
//!                 └────────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! The core (`settings`, `config`, `route`, `http`, `telemetry`, `status`) is pure: bytes
//! and structs in, values out, no sockets, tested without I/O. `proxy` is the loop and
//! must never block; `agent` is where blocking work goes. Dependencies point inward.

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
pub mod policy;
pub mod proxy;
pub mod route;
pub mod settings;
pub mod sqlite;
pub mod status;
pub mod sys;
pub mod telemetry;

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
