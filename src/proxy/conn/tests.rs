//! The connection and its backend exchange without sockets: a client and its backends
//! are in-memory wires (`proxy::memory`) whose reads, writes and WouldBlock are
//! scripted; the config is a real compiled one. One test per session and exchange
//! state: the stage the exchange is in, what each side received, byte for byte.

use super::*;
use crate::config::{compile::compile, ConfigSource};
use crate::proxy::memory::{self, Handle};
use crate::settings::LogFormat;

const PLAIN: &str = r#"{"schemaVersion": 1, "version": "t", "apis": [{"id": "t", "path": "t",
    "serviceUrl": "http://127.0.0.1:9/base", "protocols": ["http"], "subscriptionRequired": false,
    "operations": [{"id": "any", "method": "*", "urlTemplate": "/*"}]}]}"#;

/// What `drive` borrows, owned by the test.
struct Loop {
    poll: mio::Poll,
    backends: Backends,
    pool: Pool,
    runtime: Arc<Runtime>,
    sync: SyncState,
    limits: Limits,
    log: RequestLog,
    seq: u64,
    counters: Counters,
    names: crate::proxy::names::Names,
    now: Instant,
}

impl Loop {
    fn new(doc: &str) -> Loop {
        let mut runtime = compile(doc, ConfigSource::Local).expect("config compiles");
        runtime.resolve_with(|_, _| Vec::new());
        Loop {
            poll: mio::Poll::new().expect("a poll"),
            backends: Backends::new(16),
            pool: Pool::new(8 * 1024, 8 << 20),
            runtime: Arc::new(runtime),
            sync: SyncState::default(),
            limits: Limits {
                head_max: 8 * 1024,
                body_max: 1 << 20,
                header_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(60),
                connect_timeout: Duration::from_secs(5),
                response_timeout: Duration::from_secs(30),
                trust_forwarded_proto: false,
                service_mode: false,
                expression_steps: 200_000,
                expression_bytes: 16 << 20,
            },
            log: RequestLog::new(LogFormat::None, false),
            seq: 0,
            counters: Counters::new(1 << 20),
            names: Default::default(),
            now: Instant::now(),
        }
    }

    /// A client connection on an in-memory wire, and the test's end of it.
    fn client(&self) -> (Client, Handle) {
        let (wire, handle) = memory::pair();
        let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
        let client = Client::new(Transport::Memory(wire), peer, self.now, &self.limits);
        (client, handle)
    }

    /// The next backend connection the gateway opens, and the test's end of it.
    fn backend(&mut self) -> Handle {
        let (wire, handle) = memory::pair();
        self.backends.dial.push_back(wire);
        handle
    }

    /// Readiness on every socket of `client` (with the backend's close when it is
    /// scripted, as epoll reports data and a close in one event), then a drive.
    fn event(&mut self, client: &mut Client) -> Outcome {
        client.readable = true;
        client.writable = true;
        if let Phase::Proxy(x) = &mut client.phase {
            if let Some(link) = x.stage.link_mut() {
                let closed = match &link.conn.transport {
                    Transport::Memory(wire) => wire.peer_closing(),
                    _ => false,
                };
                let ready = Ready {
                    readable: true,
                    writable: true,
                    closed,
                };
                let token = link.token;
                client.backend_ready(token, ready);
            }
        }
        let mut ctx = Ctx {
            now: self.now,
            registry: self.poll.registry(),
            backends: &mut self.backends,
            client: 0,
            pool: &mut self.pool,
            runtime: Some(&self.runtime),
            sync: &self.sync,
            limits: &self.limits,
            log: &mut self.log,
            draining: false,
            seq: &mut self.seq,
            id_prefix: 1,
            metrics: None,
            counters: &mut self.counters,
            wall_ms: 1_800_000_000_000,
            gateway_id: "",
            names: &mut self.names,
            external: None,
        };
        client.drive(&mut ctx)
    }
}

/// The exchange's stage, by name.
fn stage(client: &Client) -> &'static str {
    match &client.phase {
        Phase::Proxy(x) => match x.stage {
            Stage::Detached { .. } => "detached",
            Stage::Connecting { .. } => "connecting",
            Stage::SendingRequest { .. } => "sending request",
            Stage::AwaitingHead { .. } => "awaiting head",
            Stage::SendingHead { .. } => "sending head",
            Stage::Streaming { .. } => "streaming",
        },
        Phase::Waiting { .. } => "waiting",
        Phase::Head => "head",
        Phase::Body { .. } => "body",
        Phase::Reply { .. } => "reply",
        Phase::Closing => "closing",
        Phase::Calling(_) => "calling",
    }
}

const FORWARDED: &str = "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: gw\r\nVia: 1.1 edgegate\r\n";

