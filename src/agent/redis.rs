//! The Redis worker (`cache.external.url`): one thread with one connection, speaking
//! RESP, that runs the external cache's commands (`policy::external::Command`) in the
//! order the loop asked and hands each answer back through a channel plus the
//! `mio::Waker`. Why a worker and not a client on the loop: the commands are few and
//! small, so one thread keeps the loop's code free of a second protocol while the loop
//! still never waits (it asks with `try_send` on a bounded queue). Every socket
//! operation has a timeout; a failure marks Redis down (`up`), answers the command as
//! failed, and the next connect is tried at most once a second, so an outage costs a
//! call no more than a failed answer (a miss, or local counting).
//! Must not touch: the loop's state, the policies' state.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::Waker;

use crate::policy::external::{Command, Reply};
use crate::settings::RedisUrl;

/// Commands waiting for the worker, at most.
pub const QUEUE: usize = 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Least time between two connection attempts.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// Largest reply accepted (a value, or a list's item).
const REPLY_MAX: usize = 16 * 1024 * 1024;

/// Whose answer it is (a client of the loop, or nobody), and which of its commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub owner: usize,
    pub id: u64,
}

/// Nobody waits for the answer.
pub const NOBODY: usize = usize::MAX;

/// The loop's ends of the worker.
pub struct RedisLink {
    pub asks: SyncSender<(Ticket, Command)>,
    pub answers: Receiver<(Ticket, Result<Reply, ()>)>,
    /// Redis answered the last command.
    pub up: Arc<AtomicBool>,
    /// Bytes of values in commands not yet run (stores of large responses), so the
    /// queue is bounded in bytes as well as in commands.
    pub pending: Arc<AtomicUsize>,
}

/// Most bytes of values waiting for the worker.
pub const PENDING_MAX: usize = 32 * 1024 * 1024;

/// Starts the worker; it ends when the loop drops its `RedisLink`.
pub fn spawn(target: RedisUrl, waker: Arc<Waker>) -> std::io::Result<RedisLink> {
    let (asks, asked) = mpsc::sync_channel::<(Ticket, Command)>(QUEUE);
    let (answer, answers) = mpsc::sync_channel(QUEUE);
    let up = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&up);
    let pending = Arc::new(AtomicUsize::new(0));
    let ran = Arc::clone(&pending);
    std::thread::Builder::new()
        .name("edgegate-redis".into())
        .spawn(move || {
            let mut worker = Worker {
                target,
                conn: None,
                last_attempt: None,
                up: flag,
                outage_told: false,
            };
            // connect at once, so status and metrics tell the truth from the start
            worker.connected();
            loop {
                let (ticket, command) = match asked.recv_timeout(RECONNECT_EVERY) {
                    Ok(asked) => asked,
                    // while down the loop sends nothing: try again on its own
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        worker.connected();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                };
                let result = worker.run(&command);
                ran.fetch_sub(command.payload_len(), Ordering::Relaxed);
                if ticket.owner == NOBODY {
                    continue;
                }
                if answer.send((ticket, result)).is_err() {
                    return;
                }
                let _ = waker.wake();
            }
        })?;
    Ok(RedisLink {
        asks,
        answers,
        up,
        pending,
    })
}

struct Worker {
    target: RedisUrl,
    conn: Option<BufReader<Stream>>,
    last_attempt: Option<Instant>,
    up: Arc<AtomicBool>,
    /// The current outage (or the first failure to connect) has been logged.
    outage_told: bool,
}

