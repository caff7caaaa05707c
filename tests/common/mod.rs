//! Test harness: the real `edgegate` binary on 127.0.0.1 ephemeral ports, real origin
//! servers on std sockets, and raw-socket clients. Every wait is bounded.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_edgegate");

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, unique per test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "edgegate-test-{}-{}-{}",
        name,
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `edgegate ARGS` to completion (the plane's admin token in its environment):
/// (exit code, stdout, stderr).
pub fn edgegate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("EDGEGATE_MANAGE_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `s` as a JSON string literal.
pub fn js(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    edgegate::telemetry::push_json_str(&mut out, s);
    out
}

/// The gateway's status document (`/status-0123456789abcdef`).
pub fn status(gw: &Gateway) -> String {
    get(gw.addr, "/status-0123456789abcdef").text()
}

/// A config document with one API forwarding everything under `path` to `origin`.
pub fn simple_config(version: &str, path: &str, service_url: &str) -> String {
    format!(
        r#"{{"schemaVersion": 1, "version": "{version}", "apis": [
            {{"id": "echo", "path": "{path}", "serviceUrl": "{service_url}", "protocols": ["http"],
              "subscriptionRequired": false,
              "operations": [
                {{"id": "get-item", "method": "GET", "urlTemplate": "/items/{{id}}"}},
                {{"id": "any", "method": "*", "urlTemplate": "/*"}}]}}]}}"#
    )
}

pub struct Gateway {
    pub child: Child,
    pub addr: SocketAddr,
    pub config_path: PathBuf,
    pub dir: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    /// Starts the gateway on `config` with extra `--set` settings; waits for its listener.
    /// Its backup store is `backup.db` in its own temp dir.
    pub fn start(config: &str, settings: &[&str]) -> Gateway {
        let dir = temp_dir("gw");
        std::fs::write(dir.join("config.json"), config).unwrap();
        Gateway::start_in(dir, settings)
    }

    /// The backup store of this gateway.
    pub fn backup_path(&self) -> PathBuf {
        self.dir.join("backup.db")
    }

