//! The developer portal and the operator console: in a real browser (headless Chromium
//! through ChromeDriver) against the real plane, a real federated gateway and a real
//! origin; and at the HTTP level for what a browser does not show (headers, CSRF,
//! throttling, escaping).

use std::time::Duration;

use crate::common::browser::Browser;
use crate::common::*;

const PASSWORD: &str = "correct horse battery staple";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plane whose portal relays try-it calls to a gateway on `gw_port`, with the petstore
/// imported (served by `origin`), a product that needs approval and has terms and a
/// limit of one subscription per developer, and gateway gw1 serving the API.
fn portal_plane(gw_port: u16, origin: &Origin) -> Plane {
    let plane = Plane::start_with(
        temp_dir("portal"),
        "127.0.0.1:0",
        &[&format!(
            "manage.portal.gateway.url=http://127.0.0.1:{gw_port}"
        )],
    );
    let spec = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/openapi/v3.0_petstore.json"
    ))
    .unwrap();
    let (s, b) = plane.admin(
        "PUT",
        &format!(
            "/admin/apis/pets?import=openapi&path=pets&serviceUrl={}",
            origin.url("/v1")
        ),
        &spec,
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = plane.admin(
        "PUT",
        "/admin/products/starter",
        r#"{"displayName": "Starter", "description": "Pets for everyone.", "approvalRequired": true,
            "terms": "Be kind to the pets.", "subscriptionsLimit": 1}"#,
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = plane.admin("PUT", "/admin/products/starter/apis/pets", "");
    assert_eq!(s, 201, "{b}");
    let (s, b) = plane.admin("PUT", "/admin/gateways/gw1", "{}");
    assert_eq!(s, 201, "{b}");
    let (s, b) = plane.admin("PUT", "/admin/gateways/gw1/apis/pets", "");
    assert_eq!(s, 201, "{b}");
    plane
}

/// `portal_plane` and gateway gw1 federated to it (heartbeats every second) on the port
/// the portal relays try-it calls to.
fn portal_and_gateway(origin: &Origin) -> (Plane, Gateway) {
    let gw_port = free_port();
    let plane = portal_plane(gw_port, origin);
    let listen = format!("net.server.http.listen=127.0.0.1:{gw_port}");
    let gw = Gateway::start_service(
        &plane.url(),
        &plane.token("gw1"),
        &[&listen, "config.service.heartbeat.interval=1s"],
    );
    (plane, gw)
}

fn sign_in_to_console(browser: &Browser, plane: &Plane) {
    browser.goto(&format!("{}/console/signin", plane.url()));
    browser.fill("#token", ADMIN_TOKEN);
    browser.submit("#signin");
    assert_eq!(
        browser.url_when(&format!("{}/console", plane.url())),
        format!("{}/console", plane.url()),
        "{}",
        browser.text("main")
    );
}

fn sign_in_to_portal(browser: &Browser, plane: &Plane, email: &str) {
    browser.goto(&format!("{}/portal/signin", plane.url()));
    browser.fill("#email", email);
    browser.fill("#password", PASSWORD);
    browser.submit("#signin");
}

