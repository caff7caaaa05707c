//! Client certificates on the HTTPS listener (`negotiateClientCertificate` per
//! certificate, so per host name), `validate-client-certificate` against the config's
//! `caCertificates`, `context.Request.Certificate` in expressions (Microsoft's
//! documented thumbprint check), and `authentication-certificate` presenting the
//! gateway's certificate to an HTTPS backend that requires one. Real binary, a private
//! CA made with openssl by the test, rustls clients and origins.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

/// A client certificate `stem` for CN=`cn`, signed by the test CA (or self-signed with
/// `self_signed`), for client authentication.
fn client_certificate(dir: &Path, stem: &str, cn: &str, self_signed: bool) {
    let subj = format!("/O=Contoso/CN={cn}");
    let (key, pem, csr, cnf) = (
        format!("{stem}.key"),
        format!("{stem}.pem"),
        format!("{stem}.csr"),
        format!("{stem}.cnf"),
    );
    std::fs::write(
        dir.join(&cnf),
        format!("basicConstraints=CA:FALSE\nsubjectAltName=DNS:{cn}.clients.test\nextendedKeyUsage=clientAuth\n"),
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut args = vec!["req"];
    if self_signed {
        args.push("-x509");
    }
    args.extend(ec);
    args.extend(["-keyout", &key, "-subj", &subj, "-out"]);
    args.push(if self_signed { &pem } else { &csr });
    openssl(dir, &args);
    if !self_signed {
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &cnf,
                "-out",
                &pem,
            ],
        );
    }
}

/// A client certificate of the test CA that expired in 2021 (`openssl ca` sets the
/// dates).
fn expired_certificate(dir: &Path, stem: &str, cn: &str) {
    std::fs::write(
        dir.join("ca.cnf"),
        "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\ndefault_md = sha256\npolicy = any\n[any]\ncommonName = supplied\norganizationName = optional\n",
    )
    .unwrap();
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(
        dir.join("old.cnf"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("serial"), "1000\n").unwrap();
    let subj = format!("/O=Contoso/CN={cn}");
    let (key, csr, pem) = (
        format!("{stem}.key"),
        format!("{stem}.csr"),
        format!("{stem}.pem"),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-subj",
            &subj,
            "-out",
            &csr,
        ],
    );
    openssl(
        dir,
        &[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-cert",
            "ca.pem",
            "-keyfile",
            "ca.key",
            "-in",
            &csr,
            "-out",
            &pem,
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20210101000000Z",
            "-notext",
            "-extfile",
            "old.cnf",
        ],
    );
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap()
}

fn thumbprint(dir: &Path, stem: &str) -> String {
    let der = CertificateDer::from_pem_file(dir.join(format!("{stem}.pem"))).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der.as_ref());
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect()
}

/// One GET over TLS: status, the value of `header` (or ""), and the body.
fn get(
    addr: SocketAddr,
    sni: &str,
    config: &Arc<rustls::ClientConfig>,
    path: &str,
    header: &str,
) -> (u16, String, String) {
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = BufReader::new(&mut tls).read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let value = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(header).then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, value, body.to_string())
}

fn server_certificate(dir: &Path, id: &str, stem: &str, host: &str, negotiate: bool) -> String {
    format!(
        r#"{{"id": "{id}", "hostnames": ["{host}"], "negotiateClientCertificate": {negotiate}, "certPem": {}, "keyPem": {}}}"#,
        js(&read(dir, &format!("{stem}.pem"))),
        js(&read(dir, &format!("{stem}.key")))
    )
}

