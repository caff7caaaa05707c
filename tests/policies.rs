//! Products, subscriptions and the policy pipeline through the real binary: keys and
//! scopes, `<base />` placement, on-error, rawxml expressions and each policy, against
//! real origins on 127.0.0.1.

use crate::common::*;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// `<policies>` with the given inbound / backend / outbound / on-error bodies.
fn policies(inbound: &str, outbound: &str, on_error: &str) -> String {
    format!(
        "<policies><inbound>{inbound}</inbound><backend><base /></backend><outbound>{outbound}</outbound><on-error>{on_error}</on-error></policies>"
    )
}

/// One API `api` at path `a` → `origin`, operations get-item (GET /items/{id}) and any.
fn api(
    origin: &str,
    sub_required: bool,
    api_policy: Option<&str>,
    op_policy: Option<&str>,
) -> String {
    format!(
        r#"{{"id": "api1", "name": "Api One", "path": "a", "serviceUrl": "{origin}", "protocols": ["http"],
            "subscriptionRequired": {sub_required}{}
            "operations": [
              {{"id": "get-item", "method": "GET", "urlTemplate": "/items/{{id}}"{}
                "responses": [{{"statusCode": 200, "representations": [{{"contentType": "application/json", "example": "{{\"id\": 1}}"}}]}}]}},
              {{"id": "any", "method": "*", "urlTemplate": "/*"}}]}}"#,
        api_policy.map_or(",".to_string(), |p| format!(", \"policies\": {},", js(p))),
        op_policy.map_or(",".to_string(), |p| format!(", \"policies\": {},", js(p))),
    )
}

fn config(apis: &str, rest: &str) -> String {
    format!(r#"{{"schemaVersion": 1, "version": "p1", "apis": [{apis}]{rest}}}"#)
}

fn values(seen: &Seen, name: &str) -> Vec<String> {
    seen.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .collect()
}

const KEYS: &str = r#", "products": [
    {"id": "gold", "name": "Gold", "apis": ["api1"], "state": "published",
     "policies": "<policies><inbound><base /><set-header name=\"X-Product\" exists-action=\"override\"><value>@(context.Product.Id)</value></set-header></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"},
    {"id": "hidden", "apis": ["api1"], "state": "notPublished"}],
  "subscriptions": [
    {"id": "s-all", "name": "All", "scope": "/apis", "state": "active", "primaryKey": "all-primary-1", "secondaryKey": "all-secondary-1"},
    {"id": "s-gold", "scope": "/products/gold", "primaryKey": "gold-primary-1"},
    {"id": "s-hidden", "scope": "/products/hidden", "primaryKey": "hidden-primary-1"},
    {"id": "s-other", "scope": "/apis/api2", "primaryKey": "other-primary-1"},
    {"id": "s-off", "scope": "/apis", "state": "suspended", "primaryKey": "suspended-key-1"}]"#;

fn keyed_config(origin: &Origin) -> String {
    let api2 = r#"{"id": "api2", "path": "b", "serviceUrl": "http://127.0.0.1:9", "operations": [{"id": "x", "method": "*", "urlTemplate": "/*"}]}"#;
    config(
        &format!("{},{api2}", api(&origin.url(""), true, None, None)),
        KEYS,
    )
}

#[test]
fn subscription_keys_follow_apim_rules() {
    let origin = Origin::echo();
    let gw = Gateway::start(&keyed_config(&origin), &[]);
    let missing = get(gw.addr, "/a/items/1");
    assert_eq!(missing.status, 401);
    assert_eq!(missing.text(), error_body(401, "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API."));
    let invalid = error_body(401, "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription.");
    for key in [
        "nope-nope-nope",
        "suspended-key-1",
        "other-primary-1",
        "hidden-primary-1",
    ] {
        let r = send(
            &gw,
            "GET",
            "/a/items/1",
            &[("Ocp-Apim-Subscription-Key", key)],
            "",
        );
        assert_eq!((r.status, r.text()), (401, invalid.clone()), "{key}");
    }
    // both keys, header or query
    for (h, q) in [
        (Some("all-primary-1"), None),
        (Some("all-secondary-1"), None),
        (None, Some("all-primary-1")),
    ] {
        let path = match q {
            Some(k) => format!("/a/items/1?subscription-key={k}"),
            None => "/a/items/1".into(),
        };
        let hs: Vec<(&str, &str)> = h
            .map(|k| ("Ocp-Apim-Subscription-Key", k))
            .into_iter()
            .collect();
        let r = send(&gw, "GET", &path, &hs, "");
        assert_eq!(r.status, 200, "{h:?} {q:?}");
    }
    // header first: a valid header wins over a bad query key, a bad header is not rescued
    let r = send(
        &gw,
        "GET",
        "/a/items/1?subscription-key=bad-bad-bad",
        &[("Ocp-Apim-Subscription-Key", "all-primary-1")],
        "",
    );
    assert_eq!(r.status, 200);
    let r = send(
        &gw,
        "GET",
        "/a/items/1?subscription-key=all-primary-1",
        &[("Ocp-Apim-Subscription-Key", "bad-bad-bad")],
        "",
    );
    assert_eq!(r.status, 401);
    // product scope: its policy runs only for calls with that product's key
    let before = origin.requests().len();
    assert_eq!(
        send(
            &gw,
            "GET",
            "/a/items/1",
            &[("Ocp-Apim-Subscription-Key", "gold-primary-1")],
            ""
        )
        .status,
        200
    );
    assert_eq!(
        send(
            &gw,
            "GET",
            "/a/items/1",
            &[("Ocp-Apim-Subscription-Key", "all-primary-1")],
            ""
        )
        .status,
        200
    );
    let seen = origin.requests();
    assert_eq!(seen[before].header("X-Product"), Some("gold"));
    assert_eq!(seen[before + 1].header("X-Product"), None);
    // the key never reaches the log
    assert!(!gw
        .log_lines()
        .iter()
        .any(|l| l.contains("all-primary-1") || l.contains("gold-primary-1")));
    gw.wait_for_log("subscriptionId=s-gold");
    gw.wait_for_log("subscriptionId=s-all");
}