    /// Stops this gateway (SIGKILL, as a crash or power cut would) and starts a new one on
    /// the same directory (config file and backup store), with `settings`.
    pub fn restart(mut self, settings: &[&str]) -> Gateway {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, PathBuf::new());
        Gateway::start_in(dir, settings)
    }

    /// Runs the gateway in `dir` (which holds `config.json`) and waits for its listener.
    pub fn start_in(dir: PathBuf, settings: &[&str]) -> Gateway {
        let config = format!("config.local.path={}", dir.join("config.json").display());
        let mut all = vec![config.as_str()];
        all.extend_from_slice(settings);
        Gateway::spawn(dir, &all)
    }

    /// A gateway federated to the management plane at `endpoint`, in a fresh dir.
    pub fn start_service(endpoint: &str, token: &str, settings: &[&str]) -> Gateway {
        Gateway::service_in(temp_dir("gw-service"), endpoint, token, settings)
    }

    /// `start_service` on an existing dir (its backup store is kept).
    pub fn service_in(dir: PathBuf, endpoint: &str, token: &str, settings: &[&str]) -> Gateway {
        let endpoint = format!("config.service.endpoint={endpoint}");
        let auth = format!("config.service.auth={token}");
        let mut all = vec![endpoint.as_str(), auth.as_str()];
        all.extend_from_slice(settings);
        Gateway::spawn(dir, &all)
    }

    /// Stops this gateway (SIGKILL) and hands back its directory for a later start.
    pub fn kill(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, PathBuf::new())
    }

    fn spawn(dir: PathBuf, settings: &[&str]) -> Gateway {
        let config_path = dir.join("config.json");
        let mut cmd = Command::new(BIN);
        cmd.arg("gateway");
        cmd.args(["--set", "net.server.http.listen=127.0.0.1:0"]);
        cmd.arg("--set").arg(format!(
            "config.backup.path={}",
            dir.join("backup.db").display()
        ));
        for s in settings {
            cmd.args(["--set", s]);
        }
        let (child, addr, lines) = spawn_listening(cmd, "gateway");
        Gateway {
            child,
            addr,
            config_path,
            dir,
            lines,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The Prometheus listener's address, as the gateway logs it at start.
    pub fn metrics_addr(&self) -> SocketAddr {
        let line = self.wait_for_log("metrics on http://");
        line.split("metrics on http://")
            .nth(1)
            .and_then(|a| a.trim_end_matches("/metrics").parse().ok())
            .unwrap_or_else(|| panic!("no metrics address in {line}"))
    }

    /// Waits (bounded) until a stderr line contains `needle`; scans each line once.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut scanned = 0;
        loop {
            {
                let lines = self.lines.lock().unwrap();
                if let Some(l) = lines[scanned..].iter().find(|l| l.contains(needle)) {
                    return l.clone();
                }
                scanned = lines.len();
            }
            if Instant::now() >= deadline {
                let lines = self.log_lines();
                let tail: Vec<&String> = lines.iter().rev().take(20).collect();
                panic!(
                    "no log line with {needle:?} among {} lines; last ones: {tail:?}",
                    lines.len()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap()
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Starts `cmd`, collects its stderr lines, and waits (bounded) until it says it is
/// ready: a `READY=1` notification on a socket of our own (`NOTIFY_SOCKET`, as systemd
/// would give it) naming where it listens. A command that brings its own
/// `NOTIFY_SOCKET` is waited for by its "listening on" log line instead.
pub fn spawn_listening(
    mut cmd: Command,
    what: &str,
) -> (Child, SocketAddr, Arc<Mutex<Vec<String>>>) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let own_socket = !cmd.get_envs().any(|(k, _)| k == "NOTIFY_SOCKET");
    let ready = own_socket.then(|| {
        let name = format!(
            "edgegate-ready-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let sock = UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(name.as_bytes()).unwrap())
            .unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        cmd.env("NOTIFY_SOCKET", format!("@{name}"));
        sock
    });
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = match &ready {
            Some(sock) => {
                let mut buf = [0u8; 512];
                sock.recv(&mut buf).ok().and_then(|n| {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    msg.lines()
                        .find_map(|l| l.strip_prefix("EDGEGATE_LISTEN="))
                        .and_then(|url| url.split("://").nth(1))
                        .and_then(|a| a.parse::<SocketAddr>().ok())
                })
            }
            None => lines.lock().unwrap().iter().find_map(|l| {
                let rest = l
                    .split("listening on http://")
                    .nth(1)
                    .or_else(|| l.split("listening on https://").nth(1));
                rest.and_then(|a| {
                    a.trim()
                        .trim_end_matches(['"', '}'])
                        .parse::<SocketAddr>()
                        .ok()
                })
            }),
        };
        if let Some(addr) = found {
            return (child, addr, lines);
        }
        if let Ok(Some(status)) = child.try_wait() {
            thread::sleep(Duration::from_millis(50));
            panic!(
                "{what} exited early with {status}: {:?}",
                lines.lock().unwrap()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not start: {:?}",
            lines.lock().unwrap()
        );
        if ready.is_none() {
            thread::sleep(Duration::from_millis(20));
        }
    }
}

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A real `edgegate manage` process with its SQLite file in its own directory.
pub mod browser;

pub struct Plane {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Plane {
    pub fn start() -> Plane {
        Plane::start_at(temp_dir("plane"), "127.0.0.1:0")
    }

    /// Starts a plane on `dir/plane.db`, listening on `listen`.
    pub fn start_at(dir: PathBuf, listen: &str) -> Plane {
        Plane::start_with(dir, listen, &[])
    }

    /// `start_at` with extra `--set` settings (e.g. TLS).
    pub fn start_with(dir: PathBuf, listen: &str, settings: &[&str]) -> Plane {
        let mut cmd = Command::new(BIN);
        cmd.args(["manage", "--listen", listen, "--db"])
            .arg(dir.join("plane.db"));
        for s in settings {
            cmd.args(["--set", s]);
        }
        cmd.env("EDGEGATE_MANAGE_ADMIN_TOKEN", ADMIN_TOKEN);
        let (child, addr, lines) = spawn_listening(cmd, "manage");
        Plane {
            child,
            addr,
            dir,
            lines,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An admin call: (status, body).
    pub fn admin(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let raw = format!(
            "{method} {path} HTTP/1.1\r\nHost: plane\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let r = request(self.addr, &raw);
        (r.status, r.text())
    }

    /// Creates an API forwarding everything to `service_url`, links it to `gateway`
    /// (created if needed).
    pub fn publish(&self, gateway: &str, api: &str, path: &str, service_url: &str) {
        let body = format!(
            r#"{{"path": "{path}", "serviceUrl": "{service_url}", "subscriptionRequired": false}}"#
        );
        let (s, b) = self.admin("PUT", &format!("/admin/apis/{api}"), &body);
        assert!(s == 200 || s == 201, "{s} {b}");
        let (s, b) = self.admin(
            "PUT",
            &format!("/admin/apis/{api}/operations/all"),
            r#"{"method": "*", "urlTemplate": "/*"}"#,
        );
        assert!(s == 200 || s == 201, "{s} {b}");
        let (s, b) = self.admin("PUT", &format!("/admin/gateways/{gateway}"), "{}");
        assert!(s == 200 || s == 201, "{s} {b}");
        let (s, b) = self.admin("PUT", &format!("/admin/gateways/{gateway}/apis/{api}"), "");
        assert!(s == 201 || s == 204, "{s} {b}");
    }

    /// A gateway token valid for a day.
    pub fn token(&self, gateway: &str) -> String {
        let expiry = edgegate::telemetry::rfc3339(
            std::time::SystemTime::now() + Duration::from_secs(86_400),
        );
        let (s, b) = self.admin(
            "POST",
            &format!("/admin/gateways/{gateway}/token"),
            &format!(r#"{{"expiry": "{expiry}"}}"#),
        );
        assert_eq!(s, 200, "{b}");
        b.split("\"value\":\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .unwrap()
            .to_string()
    }

    /// Stops the plane (SIGKILL) and hands back its directory.
    pub fn kill(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, PathBuf::new())
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Polls `check` every 20 ms until it holds or `limit` passes; returns whether it held.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A request as the origin received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub conn_id: usize,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .count()
    }
}

/// What the origin does with a request: write raw bytes (or not) and say whether the
/// connection stays open.
pub type Handler = dyn Fn(&Seen, &mut TcpStream) -> bool + Send + Sync;

pub struct Origin {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<AtomicUsize>,
}

impl Origin {
    /// An origin running `handler` for each request, one thread per connection.
    pub fn start(
        handler: impl Fn(&Seen, &mut TcpStream) -> bool + Send + Sync + 'static,
    ) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let (seen2, conns2) = (seen.clone(), connections.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let id = conns2.fetch_add(1, Ordering::SeqCst);
                let (seen, handler) = (seen2.clone(), handler.clone());
                thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    loop {
                        let Some(req) = read_request(&mut reader, id) else {
                            return;
                        };
                        seen.lock().unwrap().push(req.clone());
                        if !handler(&req, &mut stream) {
                            return;
                        }
                    }
                });
            }
        });
        Origin {
            addr,
            seen,
            connections,
        }
    }

    /// Echoes the request as JSON-ish text: `METHOD TARGET\nbody`.
    pub fn echo() -> Origin {
        Origin::start(|req, s| {
            let mut body = format!("{} {}\n", req.method, req.target).into_bytes();
            body.extend_from_slice(&req.body);
            respond(s, 200, &[("Content-Type", "text/plain")], &body);
            true
        })
    }

    /// An origin that answers every request with `text`.
    pub fn text(text: &'static str) -> Origin {
        Origin::start(move |_, s| {
            respond(s, 200, &[], text.as_bytes());
            true
        })
    }

    pub fn url(&self, base: &str) -> String {
        format!("http://{}{}", self.addr, base)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

pub fn respond(s: &mut TcpStream, status: u16, headers: &[(&str, &str)], body: &[u8]) {
    let mut out = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    let _ = s.write_all(&bytes);
}

/// Reads one request (Content-Length or chunked body, decoded). `None` at EOF.
pub fn read_request<R: Read>(r: &mut BufReader<R>, conn_id: usize) -> Option<Seen> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            if n == 0 {
                let mut end = String::new();
                loop {
                    end.clear();
                    r.read_line(&mut end).ok()?;
                    if end == "\r\n" || end.is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body = vec![0; n];
        r.read_exact(&mut body).ok()?;
    }
    Some(Seen {
        method,
        target,
        headers,
        body,
        conn_id,
    })
}

/// A parsed response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// The value of the cookie `name` that this response sets, if it sets one.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .find_map(|(_, v)| {
                v.split(';')
                    .next()?
                    .strip_prefix(&prefix)
                    .map(str::to_string)
            })
    }

    /// The CSRF token of the first form on this HTML page.
    pub fn form_csrf(&self) -> String {
        let text = self.text();
        text.split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no form with a CSRF token in {text}"))
            .to_string()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response from a stream (Content-Length, chunked, or until close).
pub fn read_response<R: Read>(r: &mut BufReader<R>, head_request: bool) -> Option<Resp> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut lines = head.lines();
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
    } else if get("transfer-encoding").is_some() {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk[..n]);
            if n == 0 {
                break;
            }
        }
    } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body = vec![0; n];
        r.read_exact(&mut body).ok()?;
    } else {
        r.read_to_end(&mut body).ok()?;
    }
    Some(Resp {
        status,
        head,
        headers,
        body,
    })
}