#[test]
fn client_certificates_are_asked_per_host_validated_and_read_by_expressions() {
    let dir = temp_dir("mtls");
    pki(
        &dir,
        &[("mtls", "DNS:mtls.test"), ("plain", "DNS:plain.test")],
    );
    client_certificate(&dir, "alice", "alice", false);
    client_certificate(&dir, "bob", "bob", false);
    client_certificate(&dir, "mallory", "alice", true);
    expired_certificate(&dir, "old", "alice");
    let alice = thumbprint(&dir, "alice");
    let validate = r#"<policies><inbound>
        <validate-client-certificate validate-revocation="true" validate-trust="true" validate-not-before="true" validate-not-after="true" ignore-error="false">
          <identities>
            <identity common-name="alice" issuer-certificate-id="root" />
            <identity subject="CN=carol, O=Contoso" />
          </identities>
        </validate-client-certificate>
        <return-response>
          <set-status code="200" reason="OK" />
          <set-body>@{
            var c = context.Request.Certificate;
            return c.Subject + "|" + c.Issuer + "|" + c.Thumbprint + "|" + c.Verify() + "|" + c.NotAfter.Year + "|" + c.SubjectName.Name;
          }</set-body>
        </return-response>
      </inbound><backend><forward-request /></backend><outbound /><on-error>
        <set-header name="X-Reason" exists-action="override"><value>@(context.LastError.Source + ":" + context.LastError.Reason)</value></set-header>
      </on-error></policies>"#;
    // Microsoft's documented example, with the thumbprint of alice's certificate
    let documented = format!(
        r#"<policies><inbound>
        <choose>
          <when condition="@(context.Request.Certificate == null || !context.Request.Certificate.Verify() || context.Request.Certificate.Thumbprint != &quot;{alice}&quot;)">
            <return-response><set-status code="403" reason="Invalid client certificate" /></return-response>
          </when>
        </choose>
        <return-response><set-status code="200" reason="OK" /><set-body>welcome</set-body></return-response>
      </inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"#
    );
    let config = format!(
        r#"{{"schemaVersion": 1, "version": "m1",
          "certificates": [{}, {}],
          "caCertificates": [{{"id": "root", "certPem": {}}}],
          "apis": [
            {{"id": "v", "path": "v", "serviceUrl": "http://127.0.0.1:9", "subscriptionRequired": false, "policies": {},
              "operations": [{{"id": "all", "method": "GET", "urlTemplate": "/*"}}]}},
            {{"id": "d", "path": "d", "serviceUrl": "http://127.0.0.1:9", "subscriptionRequired": false, "policies": {},
              "operations": [{{"id": "all", "method": "GET", "urlTemplate": "/*"}}]}}]}}"#,
        server_certificate(&dir, "m", "mtls", "mtls.test", true),
        server_certificate(&dir, "p", "plain", "plain.test", false),
        js(&read(&dir, "ca.pem")),
        js(validate),
        js(&documented),
    );
    let gw = Gateway::start(&config, &["net.server.https.listen=127.0.0.1:0"]);
    let addr = https_addr(&gw);
    let (none, with_alice) = (
        tls_client_config(&dir, None),
        tls_client_config(&dir, Some("alice")),
    );

    let (status, _, body) = get(addr, "mtls.test", &with_alice, "/v/x", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        format!(
            "CN=alice, O=Contoso|CN=edgegate test CA|{alice}|True|{}|CN=alice, O=Contoso",
            {
                // the certificate is valid for two days from now
                let out = std::process::Command::new("openssl")
                    .args(["x509", "-noout", "-enddate", "-in"])
                    .arg(dir.join("alice.pem"))
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout).to_string();
                text.trim().rsplit(' ').nth(1).unwrap().to_string()
            }
        )
    );

    let refused = r#"{"statusCode": 401, "message": "Invalid client certificate."}"#;
    for (client, reason) in [
        (none.clone(), "ClientCertificateNotPresent"),
        (
            tls_client_config(&dir, Some("bob")),
            "ClientCertificateIdentityMismatch",
        ),
        (
            tls_client_config(&dir, Some("mallory")),
            "ClientCertificateNotTrusted",
        ),
        (
            tls_client_config(&dir, Some("old")),
            "ClientCertificateExpired",
        ),
    ] {
        let (status, why, body) = get(addr, "mtls.test", &client, "/v/x", "X-Reason");
        assert_eq!(status, 401, "{reason}: {body}");
        assert_eq!(why, format!("validate-client-certificate:{reason}"));
        assert_eq!(body, refused);
    }

    // the documented check: the right certificate passes, anything else is 403
    assert_eq!(get(addr, "mtls.test", &with_alice, "/d/x", "").0, 200);
    assert_eq!(
        get(
            addr,
            "mtls.test",
            &tls_client_config(&dir, Some("bob")),
            "/d/x",
            ""
        )
        .0,
        403
    );
    assert_eq!(
        get(
            addr,
            "mtls.test",
            &tls_client_config(&dir, Some("mallory")),
            "/d/x",
            ""
        )
        .0,
        403
    );
    // plain.test does not negotiate: the client is never asked, so it sends nothing
    let (status, _, _) = get(addr, "plain.test", &with_alice, "/d/x", "");
    assert_eq!(status, 403);
    let (status, why, _) = get(addr, "plain.test", &with_alice, "/v/x", "X-Reason");
    assert_eq!(
        (status, why.as_str()),
        (
            401,
            "validate-client-certificate:ClientCertificateNotPresent"
        )
    );
}

