//! The external cache through the real binary and a real redis-server: two gateways
//! share cached values; an outage is a miss (calls are still answered) and sharing
//! resumes when Redis is back.

use crate::common::*;
use std::time::Duration;

/// Two operations: `GET /c/profile` computes a user's profile once (Microsoft's
/// custom-caching sample) and `DELETE /c/profile` forgets it.
fn config() -> String {
    let user = r#"context.Request.Headers.GetValueOrDefault("X-User", "")"#;
    let profile = format!(
        r#"<policies><inbound>
    <cache-lookup-value key="@("userprofile-" + {user})" variable-name="userprofile" caching-type="external" />
    <choose>
        <when condition="@(!context.Variables.ContainsKey("userprofile"))">
            <set-variable name="userprofile" value="@("profile of " + {user} + " made by " + context.RequestId)" />
            <cache-store-value key="@("userprofile-" + {user})" value="@((string)context.Variables["userprofile"])" duration="3600" caching-type="external" />
        </when>
    </choose>
    <cache-lookup-value key="counter" default-value="@(0)" variable-name="n" />
    <return-response><set-body>@((string)context.Variables["userprofile"])</set-body></return-response>
</inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"#
    );
    let forget = format!(
        r#"<policies><inbound><cache-remove-value key="@("userprofile-" + {user})" /><return-response><set-status code="204" /></return-response></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"#
    );
    format!(
        r#"{{"schemaVersion": 1, "apis": [{{"id": "c", "path": "c", "serviceUrl": "http://127.0.0.1:9", "subscriptionRequired": false,
            "operations": [
              {{"id": "profile", "method": "GET", "urlTemplate": "/profile", "policies": {}}},
              {{"id": "forget", "method": "DELETE", "urlTemplate": "/profile", "policies": {}}}]}}]}}"#,
        js(&profile),
        js(&forget),
    )
}

/// Waits (bounded) until both gateways are connected to the external cache, so the
/// first value stored is not raced by a miss on a connection still coming up.
fn both_connected(one: &Gateway, two: &Gateway) {
    let up = |g: &Gateway| status(g).contains(r#""externalCache": "up""#);
    assert!(
        eventually(Duration::from_secs(30), || up(one) && up(two)),
        "{}\n{}",
        status(one),
        status(two)
    );
}

fn profile(gw: &Gateway, who: &str) -> String {
    let r = send(gw, "GET", "/c/profile", &[("X-User", who)], "");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

#[test]
fn gateways_share_values_and_an_outage_is_a_miss() {
    let mut redis = Redis::start();
    let setting = format!("cache.external.url={}", redis.url());
    let one = Gateway::start(&config(), &[&setting]);
    let two = Gateway::start(&config(), &[&setting]);
    both_connected(&one, &two);
    let alice = profile(&one, "alice");
    assert!(alice.starts_with("profile of alice made by "), "{alice}");
    // the other gateway reads what the first stored
    assert!(
        eventually(Duration::from_secs(5), || profile(&two, "alice") == alice),
        "shared through redis"
    );
    assert_eq!(profile(&one, "alice"), alice);
    // removed on one, computed anew on the other
    assert_eq!(
        send(&two, "DELETE", "/c/profile", &[("X-User", "alice")], "").status,
        204
    );
    assert!(eventually(Duration::from_secs(5), || profile(
        &one, "alice"
    ) != alice));
    // an outage: every call is still answered, each a miss
    redis.stop();
    let during: Vec<String> = (0..3).map(|_| profile(&one, "bob")).collect();
    assert!(during
        .iter()
        .all(|p| p.starts_with("profile of bob made by ")));
    assert_ne!(
        during[0], during[1],
        "nothing is cached while redis is down"
    );
    assert!(one
        .wait_for_log("values miss and limits count locally")
        .contains(&format!(
            "external cache redis://127.0.0.1:{} unavailable",
            redis.port
        )));
    // back: sharing resumes
    redis.restart();
    assert!(
        eventually(Duration::from_secs(10), || {
            let stored = profile(&one, "carol");
            profile(&two, "carol") == stored
        }),
        "shared again once redis is back"
    );
}

/// `rate-limit-by-key` with 10 calls a minute per `X-Tenant`.
fn limited(backend: &str) -> String {
    let policy = r#"<policies><inbound>
  <rate-limit-by-key calls="10" renewal-period="60" counter-key="@(context.Request.Headers.GetValueOrDefault(&quot;X-Tenant&quot;, &quot;&quot;))" remaining-calls-header-name="X-Left" />
</inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"#;
    format!(
        r#"{{"schemaVersion": 1, "apis": [{{"id": "r", "path": "r", "serviceUrl": "{backend}", "subscriptionRequired": false,
            "operations": [{{"id": "any", "method": "*", "urlTemplate": "/*", "policies": {}}}]}}]}}"#,
        js(policy)
    )
}

