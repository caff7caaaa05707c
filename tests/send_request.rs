//! Policies that make their own requests (send-request, send-one-way-request, wait)
//! through the real binary, against real origins on 127.0.0.1: the call waits without
//! holding the loop, the response is read from expressions, failures go through
//! on-error or are ignored, timeouts and hang-ups end the sub-requests.

use crate::common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

/// One API at `/s` → `backend`, one operation (any method, any path) with `policy`.
fn document(backend: &str, policy: &str) -> String {
    format!(
        r#"{{"schemaVersion": 1, "apis": [{{"id": "s", "path": "s", "serviceUrl": "{backend}", "subscriptionRequired": false,
            "operations": [{{"id": "any", "method": "*", "urlTemplate": "/*", "policies": {}}}]}}]}}"#,
        js(policy)
    )
}

/// `document` with `inbound` and `on_error` around a forward-request.
fn config(backend: &str, inbound: &str, on_error: &str) -> String {
    document(
        backend,
        &format!(
            "<policies><inbound>{inbound}</inbound><backend><forward-request /></backend><outbound /><on-error>{on_error}</on-error></policies>"
        ),
    )
}

/// An introspection endpoint (RFC 7662) as Microsoft's send-request example calls it:
/// `token=good` is active.
fn introspection() -> Origin {
    Origin::start(|req, s| {
        let active = String::from_utf8_lossy(&req.body) == "token=good";
        let body = format!(r#"{{"active": {active}, "scope": "read"}}"#);
        respond(
            s,
            200,
            &[("Content-Type", "application/json"), ("X-Idp", "local")],
            body.as_bytes(),
        );
        true
    })
}

#[test]
fn microsofts_token_introspection_example() {
    let idp = introspection();
    let backend = Origin::echo();
    // Microsoft's "Verify token with authorization server" example, its URL on loopback
    let inbound = format!(
        r#"<set-variable name="token" value="@(context.Request.Headers.GetValueOrDefault(&quot;Authorization&quot;,&quot;scheme param&quot;).Split(' ').Last())" />
  <send-request mode="new" response-variable-name="tokenstate" timeout="20" ignore-error="true">
    <set-url>{}</set-url>
    <set-method>POST</set-method>
    <set-header name="Authorization" exists-action="override">
      <value>basic dXNlcm5hbWU6cGFzc3dvcmQ=</value>
    </set-header>
    <set-header name="Content-Type" exists-action="override">
      <value>application/x-www-form-urlencoded</value>
    </set-header>
    <set-body>@($"token={{(string)context.Variables["token"]}}")</set-body>
  </send-request>
  <choose>
        <when condition="@((bool)((IResponse)context.Variables[&quot;tokenstate&quot;]).Body.As&lt;JObject&gt;()[&quot;active&quot;] == false)">
            <return-response>
                <set-status code="401" reason="Unauthorized" />
                <set-header name="WWW-Authenticate" exists-action="override">
                    <value>Bearer error="invalid_token"</value>
                </set-header>
            </return-response>
        </when>
    </choose>
  <set-header name="X-Idp" exists-action="override"><value>@(((IResponse)context.Variables["tokenstate"]).Headers.GetValueOrDefault("X-Idp", "none") + "/" + ((IResponse)context.Variables["tokenstate"]).StatusCode)</value></set-header>"#,
        idp.url("/introspection")
    );
    let gw = Gateway::start(&config(&backend.url(""), &inbound, ""), &[]);
    let denied = send(
        &gw,
        "GET",
        "/s/orders",
        &[("Authorization", "Bearer bad")],
        "",
    );
    assert_eq!(denied.status, 401);
    assert_eq!(
        denied.header("WWW-Authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    let allowed = send(
        &gw,
        "GET",
        "/s/orders",
        &[("Authorization", "Bearer good")],
        "",
    );
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    assert_eq!(allowed.text(), "GET /orders\n");
    let seen = backend.requests();
    assert_eq!(seen.len(), 1, "only the allowed call reached the backend");
    assert_eq!(seen[0].header("X-Idp"), Some("local/200"));
    let asked = idp.requests();
    assert_eq!(asked.len(), 2);
    assert_eq!(asked[0].method, "POST");
    assert_eq!(asked[0].target, "/introspection");
    assert_eq!(asked[0].body, b"token=bad");
    assert_eq!(asked[1].body, b"token=good");
    assert_eq!(
        asked[1].header("Authorization"),
        Some("basic dXNlcm5hbWU6cGFzc3dvcmQ=")
    );
    assert_eq!(
        asked[1].header("Content-Type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(asked[1].header("Content-Length"), Some("10"));
    assert_eq!(asked[1].header("Host"), Some(idp.addr.to_string().as_str()));
}

/// A port on 127.0.0.1 where nothing listens.
/// A loopback port that refuses connections for as long as the guard lives: a socket
/// bound there without listening (a port merely freed could be taken by another test
/// running at the same time, which then holds the connection open).
struct ClosedPort {
    _socket: socket2::Socket,
    port: u16,
}

fn closed_port() -> ClosedPort {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).unwrap();
    let port = socket.local_addr().unwrap().as_socket().unwrap().port();
    ClosedPort {
        _socket: socket,
        port,
    }
}

const LAST_ERROR: &str = r#"<return-response><set-status code="502" /><set-body>@(context.LastError.Source + "|" + context.LastError.Reason + "|" + context.LastError.Section + "|" + context.LastError.PolicyId + "|" + context.LastError.Message)</set-body></return-response>"#;

#[test]
fn failures_go_through_on_error_unless_ignored() {
    let backend = Origin::echo();
    let closed = closed_port();
    let dead = format!("http://127.0.0.1:{}/check", closed.port);
    let inbound = format!(
        r#"<send-request mode="new" response-variable-name="ignored" ignore-error="true"><set-url>{dead}</set-url></send-request>
<set-header name="X-Ignored" exists-action="override"><value>@(context.Variables["ignored"] == null ? "null" : "set")</value></set-header>
<choose><when condition="@(context.Request.Headers.ContainsKey(&quot;X-Fail&quot;))">
  <send-request mode="new" response-variable-name="r" id="checker"><set-url>@(context.Request.Headers.GetValueOrDefault("X-Fail"))</set-url></send-request>
</when></choose>"#
    );
    let gw = Gateway::start(&config(&backend.url(""), &inbound, LAST_ERROR), &[]);
    let ok = send(&gw, "GET", "/s/x", &[], "");
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(backend.requests()[0].header("X-Ignored"), Some("null"));
    let refused = send(&gw, "GET", "/s/x", &[("X-Fail", &dead)], "");
    assert_eq!(refused.status, 502);
    assert_eq!(
        refused.text(),
        "send-request|BackendConnectionFailure|inbound|checker|Error occured while calling the service: the connection failed"
    );
    let unresolved = send(
        &gw,
        "GET",
        "/s/x",
        &[("X-Fail", "https://no-such-host.invalid/x")],
        "",
    );
    assert_eq!(
        unresolved.text(),
        "send-request|BackendConnectionFailure|inbound|checker|The host name 'no-such-host.invalid' could not be resolved"
    );
    let bad = send(&gw, "GET", "/s/x", &[("X-Fail", "ftp://x/")], "");
    assert_eq!(
        bad.text(),
        "send-request|InvalidUrl|inbound|checker|The request URL is not valid: 'ftp://x/' is not an http:// or https:// URL"
    );
    assert_eq!(backend.requests().len(), 1);
}

/// An origin that answers only when `release` is sent (or after 10 s): says whether
/// it was released.
fn held_origin() -> (
    Origin,
    std::sync::mpsc::Sender<()>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = std::sync::Mutex::new(released);
    let was_released = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = was_released.clone();
    let origin = Origin::start(move |_, s| {
        let ok = released
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(10))
            .is_ok();
        flag.store(ok, std::sync::atomic::Ordering::SeqCst);
        respond(s, 200, &[("Content-Type", "text/plain")], b"late");
        true
    });
    (origin, release, was_released)
}

#[test]
fn a_waiting_call_does_not_hold_the_loop() {
    let (slow, release, was_released) = held_origin();
    let backend = Origin::echo();
    let inbound = format!(
        r#"<send-request mode="new" response-variable-name="r"><set-url>{}</set-url></send-request>
<return-response><set-body>@(((IResponse)context.Variables["r"]).Body.As<string>())</set-body></return-response>"#,
        slow.url("/slow")
    );
    let gw = Gateway::start(&config(&backend.url(""), &inbound, LAST_ERROR), &[]);
    let addr = gw.addr;
    let waiting = std::thread::spawn(move || {
        request(
            addr,
            "GET /s/one HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
        )
    });
    assert!(eventually(Duration::from_secs(5), || slow.requests().len() == 1));
    // while that call waits on its policy's request, the same loop answers others
    assert_eq!(get(addr, "/status-0123456789abcdef").status, 200);
    release.send(()).unwrap();
    let answered = waiting.join().unwrap();
    assert_eq!(answered.status, 200);
    assert_eq!(answered.text(), "late");
    assert!(
        was_released.load(std::sync::atomic::Ordering::SeqCst),
        "the probe was answered before the policy's request was"
    );
}

#[test]
fn a_slow_service_times_out() {
    let (slow, release, _) = held_origin();
    let backend = Origin::echo();
    let inbound = format!(
        r#"<send-request mode="new" response-variable-name="r" timeout="1"><set-url>{}</set-url></send-request>"#,
        slow.url("/slow")
    );
    let gw = Gateway::start(&config(&backend.url(""), &inbound, LAST_ERROR), &[]);
    let timed_out = send(&gw, "GET", "/s/one", &[], "");
    assert_eq!(timed_out.status, 502);
    assert_eq!(
        timed_out.text(),
        "send-request|Timeout|inbound||The request timed out before a response arrived"
    );
    let _ = release.send(());
    assert!(backend.requests().is_empty());
}

#[test]
fn wait_for_all_and_for_any() {
    let a = Origin::start(|_, s| {
        // chunked, as many services answer
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-From: a\r\n\r\n3\r\n{\"n\r\n5\r\n\": 1}\r\n0\r\n\r\n");
        true
    });
    let b = Origin::start(|_, s| {
        respond(s, 201, &[("X-From", "b")], br#"{"n": 2}"#);
        true
    });
    let (held, release, _) = held_origin();
    let backend = Origin::echo();
    let all = format!(
        r#"<wait for="all">
  <send-request mode="new" response-variable-name="a"><set-url>{}</set-url></send-request>
  <send-request mode="new" response-variable-name="b"><set-url>{}</set-url></send-request>
</wait>
<return-response><set-body>@{{
  var a = ((IResponse)context.Variables["a"]).Body.As<JObject>();
  var b = ((IResponse)context.Variables["b"]).Body.As<JObject>();
  return (int)a["n"] + (int)b["n"] + "|" + ((IResponse)context.Variables["b"]).StatusCode + "|" + ((IResponse)context.Variables["a"]).Headers["X-From"];
}}</set-body></return-response>"#,
        a.url("/a"),
        b.url("/b")
    );
    let any = format!(
        r#"<wait for="any">
  <send-request mode="new" response-variable-name="slow"><set-url>{}</set-url></send-request>
  <send-request mode="new" response-variable-name="fast"><set-url>{}</set-url></send-request>
</wait>
<return-response><set-body>@(context.Variables.ContainsKey("slow") + "|" + ((IResponse)context.Variables["fast"]).Body.As<string>())</set-body></return-response>"#,
        held.url("/held"),
        b.url("/b")
    );
    let doc = format!(
        r#"{{"schemaVersion": 1, "apis": [{{"id": "s", "path": "s", "serviceUrl": "{}", "subscriptionRequired": false,
            "operations": [{{"id": "all", "method": "GET", "urlTemplate": "/all", "policies": {}}},
                           {{"id": "any", "method": "GET", "urlTemplate": "/any", "policies": {}}}]}}]}}"#,
        backend.url(""),
        js(&format!("<policies><inbound>{all}</inbound><backend><forward-request /></backend><outbound /><on-error /></policies>")),
        js(&format!("<policies><inbound>{any}</inbound><backend><forward-request /></backend><outbound /><on-error /></policies>")),
    );
    let gw = Gateway::start(&doc, &[]);
    let both = send(&gw, "GET", "/s/all", &[], "");
    assert_eq!(both.status, 200, "{}", both.text());
    assert_eq!(both.text(), "3|201|a");
    let first = send(&gw, "GET", "/s/any", &[], "");
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.text(), r#"False|{"n": 2}"#);
    // the request nobody waits for any more was cancelled: its connection closed
    assert!(eventually(Duration::from_secs(5), || held.requests().len() == 1));
    let _ = release.send(());
}

