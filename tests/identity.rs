//! authentication-managed-identity through the real binary: the gateway's identity is
//! an OAuth 2.0 client of a local token endpoint (client credentials); tokens are
//! fetched for the resources the config names, put in `Authorization` (or a variable,
//! or a send-request's header), and neither they nor the secret reach the log.

use crate::common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A token endpoint: `tok-<n>-<scope>` for client `gw-client` with the right secret.
fn token_endpoint() -> (Origin, Arc<AtomicUsize>) {
    let issued = Arc::new(AtomicUsize::new(0));
    let n = Arc::clone(&issued);
    let origin = Origin::start(move |req, s| {
        let form = String::from_utf8_lossy(&req.body).to_string();
        let field = |k: &str| {
            form.split('&')
                .find_map(|p| p.strip_prefix(&format!("{k}=")))
                .map(|v| v.replace("%2F", "/").replace("%3A", ":"))
                .unwrap_or_default()
        };
        if req.method != "POST"
            || field("grant_type") != "client_credentials"
            || field("client_id") != "gw-client"
            || field("client_secret") != "the-secret-value"
        {
            respond(
                s,
                401,
                &[("Content-Type", "application/json")],
                br#"{"error": "invalid_client", "error_description": "bad credentials"}"#,
            );
            return true;
        }
        let k = n.fetch_add(1, Ordering::SeqCst) + 1;
        let body = format!(
            r#"{{"token_type": "Bearer", "expires_in": 3600, "access_token": "tok-{k}-{}"}}"#,
            field("resource")
        );
        respond(
            s,
            200,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        true
    });
    (origin, issued)
}

#[test]
fn the_gateways_identity_gets_tokens_for_backends() {
    let (idp, issued) = token_endpoint();
    let backend = Origin::echo();
    let service = Origin::echo();
    let policy = format!(
        r#"<policies><inbound>
  <authentication-managed-identity resource="api://orders" />
  <authentication-managed-identity resource="api://audit" output-token-variable-name="audit-token" />
  <set-header name="X-Audit" exists-action="override"><value>@((string)context.Variables["audit-token"])</value></set-header>
  <send-request mode="new" response-variable-name="r">
    <set-url>{}</set-url>
    <authentication-managed-identity resource="api://audit" />
  </send-request>
</inbound><backend><forward-request /></backend><outbound /><on-error>
  <set-header name="X-Reason" exists-action="override"><value>@(context.LastError.Source + "|" + context.LastError.Reason)</value></set-header>
</on-error></policies>"#,
        service.url("/audit")
    );
    let doc = format!(
        r#"{{"schemaVersion": 1, "apis": [{{"id": "o", "path": "o", "serviceUrl": "{}", "subscriptionRequired": false,
            "operations": [{{"id": "any", "method": "*", "urlTemplate": "/*", "policies": {}}}]}}]}}"#,
        backend.url(""),
        js(&policy)
    );
    let dir = temp_dir("identity");
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, "the-secret-value\n").unwrap();
    let settings = [
        format!("identity.token.url={}", idp.url("/oauth2/token")),
        "identity.client.id=gw-client".to_string(),
        format!("identity.client.secret=@{}", secret_file.display()),
    ];
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let gw = Gateway::start(&doc, &settings);
    // fetched for the resources the config names, before any call asks
    assert!(eventually(Duration::from_secs(10), || issued
        .load(Ordering::SeqCst)
        == 2));
    let r = send(&gw, "GET", "/o/x", &[], "");
    assert_eq!(r.status, 200, "{:?}", r.header("X-Reason"));
    let seen = &backend.requests()[0];
    let orders = seen.header("Authorization").unwrap().to_string();
    let audit = seen.header("X-Audit").unwrap().to_string();
    assert!(
        orders.starts_with("Bearer tok-") && orders.ends_with("-api://orders"),
        "{orders}"
    );
    assert!(
        audit.starts_with("tok-") && audit.ends_with("-api://audit"),
        "{audit}"
    );
    assert_eq!(
        service.requests()[0].header("Authorization"),
        Some(format!("Bearer {audit}").as_str())
    );
    // cached: another call fetches nothing
    assert_eq!(send(&gw, "GET", "/o/x", &[], "").status, 200);
    assert_eq!(issued.load(Ordering::SeqCst), 2);
    let asked = idp.requests();
    assert!(asked.iter().all(|r| r.target == "/oauth2/token"));
    // neither the tokens nor the secret reach the log
    for line in gw.log_lines() {
        assert!(
            !line.contains("tok-") && !line.contains("the-secret-value"),
            "{line}"
        );
    }
}

#[test]
fn without_a_token_the_call_fails_or_goes_on_as_asked() {
    let (idp, _) = token_endpoint();
    let backend = Origin::echo();
    let policy = r#"<policies><inbound>
  <authentication-managed-identity resource="api://skip" ignore-error="true" />
  <authentication-managed-identity resource="@(context.Request.Headers.GetValueOrDefault(&quot;X-Resource&quot;, &quot;api://strict&quot;))" />
</inbound><backend><forward-request /></backend><outbound /><on-error>
  <set-header name="X-Reason" exists-action="override"><value>@(context.LastError.Source + "|" + context.LastError.Reason)</value></set-header>
</on-error></policies>"#;
    let doc = format!(
        r#"{{"schemaVersion": 1, "apis": [{{"id": "o", "path": "o", "serviceUrl": "{}", "subscriptionRequired": false,
            "operations": [{{"id": "any", "method": "*", "urlTemplate": "/*", "policies": {}}}]}}]}}"#,
        backend.url(""),
        js(policy)
    );
    // a wrong secret: the endpoint refuses, so no token is ever there
    let settings = [
        format!("identity.token.url={}", idp.url("/oauth2/token")),
        "identity.client.id=gw-client".to_string(),
        "identity.client.secret=wrong".to_string(),
    ];
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let gw = Gateway::start(&doc, &settings);
    let r = send(&gw, "GET", "/o/x", &[], "");
    assert_eq!(r.status, 500);
    assert_eq!(
        r.header("X-Reason"),
        Some("authentication-managed-identity|TokenNotAvailable")
    );
    assert!(gw
        .wait_for_log("cannot obtain an access token for")
        .contains("answered 401: invalid_client bad credentials"));
    assert!(backend.requests().is_empty());
}
