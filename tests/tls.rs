//! HTTPS on the gateway: certificates from the config document, chosen by SNI, TLS
//! handshakes on the event loop, `protocols` routing by scheme, X-Forwarded-Proto, large
//! bodies and keep-alive over TLS, garbage on the TLS port, and invalid certificates
//! refused with their path. Real binary, real origins, certificates made with openssl.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

fn certificate(dir: &Path, id: &str, stem: &str, hostnames: &[&str]) -> String {
    let read = |f: String| std::fs::read_to_string(dir.join(f)).unwrap();
    let names: Vec<String> = hostnames.iter().map(|h| format!("\"{h}\"")).collect();
    format!(
        r#"{{"id": "{id}", "hostnames": [{}], "certPem": {}, "keyPem": {}}}"#,
        names.join(", "),
        js(&read(format!("{stem}.pem"))),
        js(&read(format!("{stem}.key")))
    )
}

/// A TLS client trusting only the test CA.
struct Client {
    config: Arc<rustls::ClientConfig>,
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

impl Client {
    fn new(dir: &Path) -> Client {
        Client {
            config: tls_client_config(dir, None),
        }
    }

    fn connect(&self, addr: SocketAddr, sni: &str) -> Tls {
        let name = ServerName::try_from(sni.to_string()).unwrap();
        let conn = rustls::ClientConnection::new(Arc::clone(&self.config), name).unwrap();
        let sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        rustls::StreamOwned::new(conn, sock)
    }
}

/// The DER of the certificate the server presented.
fn presented(tls: &Tls) -> Vec<u8> {
    tls.conn.peer_certificates().unwrap()[0].as_ref().to_vec()
}

fn der_of(dir: &Path, stem: &str) -> Vec<u8> {
    CertificateDer::from_pem_file(dir.join(format!("{stem}.pem")))
        .unwrap()
        .as_ref()
        .to_vec()
}

#[test]
fn https_with_sni_certificates_scheme_routing_and_streaming() {
    let dir = temp_dir("tls");
    pki(
        &dir,
        &[("a", "DNS:a.test"), ("b", "DNS:b.test,DNS:*.wild.test")],
    );
    let big = Arc::new(vec![b'z'; 1 << 20]);
    let body = Arc::clone(&big);
    let origin = Origin::start(move |req, s| {
        if req.target.contains("big") {
            respond(s, 200, &[], &body);
        } else {
            let proto = req.header("X-Forwarded-Proto").unwrap_or("-").to_string();
            respond(
                s,
                200,
                &[],
                format!("{} via {proto}", req.target).as_bytes(),
            );
        }
        true
    });
    let config = format!(
        r#"{{"schemaVersion": 1, "version": "t1",
          "certificates": [{}, {}],
          "apis": [
            {{"id": "sec", "path": "sec", "serviceUrl": "{url}", "protocols": ["https"], "subscriptionRequired": false,
              "operations": [{{"id": "all", "method": "*", "urlTemplate": "/*"}}]}},
            {{"id": "both", "path": "both", "serviceUrl": "{url}", "subscriptionRequired": false,
              "operations": [{{"id": "all", "method": "*", "urlTemplate": "/*"}}]}}]}}"#,
        certificate(&dir, "a", "a", &["a.test"]),
        certificate(&dir, "b", "b", &["b.test", "*.wild.test"]),
        url = origin.url("")
    );
    let gw = Gateway::start(&config, &["net.server.https.listen=127.0.0.1:0"]);
    let addr = https_addr(&gw);
    let client = Client::new(&dir);

    // SNI picks the certificate: exact, wildcard, and the first one otherwise
    for (sni, stem) in [
        ("a.test", "a"),
        ("b.test", "b"),
        ("x.wild.test", "b"),
        ("unknown.test", "a"),
    ] {
        let mut tls = client.connect(addr, sni);
        let request = format!("GET /sec/x HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n");
        if stem == "a" && sni == "unknown.test" {
            // the client refuses a certificate for another name; the server offered "a"
            let err = tls.write_all(request.as_bytes()).and_then(|_| tls.flush());
            let mut sink = Vec::new();
            let read = tls.read_to_end(&mut sink);
            assert!(err.is_err() || read.is_err(), "a name mismatch is refused");
            continue;
        }
        tls.write_all(request.as_bytes()).unwrap();
        let resp = read_response(&mut BufReader::new(&mut tls), false).expect("an answer");
        assert_eq!(resp.status, 200, "{sni}");
        assert_eq!(resp.text(), "/x via https");
        assert_eq!(presented(&tls), der_of(&dir, stem), "{sni}");
    }

    // an https-only API is not served over plain HTTP
    assert_eq!(get(gw.addr, "/sec/x").status, 404);
    assert_eq!(get(gw.addr, "/both/x").text(), "/x via http");

    // keep-alive over TLS: a 1 MiB answer, then another request on the same connection
    let mut tls = client.connect(addr, "a.test");
    tls.write_all(b"GET /both/big HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(tls);
    let resp = read_response(&mut reader, false).expect("the large answer");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), big.len());
    assert!(resp.body.iter().all(|b| *b == b'z'));
    reader
        .get_mut()
        .write_all(b"GET /both/again HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut reader, false).expect("a second answer");
    assert_eq!(resp.text(), "/again via https");

    // bytes that are not TLS: the connection closes, the gateway carries on
    let mut raw = TcpStream::connect(addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    let mut sink = Vec::new();
    let _ = raw.read_to_end(&mut sink);
    assert!(
        !String::from_utf8_lossy(&sink).contains("HTTP/1.1 200"),
        "no plaintext answer on the TLS port"
    );
    let mut tls = client.connect(addr, "b.test");
    tls.write_all(b"GET /sec/still HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut BufReader::new(&mut tls), false).unwrap();
    assert_eq!(resp.text(), "/still via https");
}

#[test]
fn invalid_certificates_are_refused_with_their_path_and_no_key_text() {
    let dir = temp_dir("tls-bad");
    pki(&dir, &[("a", "DNS:a.test"), ("b", "DNS:b.test")]);
    // a's certificate with b's key
    let mismatched = certificate(&dir, "a", "a", &["a.test"]).replace(
        &js(&std::fs::read_to_string(dir.join("a.key")).unwrap()),
        &js(&std::fs::read_to_string(dir.join("b.key")).unwrap()),
    );
    let doc = format!(
        r#"{{"schemaVersion": 1, "certificates": [{mismatched}, {{"id": "c", "certPem": "nope", "keyPem": "secret-key-text"}}], "apis": []}}"#
    );
    let path = dir.join("c.json");
    std::fs::write(&path, doc).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check", path.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "certificates[0].keyPem: does not belong to the first certificate of certPem"
        ),
        "{text}"
    );
    assert!(
        text.contains("certificates[1].certPem: no certificate in it"),
        "{text}"
    );
    assert!(
        !text.contains("secret-key-text") && !text.contains("PRIVATE KEY"),
        "{text}"
    );
}