#[test]
fn copy_mode_sends_the_request_as_it_stands() {
    let mirror = Origin::echo();
    let backend = Origin::echo();
    let inbound = format!(
        r#"<set-header name="X-Edited" exists-action="override"><value>yes</value></set-header>
<send-request mode="copy" response-variable-name="copied" />
<send-request mode="copy" response-variable-name="mirrored">
  <set-url>{}</set-url>
  <set-method>PUT</set-method>
  <set-header name="X-Client" exists-action="delete" />
</send-request>
<return-response><set-body>@(((IResponse)context.Variables["copied"]).Body.As<string>() + "|" + ((IResponse)context.Variables["mirrored"]).Body.As<string>())</set-body></return-response>"#,
        mirror.url("/mirror?m=1")
    );
    let gw = Gateway::start(&config(&backend.url("/base"), &inbound, LAST_ERROR), &[]);
    let r = send(
        &gw,
        "POST",
        "/s/orders?id=7",
        &[("X-Client", "c1"), ("Content-Type", "text/plain")],
        "hello",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        "POST /base/orders?id=7\nhello|PUT /mirror?m=1\nhello"
    );
    let copied = &backend.requests()[0];
    assert_eq!(copied.header("X-Client"), Some("c1"));
    assert_eq!(copied.header("X-Edited"), Some("yes"));
    assert_eq!(copied.header("Content-Type"), Some("text/plain"));
    assert_eq!(
        copied.header("Host"),
        Some(backend.addr.to_string().as_str())
    );
    let mirrored = &mirror.requests()[0];
    assert_eq!(mirrored.header("X-Client"), None);
    assert_eq!(mirrored.header("X-Edited"), Some("yes"));
}