#[test]
fn a_request_in_pieces_is_proxied_and_the_connection_kept() {
    let mut lp = Loop::new(PLAIN);
    let (mut client, c) = lp.client();
    let b = lp.backend();
    c.send(b"GET /t/items?x=1 HT");
    assert_eq!(lp.event(&mut client), Outcome::Open);
    assert_eq!(stage(&client), "head");
    c.send(b"TP/1.1\r\nHost: gw\r\n\r\n");
    assert_eq!(lp.event(&mut client), Outcome::Open);
    assert_eq!(stage(&client), "awaiting head");
    assert_eq!(
        b.take_written(),
        format!("GET /base/items?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n{FORWARDED}\r\n")
    );
    b.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(lp.event(&mut client), Outcome::Open);
    assert_eq!(
        c.take_written(),
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    );
    assert_eq!(stage(&client), "waiting");
    assert_eq!(client.close, None);
    assert_eq!(
        lp.backends.idle_count(),
        1,
        "the backend connection is pooled again"
    );
}

const GET: &[u8] = b"GET /t/x HTTP/1.1\r\nHost: gw\r\n\r\n";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";

#[test]
fn a_pending_connect_waits_in_connecting_then_sends_the_request() {
    let mut lp = Loop::new(PLAIN);
    let (mut client, c) = lp.client();
    let b = lp.backend();
    b.set_connected(None);
    c.send(GET);
    assert_eq!(lp.event(&mut client), Outcome::Open);
    assert_eq!(stage(&client), "connecting");
    assert_eq!(
        b.take_written(),
        "",
        "nothing is sent before the connect completes"
    );
    b.set_connected(Some(true));
    assert_eq!(lp.event(&mut client), Outcome::Open);
    assert_eq!(stage(&client), "awaiting head");
    assert!(b.take_written().starts_with("GET /base/x HTTP/1.1\r\n"));
}

#[test]
fn a_refused_connect_is_answered_502() {
    let mut lp = Loop::new(PLAIN);
    let (mut client, c) = lp.client();
    let b = lp.backend();
    b.set_connected(Some(false));
    c.send(GET);
    assert_eq!(lp.event(&mut client), Outcome::Open);
    let answer = c.take_written();
    assert!(
        answer.starts_with("HTTP/1.1 502 Bad Gateway\r\n"),
        "{answer}"
    );
    assert_eq!(
        stage(&client),
        "waiting",
        "a connect failure leaves the client usable"
    );
}

#[test]
fn short_writes_keep_the_request_head_in_sending_until_it_is_out() {
    let mut lp = Loop::new(PLAIN);
    let (mut client, c) = lp.client();
    let b = lp.backend();
    // a short write: the socket is full until the next writable event
    b.limit_writes(&[10]);
    c.send(GET);
    assert_eq!(lp.event(&mut client), Outcome::Open);
    assert_eq!(stage(&client), "sending request");
    assert_eq!(b.take_written(), "GET /base/");
    // the socket takes the rest at the next writable event
    assert_eq!(lp.event(&mut client), Outcome::Open);
    assert_eq!(stage(&client), "awaiting head");
    assert!(b
        .take_written()
        .starts_with("x HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"));
}

#[test]
fn interim_answers_are_skipped_while_awaiting_the_head() {
    let mut lp = Loop::new(PLAIN);
    let (mut client, c) = lp.client();
    let b = lp.backend();
    c.send(GET);
    lp.event(&mut client);
    b.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n");
    lp.event(&mut client);
    assert_eq!(stage(&client), "awaiting head");
    assert_eq!(c.take_written(), "", "1xx answers are not relayed");
    b.send(OK);
    lp.event(&mut client);
    assert_eq!(c.take_written(), String::from_utf8_lossy(OK));
}

/// Before: the close came in the same event as the data, the short read cleared the
/// readiness, and the exchange waited for the response timeout (30 s) instead.
#[test]
fn a_backend_that_closes_before_its_head_is_answered_502() {
    let mut lp = Loop::new(PLAIN);
    let (mut client, c) = lp.client();
    let b = lp.backend();
    c.send(GET);
    lp.event(&mut client);
    b.send(b"HTTP/1.1 200 O");
    b.close();
    lp.event(&mut client);
    let answer = c.take_written();
    assert!(
        answer.starts_with("HTTP/1.1 502 Bad Gateway\r\n"),
        "{answer}"
    );
    assert_eq!(
        lp.backends.idle_count(),
        0,
        "a broken connection is not pooled"
    );
}

#[test]
fn a_client_that_cannot_take_the_head_holds_the_exchange_in_sending_head() {
    let mut lp = Loop::new(PLAIN);
    let (mut client, c) = lp.client();
    let b = lp.backend();
    c.send(GET);
    lp.event(&mut client);
    c.limit_writes(&[0]);
    b.send(OK);
    assert_eq!(lp.event(&mut client), Outcome::Open);
    assert_eq!(stage(&client), "sending head");
    assert_eq!(c.take_written(), "");
    assert_eq!(lp.event(&mut client), Outcome::Open);
    assert_eq!(c.take_written(), String::from_utf8_lossy(OK));
    assert_eq!(stage(&client), "waiting");
}

