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

    // the provider goes down while the gateway runs: a fetch fails, the last good keys
    // stay
    provider
        .up
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let unknown = second.sign_kid("k3", &claims(&issuer_url));
    let failed_fetch = || {
        gw.log_lines().iter().any(|l| {
            l.contains("cannot fetch the signing keys of") && l.contains("the last good ones stay")
        })
    };
    // an unknown key id asks for a fetch (at most once every ten seconds)
    assert!(eventually(Duration::from_secs(30), || {
        assert_eq!(
            call(&gw, &unknown),
            (401, "TokenSignatureKeyNotFound".to_string())
        );
        std::thread::sleep(Duration::from_millis(200));
        failed_fetch()
    }));
    assert_eq!(call(&gw, &new), (200, String::new()));
    // and the gateway restarts with the provider still down: the kept keys validate
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

#[test]
fn validate_azure_ad_token_checks_the_tenant_and_client_applications() {
    let dir = temp_dir("azure-ad");
    pki(&dir, &[("login", "DNS:login.test,IP:127.0.0.1")]);
    let key = Ec::generate();
    let tenant = "contoso.onmicrosoft.com";
    let jwks = format!(r#"{{"keys": [{}]}}"#, key.jwk("aad1"));
    let authority = Arc::new(Mutex::new(String::new()));
    let a = Arc::clone(&authority);
    let (login, _) = https_server(&dir, "login", move |req| {
        let base = a.lock().unwrap().clone();
        let json = vec![("Content-Type".to_string(), "application/json".to_string())];
        if req.target == format!("/{tenant}/v2.0/.well-known/openid-configuration") {
            let doc = format!(
                r#"{{"issuer": "{base}/{tenant}/v2.0", "jwks_uri": "{base}/{tenant}/discovery/v2.0/keys"}}"#
            );
            (200, json, doc.into_bytes())
        } else if req.target == format!("/{tenant}/discovery/v2.0/keys") {
            (200, json, jwks.clone().into_bytes())
        } else {
            (404, Vec::new(), Vec::new())
        }
    });
    let base = format!("https://{login}");
    *authority.lock().unwrap() = base.clone();
    let backend = Origin::echo();
    // Microsoft's second example: the audience is the gateway's own host name
    let policy = format!(
        r#"<policies><inbound>
  <validate-azure-ad-token tenant-id="{tenant}" output-token-variable-name="jwt">
    <client-application-ids><application-id>client-app-1</application-id></client-application-ids>
    <audiences><audience>@(context.Request.OriginalUrl.Host)</audience></audiences>
    <required-claims><claim name="ctry" match="any"><value>US</value></claim></required-claims>
  </validate-azure-ad-token>
  <set-header name="X-Subject" exists-action="override"><value>@(((Jwt)context.Variables["jwt"]).Subject)</value></set-header>
</inbound><backend><forward-request /></backend><outbound /><on-error>
  <set-header name="X-Reason" exists-action="override"><value>@(context.LastError.Source + "|" + context.LastError.Reason)</value></set-header>
</on-error></policies>"#
    );
    let config = format!(
        r#"{{"schemaVersion": 1, "apis": [{{"id": "o", "path": "o", "serviceUrl": "{}", "subscriptionRequired": false,
            "operations": [{{"id": "any", "method": "*", "urlTemplate": "/*", "policies": {}}}]}}]}}"#,
        backend.url(""),
        js(&policy)
    );
    let ca = format!("net.backend.tls.ca={}", dir.join("ca.pem").display());
    let authority_setting = format!("net.azure-ad.authority={base}/");
    let gw = Gateway::start(&config, &[&ca, &authority_setting]);
    let token = |iss: &str, app: (&str, &str), aud: &str, ctry: &str| {
        key.sign_kid(
            "aad1",
            &format!(
                r#"{{"iss": "{iss}", "{}": "{}", "aud": "{aud}", "sub": "user-7", "ctry": "{ctry}", "exp": 4102444800}}"#,
                app.0, app.1
            ),
        )
    };
    let call = |t: &str| {
        let r = send(
            &gw,
            "GET",
            "/o/x",
            &[("Authorization", &format!("Bearer {t}"))],
            "",
        );
        (r.status, r.header("X-Reason").unwrap_or("").to_string())
    };
    let v2 = format!("{base}/{tenant}/v2.0");
    let good = token(&v2, ("azp", "client-app-1"), "gw.test", "US");
    assert!(
        eventually(Duration::from_secs(10), || call(&good).0 == 200),
        "the tenant's keys were fetched: {:?}",
        call(&good)
    );
    assert_eq!(
        backend.requests().last().unwrap().header("X-Subject"),
        Some("user-7")
    );
    // a v1 token (appid, sts.windows.net issuer) of the same tenant
    let v1 = token(
        &format!("https://sts.windows.net/{tenant}/"),
        ("appid", "client-app-1"),
        "gw.test",
        "US",
    );
    assert_eq!(call(&v1), (200, String::new()));
    let refusals = [
        (
            token(&v2, ("azp", "other-app"), "gw.test", "US"),
            "TokenClientApplicationNotAllowed",
        ),
        (
            token(&v2, ("azp", "client-app-1"), "elsewhere.test", "US"),
            "TokenAudienceNotAllowed",
        ),
        (
            token(&v2, ("azp", "client-app-1"), "gw.test", "FR"),
            "TokenClaimValueNotAllowed",
        ),
        (
            token(
                "https://login.test/other/v2.0",
                ("azp", "client-app-1"),
                "gw.test",
                "US",
            ),
            "TokenIssuerNotAllowed",
        ),
    ];
    for (t, reason) in refusals {
        assert_eq!(call(&t), (401, format!("validate-azure-ad-token|{reason}")));
    }
}