#[test]
fn one_way_requests_do_not_hold_the_call() {
    let (held, release, was_released) = held_origin();
    let backend = Origin::echo();
    let policy = format!(
        r#"<policies><inbound>
  <send-one-way-request mode="new"><set-url>{}</set-url><set-method>POST</set-method><set-body>@("seen " + context.Request.Url.Path)</set-body></send-one-way-request>
</inbound><backend><forward-request /></backend><outbound>
  <send-one-way-request mode="new"><set-url>{}</set-url><set-body>@("answered " + context.Response.StatusCode)</set-body></send-one-way-request>
</outbound><on-error /></policies>"#,
        held.url("/log"),
        held.url("/log")
    );
    let doc = document(&backend.url(""), &policy);
    let gw = Gateway::start(
        &doc,
        &[
            "telemetry.metrics.local=prometheus",
            "telemetry.metrics.local.prometheus.listen=127.0.0.1:0",
        ],
    );
    // the call is answered while both of its one-way requests are still unanswered
    let r = send(&gw, "GET", "/s/orders", &[], "");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "GET /orders\n");
    assert!(eventually(Duration::from_secs(5), || held.requests().len() == 2));
    let mut bodies: Vec<String> = held
        .requests()
        .iter()
        .map(|s| format!("{} {}", s.method, String::from_utf8_lossy(&s.body)))
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["GET answered 200", "POST seen /s/orders"]);
    release.send(()).unwrap();
    release.send(()).unwrap();
    assert!(eventually(Duration::from_secs(5), || was_released
        .load(std::sync::atomic::Ordering::SeqCst)));
    let scrape = || {
        request(
            gw.metrics_addr(),
            "GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
        )
        .text()
    };
    assert!(
        eventually(Duration::from_secs(10), || scrape()
            .contains("edgegate_one_way_requests_sent_total 2\n")),
        "{}",
        scrape()
    );
    assert!(scrape().contains("edgegate_one_way_requests_dropped_total 0\n"));
}

