//! The expression language through the real binary: bodies read as JSON and edited,
//! APIM's preserveContent semantics, response bodies, statement blocks feeding choose and
//! headers, and failures (bad JSON, a runaway loop) going through on-error with
//! `context.LastError` filled, against real origins on 127.0.0.1.

use crate::common::*;

/// One API at path `e` → `origin` with one catch-all operation carrying `policy`.
fn config(origin: &str, policy: &str) -> String {
    format!(
        r#"{{"schemaVersion": 1, "version": "e1", "apis": [
            {{"id": "e", "path": "e", "serviceUrl": "{origin}", "subscriptionRequired": false,
              "operations": [{{"id": "any", "method": "*", "urlTemplate": "/*", "policies": {}}}]}}]}}"#,
        js(policy)
    )
}

fn policies(inbound: &str, outbound: &str, on_error: &str) -> String {
    format!(
        "<policies><inbound>{inbound}</inbound><backend><base /></backend><outbound>{outbound}</outbound><on-error>{on_error}</on-error></policies>"
    )
}

fn post(gw: &Gateway, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    raw.push_str(body);
    request(gw.addr, &raw)
}

/// The chain typical of real documents: the body as a JObject (preserved) in a
/// variable, a choose on a value in it, a block that edits it with LINQ and sets it as
/// the new body, and a header from an interpolated string.
#[test]
fn a_request_body_is_read_as_json_edited_and_forwarded() {
    let origin = Origin::echo();
    let inbound = r#"
        <set-variable name="order" value="@(context.Request.Body.As<JObject>(preserveContent: true))" />
        <choose>
          <when condition="@(((JObject)context.Variables["order"])["total"].Value<int>() > 100)">
            <set-header name="X-Review" exists-action="override"><value>required</value></set-header>
          </when>
          <otherwise>
            <set-header name="X-Review" exists-action="override"><value>none</value></set-header>
          </otherwise>
        </choose>
        <set-header name="X-Summary" exists-action="override">
          <value>@{
            var order = (JObject)context.Variables["order"];
            var items = (JArray)order["items"];
            return $"{context.Request.Method} {order["id"]} items={items.Count} total={order["total"].Value<double>():F2}";
          }</value>
        </set-header>
        <set-body>@{
            var body = context.Request.Body.As<JObject>(preserveContent: true);
            body["items"] = new JArray(((JArray)body["items"]).Select(i => ((string)i).ToUpper()));
            body.Add("via", "edgegate");
            body.Remove("secret");
            return body.ToString(Formatting.None);
        }</set-body>"#;
    let gw = Gateway::start(&config(&origin.url(""), &policies(inbound, "", "")), &[]);
    let r = post(
        &gw,
        "/e/orders",
        &[("Content-Type", "application/json")],
        r#"{"id": "o-1", "total": 250, "items": ["a", "b"], "secret": "s3"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = origin.requests();
    let last = seen.last().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&last.body),
        r#"{"id":"o-1","total":250,"items":["A","B"],"via":"edgegate"}"#
    );
    assert_eq!(last.header("Content-Length"), Some("59"));
    assert_eq!(last.header("X-Review"), Some("required"));
    assert_eq!(
        last.header("X-Summary"),
        Some("POST o-1 items=2 total=250.00")
    );

    let r = post(
        &gw,
        "/e/orders",
        &[],
        r#"{"id": "o-2", "total": 5, "items": []}"#,
    );
    assert_eq!(r.status, 200);
    let seen = origin.requests();
    let last = seen.last().unwrap();
    assert_eq!(last.header("X-Review"), Some("none"));
    assert_eq!(
        String::from_utf8_lossy(&last.body),
        r#"{"id":"o-2","total":5,"items":[],"via":"edgegate"}"#
    );
}

/// Without preserveContent the body is consumed, as in APIM: later readers see it
/// empty and the backend gets no body unless a set-body gives one.
#[test]
fn reading_a_body_without_preserve_content_consumes_it() {
    let origin = Origin::echo();
    let inbound = r#"
        <set-variable name="length" value="@(context.Request.Body.As<string>().Length)" />
        <set-header name="X-Length" exists-action="override"><value>@(context.Variables["length"].ToString())</value></set-header>
        <set-header name="X-After" exists-action="override"><value>@("[" + context.Request.Body.As<string>(true) + "]")</value></set-header>"#;
    let gw = Gateway::start(&config(&origin.url(""), &policies(inbound, "", "")), &[]);
    let r = post(&gw, "/e/x", &[], "twelve bytes");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = origin.requests();
    let last = seen.last().unwrap();
    assert_eq!(last.header("X-Length"), Some("12"));
    assert_eq!(last.header("X-After"), Some("[]"));
    assert!(last.body.is_empty(), "{:?}", last.body);
    assert_eq!(last.header("Content-Length"), Some("0"));

    // with preserveContent the original goes on unchanged
    let preserving = inbound.replace("As<string>()", "As<string>(preserveContent: true)");
    let gw = Gateway::start(
        &config(&origin.url(""), &policies(&preserving, "", "")),
        &[],
    );
    let r = post(&gw, "/e/x", &[], "twelve bytes");
    assert_eq!(r.status, 200);
    let seen = origin.requests();
    let last = seen.last().unwrap();
    assert_eq!(last.header("X-After"), Some("[twelve bytes]"));
    assert_eq!(last.body, b"twelve bytes");
}

/// A response body read as JSON in outbound and replaced.
#[test]
fn a_response_body_is_read_and_rewritten() {
    let origin = Origin::start(|_, s| {
        respond(
            s,
            200,
            &[("Content-Type", "application/json")],
            br#"{"data": {"users": [{"name": "ann", "age": 31}, {"name": "bob", "age": 17}]}}"#,
        );
        true
    });
    let outbound = r#"<set-body>@{
        var r = context.Response.Body.As<JObject>();
        var adults = r.SelectToken("data.users").Where(u => (int)u["age"] >= 18).Select(u => u["name"]);
        var result = new JObject(new JProperty("adults", new JArray(adults)), new JProperty("status", context.Response.StatusCode));
        return result.ToString(Formatting.None);
    }</set-body>
    <set-header name="X-Count" exists-action="override"><value>@(context.Response.Headers.Count(h => h.Key.StartsWith("Content")).ToString())</value></set-header>"#;
    let gw = Gateway::start(&config(&origin.url(""), &policies("", outbound, "")), &[]);
    let r = post(&gw, "/e/users", &[], "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), r#"{"adults":["ann"],"status":200}"#);
    assert_eq!(r.header("Content-Length"), Some("31"));
    assert_eq!(r.header("X-Count"), Some("2"));
}