/// The sliding-window counts of `Command::Count`, atomic in Redis: every window is
/// checked before any is counted, so a refused call counts nowhere.
const COUNT_SCRIPT: &str = "\
local now = tonumber(ARGV[1]); local n = tonumber(ARGV[2]); local id = ARGV[3]
local need = math.max(n, 1)
local remaining = -1
for i, k in ipairs(KEYS) do
  local window = tonumber(ARGV[2 + 2 * i]); local limit = tonumber(ARGV[3 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now - window)
  local used = redis.call('ZCARD', k)
  if used + need > limit then
    local oldest = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')
    return {0, 0, tonumber(oldest[2] or now) + window}
  end
  local left = limit - used - n
  if remaining < 0 or left < remaining then remaining = left end
end
for i, k in ipairs(KEYS) do
  for j = 1, n do redis.call('ZADD', k, now, id .. ':' .. j) end
  redis.call('PEXPIRE', k, tonumber(ARGV[2 + 2 * i]))
end
return {1, math.max(remaining, 0), 0}";

/// `Command::QuotaCheck`: the first window a call does not fit (1-based), or 0.
const QUOTA_CHECK_SCRIPT: &str = "\
for i, k in ipairs(KEYS) do
  local calls = tonumber(ARGV[2 * i - 1]); local bytes = tonumber(ARGV[2 * i])
  local v = redis.call('HMGET', k, 'c', 'b')
  local c = tonumber(v[1] or 0); local b = tonumber(v[2] or 0)
  if (calls > 0 and c >= calls) or (bytes > 0 and b >= bytes) then return i end
end
return 0";

/// `Command::QuotaAdd`.
const QUOTA_ADD_SCRIPT: &str = "\
redis.call('HINCRBY', KEYS[1], 'c', 1)
redis.call('HINCRBY', KEYS[1], 'b', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1";

impl Worker {
    /// The connection, (re)made when there is none and the last attempt is old enough.
    fn connected(&mut self) -> Option<&mut BufReader<Stream>> {
        if self.conn.is_none() {
            if self
                .last_attempt
                .is_some_and(|t| t.elapsed() < RECONNECT_EVERY)
            {
                return None;
            }
            self.last_attempt = Some(Instant::now());
            match self.connect() {
                Ok(c) => {
                    self.outage_told = false;
                    if !self.up.swap(true, Ordering::SeqCst) {
                        log::info!(
                            "external cache {}://{}:{} connected",
                            self.scheme(),
                            self.target.host,
                            self.target.port
                        );
                    }
                    self.conn = Some(c);
                }
                Err(e) => {
                    self.down(&format!("cannot connect: {e}"));
                    return None;
                }
            }
        }
        self.conn.as_mut()
    }

    fn scheme(&self) -> &'static str {
        if self.target.tls {
            "rediss"
        } else {
            "redis"
        }
    }

    fn connect(&self) -> Result<BufReader<Stream>, String> {
        let t = &self.target;
        let addr = (t.host.as_str(), t.port)
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
            .next()
            .ok_or("no address")?;
        let sock = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| e.to_string())?;
        let _ = sock.set_nodelay(true);
        sock.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        sock.set_write_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let stream = match t.tls {
            false => Stream::Plain(sock),
            true => {
                // the backends' trust: Mozilla's roots and net.backend.tls.ca
                let config = crate::config::tls::backend_client_config()?;
                let name = rustls_pki_types::ServerName::try_from(t.host.clone())
                    .map_err(|e| format!("not a TLS server name: {e}"))?;
                let tls = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
                let mut s = rustls::StreamOwned::new(tls, sock);
                // the handshake now, so that a certificate problem says so
                while s.conn.is_handshaking() {
                    s.conn
                        .complete_io(&mut s.sock)
                        .map_err(|e| format!("TLS: {e}"))?;
                }
                Stream::Tls(Box::new(s))
            }
        };
        let mut conn = BufReader::new(stream);
        if let Some(p) = &t.password {
            let mut args = vec![b"AUTH".to_vec()];
            args.extend(t.user.iter().map(|u| u.as_bytes().to_vec()));
            args.push(p.0.as_bytes().to_vec());
            call(&mut conn, &args).map_err(|e| format!("AUTH: {e}"))?;
        }
        if t.db != 0 {
            let args = [b"SELECT".to_vec(), t.db.to_string().into_bytes()];
            call(&mut conn, &args).map_err(|e| format!("SELECT: {e}"))?;
        }
        Ok(conn)
    }

    fn down(&mut self, why: &str) {
        self.conn = None;
        let was_up = self.up.swap(false, Ordering::SeqCst);
        let told = std::mem::replace(&mut self.outage_told, true);
        if was_up || !told {
            log::warn!(
                "external cache {}://{}:{} unavailable ({why}): values miss and limits count locally until it is back",
                self.scheme(),
                self.target.host,
                self.target.port
            );
        }
    }

    fn run(&mut self, command: &Command) -> Result<Reply, ()> {
        let args = arguments(command);
        let Some(conn) = self.connected() else {
            return Err(());
        };
        match call(conn, &args) {
            Ok(reply) => Ok(reply),
            Err(Failure::Refused(e)) => {
                // Redis answered with an error: the connection is fine
                log::warn!("external cache refused a command: {e}");
                Err(())
            }
            Err(Failure::Io(e)) => {
                self.down(&e);
                Err(())
            }
        }
    }
}