#[test]
fn base_placement_before_after_and_absent() {
    let origin = Origin::echo();
    let add = |v: &str| {
        format!(
            r#"<set-header name="X-Order" exists-action="append"><value>{v}</value></set-header>"#
        )
    };
    let global_doc = format!("<policies><inbound>{}</inbound><backend><forward-request /></backend><outbound /><on-error /></policies>", add("global"));
    let global = format!(r#", "policies": {}"#, js(&global_doc));
    let cases = [
        (
            "<base />".to_string() + &add("api"),
            "<base />".to_string() + &add("op"),
            vec!["global", "api", "op"],
        ),
        (
            add("api") + "<base />",
            add("op") + "<base />",
            vec!["op", "api", "global"],
        ),
        (
            add("api"),
            "<base />".to_string() + &add("op"),
            vec!["api", "op"],
        ),
        ("<base />".to_string() + &add("api"), add("op"), vec!["op"]),
    ];
    for (api_in, op_in, want) in cases {
        let a = policies(&api_in, "", "");
        let o = policies(&op_in, "", "");
        let gw = Gateway::start(
            &config(&api(&origin.url(""), false, Some(&a), Some(&o)), &global),
            &[],
        );
        assert_eq!(get(gw.addr, "/a/items/1").status, 200);
        let seen = origin.requests();
        assert_eq!(
            values(seen.last().unwrap(), "X-Order"),
            want,
            "{api_in} | {op_in}"
        );
    }
}

#[test]
fn header_query_uri_method_and_backend_policies() {
    let origin = Origin::echo();
    let other = Origin::text("other");
    let inbound = format!(
        r#"<set-header name="X-New" exists-action="override"><value>one</value><value>two</value></set-header>
        <set-header name="X-Keep" exists-action="skip"><value>replaced</value></set-header>
        <set-header name="X-Add" exists-action="append"><value>b</value></set-header>
        <set-header name="X-Drop" exists-action="delete" />
        <set-query-parameter name="q" exists-action="override"><value>new value</value></set-query-parameter>
        <set-query-parameter name="gone" exists-action="delete" />
        <rewrite-uri template="/v2/things/{{id}}?format=json" copy-unmatched-params="true" />
        <set-method>PUT</set-method>
        <authentication-basic username="u" password="p" />
        <choose><when condition="@(context.Request.Headers.GetValueOrDefault("X-Route","") == "other")"><set-backend-service base-url="{}" /></when></choose>"#,
        other.url("")
    );
    let outbound = r#"<set-header name="X-Resp" exists-action="override"><value>@(context.Response.StatusCode.ToString())</value></set-header><set-header name="Content-Type" exists-action="delete" /><set-header name="X-Id" exists-action="override"><value>@(context.RequestId)</value></set-header>"#;
    let gw = Gateway::start(
        &config(
            &api(
                &origin.url("/base"),
                false,
                None,
                Some(&policies(&inbound, outbound, "")),
            ),
            "",
        ),
        &[],
    );
    let r = send(
        &gw,
        "GET",
        "/a/items/42?q=old&gone=1&keep=yes",
        &[("X-Keep", "mine"), ("X-Add", "a"), ("X-Drop", "x")],
        "",
    );
    assert_eq!(r.status, 200);
    // the overridden parameter keeps its place among the copied ones
    assert_eq!(
        r.text(),
        "PUT /base/v2/things/42?format=json&q=new%20value&keep=yes\n"
    );
    assert_eq!(r.header("X-Resp"), Some("200"));
    assert_eq!(r.header("Content-Type"), None);
    // context.RequestId is the id of the request record
    gw.wait_for_log(&format!("requestId={}", r.header("X-Id").unwrap()));
    let seen = origin.requests();
    let s = seen.last().unwrap();
    assert_eq!(values(s, "X-New"), ["one", "two"]);
    assert_eq!(values(s, "X-Keep"), ["mine"]);
    assert_eq!(values(s, "X-Add"), ["a", "b"]);
    assert!(values(s, "X-Drop").is_empty());
    assert_eq!(s.header("Authorization"), Some("Basic dTpw"));
    let r = send(&gw, "GET", "/a/items/42", &[("X-Route", "other")], "");
    assert_eq!(r.text(), "other");
}

#[test]
fn bodies_status_variables_and_rawxml_expressions() {
    let origin = Origin::echo();
    // rawxml: quotes, <, > and && inside expressions, unescaped
    let inbound = r#"<set-variable name="tier" value="@(context.Request.Headers.GetValueOrDefault("X-Tier","none").ToLower())" />
        <set-header name="X-Check" exists-action="override"><value>@(context.Request.Method == "POST" && 1 < 2 ? "<yes>" : "no")</value></set-header>
        <set-body>@{ var t = context.Variables.GetValueOrDefault<string>("tier", ""); return "tier=" + t + ";id=" + context.Request.MatchedParameters.GetValueOrDefault("id", ""); }</set-body>"#;
    let outbound = r#"<find-and-replace from="tier" to="level" /><set-status code="201" reason="Made" /><set-header name="X-Var" exists-action="override"><value>@((string)context.Variables["tier"])</value></set-header>"#;
    let o = policies(inbound, outbound, "");
    let doc = config(
        &api(&origin.url(""), false, None, None).replace(
            r#""urlTemplate": "/*"}"#,
            &format!(r#""urlTemplate": "/*", "policies": {}}}"#, js(&o)),
        ),
        "",
    );
    let gw = Gateway::start(&doc, &[]);
    let r = send(
        &gw,
        "POST",
        "/a/x/7",
        &[("X-Tier", "GOLD")],
        "original body",
    );
    assert_eq!(r.status, 201);
    assert!(r.head.starts_with("HTTP/1.1 201 Made\r\n"), "{}", r.head);
    assert_eq!(r.text(), "POST /x/7\nlevel=gold;id=");
    assert_eq!(r.header("X-Var"), Some("gold"));
    let seen = origin.requests();
    assert_eq!(seen.last().unwrap().header("X-Check"), Some("<yes>"));
    assert_eq!(seen.last().unwrap().body, b"tier=gold;id=");
}

#[test]
fn return_mock_and_no_backend_answers() {
    let inbound = r#"<choose>
        <when condition="@(context.Request.Headers.GetValueOrDefault("X-Mode","") == "return")">
          <return-response><set-status code="418" reason="Teapot" /><set-header name="X-R" exists-action="override"><value>r</value></set-header><set-header name="X-Id" exists-action="override"><value>@(context.RequestId)</value></set-header><set-body>@("short " + context.Operation.Id)</set-body></return-response>
        </when>
        <otherwise><mock-response status-code="200" content-type="application/json" /></otherwise></choose>"#;
    // the backend is never called: a closed port
    let gw = Gateway::start(
        &config(
            &api(
                "http://127.0.0.1:9",
                false,
                None,
                Some(&policies(inbound, "", "")),
            ),
            "",
        ),
        &[],
    );
    let r = send(&gw, "GET", "/a/items/1", &[("X-Mode", "return")], "");
    assert_eq!(
        (r.status, r.header("X-R"), r.text().as_str()),
        (418, Some("r"), "short get-item")
    );
    assert!(r.head.starts_with("HTTP/1.1 418 Teapot\r\n"));
    gw.wait_for_log(&format!("requestId={}", r.header("X-Id").unwrap()));
    let r = get(gw.addr, "/a/items/1");
    assert_eq!(
        (r.status, r.header("Content-Type"), r.text().as_str()),
        (200, Some("application/json"), "{\"id\": 1}")
    );
    // keep-alive: two mocked answers on one connection
    let s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    (&s).write_all(
        b"GET /a/items/1 HTTP/1.1\r\nHost: h\r\n\r\nGET /a/items/2 HTTP/1.1\r\nHost: h\r\n\r\n",
    )
    .unwrap();
    let mut rd = BufReader::new(s);
    assert_eq!(read_response(&mut rd, false).unwrap().text(), "{\"id\": 1}");
    assert_eq!(read_response(&mut rd, false).unwrap().text(), "{\"id\": 1}");
}

#[test]
fn check_header_ip_filter_and_on_error() {
    let origin = Origin::echo();
    let inbound = r#"<check-header name="X-Tenant" failed-check-httpcode="403" failed-check-error-message="Tenant missing" ignore-case="true"><value>acme</value></check-header>
        <ip-filter action="allow"><address-range from="127.0.0.0" to="127.255.255.255" /></ip-filter>"#;
    let on_error = r#"<set-header name="X-Error" exists-action="override"><value>@(context.LastError.Source + "/" + context.LastError.Reason + "/" + context.LastError.Section + "/" + context.LastError.Scope)</value></set-header>"#;
    let gw = Gateway::start(
        &config(
            &api(
                &origin.url(""),
                false,
                None,
                Some(&policies(inbound, "", on_error)),
            ),
            "",
        ),
        &[],
    );
    let r = get(gw.addr, "/a/items/1");
    assert_eq!(
        (r.status, r.text()),
        (403, error_body(403, "Tenant missing"))
    );
    assert_eq!(
        r.header("X-Error"),
        Some("check-header/HeaderNotFound/inbound/operation")
    );
    let r = send(&gw, "GET", "/a/items/1", &[("X-Tenant", "evil")], "");
    assert_eq!(
        r.header("X-Error"),
        Some("check-header/HeaderValueNotAllowed/inbound/operation")
    );
    assert_eq!(
        send(&gw, "GET", "/a/items/1", &[("X-Tenant", "ACME")], "").status,
        200
    );

    // forbid our own address
    let forbid = r#"<ip-filter action="forbid"><address>127.0.0.1</address></ip-filter>"#;
    let gw = Gateway::start(
        &config(
            &api(
                &origin.url(""),
                false,
                None,
                Some(&policies(forbid, "", on_error)),
            ),
            "",
        ),
        &[],
    );
    let r = get(gw.addr, "/a/items/1");
    assert_eq!(r.status, 403);
    assert_eq!(
        r.header("X-Error"),
        Some("ip-filter/CallerIpNotAllowed/inbound/operation")
    );

    // a failing backend goes through on-error too
    let on_error = r#"<return-response><set-status code="503" /><set-body>@(context.LastError.Source + ":" + context.LastError.Reason)</set-body></return-response>"#;
    let gw = Gateway::start(
        &config(
            &api(
                "http://127.0.0.1:9",
                false,
                None,
                Some(&policies("", "", on_error)),
            ),
            "",
        ),
        &[],
    );
    let r = get(gw.addr, "/a/items/1");
    assert_eq!(
        (r.status, r.text().as_str()),
        (503, "forward-request:BackendConnectionFailure")
    );
}

#[test]
fn cors_preflight_and_actual_requests() {
    let origin = Origin::echo();
    let cors = r#"<cors allow-credentials="true"><allowed-origins><origin>https://app.example</origin></allowed-origins>
        <allowed-methods preflight-result-max-age="300"><method>GET</method><method>PUT</method></allowed-methods>
        <allowed-headers><header>X-Custom</header></allowed-headers><expose-headers><header>X-Total</header></expose-headers></cors>"#;
    let gw = Gateway::start(
        &config(
            &api(&origin.url(""), false, Some(&policies(cors, "", "")), None),
            "",
        ),
        &[],
    );
    let before = origin.requests().len();
    let r = send(
        &gw,
        "OPTIONS",
        "/a/items/1",
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "PUT"),
            ("Access-Control-Request-Headers", "x-custom"),
        ],
        "",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Access-Control-Allow-Origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("Access-Control-Allow-Credentials"), Some("true"));
    assert_eq!(r.header("Access-Control-Allow-Methods"), Some("GET,PUT"));
    assert_eq!(r.header("Access-Control-Allow-Headers"), Some("X-Custom"));
    assert_eq!(r.header("Access-Control-Max-Age"), Some("300"));
    assert_eq!(
        origin.requests().len(),
        before,
        "preflight answered by the gateway"
    );
    let r = send(
        &gw,
        "OPTIONS",
        "/a/items/1",
        &[
            ("Origin", "https://evil.example"),
            ("Access-Control-Request-Method", "PUT"),
        ],
        "",
    );
    assert_eq!(
        (r.status, r.header("Access-Control-Allow-Origin")),
        (200, None)
    );
    let r = send(
        &gw,
        "GET",
        "/a/items/1",
        &[("Origin", "https://app.example")],
        "",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Access-Control-Allow-Origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("Access-Control-Expose-Headers"), Some("X-Total"));
    assert_eq!(r.header("Vary"), Some("Origin"));
}

#[test]
fn rate_limits_and_quotas() {
    let origin = Origin::echo();
    let product_policy = r#"<policies><inbound><base /><rate-limit calls="3" renewal-period="2" remaining-calls-header-name="X-Remaining"><api name="api1" calls="2" renewal-period="2" /></rate-limit></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"#;
    let rest = format!(
        r#", "products": [{{"id": "p", "apis": ["api1"], "policies": {}}}],
        "subscriptions": [{{"id": "s1", "scope": "/products/p", "primaryKey": "key-one-1234"}}, {{"id": "s2", "scope": "/products/p", "primaryKey": "key-two-1234"}}]"#,
        js(product_policy)
    );
    let by_key = r#"<rate-limit-by-key calls="2" renewal-period="60" counter-key="@(context.Request.Headers.GetValueOrDefault("X-Client","anon"))" increment-condition="@(context.Response.StatusCode == 200)" remaining-calls-header-name="X-Left" />
        <quota-by-key calls="3" renewal-period="3600" counter-key="@(context.Request.Headers.GetValueOrDefault("X-Tenant","anon"))" />"#;
    let apis = api(&origin.url(""), true, None, None).replace(
        r#""urlTemplate": "/*"}"#,
        &format!(
            r#""urlTemplate": "/*", "policies": {}}}"#,
            js(&policies(by_key, "", ""))
        ),
    );
    let gw = Gateway::start(&config(&apis, &rest), &[]);
    let k1 = [("Ocp-Apim-Subscription-Key", "key-one-1234")];
    // the nested api limit (2 per 2 s) is the tightest
    let r = send(&gw, "GET", "/a/items/1", &k1, "");
    assert_eq!((r.status, r.header("X-Remaining")), (200, Some("1")));
    assert_eq!(
        send(&gw, "GET", "/a/items/1", &k1, "").header("X-Remaining"),
        Some("0")
    );
    let r = send(&gw, "GET", "/a/items/1", &k1, "");
    assert_eq!(r.status, 429);
    let retry: u64 = r.header("Retry-After").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(
        r.text(),
        error_body(
            429,
            &format!("Rate limit is exceeded. Try again in {retry} seconds.")
        )
    );
    // another subscription has its own window
    assert_eq!(
        send(
            &gw,
            "GET",
            "/a/items/1",
            &[("Ocp-Apim-Subscription-Key", "key-two-1234")],
            ""
        )
        .status,
        200
    );
    // the window slides: after the period the first calls have left it
    assert!(eventually(Duration::from_secs(5), || send(
        &gw,
        "GET",
        "/a/items/1",
        &k1,
        ""
    )
    .status
        == 200));

    // rate-limit-by-key counts only 200 responses; quota-by-key refuses with 403
    // (calls are spaced so that the product's 2-per-2-s limit never refuses them)
    std::thread::sleep(Duration::from_millis(2100));
    let k2 = ("Ocp-Apim-Subscription-Key", "key-two-1234");
    let c = ("X-Client", "c1");
    let r = send(&gw, "GET", "/a/x", &[k2, c], "");
    assert_eq!((r.status, r.header("X-Left")), (200, Some("1")));
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(send(&gw, "GET", "/a/x", &[k2, c], "").status, 200);
    std::thread::sleep(Duration::from_millis(1100));
    let r = send(&gw, "GET", "/a/x", &[k2, c], "");
    assert_eq!((r.status, r.header("X-Left")), (429, Some("0")));
    // quota-by-key (per X-Tenant) refuses the 4th call of a tenant with 403
    let k1 = ("Ocp-Apim-Subscription-Key", "key-one-1234");
    for client in ["c2", "c3", "c4"] {
        let r = send(
            &gw,
            "GET",
            "/a/x",
            &[k1, ("X-Client", client), ("X-Tenant", "t1")],
            "",
        );
        assert_eq!(r.status, 200, "{}{}", r.head, r.text());
        std::thread::sleep(Duration::from_millis(1100));
    }
    let r = send(
        &gw,
        "GET",
        "/a/x",
        &[k1, ("X-Client", "c5"), ("X-Tenant", "t1")],
        "",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().starts_with("{\"statusCode\": 403, \"message\": \"Out of call volume quota. Quota will be replenished in "));
    assert!(r.header("Retry-After").is_some());
}