/// A failing expression is APIM's ExpressionValueEvaluationFailure: on-error runs with
/// `context.LastError` naming the policy; a runaway loop ends at its step budget.
#[test]
fn expression_failures_go_through_on_error() {
    let origin = Origin::echo();
    let inbound = r#"
        <choose>
          <when condition="@(context.Request.Headers.GetValueOrDefault("X-Spin", "") == "yes")">
            <set-variable name="spin" value="@{ var i = 0; while (true) { i++; } return i; }" />
          </when>
        </choose>
        <set-variable name="a" value="@(JObject.Parse(context.Request.Body.As<string>(true))["a"].ToString())" />
        <set-header name="X-A" exists-action="override"><value>@((string)context.Variables["a"])</value></set-header>"#;
    let on_error = r#"<return-response>
        <set-status code="400" reason="Bad" />
        <set-body>@(context.LastError.Source + "|" + context.LastError.Reason + "|" + context.LastError.Section + "|" + context.LastError.Message)</set-body>
      </return-response>"#;
    let gw = Gateway::start(
        &config(&origin.url(""), &policies(inbound, "", on_error)),
        &[],
    );

    let r = post(&gw, "/e/x", &[], r#"{"a": 1}"#);
    assert_eq!(r.status, 200);
    assert_eq!(origin.requests().last().unwrap().header("X-A"), Some("1"));

    let r = post(&gw, "/e/x", &[], r#"{"a": "#);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text(),
        "set-variable|ExpressionValueEvaluationFailure|inbound|Expression evaluation failed. Unexpected end of JSON content"
    );

    let r = post(&gw, "/e/x", &[("X-Spin", "yes")], r#"{"a": 2}"#);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text(),
        "set-variable|ExpressionValueEvaluationFailure|inbound|Expression evaluation failed. the expression ran out of its step budget (limits.expressions.steps.max)"
    );
    // the gateway is still serving
    let r = post(&gw, "/e/x", &[], r#"{"a": 3}"#);
    assert_eq!(r.status, 200);

    // the budget is a setting: the same loop fits the default and not 1000 steps
    let sum = r#"<set-header name="X-Sum" exists-action="override"><value>@{ var n = 0; for (var i = 0; i < 300; i++) { n += i; } return n.ToString(); }</value></set-header>"#;
    let doc = config(&origin.url(""), &policies(sum, "", on_error));
    let gw = Gateway::start(&doc, &[]);
    assert_eq!(post(&gw, "/e/x", &[], "").status, 200);
    assert_eq!(
        origin.requests().last().unwrap().header("X-Sum"),
        Some("44850")
    );
    let gw = Gateway::start(&doc, &["limits.expressions.steps.max=1000"]);
    let r = post(&gw, "/e/x", &[], "");
    assert_eq!(r.status, 400);
    assert!(
        r.text()
            .ends_with("ran out of its step budget (limits.expressions.steps.max)"),
        "{}",
        r.text()
    );
}

/// A form body read as a dictionary of value lists, and a header read through the
/// indexer as the string[] APIM gives.
#[test]
fn form_bodies_and_header_arrays() {
    let origin = Origin::echo();
    let inbound = r#"
        <set-header name="X-User" exists-action="override"><value>@(context.Request.Body.AsFormUrlEncodedContent(true).GetValueOrDefault("user", ""))</value></set-header>
        <set-header name="X-Tags" exists-action="override"><value>@(string.Join("+", context.Request.Body.AsFormUrlEncodedContent(preserveContent: true)["tag"]))</value></set-header>
        <set-header name="X-Lang" exists-action="override"><value>@(context.Request.Headers["Accept-Language"].First().Split(',')[0])</value></set-header>"#;
    let gw = Gateway::start(&config(&origin.url(""), &policies(inbound, "", "")), &[]);
    let r = post(
        &gw,
        "/e/form",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Accept-Language", "fr-CH,fr;q=0.9"),
        ],
        "user=ann+lee&tag=a&tag=b%21",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = origin.requests();
    let last = seen.last().unwrap();
    assert_eq!(last.header("X-User"), Some("ann lee"));
    assert_eq!(last.header("X-Tags"), Some("a+b!"));
    assert_eq!(last.header("X-Lang"), Some("fr-CH"));
    assert_eq!(last.body, b"user=ann+lee&tag=a&tag=b%21");
}

/// `trace` writes into the call's request record (JSON and text logs): severity,
/// source, message and metadata from expressions; verbose traces only at debug level;
/// also for calls a policy answers itself.
#[test]
fn traces_reach_the_request_log() {
    let origin = Origin::echo();
    let inbound = r#"
        <trace source="orders" severity="information">
          <message>@($"order {context.Request.Headers.GetValueOrDefault("X-Order", "-")} \"quoted\"")</message>
          <metadata name="tier" value="@(context.Request.Headers.GetValueOrDefault("X-Tier", "none"))" />
        </trace>
        <trace source="noise"><message>verbose only</message></trace>
        <choose>
          <when condition="@(context.Request.Headers.ContainsKey("X-Stop"))">
            <trace source="stop" severity="error"><message>stopped</message></trace>
            <return-response><set-status code="409" reason="Stopped" /></return-response>
          </when>
        </choose>"#;
    let doc = config(&origin.url(""), &policies(inbound, "", ""));
    let gw = Gateway::start(&doc, &["telemetry.logs.std=json"]);
    let r = post(&gw, "/e/x", &[("X-Order", "o-9"), ("X-Tier", "gold")], "");
    assert_eq!(r.status, 200);
    let line = gw.wait_for_log("\"traces\"");
    assert!(
        line.contains(r#""traces":[{"source":"orders","severity":"information","message":"order o-9 \"quoted\"","metadata":{"tier":"gold"}}]"#),
        "{line}"
    );
    assert!(!line.contains("verbose only"), "{line}");
    let r = post(&gw, "/e/x", &[("X-Stop", "1")], "");
    assert_eq!(r.status, 409);
    let line = gw.wait_for_log("\"source\":\"stop\"");
    assert!(
        line.contains(r#"{"source":"stop","severity":"error","message":"stopped","metadata":{}}"#),
        "{line}"
    );

    // text logs get a line per trace; at debug level verbose traces are kept
    let gw = Gateway::start(
        &doc,
        &["telemetry.logs.std=text", "telemetry.logs.std.level=debug"],
    );
    assert_eq!(post(&gw, "/e/x", &[("X-Order", "o-1")], "").status, 200);
    let line = gw.wait_for_log(" trace ");
    assert!(
        line.contains(
            "source=orders severity=information message=\"order o-1 \\\"quoted\\\"\" tier=\"none\""
        ),
        "{line}"
    );
    let line = gw.wait_for_log("source=noise");
    assert!(
        line.contains("severity=verbose message=\"verbose only\""),
        "{line}"
    );
}

/// Policy fragments in the plane: created and checked at `/admin/policy-fragments`,
/// compiled where an API includes them, refused while in use, sent only to the gateways
/// whose documents use them, and applied by the gateway.
#[test]
fn policy_fragments_through_the_plane() {
    let origin = Origin::echo();
    let plane = Plane::start();
    plane.publish("gw1", "echo", "echo", &origin.url(""));
    plane.publish("gw2", "other", "other", &origin.url(""));
    let put = |path: &str, body: &str| plane.admin("PUT", path, body);
    let fragment = |xml: &str| {
        format!(
            r#"{{"description": "stamps calls", "policy": {}}}"#,
            js(xml)
        )
    };
    let stamp = r#"<fragment><set-header name="X-Stamp" exists-action="override"><value>@(context.Api.Id + "/" + "{{who}}")</value></set-header></fragment>"#;
    assert_eq!(
        put("/admin/named-values/who", r#"{"value": "edge"}"#).0,
        201
    );
    let (s, body) = put("/admin/policy-fragments/stamp", &fragment(stamp));
    assert_eq!(s, 201, "{body}");
    assert_eq!(
        put("/admin/policy-fragments/unused", &fragment("<fragment />")).0,
        201
    );
    let (s, body) = put("/admin/policy-fragments/bad", &fragment("<policies />"));
    assert_eq!(s, 400, "{body}");
    assert!(
        body.contains("the document element of a policy fragment must be <fragment>"),
        "{body}"
    );

    let api = |fragment_id: &str| {
        format!(
            r#"{{"path": "echo", "serviceUrl": "{}", "subscriptionRequired": false, "policies": {}}}"#,
            origin.url(""),
            js(&format!(
                r#"<policies><inbound><include-fragment fragment-id="{fragment_id}" /></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"#
            ))
        )
    };
    let (s, body) = put("/admin/apis/echo", &api("missing"));
    assert_eq!(s, 400, "{body}");
    assert!(
        body.contains("fragment 'missing' is not defined in fragments"),
        "{body}"
    );
    let (s, body) = put("/admin/apis/echo", &api("stamp"));
    assert_eq!(s, 200, "{body}");

    // in use: it cannot go, and a change must still compile where it is included
    let (s, body) = plane.admin("DELETE", "/admin/policy-fragments/stamp", "");
    assert_eq!(
        (
            s,
            body.contains("policy fragment 'stamp' is used by api 'echo'")
        ),
        (409, true),
        "{body}"
    );
    let (s, body) = put(
        "/admin/policy-fragments/stamp",
        &fragment("<fragment><rate-limit /></fragment>"),
    );
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("fragment 'stamp'"), "{body}");
    assert_eq!(
        plane
            .admin("DELETE", "/admin/policy-fragments/unused", "")
            .0,
        204
    );

    let gw = Gateway::start_service(&plane.url(), &plane.token("gw1"), &[]);
    let r = request(
        gw.addr,
        "GET /echo/x HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        origin.requests().last().unwrap().header("X-Stamp"),
        Some("echo/edge")
    );

    // only the documents that use a fragment carry it
    let doc = |gateway: &str| {
        request(
            plane.addr,
            &format!(
                "GET /gateway/config HTTP/1.1\r\nHost: p\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
                plane.token(gateway)
            ),
        )
        .text()
    };
    assert!(doc("gw1").contains(r#""fragments":[{"#), "{}", doc("gw1"));
    assert!(!doc("gw2").contains("fragments"), "{}", doc("gw2"));
}

/// The `context` members a request can read beyond the basics, as the gateway fills
/// them (and GraphQL refused at load with a reason).
#[test]
fn the_context_model() {
    let origin = Origin::echo();
    let inbound = r#"
        <set-header name="X-Api" exists-action="override"><value>@(context.Api.ServiceUrl + "|" + string.Join(",", context.Api.Protocols) + "|" + context.Api.SubscriptionKeyParameterNames.Header + "|" + context.Api.SubscriptionKeyParameterNames.Query + "|" + context.Api.Revision + "|" + context.Api.IsCurrentRevision + "|" + (context.Api.Version ?? "none"))</value></set-header>
        <set-header name="X-Op" exists-action="override"><value>@(context.Operation.Name + "|" + context.Operation.Method + "|" + context.Operation.UrlTemplate)</value></set-header>
        <set-header name="X-Time" exists-action="override"><value>@((context.Timestamp &lt;= DateTime.UtcNow) + "|" + (context.Elapsed.TotalSeconds &lt; 60) + "|" + context.Tracing + "|" + (context.User == null) + "|" + (context.User.Email == null) + "|" + (context.Request.Certificate == null))</value></set-header>"#;
    let gw = Gateway::start(
        &config(&origin.url("/base"), &policies(inbound, "", "")),
        &[],
    );
    let r = post(&gw, "/e/x", &[], "");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = origin.requests();
    let last = seen.last().unwrap();
    assert_eq!(
        last.header("X-Api"),
        Some(
            format!(
                "{}|http,https|ocp-apim-subscription-key|subscription-key|1|True|none",
                origin.url("/base")
            )
            .as_str()
        )
    );
    assert_eq!(last.header("X-Op"), Some("any|*|/*"));
    assert_eq!(
        last.header("X-Time"),
        Some("True|True|False|True|True|True")
    );

    let graphql = policies(
        r#"<set-variable name="q" value="@(context.GraphQL.Parent)" />"#,
        "",
        "",
    );
    let (code, out, err) = edgegate(&["check", &write_config(&config(&origin.url(""), &graphql))]);
    let err = out + &err;
    assert_ne!(code, 0);
    assert!(
        err.contains("context.GraphQL: GraphQL APIs are not supported"),
        "{err}"
    );
}

fn write_config(doc: &str) -> String {
    let dir = temp_dir("graphql");
    let path = dir.join("config.json");
    std::fs::write(&path, doc).unwrap();
    path.to_string_lossy().into_owned()
}

/// jsonp wraps the response in the callback the query names, and only a JavaScript name.
#[test]
fn jsonp_wraps_the_response_for_a_callback() {
    let origin = Origin::start(|_, s| {
        respond(
            s,
            200,
            &[("Content-Type", "application/json")],
            br#"{"n":1}"#,
        );
        true
    });
    let gw = Gateway::start(
        &config(
            &origin.url(""),
            &policies("", r#"<jsonp callback-parameter-name="cb" />"#, ""),
        ),
        &[],
    );
    let get = |path: &str| {
        request(
            gw.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n"),
        )
    };
    let r = get("/e/x?cb=app.render");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, r#"app.render({"n":1});"#)
    );
    assert_eq!(
        r.header("Content-Type"),
        Some("application/javascript; charset=utf-8")
    );
    assert_eq!(r.header("Content-Length"), Some("20"));
    for plain in ["/e/x", "/e/x?cb=alert(1)//", "/e/x?cb="] {
        let r = get(plain);
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, r#"{"n":1}"#),
            "{plain}"
        );
        assert_eq!(r.header("Content-Type"), Some("application/json"));
    }
}

/// emit-metric counts values into the Prometheus exposition, per namespace, name and
/// dimensions, with APIM's default dimensions filled from the call; also for calls a
/// policy answers itself.
#[test]
fn emit_metric_counts_custom_series() {
    let origin = Origin::echo();
    let inbound = r#"
        <emit-metric name="orders" namespace="shop" value="@(context.Request.Headers.GetValueOrDefault("X-Count", "1"))">
          <dimension name="API ID" />
          <dimension name="Tier" value="@(context.Request.Headers.GetValueOrDefault("X-Tier", "none"))" />
        </emit-metric>
        <choose><when condition="@(context.Request.Headers.ContainsKey("X-Stop"))">
          <return-response><set-status code="204" reason="No Content" /></return-response>
        </when></choose>"#;
    let gw = Gateway::start(
        &config(&origin.url(""), &policies(inbound, "", "")),
        &[
            "telemetry.metrics.local=prometheus",
            "telemetry.metrics.local.prometheus.listen=127.0.0.1:0",
        ],
    );
    let maddr = gw.metrics_addr();
    assert_eq!(
        post(&gw, "/e/x", &[("X-Tier", "gold"), ("X-Count", "2.5")], "").status,
        200
    );
    assert_eq!(post(&gw, "/e/x", &[("X-Tier", "gold")], "").status, 200);
    assert_eq!(post(&gw, "/e/x", &[("X-Stop", "1")], "").status, 204);
    let want = [
        r#"edgegate_custom_metric_sum{namespace="shop",metric="orders",API_ID="e",Tier="gold"} 3.5"#,
        r#"edgegate_custom_metric_count{namespace="shop",metric="orders",API_ID="e",Tier="gold"} 2"#,
        r#"edgegate_custom_metric_count{namespace="shop",metric="orders",API_ID="e",Tier="none"} 1"#,
    ];
    let scrape = || {
        request(
            maddr,
            "GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
        )
        .text()
    };
    assert!(
        eventually(std::time::Duration::from_secs(5), || {
            let text = scrape();
            want.iter().all(|w| text.lines().any(|l| l == *w))
        }),
        "{}",
        scrape()
    );
    // a value that is not a number fails the policy through on-error
    let r = post(&gw, "/e/x", &[("X-Count", "many")], "");
    assert_eq!(r.status, 500);
}

/// set-body with a Liquid template over a JSON body, headers and variables; a Liquid
/// `{{who}}` is the template's, never the named value of the same name, which the rest
/// of the document still gets.
#[test]
fn liquid_templates_render_bodies() {
    let origin = Origin::echo();
    let inbound = r#"
        <set-header name="X-Who" exists-action="override"><value>{{who}}</value></set-header>
        <set-variable name="region" value="eu" />
        <set-body template="liquid">{% assign who = "liquid" %}{"customer": "{{ body.name | upcase }}", "who": "{{who}}", "via": "{{ context.Request.Headers["X-Via"] | default: "none" }}", "region": "{{ context.Variables["region"] }}", "items": [{% for item in body.items limit:2 %}"{{ item.sku | append: "-" | append: item.qty }}"{% if item.qty > 1 %}, "bulk"{% endif %}{% unless forloop.last %}, {% endunless %}{% endfor %}], "n": "{% for i in body.items reversed %}{{ forloop.index }}{{ i.sku }}{% endfor %}", "count": {{ body.items | size }}, "total": {{ body.total | times: 2 | plus: 1 }}{% comment %} ignored {{ nope }} {% endcomment %}}</set-body>"#;
    let doc = format!(
        r#"{{"schemaVersion": 1, "version": "l1", "namedValues": [{{"name": "who", "value": "named-value"}}],
            "apis": [{{"id": "e", "path": "e", "serviceUrl": "{}", "subscriptionRequired": false,
              "operations": [{{"id": "any", "method": "*", "urlTemplate": "/*", "policies": {}}}]}}]}}"#,
        origin.url(""),
        js(&policies(inbound, "", ""))
    );
    let gw = Gateway::start(&doc, &[]);
    let r = post(
        &gw,
        "/e/x",
        &[("X-Via", "edge")],
        r#"{"name": "ann", "total": 20, "items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 3}, {"sku": "c", "qty": 1}]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = origin.requests();
    let last = seen.last().unwrap();
    assert_eq!(last.header("X-Who"), Some("named-value"));
    assert_eq!(
        String::from_utf8_lossy(&last.body),
        r#"{"customer": "ANN", "who": "liquid", "via": "edge", "region": "eu", "items": ["a-1", "b-3", "bulk"], "n": "1c2b3a", "count": 3, "total": 41}"#
    );
}

/// xml-to-json and json-to-xml as a SOAP backend behind a JSON API uses them: the
/// request's JSON goes to the origin as XML, its XML answer comes back as JSON; the
/// Accept and Content-Type conditions decide, expression attributes are checked per
/// call, and a body that is not XML goes on unchanged.
#[test]
fn xml_and_json_bodies_are_converted() {
    let origin = Origin::start(|req, s| {
        let (ct, body): (&str, &[u8]) = match req.target.as_str() {
            "/soap" => (
                "text/xml; charset=utf-8",
                b"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><Order id=\"7\"><Item>tea</Item><Item>milk</Item><Note/></Order></soap:Body></soap:Envelope>",
            ),
            "/broken" => ("text/xml", b"<Order><Item>tea</Order>"),
            "/plain" => ("text/plain", b"<a>1</a>"),
            _ => ("text/plain", &req.body),
        };
        respond(s, 200, &[("Content-Type", ct)], body);
        true
    });
    let inbound = r##"<json-to-xml apply="content-type-json" consider-accept-header="false" namespace-separator=":" attribute-block-name="#attrs" />"##;
    let outbound = r#"<xml-to-json kind="@(context.Request.Headers.GetValueOrDefault("X-Kind", "direct"))" apply="content-type-xml" />"#;
    let on_error = r#"<return-response><set-status code="500" /><set-body>@(context.LastError.Message)</set-body></return-response>"#;
    let gw = Gateway::start(
        &config(&origin.url(""), &policies(inbound, outbound, on_error)),
        &[],
    );
    let json = [("Accept", "application/json")];

    // The XML answer as JSON, because the caller asked for JSON.
    let r = post(&gw, "/e/soap", &json, "");
    assert_eq!(r.status, 200, "{}", r.text());
    let want = r#"{"version":"1.0","encoding":"utf-8","soap$Envelope":{"@xmlns$soap":"http://schemas.xmlsoap.org/soap/envelope/","soap$Body":{"Order":{"@id":"7","Item":["tea","milk"],"Note":null}}}}"#;
    assert_eq!(r.text(), want);
    assert_eq!(
        r.header("Content-Type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        r.header("Content-Length"),
        Some(want.len().to_string().as_str())
    );
    let r = post(
        &gw,
        "/e/soap",
        &[
            ("Accept", "application/json"),
            ("X-Kind", "javascript-friendly"),
        ],
        "",
    );
    assert_eq!(
        r.text(),
        r#"{"Envelope":{"Body":{"Order":{"@id":"7","Item":["tea","milk"],"Note":null}}}}"#
    );
    // Without Accept: application/json (consider-accept-header defaults to true), or
    // with a body that is not labelled XML, or not well-formed: unchanged.
    for (path, accept, body) in [
        ("/e/soap", "text/xml", None),
        ("/e/soap", "application/json;q=0", None),
        ("/e/plain", "application/json", Some("<a>1</a>")),
        (
            "/e/broken",
            "application/json",
            Some("<Order><Item>tea</Order>"),
        ),
    ] {
        let r = post(&gw, path, &[("Accept", accept)], "");
        assert_eq!(r.status, 200, "{path} {accept}");
        assert!(
            r.header("Content-Type")
                .is_some_and(|c| c.contains("xml") || c == "text/plain"),
            "{path} {accept}"
        );
        if let Some(body) = body {
            assert_eq!(r.text(), body);
        }
    }
    // A kind outside the attribute's set fails the call through on-error.
    let r = post(
        &gw,
        "/e/soap",
        &[("Accept", "application/json"), ("X-Kind", "sideways")],
        "",
    );
    assert_eq!(r.status, 500);
    assert_eq!(
        r.text(),
        "Expression evaluation failed. The value 'sideways' is not valid here: expected javascript-friendly or direct"
    );

    // The request's JSON reaches the origin as XML (echoed back as text/plain).
    let body = r##"{"soap:Envelope":{"xmlns:soap":"http://schemas.xmlsoap.org/soap/envelope/","soap:Body":{"Order":{"#attrs":{"id":"7"},"Item":["tea","milk"],"Paid":true,"Note":null}}}}"##;
    let r = post(
        &gw,
        "/e/order",
        &[("Content-Type", "application/json")],
        body,
    );
    let xml = "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><Order id=\"7\"><Item>tea</Item><Item>milk</Item><Paid>True</Paid><Note xsi:nil=\"true\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" /></Order></soap:Body></soap:Envelope>";
    assert_eq!(r.text(), xml);
    let seen = origin.requests();
    let last = seen.last().expect("the origin saw the call");
    assert_eq!(
        last.header("Content-Type"),
        Some("application/xml; charset=utf-8")
    );
    assert_eq!(
        last.header("Content-Length"),
        Some(xml.len().to_string().as_str())
    );
    // A body not labelled JSON is forwarded as it came.
    let r = post(&gw, "/e/order", &[("Content-Type", "text/plain")], body);
    assert_eq!(r.text(), body);
}

/// Users and groups of the config document reach expressions: a call made with a
/// subscription that belongs to a user carries `context.User` (members, groups with
/// the developers system group, identities), its product's groups, the
/// subscription's keys; a blocked user's key is refused as APIM refuses it.
#[test]
fn users_and_groups_reach_expressions() {
    let origin = Origin::echo();
    let inbound = r#"<choose><when condition="@(context.User == null)"><set-header name="X-User" exists-action="override"><value>anonymous</value></set-header></when>
        <otherwise><set-header name="X-User" exists-action="override"><value>@(context.User.Id + "|" + context.User.Email + "|" + context.User.FirstName + " " + context.User.LastName + "|" + string.Join(",", context.User.Groups.Select(g => g.Id)) + "|" + context.User.Identities.First().Provider + ":" + context.User.Identities.First().Id + "|" + context.User.RegistrationDate.Year + "|" + (context.User.Note ?? "no note"))</value></set-header>
        <set-header name="X-Tier" exists-action="override"><value>@(context.User.Groups.Any(g => g.Name == "Gold partners") ? "gold" : "standard")</value></set-header></otherwise></choose>
        <set-header name="X-Product" exists-action="override"><value>@(string.Join(",", context.Product.Groups.Select(g => g.Name)) + "|" + context.Subscription.PrimaryKey.Substring(0, 6) + "|" + (context.Subscription.SecondaryKey ?? "none"))</value></set-header>"#;
    let doc = format!(
        r#"{{"schemaVersion": 1, "version": "u1", "apis": [
            {{"id": "e", "path": "e", "serviceUrl": "{}", "subscriptionRequired": true,
              "operations": [{{"id": "any", "method": "*", "urlTemplate": "/*", "policies": {}}}]}}],
          "groups": [{{"id": "gold", "displayName": "Gold partners"}}],
          "users": [{{"id": "ann", "email": "ann@example.com", "firstName": "Ann", "lastName": "Lee",
                      "registrationDate": "2024-03-01T10:00:00Z", "groups": ["gold"],
                      "identities": [{{"provider": "Basic", "id": "ann@example.com"}}]}},
                    {{"id": "bob", "email": "bob@example.com", "state": "blocked"}}],
          "products": [{{"id": "p", "apis": ["e"], "groups": ["gold", "developers"]}}],
          "subscriptions": [
            {{"id": "s-ann", "scope": "/products/p", "primaryKey": "ann-key-0001", "ownerId": "/users/ann"}},
            {{"id": "s-none", "scope": "/products/p", "primaryKey": "anon-key-0001", "secondaryKey": "anon-key-0002"}},
            {{"id": "s-bob", "scope": "/products/p", "primaryKey": "bob-key-0001", "ownerId": "/users/bob"}}]}}"#,
        origin.url(""),
        js(&policies(inbound, "", ""))
    );
    let gw = Gateway::start(&doc, &[]);
    let call = |key: &str| post(&gw, "/e/x", &[("Ocp-Apim-Subscription-Key", key)], "");
    let r = call("ann-key-0001");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = origin.requests();
    let last = seen.last().unwrap();
    assert_eq!(
        last.header("X-User"),
        Some("ann|ann@example.com|Ann Lee|gold,developers|Basic:ann@example.com|2024|no note")
    );
    assert_eq!(last.header("X-Tier"), Some("gold"));
    assert_eq!(
        last.header("X-Product"),
        Some("Gold partners,Developers|ann-ke|none")
    );
    let r = call("anon-key-0002");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = origin.requests();
    let last = seen.last().unwrap();
    assert_eq!(last.header("X-User"), Some("anonymous"));
    assert_eq!(
        last.header("X-Product"),
        Some("Gold partners,Developers|anon-k|anon-key-0002")
    );
    // bob is blocked: his subscription's key is refused
    let r = call("bob-key-0001");
    assert_eq!(r.status, 401, "{}", r.text());
}

/// An XML body read as an XDocument in a real call: a value read from a SOAP request
/// goes into a header, the backend's XML answer is rewritten with System.Xml.Linq.
#[test]
fn xml_bodies_are_read_and_built_with_xdocument() {
    let origin = Origin::start(|req, s| {
        let body = format!(
            "<r xmlns=\"urn:r\"><status>ok</status><seen>{}</seen></r>",
            req.header("X-Customer").unwrap_or("-")
        );
        respond(s, 200, &[("Content-Type", "text/xml")], body.as_bytes());
        true
    });
    let inbound = r#"<set-header name="X-Customer" exists-action="override"><value>@{
        XNamespace shop = "urn:shop";
        var doc = context.Request.Body.As<XDocument>(preserveContent: true);
        return (string)doc.Descendants(shop + "Customer").First().Attribute("id");
    }</value></set-header>"#;
    let outbound = r#"<set-body>@{
        var r = context.Response.Body.As<XElement>();
        XNamespace ns = "urn:r";
        var result = new XElement("result", new XAttribute("status", (string)r.Element(ns + "status")), r.Element(ns + "seen").Value);
        return result.ToString(SaveOptions.DisableFormatting);
    }</set-body>"#;
    let gw = Gateway::start(
        &config(&origin.url(""), &policies(inbound, outbound, "")),
        &[],
    );
    let soap = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><Order xmlns="urn:shop"><Customer id="c-42">Ann</Customer></Order></s:Body></s:Envelope>"#;
    let r = post(&gw, "/e/order", &[("Content-Type", "text/xml")], soap);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), r#"<result status="ok">c-42</result>"#);
    // the request body went on unchanged (preserveContent)
    let seen = origin.requests();
    assert_eq!(String::from_utf8_lossy(&seen.last().unwrap().body), soap);
}