#[test]
fn a_client_that_hangs_up_cancels_its_requests() {
    let closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = closed.clone();
    let watcher = Origin::start(move |_, s| {
        // never answers; sees whether the gateway closes the connection
        let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
        let mut byte = [0u8; 1];
        if matches!(std::io::Read::read(s, &mut byte), Ok(0)) {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        false
    });
    let backend = Origin::echo();
    let inbound = format!(
        r#"<send-request mode="new" response-variable-name="r" timeout="60"><set-url>{}</set-url></send-request>"#,
        watcher.url("/never")
    );
    let gw = Gateway::start(&config(&backend.url(""), &inbound, LAST_ERROR), &[]);
    let mut client = TcpStream::connect(gw.addr).unwrap();
    client
        .write_all(b"GET /s/x HTTP/1.1\r\nHost: gw\r\n\r\n")
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || watcher
        .requests()
        .len()
        == 1));
    drop(client);
    assert!(
        eventually(Duration::from_secs(10), || closed
            .load(std::sync::atomic::Ordering::SeqCst)),
        "the gateway closed the policy's request when its client left"
    );
    assert!(backend.requests().is_empty());
    // and the gateway still serves
    assert_eq!(get(gw.addr, "/status-0123456789abcdef").status, 200);
}

#[test]
fn responses_are_bounded() {
    let huge = Origin::start(|_, s| {
        let body = vec![b'x'; 5 * 1024 * 1024];
        respond(s, 200, &[], &body);
        false
    });
    let backend = Origin::echo();
    let inbound = format!(
        r#"<send-request mode="new" response-variable-name="r"><set-url>{}</set-url></send-request>"#,
        huge.url("/big")
    );
    let gw = Gateway::start(&config(&backend.url(""), &inbound, LAST_ERROR), &[]);
    let r = send(&gw, "GET", "/s/x", &[], "");
    assert_eq!(r.status, 502);
    assert_eq!(
        r.text(),
        "send-request|ResponseTooLarge|inbound||The response is larger than the 4194304 bytes a policy may receive"
    );
}

#[test]
fn send_request_where_a_call_cannot_wait_is_refused_at_load() {
    let dir = temp_dir("send-request-retry");
    let policy = r#"<policies><inbound /><backend><retry condition="@(context.Response.StatusCode == 503)" count="2" interval="1"><send-request mode="new" response-variable-name="r"><set-url>http://127.0.0.1:9/</set-url></send-request><forward-request /></retry></backend><outbound /><on-error /></policies>"#;
    let doc = format!(
        r#"{{"schemaVersion": 1, "apis": [{{"id": "s", "path": "s", "serviceUrl": "http://127.0.0.1:9", "subscriptionRequired": false,
            "operations": [{{"id": "any", "method": "*", "urlTemplate": "/*", "policies": {}}}]}}]}}"#,
        js(policy)
    );
    let path = dir.join("config.json");
    std::fs::write(&path, doc).unwrap();
    let (code, out, err) = edgegate(&["check", path.to_str().unwrap()]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            "send-request and wait are not supported inside <retry>; place them before it"
        ),
        "{out}{err}"
    );
}