#[test]
fn the_plane_hands_a_gateway_its_certificates_and_keeps_the_keys() {
    let dir = temp_dir("tls-plane");
    pki(&dir, &[("gw", "DNS:gw.test")]);
    let origin = Origin::text("over tls");
    let plane = Plane::start();
    plane.publish("gw1", "echo", "echo", &origin.url(""));
    plane.publish("gw2", "other", "other", &origin.url(""));
    let cert = certificate(&dir, "ignored", "gw", &["gw.test"]);
    let body = cert.replacen(r#""id": "ignored", "#, "", 1);
    let (s, answer) = plane.admin("PUT", "/admin/certificates/gw-cert", &body);
    assert_eq!(s, 201, "{answer}");
    assert!(
        !answer.contains("PRIVATE KEY"),
        "the key never comes back: {answer}"
    );
    let (s, listed) = plane.admin("GET", "/admin/certificates", "");
    assert_eq!(s, 200);
    assert!(
        listed.contains("gw-cert") && !listed.contains("PRIVATE KEY"),
        "{listed}"
    );
    assert_eq!(
        plane
            .admin("PUT", "/admin/gateways/gw1/certificates/gw-cert", "")
            .0,
        201
    );
    let gw = Gateway::start_service(
        &plane.url(),
        &plane.token("gw1"),
        &["net.server.https.listen=127.0.0.1:0"],
    );
    let addr = https_addr(&gw);
    let mut tls = Client::new(&dir).connect(addr, "gw.test");
    tls.write_all(b"GET /echo/x HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut BufReader::new(&mut tls), false).unwrap();
    assert_eq!((resp.status, resp.text()), (200, "over tls".to_string()));
    // a gateway it is not linked to does not get the key
    let token2 = plane.token("gw2");
    let doc = request(
        plane.addr,
        &format!("GET /gateway/config HTTP/1.1\r\nHost: p\r\nAuthorization: {token2}\r\nConnection: close\r\n\r\n"),
    )
    .text();
    assert!(
        !doc.contains("certificates") && !doc.contains("PRIVATE KEY"),
        "{doc}"
    );
    // a certificate a gateway presents cannot go; unlinked, it can
    let (s, why) = plane.admin("DELETE", "/admin/certificates/gw-cert", "");
    assert_eq!(s, 409);
    assert!(
        why.contains("certificate 'gw-cert' is used by gateway 'gw1'"),
        "{why}"
    );
    assert_eq!(
        plane
            .admin("DELETE", "/admin/gateways/gw1/certificates/gw-cert", "")
            .0,
        204
    );
    assert_eq!(
        plane.admin("DELETE", "/admin/certificates/gw-cert", "").0,
        204
    );
}

/// What an HTTPS test server answers: status, headers, body.
pub type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// An HTTPS server with `stem`'s certificate answering each request with `handler`,
/// counting connections.
pub fn https_server(
    dir: &Path,
    stem: &str,
    handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    https_server_asking(dir, stem, false, handler)
}

/// `https_server`, which with `require_client_certificate` refuses a handshake without
/// a client certificate of the test CA, and shows the handler the certificate's
/// SHA-1 thumbprint as an `X-Client-Thumbprint` header.
pub fn https_server_asking(
    dir: &Path,
    stem: &str,
    require_client_certificate: bool,
    handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join(format!("{stem}.pem")))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key =
        rustls_pki_types::PrivateKeyDer::from_pem_file(dir.join(format!("{stem}.key"))).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if require_client_certificate {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap())
            .unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = Arc::new(builder.with_single_cert(certs, key).unwrap());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(sock) = sock else { break };
            counted.fetch_add(1, Ordering::SeqCst);
            let config = Arc::clone(&config);
            let handler = Arc::clone(&handler);
            std::thread::spawn(move || {
                let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut reader = BufReader::new(rustls::StreamOwned::new(conn, sock));
                while let Some(mut req) = read_request(&mut reader, 0) {
                    let client = reader.get_ref().conn.peer_certificates().map(|c| {
                        let d = ring::digest::digest(
                            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                            c[0].as_ref(),
                        );
                        d.as_ref()
                            .iter()
                            .map(|b| format!("{b:02X}"))
                            .collect::<String>()
                    });
                    if let Some(t) = client {
                        req.headers.push(("X-Client-Thumbprint".into(), t));
                    }
                    let (status, headers, body) = handler(&req);
                    let mut head =
                        format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
                    for (k, v) in headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    let s = reader.get_mut();
                    if s.write_all(head.as_bytes())
                        .and_then(|_| s.write_all(&body))
                        .and_then(|_| s.flush())
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, connections)
}

/// An HTTPS origin with `stem`'s certificate: answers "tls origin: METHOD TARGET BODY",
/// counting connections.
fn https_origin(dir: &Path, stem: &str) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    https_server(dir, stem, |req| {
        let body = format!(
            "tls origin: {} {} {}",
            req.method,
            req.target,
            String::from_utf8_lossy(&req.body)
        );
        (200, Vec::new(), body.into_bytes())
    })
}

#[test]
fn https_backends_are_checked_pooled_and_refused_when_untrusted() {
    use std::sync::atomic::Ordering;
    let dir = temp_dir("tls-backend");
    pki(&dir, &[("origin", "DNS:origin.test,IP:127.0.0.1")]);
    let (origin, connections) = https_origin(&dir, "origin");
    let config = format!(
        r#"{{"schemaVersion": 1, "version": "b1", "apis": [
            {{"id": "sec", "path": "sec", "serviceUrl": "https://{origin}/base", "subscriptionRequired": false,
              "operations": [{{"id": "all", "method": "*", "urlTemplate": "/*"}}]}}]}}"#
    );
    let ca = format!("net.backend.tls.ca={}", dir.join("ca.pem").display());
    let gw = Gateway::start(&config, &[&ca]);
    // a plain client, a TLS backend: two calls on one backend connection
    let s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    (&s).write_all(b"GET /sec/one HTTP/1.1\r\nHost: g\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut r, false).expect("an answer");
    assert_eq!(
        (resp.status, resp.text()),
        (200, "tls origin: GET /base/one ".to_string())
    );
    (&s).write_all(b"POST /sec/two HTTP/1.1\r\nHost: g\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    let resp = read_response(&mut r, false).expect("a second answer");
    assert_eq!(resp.text(), "tls origin: POST /base/two hello");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "the TLS connection was reused"
    );

    // without the private CA the backend's certificate is refused: 502, nothing sent
    let untrusting = Gateway::start(&config, &[]);
    let before = connections.load(Ordering::SeqCst);
    let resp = get(untrusting.addr, "/sec/three");
    assert_eq!(resp.status, 502);
    assert_eq!(resp.text(), error_body(502, "Bad gateway"));
    assert!(
        connections.load(Ordering::SeqCst) > before,
        "it did connect, then refused"
    );
    assert!(untrusting
        .wait_for_log("url=/sec/three")
        .contains("errorReason=backend_tls_failed"));
}