#[test]
fn two_gateways_enforce_one_limit_and_count_alone_through_an_outage() {
    let mut redis = Redis::start();
    let backend = Origin::echo();
    let settings = [
        format!("cache.external.url={}", redis.url()),
        "limits.counters.external=true".to_string(),
        "telemetry.metrics.local=prometheus".to_string(),
        "telemetry.metrics.local.prometheus.listen=127.0.0.1:0".to_string(),
    ];
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let one = Gateway::start(&limited(&backend.url("")), &settings);
    let two = Gateway::start(&limited(&backend.url("")), &settings);
    let call = |gw: &Gateway, tenant: &str| send(gw, "GET", "/r/x", &[("X-Tenant", tenant)], "");
    // both reach redis before the count starts
    let up = |gw: &Gateway| {
        request(
            gw.metrics_addr(),
            "GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
        )
        .text()
        .contains("edgegate_external_cache_up 1\n")
    };
    assert!(eventually(Duration::from_secs(10), || up(&one) && up(&two)));
    let statuses: Vec<u16> = (0..20)
        .map(|i| call(if i % 2 == 0 { &one } else { &two }, "acme").status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        &statuses[..10],
        &[200; 10],
        "the first ten, whichever gateway took them"
    );
    let refused = call(&one, "acme");
    assert_eq!(refused.status, 429);
    assert!(refused
        .header("Retry-After")
        .is_some_and(|s| s.parse::<u64>().is_ok_and(|n| (1..=60).contains(&n))));
    // an outage during traffic: every call is answered, each gateway counting alone
    redis.stop();
    let during: Vec<u16> = (0..24)
        .map(|i| call(if i % 2 == 0 { &one } else { &two }, "outage").status)
        .collect();
    assert!(during.iter().all(|s| *s == 200 || *s == 429), "{during:?}");
    assert_eq!(
        during.iter().filter(|s| **s == 200).count(),
        20,
        "ten on each, alone: {during:?}"
    );
    assert!(eventually(Duration::from_secs(10), || !up(&one)));
    assert!(
        status(&one).contains("\"externalCache\": \"down\""),
        "{}",
        status(&one)
    );
    // back: one limit again
    redis.restart();
    assert!(eventually(Duration::from_secs(15), || {
        let _ = call(&one, "probe");
        let _ = call(&two, "probe");
        up(&one) && up(&two)
    }));
    assert!(
        status(&two).contains("\"externalCache\": \"up\""),
        "{}",
        status(&two)
    );
    let after: Vec<u16> = (0..16)
        .map(|i| call(if i % 2 == 0 { &one } else { &two }, "after").status)
        .collect();
    assert_eq!(after.iter().filter(|s| **s == 200).count(), 10, "{after:?}");
    assert_eq!(
        backend.requests().len(),
        10 + 20 + 10 + backend_probes(&backend)
    );
}

/// The probe calls that reached the backend while waiting for Redis to come back.
fn backend_probes(backend: &Origin) -> usize {
    backend
        .requests()
        .iter()
        .filter(|r| r.header("X-Tenant") == Some("probe"))
        .count()
}