/// Forms found in Microsoft's policy snippets: a block in an attribute whose `//`
/// comments hold brackets and span lines, the older `<trace>` with its message as
/// text, `return-response` with a Liquid body using whitespace control,
/// BasicAuthCredentials.UserId, APIM's byte[].Encrypt / Decrypt, and JSONPath filters.
#[test]
fn forms_from_microsofts_policy_snippets() {
    let origin = Origin::echo();
    let inbound = r#"<set-variable name="token" value="@{
            // 1) the key and IV (a comment with a ) and a { in it)
            var key = Convert.FromBase64String("K34VFiiu0qar9xWICc9PPA==");
            var iv = new byte[16];
            // 2) encrypt, then decrypt again
            var sealedBytes = Encoding.UTF8.GetBytes(context.Request.Headers.GetValueOrDefault("X-Secret", "none")).Encrypt("Aes", key, iv);
            return Encoding.UTF8.GetString(sealedBytes.Decrypt("Aes", key, iv)) + ":" + sealedBytes.Length;
        }" />
        <trace source="snippet" severity="information">
            @((string)context.Variables["token"])
        </trace>
        <choose>
            <when condition="@(context.Request.Headers.GetValueOrDefault("Authorization", "").AsBasic()?.UserId == "ann")">
                <return-response>
                    <set-status code="200" reason="OK" />
                    <set-header name="X-Token" exists-action="override"><value>@((string)context.Variables["token"])</value></set-header>
                    <set-body template="liquid">
                        {%- for h in context.Request.Headers -%}
                            {%- if h.Key == "X-Secret" -%}{{ h.Key }}={{ h.Value }};{%- endif -%}
                        {%- endfor -%}
                    </set-body>
                </return-response>
            </when>
        </choose>
        <set-header name="X-Cheap" exists-action="override"><value>@(string.Join(",", JObject.Parse("{\"items\":[{\"id\":1,\"p\":5},{\"id\":2,\"p\":50}]}").SelectTokens("$.items[?(@.p < 10)].id")))</value></set-header>"#;
    let gw = Gateway::start(
        &config(&origin.url(""), &policies(inbound, "", "")),
        &["telemetry.logs.std=json"],
    );
    // "ann:pw"
    let r = request(
        gw.addr,
        "GET /e/x HTTP/1.1\r\nHost: g\r\nAuthorization: Basic YW5uOnB3\r\nX-Secret: s3\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Token"), Some("s3:16"));
    assert_eq!(r.text(), "X-Secret=s3;");
    let r = request(
        gw.addr,
        "GET /e/x HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((r.status, r.text().as_str()), (200, "GET /x\n"));
    let seen = origin.requests().pop().unwrap();
    assert_eq!(seen.header("X-Cheap"), Some("1"));
    // the older trace form reaches the request log
    let line = gw.wait_for_log("\"message\":\"none:16\"");
    assert!(line.contains(r#""source":"snippet""#), "{line}");
}

/// The examples of Microsoft's "API Management policy expressions" page, each through
/// the gateway with the output its documented semantics give.
#[test]
fn microsofts_policy_expression_examples() {
    let origin = Origin::start(|_, s| {
        respond(s, 200, &[("Cache-Control", "public, max-age=600")], b"ok");
        true
    });
    let inbound = r#"<choose><when condition="@(context.Request.Headers.ContainsKey("X-Max"))"><set-variable name="maxAge" value="@(context.Request.Headers.GetValueOrDefault("X-Max", ""))" /></when></choose>"#;
    let outbound = r#"<set-header name="X-1" exists-action="override"><value>@(true)</value></set-header>
        <set-header name="X-2" exists-action="override"><value>@((1+1).ToString())</value></set-header>
        <set-header name="X-3" exists-action="override"><value>@("Hi There".Length)</value></set-header>
        <set-header name="X-4" exists-action="override"><value>@(Regex.Match(context.Response.Headers.GetValueOrDefault("Cache-Control",""), @"max-age=(?<maxAge>\d+)").Groups["maxAge"]?.Value)</value></set-header>
        <set-header name="X-5" exists-action="override"><value>@(context.Variables.ContainsKey("maxAge") ? int.Parse((string)context.Variables["maxAge"]) : 3600)</value></set-header>
        <set-header name="X-6" exists-action="override"><value>@{
  string[] value;
  if (context.Request.Headers.TryGetValue("Authorization", out value))
  {
      if(value != null && value.Length > 0)
      {
          return Encoding.UTF8.GetString(Convert.FromBase64String(value[0]));
      }
  }
  return null;

}</value></set-header>"#;
    let gw = Gateway::start(
        &config(&origin.url(""), &policies(inbound, outbound, "")),
        &[],
    );
    let r = request(
        gw.addr,
        "GET /e/x HTTP/1.1\r\nHost: g\r\nAuthorization: dXNlcjpwYXNz\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let got: Vec<Option<&str>> = (1..=6).map(|i| r.header(&format!("X-{i}"))).collect();
    assert_eq!(
        got,
        [
            Some("True"),
            Some("2"),
            Some("8"),
            Some("600"),
            Some("3600"),
            Some("user:pass")
        ]
    );
    let r = request(
        gw.addr,
        "GET /e/x HTTP/1.1\r\nHost: g\r\nX-Max: 120\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.header("X-5"), Some("120"));
    // no Authorization: the block returns null, and a null value sets an empty header
    assert_eq!(r.header("X-6"), Some(""));
}

/// `context.Trace(message)`, `context.Request.PrivateEndpointConnection` (always null
/// here), `DateTime.IsLeapYear` / `DaysInMonth` from the expressions page's context and
/// type tables.
#[test]
fn context_trace_and_the_rest_of_the_context_table() {
    let origin = Origin::echo();
    let inbound = r#"<set-header name="X-Calendar" exists-action="override"><value>@{
            context.Trace("traced from " + context.Request.Method);
            return DateTime.IsLeapYear(2024) + "/" + DateTime.DaysInMonth(2023, 2) + "/" + (context.Request.PrivateEndpointConnection?.Name ?? "direct");
        }</value></set-header>"#;
    let gw = Gateway::start(
        &config(&origin.url(""), &policies(inbound, "", "")),
        &["telemetry.logs.std=json", "telemetry.logs.std.level=debug"],
    );
    assert_eq!(post(&gw, "/e/x", &[], "").status, 200);
    let seen = origin.requests().pop().unwrap();
    assert_eq!(seen.header("X-Calendar"), Some("True/28/direct"));
    let line = gw.wait_for_log("\"traces\"");
    assert!(
        line.contains(r#"{"source":"context.Trace","severity":"verbose","message":"traced from POST","metadata":{}}"#),
        "{line}"
    );
}

/// The examples of Microsoft's set-body reference page, through the gateway: filtering a
/// response by product name with `Property(key).Remove()`, JSON to SOAP and JSON to JSON
/// with Liquid, a form body to JSON and back to a form; and the Liquid filters the page
/// lists by their PascalCase names.
#[test]
fn microsofts_set_body_examples() {
    let weather = r#"{"lat":33.44,"lon":-94.04,"timezone":"America/Chicago","current":{"temp":292.55},"minutely":[],"hourly":[],"daily":[],"alerts":[]}"#;
    let origin = Origin::start(move |req, s| {
        if req.target.starts_with("/weather") {
            respond(
                s,
                200,
                &[("Content-Type", "application/json")],
                weather.as_bytes(),
            );
        } else {
            let ct = req.header("Content-Type").unwrap_or("-").to_string();
            let mut body = format!("{ct}\n").into_bytes();
            body.extend_from_slice(&req.body);
            respond(s, 200, &[], &body);
        }
        true
    });
    let filter = r#"<choose>
  <when condition="@(context.Response.StatusCode == 200 && context.Product.Name.Equals("Starter"))">
    <set-body>@{
        var response = context.Response.Body.As<JObject>();
        foreach (var key in new [] {"current", "minutely", "hourly", "daily", "alerts"}) {
          response.Property (key).Remove ();
        }
        return response.ToString();
      }
    </set-body>
  </when>
</choose>"#;
    let soap = r#"<set-body template="liquid">
    <soap:Envelope xmlns="http://tempuri.org/" xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
        <soap:Body>
            <GetOpenOrders>
                <cust>{{body.getOpenOrders.cust}}</cust>
            </GetOpenOrders>
        </soap:Body>
    </soap:Envelope>
</set-body>"#;
    let transform = r#"<set-body template="liquid">
{
"order": {
    "id": "{{body.customer.purchase.identifier}}",
    "summary": "{{body.customer.purchase.orderShortDesc}}"
    }
}
</set-body>"#;
    let to_json = r#"<set-body>@{
    var inBody = context.Request.Body.AsFormUrlEncodedContent();
    return JsonConvert.SerializeObject(inBody);
}</set-body>"#;
    let to_form = r#"<set-body>@{
    var body = context.Request.Body.AsFormUrlEncodedContent();
    body["newKey"] = new List<string> { "newValue" };
    return body.ToFormUrlEncodedContent();
}</set-body>"#;
    let filters = r#"<set-body template="liquid">{{ 3 | AtLeast: 5 }} {{ 9 | AtMost: 5 }} {{ "a b c d" | TruncateWords: 2 }} {{ "&lt;p&gt;hi &lt;b&gt;there&lt;/b&gt;&lt;/p&gt;" | StripHtml }} {{ "x-y-y" | RemoveFirst: "y" }} {{ "a&amp;b" | H }}</set-body>"#;
    let op = |id: &str, template: &str, inbound: &str, outbound: &str| {
        format!(
            r#"{{"id": "{id}", "method": "*", "urlTemplate": "{template}", "policies": {}}}"#,
            js(&policies(inbound, outbound, ""))
        )
    };
    let doc = format!(
        r#"{{"schemaVersion": 1, "apis": [{{"id": "e", "path": "e", "serviceUrl": "{}", "subscriptionRequired": true,
            "operations": [{}, {}, {}, {}, {}, {}]}}],
          "products": [{{"id": "starter", "name": "Starter", "apis": ["e"]}}, {{"id": "unlimited", "name": "Unlimited", "apis": ["e"]}}],
          "subscriptions": [{{"id": "s1", "scope": "/products/starter", "primaryKey": "starter-key-1"}},
                            {{"id": "s2", "scope": "/products/unlimited", "primaryKey": "unlimited-key-1"}}]}}"#,
        origin.url(""),
        op("weather", "/weather", "", filter),
        op("soap", "/soap", soap, ""),
        op("transform", "/transform", transform, ""),
        op("tojson", "/tojson", to_json, ""),
        op("toform", "/toform", to_form, ""),
        op("filters", "/filters", filters, ""),
    );
    let gw = Gateway::start(&doc, &[]);
    let key = |k: &'static str| ("Ocp-Apim-Subscription-Key", k);
    let json = ("Content-Type", "application/json");
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let r = post(&gw, "/e/weather", &[key("starter-key-1")], "");
    assert_eq!(
        r.text(),
        "{\n  \"lat\": 33.44,\n  \"lon\": -94.04,\n  \"timezone\": \"America/Chicago\"\n}"
    );
    let r = post(&gw, "/e/weather", &[key("unlimited-key-1")], "");
    assert_eq!(r.text(), weather, "another product gets it whole");
    let r = post(
        &gw,
        "/e/soap",
        &[key("starter-key-1"), json],
        r#"{"getOpenOrders": {"cust": "1234"}}"#,
    );
    assert!(
        r.text().contains("<cust>1234</cust>") && r.text().contains("<soap:Body>"),
        "{}",
        r.text()
    );
    let r = post(
        &gw,
        "/e/transform",
        &[key("starter-key-1"), json],
        r#"{"customer": {"purchase": {"identifier": "o-7", "orderShortDesc": "two books"}}}"#,
    );
    let body = r.text();
    let order = body.split_once('\n').map_or("", |(_, b)| b).trim();
    assert_eq!(
        order,
        "{\n\"order\": {\n    \"id\": \"o-7\",\n    \"summary\": \"two books\"\n    }\n}"
    );
    let r = post(
        &gw,
        "/e/tojson",
        &[key("starter-key-1"), form],
        "a=1&b=x+y&a=2",
    );
    assert_eq!(
        r.text(),
        "application/x-www-form-urlencoded\n{\"a\":[\"1\",\"2\"],\"b\":[\"x y\"]}"
    );
    let r = post(&gw, "/e/toform", &[key("starter-key-1"), form], "a=1&b=x+y");
    assert_eq!(
        r.text(),
        "application/x-www-form-urlencoded\na=1&b=x+y&newKey=newValue"
    );
    let r = post(&gw, "/e/filters", &[key("starter-key-1")], "");
    assert_eq!(r.text(), "-\n5 5 a b... hi there x--y a&amp;b");
}

#[test]
fn the_request_body_compared_with_null_says_whether_there_is_one() {
    let origin = Origin::echo();
    let policy = policies(
        r#"<set-header name="X-Has-Body" exists-action="override"><value>@((context.Request.Body != null).ToString())</value></set-header>"#,
        "",
        "",
    );
    let gw = Gateway::start(&config(&origin.url(""), &policy), &[]);
    assert_eq!(send(&gw, "GET", "/e/x", &[], "").status, 200);
    assert_eq!(post(&gw, "/e/x", &[], "{}").status, 200);
    let seen = origin.requests();
    assert_eq!(seen[0].header("X-Has-Body"), Some("False"));
    assert_eq!(seen[1].header("X-Has-Body"), Some("True"));
}