/// rate-limit-by-key's calls, renewal-period and increment-count may be expressions
/// (APIM allows them): each call's limit is computed, calls under different limits
/// count in different windows, and a value that is not a count fails the call.
#[test]
fn rate_limit_by_key_numbers_from_expressions() {
    let origin = Origin::echo();
    let by_key = r#"<rate-limit-by-key calls="@(context.Request.Headers.GetValueOrDefault("X-Tier","") == "gold" ? 3 : 1)" renewal-period="@(60)" increment-count="@(context.Request.Headers.GetValueOrDefault("X-Cost","1"))" counter-key="@(context.Request.Headers.GetValueOrDefault("X-Client","anon"))" remaining-calls-header-name="X-Left" />"#;
    let on_error = r#"<choose><when condition="@(context.LastError.Reason == "ExpressionValueEvaluationFailure")"><return-response><set-status code="500" /><set-body>@(context.LastError.Message)</set-body></return-response></when></choose>"#;
    let apis = api(
        &origin.url(""),
        false,
        Some(&policies(by_key, "", on_error)),
        None,
    );
    let gw = Gateway::start(&config(&apis, ""), &[]);
    let call = |headers: &[(&str, &str)]| {
        let r = send(&gw, "GET", "/a/x", headers, "");
        (r.status, r.header("X-Left").map(str::to_string))
    };
    let gold = [("X-Tier", "gold"), ("X-Client", "a")];
    for left in ["2", "1", "0"] {
        assert_eq!(call(&gold), (200, Some(left.to_string())));
    }
    assert_eq!(call(&gold).0, 429);
    let bronze = [("X-Client", "b")];
    assert_eq!(call(&bronze), (200, Some("0".to_string())));
    assert_eq!(call(&bronze).0, 429);
    // the same client under the gold limit counts in its own window
    assert_eq!(call(&[("X-Tier", "gold"), ("X-Client", "b")]).0, 200);
    // a call that costs 2 of gold's 3
    let costly = [("X-Tier", "gold"), ("X-Client", "c"), ("X-Cost", "2")];
    assert_eq!(call(&costly), (200, Some("1".to_string())));
    assert_eq!(call(&costly).0, 429);
    let r = send(
        &gw,
        "GET",
        "/a/x",
        &[("X-Client", "d"), ("X-Cost", "lots")],
        "",
    );
    assert_eq!(
        (r.status, r.text().as_str()),
        (500, "Expression evaluation failed. The value 'lots' is not valid here: expected a non-negative integer")
    );
}

/// quota-by-key's calls, bandwidth and renewal-period may be expressions too: each
/// plan's quota counts on its own.
#[test]
fn quota_by_key_numbers_from_expressions() {
    let origin = Origin::echo();
    let quota = r#"<quota-by-key calls="@(context.Request.Headers.GetValueOrDefault("X-Plan","") == "pro" ? 3 : 1)" renewal-period="@(3600)" counter-key="@(context.Request.Headers.GetValueOrDefault("X-Client","anon"))" />"#;
    let apis = api(&origin.url(""), false, Some(&policies(quota, "", "")), None);
    let gw = Gateway::start(&config(&apis, ""), &[]);
    let status = |headers: &[(&str, &str)]| send(&gw, "GET", "/a/x", headers, "").status;
    let pro = [("X-Plan", "pro"), ("X-Client", "a")];
    for _ in 0..3 {
        assert_eq!(status(&pro), 200);
    }
    assert_eq!(status(&pro), 403);
    let free = [("X-Client", "b")];
    assert_eq!(status(&free), 200);
    assert_eq!(status(&free), 403);
    // the same client on the pro plan counts against the pro quota
    assert_eq!(status(&[("X-Plan", "pro"), ("X-Client", "b")]), 200);
}

/// forward-request fail-on-error-status-code="true": a 4xx/5xx answer runs on-error
/// (not outbound) with LastError naming forward-request; without a return-response the
/// backend's answer goes on with on-error's edits.
#[test]
fn fail_on_error_status_code_runs_on_error() {
    let origin = Origin::start(|req, s| {
        match req.target.as_str() {
            "/ok" => respond(s, 200, &[("Content-Type", "text/plain")], b"fine"),
            "/missing" => respond(s, 404, &[("Content-Type", "text/plain")], b"no such thing"),
            _ => respond(s, 503, &[("Content-Type", "text/plain")], b"down"),
        }
        true
    });
    let doc = r#"<policies><inbound /><backend><forward-request fail-on-error-status-code="true" /></backend>
        <outbound><set-header name="X-Outbound" exists-action="override"><value>ran</value></set-header></outbound>
        <on-error><set-header name="X-Error" exists-action="override"><value>@(context.LastError.Source + "/" + context.LastError.Reason + "/" + context.Response.StatusCode)</value></set-header>
          <choose><when condition="@(context.Response.StatusCode == 404)"><return-response><set-status code="410" reason="Gone" /><set-body>gone</set-body></return-response></when></choose></on-error></policies>"#;
    let gw = Gateway::start(
        &config(&api(&origin.url(""), false, Some(doc), None), ""),
        &[],
    );
    let r = send(&gw, "GET", "/a/ok", &[], "");
    assert_eq!((r.status, r.text().as_str()), (200, "fine"));
    assert_eq!(
        (r.header("X-Outbound"), r.header("X-Error")),
        (Some("ran"), None)
    );
    let r = send(&gw, "GET", "/a/down", &[], "");
    assert_eq!((r.status, r.text().as_str()), (503, "down"));
    assert_eq!(r.header("X-Outbound"), None);
    assert_eq!(
        r.header("X-Error"),
        Some("forward-request/BackendErrorStatusCode/503")
    );
    let r = send(&gw, "GET", "/a/missing", &[], "");
    assert_eq!((r.status, r.text().as_str()), (410, "gone"));
    assert_eq!(r.header("X-Outbound"), None);
}

#[test]
fn limit_concurrency_and_forward_timeout() {
    let slow = Origin::start(|req, s| {
        if req.target.contains("slow") {
            std::thread::sleep(Duration::from_millis(2500));
        }
        respond(s, 200, &[], b"done");
        true
    });
    let backend = r#"<policies><inbound /><backend><limit-concurrency key="one" max-count="1"><forward-request timeout="1" /></limit-concurrency></backend><outbound /><on-error><base /></on-error></policies>"#;
    let gw = Gateway::start(
        &config(&api(&slow.url(""), false, None, Some(backend)), ""),
        &[],
    );
    // a slow call holds the only slot until its 1 s forward timeout gives 504
    let addr = gw.addr;
    let first = std::thread::spawn(move || get(addr, "/a/items/slow"));
    std::thread::sleep(Duration::from_millis(300));
    let r = get(gw.addr, "/a/items/1");
    assert_eq!(r.status, 429);
    assert_eq!(
        r.text(),
        error_body(429, "Too many concurrent requests. Try again later.")
    );
    let r = first.join().unwrap();
    assert_eq!(r.status, 504);
    // the slot is free again
    assert_eq!(get(gw.addr, "/a/items/1").text(), "done");
}

#[test]
fn invalid_policies_are_refused_with_their_location() {
    let cases = [
        ("<policies><inbound><xsl-transform /></inbound></policies>", "apis[0].operations[0].policies: line 1 column 20: policy <xsl-transform> is not supported by edgegate: planned (see README \"Policy conformance\")"),
        ("<policies><inbound><log-to-eventhub logger-id=\"l\">x</log-to-eventhub></inbound></policies>", "apis[0].operations[0].policies: line 1 column 20: policy <log-to-eventhub> is not supported by edgegate: Azure only: Azure Event Hubs (trace reaches the request log and the plane) (see README \"Policy conformance\")"),
        ("<policies><inbound><emit-metric name=\"m\"><dimension name=\"Custom\" /></emit-metric></inbound></policies>", "apis[0].operations[0].policies: line 1 column 42: <dimension>: 'Custom' needs a value (only APIM's default dimensions fill themselves)"),
        ("<policies><inbound><no-such-policy /></inbound></policies>", "apis[0].operations[0].policies: line 1 column 20: policy <no-such-policy> is not supported by edgegate (see README \"Policy conformance\")"),
        ("<policies><inbound>\n  <set-header name=\"a\" bogus=\"1\"><value>x</value></set-header></inbound></policies>", "apis[0].operations[0].policies: line 2 column 3: <set-header>: attribute 'bogus' is not supported"),
        ("<policies><inbound><set-header name=\"a\"><value>@(context.Request.Fingerprint)</value></set-header></inbound></policies>", "apis[0].operations[0].policies: line 1 column 41: <value>: expression error at column 16: 'context.Request.Fingerprint' is not supported"),
        ("<policies><inbound><rate-limit calls=\"x\" renewal-period=\"1\" /></inbound></policies>", "apis[0].operations[0].policies: line 1 column 20: <rate-limit>: attribute 'calls' must be a non-negative integer (expressions are not supported here)"),
        ("<policies><outbound><xml-to-json kind=\"sideways\" apply=\"always\" /></outbound></policies>", "apis[0].operations[0].policies: line 1 column 21: <xml-to-json>: attribute 'kind' must be javascript-friendly or direct, not 'sideways'"),
        ("<policies><outbound><json-to-xml /></outbound></policies>", "apis[0].operations[0].policies: line 1 column 21: <json-to-xml>: attribute 'apply' is required"),
        ("<policies><backend><json-to-xml apply=\"always\" /></backend></policies>", "apis[0].operations[0].policies: line 1 column 20: <json-to-xml>"),
        ("<policies><inbound><rate-limit-by-key calls=\"5\" renewal-period=\"0\" counter-key=\"k\" /></inbound></policies>", "apis[0].operations[0].policies: line 1 column 20: <rate-limit-by-key>: attribute 'renewal-period' must be a positive integer (seconds), not '0'"),
        ("<policies><inbound><base /><base /></inbound></policies>", "apis[0].operations[0].policies: line 1 column 28: <base /> appears twice in one section"),
        ("<policies><inbound><set-header name=\"a\"><value>{{missing}}</value></set-header></inbound></policies>", "apis[0].operations[0].policies: line 1 column 1: named value '{{missing}}' is not defined in namedValues"),
    ];
    let dir = temp_dir("badpolicy");
    for (policy, want) in cases {
        let doc = config(&api("http://127.0.0.1:9", false, None, Some(policy)), "");
        let path = dir.join("c.json");
        std::fs::write(&path, doc).unwrap();
        let out = std::process::Command::new(BIN)
            .arg("check")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(want), "want {want}\ngot {err}");
    }
    // a secret named value never appears in an error
    let doc = config(
        &api(
            "http://127.0.0.1:9",
            false,
            None,
            Some(
                r#"<policies><inbound><ip-filter action="allow"><address>{{token}}</address></ip-filter></inbound></policies>"#,
            ),
        ),
        r#", "namedValues": [{"name": "token", "value": "s3cr3t-value", "secret": true}]"#,
    );
    let path = dir.join("s.json");
    std::fs::write(&path, doc).unwrap();
    let out = std::process::Command::new(BIN)
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    let err =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("<address>: its content must be an IP address, not '{{token}}'"),
        "{err}"
    );
    assert!(!err.contains("s3cr3t-value"));
}

