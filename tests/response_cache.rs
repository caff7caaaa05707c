//! cache-lookup / cache-store through the real binary: a hit is answered from memory
//! without the backend, per path, query parameter, header and developer; only GET,
//! only 200 unless cache-response, never what the backend marks no-store or a request
//! with Authorization; outbound goes on after cache-store on a hit; downstream caching
//! headers and Age; entries expire.

use crate::common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A backend that numbers its answers (`n=1`, `n=2`…), answering 500 on `/fail`, with
/// `Cache-Control: no-store` on `/nostore`.
fn numbering() -> (Origin, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&count);
    let origin = Origin::start(move |req, s| {
        let n = c.fetch_add(1, Ordering::SeqCst) + 1;
        let body = format!("n={n} {}", req.target);
        let status = if req.target.starts_with("/fail") {
            500
        } else {
            200
        };
        let mut headers = vec![("Content-Type", "text/plain"), ("X-Backend", "yes")];
        if req.target.starts_with("/nostore") {
            headers.push(("Cache-Control", "no-store"));
        }
        respond(s, status, &headers, body.as_bytes());
        true
    });
    (origin, count)
}

#[test]
fn responses_are_cached_as_apim_caches_them() {
    let (backend, count) = numbering();
    let policy = r#"<policies><inbound>
  <cache-lookup vary-by-developer="false" vary-by-developer-groups="false" downstream-caching-type="public" must-revalidate="true" caching-type="internal">
    <vary-by-header>Accept</vary-by-header>
    <vary-by-query-parameter>version</vary-by-query-parameter>
  </cache-lookup>
</inbound><backend><forward-request /></backend><outbound>
  <set-header name="X-Before" exists-action="override"><value>@(context.Response.StatusCode.ToString())</value></set-header>
  <cache-store duration="60" />
  <set-header name="X-After" exists-action="override"><value>@("after " + context.Response.Headers.GetValueOrDefault("X-Backend", "-"))</value></set-header>
</outbound><on-error /></policies>"#;
    let doc = format!(
        r#"{{"schemaVersion": 1, "apis": [{{"id": "c", "path": "c", "serviceUrl": "{}", "subscriptionRequired": false,
            "operations": [{{"id": "any", "method": "*", "urlTemplate": "/*", "policies": {}}}]}}]}}"#,
        backend.url(""),
        js(policy)
    );
    let gw = Gateway::start(
        &doc,
        &[
            "telemetry.metrics.local=prometheus",
            "telemetry.metrics.local.prometheus.listen=127.0.0.1:0",
        ],
    );
    let get = |path: &str, headers: &[(&str, &str)]| send(&gw, "GET", path, headers, "");
    let first = get("/c/items?version=1&other=a", &[]);
    assert_eq!(
        (first.status, first.text().as_str()),
        (200, "n=1 /items?version=1&other=a")
    );
    assert_eq!(
        first.header("Cache-Control"),
        Some("public, max-age=60, must-revalidate")
    );
    assert_eq!(first.header("Age"), None);
    // the same key (another parameter is not part of it): from memory
    let hit = get("/c/items?version=1&other=b", &[]);
    assert_eq!(
        (hit.status, hit.text().as_str()),
        (200, "n=1 /items?version=1&other=a")
    );
    assert_eq!(hit.header("Content-Type"), Some("text/plain"));
    assert_eq!(
        hit.header("X-Before"),
        Some("200"),
        "kept as cache-store saw it"
    );
    assert_eq!(
        hit.header("X-After"),
        Some("after yes"),
        "outbound after cache-store runs"
    );
    assert!(hit.header("Age").is_some());
    assert!(hit
        .header("Cache-Control")
        .is_some_and(|c| c.starts_with("public, max-age=") && c.ends_with(", must-revalidate")));
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // another version, another Accept: other entries
    assert_eq!(
        get("/c/items?version=2", &[]).text(),
        "n=2 /items?version=2"
    );
    assert_eq!(
        get("/c/items?version=1", &[("Accept", "application/xml")]).text(),
        "n=3 /items?version=1"
    );
    assert_eq!(
        get("/c/items?version=1", &[("Accept", "application/xml")]).text(),
        "n=3 /items?version=1"
    );
    // not cached: another method, a request with Authorization, an error, no-store
    for _ in 0..2 {
        assert_eq!(
            send(&gw, "POST", "/c/items?version=1", &[], "x").status,
            200
        );
        assert_eq!(
            get("/c/items?version=1", &[("Authorization", "Bearer t")]).status,
            200
        );
        assert_eq!(get("/c/fail", &[]).status, 500);
        assert_eq!(get("/c/nostore", &[]).status, 200);
    }
    assert_eq!(count.load(Ordering::SeqCst), 3 + 8);
    // HEAD: answered from a GET's response, without its body; a HEAD's own is not kept
    let head = send(&gw, "HEAD", "/c/items?version=1", &[], "");
    assert_eq!((head.status, head.text().as_str()), (200, ""));
    assert!(head.header("Age").is_some());
    assert_eq!(count.load(Ordering::SeqCst), 11);
    assert_eq!(send(&gw, "HEAD", "/c/items?version=9", &[], "").status, 200);
    assert_eq!(
        get("/c/items?version=9", &[]).text(),
        "n=13 /items?version=9"
    );
    let scrape = request(
        gw.metrics_addr(),
        "GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
    )
    .text();
    assert!(
        eventually(Duration::from_secs(10), || request(
            gw.metrics_addr(),
            "GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n"
        )
        .text()
        .contains("edgegate_cache_hits_total 3\n")),
        "{scrape}"
    );
}

#[test]
fn cached_responses_expire_and_vary_by_developer() {
    let (backend, count) = numbering();
    let policy = r#"<policies><inbound>
  <cache-lookup vary-by-developer="true" vary-by-developer-groups="false" />
</inbound><backend><forward-request /></backend><outbound><cache-store duration="1" /></outbound><on-error /></policies>"#;
    let doc = format!(
        r#"{{"schemaVersion": 1, "apis": [{{"id": "c", "path": "c", "serviceUrl": "{}", "subscriptionRequired": true,
            "operations": [{{"id": "any", "method": "*", "urlTemplate": "/*", "policies": {}}}]}}],
          "products": [{{"id": "p", "apis": ["c"], "state": "published"}}],
          "users": [{{"id": "alice"}}, {{"id": "bob"}}],
          "subscriptions": [{{"id": "s1", "scope": "/products/p", "primaryKey": "key-alice-1", "ownerId": "/users/alice"}},
                            {{"id": "s2", "scope": "/products/p", "primaryKey": "key-alice-2", "ownerId": "/users/alice"}},
                            {{"id": "s3", "scope": "/products/p", "primaryKey": "key-bob-01", "ownerId": "/users/bob"}}]}}"#,
        backend.url(""),
        js(policy)
    );
    let gw = Gateway::start(&doc, &[]);
    let get = |key: &str| {
        let r = send(
            &gw,
            "GET",
            "/c/x",
            &[("Ocp-Apim-Subscription-Key", key)],
            "",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
    };
    assert_eq!(get("key-alice-1"), "n=1 /x");
    // the same developer with another key shares the entry; another developer does not
    assert_eq!(get("key-alice-2"), "n=1 /x");
    assert_eq!(get("key-bob-01"), "n=2 /x");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(get("key-alice-1"), "n=3 /x", "expired after its duration");
    assert_eq!(count.load(Ordering::SeqCst), 3);
}