/// A command's words.
fn arguments(command: &Command) -> Vec<Vec<u8>> {
    let s = |t: &str| t.as_bytes().to_vec();
    match command {
        Command::Get(k) => vec![s("GET"), s(k)],
        Command::Set { key, value, ttl_ms } => vec![
            s("SET"),
            s(key),
            value.clone(),
            s("PX"),
            ttl_ms.max(&1).to_string().into_bytes(),
        ],
        Command::Del(k) => vec![s("DEL"), s(k)],
        Command::Count {
            windows,
            now_ms,
            n,
            id,
        } => {
            let mut args = vec![
                s("EVAL"),
                s(COUNT_SCRIPT),
                windows.len().to_string().into_bytes(),
            ];
            args.extend(windows.iter().map(|w| s(&w.key)));
            args.extend([
                now_ms.to_string().into_bytes(),
                n.to_string().into_bytes(),
                s(id),
            ]);
            for w in windows {
                args.push(w.window_ms.max(1).to_string().into_bytes());
                args.push(w.limit.to_string().into_bytes());
            }
            args
        }
        Command::QuotaCheck { windows } => {
            let mut args = vec![
                s("EVAL"),
                s(QUOTA_CHECK_SCRIPT),
                windows.len().to_string().into_bytes(),
            ];
            args.extend(windows.iter().map(|w| s(&w.key)));
            for w in windows {
                args.push(w.calls.to_string().into_bytes());
                args.push(w.bytes.to_string().into_bytes());
            }
            args
        }
        Command::QuotaAdd { key, bytes, ttl_ms } => vec![
            s("EVAL"),
            s(QUOTA_ADD_SCRIPT),
            s("1"),
            s(key),
            bytes.to_string().into_bytes(),
            ttl_ms.max(&1).to_string().into_bytes(),
        ],
    }
}

/// Why a command got no reply.
#[derive(Debug)]
enum Failure {
    /// `-ERR …` from Redis.
    Refused(String),
    /// The connection failed or timed out.
    Io(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(e) | Failure::Io(e) => f.write_str(e),
        }
    }
}

/// The connection to Redis: TCP, or TLS over it (`rediss://`); blocking, with the
/// socket's timeouts.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(data),
            Stream::Tls(s) => s.write(data),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Sends one command and reads its reply.
fn call(conn: &mut BufReader<Stream>, args: &[Vec<u8>]) -> Result<Reply, Failure> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    conn.get_mut()
        .write_all(&out)
        .map_err(|e| Failure::Io(e.to_string()))?;
    read_reply(conn, 0)
}

fn read_reply(conn: &mut impl BufRead, depth: u32) -> Result<Reply, Failure> {
    let io = |e: std::io::Error| Failure::Io(e.to_string());
    let bad = || Failure::Io("not a RESP reply".into());
    if depth > 4 {
        return Err(bad());
    }
    let mut line = Vec::new();
    conn.by_ref()
        .take(64 * 1024)
        .read_until(b'\n', &mut line)
        .map_err(io)?;
    if !line.ends_with(b"\r\n") {
        return Err(Failure::Io("the connection closed".into()));
    }
    line.truncate(line.len() - 2);
    let (kind, rest) = line.split_first().ok_or_else(bad)?;
    let text = std::str::from_utf8(rest).map_err(|_| bad())?;
    match kind {
        b'+' => Ok(Reply::Done),
        b'-' => Err(Failure::Refused(text.to_string())),
        b':' => text.parse().map(Reply::Int).map_err(|_| bad()),
        b'$' => {
            let n: i64 = text.parse().map_err(|_| bad())?;
            if n < 0 {
                return Ok(Reply::Nil);
            }
            let n = n as usize;
            if n > REPLY_MAX {
                return Err(Failure::Io("a reply larger than 16 MiB".into()));
            }
            let mut buf = vec![0u8; n + 2];
            conn.read_exact(&mut buf).map_err(io)?;
            buf.truncate(n);
            Ok(Reply::Bytes(buf))
        }
        b'*' => {
            let n: i64 = text.parse().map_err(|_| bad())?;
            if n < 0 {
                return Ok(Reply::Nil);
            }
            let mut items = Vec::with_capacity((n as usize).min(64));
            for _ in 0..n.min(1024) {
                items.push(read_reply(conn, depth + 1)?);
            }
            Ok(Reply::List(items))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        let mut wire: &[u8] = b"*3\r\n:1\r\n$2\r\nhi\r\n$-1\r\n+OK\r\n-ERR no\r\n";
        assert_eq!(
            read_reply(&mut wire, 0).unwrap(),
            Reply::List(vec![
                Reply::Int(1),
                Reply::Bytes(b"hi".to_vec()),
                Reply::Nil
            ])
        );
        assert_eq!(read_reply(&mut wire, 0).unwrap(), Reply::Done);
        assert!(matches!(read_reply(&mut wire, 0), Err(Failure::Refused(e)) if e == "ERR no"));
        assert!(matches!(
            read_reply(&mut &b"$5\r\nab"[..], 0),
            Err(Failure::Io(_))
        ));
    }
}
