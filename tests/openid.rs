//! validate-jwt with `openid-config` through the real binary: a local HTTPS identity
//! provider (discovery document and JWKS, trusted through `net.backend.tls.ca`) that
//! rotates its signing key; the agent fetches, refetches on an unknown key id, keeps
//! the last good keys in the backup store, and a gateway that starts with the provider
//! down still validates tokens.

use crate::common::*;
use crate::policies::jwt_tokens::Ec;
use crate::tls::https_server;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The provider's state: its JWKS document, and whether it answers at all.
struct Provider {
    jwks: Mutex<String>,
    up: std::sync::atomic::AtomicBool,
}

fn claims(issuer: &str) -> String {
    format!(r#"{{"iss": "{issuer}", "aud": "api://orders", "exp": 4102444800}}"#)
}

#[test]
fn openid_keys_are_fetched_rotated_and_kept_for_an_offline_start() {
    let dir = temp_dir("openid");
    pki(&dir, &[("idp", "DNS:idp.test,IP:127.0.0.1")]);
    let (first, second) = (Ec::generate(), Ec::generate());
    let provider = Arc::new(Provider {
        jwks: Mutex::new(format!(r#"{{"keys": [{}]}}"#, first.jwk("k1"))),
        up: std::sync::atomic::AtomicBool::new(true),
    });
    let issuer = Arc::new(Mutex::new(String::new()));
    let (p, iss) = (Arc::clone(&provider), Arc::clone(&issuer));
    let (idp, _) = https_server(&dir, "idp", move |req| {
        if !p.up.load(std::sync::atomic::Ordering::SeqCst) {
            return (503, Vec::new(), b"down".to_vec());
        }
        let json = vec![("Content-Type".to_string(), "application/json".to_string())];
        match req.target.as_str() {
            "/.well-known/openid-configuration" => {
                let issuer = iss.lock().unwrap().clone();
                let doc =
                    format!(r#"{{"issuer": "{issuer}", "jwks_uri": "{issuer}discovery/keys"}}"#);
                (200, json, doc.into_bytes())
            }
            "/discovery/keys" => (200, json, p.jwks.lock().unwrap().clone().into_bytes()),
            _ => (404, Vec::new(), Vec::new()),
        }
    });
    let issuer_url = format!("https://{idp}/");
    *issuer.lock().unwrap() = issuer_url.clone();
    let backend = Origin::echo();
    let policy = format!(
        r#"<policies><inbound>
  <validate-jwt header-name="Authorization" failed-validation-httpcode="401">
    <openid-config url="{issuer_url}.well-known/openid-configuration" />
    <audiences><audience>api://orders</audience></audiences>
  </validate-jwt>
</inbound><backend><forward-request /></backend><outbound /><on-error>
  <set-header name="X-Reason" exists-action="override"><value>@(context.LastError.Reason)</value></set-header>
</on-error></policies>"#
    );
    let config = format!(
        r#"{{"schemaVersion": 1, "apis": [{{"id": "o", "path": "o", "serviceUrl": "{}", "subscriptionRequired": false,
            "operations": [{{"id": "any", "method": "*", "urlTemplate": "/*", "policies": {}}}]}}]}}"#,
        backend.url(""),
        js(&policy)
    );
    let ca = format!("net.backend.tls.ca={}", dir.join("ca.pem").display());
    let gw = Gateway::start(&config, &[&ca]);
    let call = |gw: &Gateway, token: &str| {
        let auth = format!("Bearer {token}");
        let r = send(gw, "GET", "/o/orders", &[("Authorization", &auth)], "");
        (r.status, r.header("X-Reason").unwrap_or("").to_string())
    };
    let old = first.sign_kid("k1", &claims(&issuer_url));
    assert!(
        eventually(Duration::from_secs(10), || call(&gw, &old).0 == 200),
        "the first key set was fetched: {:?}",
        call(&gw, &old)
    );
    // the issuer comes from the discovery document: another is refused
    let stranger = first.sign_kid("k1", &claims("https://elsewhere.test/"));
    assert_eq!(
        call(&gw, &stranger),
        (401, "TokenIssuerNotAllowed".to_string())
    );
    // the provider rotates to a new key: a token with the new key id is refused until
    // the gateway fetched again, which it does because it met that key id
    *provider.jwks.lock().unwrap() = format!(r#"{{"keys": [{}]}}"#, second.jwk("k2"));
    let new = second.sign_kid("k2", &claims(&issuer_url));
    assert_eq!(
        call(&gw, &new),
        (401, "TokenSignatureKeyNotFound".to_string())
    );
    assert!(
        eventually(Duration::from_secs(30), || call(&gw, &new).0 == 200),
        "the rotated key set was fetched again"
    );
    assert!(gw
        .log_lines()
        .iter()
        .any(|l| l.contains("have no key the token names; fetching them again")));
    // a forged signature with a known key id still fails
    let forged = first.sign_kid("k2", &claims(&issuer_url));
    assert_eq!(
        call(&gw, &forged),
        (401, "TokenSignatureInvalid".to_string())
    );

    // the provider goes down and the gateway restarts: the kept keys still validate
    provider
        .up
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let gw = gw.restart(&[&ca]);
    assert_eq!(call(&gw, &new), (200, String::new()));
    assert!(gw
        .wait_for_log("restored from the backup store")
        .contains(&format!("{issuer_url}.well-known/openid-configuration")));
}

#[test]
fn keys_never_fetched_refuse_tokens_with_a_reason() {
    let backend = Origin::echo();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let policy = format!(
        r#"<policies><inbound><validate-jwt header-name="Authorization"><openid-config url="http://{closed}/.well-known/openid-configuration" /></validate-jwt></inbound><backend><forward-request /></backend><outbound /><on-error>
  <set-header name="X-Reason" exists-action="override"><value>@(context.LastError.Reason + "|" + context.LastError.Message)</value></set-header>
</on-error></policies>"#
    );
    let config = format!(
        r#"{{"schemaVersion": 1, "apis": [{{"id": "o", "path": "o", "serviceUrl": "{}", "subscriptionRequired": false,
            "operations": [{{"id": "any", "method": "*", "urlTemplate": "/*", "policies": {}}}]}}]}}"#,
        backend.url(""),
        js(&policy)
    );
    let gw = Gateway::start(&config, &[]);
    let token = Ec::generate().sign_kid("k", &claims("https://x/"));
    let r = send(
        &gw,
        "GET",
        "/o/x",
        &[("Authorization", &format!("Bearer {token}"))],
        "",
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("X-Reason"),
        Some("TokenSignatureKeyNotFound|The signing keys of the OpenID configuration have not been fetched yet.")
    );
    assert!(gw
        .wait_for_log("cannot fetch the signing keys of")
        .contains(&closed.to_string()));
    assert!(backend.requests().is_empty());
}
