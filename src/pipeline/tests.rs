//! The pipeline's phases without a socket, one test per policy family: a real config
//! compiled by `config::compile`, a request as the connection would see it, and the
//! decisions and edits each phase returns.

use super::*;
use crate::config::{compile::compile, ConfigSource, Runtime};
use crate::http::Failure;
use crate::policy::call::{Flow, State, Target};
use crate::policy::limits::Counters;
use crate::policy::request::{HeaderSrc, RequestView, ResponseView};

const NOW_MS: u64 = 1_800_000_000_000;

/// JSON string literal of `text`.
fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A runtime with API `t` (operation `get-item`, GET /items/{id}, with a JSON example)
/// whose API-scope document is `<policies>` around these sections.
fn runtime(inbound: &str, backend: &str, outbound: &str, on_error: &str) -> Runtime {
    let policies = format!(
        "<policies><inbound>{inbound}</inbound><backend>{backend}</backend><outbound>{outbound}</outbound><on-error>{on_error}</on-error></policies>"
    );
    let doc = format!(
        r#"{{"schemaVersion": 1, "version": "t",
            "backends": [{{"id": "b1", "url": "http://127.0.0.1:7/base"}}],
            "apis": [{{"id": "t", "path": "t", "serviceUrl": "http://127.0.0.1:9",
              "protocols": ["http"], "subscriptionRequired": false, "policies": {},
              "operations": [{{"id": "get-item", "method": "GET", "urlTemplate": "/items/{{id}}",
                "responses": [{{"statusCode": 200, "representations": [
                  {{"contentType": "application/json", "example": "{{\"id\": 1}}"}}]}}]}}]}}]}}"#,
        quoted(&policies)
    );
    match compile(&doc, ConfigSource::Local) {
        Ok(rt) => rt,
        Err(e) => panic!("{policies}: {e:?}"),
    }
}

/// Inbound only (the backend section forwards by default through `<base />`).
fn inbound_only(inbound: &str) -> Runtime {
    runtime(inbound, "<base />", "", "")
}

struct Client {
    headers: Vec<(String, String)>,
    query: Option<&'static str>,
    method: &'static str,
    ip: &'static str,
}

impl Client {
    fn new() -> Client {
        Client {
            headers: Vec::new(),
            query: None,
            method: "GET",
            ip: "10.1.2.3",
        }
    }
    fn header(mut self, name: &str, value: &str) -> Client {
        self.headers.push((name.into(), value.into()));
        self
    }
    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: self.method,
            path: "/t/items/42",
            rest: "/items/42",
            host: "gw.test",
            query: self.query,
            headers: HeaderSrc::Owned(&self.headers),
            ip: self.ip,
            https: false,
            certificate: None,
        }
    }
}

const IDS: Ids = Ids {
    api: 0,
    op: 0,
    product: None,
    subscription: None,
};

fn io<'a>(rt: &'a Runtime, counters: &'a mut Counters) -> Io<'a> {
    Io {
        counters,
        now_ms: NOW_MS,
        runtime: rt,
        gateway_id: "gw-1",
    }
}

/// Starts a call and runs inbound.
fn inbound(rt: &Runtime, counters: &mut Counters, client: &Client) -> (Inbound, Pipeline) {
    let plan = rt.apis[0].operations[0].plan(None).expect("a plan");
    let req = client.view();
    let mut p = Pipeline::start(plan, IDS, "", "req-1".into(), &req);
    let decided = p.inbound(&req, &mut io(rt, counters));
    (decided.expect("ids are current"), p)
}

fn header<'s>(st: &'s State, name: &str) -> Option<Vec<&'s str>> {
    st.req
        .headers
        .get(name)
        .map(|v| v.iter().flatten().map(String::as_str).collect())
}

fn response_header<'s>(st: &'s State, name: &str) -> Option<Vec<&'s str>> {
    st.resp
        .headers
        .get(name)
        .map(|v| v.iter().flatten().map(String::as_str).collect())
}

fn body(st: &State) -> &str {
    std::str::from_utf8(st.resp.body.as_deref().unwrap_or(b"")).unwrap_or("<not utf-8>")
}

fn reason(st: &State) -> &str {
    st.last_error.as_ref().map_or("", |e| e.reason.as_str())
}