#[test]
fn a_subscriptions_rate_limit_is_one_across_gateways() {
    let redis = Redis::start();
    let backend = Origin::echo();
    let policy = r#"<policies><inbound><rate-limit calls="5" renewal-period="60" /></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"#;
    let doc = format!(
        r#"{{"schemaVersion": 1, "apis": [{{"id": "r", "path": "r", "serviceUrl": "{}", "subscriptionRequired": true,
            "operations": [{{"id": "any", "method": "*", "urlTemplate": "/*"}}]}}],
          "products": [{{"id": "p", "apis": ["r"], "state": "published", "policies": {}}}],
          "subscriptions": [{{"id": "s1", "scope": "/products/p", "primaryKey": "shared-key-1"}},
                            {{"id": "s2", "scope": "/products/p", "primaryKey": "other-key-2"}}]}}"#,
        backend.url(""),
        js(policy)
    );
    let settings = [
        format!("cache.external.url={}", redis.url()),
        "limits.counters.external=true".to_string(),
    ];
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let one = Gateway::start(&doc, &settings);
    let two = Gateway::start(&doc, &settings);
    let call = |gw: &Gateway, key: &str| {
        send(gw, "GET", "/r/x", &[("Ocp-Apim-Subscription-Key", key)], "").status
    };
    assert!(eventually(Duration::from_secs(10), || {
        status(&one).contains("\"externalCache\": \"up\"")
            && status(&two).contains("\"externalCache\": \"up\"")
    }));
    let statuses: Vec<u16> = (0..10)
        .map(|i| call(if i % 2 == 0 { &one } else { &two }, "shared-key-1"))
        .collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429, 429, 429]);
    // another subscription has its own window
    assert_eq!(call(&two, "other-key-2"), 200);
}

#[test]
fn a_quota_is_one_across_gateways() {
    let redis = Redis::start();
    let backend = Origin::echo();
    let policy = r#"<policies><inbound><quota-by-key calls="4" renewal-period="3600" counter-key="@(context.Request.Headers.GetValueOrDefault(&quot;X-Tenant&quot;, &quot;&quot;))" /></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"#;
    let doc = format!(
        r#"{{"schemaVersion": 1, "apis": [{{"id": "q", "path": "q", "serviceUrl": "{}", "subscriptionRequired": false,
            "operations": [{{"id": "any", "method": "*", "urlTemplate": "/*", "policies": {}}}]}}]}}"#,
        backend.url(""),
        js(policy)
    );
    let settings = [
        format!("cache.external.url={}", redis.url()),
        "limits.counters.external=true".to_string(),
    ];
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let one = Gateway::start(&doc, &settings);
    let two = Gateway::start(&doc, &settings);
    assert!(eventually(Duration::from_secs(10), || {
        status(&one).contains("\"externalCache\": \"up\"")
            && status(&two).contains("\"externalCache\": \"up\"")
    }));
    // calls counted so far in redis, over every quota window
    let counted = || {
        redis.command(&[
            "EVAL",
            "local s = 0 for _, k in ipairs(redis.call('KEYS', 'edgegate:q:*')) do s = s + tonumber(redis.call('HGET', k, 'c') or 0) end return s",
            "0",
        ])
    };
    let mut statuses = Vec::new();
    for i in 0..8 {
        let gw = if i % 2 == 0 { &one } else { &two };
        let status = send(gw, "GET", "/q/x", &[("X-Tenant", "acme")], "").status;
        statuses.push(status);
        // a call is counted when it ends: wait until redis has it before the next one
        let want = format!(":{}\r\n", statuses.iter().filter(|s| **s == 200).count());
        assert!(
            eventually(Duration::from_secs(5), || counted() == want),
            "{}",
            counted()
        );
    }
    assert_eq!(statuses, [200, 200, 200, 200, 403, 403, 403, 403]);
}