#[test]
fn named_values_and_backends() {
    let origin = Origin::echo();
    let inbound = r#"<set-header name="Authorization" exists-action="override"><value>Bearer {{backend-token}}</value></set-header><set-backend-service backend-id="b1" />"#;
    let rest = format!(
        r#", "namedValues": [{{"name": "backend-token", "value": "tok-123", "secret": true}}], "backends": [{{"id": "b1", "url": "{}"}}]"#,
        origin.url("/via-b1")
    );
    let gw = Gateway::start(
        &config(
            &api(
                "http://127.0.0.1:9",
                false,
                None,
                Some(&policies(inbound, "", "")),
            ),
            &rest,
        ),
        &[],
    );
    let r = get(gw.addr, "/a/items/5");
    assert_eq!(r.text(), "GET /via-b1/items/5\n");
    assert_eq!(
        origin.requests().last().unwrap().header("Authorization"),
        Some("Bearer tok-123")
    );
    assert!(!gw.log_lines().iter().any(|l| l.contains("tok-123")));
}

pub(crate) mod jwt_tokens {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    use ring::rand::SystemRandom;
    use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};

    pub fn b64(b: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(b)
    }

    pub fn std64(b: &[u8]) -> String {
        STANDARD.encode(b)
    }

    pub fn unsigned(alg: &str, claims: &str) -> String {
        format!(
            "{}.{}",
            b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes()),
            b64(claims.as_bytes())
        )
    }

    pub fn hs256(secret: &[u8], claims: &str) -> String {
        let msg = unsigned("HS256", claims);
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let tag = ring::hmac::sign(&key, msg.as_bytes());
        format!("{msg}.{}", b64(tag.as_ref()))
    }

    pub struct Rsa(pub RsaKeyPair);
    impl Rsa {
        pub fn generate(dir: &std::path::Path) -> Rsa {
            let path = dir.join("rsa.der");
            let ok = std::process::Command::new("openssl")
                .stderr(std::process::Stdio::null())
                .args([
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-outform",
                    "DER",
                    "-out",
                ])
                .arg(&path)
                .status()
                .unwrap();
            assert!(ok.success());
            Rsa(RsaKeyPair::from_der(&std::fs::read(path).unwrap()).unwrap())
        }
        pub fn n_e(&self) -> (String, String) {
            let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(self.0.public());
            (b64(&c.n), b64(&c.e))
        }
        pub fn sign(&self, claims: &str) -> String {
            let msg = unsigned("RS256", claims);
            let mut sig = vec![0; self.0.public().modulus_len()];
            self.0
                .sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    msg.as_bytes(),
                    &mut sig,
                )
                .unwrap();
            format!("{msg}.{}", b64(&sig))
        }
    }

    pub struct Ec(pub EcdsaKeyPair);
    impl Ec {
        pub fn generate() -> Ec {
            let rng = SystemRandom::new();
            let doc =
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .unwrap();
            Ec(EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                doc.as_ref(),
                &rng,
            )
            .unwrap())
        }
        pub fn x_y(&self) -> (String, String) {
            let p = self.0.public_key().as_ref();
            (b64(&p[1..33]), b64(&p[33..65]))
        }
        pub fn sign(&self, claims: &str) -> String {
            let msg = unsigned("ES256", claims);
            let sig = self.0.sign(&SystemRandom::new(), msg.as_bytes()).unwrap();
            format!("{msg}.{}", b64(sig.as_ref()))
        }
        /// A token whose header names key `kid`.
        pub fn sign_kid(&self, kid: &str, claims: &str) -> String {
            let msg = format!(
                "{}.{}",
                b64(format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{kid}"}}"#).as_bytes()),
                b64(claims.as_bytes())
            );
            let sig = self.0.sign(&SystemRandom::new(), msg.as_bytes()).unwrap();
            format!("{msg}.{}", b64(sig.as_ref()))
        }
        /// This key as a JWK with key id `kid`.
        pub fn jwk(&self, kid: &str) -> String {
            let (x, y) = self.x_y();
            format!(
                r#"{{"kty": "EC", "crv": "P-256", "use": "sig", "kid": "{kid}", "x": "{x}", "y": "{y}"}}"#
            )
        }
    }
}

#[test]
fn validate_jwt_with_each_algorithm_and_every_refusal() {
    use jwt_tokens::*;
    let origin = Origin::echo();
    let dir = temp_dir("jwt");
    let rsa = Rsa::generate(&dir);
    let ec = Ec::generate();
    let secret = b"a-shared-secret-of-32-bytes-long";
    let (n, e) = rsa.n_e();
    let (x, y) = ec.x_y();
    let jwks = format!(
        r#"{{"keys": [{{"kty": "EC", "crv": "P-256", "kid": "ec1", "x": "{x}", "y": "{y}"}}]}}"#
    );
    let inbound = format!(
        r#"<validate-jwt header-name="Authorization" failed-validation-httpcode="401" require-scheme="Bearer" clock-skew="5">
            <issuer-signing-keys><key>{}</key><key n="{n}" e="{e}" /><jwks>{jwks}</jwks></issuer-signing-keys>
            <audiences><audience>api://edge</audience></audiences>
            <issuers><issuer>https://issuer.test</issuer></issuers>
            <required-claims><claim name="scope" match="any" separator=" "><value>read</value><value>admin</value></claim></required-claims>
          </validate-jwt>"#,
        std64(secret)
    );
    let on_error = r#"<set-header name="X-Reason" exists-action="override"><value>@(context.LastError.Reason)</value></set-header>"#;
    let gw = Gateway::start(
        &config(
            &api(
                &origin.url(""),
                false,
                None,
                Some(&policies(&inbound, "", on_error)),
            ),
            "",
        ),
        &[],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |iss: &str, aud: &str, exp: u64, nbf: u64, scope: &str| {
        format!(r#"{{"iss":"{iss}","aud":"{aud}","exp":{exp},"nbf":{nbf},"scope":"{scope}"}}"#)
    };
    let good = claims(
        "https://issuer.test",
        "api://edge",
        now + 600,
        now - 10,
        "write read",
    );
    let call = |token: &str| {
        send(
            &gw,
            "GET",
            "/a/items/1",
            &[("Authorization", &format!("Bearer {token}"))],
            "",
        )
    };
    for token in [hs256(secret, &good), rsa.sign(&good), ec.sign(&good)] {
        let r = call(&token);
        assert_eq!(r.status, 200, "{}", r.text());
        // the same token again (from the verified-token cache)
        assert_eq!(call(&token).status, 200);
    }
    let invalid = error_body(401, "Invalid JWT.");
    let tampered = {
        let t = rsa.sign(&good);
        let mut parts: Vec<&str> = t.split('.').collect();
        let other = b64(claims(
            "https://issuer.test",
            "api://edge",
            now + 600,
            now - 10,
            "admin",
        )
        .as_bytes());
        parts[1] = &other;
        parts.join(".")
    };
    // key confusion: an HS256 token whose "secret" is the RSA public key
    let confused = hs256(&URL_SAFE_NO_PAD_decode(&n), &good);
    let cases = [
        (
            hs256(
                secret,
                &claims(
                    "https://issuer.test",
                    "api://edge",
                    now - 60,
                    now - 120,
                    "read",
                ),
            ),
            "TokenExpired",
        ),
        (
            rsa.sign(&claims(
                "https://issuer.test",
                "api://edge",
                now + 600,
                now + 300,
                "read",
            )),
            "TokenNotYetValid",
        ),
        (
            ec.sign(&claims(
                "https://evil.test",
                "api://edge",
                now + 600,
                now - 10,
                "read",
            )),
            "TokenIssuerNotAllowed",
        ),
        (
            hs256(
                secret,
                &claims(
                    "https://issuer.test",
                    "api://other",
                    now + 600,
                    now - 10,
                    "read",
                ),
            ),
            "TokenAudienceNotAllowed",
        ),
        (
            hs256(
                secret,
                &claims(
                    "https://issuer.test",
                    "api://edge",
                    now + 600,
                    now - 10,
                    "write",
                ),
            ),
            "TokenClaimValueNotAllowed",
        ),
        (tampered, "TokenSignatureInvalid"),
        (
            unsigned("none", &good) + ".",
            "TokenSignatureAlgorithmNotAllowed",
        ),
        (
            hs256(b"another-secret-of-32-bytes-long!", &good),
            "TokenSignatureInvalid",
        ),
        (confused, "TokenSignatureInvalid"),
        ("not-a-jwt".to_string(), "TokenInvalid"),
    ];
    for (token, reason) in cases {
        let r = call(&token);
        assert_eq!((r.status, r.text()), (401, invalid.clone()), "{reason}");
        assert_eq!(r.header("X-Reason"), Some(reason));
    }
    // within the clock skew an expired token still passes
    let r = call(&hs256(
        secret,
        &claims(
            "https://issuer.test",
            "api://edge",
            now - 2,
            now - 100,
            "read",
        ),
    ));
    assert_eq!(r.status, 200);
    let r = get(gw.addr, "/a/items/1");
    assert_eq!(
        (r.status, r.text()),
        (401, error_body(401, "JWT not present."))
    );
    assert_eq!(r.header("X-Reason"), Some("TokenNotPresent"));
    let r = send(
        &gw,
        "GET",
        "/a/items/1",
        &[("Authorization", &format!("Basic {}", hs256(secret, &good)))],
        "",
    );
    assert_eq!(r.header("X-Reason"), Some("TokenSchemeNotAllowed"));
}

#[allow(non_snake_case)]
fn URL_SAFE_NO_PAD_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

/// Calls used in every persisted quota window of the gateway's backup store.
fn persisted_quota_calls(gw: &Gateway) -> i64 {
    let db = rusqlite::Connection::open(gw.backup_path()).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.query_row("SELECT COALESCE(SUM(calls), 0) FROM quotas", [], |r| {
        r.get(0)
    })
    .unwrap_or(0)
}

#[test]
fn quota_counters_survive_a_restart() {
    let origin = Origin::echo();
    let product_policy = r#"<policies><inbound><base /><quota calls="3" renewal-period="3600" /></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"#;
    let rest = format!(
        r#", "products": [{{"id": "p", "apis": ["api1"], "policies": {}}}],
        "subscriptions": [{{"id": "s1", "scope": "/products/p", "primaryKey": "key-one-1234"}},
                          {{"id": "s2", "scope": "/products/p", "primaryKey": "key-two-1234"}}]"#,
        js(product_policy)
    );
    let gw = Gateway::start(&config(&api(&origin.url(""), true, None, None), &rest), &[]);
    let call = |gw: &Gateway, key: &str| {
        send(gw, "GET", "/a/x", &[("Ocp-Apim-Subscription-Key", key)], "").status
    };
    assert_eq!(call(&gw, "key-one-1234"), 200);
    assert_eq!(call(&gw, "key-one-1234"), 200);
    // the agent persists the counters in the background, not at exit: a crash after
    // that keeps them
    assert!(eventually(
        Duration::from_secs(10),
        || persisted_quota_calls(&gw) == 2
    ));
    let gw = gw.restart(&[]);
    assert!(gw
        .wait_for_log("1 quota counters restored from the backup store")
        .contains("restored"));
    assert_eq!(call(&gw, "key-one-1234"), 200, "third call of three");
    let r = send(
        &gw,
        "GET",
        "/a/x",
        &[("Ocp-Apim-Subscription-Key", "key-one-1234")],
        "",
    );
    assert_eq!(r.status, 403, "the quota did not start over: {}", r.text());
    // a graceful stop right after a call keeps that call too
    assert_eq!(call(&gw, "key-two-1234"), 200);
    gw.signal("TERM");
    let mut gw = gw;
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
    let gw = Gateway::start_in(gw.kill(), &[]);
    assert_eq!(call(&gw, "key-two-1234"), 200);
    assert_eq!(call(&gw, "key-two-1234"), 200);
    assert_eq!(call(&gw, "key-two-1234"), 403);
    // subscription one is still out of calls
    assert_eq!(call(&gw, "key-one-1234"), 403);
}

#[test]
fn retry_sends_the_request_again_while_its_condition_holds() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // the origin fails the first `fail` calls of each path: /r3 with 503, /reset by
    // closing the connection without an answer
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let origin = Origin::start(move |req, s| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        if req.target.contains("reset") && n == 0 {
            return false;
        }
        if req.target.contains("always") || (req.target.contains("r3") && n < 2) {
            respond(s, 503, &[("X-Attempt", &n.to_string())], b"busy");
        } else if req.target.contains("missing") {
            respond(s, 404, &[], b"no such item");
        } else {
            let mut body = format!("attempt {n}: ").into_bytes();
            body.extend_from_slice(&req.body);
            respond(s, 200, &[], &body);
        }
        true
    });
    let backend = r#"<policies><inbound /><backend><retry condition="@(context.Response.StatusCode >= 500)" count="2" interval="1" first-fast-retry="true"><forward-request /></retry></backend><outbound><set-header name="X-Status-Seen" exists-action="override"><value>@(context.Response.StatusCode.ToString())</value></set-header></outbound><on-error><base /></on-error></policies>"#;
    let gw = Gateway::start(
        &config(&api(&origin.url(""), false, Some(backend), None), ""),
        &[],
    );
    let reset = |c: &AtomicUsize| c.store(0, Ordering::SeqCst);

    // two 503s, then a 200: the client sees only the last answer, and the request
    // (a POST with a body) reached the origin whole each time
    let r = send(&gw, "POST", "/a/r3", &[], "payload-123");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "attempt 2: payload-123");
    assert_eq!(r.header("X-Status-Seen"), Some("200"));
    let bodies: Vec<Vec<u8>> = origin.requests().iter().map(|s| s.body.clone()).collect();
    assert_eq!(bodies, vec![b"payload-123".to_vec(); 3]);

    // count exhausted: the third 503 is the answer
    reset(&calls);
    let r = send(&gw, "GET", "/a/always", &[], "");
    assert_eq!((r.status, r.text()), (503, "busy".to_string()));
    assert_eq!(r.header("X-Attempt"), Some("2"), "1 attempt + 2 retries");

    // the condition does not hold: no retry
    reset(&calls);
    let before = origin.requests().len();
    let r = send(&gw, "GET", "/a/missing", &[], "");
    assert_eq!(r.status, 404);
    assert_eq!(origin.requests().len(), before + 1);

    // a backend that drops the connection counts as 502 for the condition
    reset(&calls);
    let r = send(&gw, "POST", "/a/reset", &[], "again");
    assert_eq!((r.status, r.text()), (200, "attempt 1: again".to_string()));

    // a backend that cannot be reached at all: every attempt fails, then the gateway's 502
    let down = r#"<policies><inbound /><backend><retry condition="@(context.Response.StatusCode == 502)" count="2" interval="0"><forward-request /></retry></backend><outbound /><on-error><base /></on-error></policies>"#;
    let gw = Gateway::start(
        &config(&api("http://127.0.0.1:9", false, Some(down), None), ""),
        &[],
    );
    let r = send(&gw, "GET", "/a/x", &[], "");
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), error_body(502, "Backend service unavailable"));
}