/// Headers, query, path, method, backend: what a forwarded request carries.
#[test]
fn transformation_policies_edit_the_forwarded_request() {
    let rt = inbound_only(
        r#"<set-header name="x-over" exists-action="override"><value>new</value></set-header>
           <set-header name="x-keep" exists-action="skip"><value>ignored</value></set-header>
           <set-header name="x-add" exists-action="append"><value>b</value></set-header>
           <set-header name="x-gone" exists-action="delete" />
           <set-header name="x-from" exists-action="override"><value>@(context.Request.Headers.GetValueOrDefault("x-keep","") + "/" + context.Deployment.GatewayId)</value></set-header>
           <set-query-parameter name="page" exists-action="override"><value>2</value></set-query-parameter>
           <rewrite-uri template="/v2/things/{id}?view=full" />
           <set-method>POST</set-method>
           <set-backend-service backend-id="b1" />
           <authentication-basic username="u" password="p" />"#,
    );
    let mut counters = Counters::new(1 << 20);
    let mut client = Client::new()
        .header("x-over", "old")
        .header("x-keep", "mine")
        .header("x-add", "a")
        .header("x-gone", "bye");
    client.query = Some("page=1&q=z");
    let (decided, p) = inbound(&rt, &mut counters, &client);
    assert_eq!(decided, Inbound::Forward);
    let st = &p.st;
    assert_eq!(header(st, "x-over"), Some(vec!["new"]));
    assert_eq!(header(st, "x-keep"), Some(vec!["mine"]));
    assert_eq!(header(st, "x-add"), Some(vec!["a", "b"]));
    assert_eq!(header(st, "x-gone"), Some(vec![]));
    assert_eq!(header(st, "x-from"), Some(vec!["mine/gw-1"]));
    assert_eq!(header(st, "authorization"), Some(vec!["Basic dTpw"]));
    assert_eq!(st.req.rest.as_deref(), Some("/v2/things/42"));
    let query: Vec<(&str, &str)> = st
        .req
        .query
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // the template's own, then the unmatched ones as set-query-parameter left them (an
    // overridden parameter keeps its place: before, it moved to the end)
    assert_eq!(query, [("view", "full"), ("page", "2"), ("q", "z")]);
    assert_eq!(st.req.method.as_deref(), Some("POST"));
    assert!(matches!(st.req.target, Some(Target::Backend(0))));
}

/// set-body and find-and-replace work on the whole body; the plan says so.
#[test]
fn body_policies_replace_the_buffered_body() {
    let rt = inbound_only(
        r#"<set-body>@("{\"user\": \"" + context.Request.Headers.GetValueOrDefault("x-user","") + "\"}")</set-body>
           <find-and-replace from="user" to="name" />"#,
    );
    let plan = rt.apis[0].operations[0].plan(None).expect("a plan");
    assert!(plan.inbound_needs_body && !plan.outbound_needs_body);
    let mut counters = Counters::new(1 << 20);
    let (decided, p) = inbound(&rt, &mut counters, &Client::new().header("x-user", "ann"));
    assert_eq!(decided, Inbound::Forward);
    assert_eq!(p.st.req.body.as_deref(), Some(&b"{\"name\": \"ann\"}"[..]));
}

/// Access policies refuse with APIM's statuses and LastError reasons.
#[test]
fn access_policies_refuse_with_their_reasons() {
    let cases: [(&str, Client, u16, &str); 4] = [
        (
            r#"<check-header name="x-api-version" failed-check-httpcode="400" failed-check-error-message="Version required" ignore-case="true"><value>v1</value></check-header>"#,
            Client::new(),
            400,
            "HeaderNotFound",
        ),
        (
            r#"<check-header name="x-api-version" failed-check-httpcode="400" failed-check-error-message="Bad version"><value>v1</value></check-header>"#,
            Client::new().header("x-api-version", "v2"),
            400,
            "HeaderValueNotAllowed",
        ),
        (
            r#"<ip-filter action="forbid"><address-range from="10.0.0.0" to="10.255.255.255" /></ip-filter>"#,
            Client::new(),
            403,
            "CallerIpNotAllowed",
        ),
        (
            r#"<validate-jwt header-name="Authorization"><issuer-signing-keys><key>c2VjcmV0LXNpZ25pbmcta2V5LTMyLWJ5dGVzLWxvbmchIQ==</key></issuer-signing-keys></validate-jwt>"#,
            Client::new(),
            401,
            "TokenNotPresent",
        ),
    ];
    for (policy, client, status, why) in cases {
        let rt = inbound_only(policy);
        let mut counters = Counters::new(1 << 20);
        let (decided, p) = inbound(&rt, &mut counters, &client);
        assert_eq!(decided, Inbound::Answer, "{policy}");
        assert_eq!(p.st.resp.status, Some(status), "{policy}");
        assert_eq!(reason(&p.st), why, "{policy}");
    }
    // allowed: the same policies let a matching call through
    let rt = inbound_only(
        r#"<check-header name="x-api-version" failed-check-httpcode="400" failed-check-error-message="m" ignore-case="true"><value>v1</value></check-header>
           <ip-filter action="allow"><address>10.1.2.3</address></ip-filter>"#,
    );
    let mut counters = Counters::new(1 << 20);
    let client = Client::new().header("x-api-version", "V1");
    assert_eq!(inbound(&rt, &mut counters, &client).0, Inbound::Forward);
}