#[test]
fn authentication_certificate_presents_the_gateways_certificate_to_https_backends() {
    use std::sync::atomic::Ordering;
    let dir = temp_dir("mtls-backend");
    pki(&dir, &[("backend", "IP:127.0.0.1")]);
    client_certificate(&dir, "gw", "gateway", false);
    client_certificate(&dir, "other", "other", false);
    let (gw_thumb, other_thumb) = (thumbprint(&dir, "gw"), thumbprint(&dir, "other"));
    let (backend, connections) = crate::tls::https_server_asking(&dir, "backend", true, |req| {
        let who = req
            .header("X-Client-Thumbprint")
            .unwrap_or("none")
            .to_string();
        (
            200,
            vec![],
            format!("{} {} by {who}", req.method, req.target).into_bytes(),
        )
    });
    let api = |id: &str, inbound: &str| {
        let policy = format!(
            r#"<policies><inbound>{inbound}</inbound><backend><forward-request /></backend><outbound /><on-error>
              <return-response><set-status code="500" /><set-body>@(context.LastError.Source + "|" + context.LastError.Reason + "|" + context.LastError.Message)</set-body></return-response>
            </on-error></policies>"#
        );
        format!(
            r#"{{"id": "{id}", "path": "{id}", "serviceUrl": "https://{backend}", "subscriptionRequired": false, "policies": {},
                "operations": [{{"id": "all", "method": "GET", "urlTemplate": "/*"}}]}}"#,
            js(&policy)
        )
    };
    let pem_of = |stem: &str| {
        format!(
            "{}{}",
            read(&dir, &format!("{stem}.pem")),
            read(&dir, &format!("{stem}.key"))
        )
    };
    let entity = |id: &str, stem: &str| {
        format!(
            r#"{{"id": "{id}", "certPem": {}, "keyPem": {}}}"#,
            js(&read(&dir, &format!("{stem}.pem"))),
            js(&read(&dir, &format!("{stem}.key")))
        )
    };
    // the gateway's certificate as PKCS#12: AES (OpenSSL 3's default) and legacy 3DES
    let export = |out: &str, cipher: &[&str]| {
        let mut args = vec!["pkcs12", "-export", "-in", "gw.pem", "-inkey", "gw.key"];
        args.extend(["-out", out, "-passout", "pass:pfx-secret"]);
        args.extend(cipher);
        openssl(&dir, &args);
    };
    export("gw.pfx", &[]);
    export(
        "legacy.pfx",
        &["-keypbe", "PBE-SHA1-3DES", "-certpbe", "PBE-SHA1-3DES"],
    );
    let b64 = |f: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(dir.join(f)).unwrap())
    };
    let lower = other_thumb.to_ascii_lowercase();
    let apis = [
        api(
            "byid",
            r#"<authentication-certificate certificate-id="gw-client" />"#,
        ),
        api(
            "bythumb",
            &format!(r#"<authentication-certificate thumbprint="{lower}" />"#),
        ),
        api(
            "body",
            r#"<authentication-certificate body="{{client-pem}}" />"#,
        ),
        api(
            "pfx",
            r#"<authentication-certificate body="@(Convert.FromBase64String(&quot;{{client-pfx}}&quot;))" password="{{pfx-pass}}" />"#,
        ),
        api(
            "legacy",
            r#"<authentication-certificate body="@(Convert.FromBase64String(&quot;{{legacy-pfx}}&quot;))" password="{{pfx-pass}}" />"#,
        ),
        api(
            "wrongpass",
            r#"<authentication-certificate body="@(Convert.FromBase64String(&quot;{{client-pfx}}&quot;))" password="nope" />"#,
        ),
        api("none", ""),
        api(
            "unknown",
            r#"<authentication-certificate certificate-id="@(&quot;nope&quot;)" />"#,
        ),
        api(
            "sub",
            &format!(
                r#"<send-request mode="new" response-variable-name="r" timeout="10">
                  <set-url>https://{backend}/token</set-url><set-method>POST</set-method>
                  <authentication-certificate certificate-id="other" />
                </send-request>
                <return-response><set-body>@(((IResponse)context.Variables["r"]).Body.As<string>())</set-body></return-response>"#
            ),
        ),
    ];
    let config = format!(
        r#"{{"schemaVersion": 1, "version": "c1",
          "certificates": [{}, {}],
          "namedValues": [{{"name": "client-pem", "value": {}, "secret": true}},
            {{"name": "client-pfx", "value": "{}"}}, {{"name": "legacy-pfx", "value": "{}"}},
            {{"name": "pfx-pass", "value": "pfx-secret", "secret": true}}],
          "apis": [{}]}}"#,
        entity("gw-client", "gw"),
        entity("other", "other"),
        js(&pem_of("gw")),
        b64("gw.pfx"),
        b64("legacy.pfx"),
        apis.join(", ")
    );
    let ca = format!("net.backend.tls.ca={}", dir.join("ca.pem").display());
    let gw = Gateway::start(&config, &[&ca, "net.server.https.listen=127.0.0.1:0"]);

    for _ in 0..2 {
        let r = send(&gw, "GET", "/byid/a", &[], "");
        assert_eq!((r.status, r.text()), (200, format!("GET /a by {gw_thumb}")));
        let r = send(&gw, "GET", "/bythumb/b", &[], "");
        assert_eq!(
            (r.status, r.text()),
            (200, format!("GET /b by {other_thumb}"))
        );
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        2,
        "one pooled connection per presented certificate"
    );
    // a PEM body (from a secret named value, its line breaks flattened by the XML
    // attribute) presents that certificate too
    let r = send(&gw, "GET", "/body/c", &[], "");
    assert_eq!((r.status, r.text()), (200, format!("GET /c by {gw_thumb}")));
    // a PKCS#12 body with its password, as APIM's examples give it
    let r = send(&gw, "GET", "/pfx/p", &[], "");
    assert_eq!((r.status, r.text()), (200, format!("GET /p by {gw_thumb}")));
    let r = send(&gw, "GET", "/legacy/p", &[], "");
    assert_eq!(r.status, 500);
    assert!(
        r.text().contains("legacy cipher (3DES or RC2)"),
        "{}",
        r.text()
    );
    let r = send(&gw, "GET", "/wrongpass/p", &[], "");
    assert_eq!(r.status, 500);
    assert!(
        r.text().contains("does not open with this password"),
        "{}",
        r.text()
    );
    // inside send-request
    let r = send(&gw, "GET", "/sub/d", &[], "");
    assert_eq!(
        (r.status, r.text()),
        (200, format!("POST /token by {other_thumb}"))
    );
    // no certificate: the backend refuses the handshake
    let r = send(&gw, "GET", "/none/e", &[], "");
    assert_eq!(
        (r.status, r.text()),
        (
            500,
            "forward-request|BackendConnectionFailure|Bad gateway".to_string()
        )
    );
    let r = send(&gw, "GET", "/unknown/f", &[], "");
    assert_eq!(
        (r.status, r.text()),
        (
            500,
            "authentication-certificate|CertificateNotFound|no certificate with id 'nope' in the config"
                .to_string()
        )
    );
    // keys never reach the log
    let log = gw.log_lines().join("\n");
    assert!(
        !log.contains("PRIVATE KEY") && !log.contains("pfx-secret"),
        "{log}"
    );
}

