//! systemd's service notification protocol (sd_notify): `READY=1`, `STOPPING=1`,
//! `STATUS=…` and `WATCHDOG=1` datagrams to `$NOTIFY_SOCKET`, when systemd started the
//! process with one (`Type=notify`). The socket is non-blocking and a failed send is
//! dropped (systemd tolerates a lost STATUS, and a lost WATCHDOG is followed by the next
//! one), so the event loop may call `send`. The gateway's loop sends the watchdog pings
//! itself: a loop that stops turning stops pinging, and systemd restarts the service.
//! Must not touch: anything but that socket.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// The notifier systemd asked for, if any: `$NOTIFY_SOCKET` (a path, or `@name` in
    /// the abstract namespace), and `$WATCHDOG_USEC` when `$WATCHDOG_PID` is unset or
    /// names this process.
    pub fn from_env() -> Option<Notifier> {
        let target = std::env::var_os("NOTIFY_SOCKET")?;
        let bytes = target.as_bytes();
        let addr = match bytes.strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name).ok()?,
            None => SocketAddr::from_pathname(std::path::Path::new(&target)).ok()?,
        };
        let sock = UnixDatagram::unbound().ok()?;
        sock.set_nonblocking(true).ok()?;
        let ours = std::env::var("WATCHDOG_PID")
            .map_or(true, |pid| pid.trim() == std::process::id().to_string());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|us| us.trim().parse::<u64>().ok())
            .filter(|us| ours && *us > 0)
            .map(Duration::from_micros);
        Some(Notifier {
            sock,
            addr,
            watchdog,
        })
    }

    /// Sends one notification (`KEY=value` lines); never blocks.
    pub fn send(&self, state: &str) {
        let _ = self.sock.send_to_addr(state.as_bytes(), &self.addr);
    }

    /// How often to send `WATCHDOG=1` (half of systemd's `WatchdogSec`), if it asked.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }
}