#[test]
fn a_counter_keeps_its_identity_when_other_documents_change() {
    let origin = Origin::echo();
    // an API quota of 2 calls
    let api_policy = policies(
        r#"<base /><quota-by-key calls="2" renewal-period="3600" counter-key="tenant" />"#,
        "<base />",
        "<base />",
    );
    let v1 = config(&api(&origin.url(""), false, Some(&api_policy), None), "")
        .replace(r#""version": "p1""#, r#""version": "v1""#);
    // the same API, now after a global policy that has a quota of its own: counters
    // numbered by position would shift and hand the API's count to the global quota
    let global = r#"<policies><inbound><quota-by-key calls="100" renewal-period="3600" counter-key="tenant" /></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"#;
    let v2 = config(
        &api(&origin.url(""), false, Some(&api_policy), None),
        &format!(r#", "policies": {}"#, js(global)),
    )
    .replace(r#""version": "p1""#, r#""version": "v2""#);
    let gw = Gateway::start(&v1, &[]);
    assert_eq!(send(&gw, "GET", "/a/x", &[], "").status, 200);
    std::fs::write(&gw.config_path, &v2).unwrap();
    gw.signal("HUP");
    gw.wait_for_log("config version v2 (");
    assert_eq!(
        send(&gw, "GET", "/a/x", &[], "").status,
        200,
        "second of two"
    );
    let r = send(&gw, "GET", "/a/x", &[], "");
    assert_eq!(
        r.status,
        403,
        "the API's quota kept its count: {}",
        r.text()
    );
}

#[test]
fn a_client_that_leaves_during_a_retry_wait_ends_the_retries() {
    let origin = Origin::start(|_, s| {
        respond(s, 503, &[], b"busy");
        true
    });
    let backend = r#"<policies><inbound /><backend><retry condition="@(context.Response.StatusCode == 503)" count="3" interval="2"><forward-request /></retry></backend><outbound /><on-error /></policies>"#;
    let gw = Gateway::start(
        &config(&api(&origin.url(""), false, Some(backend), None), ""),
        &[],
    );
    let s = gw.connect();
    (&s).write_all(b"GET /a/x HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || origin
        .requests()
        .len()
        == 1));
    drop(s);
    // the next attempt would start 2 s after the first; it never does
    std::thread::sleep(Duration::from_millis(2600));
    assert_eq!(origin.requests().len(), 1);
    // and the gateway logged the call as abandoned by the client
    let line = gw.wait_for_log("url=/a/x");
    assert!(
        line.contains("responseCode=499") && line.contains("errorReason=client_closed_or_aborted"),
        "{line}"
    );
}

#[test]
fn a_refused_subscription_key_goes_through_on_error() {
    let origin = Origin::echo();
    let api_policy = r#"<policies><inbound><base /></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /><set-header name="X-Error" exists-action="override"><value>@(context.LastError.Source + "/" + context.LastError.Reason + "/" + context.Request.Headers.GetValueOrDefault("X-Caller", "?"))</value></set-header><choose><when condition="@(context.LastError.Reason == "SubscriptionKeyNotFound")"><set-body>{"error": "send your key in Ocp-Apim-Subscription-Key"}</set-body></when></choose></on-error></policies>"#;
    let gw = Gateway::start(
        &config(&api(&origin.url(""), true, Some(api_policy), None), ""),
        &[],
    );
    let r = send(&gw, "GET", "/a/x", &[("X-Caller", "c1")], "");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("X-Error"),
        Some("authorization/SubscriptionKeyNotFound/c1")
    );
    assert_eq!(
        r.text(),
        r#"{"error": "send your key in Ocp-Apim-Subscription-Key"}"#
    );
    // an invalid key: on-error runs too and keeps the gateway's answer
    let r = send(
        &gw,
        "GET",
        "/a/x",
        &[("Ocp-Apim-Subscription-Key", "not-a-key-1234")],
        "",
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("X-Error"),
        Some("authorization/SubscriptionKeyInvalid/?")
    );
    assert_eq!(
        r.text(),
        error_body(
            401,
            "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."
        )
    );
    // and the request log still names the failure
    let line = gw.wait_for_log("errorReason=subscription_key_invalid");
    assert!(line.contains("responseCode=401"), "{line}");
    assert!(origin.requests().is_empty());
}

#[test]
fn a_request_that_matches_nothing_goes_through_the_global_on_error() {
    let origin = Origin::echo();
    let global = r#"<policies><inbound /><backend><forward-request /></backend><outbound /><on-error><set-header name="X-Why" exists-action="override"><value>@(context.LastError.Source + "/" + context.LastError.Reason + " " + context.Request.Url.Path)</value></set-header><set-body>{"error": "no such route"}</set-body></on-error></policies>"#;
    let gw = Gateway::start(
        &config(
            &api(&origin.url(""), false, None, None),
            &format!(r#", "policies": {}"#, js(global)),
        ),
        &[],
    );
    // no API at those paths
    for (path, method) in [("/nowhere/x", "GET"), ("/b", "POST")] {
        let r = send(&gw, method, path, &[], "");
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(
            r.header("X-Why"),
            Some(format!("configuration/OperationNotFound {path}").as_str())
        );
        assert_eq!(r.text(), r#"{"error": "no such route"}"#);
    }
    let line = gw.wait_for_log("url=/nowhere/x");
    assert!(line.contains("errorReason=operation_not_found"), "{line}");
    // what matches is unaffected
    assert_eq!(send(&gw, "GET", "/a/items/1", &[], "").status, 200);
    assert!(origin.requests().len() == 1);

    // an API whose operations do not match the request: the same
    let only_get = format!(
        r#"{{"id": "g", "path": "g", "serviceUrl": "{}", "subscriptionRequired": false,
            "operations": [{{"id": "get-item", "method": "GET", "urlTemplate": "/items/{{id}}"}}]}}"#,
        origin.url("")
    );
    let gw = Gateway::start(
        &config(&only_get, &format!(r#", "policies": {}"#, js(global))),
        &[],
    );
    let r = send(&gw, "DELETE", "/g/items/1", &[], "");
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("X-Why"),
        Some("configuration/OperationNotFound /g/items/1")
    );
}

/// The buffer pool is a byte budget (`limits.buffers.max`): a plan that must hold a
/// body larger than what is left gets 503 with its reason, and smaller ones go on.
#[test]
fn a_body_the_buffer_budget_cannot_hold_is_refused_with_503() {
    let origin = Origin::echo();
    let policy = policies(r#"<find-and-replace from="cat" to="dog" />"#, "", "");
    let gw = Gateway::start(
        &config(&api(&origin.url(""), false, Some(&policy), None), ""),
        &["limits.buffers.max=96KiB"],
    );
    let r = send(&gw, "POST", "/a/x", &[], "a cat");
    assert_eq!((r.status, r.text()), (200, "POST /x\na dog".to_string()));
    let big = "c".repeat(200 * 1024);
    let r = send(&gw, "POST", "/a/x", &[], &big);
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), error_body(503, "Service unavailable"));
    gw.wait_for_log("buffers_exhausted");
    let r = send(&gw, "POST", "/a/x", &[], "another cat");
    assert_eq!(
        (r.status, r.text()),
        (200, "POST /x\nanother dog".to_string())
    );
}

/// Throttling is visible: a 429 is logged with who was throttled and why, and sizes
/// count head and body for gateway answers and proxied ones alike.
#[test]
fn a_throttled_call_is_logged_with_its_subscription_and_reason() {
    let origin = Origin::text("hello");
    let limit = policies(r#"<rate-limit calls="1" renewal-period="60" />"#, "", "");
    let api2 = r#"{"id": "api2", "path": "b", "serviceUrl": "http://127.0.0.1:9", "operations": [{"id": "x", "method": "*", "urlTemplate": "/*"}]}"#;
    let apis = format!("{},{api2}", api(&origin.url(""), true, Some(&limit), None));
    let gw = Gateway::start(&config(&apis, KEYS), &["telemetry.logs.std=json"]);
    let raw = "GET /a/items/1 HTTP/1.1\r\nHost: gw.test\r\nOcp-Apim-Subscription-Key: gold-primary-1\r\nConnection: close\r\n\r\n";
    let first = raw_exchange(gw.addr, raw.as_bytes());
    let second = raw_exchange(gw.addr, raw.as_bytes());
    assert!(
        second.starts_with(b"HTTP/1.1 429 "),
        "{}",
        String::from_utf8_lossy(&second)
    );
    let field = |line: &str, name: &str| -> String {
        let v: miniserde::json::Value = miniserde::json::from_str(line).unwrap();
        let miniserde::json::Value::Object(o) = v else {
            panic!()
        };
        match o.get(name) {
            Some(miniserde::json::Value::String(s)) => s.clone(),
            Some(other) => miniserde::json::to_string(other),
            None => String::new(),
        }
    };
    let ok = gw.wait_for_log("\"responseCode\":200");
    let throttled = gw.wait_for_log("\"responseCode\":429");
    assert_eq!(field(&throttled, "subscriptionId"), "s-gold");
    assert_eq!(field(&throttled, "errorReason"), "rate_limit_exceeded");
    assert_eq!(field(&throttled, "apiId"), "api1");
    for (line, answer) in [(&ok, &first), (&throttled, &second)] {
        assert_eq!(field(line, "requestSize"), raw.len().to_string(), "{line}");
        assert_eq!(
            field(line, "responseSize"),
            answer.len().to_string(),
            "{line}"
        );
    }
}

/// retry's count and interval, forward-request's timeout, limit-concurrency's
/// max-count and every check-header attribute may be expressions, computed per call;
/// a value outside the attribute's set fails the call through on-error.
#[test]
fn attributes_apim_lets_expressions_give_are_computed_per_call() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let origin = Origin::start(move |req, s| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        if req.target.contains("slow") {
            std::thread::sleep(Duration::from_millis(1500));
            respond(s, 200, &[], b"late");
        } else {
            respond(s, 503, &[("X-Attempt", &n.to_string())], b"busy");
        }
        true
    });
    let tries = r#"@(int.Parse(context.Request.Headers.GetValueOrDefault("X-Tries", "1")))"#;
    let timeout = r#"@(context.Request.Headers.GetValueOrDefault("X-Timeout", "5"))"#;
    let backend = format!(
        r#"<policies><inbound /><backend><limit-concurrency key="all" max-count="@(1 + 1)"><retry condition="@(context.Response.StatusCode == 503)" count="{tries}" interval="@(0)" first-fast-retry="@(true)"><forward-request timeout="{timeout}" /></retry></limit-concurrency></backend><outbound /><on-error><set-header name="X-Error" exists-action="override"><value>@(context.LastError.Source + "|" + context.LastError.Reason + "|" + context.LastError.Message)</value></set-header></on-error></policies>"#
    );
    let gw = Gateway::start(
        &config(&api(&origin.url(""), false, Some(&backend), None), ""),
        &[],
    );
    let reset = || calls.store(0, Ordering::SeqCst);
    for (asked, last_attempt) in [("1", "1"), ("3", "3")] {
        reset();
        let r = send(&gw, "GET", "/a/busy", &[("X-Tries", asked)], "");
        assert_eq!((r.status, r.text().as_str()), (503, "busy"), "{asked}");
        assert_eq!(r.header("X-Attempt"), Some(last_attempt), "{asked}");
    }
    // 51 retries is outside retry's 1..50
    reset();
    let r = send(&gw, "GET", "/a/busy", &[("X-Tries", "51")], "");
    assert_eq!(r.status, 500);
    assert_eq!(
        r.header("X-Error"),
        Some("retry|ExpressionValueEvaluationFailure|Expression evaluation failed. The value '51' is not valid here: expected an integer 1..50")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing was sent");
    // the timeout each call computed
    let r = send(&gw, "GET", "/a/slow", &[("X-Timeout", "1")], "");
    assert_eq!(r.status, 504);
    let r = send(&gw, "GET", "/a/slow", &[("X-Timeout", "10")], "");
    assert_eq!((r.status, r.text().as_str()), (200, "late"));
    let r = send(&gw, "GET", "/a/slow", &[("X-Timeout", "0")], "");
    assert_eq!(
        r.header("X-Error"),
        Some("forward-request|ExpressionValueEvaluationFailure|Expression evaluation failed. The value '0' is not valid here: expected a positive integer (seconds)")
    );

    // check-header: name, status, message, ignore-case and values from expressions
    let inbound = r#"<check-header name="@("X-" + "Tenant")" failed-check-httpcode="@(context.Request.Method == "POST" ? 409 : 401)" failed-check-error-message="@("no tenant for " + context.Request.Method)" ignore-case="@(context.Request.Url.Query.ContainsKey("loose"))"><value>@("ac" + "me")</value></check-header>"#;
    let echo = Origin::echo();
    let gw = Gateway::start(
        &config(
            &api(&echo.url(""), false, Some(&policies(inbound, "", "")), None),
            "",
        ),
        &[],
    );
    let r = send(&gw, "POST", "/a/x", &[], "");
    assert_eq!(
        (r.status, r.text()),
        (409, error_body(409, "no tenant for POST"))
    );
    let r = send(&gw, "GET", "/a/x", &[("X-Tenant", "ACME")], "");
    assert_eq!(
        (r.status, r.text()),
        (401, error_body(401, "no tenant for GET"))
    );
    let r = send(&gw, "GET", "/a/x?loose=1", &[("X-Tenant", "ACME")], "");
    assert_eq!(r.status, 200);
    let r = send(&gw, "GET", "/a/x", &[("X-Tenant", "acme")], "");
    assert_eq!(r.status, 200);
}

/// set-header's and set-query-parameter's name and exists-action, return-response's
/// headers, authentication-basic's credentials, ip-filter's action and addresses and
/// cors's credentials, methods and max age may be expressions, as APIM allows.
#[test]
fn more_attributes_from_expressions() {
    let origin = Origin::echo();
    let inbound = r#"<cors allow-credentials="@(context.Request.Headers.GetValueOrDefault("Origin", "").EndsWith(".trusted"))"><allowed-origins><origin>https://app.trusted</origin><origin>https://app.other</origin></allowed-origins><allowed-methods preflight-result-max-age="@(60 * 5)"><method>@(context.Request.Headers.GetValueOrDefault("X-Extra-Method", "PATCH"))</method></allowed-methods><allowed-headers><header>X-A</header></allowed-headers></cors>
        <ip-filter action="@(context.Request.Headers.ContainsKey("X-Block") ? "forbid" : "allow")"><address>@("127.0.0." + "1")</address></ip-filter>
        <set-header name="@("X-" + context.Request.Method)" exists-action="@(context.Request.Headers.ContainsKey("X-Keep") ? "skip" : "override")"><value>set</value></set-header>
        <set-query-parameter name="@("p" + "1")" exists-action="append"><value>v</value></set-query-parameter>
        <authentication-basic username="@(context.Request.Headers.GetValueOrDefault("X-User", "anon"))" password="{{pass}}" />
        <choose><when condition="@(context.Request.Headers.ContainsKey("X-Answer"))"><return-response><set-status code="202" /><set-header name="@(context.Request.Headers.GetValueOrDefault("X-Answer", ""))" exists-action="override"><value>yes</value></set-header></return-response></when></choose>"#;
    let on_error = r#"<set-header name="X-Error" exists-action="override"><value>@(context.LastError.Source + "|" + context.LastError.Message)</value></set-header>"#;
    let gw = Gateway::start(
        &config(
            &api(
                &origin.url(""),
                false,
                Some(&policies(inbound, "", on_error)),
                None,
            ),
            r#", "namedValues": [{"name": "pass", "value": "pw", "secret": true}]"#,
        ),
        &[],
    );
    let r = send(&gw, "GET", "/a/x?p1=a", &[("X-User", "ann")], "");
    assert_eq!((r.status, r.text().as_str()), (200, "GET /x?p1=a&p1=v\n"));
    let seen = origin.requests().pop().unwrap();
    assert_eq!(seen.header("X-GET"), Some("set"));
    // "ann:pw" in base64
    assert_eq!(seen.header("Authorization"), Some("Basic YW5uOnB3"));
    // exists-action "skip" from the expression keeps the client's header
    send(
        &gw,
        "PUT",
        "/a/x",
        &[("X-PUT", "mine"), ("X-Keep", "1")],
        "",
    );
    assert_eq!(
        origin.requests().pop().unwrap().header("X-PUT"),
        Some("mine")
    );
    // ip-filter: the same address list, now forbidden
    let r = send(&gw, "GET", "/a/x", &[("X-Block", "1")], "");
    assert_eq!(r.status, 403);
    // return-response with a header name from an expression; a name that is not a
    // header name fails the call
    let r = send(&gw, "GET", "/a/x", &[("X-Answer", "X-Done")], "");
    assert_eq!((r.status, r.header("X-Done")), (202, Some("yes")));
    let r = send(&gw, "GET", "/a/x", &[("X-Answer", "bad name")], "");
    assert_eq!(r.status, 500);
    assert_eq!(
        r.header("X-Error"),
        Some("return-response|Expression evaluation failed. 'bad name' is not a valid header name")
    );
    // cors: credentials for one origin only, the method and max age from expressions
    let preflight = |origin: &str, method: &str| {
        send(
            &gw,
            "OPTIONS",
            "/a/x",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", method),
                ("X-Extra-Method", "PURGE"),
            ],
            "",
        )
    };
    let r = preflight("https://app.trusted", "PURGE");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Access-Control-Allow-Methods"), Some("PURGE"));
    assert_eq!(r.header("Access-Control-Allow-Credentials"), Some("true"));
    assert_eq!(r.header("Access-Control-Max-Age"), Some("300"));
    let r = preflight("https://app.other", "PURGE");
    assert_eq!(
        r.header("Access-Control-Allow-Origin"),
        Some("https://app.other")
    );
    assert_eq!(r.header("Access-Control-Allow-Credentials"), None);
    let r = preflight("https://app.other", "PATCH");
    assert_eq!(r.header("Access-Control-Allow-Origin"), None, "not allowed");
}

