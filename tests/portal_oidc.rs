//! OpenID Connect sign-in to the portal against a provider on loopback that behaves as
//! the specification says (discovery, JWKS, an authorization endpoint that sends the
//! browser back with a code, a token endpoint that checks the PKCE verifier and the
//! client secret and signs an RS256 ID token): the plane's redirect, the state cookie,
//! the code exchange, the ID token checks, approval of the new user, and refusals.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, RsaKeyPair};

use crate::common::*;

const SECRET: &str = "client-secret-of-the-portal";

struct Idp {
    origin: Origin,
    /// Sign ID tokens with a key the JWKS does not hold.
    forge: Arc<AtomicBool>,
}

/// What the authorization endpoint handed a code out for: (nonce, code challenge,
/// redirect URI).
type Grant = (String, String, String);

fn query_of(target: &str) -> HashMap<String, String> {
    let q = target.split_once('?').map_or("", |(_, q)| q);
    q.split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                edgegate::telemetry::percent_decoded(&v.replace('+', " ")),
            )
        })
        .collect()
}

fn key(dir: &std::path::Path, name: &str) -> RsaKeyPair {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-outform",
            "DER",
            "-out",
            name,
        ],
    );
    RsaKeyPair::from_der(&std::fs::read(dir.join(name)).unwrap()).unwrap()
}

fn sign(key: &RsaKeyPair, claims: &str) -> String {
    let msg = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(
        &signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        msg.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn start_idp() -> Idp {
    let dir = temp_dir("idp");
    let good = key(&dir, "good.der");
    let other = key(&dir, "other.der");
    let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(good.public());
    let jwks = format!(
        r#"{{"keys": [{{"kty": "RSA", "kid": "k1", "use": "sig", "n": "{}", "e": "{}"}}]}}"#,
        URL_SAFE_NO_PAD.encode(&c.n),
        URL_SAFE_NO_PAD.encode(&c.e)
    );
    let codes: Arc<Mutex<HashMap<String, Grant>>> = Default::default();
    let base: Arc<Mutex<String>> = Default::default();
    let forge = Arc::new(AtomicBool::new(false));
    let (base2, forge2) = (base.clone(), forge.clone());
    let origin = Origin::start(move |req, s| {
        let issuer = base2.lock().unwrap().clone();
        let path = req.target.split('?').next().unwrap_or("");
        match (req.method.as_str(), path) {
            ("GET", "/.well-known/openid-configuration") => {
                let doc = format!(
                    r#"{{"issuer": "{issuer}", "authorization_endpoint": "{issuer}/authorize",
                        "token_endpoint": "{issuer}/token", "jwks_uri": "{issuer}/jwks"}}"#
                );
                respond(
                    s,
                    200,
                    &[("Content-Type", "application/json")],
                    doc.as_bytes(),
                );
            }
            ("GET", "/jwks") => respond(
                s,
                200,
                &[("Content-Type", "application/json")],
                jwks.as_bytes(),
            ),
            ("GET", "/authorize") => {
                let q = query_of(&req.target);
                assert_eq!(q["response_type"], "code");
                assert_eq!(q["client_id"], "portal");
                assert_eq!(q["code_challenge_method"], "S256");
                assert_eq!(q["scope"], "openid email profile");
                let code = format!("code-{}", codes.lock().unwrap().len());
                codes.lock().unwrap().insert(
                    code.clone(),
                    (
                        q["nonce"].clone(),
                        q["code_challenge"].clone(),
                        q["redirect_uri"].clone(),
                    ),
                );
                let back = format!("{}?code={code}&state={}", q["redirect_uri"], q["state"]);
                respond(s, 302, &[("Location", &back)], b"");
            }
            ("POST", "/token") => {
                let form = query_of(&format!("?{}", String::from_utf8_lossy(&req.body)));
                let found = codes.lock().unwrap().remove(&form["code"]);
                let verifier_ok = |challenge: &str| {
                    let d = ring::digest::digest(
                        &ring::digest::SHA256,
                        form["code_verifier"].as_bytes(),
                    );
                    URL_SAFE_NO_PAD.encode(d.as_ref()) == challenge
                };
                match found {
                    Some((nonce, challenge, redirect))
                        if verifier_ok(&challenge)
                            && form["client_secret"] == SECRET
                            && form["redirect_uri"] == redirect
                            && form["grant_type"] == "authorization_code" =>
                    {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap()
                            .as_secs();
                        let claims = format!(
                            r#"{{"iss": "{issuer}", "aud": "portal", "sub": "user-42", "email": "grace@example.org",
                                "given_name": "Grace", "family_name": "Hopper", "nonce": "{nonce}",
                                "iat": {now}, "exp": {}}}"#,
                            now + 300
                        );
                        let signer = if forge2.load(Ordering::SeqCst) {
                            &other
                        } else {
                            &good
                        };
                        let body = format!(
                            r#"{{"id_token": "{}", "token_type": "Bearer"}}"#,
                            sign(signer, &claims)
                        );
                        respond(
                            s,
                            200,
                            &[("Content-Type", "application/json")],
                            body.as_bytes(),
                        );
                    }
                    _ => respond(
                        s,
                        400,
                        &[("Content-Type", "application/json")],
                        br#"{"error": "invalid_grant"}"#,
                    ),
                }
            }
            _ => respond(s, 404, &[], b""),
        }
        true
    });
    *base.lock().unwrap() = origin.url("");
    Idp { origin, forge }
}