/// Sends raw bytes on a new connection and reads everything until the gateway closes.
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// One request on a new connection; returns the parsed response.
pub fn request(addr: SocketAddr, raw: &str) -> Resp {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (&s).write_all(raw.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    read_response(&mut r, raw.starts_with("HEAD ")).expect("a response")
}

pub fn get(addr: SocketAddr, path: &str) -> Resp {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n"),
    )
}

/// The JSON error body the gateway writes.
pub fn error_body(status: u16, message: &str) -> String {
    format!("{{\"statusCode\": {status}, \"message\": \"{message}\"}}")
}

pub fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private PKI made with openssl: a CA (`ca.pem`, `ca.key`), and for each (stem, subjectAltName) a key `stem.key` and a certificate
/// `stem.pem` it signed.
pub fn pki(dir: &std::path::Path, leaves: &[(&str, &str)]) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=edgegate test CA",
    ]);
    openssl(dir, &args);
    for (stem, san) in leaves {
        std::fs::write(
            dir.join(format!("{stem}.cnf")),
            format!(
                "basicConstraints=CA:FALSE\nsubjectAltName={san}\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .unwrap();
        let (key, csr, pem, cnf) = (
            format!("{stem}.key"),
            format!("{stem}.csr"),
            format!("{stem}.pem"),
            format!("{stem}.cnf"),
        );
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &csr, "-subj"]);
        let subj = format!("/CN={stem}");
        args.push(&subj);
        openssl(dir, &args);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &cnf,
            ],
        );
    }
}

