//! A request a policy sends (`send-request`, `send-one-way-request`) as an exchange on
//! the loop: its URL resolved without DNS on the loop (an IP literal, a host the agent
//! resolved for the config, or a name the resolver thread looks up while the request
//! waits: `names`), a connection from the backend pool (plain or TLS with the config's
//! trust settings), the request written, the response read whole into memory up to
//! `SUB_RESPONSE_MAX` bytes, all within the policy's timeout.
//!
//! ```text
//!   start ─▶ [Resolving] ─▶ Connecting ─▶ Sending ─▶ Receiving ─▶ Done(Outcome)
//!     └── bad URL / unresolved / no slot ───────────────────────▶ Done(Failed)
//! ```
//! Must not touch: the client connection, the call's state (outcomes go back to the
//! owner, which lands them in the call), DNS.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::Registry;

use super::backend::{BackendLink, Backends, CloseReason, Release};
use super::names::{Lookup, Names};
use super::transport::Connect;
use super::tunnel::ConnectVia;
use crate::config::Runtime;
use crate::http::whole::{Reader, WholeError};
use crate::policy::expr::message::Message;
use crate::policy::outgoing::{Outcome, Outgoing, ReplyTo, SubFailure};

/// Most bytes of a response body a policy's request receives.
pub const SUB_RESPONSE_MAX: u64 = 4 * 1024 * 1024;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// What a request needs from the loop: the backend pool, the names it learned, the
/// poll registry, who owns the request's connection, and the time.
pub struct Net<'a> {
    pub backends: &'a mut Backends,
    pub names: &'a mut Names,
    pub registry: &'a Registry,
    pub owner: usize,
    pub now: Instant,
}

/// Where a policy's request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub host: String,
    pub port: u16,
    /// Known without asking: an IP literal, or a host the config names.
    pub ip: Option<IpAddr>,
    /// The Host header: `host` or `host:port`.
    pub authority: String,
    /// The path and query as the URL gave them ("/" when it had no path).
    pub target: String,
    /// `https://`: the name the certificate must carry.
    pub tls: Option<Arc<rustls_pki_types::ServerName<'static>>>,
}

/// Where `url` goes, and its address if the config knows it: an IP literal, or a host
/// one of its backends or policies names (resolved by the agent when the config was
/// applied). Never DNS.
pub fn destination(url: &str, rt: &Runtime) -> Result<Destination, SubFailure> {
    let (b, target) =
        crate::config::compile::parse_absolute_url(url).map_err(SubFailure::BadUrl)?;
    let ip = b.ip_literal().or_else(|| rt.known_address(&b.host));
    Ok(Destination {
        host: b.host,
        port: b.port,
        ip,
        authority: b.authority,
        target,
        tls: b.tls,
    })
}