/// Without <allowed-methods>, a cors policy allows GET and POST, as APIM documents.
#[test]
fn cors_without_allowed_methods_allows_get_and_post() {
    let origin = Origin::echo();
    let cors = r#"<cors><allowed-origins><origin>*</origin></allowed-origins></cors>"#;
    let gw = Gateway::start(
        &config(
            &api(&origin.url(""), false, Some(&policies(cors, "", "")), None),
            "",
        ),
        &[],
    );
    for (method, allowed) in [("GET", true), ("POST", true), ("PUT", false)] {
        let r = send(
            &gw,
            "OPTIONS",
            "/a/x",
            &[
                ("Origin", "https://any.example"),
                ("Access-Control-Request-Method", method),
            ],
            "",
        );
        assert_eq!(r.status, 200, "{method}");
        let want = allowed.then_some("GET,POST");
        assert_eq!(r.header("Access-Control-Allow-Methods"), want, "{method}");
    }
}

/// set-backend-service's backend-id may be an expression: each call goes to the
/// backend it names, and a name the config does not have fails the call.
#[test]
fn a_computed_backend_id_picks_the_backend_per_call() {
    let one = Origin::text("one");
    let two = Origin::text("two");
    let inbound = r#"<set-backend-service backend-id="@(context.Request.Headers.GetValueOrDefault("X-Backend", "b1"))" />"#;
    let on_error = r#"<set-header name="X-Error" exists-action="override"><value>@(context.LastError.Reason + "|" + context.LastError.Message)</value></set-header>"#;
    let gw = Gateway::start(
        &config(
            &api(
                "http://127.0.0.1:9",
                false,
                Some(&policies(inbound, "", on_error)),
                None,
            ),
            &format!(
                r#", "backends": [{{"id": "b1", "url": "{}"}}, {{"id": "b2", "url": "{}"}}]"#,
                one.url(""),
                two.url("")
            ),
        ),
        &[],
    );
    assert_eq!(send(&gw, "GET", "/a/x", &[], "").text(), "one");
    let r = send(&gw, "GET", "/a/x", &[("X-Backend", "b2")], "");
    assert_eq!((r.status, r.text().as_str()), (200, "two"));
    let r = send(&gw, "GET", "/a/x", &[("X-Backend", "b3")], "");
    assert_eq!(r.status, 500);
    assert_eq!(
        r.header("X-Error"),
        Some("BackendNotFound|Backend 'b3' is not defined in backends.")
    );
}