#[test]
fn a_body_cut_short_by_the_backend_closes_the_client_and_says_why() {
    let mut lp = Loop::new(PLAIN);
    let (mut client, c) = lp.client();
    let b = lp.backend();
    c.send(GET);
    lp.event(&mut client);
    b.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf");
    assert_eq!(lp.event(&mut client), Outcome::Open);
    assert_eq!(stage(&client), "streaming");
    assert_eq!(
        c.take_written(),
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf"
    );
    b.close();
    assert_eq!(lp.event(&mut client), Outcome::Close);
    assert_eq!(client.close, Some(CloseReason::BackendTruncated));
}

#[test]
fn a_chunked_body_streams_until_its_last_chunk() {
    let mut lp = Loop::new(PLAIN);
    let (mut client, c) = lp.client();
    let b = lp.backend();
    c.send(GET);
    lp.event(&mut client);
    b.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n");
    lp.event(&mut client);
    assert_eq!(stage(&client), "streaming");
    b.send(b"0\r\n\r\n");
    lp.event(&mut client);
    assert_eq!(
        c.take_written(),
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
    );
    assert_eq!(stage(&client), "waiting");
    assert_eq!(lp.backends.idle_count(), 1);
}

#[test]
fn a_malformed_request_is_answered_400_and_the_connection_closed() {
    let mut lp = Loop::new(PLAIN);
    let (mut client, c) = lp.client();
    c.send(b"GET /t/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
    assert_eq!(lp.event(&mut client), Outcome::Close);
    let answer = c.take_written();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(answer.contains("Connection: close\r\n"), "{answer}");
    assert!(matches!(client.close, Some(CloseReason::Failure(_))));
}

#[test]
fn a_client_asking_to_close_is_closed_after_its_answer() {
    let mut lp = Loop::new(PLAIN);
    let (mut client, c) = lp.client();
    let b = lp.backend();
    c.send(b"GET /t/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
    lp.event(&mut client);
    b.send(OK);
    assert_eq!(lp.event(&mut client), Outcome::Close);
    assert_eq!(
        c.take_written(),
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
    );
    assert_eq!(client.close, Some(CloseReason::ClientAsked));
}

#[test]
fn a_retry_detaches_the_failed_attempt_and_sends_again_on_a_new_connection() {
    let policies = r#"<policies><inbound /><backend><retry condition=\"@(context.Response.StatusCode == 503)\" count=\"1\" interval=\"0\"><forward-request /></retry></backend><outbound /><on-error /></policies>"#;
    let doc = PLAIN.replace(
        r#""subscriptionRequired": false,"#,
        &format!(r#""subscriptionRequired": false, "policies": "{policies}","#),
    );
    let mut lp = Loop::new(&doc);
    let (mut client, c) = lp.client();
    let first = lp.backend();
    let second = lp.backend();
    c.send(GET);
    lp.event(&mut client);
    first.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
    second.send(OK);
    lp.event(&mut client);
    assert!(first.take_written().starts_with("GET /base/x HTTP/1.1\r\n"));
    assert!(second
        .take_written()
        .starts_with("GET /base/x HTTP/1.1\r\n"));
    let answer = c.take_written();
    assert!(
        answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("\r\n\r\nhi"),
        "{answer}"
    );
    assert_eq!(
        lp.backends.idle_count(),
        1,
        "only the answering connection is pooled"
    );
}

/// A plan that reads the request body: the session gathers it in its own phase, after
/// the 100 Continue the client waits for, and the backend gets the body as changed.
#[test]
fn a_body_a_plan_reads_is_gathered_in_its_own_phase_after_100_continue() {
    let policies = r#"<policies><inbound><find-and-replace from=\"cat\" to=\"dog\" /></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"#;
    let doc = PLAIN.replace(
        r#""subscriptionRequired": false,"#,
        &format!(r#""subscriptionRequired": false, "policies": "{policies}","#),
    );
    let mut lp = Loop::new(&doc);
    let (mut client, c) = lp.client();
    let b = lp.backend();
    c.send(b"POST /t/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 7\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(lp.event(&mut client), Outcome::Open);
    assert_eq!(stage(&client), "body");
    assert_eq!(c.take_written(), "HTTP/1.1 100 Continue\r\n\r\n");
    c.send(b"a cat!!");
    lp.event(&mut client);
    assert_eq!(stage(&client), "awaiting head");
    let sent = b.take_written();
    assert!(sent.starts_with("POST /base/x HTTP/1.1\r\n"), "{sent}");
    assert!(sent.ends_with("\r\n\r\na dog!!"), "{sent}");
    assert!(
        !sent.contains("Expect"),
        "the gateway answered the expectation: {sent}"
    );
}