#[test]
fn an_unreadable_backend_ca_stops_the_start_with_one_line() {
    let dir = temp_dir("tls-ca");
    let (code, err) = start_refused(&dir, &["net.backend.tls.ca=/nonexistent/ca.pem"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("edgegate: cannot read net.backend.tls.ca /nonexistent/ca.pem")),
        "{err}"
    );
}

#[test]
fn policies_call_https_services_with_the_backends_trust() {
    let dir = temp_dir("tls-send-request");
    pki(&dir, &[("idp", "DNS:idp.test,IP:127.0.0.1")]);
    let (idp, connections) = https_origin(&dir, "idp");
    let backend = Origin::echo();
    let policy = format!(
        r#"<policies><inbound>
  <send-request mode="new" response-variable-name="r" timeout="10">
    <set-url>https://{idp}/token?x=1</set-url><set-method>POST</set-method><set-body>grant</set-body>
  </send-request>
  <return-response><set-body>@(((IResponse)context.Variables["r"]).Body.As<string>())</set-body></return-response>
</inbound><backend><forward-request /></backend><outbound /><on-error>
  <return-response><set-status code="502" /><set-body>@(context.LastError.Source + "|" + context.LastError.Reason)</set-body></return-response>
</on-error></policies>"#
    );
    let config = format!(
        r#"{{"schemaVersion": 1, "apis": [{{"id": "s", "path": "s", "serviceUrl": "{}", "subscriptionRequired": false,
            "operations": [{{"id": "any", "method": "*", "urlTemplate": "/*", "policies": {}}}]}}]}}"#,
        backend.url(""),
        js(&policy)
    );
    let ca = format!("net.backend.tls.ca={}", dir.join("ca.pem").display());
    let gw = Gateway::start(&config, &[&ca]);
    for _ in 0..2 {
        let r = send(&gw, "GET", "/s/x", &[], "");
        assert_eq!(
            (r.status, r.text()),
            (200, "tls origin: POST /token?x=1 grant".to_string())
        );
    }
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the policy's TLS connection was pooled"
    );
    // a gateway that does not trust the private CA refuses the certificate
    let untrusting = Gateway::start(&config, &[]);
    let r = send(&untrusting, "GET", "/s/x", &[], "");
    assert_eq!(
        (r.status, r.text()),
        (502, "send-request|BackendConnectionFailure".to_string())
    );
    assert!(backend.requests().is_empty());
}