fn raw(plane: &Plane, method: &str, target: &str, cookie: &str, body: &str) -> Resp {
    let headers = if body.is_empty() {
        String::new()
    } else {
        format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        )
    };
    request(
        plane.addr,
        &format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\n{headers}Connection: close\r\n\r\n{body}",
            plane.addr
        ),
    )
}

/// A plane whose portal signs in with `idp`.
fn oidc_plane(idp: &Idp) -> Plane {
    Plane::start_with(
        temp_dir("portal-oidc"),
        "127.0.0.1:0",
        &[
            &format!("manage.portal.oidc.issuer={}", idp.origin.url("")),
            "manage.portal.oidc.client.id=portal",
            &format!("manage.portal.oidc.client.secret={SECRET}"),
        ],
    )
}

/// One sign-in: the portal's redirect, the provider's, and the callback's answer.
fn sign_in(plane: &Plane, idp: &Idp) -> Resp {
    let page = get(plane.addr, "/portal/signin");
    let csrf = page.set_cookie("edgegate-portal-csrf").unwrap();
    let host = idp.origin.addr.to_string();
    assert!(
        page.text()
            .contains(&format!("Sign in with {host}</button>")),
        "{}",
        page.text()
    );
    let cookie = format!("edgegate-portal-csrf={csrf}");
    let r = raw(
        plane,
        "POST",
        "/portal/signin/oidc",
        &cookie,
        &format!("csrf={csrf}"),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let to_idp = r.header("location").unwrap().to_string();
    assert!(
        to_idp.starts_with(&idp.origin.url("/authorize?")),
        "{to_idp}"
    );
    let q = query_of(&to_idp);
    assert_eq!(
        q["redirect_uri"],
        format!("http://{}/portal/signin/oidc/callback", plane.addr)
    );
    let state = r.set_cookie("edgegate-oidc").unwrap();
    assert_eq!(q["state"], state);
    // the browser at the provider, which sends it back with a code
    let back = get(idp.origin.addr, to_idp.split_once(&host).unwrap().1);
    assert_eq!(back.status, 302);
    let callback = back.header("location").unwrap().to_string();
    let target = callback.split_once(&plane.addr.to_string()).unwrap().1;
    raw(plane, "GET", target, &format!("edgegate-oidc={state}"), "")
}

#[test]
fn openid_connect_sign_in_makes_a_pending_user_then_signs_in_once_approved() {
    let idp = start_idp();
    let plane = oidc_plane(&idp);
    let r = sign_in(&plane, &idp);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text().contains("an administrator approves new accounts"),
        "{}",
        r.text()
    );
    let (_, users) = plane.admin("GET", "/admin/users", "");
    assert!(
        users.contains("\"identities\":[{\"id\":\"user-42\",\"provider\":\"oidc\"}]")
            && users.contains("\"email\":\"grace@example.org\"")
            && users.contains("\"state\":\"pending\""),
        "{users}"
    );
    let id = users
        .split("\"id\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let (_, user) = plane.admin("GET", &format!("/admin/users/{id}"), "");
    let (s, b) = plane.admin(
        "PUT",
        &format!("/admin/users/{id}"),
        &user.replace("\"pending\"", "\"active\""),
    );
    assert_eq!(s, 200, "{b}");

    let r = sign_in(&plane, &idp);
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/portal/profile")),
        "{}",
        r.text()
    );
    let session = r.set_cookie("edgegate-portal").unwrap();
    let profile = raw(
        &plane,
        "GET",
        "/portal/profile",
        &format!("edgegate-portal={session}"),
        "",
    );
    assert_eq!(profile.status, 200);
    assert!(profile
        .text()
        .contains("<span id=\"who\">grace@example.org</span>"));
    let (_, users) = plane.admin("GET", "/admin/users", "");
    assert_eq!(
        users.matches("user-42").count(),
        1,
        "the same user again: {users}"
    );

    // a token signed with a key the provider does not publish is refused
    idp.forge.store(true, Ordering::SeqCst);
    let r = sign_in(&plane, &idp);
    assert_eq!(r.status, 401);
    assert!(r.text().contains("could not be verified"), "{}", r.text());
    assert!(r.set_cookie("edgegate-portal").is_none());
}