/// `method path` with `headers` and `body` to the gateway on a new connection (closed
/// after the answer).
pub fn send(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    raw.push_str("\r\n");
    raw.push_str(body);
    request(gw.addr, &raw)
}

/// A real redis-server on 127.0.0.1 at a free port, without persistence; killed when
/// dropped. `stop` and `restart` make an outage.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Redis { child: None, port };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port and waits until it accepts connections.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (the tests need it: apt-get install redis-server)");
        self.child = Some(child);
        let up = eventually(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
        assert!(up, "redis-server did not start on {}", self.port);
    }

    /// Runs one command (RESP) and returns the raw reply.
    pub fn command(&self, args: &[&str]) -> String {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(out.as_bytes()).unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Kills it (an outage).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The address the gateway's HTTPS listener bound (from its log line).
pub fn https_addr(gw: &Gateway) -> std::net::SocketAddr {
    gw.wait_for_log("serving HTTPS on https://")
        .split("serving HTTPS on https://")
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches(['"', '}'])
        .parse()
        .unwrap()
}

/// A TLS client trusting the test CA, presenting `stem`'s certificate when given.
pub fn tls_client_config(
    dir: &std::path::Path,
    stem: Option<&str>,
) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    std::sync::Arc::new(match stem {
        None => builder.with_no_client_auth(),
        Some(stem) => {
            let certs = vec![rustls_pki_types::CertificateDer::from_pem_file(
                dir.join(format!("{stem}.pem")),
            )
            .unwrap()];
            let key =
                rustls_pki_types::PrivateKeyDer::from_pem_file(dir.join(format!("{stem}.key")))
                    .unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
    })
}

/// Starts the gateway on a minimal config with `settings` (each "key=value") in `dir`,
/// expecting it to refuse: its exit code and stderr.
pub fn start_refused(dir: &std::path::Path, settings: &[&str]) -> (Option<i32>, String) {
    let cfg = dir.join("c.json");
    std::fs::write(&cfg, simple_config("1", "", "http://127.0.0.1:9")).unwrap();
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["gateway", "--config", cfg.to_str().unwrap()])
        .args(["--set", "net.server.http.listen=127.0.0.1:0"])
        .args([
            "--set",
            &format!("config.backup.path={}", dir.join("b.db").display()),
        ]);
    for s in settings {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