#[test]
fn gateways_share_cached_responses_and_outbound_reads_values_from_redis() {
    let mut redis = Redis::start();
    let setting = format!("cache.external.url={}", redis.url());
    let backend = Origin::start(|req, s| {
        respond(
            s,
            200,
            &[("Content-Type", "text/plain"), ("X-Origin", "yes")],
            format!("made for {} #{}", req.target, req.conn_id).as_bytes(),
        );
        true
    });
    let policy = r#"<policies><inbound>
    <cache-lookup vary-by-developer="false" vary-by-developer-groups="false" downstream-caching-type="public" must-revalidate="false">
      <vary-by-query-parameter>v</vary-by-query-parameter>
    </cache-lookup>
</inbound><backend><forward-request /></backend><outbound>
    <cache-store duration="60" />
    <cache-lookup-value key="note" default-value="none" variable-name="note" />
    <set-header name="X-Note" exists-action="override"><value>@((string)context.Variables["note"])</value></set-header>
</outbound><on-error /></policies>"#;
    let store = r#"<policies><inbound><cache-store-value key="note" value="from redis" duration="60" /><return-response><set-status code="204" /></return-response></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"#;
    let doc = format!(
        r#"{{"schemaVersion": 1, "apis": [{{"id": "c", "path": "c", "serviceUrl": "{}", "subscriptionRequired": false,
            "operations": [
              {{"id": "get", "method": "GET", "urlTemplate": "/*", "policies": {}}},
              {{"id": "note", "method": "PUT", "urlTemplate": "/note", "policies": {}}}]}}]}}"#,
        backend.url(""),
        js(policy),
        js(store)
    );
    let one = Gateway::start(&doc, &[&setting]);
    let two = Gateway::start(&doc, &[&setting]);
    assert_eq!(send(&one, "PUT", "/c/note", &[], "").status, 204);
    let first = send(&one, "GET", "/c/item?v=1", &[], "");
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("X-Note"),
        Some("from redis"),
        "outbound waited for Redis"
    );
    assert_eq!(first.header("Age"), None);
    let made = first.text();
    // the other gateway answers from what the first stored, without the backend
    assert!(
        eventually(Duration::from_secs(5), || {
            let r = send(&two, "GET", "/c/item?v=1", &[], "");
            r.status == 200 && r.text() == made && r.header("Age").is_some()
        }),
        "the response is shared through redis"
    );
    let hit = send(&two, "GET", "/c/item?v=1", &[], "");
    assert_eq!(hit.header("X-Origin"), Some("yes"));
    assert_eq!(hit.header("X-Note"), Some("from redis"));
    assert!(
        hit.header("Cache-Control")
            .is_some_and(|c| c.starts_with("public, max-age=")),
        "{:?}",
        hit.header("Cache-Control")
    );
    assert_eq!(backend.requests().len(), 1);
    // another varied value is another entry
    assert_ne!(send(&two, "GET", "/c/item?v=2", &[], "").text(), made);
    assert_eq!(backend.requests().len(), 2);
    // Redis gone: a miss, the backend answers
    redis.stop();
    let r = send(&one, "GET", "/c/item?v=1", &[], "");
    assert_eq!((r.status, r.header("Age")), (200, None));
    assert_eq!(r.header("X-Note"), Some("none"));
    assert_eq!(backend.requests().len(), 3);
}

/// A redis-server that speaks only TLS (`rediss://`), with `stem`'s certificate.
struct TlsRedis {
    child: std::process::Child,
    port: u16,
}

impl TlsRedis {
    fn start(dir: &std::path::Path, stem: &str) -> TlsRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let file = |ext: &str| dir.join(format!("{stem}.{ext}")).display().to_string();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args([
                "--tls-cert-file",
                &file("pem"),
                "--tls-key-file",
                &file("key"),
            ])
            .args([
                "--tls-auth-clients",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server");
        assert!(eventually(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        }));
        TlsRedis { child, port }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn rediss_speaks_tls_with_the_backends_trust() {
    let dir = temp_dir("rediss");
    pki(&dir, &[("redis", "IP:127.0.0.1")]);
    let redis = TlsRedis::start(&dir, "redis");
    let url = format!("cache.external.url=rediss://127.0.0.1:{}", redis.port);
    let ca = format!("net.backend.tls.ca={}", dir.join("ca.pem").display());
    let one = Gateway::start(&config(), &[&url, &ca]);
    let two = Gateway::start(&config(), &[&url, &ca]);
    both_connected(&one, &two);
    let alice = profile(&one, "alice");
    assert!(
        // bounded generously: on a loaded 2-core machine the TLS connections come up late
        eventually(Duration::from_secs(30), || profile(&two, "alice") == alice),
        "shared through redis over TLS"
    );
    assert!(
        status(&one).contains(r#""externalCache": "up""#),
        "{}",
        status(&one)
    );
    // a gateway that does not trust the certificate never talks to it: values miss
    let untrusting = Gateway::start(&config(), &[&url]);
    assert_ne!(profile(&untrusting, "alice"), alice);
    assert!(eventually(Duration::from_secs(5), || untrusting
        .log_lines()
        .iter()
        .any(
            |l| l.contains("external cache rediss://127.0.0.1") && l.contains("unavailable")
        )));
}