#[test]
fn authentication_certificate_is_checked_when_the_config_loads() {
    for (policy, wanted) in [
        (
            r#"<authentication-certificate />"#,
            "exactly one of thumbprint, certificate-id and body",
        ),
        (
            r#"<authentication-certificate certificate-id="a" thumbprint="B2" />"#,
            "exactly one of thumbprint, certificate-id and body",
        ),
    ] {
        let doc = format!(
            r#"<policies><inbound>{policy}</inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"#
        );
        let config = format!(
            r#"{{"schemaVersion": 1, "apis": [{{"id": "a", "path": "a", "serviceUrl": "https://127.0.0.1:9", "policies": {},
                "operations": [{{"id": "all", "method": "GET", "urlTemplate": "/*"}}]}}]}}"#,
            js(&doc)
        );
        let dir = temp_dir("mtls-check");
        let path = dir.join("c.json");
        std::fs::write(&path, config).unwrap();
        let (code, out, _) = edgegate(&["check", path.to_str().unwrap()]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(wanted), "{policy}: {out}");
        assert!(out.contains("apis[0].policies"), "{out}");
    }
}

#[test]
fn the_plane_ships_the_certificates_policies_present_and_its_ca_certificates() {
    let dir = temp_dir("mtls-plane");
    pki(&dir, &[("backend", "IP:127.0.0.1")]);
    client_certificate(&dir, "gw", "gateway", false);
    let gw_thumb = thumbprint(&dir, "gw");
    let (backend, _) = crate::tls::https_server_asking(&dir, "backend", true, |req| {
        let who = req
            .header("X-Client-Thumbprint")
            .unwrap_or("none")
            .to_string();
        (200, vec![], format!("by {who}").into_bytes())
    });
    let plane = Plane::start();
    let (s, b) = plane.admin(
        "PUT",
        "/admin/certificates/client",
        &format!(
            r#"{{"certPem": {}, "keyPem": {}}}"#,
            js(&read(&dir, "gw.pem")),
            js(&read(&dir, "gw.key"))
        ),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = plane.admin(
        "PUT",
        "/admin/ca-certificates/root",
        &format!(r#"{{"certPem": {}}}"#, js(&read(&dir, "ca.pem"))),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = plane.admin(
        "PUT",
        "/admin/ca-certificates/bad",
        r#"{"certPem": "nope"}"#,
    );
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("certPem"), "{b}");
    let policy = r#"<policies><inbound><authentication-certificate certificate-id="client" /></inbound><backend><forward-request /></backend><outbound /><on-error /></policies>"#;
    plane.publish("gw1", "echo", "echo", &format!("https://{backend}"));
    // the API's policy presents the certificate
    let (s, b) = plane.admin(
        "PUT",
        "/admin/apis/echo",
        &format!(
            r#"{{"path": "echo", "serviceUrl": "https://{backend}", "subscriptionRequired": false, "policies": {}}}"#,
            js(policy)
        ),
    );
    assert!(s == 200 || s == 201, "{s} {b}");
    let token = plane.token("gw1");
    let doc = request(
        plane.addr,
        &format!("GET /gateway/config HTTP/1.1\r\nHost: p\r\nAuthorization: {token}\r\nConnection: close\r\n\r\n"),
    )
    .text();
    assert!(doc.contains(r#""listener":false"#), "{doc}");
    assert!(doc.contains(r#""caCertificates":[{"#), "{doc}");
    // a certificate a policy presents cannot go
    let (s, why) = plane.admin("DELETE", "/admin/certificates/client", "");
    assert_eq!(s, 409);
    assert!(
        why.contains("certificate 'client' is used by api 'echo'"),
        "{why}"
    );

    let ca = format!("net.backend.tls.ca={}", dir.join("ca.pem").display());
    let gw = Gateway::start_service(&plane.url(), &token, &[&ca]);
    assert!(eventually(Duration::from_secs(10), || {
        let r = send(&gw, "GET", "/echo/x", &[], "");
        r.status == 200 && r.text() == format!("by {gw_thumb}")
    }));
}