/// A CORS preflight is answered by the gateway; a simple call gets the headers added.
#[test]
fn cors_answers_preflight_and_marks_allowed_calls() {
    let rt = inbound_only(
        r#"<cors><allowed-origins><origin>https://app.test</origin></allowed-origins><allowed-methods preflight-result-max-age="300"><method>PUT</method></allowed-methods><allowed-headers><header>x-a</header></allowed-headers></cors>"#,
    );
    let mut counters = Counters::new(1 << 20);
    let mut preflight = Client::new()
        .header("Origin", "https://app.test")
        .header("Access-Control-Request-Method", "PUT")
        .header("Access-Control-Request-Headers", "x-a");
    preflight.method = "OPTIONS";
    let (decided, p) = inbound(&rt, &mut counters, &preflight);
    assert_eq!(decided, Inbound::Answer);
    assert_eq!(p.st.resp.status, Some(200));
    let h = |n| response_header(&p.st, n);
    assert_eq!(
        h("Access-Control-Allow-Origin"),
        Some(vec!["https://app.test"])
    );
    assert_eq!(h("Access-Control-Allow-Methods"), Some(vec!["PUT"]));
    assert_eq!(h("Access-Control-Allow-Headers"), Some(vec!["x-a"]));
    assert_eq!(h("Access-Control-Max-Age"), Some(vec!["300"]));
    let simple = Client::new().header("Origin", "https://app.test");
    let (decided, p) = inbound(&rt, &mut counters, &simple);
    assert_eq!(decided, Inbound::Forward);
    assert_eq!(
        response_header(&p.st, "Access-Control-Allow-Origin"),
        Some(vec!["https://app.test"])
    );
    let stranger = Client::new().header("Origin", "https://evil.test");
    let (decided, p) = inbound(&rt, &mut counters, &stranger);
    assert_eq!(decided, Inbound::Forward);
    assert_eq!(response_header(&p.st, "Access-Control-Allow-Origin"), None);
}

/// rate-limit-by-key counts per key and answers 429 with Retry-After; a deferred
/// increment counts only when its condition holds for the response.
#[test]
fn rate_limits_count_per_key_and_defer_conditional_increments() {
    let rt = inbound_only(
        r#"<rate-limit-by-key calls="2" renewal-period="60" counter-key="@(context.Request.Headers.GetValueOrDefault(&quot;x-key&quot;,&quot;&quot;))" remaining-calls-header-name="x-left" />"#,
    );
    let mut counters = Counters::new(1 << 20);
    let a = Client::new().header("x-key", "a");
    for left in ["1", "0"] {
        let (decided, p) = inbound(&rt, &mut counters, &a);
        assert_eq!(decided, Inbound::Forward);
        assert_eq!(response_header(&p.st, "x-left"), Some(vec![left]));
    }
    let (decided, p) = inbound(&rt, &mut counters, &a);
    assert_eq!(decided, Inbound::Answer);
    assert_eq!(p.st.resp.status, Some(429));
    assert_eq!(response_header(&p.st, "Retry-After"), Some(vec!["60"]));
    assert_eq!(reason(&p.st), "RateLimitExceeded");
    // another key has its own window
    let b = Client::new().header("x-key", "b");
    assert_eq!(inbound(&rt, &mut counters, &b).0, Inbound::Forward);

    // counted only for responses that match the condition (here: 5xx)
    let rt = inbound_only(
        r#"<rate-limit-by-key calls="1" renewal-period="60" counter-key="k" increment-condition="@(context.Response.StatusCode >= 500)" />"#,
    );
    let mut counters = Counters::new(1 << 20);
    let respond = |status: u16, counters: &mut Counters| {
        let (decided, mut p) = inbound(&rt, counters, &Client::new());
        if decided == Inbound::Answer {
            return p.st.resp.status;
        }
        let resp = ResponseView {
            status,
            reason: "",
            headers: HeaderSrc::Empty,
        };
        let flow = p.on_response(&resp, &mut io(&rt, counters));
        assert_eq!(flow, Ok(Flow::Continue));
        p.finish(0, &mut io(&rt, counters));
        None
    };
    assert_eq!(respond(200, &mut counters), None, "a 200 is not counted");
    assert_eq!(respond(200, &mut counters), None);
    assert_eq!(
        respond(503, &mut counters),
        None,
        "counted: the limit is reached"
    );
    assert_eq!(respond(200, &mut counters), Some(429));
}