#[test]
fn sign_up_approval_subscription_key_try_it_and_usage_in_a_real_browser() {
    let origin = Origin::echo();
    let (plane, gw) = portal_and_gateway(&origin);
    // the API is served (a key is required)
    assert!(eventually(Duration::from_secs(20), || get(
        gw.addr,
        "/pets/pets"
    )
    .status
        == 401));

    let browser = Browser::start();
    let portal = format!("{}/portal", plane.url());
    // sign-up: the account waits for an administrator
    browser.goto(&format!("{portal}/signup"));
    browser.fill("#email", "ada@example.org");
    browser.fill("#first-name", "Ada");
    browser.fill("#last-name", "Lovelace");
    browser.fill("#password", PASSWORD);
    browser.submit("#signup");
    assert!(browser.text_when("#pending", "Your account was created. An administrator approves new accounts; you can sign in once yours is approved.").contains("An administrator approves new accounts"));
    sign_in_to_portal(&browser, &plane, "ada@example.org");
    assert_eq!(
        browser.text_when(
            ".notice.error",
            "Your account awaits approval by an administrator."
        ),
        "Your account awaits approval by an administrator."
    );

    // approval in the console
    sign_in_to_console(&browser, &plane);
    browser.goto(&format!("{}/console/approvals", plane.url()));
    assert!(browser.text("#pending-users").contains("ada@example.org"));
    browser.screenshot("console-approvals");
    browser.submit("button[id^=approve-user-]");
    assert_eq!(
        browser.text_when(
            ".notice.ok",
            "The account was approved; its owner can sign in now."
        ),
        "The account was approved; its owner can sign in now."
    );
    assert!(browser.try_find("#pending-users").is_none());

    // the developer signs in, finds the API and subscribes
    sign_in_to_portal(&browser, &plane, "ada@example.org");
    assert_eq!(
        browser.url_when(&format!("{portal}/profile")),
        format!("{portal}/profile")
    );
    assert_eq!(
        browser.text_when("#who", "ada@example.org"),
        "ada@example.org"
    );
    browser.goto(&portal);
    assert_eq!(
        browser.text_when("#count", "1–1 of 1 APIs"),
        "1–1 of 1 APIs"
    );
    assert!(browser.text("#apis").starts_with("Swagger Petstore"));
    browser.screenshot("portal-catalogue");
    browser.goto(&format!("{portal}/apis/pets"));
    assert!(browser.text("#operations").contains("List all pets"));
    browser.goto(&format!("{portal}/products/starter"));
    browser.submit("#subscribe");
    assert_eq!(
        browser.text_when(".notice.error", "Accept the terms of use to subscribe."),
        "Accept the terms of use to subscribe."
    );
    browser.click("#terms");
    browser.submit("#subscribe");
    assert_eq!(
        browser.url_when(&format!("{portal}/profile")),
        format!("{portal}/profile")
    );
    assert_eq!(
        browser.text_when(".subscription .state", "submitted"),
        "submitted"
    );
    assert!(
        browser.try_find("#primary-key").is_none(),
        "no key before approval"
    );
    // one subscription per developer: a second is refused
    browser.goto(&format!("{portal}/products/starter"));
    browser.click("#terms");
    browser.submit("#subscribe");
    assert_eq!(
        browser.text_when(
            ".notice.error",
            "You hold 1 subscription(s) to this product, its limit per developer."
        ),
        "You hold 1 subscription(s) to this product, its limit per developer."
    );

    // the console approves the subscription; the key shows in the profile
    browser.goto(&format!("{}/console/approvals", plane.url()));
    browser.submit("button[id^=approve-subscription-]");
    browser.goto(&format!("{portal}/profile"));
    assert_eq!(
        browser.text_when(".subscription .state", "active"),
        "active"
    );
    let key = browser.text("#primary-key");
    let (_, subs) = plane.admin("GET", "/admin/subscriptions", "");
    let sub_id = subs
        .split("\"id\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let (_, secrets) = plane.admin(
        "POST",
        &format!("/admin/subscriptions/{sub_id}/listSecrets"),
        "",
    );
    assert!(
        secrets.contains(&format!("\"primaryKey\":\"{key}\"")),
        "{secrets} vs {key}"
    );
    browser.screenshot("portal-profile");

    // try-it: the portal relays the call to the gateway with the key added there
    assert!(eventually(Duration::from_secs(20), || {
        send(
            &gw,
            "GET",
            "/pets/pets",
            &[("Ocp-Apim-Subscription-Key", &key)],
            "",
        )
        .status
            == 200
    }));
    let before = origin.requests().len();
    browser.goto(&format!("{portal}/apis/pets/operations/showpetbyid"));
    browser.fill("#try-param-petId", "42");
    browser.submit("#try-send");
    assert_eq!(browser.text_when("#try-status", "200"), "200");
    assert_eq!(
        browser.text_when("#try-body-out", "GET /v1/pets/42"),
        "GET /v1/pets/42"
    );
    let seen = origin.requests();
    assert_eq!(seen.len(), before + 1);
    assert_eq!(seen[before].target, "/v1/pets/42");
    assert!(
        !browser.text("main").contains(&key),
        "the key is never put in the page"
    );
    browser.screenshot("portal-try-it");

    // the call shows in the subscription's usage once the gateway uploads it
    browser.goto(&format!("{portal}/subscriptions/{sub_id}/usage"));
    let counted = browser.reload_until(Duration::from_secs(30), |b| {
        b.text("#usage tbody td:first-child") == "2"
    });
    assert!(counted, "usage: {}", browser.text("#usage"));
    assert_eq!(browser.text_when("#usage tbody td:nth-child(2)", "0"), "0");
    browser.screenshot("portal-usage");
    // and in the console's traffic, per gateway and API, with its latency charts
    browser.goto(&format!("{}/console/traffic", plane.url()));
    let traffic = browser.text("main");
    assert!(traffic.contains("gw1 · pets"), "{traffic}");
    for chart in [
        "Requests per minute",
        "Error rate per minute (%)",
        "p50 latency per minute (ms)",
        "p99 latency per minute (ms)",
    ] {
        assert!(traffic.contains(chart), "{chart} in {traffic}");
    }
    browser.screenshot("console-traffic");
}

