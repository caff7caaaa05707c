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

/// A token endpoint that takes client assertions (jwt-bearer) and keeps each it got.
fn assertion_endpoint() -> (Origin, Arc<std::sync::Mutex<Vec<String>>>) {
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = Arc::clone(&got);
    let origin = Origin::start(move |req, s| {
        let form = String::from_utf8_lossy(&req.body).to_string();
        let field = |k: &str| {
            form.split('&')
                .find_map(|p| p.strip_prefix(&format!("{k}=")))
                .map(|v| v.replace("%3A", ":").replace("%2F", "/"))
                .unwrap_or_default()
        };
        let ok = field("grant_type") == "client_credentials"
            && field("client_id") == "gw-client"
            && field("client_assertion_type")
                == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            && form.find("client_secret").is_none();
        if !ok {
            respond(s, 401, &[], br#"{"error": "invalid_client"}"#);
            return true;
        }
        kept.lock().unwrap().push(field("client_assertion"));
        respond(
            s,
            200,
            &[("Content-Type", "application/json")],
            br#"{"token_type": "Bearer", "expires_in": 3600, "access_token": "tok-asserted"}"#,
        );
        true
    });
    (origin, got)
}

/// A gateway whose identity uses `credential` settings, calling a backend with its
/// token; the assertion the endpoint received.
fn asserted(credential: &[String]) -> String {
    let (idp, got) = assertion_endpoint();
    let backend = Origin::echo();
    let policy = r#"<policies><inbound><authentication-managed-identity resource="api://orders" /></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"#;
    let doc = format!(
        r#"{{"schemaVersion": 1, "apis": [{{"id": "o", "path": "o", "serviceUrl": "{}", "subscriptionRequired": false,
            "operations": [{{"id": "any", "method": "*", "urlTemplate": "/*", "policies": {}}}]}}]}}"#,
        backend.url(""),
        js(policy)
    );
    let mut settings = vec![
        format!("identity.token.url={}", idp.url("/oauth2/token")),
        "identity.client.id=gw-client".to_string(),
    ];
    settings.extend(credential.iter().cloned());
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let gw = Gateway::start(&doc, &settings);
    assert!(eventually(Duration::from_secs(10), || !got
        .lock()
        .unwrap()
        .is_empty()));
    // the token reaches the loop just after the endpoint answered
    assert!(eventually(Duration::from_secs(10), || send(
        &gw,
        "GET",
        "/o/x",
        &[],
        ""
    )
    .status
        == 200));
    assert_eq!(
        backend.requests()[0].header("Authorization"),
        Some("Bearer tok-asserted")
    );
    let assertion = got.lock().unwrap()[0].clone();
    for line in gw.log_lines() {
        assert!(
            !line.contains("tok-asserted") && !line.contains(&assertion),
            "{line}"
        );
    }
    assertion
}

fn b64url(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

#[test]
fn a_workload_identity_token_file_is_the_client_assertion() {
    let dir = temp_dir("identity-assertion");
    let file = dir.join("federated-token");
    std::fs::write(&file, "eyJhbGciOi.federated.token\n").unwrap();
    let got = asserted(&[format!("identity.client.assertion.file={}", file.display())]);
    assert_eq!(got, "eyJhbGciOi.federated.token");
}

#[test]
fn a_certificate_signs_the_client_assertion() {
    let dir = temp_dir("identity-cert");
    for (stem, key) in [("rsa", "rsa:2048"), ("ec", "ec")] {
        let mut args = vec!["req", "-x509", "-newkey", key];
        if key == "ec" {
            args.extend(["-pkeyopt", "ec_paramgen_curve:prime256v1"]);
        }
        let (k, c) = (format!("{stem}.key"), format!("{stem}.pem"));
        args.extend([
            "-nodes",
            "-keyout",
            &k,
            "-out",
            &c,
            "-days",
            "2",
            "-subj",
            "/CN=gw-client",
        ]);
        openssl(&dir, &args);
        openssl(
            &dir,
            &[
                "x509",
                "-in",
                &c,
                "-pubkey",
                "-noout",
                "-out",
                &format!("{stem}.pub"),
            ],
        );
        let jwt = asserted(&[
            format!("identity.client.certificate={}", dir.join(&c).display()),
            format!("identity.client.key={}", dir.join(&k).display()),
        ]);
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "{jwt}");
        let header = String::from_utf8(b64url(parts[0])).unwrap();
        let claims = String::from_utf8(b64url(parts[1])).unwrap();
        let der = {
            use rustls_pki_types::pem::PemObject;
            rustls_pki_types::CertificateDer::from_pem_file(dir.join(&c)).unwrap()
        };
        let x5t = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ring::digest::digest(
                &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                der.as_ref(),
            ))
        };
        let alg = if stem == "rsa" { "RS256" } else { "ES256" };
        assert!(header.contains(&format!(r#""alg":"{alg}""#)), "{header}");
        assert!(header.contains(&format!(r#""x5t":"{x5t}""#)), "{header}");
        assert!(
            claims.contains(r#""iss":"gw-client","sub":"gw-client""#)
                && claims.contains("/oauth2/token"),
            "{claims}"
        );
        let input = format!("{}.{}", parts[0], parts[1]);
        let signature = b64url(parts[2]);
        if stem == "rsa" {
            // openssl checks the RS256 signature with the certificate's public key
            std::fs::write(dir.join("input"), &input).unwrap();
            std::fs::write(dir.join("sig"), &signature).unwrap();
            openssl(
                &dir,
                &[
                    "dgst",
                    "-sha256",
                    "-verify",
                    "rsa.pub",
                    "-signature",
                    "sig",
                    "input",
                ],
            );
        } else {
            // ES256 is r‖s; the P-256 point is the public key's last 65 bytes
            let spki = {
                use rustls_pki_types::pem::PemObject;
                rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_file(dir.join("ec.pub"))
                    .unwrap()
            };
            let point = &spki.as_ref()[spki.as_ref().len() - 65..];
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_FIXED,
                point,
            )
            .verify(input.as_bytes(), &signature)
            .expect("the ES256 signature verifies");
        }
    }
}

#[test]
fn two_ways_to_prove_the_identity_stop_the_start() {
    let dir = temp_dir("identity-two");
    let (code, err) = start_refused(
        &dir,
        &[
            "identity.token.url=http://127.0.0.1:9/token",
            "identity.client.id=gw",
            "identity.client.secret=s3cret",
            "identity.client.assertion.file=/tmp/token",
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("set one of identity.client.secret, identity.client.assertion.file and identity.client.certificate"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}