/// quota counts a call when it finishes; limit-concurrency holds a slot until then.
#[test]
fn quota_and_concurrency_count_finished_and_running_calls() {
    let rt = inbound_only(r#"<quota-by-key calls="1" renewal-period="3600" counter-key="k" />"#);
    let mut counters = Counters::new(1 << 20);
    let (decided, mut first) = inbound(&rt, &mut counters, &Client::new());
    assert_eq!(decided, Inbound::Forward);
    // not finished yet: not counted
    assert_eq!(
        inbound(&rt, &mut counters, &Client::new()).0,
        Inbound::Forward
    );
    first.finish(10, &mut io(&rt, &mut counters));
    let (decided, p) = inbound(&rt, &mut counters, &Client::new());
    assert_eq!(decided, Inbound::Answer);
    assert_eq!(p.st.resp.status, Some(403));
    assert_eq!(reason(&p.st), "QuotaExceeded");

    let rt = runtime(
        "",
        r#"<limit-concurrency key="k" max-count="1"><forward-request /></limit-concurrency>"#,
        "",
        "",
    );
    let mut counters = Counters::new(1 << 20);
    let (decided, mut running) = inbound(&rt, &mut counters, &Client::new());
    assert_eq!(decided, Inbound::Forward);
    let (decided, p) = inbound(&rt, &mut counters, &Client::new());
    assert_eq!(decided, Inbound::Answer);
    assert_eq!(p.st.resp.status, Some(429));
    running.finish(0, &mut io(&rt, &mut counters));
    assert_eq!(
        inbound(&rt, &mut counters, &Client::new()).0,
        Inbound::Forward
    );
}

/// choose, return-response, mock-response and a missing forward-request end inbound
/// as APIM does.
#[test]
fn flow_policies_branch_and_answer() {
    let rt = inbound_only(
        r#"<choose>
             <when condition="@(context.Request.Headers.GetValueOrDefault(&quot;x-mode&quot;,&quot;&quot;) == &quot;mock&quot;)"><mock-response status-code="200" content-type="application/json" /></when>
             <when condition="@(context.Request.Headers.GetValueOrDefault(&quot;x-mode&quot;,&quot;&quot;) == &quot;teapot&quot;)">
               <return-response><set-status code="418" reason="Teapot" /><set-header name="x-why" exists-action="override"><value>tea</value></set-header><set-body>short and stout</set-body></return-response>
             </when>
             <otherwise><set-variable name="mode" value="proxy" /></otherwise>
           </choose>"#,
    );
    let mut counters = Counters::new(1 << 20);
    let (decided, p) = inbound(&rt, &mut counters, &Client::new().header("x-mode", "mock"));
    assert_eq!(decided, Inbound::Answer);
    assert_eq!(p.st.resp.status, Some(200));
    assert_eq!(body(&p.st), "{\"id\": 1}");
    assert_eq!(
        response_header(&p.st, "Content-Type"),
        Some(vec!["application/json"])
    );
    let (decided, p) = inbound(
        &rt,
        &mut counters,
        &Client::new().header("x-mode", "teapot"),
    );
    assert_eq!(decided, Inbound::Answer);
    assert_eq!(p.st.resp.status, Some(418));
    assert_eq!(p.st.resp.reason.as_deref(), Some("Teapot"));
    assert_eq!(response_header(&p.st, "x-why"), Some(vec!["tea"]));
    assert_eq!(body(&p.st), "short and stout");
    let (decided, p) = inbound(&rt, &mut counters, &Client::new());
    assert_eq!(decided, Inbound::Forward);
    assert_eq!(p.st.vars.len(), 1);

    // a backend section without forward-request: an empty 200 through outbound
    let rt = runtime(
        "",
        "",
        r#"<set-header name="x-out" exists-action="override"><value>1</value></set-header>"#,
        "",
    );
    let (decided, p) = inbound(&rt, &mut counters, &Client::new());
    assert_eq!(decided, Inbound::Answer);
    assert_eq!((p.st.resp.status, body(&p.st)), (Some(200), ""));
    assert_eq!(response_header(&p.st, "x-out"), Some(vec!["1"]));
}

/// A failing expression is a 500 with ExpressionValueEvaluationFailure; on-error runs
/// with it and may change the answer.
#[test]
fn a_failure_runs_on_error_which_may_change_the_answer() {
    let rt = runtime(
        r#"<set-header name="x" exists-action="override"><value>@("abc".Substring(5))</value></set-header>"#,
        "<base />",
        "",
        r#"<set-status code="503" reason="Later" /><set-body>@(context.LastError.Reason + " in " + context.LastError.Section)</set-body>"#,
    );
    let mut counters = Counters::new(1 << 20);
    let (decided, p) = inbound(&rt, &mut counters, &Client::new());
    assert_eq!(decided, Inbound::Answer);
    assert_eq!(p.st.resp.status, Some(503));
    assert_eq!(body(&p.st), "ExpressionValueEvaluationFailure in inbound");

    // a backend failure: on-error sees it as forward-request's
    let rt = runtime(
        "",
        "<base />",
        "",
        r#"<set-body>@(context.LastError.Source + "/" + context.LastError.Reason)</set-body>"#,
    );
    let (decided, mut p) = inbound(&rt, &mut counters, &Client::new());
    assert_eq!(decided, Inbound::Forward);
    p.on_failure(Failure::BackendTimeout, &mut io(&rt, &mut counters));
    assert_eq!(p.st.resp.status, Some(504));
    assert_eq!(body(&p.st), "forward-request/Timeout");
}

/// Outbound edits the backend's response; retry's condition sees each attempt's
/// response.
#[test]
fn outbound_edits_the_response_and_retry_reads_each_attempt() {
    let rt = runtime(
        "",
        r#"<retry condition="@(context.Response.StatusCode == 503)" count="@(1 + 1)" interval="@(0)" first-fast-retry="@(true)"><forward-request timeout="@(3)" /></retry>"#,
        r#"<set-header name="x-status" exists-action="override"><value>@(context.Response.StatusCode.ToString())</value></set-header>"#,
        "",
    );
    let mut counters = Counters::new(1 << 20);
    let (decided, mut p) = inbound(&rt, &mut counters, &Client::new());
    assert_eq!(decided, Inbound::Forward);
    assert_eq!(
        p.retry(),
        Some(&crate::policy::RetryTerms {
            count: 2,
            first_fast_retry: true,
            ..Default::default()
        })
    );
    assert_eq!(p.forward_timeout(), Some(std::time::Duration::from_secs(3)));
    let resp = |status| ResponseView {
        status,
        reason: "",
        headers: HeaderSrc::Empty,
    };
    let io_now = io(&rt, &mut counters);
    assert!(p.wants_retry(&resp(503), &io_now));
    assert!(!p.wants_retry(&resp(200), &io_now));
    let flow = p.on_response(&resp(201), &mut io(&rt, &mut counters));
    assert_eq!(flow, Ok(Flow::Continue));
    assert_eq!(response_header(&p.st, "x-status"), Some(vec!["201"]));
}

/// An APIM document's expression forms through a compiled policy: a commented block,
/// an interpolated string, a verbatim string and `Equals`.
#[test]
fn expression_literal_forms_run_in_policies() {
    let rt = inbound_only(
        r#"<set-header name="x-route" exists-action="override"><value>@($"{context.Request.Method}:{context.Operation.Id}:{context.Request.Headers.GetValueOrDefault("x-tier", "none")}")</value></set-header>
           <set-header name="x-gold" exists-action="override"><value>@{
               // APIM documents carry comments
               var tier = context.Request.Headers.GetValueOrDefault("x-tier", ""); /* may be absent */
               return tier.Equals("GOLD", StringComparison.OrdinalIgnoreCase) ? @"yes\sir" : "no";
           }</value></set-header>"#,
    );
    let mut counters = Counters::new(1 << 20);
    let client = Client::new().header("x-tier", "gold");
    let (decided, p) = inbound(&rt, &mut counters, &client);
    assert_eq!(decided, Inbound::Forward);
    assert_eq!(header(&p.st, "x-route"), Some(vec!["GET:get-item:gold"]));
    assert_eq!(header(&p.st, "x-gold"), Some(vec![r"yes\sir"]));
}

/// `context.Request.OriginalUrl` (the URL as the client sent it) beside `Url` (with the
/// policies' query edits), and both as whole URLs with `ToString()`.
#[test]
fn original_url_and_url_as_text() {
    let rt = inbound_only(
        r#"<set-query-parameter name="page" exists-action="override"><value>2</value></set-query-parameter>
           <set-header name="x-url" exists-action="override"><value>@(context.Request.Url.ToString())</value></set-header>
           <set-header name="x-original" exists-action="override"><value>@(context.Request.OriginalUrl.ToString())</value></set-header>
           <set-header name="x-parts" exists-action="override"><value>@($"{context.Request.OriginalUrl.Scheme}|{context.Request.OriginalUrl.Host}|{context.Request.OriginalUrl.Path}|{context.Request.OriginalUrl.QueryString}|{context.Request.OriginalUrl.Query.GetValueOrDefault("page", "-")}|{context.Request.Url.Query.GetValueOrDefault("page", "-")}")</value></set-header>"#,
    );
    let mut counters = Counters::new(1 << 20);
    let mut client = Client::new();
    client.query = Some("page=1&q=z");
    let (decided, p) = inbound(&rt, &mut counters, &client);
    assert_eq!(decided, Inbound::Forward);
    assert_eq!(
        header(&p.st, "x-url"),
        Some(vec!["http://gw.test/t/items/42?page=2&q=z"])
    );
    assert_eq!(
        header(&p.st, "x-original"),
        Some(vec!["http://gw.test/t/items/42?page=1&q=z"])
    );
    assert_eq!(
        header(&p.st, "x-parts"),
        Some(vec!["http|gw.test|/t/items/42|page=1&q=z|1|2"])
    );
}

/// `context.Response` as a value: null before the backend answered (Microsoft's
/// "Back-end API redundancy" sample tests it inside retry), the answer after.
#[test]
fn context_response_is_null_until_there_is_one() {
    let rt = runtime(
        r#"<set-header name="x-before" exists-action="override"><value>@(context.Response == null ? "none" : "some")</value></set-header>"#,
        "<forward-request />",
        r#"<set-header name="x-after" exists-action="override"><value>@(context.Response != null &amp;&amp; context.Response.StatusCode == 404 ? "missing" : "other")</value></set-header>"#,
        "",
    );
    let mut counters = Counters::new(1 << 20);
    let (decided, mut p) = inbound(&rt, &mut counters, &Client::new());
    assert_eq!(decided, Inbound::Forward);
    assert_eq!(header(&p.st, "x-before"), Some(vec!["none"]));
    let resp = ResponseView {
        status: 404,
        reason: "Not Found",
        headers: HeaderSrc::Empty,
    };
    assert_eq!(
        p.on_response(&resp, &mut io(&rt, &mut counters)),
        Ok(Flow::Continue)
    );
    assert_eq!(response_header(&p.st, "x-after"), Some(vec!["missing"]));
}

/// A rewrite-uri template without a leading '/' (Microsoft's Data Factory sample) is a
/// path under the backend's base URL; an absolute URL is refused at load.
#[test]
fn relative_rewrite_templates_are_paths() {
    let rt = inbound_only(r#"<rewrite-uri template="v2/things/{id}?api-version=1" />"#);
    let mut counters = Counters::new(1 << 20);
    let (decided, p) = inbound(&rt, &mut counters, &Client::new());
    assert_eq!(decided, Inbound::Forward);
    assert_eq!(p.st.req.rest.as_deref(), Some("/v2/things/42"));
    let policies = r#"<policies><inbound><rewrite-uri template="http://elsewhere/x" /></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"#;
    let doc = format!(
        r#"{{"schemaVersion": 1, "apis": [{{"id": "t", "path": "t", "serviceUrl": "http://127.0.0.1:9",
            "subscriptionRequired": false, "policies": {},
            "operations": [{{"id": "o", "method": "GET", "urlTemplate": "/x"}}]}}]}}"#,
        quoted(policies)
    );
    let errors = compile(&doc, ConfigSource::Local).err().expect("refused");
    assert!(
        errors[0].to_string().contains(
            "<rewrite-uri>: template is a path and query; set-backend-service changes the host"
        ),
        "{}",
        errors[0]
    );
}