#[test]
fn the_fleet_view_shows_a_gateway_going_disconnected() {
    let origin = Origin::text("ok");
    let (plane, gw) = portal_and_gateway(&origin);
    let browser = Browser::start();
    sign_in_to_console(&browser, &plane);
    let connected = browser.reload_until(Duration::from_secs(20), |b| {
        b.text("#fleet .state") == "connected" && b.text("#fleet").contains("current")
    });
    assert!(connected, "{}", browser.text("#fleet"));
    assert_eq!(
        browser.text_when(
            "#fleet-summary",
            "1 instance(s) connected, 0 offline or never connected, 1 gateway(s)."
        ),
        "1 instance(s) connected, 0 offline or never connected, 1 gateway(s)."
    );
    browser.screenshot("console-fleet");
    gw.kill();
    let gone = browser.reload_until(Duration::from_secs(20), |b| {
        b.text("#fleet .state") == "disconnected"
    });
    assert!(gone, "{}", browser.text("#fleet"));
    assert!(browser.text("#fleet").contains("no heartbeat for"));
    assert_eq!(
        browser.text_when(
            "#fleet-summary",
            "0 instance(s) connected, 1 offline or never connected, 1 gateway(s)."
        ),
        "0 instance(s) connected, 1 offline or never connected, 1 gateway(s)."
    );
    browser.screenshot("console-fleet-disconnected");
}

/// (status, headers, body) of a raw request to the plane.
fn call(plane: &Plane, raw: &str) -> Resp {
    request(plane.addr, raw)
}

/// The value of the cookie `name` that `r` sets (it must set it).
fn set_cookie(r: &Resp, name: &str) -> String {
    r.set_cookie(name)
        .unwrap_or_else(|| panic!("no {name} cookie in {:?}", r.headers))
}

fn csrf_cookie(r: &Resp) -> String {
    set_cookie(r, "edgegate-portal-csrf")
}

fn post_form(plane: &Plane, path: &str, cookie: &str, origin: Option<&str>, body: &str) -> Resp {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    call(
        plane,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\n{origin}Cookie: {cookie}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            plane.addr,
            body.len()
        ),
    )
}