/// Microsoft's "Replay request on error" sample: a call refused by a policy is replayed
/// from on-error (send-request mode copy) to another service, whose answer goes back.
#[test]
fn on_error_replays_a_refused_call() {
    let replay = Origin::start(|req, s| {
        let body = format!(
            "replayed {} {} skip={}",
            req.method,
            String::from_utf8_lossy(&req.body),
            req.header("skip-example-policy-error").unwrap_or("-")
        );
        respond(s, 202, &[("X-Replay", "yes")], body.as_bytes());
        true
    });
    let backend = Origin::echo();
    let on_error = format!(
        r#"<choose>
    <when condition="@(context.LastError.Source == &quot;rate-limit-by-key&quot;)">
        <set-variable name="replay-url" value="@(&quot;{}&quot; + context.Request.Url.Path)" />
        <set-variable name="original-error-reason" value="@(context.LastError.Reason)" />
        <send-request mode="copy" response-variable-name="replay-response" timeout="60" ignore-error="false">
            <set-url>@(context.Variables.GetValueOrDefault&lt;string&gt;("replay-url"))</set-url>
            <set-header name="skip-example-policy-error" exists-action="override"><value>true</value></set-header>
        </send-request>
        <return-response response-variable-name="replay-response">
            <set-header name="x-request-replayed" exists-action="override"><value>true</value></set-header>
            <set-header name="x-original-error-reason" exists-action="override"><value>@(context.Variables.GetValueOrDefault&lt;string&gt;("original-error-reason"))</value></set-header>
        </return-response>
    </when>
</choose>"#,
        replay.url("")
    );
    let inbound = r#"<rate-limit-by-key calls="1" renewal-period="60" counter-key="one" />"#;
    let gw = Gateway::start(&config(&backend.url(""), inbound, &on_error), &[]);
    let first = send(&gw, "POST", "/s/orders", &[], "order-1");
    assert_eq!(
        (first.status, first.text().as_str()),
        (200, "POST /orders\norder-1")
    );
    let second = send(&gw, "POST", "/s/orders", &[], "order-2");
    assert_eq!(second.status, 202);
    assert_eq!(second.text(), "replayed POST order-2 skip=true");
    assert_eq!(second.header("X-Replay"), Some("yes"));
    assert_eq!(second.header("x-request-replayed"), Some("true"));
    assert_eq!(
        second.header("x-original-error-reason"),
        Some("RateLimitExceeded")
    );
    assert_eq!(replay.requests()[0].target, "/s/orders");
    assert_eq!(backend.requests().len(), 1);
}

#[test]
fn connections_are_pooled_and_a_closed_one_is_replaced() {
    // keeps its connections open
    let keeps = Origin::start(|_, s| {
        respond(s, 200, &[], b"kept");
        true
    });
    // closes each connection after its response, without saying so
    let closes = Origin::start(|_, s| {
        respond(s, 200, &[], b"closed");
        false
    });
    let backend = Origin::echo();
    let inbound = format!(
        r#"<send-request mode="new" response-variable-name="a"><set-url>{}</set-url></send-request>
<send-request mode="new" response-variable-name="b"><set-url>{}</set-url></send-request>
<return-response><set-body>@(((IResponse)context.Variables["a"]).Body.As<string>() + "|" + ((IResponse)context.Variables["b"]).Body.As<string>())</set-body></return-response>"#,
        keeps.url("/k"),
        closes.url("/c")
    );
    let gw = Gateway::start(&config(&backend.url(""), &inbound, LAST_ERROR), &[]);
    for _ in 0..5 {
        let r = send(&gw, "GET", "/s/x", &[], "");
        assert_eq!((r.status, r.text().as_str()), (200, "kept|closed"));
    }
    assert_eq!(keeps.requests().len(), 5);
    assert_eq!(
        keeps.connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one pooled connection carried all five"
    );
    assert_eq!(closes.requests().len(), 5);
}

#[test]
fn names_computed_at_request_time_are_resolved_off_the_loop() {
    let named = Origin::echo();
    let backend = Origin::echo();
    // the URL's host comes from the request: nothing in the config names it, so the
    // resolver thread looks it up while the call waits
    let inbound = r#"<send-request mode="new" response-variable-name="r" timeout="20"><set-url>@("http://" + context.Request.Headers.GetValueOrDefault("X-Host") + "/named")</set-url></send-request>
<return-response><set-body>@(((IResponse)context.Variables["r"]).Body.As<string>())</set-body></return-response>"#;
    let gw = Gateway::start(&config(&backend.url(""), inbound, LAST_ERROR), &[]);
    let host = format!("localhost:{}", named.addr.port());
    for _ in 0..2 {
        let r = send(&gw, "GET", "/s/x", &[("X-Host", &host)], "");
        assert_eq!((r.status, r.text().as_str()), (200, "GET /named\n"));
    }
    assert_eq!(named.requests()[0].header("Host"), Some(host.as_str()));
    let r = send(
        &gw,
        "GET",
        "/s/x",
        &[("X-Host", "no-such-host.invalid")],
        "",
    );
    assert_eq!(
        (r.status, r.text().as_str()),
        (
            502,
            "send-request|BackendConnectionFailure|inbound||The host name 'no-such-host.invalid' could not be resolved"
        )
    );
}