/// `<retry>` around policies that end with forward-request (the load-balancing pattern
/// of APIM's samples): the policies run again before each attempt, seeing the last
/// response, so a 429 from one backend sends the next attempt to another; a
/// return-response among them answers instead of another attempt.
#[test]
fn retry_runs_its_policies_again_before_each_attempt() {
    let busy = Origin::start(|_, s| {
        respond(s, 429, &[("Retry-After", "5")], b"busy");
        true
    });
    let spare = Origin::start(|req, s| {
        let mut body = b"spare got ".to_vec();
        body.extend_from_slice(&req.body);
        respond(s, 200, &[], &body);
        true
    });
    let backend = r#"<policies><inbound /><backend>
        <retry condition="@(context.Response.StatusCode == 429)" count="2" interval="0" first-fast-retry="true">
          <choose>
            <when condition="@(context.Response.StatusCode == 429 &amp;&amp; context.Request.Headers.ContainsKey("X-Give-Up"))">
              <return-response><set-status code="503" reason="Busy" /><set-body>@("all busy after " + context.Response.StatusCode)</set-body></return-response>
            </when>
            <when condition="@(context.Response.StatusCode == 429)">
              <set-backend-service backend-id="spare" />
              <set-header name="X-Attempt" exists-action="override"><value>second</value></set-header>
            </when>
            <otherwise><set-backend-service backend-id="busy" /></otherwise>
          </choose>
          <set-body>@(context.Request.Body.As<string>(preserveContent: true) + "!")</set-body>
          <forward-request timeout="5" />
        </retry>
      </backend><outbound /><on-error><base /></on-error></policies>"#;
    let gw = Gateway::start(
        &config(
            &api("http://127.0.0.1:9", false, Some(backend), None),
            &format!(
                r#", "backends": [{{"id": "busy", "url": "{}"}}, {{"id": "spare", "url": "{}"}}]"#,
                busy.url(""),
                spare.url("")
            ),
        ),
        &[],
    );
    let r = send(&gw, "POST", "/a/items/1", &[], "payload");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "spare got payload!!"),
        "the second attempt went to the spare backend with the body edited twice"
    );
    let first = busy.requests();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].body, b"payload!");
    assert_eq!(first[0].header("X-Attempt"), None);
    let second = spare.requests();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].header("X-Attempt"), Some("second"));
    assert_eq!(second[0].header("Content-Length"), Some("9"));
    assert_eq!(second[0].target, "/items/1");

    // the policies answer instead of another attempt
    let r = send(&gw, "POST", "/a/items/2", &[("X-Give-Up", "1")], "x");
    assert_eq!((r.status, r.text().as_str()), (503, "all busy after 429"));
    assert_eq!(busy.requests().len(), 2);
    assert_eq!(spare.requests().len(), 1);

    // a backend that cannot be reached counts as the gateway's 502 for the policies too
    let failover = r#"<policies><inbound /><backend>
        <retry condition="@(context.Response.StatusCode == 502)" count="1" interval="0">
          <choose>
            <when condition="@(context.Response.StatusCode == 502)"><set-backend-service backend-id="spare" /></when>
            <otherwise><set-backend-service backend-id="down" /></otherwise>
          </choose>
          <forward-request />
        </retry>
      </backend><outbound /><on-error><base /></on-error></policies>"#;
    let gw = Gateway::start(
        &config(
            &api("http://127.0.0.1:9", false, Some(failover), None),
            &format!(
                r#", "backends": [{{"id": "down", "url": "http://127.0.0.1:9"}}, {{"id": "spare", "url": "{}"}}]"#,
                spare.url("")
            ),
        ),
        &[],
    );
    let r = send(&gw, "GET", "/a/items/3", &[], "");
    assert_eq!((r.status, r.text().as_str()), (200, "spare got "));
    assert_eq!(spare.requests().len(), 2);
}

/// A policy fragment included directly in `<backend>` may hold the forward-request
/// (with a retry around it), as Microsoft's GenAI gateway fragments do.
#[test]
fn a_fragment_in_the_backend_section_may_forward_the_request() {
    let busy = Origin::start(|_, s| {
        respond(s, 429, &[], b"busy");
        true
    });
    let spare = Origin::text("spare");
    let fragment = r#"<fragment>
  <retry condition="@(context.Response.StatusCode == 429)" count="1" interval="0">
    <choose>
      <when condition="@(context.Response.StatusCode == 429)"><set-backend-service backend-id="@("sp" + "are")" /></when>
      <otherwise><set-backend-service backend-id="busy" /></otherwise>
    </choose>
    <forward-request />
  </retry>
</fragment>"#;
    let backend = r#"<policies><inbound /><backend><include-fragment fragment-id="balance" /></backend><outbound /><on-error /></policies>"#;
    let gw = Gateway::start(
        &config(
            &api("http://127.0.0.1:9", false, Some(backend), None),
            &format!(
                r#", "backends": [{{"id": "busy", "url": "{}"}}, {{"id": "spare", "url": "{}"}}], "fragments": [{{"id": "balance", "policy": {}}}]"#,
                busy.url(""),
                spare.url(""),
                js(fragment)
            ),
        ),
        &[],
    );
    let r = send(&gw, "GET", "/a/items/1", &[], "");
    assert_eq!((r.status, r.text().as_str()), (200, "spare"));
    assert_eq!(busy.requests().len(), 1);
}

/// forward-request follow-redirects="true": the gateway follows 301/302/303/307/308
/// (a 302 to a POST becomes a GET without body, a 307 keeps both), to the same backend
/// for a path or to the address a URL names, at most 10 times; without it the 3xx goes
/// to the client.
#[test]
fn forward_request_follows_redirects_when_asked() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let other = Origin::start(|req, s| {
        let text = format!(
            "other {} {} {}",
            req.method,
            req.target,
            String::from_utf8_lossy(&req.body)
        );
        respond(s, 200, &[], text.as_bytes());
        true
    });
    let other_url = other.url("");
    let loops = Arc::new(AtomicUsize::new(0));
    let seen_loops = loops.clone();
    let first = Origin::start(move |req, s| {
        let moved = format!("{other_url}/moved?x=1");
        match req.target.as_str() {
            "/start" => respond(s, 302, &[("Location", &moved)], b"go"),
            "/temp" => respond(s, 307, &[("Location", "/kept")], b""),
            "/loop" => {
                seen_loops.fetch_add(1, Ordering::SeqCst);
                respond(s, 302, &[("Location", "/loop")], b"again")
            }
            _ => {
                let text = format!(
                    "first {} {} {}",
                    req.method,
                    req.target,
                    String::from_utf8_lossy(&req.body)
                );
                respond(s, 200, &[], text.as_bytes())
            }
        }
        true
    });
    let follow = r#"<policies><inbound /><backend><forward-request follow-redirects="true" /></backend><outbound /><on-error /></policies>"#;
    let gw = Gateway::start(
        &config(&api(&first.url(""), false, Some(follow), None), ""),
        &[],
    );
    let r = send(&gw, "GET", "/a/start", &[], "");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "other GET /moved?x=1 ")
    );
    let r = send(&gw, "POST", "/a/start", &[], "payload");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "other GET /moved?x=1 "),
        "a 302 to a POST becomes a GET without body"
    );
    let r = send(&gw, "POST", "/a/temp", &[], "keep");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "first POST /kept keep")
    );
    let r = send(&gw, "GET", "/a/loop", &[], "");
    assert_eq!((r.status, r.header("Location")), (302, Some("/loop")));
    assert_eq!(
        loops.load(Ordering::SeqCst),
        11,
        "the request and 10 redirects"
    );

    // without follow-redirects the client gets the 302
    let gw = Gateway::start(&config(&api(&first.url(""), false, None, None), ""), &[]);
    let r = send(&gw, "GET", "/a/start", &[], "");
    assert_eq!((r.status, r.text().as_str()), (302, "go"));
}