#[test]
fn pages_carry_a_strict_policy_forms_need_their_token_and_text_is_escaped() {
    let origin = Origin::text("ok");
    let plane = portal_plane(free_port(), &origin);
    let (s, b) = plane.admin(
        "PUT",
        "/admin/apis/xss",
        r#"{"displayName": "<script>alert(1)</script>", "path": "xss", "serviceUrl": "http://127.0.0.1:9"}"#,
    );
    assert_eq!(s, 201, "{b}");
    plane.admin("PUT", "/admin/products/starter/apis/xss", "");
    let page = get(plane.addr, "/portal");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-security-policy"),
        Some("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let html = page.text();
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script"), "no script on any page");
    let token = csrf_cookie(&page);
    let cookie_line = page
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .unwrap()
        .1
        .clone();
    assert!(
        cookie_line.ends_with("; Path=/portal; HttpOnly; SameSite=Lax"),
        "{cookie_line}"
    );

    let cookie = format!("edgegate-portal-csrf={token}");
    let form = "email=eve%40example.org&firstName=Eve&lastName=E&password=long+enough+secret";
    // no token, a wrong one, or another origin: refused before anything happens
    for (body, from) in [
        (form.to_string(), None),
        (format!("csrf=forged&{form}"), None),
        (format!("csrf={token}&{form}"), Some("http://evil.example")),
    ] {
        let r = post_form(&plane, "/portal/signup", &cookie, from, &body);
        assert_eq!(r.status, 403, "{}", r.text());
    }
    let (_, users) = plane.admin("GET", "/admin/users", "");
    assert_eq!(users, "[]");
    let own = format!("http://{}", plane.addr);
    let r = post_form(
        &plane,
        "/portal/signup",
        &cookie,
        Some(&own),
        &format!("csrf={token}&{form}"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let (_, users) = plane.admin("GET", "/admin/users", "");
    assert!(
        users.contains("\"state\":\"pending\"") && !users.contains("pbkdf2"),
        "{users}"
    );

    // the console needs a session; the admin API's token in a form signs in
    let r = get(plane.addr, "/console");
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/console/signin"))
    );
}

/// A console session signed in with the admin token over HTTP: (cookie, CSRF token).
fn console_session(plane: &Plane) -> (String, String) {
    let page = get(plane.addr, "/console/signin");
    let token = set_cookie(&page, "edgegate-console-csrf");
    let cookie = format!("edgegate-console-csrf={token}");
    let r = post_form(
        plane,
        "/console/signin",
        &cookie,
        None,
        &format!("csrf={token}&token={ADMIN_TOKEN}"),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let session = format!("edgegate-console={}", set_cookie(&r, "edgegate-console"));
    let page = console_get(plane, "/console/approvals", &session);
    let csrf = page.form_csrf();
    (session, csrf)
}

fn console_get(plane: &Plane, path: &str, session: &str) -> Resp {
    call(
        plane,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: p\r\nCookie: {session}\r\nConnection: close\r\n\r\n"
        ),
    )
}

#[test]
fn the_console_imports_edits_products_and_keeps_a_policy_that_does_not_compile_out() {
    let plane = portal_plane(free_port(), &Origin::text("ok"));
    let (session, csrf) = console_session(&plane);
    let post = |path: &str, body: &str| {
        post_form(&plane, path, &session, None, &format!("csrf={csrf}&{body}"))
    };
    let enc = |s: &str| edgegate::manage::web::html::url(s);
    // import from the console
    let spec = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/openapi/v3.0_petstore-expanded.yaml"
    ))
    .unwrap();
    let r = post(
        "/console/import",
        &format!(
            "id=petsx&path=petsx&serviceUrl={}&document={}",
            enc("http://127.0.0.1:9"),
            enc(&spec)
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains(
            "API petsx imported: 4 operation(s) added, 0 updated, 0 unchanged, 0 deleted."
        ),
        "{}",
        r.text()
    );
    let (s, _) = plane.admin("GET", "/admin/apis/petsx/operations/findpets", "");
    assert_eq!(s, 200);
    // a document with an external reference is refused with its pointer
    let r = post(
        "/console/import",
        &format!(
            "id=bad&document={}",
            enc(
                r##"{"openapi": "3.0.0", "info": {"title": "t", "version": "1"}, "paths": {"/a": {"get": {"responses": {"200": {"description": "x", "content": {"application/json": {"schema": {"$ref": "other.yaml#/X"}}}}}}}}}"##
            )
        ),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.text()
            .contains("/paths/~1a/get/responses/200/content/application~1json/schema"),
        "{}",
        r.text()
    );
    assert_eq!(plane.admin("GET", "/admin/apis/bad", "").0, 404);

    // a new product, then its API
    let r = post("/console/products", "id=gold&displayName=Gold&terms=Pay+on+time&published=on&subscriptionRequired=on&approvalRequired=on&subscriptionsLimit=2&groups=developers");
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/console/products/gold")),
        "{}",
        r.text()
    );
    let r = post("/console/products/gold/apis", "api=petsx");
    assert_eq!(r.status, 303);
    let (_, product) = plane.admin("GET", "/admin/products/gold", "");
    for want in [
        r#""apis":["petsx"]"#,
        r#""approvalRequired":true"#,
        r#""subscriptionsLimit":2"#,
        r#""groups":["developers"]"#,
        r#""terms":"Pay on time""#,
        r#""state":"published""#,
    ] {
        assert!(product.contains(want), "{want} in {product}");
    }
    let r = post(
        "/console/products",
        "id=gold&displayName=Gold&subscriptionsLimit=many",
    );
    assert_eq!(r.status, 400);
    assert!(r
        .text()
        .contains("subscriptionsLimit: must be a whole number of at least 0"));

    // a policy that does not compile is not saved; the error names its line and column
    let bad = "<policies>\n  <inbound>\n    <set-header name=\"x\" exists-action=\"sometimes\" />\n  </inbound>\n</policies>";
    let r = post(
        "/console/policies/api/petsx",
        &format!("policies={}", enc(bad)),
    );
    assert_eq!(r.status, 400);
    let page = r.text();
    assert!(
        page.contains("id=\"policy-errors\"") && page.contains("line 3"),
        "{page}"
    );
    assert!(
        page.contains("exists-action=&quot;sometimes&quot;"),
        "the draft is kept: {page}"
    );
    let (_, api) = plane.admin("GET", "/admin/apis/petsx", "");
    assert!(!api.contains("sometimes"));
    let good = "<policies><inbound><set-header name=\"x\" exists-action=\"override\"><value>1</value></set-header></inbound></policies>";
    let r = post(
        "/console/policies/product/gold",
        &format!("policies={}", enc(good)),
    );
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/console/policies/product/gold"))
    );
    let (_, product) = plane.admin("GET", "/admin/products/gold", "");
    assert!(
        product.contains("exists-action=\\\"override\\\""),
        "{product}"
    );
    let r = post(
        "/console/policies/global",
        &format!("policies={}", enc(good)),
    );
    assert_eq!(r.status, 303);
    assert_eq!(plane.admin("GET", "/admin/policy", "").0, 200);

    // the entity editor: a secret named value, saved again without its value, keeps it
    let r = post(
        "/console/entities/named-values",
        &format!(
            "id=db-password&json={}",
            enc(r#"{"value": "hunter2-secret", "secret": true}"#)
        ),
    );
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/console/entities/named-values/db-password")),
        "{}",
        r.text()
    );
    let editor = console_get(
        &plane,
        "/console/entities/named-values/db-password",
        &session,
    )
    .text();
    assert!(
        editor.contains("&quot;secret&quot;: true") && !editor.contains("hunter2"),
        "{editor}"
    );
    let r = post(
        "/console/entities/named-values",
        &format!(
            "id=db-password&json={}",
            enc(r#"{"secret": true, "tags": ["db"]}"#)
        ),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let (_, value) = plane.admin("POST", "/admin/named-values/db-password/listValue", "");
    assert!(value.contains("hunter2-secret"), "{value}");
    // refused whole with the path; deleting one in use is a conflict
    let r = post(
        "/console/entities/backends",
        &format!("id=b1&json={}", enc(r#"{"url": "not a url"}"#)),
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("url:"), "{}", r.text());
    let uses = "<policies><inbound><set-header name=\"x\" exists-action=\"override\"><value>{{db-password}}</value></set-header></inbound></policies>";
    assert_eq!(
        post(
            "/console/policies/api/petsx",
            &format!("policies={}", enc(uses))
        )
        .status,
        303
    );
    let r = post("/console/entities/named-values/db-password/delete", "");
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(
        r.text().contains("is used by api &#39;petsx&#39;"),
        "{}",
        r.text()
    );
    // the catalogue page shows secrets masked
    let page = console_get(&plane, "/console/catalogue", &session).text();
    assert!(
        page.contains("db-password") && !page.contains("hunter2-secret"),
        "{page}"
    );
}

#[test]
fn sign_in_is_refused_for_a_while_after_five_failures() {
    let plane = portal_plane(free_port(), &Origin::text("ok"));
    // an invited account is active at once
    let page = get(plane.addr, "/portal/signup");
    let token = csrf_cookie(&page);
    let cookie = format!("edgegate-portal-csrf={token}");
    let r = post_form(
        &plane,
        "/console/signin",
        &cookie,
        None,
        &format!("csrf={token}&token={ADMIN_TOKEN}"),
    );
    assert_eq!(r.status, 403, "the portal's token is not the console's");
    let email = "bob@example.org";
    // the console makes an invitation (signed in with the admin token)
    let (session, csrf) = console_session(&plane);
    let r = post_form(
        &plane,
        "/console/invitations",
        &session,
        None,
        &format!("csrf={csrf}&email={email}"),
    );
    assert_eq!(r.status, 200);
    let text = r.text();
    let code = text
        .split("id=\"invitation-code\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap();
    let r = post_form(
        &plane,
        "/portal/signup",
        &cookie,
        None,
        &format!(
            "csrf={token}&email={email}&firstName=Bob&lastName=B&password={}&invitation={code}",
            PASSWORD.replace(' ', "+")
        ),
    );
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/portal/profile")),
        "{}",
        r.text()
    );

    let attempt = |pw: &str| {
        post_form(
            &plane,
            "/portal/signin",
            &cookie,
            None,
            &format!("csrf={token}&email={email}&password={pw}"),
        )
        .status
    };
    for _ in 0..5 {
        assert_eq!(attempt("wrong+password"), 401);
    }
    assert_eq!(
        attempt(&PASSWORD.replace(' ', "+")),
        429,
        "the right password waits too"
    );
}

#[test]
fn the_design_sets_title_logo_colours_and_markdown_pages() {
    let plane = portal_plane(free_port(), &Origin::text("ok"));
    let (s, b) = plane.admin(
        "PUT",
        "/admin/portal",
        r##"{"colors": {"accent": "red;}"}}"##,
    );
    assert_eq!(s, 400);
    assert!(
        b.contains("colors.accent: must be a #rgb, #rgba, #rrggbb or #rrggbbaa colour"),
        "{b}"
    );
    let design = r##"{"title": "Contoso APIs", "logo": "data:image/png;base64,iVBORw0KGgo=",
        "colors": {"accent": "#0a7f5a"},
        "pages": [{"id": "start", "title": "Getting started", "markdown": "# Welcome\n\nUse **keys**. <script>x</script>"},
                  {"id": "sla", "title": "SLA", "markdown": "99.9 %", "visibility": "signedIn"}]}"##;
    let (s, b) = plane.admin("PUT", "/admin/portal", design);
    assert_eq!(s, 200, "{b}");
    let (_, stored) = plane.admin("GET", "/admin/portal", "");
    assert!(stored.contains("\"title\":\"Contoso APIs\""), "{stored}");

    let home = get(plane.addr, "/portal").text();
    assert!(
        home.contains("<title>APIs · Contoso APIs</title>"),
        "{home}"
    );
    assert!(
        home.contains("<img class=\"logo\" src=\"data:image/png;base64,iVBORw0KGgo=\" alt=\"\">")
    );
    assert!(home.contains("<a href=\"/portal/pages/start\">Getting started</a>"));
    assert!(
        !home.contains("/portal/pages/sla"),
        "signed-in pages are not offered"
    );
    let theme = get(plane.addr, "/portal/assets/theme.css");
    assert_eq!(
        theme.text(),
        ":root { --accent: #0a7f5a; --bg: #ffffff; --fg: #1d2430; }\n"
    );
    let page = get(plane.addr, "/portal/pages/start").text();
    assert!(
        page.contains("<h1>Getting started</h1><h2>Welcome</h2><p>Use <strong>keys</strong>. &lt;script&gt;x&lt;/script&gt;</p>"),
        "{page}"
    );
    assert_eq!(get(plane.addr, "/portal/pages/sla").status, 404);
}

#[test]
fn a_developer_cannot_act_on_another_developers_subscription() {
    let plane = portal_plane(free_port(), &Origin::text("ok"));
    // Mallory has an account; Alice's subscription exists
    let (s, b) = plane.admin(
        "PUT",
        "/admin/users/alice",
        r#"{"email": "alice@example.org"}"#,
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = plane.admin(
        "PUT",
        "/admin/subscriptions/alice-sub",
        r#"{"scope": "/products/starter", "ownerId": "/users/alice", "primaryKey": "alice-primary-key-1"}"#,
    );
    assert_eq!(s, 201, "{b}");
    let page = get(plane.addr, "/portal/signup");
    let token = csrf_cookie(&page);
    let cookie = format!("edgegate-portal-csrf={token}");
    let r = post_form(
        &plane,
        "/portal/signup",
        &cookie,
        None,
        &format!("csrf={token}&email=mallory%40example.org&firstName=M&lastName=M&password=long+enough+secret"),
    );
    assert_eq!(r.status, 200);
    let (_, users) = plane.admin("GET", "/admin/users", "");
    let mallory = users
        .split("\"id\":\"")
        .filter_map(|p| p.split('"').next())
        .find(|id| id.starts_with("mallory-"))
        .unwrap()
        .to_string();
    plane.admin(
        "PUT",
        &format!("/admin/users/{mallory}"),
        r#"{"email": "mallory@example.org", "state": "active"}"#,
    );
    let r = post_form(
        &plane,
        "/portal/signin",
        &cookie,
        None,
        &format!("csrf={token}&email=mallory%40example.org&password=long+enough+secret"),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let session = format!("edgegate-portal={}", set_cookie(&r, "edgegate-portal"));
    let profile = call(&plane, &format!("GET /portal/profile HTTP/1.1\r\nHost: p\r\nCookie: {session}\r\nConnection: close\r\n\r\n"));
    let csrf = profile.form_csrf();
    for action in ["regenerate-primary", "cancel"] {
        let r = post_form(
            &plane,
            &format!("/portal/subscriptions/alice-sub/{action}"),
            &session,
            None,
            &format!("csrf={csrf}"),
        );
        assert_eq!(r.status, 404, "{action}");
    }
    let usage = call(&plane, &format!("GET /portal/subscriptions/alice-sub/usage HTTP/1.1\r\nHost: p\r\nCookie: {session}\r\nConnection: close\r\n\r\n"));
    assert_eq!(usage.status, 404);
    let (_, secrets) = plane.admin("POST", "/admin/subscriptions/alice-sub/listSecrets", "");
    assert!(
        secrets.contains("\"primaryKey\":\"alice-primary-key-1\""),
        "{secrets}"
    );
    let (_, sub) = plane.admin("GET", "/admin/subscriptions/alice-sub", "");
    assert!(!sub.contains("cancelled"), "{sub}");
}

#[test]
fn with_tls_cookies_are_secure_and_pages_ask_for_https_only() {
    let dir = temp_dir("portal-tls");
    pki(&dir, &[("server", "DNS:localhost,IP:127.0.0.1")]);
    let cert = format!("manage.tls.cert={}", dir.join("server.pem").display());
    let key = format!("manage.tls.key={}", dir.join("server.key").display());
    let plane = Plane::start_with(dir.clone(), "127.0.0.1:0", &[&cert, &key]);
    let pem = std::fs::read(dir.join("ca.pem")).unwrap();
    let roots: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|i| match i {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c.to_owned()),
            _ => None,
        })
        .collect();
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
                    .build(),
            )
            .build(),
    );
    let r = agent
        .get(&format!(
            "https://localhost:{}/portal/signin",
            plane.addr.port()
        ))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    let header = |name: &str| -> Vec<String> {
        r.headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(header("strict-transport-security"), ["max-age=31536000"]);
    let cookie = &header("set-cookie")[0];
    assert!(
        cookie.starts_with("__Secure-edgegate-portal-csrf=")
            && cookie.ends_with("; Path=/portal; HttpOnly; SameSite=Lax; Secure"),
        "{cookie}"
    );
}

#[test]
fn a_large_api_is_listed_a_page_at_a_time_with_a_filter() {
    let plane = portal_plane(free_port(), &Origin::text("ok"));
    let paths: Vec<String> = (0..150)
        .map(|i| format!(r#""/things{i}": {{"get": {{"operationId": "getThing{i}", "summary": "Get thing {i}", "responses": {{"200": {{"description": "ok"}}}}}}}}"#))
        .collect();
    let spec = format!(
        r#"{{"openapi": "3.0.3", "info": {{"title": "Things", "version": "1"}}, "paths": {{{}}}}}"#,
        paths.join(",")
    );
    let (s, b) = plane.admin(
        "PUT",
        "/admin/apis/things?import=openapi&path=things&serviceUrl=http%3A%2F%2F127.0.0.1%3A9",
        &spec,
    );
    assert_eq!(s, 201, "{b}");
    plane.admin("PUT", "/admin/products/starter/apis/things", "");
    let first = get(plane.addr, "/portal/apis/things").text();
    assert!(
        first.contains("<p id=\"operation-count\">150 of 150 operations</p>"),
        "{first}"
    );
    assert_eq!(
        first.matches("/portal/apis/things/operations/").count(),
        100
    );
    assert!(
        first.contains(
            "Page 1 of 2 <a href=\"/portal/apis/things?q=&amp;page=2\" rel=\"next\">Next</a>"
        ),
        "{first}"
    );
    let second = get(plane.addr, "/portal/apis/things?q=&page=2").text();
    assert_eq!(
        second.matches("/portal/apis/things/operations/").count(),
        50
    );
    let links = |page: &str| -> Vec<String> {
        page.split("/portal/apis/things/operations/")
            .skip(1)
            .map(|l| l.split('"').next().unwrap().to_string())
            .collect()
    };
    let mut all = links(&first);
    all.extend(links(&second));
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 150, "the two pages hold every operation once");
    let filtered = get(plane.addr, "/portal/apis/things?q=thing+14").text();
    // "Get thing 14" and 140–149
    assert!(
        filtered.contains("<p id=\"operation-count\">11 of 150 operations</p>"),
        "{filtered}"
    );
    assert!(!filtered.contains("rel=\"next\""));
}