#[test]
fn return_response_answers_with_a_stored_response() {
    let service = Origin::start(|_, s| {
        respond(
            s,
            404,
            &[("Content-Type", "application/json"), ("X-Service", "kept")],
            br#"{"error": "no such order"}"#,
        );
        true
    });
    let backend = Origin::echo();
    let inbound = format!(
        r#"<send-request mode="new" response-variable-name="found"><set-url>{}</set-url></send-request>
<choose><when condition="@(context.Request.Headers.ContainsKey(&quot;X-Wrong&quot;))">
  <set-variable name="text" value="not a response" />
  <return-response response-variable-name="text" />
</when></choose>
<return-response response-variable-name="found">
  <set-header name="X-Gateway" exists-action="override"><value>edgegate</value></set-header>
</return-response>"#,
        service.url("/orders/7")
    );
    let gw = Gateway::start(&config(&backend.url(""), &inbound, LAST_ERROR), &[]);
    let r = send(&gw, "GET", "/s/x", &[], "");
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), r#"{"error": "no such order"}"#);
    assert_eq!(r.header("X-Service"), Some("kept"));
    assert_eq!(r.header("X-Gateway"), Some("edgegate"));
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.header("Content-Length"), Some("26"));
    let wrong = send(&gw, "GET", "/s/x", &[("X-Wrong", "1")], "");
    assert_eq!(
        (wrong.status, wrong.text().as_str()),
        (
            502,
            "return-response|ExpressionValueEvaluationFailure|inbound||Expression evaluation failed. response-variable-name: the variable 'text' holds a string, not a response"
        )
    );
    assert!(backend.requests().is_empty());
}

#[test]
fn a_call_resumes_where_it_waited_and_runs_each_step_once() {
    let service = Origin::start(|req, s| {
        respond(s, 200, &[], req.target.as_bytes());
        true
    });
    let backend = Origin::echo();
    // suspensions inside a choose branch, inside limit-concurrency, and after them: every
    // step records itself once, in order
    let trail = |name: &str| {
        format!(
            r#"<set-variable name="trail" value="@((string)context.Variables.GetValueOrDefault(&quot;trail&quot;, &quot;&quot;) + &quot;{name};&quot;)" />"#
        )
    };
    let ask = |var: &str, path: &str| {
        format!(
            r#"<send-request mode="new" response-variable-name="{var}"><set-url>{}</set-url></send-request>"#,
            service.url(path)
        )
    };
    let inbound = format!(
        r#"{start}
<choose>
  <when condition="@(context.Request.Headers.ContainsKey(&quot;X-Branch&quot;))">
    {in_when}{first}{after_first}
    <limit-concurrency key="k" max-count="5">{in_limit}{second}{after_second}</limit-concurrency>
  </when>
  <otherwise>{otherwise}</otherwise>
</choose>
{after_choose}{third}
<return-response><set-body>@((string)context.Variables["trail"] + ((IResponse)context.Variables["a"]).Body.As<string>() + "," + ((IResponse)context.Variables["b"]).Body.As<string>() + "," + ((IResponse)context.Variables["c"]).Body.As<string>())</set-body></return-response>"#,
        start = trail("start"),
        in_when = trail("when"),
        first = ask("a", "/a"),
        after_first = trail("after-a"),
        in_limit = trail("limit"),
        second = ask("b", "/b"),
        after_second = trail("after-b"),
        otherwise = trail("otherwise"),
        after_choose = trail("after-choose"),
        third = ask("c", "/c"),
    );
    let gw = Gateway::start(&config(&backend.url(""), &inbound, LAST_ERROR), &[]);
    let r = send(&gw, "GET", "/s/x", &[("X-Branch", "1")], "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        "start;when;after-a;limit;after-b;after-choose;/a,/b,/c"
    );
    assert_eq!(service.requests().len(), 3);
}

#[test]
fn outbound_waits_for_its_requests_too() {
    let audit = Origin::start(|req, s| {
        let body = format!("audited {}", String::from_utf8_lossy(&req.body));
        respond(s, 200, &[("Content-Type", "text/plain")], body.as_bytes());
        true
    });
    let backend = Origin::start(|_, s| {
        respond(
            s,
            200,
            &[("Content-Type", "application/json")],
            br#"{"order": 7}"#,
        );
        true
    });
    let policy = format!(
        r#"<policies><inbound /><backend><forward-request /><send-request mode="new" response-variable-name="b"><set-url>{audit}</set-url><set-method>POST</set-method><set-body>backend-after</set-body></send-request></backend><outbound>
  <set-header name="X-Before" exists-action="override"><value>kept</value></set-header>
  <send-request mode="new" response-variable-name="o">
    <set-url>{audit}</set-url><set-method>POST</set-method>
    <set-body>@(context.Response.StatusCode + " " + context.Response.Body.As<string>(preserveContent: true))</set-body>
  </send-request>
  <set-header name="X-Audit" exists-action="override"><value>@(((IResponse)context.Variables["o"]).Body.As<string>() + " / " + ((IResponse)context.Variables["b"]).Body.As<string>())</value></set-header>
</outbound><on-error /></policies>"#,
        audit = audit.url("/audit")
    );
    let doc = document(&backend.url(""), &policy);
    let gw = Gateway::start(&doc, &[]);
    for _ in 0..2 {
        let r = send(&gw, "GET", "/s/orders", &[], "");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), r#"{"order": 7}"#, "the backend's body goes on");
        assert_eq!(r.header("X-Before"), Some("kept"));
        assert_eq!(
            r.header("X-Audit"),
            Some(r#"audited 200 {"order": 7} / audited backend-after"#)
        );
    }
    assert_eq!(audit.requests().len(), 4);
}