/// The first example of Microsoft's rewrite-uri reference page, as written there (a
/// bare `&` in the template attribute included).
#[test]
fn microsofts_rewrite_uri_example() {
    let origin = Origin::echo();
    let store = r#"<policies>
    <inbound>
        <base />
        <rewrite-uri template="/v2/US/hardware/{storenumber}&{ordernumber}?City=city&State=state" />
    </inbound>
    <outbound>
        <base />
    </outbound>
</policies>"#;
    let doc = format!(
        r#"{{"schemaVersion": 1, "apis": [{{"id": "r", "path": "r", "serviceUrl": "{}", "subscriptionRequired": false,
            "operations": [{{"id": "store", "method": "GET", "urlTemplate": "/{{storenumber}}/{{ordernumber}}", "policies": {}}}]}}]}}"#,
        origin.url(""),
        js(store),
    );
    let gw = Gateway::start(&doc, &[]);
    let r = send(&gw, "GET", "/r/123/456?City=x", &[], "");
    assert_eq!(
        r.text(),
        "GET /v2/US/hardware/123&456?City=city&State=state\n"
    );
}

/// The other two examples of the rewrite-uri page: the operation's template is
/// `/get?a={b}`, the request `/get?a=b&c=d`; rewriting to `/put` copies the unmatched
/// `c` (not `a`, which the template matched) unless copy-unmatched-params is false.
/// Around them, what query parameters in a urlTemplate do: the operation is chosen by
/// them (missing one: no match, 404), and their values are MatchedParameters.
#[test]
fn microsofts_rewrite_uri_examples_with_query_templates() {
    let origin = Origin::echo();
    let rewrite = |copy: &str| {
        js(&format!(
            r#"<policies>
    <inbound>
        <base />
        <rewrite-uri template="/put"{copy} />
    </inbound>
    <outbound>
        <base />
    </outbound>
</policies>"#
        ))
    };
    let doc = format!(
        r#"{{"schemaVersion": 1, "apis": [{{"id": "r", "path": "r", "serviceUrl": "{}", "subscriptionRequired": false,
            "operations": [
              {{"id": "copy", "method": "GET", "urlTemplate": "/get?a={{b}}", "policies": {}}},
              {{"id": "no-copy", "method": "GET", "urlTemplate": "/get2?a={{b}}", "policies": {}}},
              {{"id": "list", "method": "GET", "urlTemplate": "/things?action=list"}},
              {{"id": "one", "method": "GET", "urlTemplate": "/things/{{id}}?view={{view}}&v=2",
                "policies": "<policies><inbound><set-header name=\"X-Matched\"><value>@(string.Join(\",\", context.Request.MatchedParameters.Select(p => p.Key + \"=\" + p.Value)))</value></set-header><rewrite-uri template=\"/items/{{id}}?mode={{view}}\" /></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"}}]}}]}}"#,
        origin.url(""),
        rewrite(""),
        rewrite(r#" copy-unmatched-params="false""#),
    );
    let gw = Gateway::start(&doc, &[]);
    let r = send(&gw, "GET", "/r/get?a=b&c=d", &[], "");
    assert_eq!((r.status, r.text().as_str()), (200, "GET /put?c=d\n"));
    let r = send(&gw, "GET", "/r/get2?a=b&c=d", &[], "");
    assert_eq!((r.status, r.text().as_str()), (200, "GET /put\n"));
    // a required query parameter missing, or a literal one different: no operation
    for path in [
        "/r/get?c=d",
        "/r/things?action=delete",
        "/r/things/7?view=full&v=3",
    ] {
        let r = send(&gw, "GET", path, &[], "");
        assert_eq!(r.status, 404, "{path}");
    }
    let r = send(&gw, "GET", "/r/things?x=1&action=list", &[], "");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "GET /things?x=1&action=list\n")
    );
    let r = send(&gw, "GET", "/r/things/7?v=2&view=a%20b&z=1", &[], "");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "GET /items/7?mode=a%20b&z=1\n");
    let seen = origin.requests().pop().expect("the origin saw the call");
    assert_eq!(values(&seen, "X-Matched"), ["id=7,view=a b"]);
}

/// cross-domain in the global policy: the gateway serves the policy document at
/// /crossdomain.xml (a path no API has); every other call goes on as before.
#[test]
fn cross_domain_serves_the_flash_policy_file() {
    let origin = Origin::echo();
    let global = r#"<policies><inbound><cross-domain>
    <cross-domain-policy>
        <allow-http-request-headers-from domain="*" headers="*" />
    </cross-domain-policy>
</cross-domain></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"#;
    let gw = Gateway::start(
        &config(
            &api(&origin.url(""), false, None, None),
            &format!(r#", "policies": {}"#, js(global)),
        ),
        &[],
    );
    let r = send(&gw, "GET", "/crossdomain.xml", &[], "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/x-cross-domain-policy"));
    assert_eq!(
        r.text(),
        "<?xml version=\"1.0\"?>\n<cross-domain-policy>\n        <allow-http-request-headers-from domain=\"*\" headers=\"*\" />\n    </cross-domain-policy>\n"
    );
    assert_eq!(
        send(&gw, "GET", "/a/items/1", &[], "").text(),
        "GET /items/1\n"
    );
    assert_eq!(send(&gw, "GET", "/nowhere", &[], "").status, 404);
    // only at global scope, as APIM
    let doc = config(
        &api(
            &origin.url(""),
            false,
            Some("<policies><inbound><cross-domain><cross-domain-policy /></cross-domain></inbound></policies>"),
            None,
        ),
        "",
    );
    let path = temp_dir("crossdomain").join("c.json");
    std::fs::write(&path, doc).unwrap();
    let out = std::process::Command::new(BIN)
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    let err =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("<cross-domain> is allowed in the global policy only"),
        "{err}"
    );
}

/// The built-in cache, as Microsoft's custom-caching sample uses it: look a value up by
/// key, compute and store it on a miss (the variable is then unset, so `ContainsKey`
/// tells), use it; `default-value` answers a miss; cache-remove-value drops a key. With
/// `cache.memory.max=0` nothing is kept and every lookup misses.
#[test]
fn cache_values_by_key() {
    let user = r#"context.Request.Headers.GetValueOrDefault("X-User", "")"#;
    let profile = format!(
        r#"<policies><inbound>
    <cache-lookup-value key="@("userprofile-" + {user})" variable-name="userprofile" />
    <choose>
        <when condition="@(!context.Variables.ContainsKey("userprofile"))">
            <set-variable name="userprofile" value="@("profile of " + {user} + " made by " + context.RequestId)" />
            <cache-store-value key="@("userprofile-" + {user})" value="@((string)context.Variables["userprofile"])" duration="3600" caching-type="internal" />
        </when>
    </choose>
    <cache-lookup-value key="never-stored" default-value="none" variable-name="fallback" />
    <return-response><set-body>@((string)context.Variables["userprofile"] + "|" + (string)context.Variables["fallback"])</set-body></return-response>
</inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"#
    );
    let forget = format!(
        r#"<policies><inbound><cache-remove-value key="@("userprofile-" + {user})" /><return-response><set-status code="204" /></return-response></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"#
    );
    let doc = format!(
        r#"{{"schemaVersion": 1, "apis": [{{"id": "c", "path": "c", "serviceUrl": "http://127.0.0.1:9", "subscriptionRequired": false,
            "operations": [
              {{"id": "profile", "method": "GET", "urlTemplate": "/profile", "policies": {}}},
              {{"id": "forget", "method": "DELETE", "urlTemplate": "/profile", "policies": {}}}]}}]}}"#,
        js(&profile),
        js(&forget),
    );
    let gw = Gateway::start(
        &doc,
        &[
            "telemetry.metrics.local=prometheus",
            "telemetry.metrics.local.prometheus.listen=127.0.0.1:0",
        ],
    );
    let get = |who: &str| {
        let r = send(&gw, "GET", "/c/profile", &[("X-User", who)], "");
        assert_eq!(r.status, 200);
        let text = r.text();
        let (profile, fallback) = text.split_once('|').expect("profile|fallback");
        assert_eq!(fallback, "none");
        assert!(
            profile.starts_with(&format!("profile of {who} made by ")),
            "{text}"
        );
        profile.to_string()
    };
    let alice = get("alice");
    assert_eq!(
        get("alice"),
        alice,
        "the second call reads the stored value"
    );
    let bob = get("bob");
    assert_ne!(bob, alice);
    assert_eq!(get("bob"), bob);
    assert_eq!(
        send(&gw, "DELETE", "/c/profile", &[("X-User", "alice")], "").status,
        204
    );
    let again = get("alice");
    assert_ne!(again, alice, "removed: computed anew");
    assert_eq!(get("alice"), again);
    assert_eq!(get("bob"), bob, "other keys stay");
    // counted: seven calls, each a lookup of the profile (3 misses) and of the absent key
    let want = [
        "edgegate_cache_hits_total 4",
        "edgegate_cache_misses_total 10",
        "edgegate_cache_stores_total 3",
        "edgegate_cache_entries 2",
    ];
    let scrape = || {
        request(
            gw.metrics_addr(),
            "GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
        )
        .text()
    };
    assert!(
        eventually(Duration::from_secs(5), || {
            let text = scrape();
            want.iter().all(|w| text.lines().any(|l| l == *w))
        }),
        "{}",
        scrape()
    );

    let off = Gateway::start(&doc, &["cache.memory.max=0"]);
    let r1 = send(&off, "GET", "/c/profile", &[("X-User", "carol")], "").text();
    let r2 = send(&off, "GET", "/c/profile", &[("X-User", "carol")], "").text();
    assert!(
        r1.starts_with("profile of carol made by ") && r1.ends_with("|none"),
        "{r1}"
    );
    assert_ne!(r1, r2, "no cache: every lookup misses");

    // caching-type="external" without cache.external.url: the built-in cache serves it
    let external = doc.replace(
        r#"caching-type=\"internal\""#,
        r#"caching-type=\"external\""#,
    );
    assert_ne!(external, doc);
    let ext = Gateway::start(&external, &[]);
    let first = send(&ext, "GET", "/c/profile", &[("X-User", "dave")], "").text();
    assert_eq!(
        send(&ext, "GET", "/c/profile", &[("X-User", "dave")], "").text(),
        first,
        "kept in the built-in cache"
    );
}