/// The request bytes: head and body. `proxy`: through an HTTP proxy (an `http://`
/// target), the target in absolute form, with its `Proxy-Authorization` if any.
fn request_bytes(o: &Outgoing, d: &Destination, proxy: Option<Option<&str>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + o.body.len());
    out.extend_from_slice(o.method.as_bytes());
    out.push(b' ');
    if proxy.is_some() {
        out.extend_from_slice(b"http://");
        out.extend_from_slice(d.authority.as_bytes());
    }
    out.extend_from_slice(d.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(d.authority.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(Some(authorization)) = proxy {
        out.extend_from_slice(b"Proxy-Authorization: ");
        out.extend_from_slice(authorization.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in &o.headers {
        // a value with a line break would split the head: it is not sent
        if value.bytes().any(|b| b == b'\r' || b == b'\n') {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !o.body.is_empty() || matches!(o.method.as_str(), "POST" | "PUT" | "PATCH") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", o.body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&o.body);
    out
}

enum Stage {
    /// The resolver thread is looking up the host.
    Resolving {
        host: String,
        port: u16,
    },
    Connecting {
        link: BackendLink,
    },
    Sending {
        link: BackendLink,
        sent: usize,
    },
    Receiving {
        link: BackendLink,
        reader: Reader,
    },
    Done(Outcome),
}

/// One policy request in flight.
pub struct Sub {
    /// Where its outcome goes (none: one-way).
    pub reply: Option<ReplyTo>,
    request: Vec<u8>,
    is_head: bool,
    stage: Stage,
    pub deadline: Instant,
    /// Where it goes and with which TLS config (also to start over on a fresh
    /// connection once when a pooled one turns out to be closed).
    dest: Option<(SocketAddr, Option<TlsTo>)>,
    tls: Option<TlsTo>,
}

/// The TLS of a sub-request: the server's name, the client config, the client
/// certificate's thumbprint when it presents one, and the tunnel through a proxy.
type TlsTo = (
    Arc<rustls_pki_types::ServerName<'static>>,
    Arc<rustls::ClientConfig>,
    Option<Arc<str>>,
    Option<Arc<ConnectVia>>,
);

impl Sub {
    /// Starts `o` for client `owner` (or the loop's one-way set): a connection checked
    /// out (or a failure at once).
    pub fn start(o: Outgoing, rt: &Runtime, net: &mut Net) -> Sub {
        let deadline = net.now + Duration::from_secs(o.timeout_secs.max(1));
        let is_head = o.method == "HEAD";
        let mut sub = Sub {
            request: Vec::new(),
            is_head,
            stage: Stage::Done(Outcome::Failed(SubFailure::Exhausted)),
            deadline,
            reply: None,
            dest: None,
            tls: None,
        };
        let dest = match destination(&o.url, rt) {
            Ok(d) => d,
            Err(f) => {
                sub.reply = o.reply;
                sub.stage = Stage::Done(Outcome::Failed(f));
                return sub;
            }
        };
        // through a proxy: the connection goes to it; an https:// target through a
        // CONNECT tunnel, an http:// one asked for in absolute form
        let proxy = match o.proxy.as_ref().map(|p| destination(&p.url, rt)) {
            Some(Err(f)) => {
                sub.reply = o.reply;
                sub.stage = Stage::Done(Outcome::Failed(f));
                return sub;
            }
            Some(Ok(p)) => Some(p),
            None => None,
        };
        let authorization = o.proxy.as_ref().and_then(|p| p.authorization.clone());
        let absolute = (proxy.is_some() && dest.tls.is_none()).then_some(authorization.as_deref());
        sub.request = request_bytes(&o, &dest, absolute);
        sub.reply = o.reply;
        let via = (proxy.is_some() && dest.tls.is_some()).then(|| {
            Arc::new(ConnectVia {
                authority: format!("{}:{}", dest.host, dest.port),
                authorization,
            })
        });
        let tls = match (dest.tls, o.client_tls, &rt.backend_tls) {
            (None, _, _) => None,
            (Some(name), Some(client), _) => {
                Some((name, client.config, Some(client.thumbprint), via))
            }
            (Some(name), None, Some(config)) => Some((name, Arc::clone(config), None, via)),
            (Some(_), None, None) => {
                sub.stage = Stage::Done(Outcome::Failed(SubFailure::Connect));
                return sub;
            }
        };
        sub.tls = tls;
        let (host, port, ip) = match proxy {
            Some(p) => (p.host, p.port, p.ip),
            None => (dest.host, dest.port, dest.ip),
        };
        match ip {
            Some(ip) => sub.connect_to(SocketAddr::new(ip, port), net),
            None => {
                sub.stage = Stage::Resolving { host, port };
                sub.resolve(net);
            }
        }
        sub
    }

    /// A resolving request asks the loop's names: connects once the address is known.
    fn resolve(&mut self, net: &mut Net) {
        let Stage::Resolving { host, port } = &self.stage else {
            return;
        };
        match net.names.lookup(host, net.owner, net.now) {
            Lookup::Waiting => {}
            Lookup::Found(ip) => {
                let addr = SocketAddr::new(ip, *port);
                self.connect_to(addr, net);
            }
            Lookup::NotFound => {
                let host = host.clone();
                self.stage = Stage::Done(Outcome::Failed(SubFailure::Unresolved(host)));
            }
        }
    }

    fn connect_to(&mut self, addr: SocketAddr, net: &mut Net) {
        self.dest = Some((addr, self.tls.clone()));
        self.attach(false, net);
    }

    /// Takes a connection (a pooled one unless `fresh`).
    fn attach(&mut self, fresh: bool, net: &mut Net) {
        let Some((addr, tls)) = &self.dest else {
            return;
        };
        let tls = tls
            .as_ref()
            .map(|(name, config, identity, via)| super::backend::TlsTo {
                name,
                config,
                identity: identity.as_ref(),
                via: via.as_ref(),
            });
        self.stage = match net
            .backends
            .checkout(*addr, tls, fresh, net.owner, net.registry)
        {
            Ok(link) if link.conn.reused => Stage::Sending { link, sent: 0 },
            Ok(link) => Stage::Connecting { link },
            Err(e) if e.kind() == io::ErrorKind::OutOfMemory => {
                Stage::Done(Outcome::Failed(SubFailure::Exhausted))
            }
            Err(_) => Stage::Done(Outcome::Failed(SubFailure::Connect)),
        };
    }

    /// Whether it failed on a pooled connection before any response byte came: the
    /// backend had closed it while idle, so the request goes again on a new one.
    fn stale(&self) -> bool {
        match &self.stage {
            Stage::Sending { link, .. } => link.conn.reused,
            Stage::Receiving { link, reader } => link.conn.reused && reader.is_empty(),
            _ => false,
        }
    }

    /// The poll token of its connection, while it has one.
    pub fn token(&self) -> Option<usize> {
        self.link().map(|l| l.token)
    }

    fn link(&self) -> Option<&BackendLink> {
        match &self.stage {
            Stage::Connecting { link }
            | Stage::Sending { link, .. }
            | Stage::Receiving { link, .. } => Some(link),
            Stage::Resolving { .. } | Stage::Done(_) => None,
        }
    }

    /// Records readiness of its connection.
    pub fn ready(&mut self, readable: bool, writable: bool, closed: bool) {
        if let Stage::Connecting { link }
        | Stage::Sending { link, .. }
        | Stage::Receiving { link, .. } = &mut self.stage
        {
            link.conn.readable |= readable;
            link.conn.writable |= writable;
            link.conn.hup |= closed;
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.stage, Stage::Done(_))
    }

    /// Moves bytes until blocked or done; its connection goes back to the pool (or is
    /// closed) when it is done. `owner`: who a new connection belongs to.
    pub fn advance(&mut self, net: &mut Net) {
        for _ in 0..64 {
            if self.is_done() {
                return;
            }
            if net.now >= self.deadline {
                self.end(Outcome::Failed(SubFailure::Timeout), None, net);
                return;
            }
            if let Stage::Resolving { .. } = self.stage {
                self.resolve(net);
                if let Stage::Resolving { .. } = self.stage {
                    return;
                }
                continue;
            }
            match self.step() {
                Ok(true) => {}
                Ok(false) => return,
                Err(ended) if matches!(ended.0, Outcome::Failed(_)) && self.stale() => {
                    let stage = std::mem::replace(&mut self.stage, Stage::Done(ended.0));
                    if let Stage::Sending { link, .. } | Stage::Receiving { link, .. } = stage {
                        net.backends.close(link, CloseReason::Stale, net.registry);
                    }
                    self.attach(true, net);
                }
                Err(ended) => {
                    let (outcome, release) = *ended;
                    self.end(outcome, Some(release), net);
                    return;
                }
            }
        }
    }

    /// Ends it now (the owner left or no longer waits): its connection is closed.
    pub fn cancel(&mut self, net: &mut Net) {
        if !self.is_done() {
            self.end(Outcome::Failed(SubFailure::Timeout), None, net);
        }
    }

    /// The outcome of a finished request.
    pub fn into_outcome(self) -> (Option<ReplyTo>, Outcome) {
        match self.stage {
            Stage::Done(o) => (self.reply, o),
            _ => (self.reply, Outcome::Failed(SubFailure::Timeout)),
        }
    }

    /// Ends with `outcome`, giving the connection back (`Reuse`) or closing it.
    fn end(&mut self, outcome: Outcome, release: Option<Release>, net: &mut Net) {
        let stage = std::mem::replace(&mut self.stage, Stage::Done(outcome));
        let link = match stage {
            Stage::Connecting { link }
            | Stage::Sending { link, .. }
            | Stage::Receiving { link, .. } => link,
            Stage::Resolving { .. } | Stage::Done(_) => return,
        };
        match release.unwrap_or(Release::Close(CloseReason::Aborted)) {
            Release::Reuse => net.backends.checkin(link, net.now, net.registry),
            Release::Close(why) => net.backends.close(link, why, net.registry),
        }
    }

    /// One move. `Ok(true)`: progress; `Ok(false)`: blocked; `Err`: ended.
    fn step(&mut self) -> Result<bool, Box<(Outcome, Release)>> {
        let failed =
            |f: SubFailure| Box::new((Outcome::Failed(f), Release::Close(CloseReason::Failed)));
        match &mut self.stage {
            Stage::Resolving { .. } | Stage::Done(_) => Ok(false),
            Stage::Connecting { link } => {
                // a connect completes writable; a proxy's tunnel also answers readable
                if !link.conn.writable && !link.conn.readable {
                    return Ok(false);
                }
                match link.conn.transport.connect_state() {
                    Connect::Pending => {
                        link.conn.writable = false;
                        link.conn.readable = false;
                        Ok(false)
                    }
                    Connect::Failed => Err(failed(SubFailure::Connect)),
                    Connect::Done => {
                        let placeholder = Stage::Done(Outcome::Failed(SubFailure::Connect));
                        if let Stage::Connecting { link } =
                            std::mem::replace(&mut self.stage, placeholder)
                        {
                            self.stage = Stage::Sending { link, sent: 0 };
                        }
                        Ok(true)
                    }
                }
            }
            Stage::Sending { link, sent } => {
                if *sent >= self.request.len() {
                    let placeholder = Stage::Done(Outcome::Failed(SubFailure::Connect));
                    if let Stage::Sending { link, .. } =
                        std::mem::replace(&mut self.stage, placeholder)
                    {
                        self.stage = Stage::Receiving {
                            link,
                            reader: Reader::new(self.is_head, SUB_RESPONSE_MAX),
                        };
                    }
                    return Ok(true);
                }
                if !link.conn.writable {
                    return Ok(false);
                }
                match link.conn.transport.write(&self.request[*sent..]) {
                    Ok(0) => Err(failed(SubFailure::Connect)),
                    Ok(n) => {
                        *sent += n;
                        Ok(true)
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        link.conn.writable = false;
                        Ok(false)
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
                    Err(_) => Err(failed(SubFailure::Connect)),
                }
            }
            Stage::Receiving { link, reader } => {
                if link.conn.writable && link.conn.transport.has_pending_output() {
                    match link.conn.transport.flush_pending() {
                        Ok(true) => {}
                        Ok(false) => link.conn.writable = false,
                        Err(_) => return Err(failed(SubFailure::Connect)),
                    }
                }
                if !link.conn.readable && !link.conn.hup {
                    return Ok(false);
                }
                let mut chunk = [0u8; READ_CHUNK];
                let (n, eof) = match link.conn.transport.read(&mut chunk) {
                    Ok(0) => (0, true),
                    Ok(n) => (n, false),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        link.conn.readable = false;
                        if link.conn.hup {
                            // the close was reported and nothing is left to read
                            (0, true)
                        } else {
                            return Ok(false);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                        return Err(failed(SubFailure::Connect))
                    }
                    Err(_) => return Err(failed(SubFailure::Connect)),
                };
                match reader.feed(&chunk[..n], eof) {
                    Ok(Some(whole)) => {
                        let reusable = whole.reusable;
                        let message =
                            Message::new(whole.status, whole.reason, whole.headers, whole.body);
                        // pooled only when nothing more (a close, stray bytes) is waiting:
                        // the pool drops an idle connection that turns readable
                        let drained = reusable
                            && !eof
                            && matches!(
                                link.conn.transport.read(&mut chunk),
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock
                            );
                        if drained {
                            link.conn.readable = false;
                        }
                        let release = if drained {
                            Release::Reuse
                        } else {
                            Release::Close(CloseReason::NotReusable)
                        };
                        Err(Box::new((Outcome::Received(message), release)))
                    }
                    Ok(None) if eof => Err(failed(SubFailure::BadResponse(
                        "the connection closed before the response ended",
                    ))),
                    Ok(None) => Ok(true),
                    Err(WholeError::Bad(why)) => Err(failed(SubFailure::BadResponse(why))),
                    Err(WholeError::TooLarge(max)) => Err(failed(SubFailure::TooLarge(max))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::compile::compile;
    use crate::config::ConfigSource;

    /// A runtime whose policy calls `http://idp.internal:8080/…` (resolved by a stand-in
    /// resolver to 127.0.0.9) and whose backend is `https://api.internal`.
    fn runtime() -> Runtime {
        let policy = r#"<policies><inbound><send-request response-variable-name=\"r\"><set-url>http://idp.internal:8080/token</set-url></send-request></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"#;
        let doc = format!(
            r#"{{"schemaVersion": 1, "apis": [{{"id": "a", "path": "a", "serviceUrl": "https://api.internal/v1", "subscriptionRequired": false,
                "operations": [{{"id": "o", "method": "GET", "urlTemplate": "/", "policies": "{policy}"}}]}}]}}"#
        );
        let mut rt = compile(&doc, ConfigSource::Local).expect("compiles");
        let failed = rt.resolve_with(|host, port| match host {
            "idp.internal" => vec![SocketAddr::from(([127, 0, 0, 9], port))],
            "api.internal" => vec![SocketAddr::from(([127, 0, 0, 8], port))],
            _ => Vec::new(),
        });
        assert!(failed.is_empty(), "{failed:?}");
        rt
    }

    #[test]
    fn destinations_come_from_what_the_agent_resolved() {
        let rt = runtime();
        let d = destination("http://idp.internal:8080/token?grant=x#frag", &rt).unwrap();
        assert_eq!((d.ip, d.port), (Some([127, 0, 0, 9].into()), 8080));
        assert_eq!(d.authority, "idp.internal:8080");
        assert_eq!(d.target, "/token?grant=x");
        assert!(d.tls.is_none());
        // any port of a host the config names; TLS for https
        let d = destination("https://api.internal/other", &rt).unwrap();
        assert_eq!((d.ip, d.port), (Some([127, 0, 0, 8].into()), 443));
        assert_eq!(d.authority, "api.internal");
        assert!(d.tls.is_some());
        let d = destination("http://127.0.0.1:81?q=1", &rt).unwrap();
        assert_eq!((d.port, d.target.as_str()), (81, "/?q=1"));
        // a name the config does not know is for the resolver thread
        let d = destination("http://elsewhere.example:82", &rt).unwrap();
        assert_eq!(
            (d.host.as_str(), d.ip, d.port, d.target.as_str()),
            ("elsewhere.example", None, 82, "/")
        );
        for bad in [
            "ftp://x/",
            "http://",
            "http://user@host/",
            "http://h/a b",
            "http://h:0/",
        ] {
            assert!(
                matches!(destination(bad, &rt), Err(SubFailure::BadUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn request_bytes_frame_the_body() {
        let d = Destination {
            host: "h".into(),
            port: 80,
            ip: None,
            authority: "h".into(),
            target: "/t?x=1".into(),
            tls: None,
        };
        let o = |method: &str, body: &[u8]| Outgoing {
            method: method.into(),
            url: String::new(),
            headers: vec![
                ("X-A".into(), "1".into()),
                ("X-Split".into(), "a\r\nInjected: 1".into()),
            ],
            body: body.to_vec(),
            timeout_secs: 1,
            reply: None,
            client_tls: None,
            proxy: None,
        };
        // through a proxy: absolute form, and the proxy's credentials
        assert_eq!(
            request_bytes(&o("GET", b""), &d, Some(Some("Basic eDp5"))),
            b"GET http://h/t?x=1 HTTP/1.1\r\nHost: h\r\nProxy-Authorization: Basic eDp5\r\nX-A: 1\r\n\r\n"
        );
        assert_eq!(
            request_bytes(&o("POST", b"hi"), &d, None),
            b"POST /t?x=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nhi"
        );
        assert_eq!(
            request_bytes(&o("GET", b""), &d, None),
            b"GET /t?x=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n"
        );
        assert_eq!(
            request_bytes(&o("PUT", b""), &d, None),
            b"PUT /t?x=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n"
        );
    }
}