/// A fallback service: "fallback for <target>".
fn fallback_service() -> Origin {
    Origin::start(|req, s| {
        respond(
            s,
            200,
            &[],
            format!("fallback for {}", req.target).as_bytes(),
        );
        true
    })
}

#[test]
fn on_error_after_a_backend_error_status_waits_for_a_fallback() {
    let fallback = fallback_service();
    let backend = Origin::start(|_, s| {
        respond(s, 500, &[], b"broken");
        true
    });
    let policy = format!(
        r#"<policies><inbound /><backend><forward-request fail-on-error-status-code="true" /></backend><outbound>
  <set-header name="X-Outbound" exists-action="override"><value>ran</value></set-header>
</outbound><on-error>
  <send-request mode="new" response-variable-name="f"><set-url>@("{}" + context.Request.Url.Path)</set-url></send-request>
  <return-response response-variable-name="f">
    <set-header name="X-Reason" exists-action="override"><value>@(context.LastError.Reason)</value></set-header>
  </return-response>
</on-error></policies>"#,
        fallback.url("")
    );
    let doc = document(&backend.url(""), &policy);
    let gw = Gateway::start(&doc, &[]);
    let r = send(&gw, "GET", "/s/orders", &[], "");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "fallback for /s/orders")
    );
    assert_eq!(r.header("X-Reason"), Some("BackendErrorStatusCode"));
    assert_eq!(r.header("X-Outbound"), None, "on-error instead of outbound");
    assert_eq!(backend.requests().len(), 1);
}

#[test]
fn on_error_after_an_outbound_failure_waits_too() {
    let reporter = Origin::start(|req, s| {
        respond(
            s,
            200,
            &[],
            format!("reported {}", String::from_utf8_lossy(&req.body)).as_bytes(),
        );
        true
    });
    let backend = Origin::echo();
    let policy = format!(
        r#"<policies><inbound /><backend><forward-request /></backend><outbound>
  <set-variable name="n" value="@(int.Parse(&quot;not a number&quot;))" />
</outbound><on-error>
  <send-request mode="new" response-variable-name="r"><set-url>{}</set-url><set-method>POST</set-method><set-body>@(context.LastError.Source + " " + context.LastError.Reason)</set-body></send-request>
  <return-response response-variable-name="r"><set-status code="502" reason="Bad Gateway" /></return-response>
</on-error></policies>"#,
        reporter.url("/report")
    );
    let doc = document(&backend.url(""), &policy);
    let gw = Gateway::start(&doc, &[]);
    let r = send(&gw, "GET", "/s/x", &[], "");
    assert_eq!(
        (r.status, r.text().as_str()),
        (
            502,
            "reported set-variable ExpressionValueEvaluationFailure"
        )
    );
    assert_eq!(backend.requests().len(), 1);
}

#[test]
fn outbound_over_a_local_answer_or_a_cache_hit_waits_too() {
    let audit = Origin::start(|req, s| {
        let body = format!("audited {}", String::from_utf8_lossy(&req.body));
        respond(s, 200, &[("Content-Type", "text/plain")], body.as_bytes());
        true
    });
    let backend = Origin::start(|req, s| {
        respond(
            s,
            200,
            &[("Cache-Control", "max-age=60")],
            format!("fresh {}", req.target).as_bytes(),
        );
        true
    });
    let outbound = format!(
        r#"<send-request mode="new" response-variable-name="o">
    <set-url>{}</set-url><set-method>POST</set-method>
    <set-body>@(context.Response.StatusCode + " " + context.Response.Body.As<string>(preserveContent: true))</set-body>
  </send-request>
  <set-header name="X-Audit" exists-action="override"><value>@(((IResponse)context.Variables["o"]).Body.As<string>())</value></set-header>"#,
        audit.url("/audit")
    );
    // no forward-request: outbound runs over the policies' own answer
    let local = format!(
        r#"<policies><inbound><set-body>made here</set-body></inbound><backend /><outbound>{outbound}</outbound><on-error /></policies>"#
    );
    let gw = Gateway::start(&document(&backend.url(""), &local), &[]);
    let r = send(&gw, "GET", "/s/a", &[], "");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, ""),
        "an empty 200, as APIM"
    );
    assert_eq!(r.header("X-Audit"), Some("audited 200"));
    assert!(backend.requests().is_empty());
    drop(gw);

    // a cache hit: outbound goes on after cache-store, and may wait there
    let cached = format!(
        r#"<policies><inbound><cache-lookup vary-by-developer="false" vary-by-developer-groups="false" /></inbound><backend><forward-request /></backend><outbound><cache-store duration="60" />{outbound}</outbound><on-error>
  <set-header name="X-Reason" exists-action="override"><value>@(context.LastError.Reason)</value></set-header></on-error></policies>"#
    );
    let gw = Gateway::start(&document(&backend.url(""), &cached), &[]);
    for round in 0..3 {
        let r = send(&gw, "GET", "/s/b", &[], "");
        assert_eq!(r.status, 200, "round {round}: {:?}", r.header("X-Reason"));
        assert_eq!(r.text(), "fresh /b");
        assert_eq!(
            r.header("X-Audit"),
            Some("audited 200 fresh /b"),
            "round {round}"
        );
    }
    assert_eq!(backend.requests().len(), 1, "the later calls were hits");
    assert_eq!(audit.requests().len(), 4);
}