#[test]
fn a_callback_without_this_browsers_state_is_refused_and_a_state_is_used_once() {
    let idp = start_idp();
    let plane = oidc_plane(&idp);
    // a state the browser does not hold (an attacker's link)
    let r = raw(
        &plane,
        "GET",
        "/portal/signin/oidc/callback?code=x&state=abc",
        "edgegate-oidc=def",
        "",
    );
    assert_eq!(r.status, 403);
    // a sign-in started without the form's CSRF token
    let r = raw(&plane, "POST", "/portal/signin/oidc", "", "csrf=x");
    assert_eq!(r.status, 403);
    // the provider refused
    let r = raw(
        &plane,
        "GET",
        "/portal/signin/oidc/callback?error=access_denied&state=s",
        "",
        "",
    );
    assert_eq!(r.status, 401);
    assert!(r.text().contains("did not sign you in (access_denied)"));
    // a real one, then the same callback again
    let page = get(plane.addr, "/portal/signin");
    let csrf = page.set_cookie("edgegate-portal-csrf").unwrap();
    let r = raw(
        &plane,
        "POST",
        "/portal/signin/oidc",
        &format!("edgegate-portal-csrf={csrf}"),
        &format!("csrf={csrf}"),
    );
    let to_idp = r.header("location").unwrap().to_string();
    let state = r.set_cookie("edgegate-oidc").unwrap();
    let host = idp.origin.addr.to_string();
    let back = get(idp.origin.addr, to_idp.split_once(&host).unwrap().1);
    let callback = back.header("location").unwrap().to_string();
    let target = callback
        .split_once(&plane.addr.to_string())
        .unwrap()
        .1
        .to_string();
    let first = raw(
        &plane,
        "GET",
        &target,
        &format!("edgegate-oidc={state}"),
        "",
    );
    assert_eq!(first.status, 403, "pending: {}", first.text());
    assert!(first.text().contains("approves new accounts"));
    let again = raw(
        &plane,
        "GET",
        &target,
        &format!("edgegate-oidc={state}"),
        "",
    );
    assert_eq!(again.status, 403);
    assert!(
        again
            .text()
            .contains("was not started here, or it took too long"),
        "{}",
        again.text()
    );
}
