//! An in-memory socket for sans-IO tests of the connection and the exchange: reads come
//! from a script (bytes, WouldBlock, the peer closing), writes take at most the next
//! scripted amount (0 = WouldBlock; an empty script takes everything) and are kept. The
//! test keeps a handle on the same script to feed it and read what was written while
//! the connection owns the wire. Test builds only.
//! Must not touch: real sockets, the poll.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};

/// What the wire will do, and what it was given.
#[derive(Default)]
pub struct Script {
    /// `None` = WouldBlock; `Some(empty)` = the peer closed.
    pub reads: VecDeque<Option<Vec<u8>>>,
    /// Most bytes each write takes, in turn.
    pub takes: VecDeque<usize>,
    pub written: Vec<u8>,
    /// For a backend connection: whether the connect has completed (`None`: pending).
    pub connected: Option<bool>,
}

/// The connection's end of the wire.
pub struct MemoryWire(Arc<Mutex<Script>>);

/// The test's end of the same wire.
#[derive(Clone)]
pub struct Handle(Arc<Mutex<Script>>);

/// A wire and the test's handle on it; a backend's starts connected.
pub fn pair() -> (MemoryWire, Handle) {
    let script = Arc::new(Mutex::new(Script {
        connected: Some(true),
        ..Script::default()
    }));
    (MemoryWire(Arc::clone(&script)), Handle(script))
}

fn lock(script: &Mutex<Script>) -> MutexGuard<'_, Script> {
    script.lock().unwrap_or_else(|p| p.into_inner())
}

impl Handle {
    /// Bytes the peer sends next.
    pub fn send(&self, bytes: &[u8]) {
        lock(&self.0).reads.push_back(Some(bytes.to_vec()));
    }
    /// A read answers WouldBlock here once, though more is scripted after it (a read
    /// with nothing scripted answers WouldBlock anyway).
    pub fn pause(&self) {
        lock(&self.0).reads.push_back(None);
    }
    /// The peer closes its side.
    pub fn close(&self) {
        lock(&self.0).reads.push_back(Some(Vec::new()));
    }
    /// The next writes take at most these amounts (0 = WouldBlock).
    pub fn limit_writes(&self, takes: &[usize]) {
        lock(&self.0).takes.extend(takes);
    }
    pub fn set_connected(&self, connected: Option<bool>) {
        lock(&self.0).connected = connected;
    }
    /// What was written so far, as text, and forgets it.
    pub fn take_written(&self) -> String {
        let bytes = std::mem::take(&mut lock(&self.0).written);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl MemoryWire {
    /// The peer's close is scripted (a poll would report it with the readiness).
    pub fn peer_closing(&self) -> bool {
        lock(&self.0)
            .reads
            .iter()
            .any(|r| r.as_ref().is_some_and(Vec::is_empty))
    }

    pub fn connected(&self) -> Option<bool> {
        lock(&self.0).connected
    }

    /// `peek` of a socket: the next scripted bytes without taking them.
    pub fn peek(&self, probe: &mut [u8]) -> io::Result<usize> {
        match lock(&self.0).reads.front() {
            Some(Some(chunk)) => {
                let n = chunk.len().min(probe.len());
                probe[..n].copy_from_slice(&chunk[..n]);
                Ok(n)
            }
            Some(None) | None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Read for MemoryWire {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut script = lock(&self.0);
        match script.reads.pop_front() {
            Some(Some(mut chunk)) => {
                let n = chunk.len().min(out.len());
                out[..n].copy_from_slice(&chunk[..n]);
                if n < chunk.len() {
                    // the rest stays for the next read
                    chunk.drain(..n);
                    script.reads.push_front(Some(chunk));
                }
                Ok(n)
            }
            Some(None) | None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for MemoryWire {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut script = lock(&self.0);
        let take = match script.takes.pop_front() {
            Some(0) => return Err(io::ErrorKind::WouldBlock.into()),
            Some(n) => n.min(data.len()),
            None => data.len(),
        };
        script.written.extend_from_slice(&data[..take]);
        Ok(take)
    }
    /// All slices, up to the write's budget, as a socket's `writev` takes them.
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let mut script = lock(&self.0);
        let mut budget = match script.takes.pop_front() {
            Some(0) => return Err(io::ErrorKind::WouldBlock.into()),
            Some(n) => n,
            None => usize::MAX,
        };
        let mut taken = 0;
        for b in bufs {
            let n = b.len().min(budget);
            script.written.extend_from_slice(&b[..n]);
            taken += n;
            budget -= n;
        }
        Ok(taken)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl super::transport::Wire for MemoryWire {
    fn short_io_is_final(&self) -> bool {
        true
    }
}