#[test]
fn retry_around_policies_runs_them_again_and_waits_without_holding_the_loop() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // a token service that fails twice for each caller, then answers
    let asked = Arc::new(AtomicUsize::new(0));
    let n = Arc::clone(&asked);
    let per_target = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let tokens = Origin::start(move |req, s| {
        n.fetch_add(1, Ordering::SeqCst);
        let k = {
            let mut seen = per_target.lock().unwrap();
            let k = seen.entry(req.target.clone()).or_insert(0);
            *k += 1;
            *k
        };
        if k % 3 == 0 {
            respond(s, 200, &[], format!("token-{k}").as_bytes());
        } else {
            respond(s, 503, &[], b"busy");
        }
        true
    });
    let backend = Origin::echo();
    let policy = format!(
        r#"<policies><inbound>
  <retry condition="@(((IResponse)context.Variables[&quot;t&quot;]).StatusCode != 200)" count="3" interval="1" first-fast-retry="true">
    <send-request mode="new" response-variable-name="t"><set-url>@("{}" + context.Request.Url.Path)</set-url></send-request>
    <set-variable name="tries" value="@(context.Variables.GetValueOrDefault&lt;int&gt;(&quot;tries&quot;, 0) + 1)" />
  </retry>
  <set-header name="Authorization" exists-action="override"><value>@("Bearer " + ((IResponse)context.Variables["t"]).Body.As&lt;string&gt;())</value></set-header>
  <set-header name="X-Tries" exists-action="override"><value>@(((int)context.Variables["tries"]).ToString())</value></set-header>
</inbound><backend><forward-request /></backend><outbound>
  <retry condition="@((int)context.Variables[&quot;n&quot;] &lt; 3)" count="5" interval="0">
    <set-variable name="n" value="@(context.Variables.GetValueOrDefault&lt;int&gt;(&quot;n&quot;, 0) + 1)" />
  </retry>
  <set-header name="X-Outbound-Rounds" exists-action="override"><value>@(context.Variables["n"].ToString())</value></set-header>
</outbound><on-error /></policies>"#,
        tokens.url("/token")
    );
    let gw = Gateway::start(&document(&backend.url(""), &policy), &[]);
    // while the call waits between attempts, another call is served
    let waiting = {
        let addr = gw.addr;
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let r = request(
                addr,
                "GET /s/slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            );
            (r, started.elapsed())
        })
    };
    assert!(eventually(Duration::from_secs(5), || asked
        .load(Ordering::SeqCst)
        >= 2));
    let other = send(&gw, "GET", "/s/other", &[], "");
    let (r, took) = waiting.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = &backend.requests();
    let slow = seen.iter().find(|s| s.target == "/slow").unwrap();
    assert_eq!(slow.header("Authorization"), Some("Bearer token-3"));
    assert_eq!(slow.header("X-Tries"), Some("3"));
    assert_eq!(r.header("X-Outbound-Rounds"), Some("3"));
    // first-fast-retry: attempt 2 at once, attempt 3 after the interval (a second)
    assert!(took >= Duration::from_millis(1000), "{took:?}");
    assert_eq!(other.status, 200);
    let other_seen = seen.iter().find(|s| s.target == "/other").unwrap();
    assert_eq!(other_seen.header("Authorization"), Some("Bearer token-3"));
}

#[test]
fn on_error_after_an_unreachable_backend_waits_for_a_fallback() {
    let fallback = fallback_service();
    let policy = format!(
        r#"<policies><inbound /><backend><forward-request timeout="5" /></backend><outbound /><on-error>
  <send-request mode="new" response-variable-name="f"><set-url>@("{}" + context.Request.Url.Path)</set-url></send-request>
  <cache-lookup-value key="x" default-value="miss" variable-name="v" />
  <return-response response-variable-name="f">
    <set-header name="X-Reason" exists-action="override"><value>@(context.LastError.Source + "|" + context.LastError.Reason)</value></set-header>
  </return-response>
</on-error></policies>"#,
        fallback.url("")
    );
    let closed = closed_port();
    let dead = format!("http://127.0.0.1:{}", closed.port);
    let gw = Gateway::start(&document(&dead, &policy), &[]);
    for _ in 0..2 {
        let r = send(&gw, "GET", "/s/orders", &[], "");
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "fallback for /s/orders")
        );
        assert_eq!(
            r.header("X-Reason"),
            Some("forward-request|BackendConnectionFailure")
        );
    }
    // a fallback that fails too: on-error's own failure answers (no second pass)
    let gw2 = Gateway::start(
        &document(
            &dead,
            &policy.replace(
                &fallback.url(""),
                &format!("http://127.0.0.1:{}", closed.port),
            ),
        ),
        &[],
    );
    let r = send(&gw2, "GET", "/s/orders", &[], "");
    assert_eq!(r.status, 500, "{}", r.text());
}
