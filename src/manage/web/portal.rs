//! The developer portal's pages: the catalogue (search, tags, pages of 20), products
//! and subscribing to them, the profile with keys (shown only once a subscription is
//! active), key regeneration, usage per subscription, and local accounts (sign-up,
//! pending approval or invitation, sign-in, sign-out). API and operation reference and
//! try-it are in reference.rs.
//! Must not touch: console pages, how sessions and CSRF work (web/mod.rs).

use std::fmt::Write as _;

use miniserde::json::{Object, Value};

use super::html::{self, esc, url, Frame};
use super::{page_response, password, redirect, server_error, Area, Visit, Web, STYLE_PATH};
use crate::manage::accounts::{NewAccount, Principal};
use crate::manage::catalogue::{self, Catalogue, Viewer};
use crate::manage::entities::Kind;
use crate::manage::http::Response;
use crate::manage::store::PlaneError;

/// APIs per catalogue page.
pub const PAGE_SIZE: usize = 20;

pub fn route(web: &Web, visit: &Visit) -> Response {
    let path: Vec<&str> = visit.req.path.trim_matches('/').split('/').collect();
    match (visit.req.method.as_str(), &path[1..]) {
        ("GET", []) => catalogue_page(web, visit),
        ("GET", ["apis", api]) => super::reference::api_page(web, visit, api),
        ("GET", ["apis", api, "operations", op]) => {
            super::reference::operation_page(web, visit, api, op, None)
        }
        ("POST", ["apis", api, "operations", op, "try"]) => {
            super::reference::try_it(web, visit, api, op)
        }
        ("GET", ["pages", id]) => markdown_page(web, visit, id),
        ("GET", ["products"]) => products_page(web, visit),
        ("GET", ["products", id]) => product_page(web, visit, id, None),
        ("POST", ["products", id, "subscribe"]) => subscribe(web, visit, id),
        ("GET", ["profile"]) => profile_page(web, visit, None),
        ("POST", ["subscriptions", id, action]) => subscription_action(web, visit, id, action),
        ("GET", ["subscriptions", id, "usage"]) => usage_page(web, visit, id),
        ("GET", ["signup"]) => signup_page(web, visit, 200, ""),
        ("POST", ["signup"]) => signup(web, visit),
        ("GET", ["signin"]) => signin_page(web, visit, 200, ""),
        ("POST", ["signin"]) => signin(web, visit),
        ("POST", ["signout"]) => web.sign_out(visit, "/portal"),
        ("POST", ["signin", "oidc"]) => super::federated::begin(web, visit),
        ("GET", ["signin", "oidc", "callback"]) => super::federated::callback(web, visit),
        (_, _) => not_found(web, visit),
    }
}

/// The portal's frame for this visit: navigation by whether someone is signed in.
pub fn frame(web: &Web, visit: &Visit) -> Frame<'static> {
    let mut nav = vec![
        ("APIs".to_string(), "/portal".to_string()),
        ("Products".to_string(), "/portal/products".to_string()),
    ];
    let design = web.design();
    for page in design
        .pages
        .iter()
        .filter(|p| p.public || visit.user_id().is_some())
    {
        nav.push((
            page.title.clone(),
            format!("/portal/pages/{}", url(&page.id)),
        ));
    }
    let signed_in = match visit.user_id() {
        Some(id) => {
            nav.push(("Profile".into(), "/portal/profile".into()));
            let email = match web.store().get_entity(Kind::User, id) {
                Ok(Value::Object(o)) => text(&o, "email"),
                _ => id.to_string(),
            };
            Some((email, "/portal/signout".to_string(), visit.csrf.clone()))
        }
        None => {
            nav.push(("Sign in".into(), "/portal/signin".into()));
            nav.push(("Sign up".into(), "/portal/signup".into()));
            None
        }
    };
    Frame {
        site: design.title,
        home: "/portal",
        nav,
        signed_in,
        stylesheet: STYLE_PATH,
        theme: Some(super::THEME_PATH),
        logo: design.logo,
    }
}

pub fn show(web: &Web, visit: &Visit, status: u16, title: &str, body: &str) -> Response {
    page_response(status, html::page(&frame(web, visit), title, body))
}

pub fn not_found(web: &Web, visit: &Visit) -> Response {
    show(
        web,
        visit,
        404,
        "Not found",
        "<p>There is nothing here. <a href=\"/portal\">Back to the APIs</a>.</p>",
    )
}

pub use crate::manage::catalogue::text;

/// What the visitor may see: their groups when signed in.
pub fn with_viewer<T>(web: &Web, visit: &Visit, f: impl FnOnce(&Viewer) -> T) -> T {
    match visit.user_id() {
        Some(id) => {
            let groups = web.store().user_groups(id).unwrap_or_default();
            f(&Viewer::Developer { groups: &groups })
        }
        None => f(&Viewer::Anonymous),
    }
}

fn catalogue_page(web: &Web, visit: &Visit) -> Response {
    let catalogue = web.catalogue();
    let (query, tag) = (visit.form.get("q"), visit.form.get("tag"));
    let page: usize = visit.form.get("page").parse().unwrap_or(1).max(1);
    let body = with_viewer(web, visit, |viewer| {
        catalogue_body(&catalogue, viewer, query, tag, page)
    });
    show(web, visit, 200, "APIs", &body)
}

fn catalogue_body(c: &Catalogue, viewer: &Viewer, query: &str, tag: &str, page: usize) -> String {
    let mut out = format!(
        "<form class=\"search\" method=\"get\" action=\"/portal\"><input type=\"search\" name=\"q\" id=\"q\" \
         value=\"{}\" placeholder=\"Search APIs\" aria-label=\"Search APIs\">{}<button type=\"submit\">Search</button></form>",
        esc(query),
        if tag.is_empty() {
            String::new()
        } else {
            format!("<input type=\"hidden\" name=\"tag\" value=\"{}\">", esc(tag))
        }
    );
    let mut tags: Vec<&str> = c
        .visible_apis(viewer, "", "")
        .flat_map(|a| a.tags.iter().map(String::as_str))
        .collect();
    tags.sort_unstable_by_key(|t| t.to_lowercase());
    tags.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    if !tags.is_empty() {
        out.push_str("<p class=\"tags\">Tags: ");
        for t in &tags {
            let class = if t.eq_ignore_ascii_case(tag) {
                " class=\"on\""
            } else {
                ""
            };
            let _ = write!(
                out,
                "<a{class} href=\"/portal?tag={}\">{}</a> ",
                url(t),
                esc(t)
            );
        }
        out.push_str("</p>");
    }
    let matching: Vec<_> = c.visible_apis(viewer, query, tag).collect();
    let pages = matching.len().div_ceil(PAGE_SIZE).max(1);
    let page = page.min(pages);
    let first = (page - 1) * PAGE_SIZE;
    let shown = &matching[first.min(matching.len())..(first + PAGE_SIZE).min(matching.len())];
    if matching.is_empty() {
        out.push_str("<p id=\"count\">No API matches.</p>");
    } else {
        let _ = write!(
            out,
            "<p id=\"count\">{}–{} of {} APIs</p><ul class=\"cards\" id=\"apis\">",
            first + 1,
            first + shown.len(),
            matching.len()
        );
        for a in shown {
            let _ = write!(
                out,
                "<li><a href=\"/portal/apis/{}\">{}</a> <code>/{}</code><p>{}</p>",
                url(&a.id),
                esc(&a.name),
                esc(&a.path),
                esc(&first_sentence(&a.description))
            );
            for t in &a.tags {
                let _ = write!(out, "<span class=\"tag\">{}</span> ", esc(t));
            }
            out.push_str("</li>");
        }
        out.push_str("</ul>");
    }
    out.push_str(&html::pager(
        &format!("/portal?q={}&tag={}&", url(query), url(tag)),
        page,
        pages,
    ));
    out
}

/// The first 200 characters of a description, cut at a word.
fn first_sentence(s: &str) -> String {
    if s.chars().count() <= 200 {
        return s.to_string();
    }
    let cut: String = s.chars().take(200).collect();
    match cut.rfind(' ') {
        Some(i) => format!("{}…", &cut[..i]),
        None => format!("{cut}…"),
    }
}

/// One of the design's Markdown pages (those for signed-in developers only to them).
fn markdown_page(web: &Web, visit: &Visit, id: &str) -> Response {
    let design = web.design();
    let page = design
        .pages
        .iter()
        .find(|p| p.id == id && (p.public || visit.user_id().is_some()));
    match page {
        Some(p) => show(
            web,
            visit,
            200,
            &p.title,
            &super::markdown::to_html(&p.markdown),
        ),
        None => not_found(web, visit),
    }
}

fn products_page(web: &Web, visit: &Visit) -> Response {
    let catalogue = web.catalogue();
    let rows: Vec<Vec<String>> = with_viewer(web, visit, |viewer| {
        catalogue
            .visible_products(viewer)
            .map(|p| {
                vec![
                    format!(
                        "<a href=\"/portal/products/{}\">{}</a>",
                        url(&p.id),
                        esc(&p.name)
                    ),
                    esc(&p.description),
                    p.apis.len().to_string(),
                    if p.approval_required { "yes" } else { "no" }.into(),
                ]
            })
            .collect()
    });
    let body = if rows.is_empty() {
        "<p>No products are published yet.</p>".to_string()
    } else {
        html::table(
            "products",
            &["Product", "Description", "APIs", "Approval required"],
            &rows,
        )
    };
    show(web, visit, 200, "Products", &body)
}

fn product_page(web: &Web, visit: &Visit, id: &str, message: Option<(&str, &str)>) -> Response {
    let catalogue = web.catalogue();
    let visible = with_viewer(web, visit, |viewer| {
        catalogue
            .product(id)
            .filter(|p| p.visible_to(viewer))
            .cloned()
    });
    let Some(p) = visible else {
        return not_found(web, visit);
    };
    let mut out = String::new();
    if let Some((kind, text)) = message {
        out.push_str(&html::notice(kind, text));
    }
    let _ = write!(
        out,
        "<p>{}</p><h2>APIs</h2><ul id=\"product-apis\">",
        esc(&p.description)
    );
    for a in p.apis.iter().filter_map(|a| catalogue.api(a)) {
        let _ = write!(
            out,
            "<li><a href=\"/portal/apis/{}\">{}</a></li>",
            url(&a.id),
            esc(&a.name)
        );
    }
    out.push_str("</ul>");
    if !p.subscription_required {
        out.push_str("<p>Its APIs can be called without a subscription key.</p>");
    } else if visit.user_id().is_none() {
        out.push_str("<p><a href=\"/portal/signin\">Sign in</a> or <a href=\"/portal/signup\">sign up</a> to subscribe.</p>");
    } else {
        let _ = write!(
            out,
            "<h2>Subscribe</h2><form method=\"post\" action=\"/portal/products/{}/subscribe\">{}\
             <label>Subscription name <input name=\"name\" id=\"subscription-name\" maxlength=\"100\" value=\"{}\"></label>",
            url(&p.id),
            html::csrf_field(&visit.csrf),
            esc(&p.name)
        );
        if !p.terms.is_empty() {
            let _ = write!(
                out,
                "<div class=\"terms\"><h3>Terms of use</h3><p>{}</p></div>\
                 <label><input type=\"checkbox\" name=\"terms\" value=\"accepted\" id=\"terms\"> I accept the terms of use</label>",
                esc(&p.terms)
            );
        }
        if p.approval_required {
            out.push_str("<p>An administrator approves each subscription to this product; its keys are shown once it is approved.</p>");
        }
        out.push_str("<button type=\"submit\" id=\"subscribe\">Subscribe</button></form>");
    }
    show(
        web,
        visit,
        if message.is_some_and(|m| m.0 == "error") {
            400
        } else {
            200
        },
        &p.name,
        &out,
    )
}

fn subscribe(web: &Web, visit: &Visit, product: &str) -> Response {
    let Some(user) = visit.user_id() else {
        return redirect("/portal/signin");
    };
    let catalogue = web.catalogue();
    let visible = with_viewer(web, visit, |viewer| {
        catalogue
            .product(product)
            .filter(|p| p.visible_to(viewer))
            .cloned()
    });
    let Some(p) = visible else {
        return not_found(web, visit);
    };
    if !p.terms.is_empty() && visit.form.get("terms") != "accepted" {
        return product_page(
            web,
            visit,
            product,
            Some(("error", "Accept the terms of use to subscribe.")),
        );
    }
    let name = match visit.form.get("name") {
        "" => p.name.clone(),
        n => n.chars().take(100).collect(),
    };
    let result = (|| {
        let mut store = web.store();
        let scope = format!("/products/{product}");
        let held = store
            .subscriptions_of(user)?
            .into_iter()
            .filter(|s| {
                s.scope == scope && matches!(s.state.as_str(), "active" | "submitted" | "suspended")
            })
            .count() as u64;
        if p.subscriptions_limit.is_some_and(|limit| held >= limit) {
            return Ok(Err(format!(
                "You hold {held} subscription(s) to this product, its limit per developer."
            )));
        }
        let mut body = Object::new();
        let s = |v: &str| Value::String(v.to_string());
        body.insert("displayName".into(), s(&name));
        body.insert("scope".into(), s(&scope));
        body.insert("ownerId".into(), s(&format!("/users/{user}")));
        body.insert(
            "state".into(),
            s(if p.approval_required {
                "submitted"
            } else {
                "active"
            }),
        );
        let id = format!(
            "sub-{}",
            &crate::manage::entities::new_subscription_key()[..12]
        );
        store.put_entity(Kind::Subscription, &id, body)?;
        Ok::<_, PlaneError>(Ok(()))
    })();
    match result {
        Ok(Ok(())) => {
            web.plane().bumped();
            redirect("/portal/profile")
        }
        Ok(Err(why)) => product_page(web, visit, product, Some(("error", &why))),
        Err(e) => server_error(&e),
    }
}

fn profile_page(web: &Web, visit: &Visit, message: Option<&str>) -> Response {
    let Some(user) = visit.user_id() else {
        return redirect("/portal/signin");
    };
    let subscriptions = match web.store().subscriptions_of(user) {
        Ok(s) => s,
        Err(e) => return server_error(&e),
    };
    let mut out = String::new();
    if let Some(m) = message {
        out.push_str(&html::notice("ok", m));
    }
    out.push_str("<h2>Subscriptions</h2>");
    if subscriptions.is_empty() {
        out.push_str("<p id=\"no-subscriptions\">None yet: subscribe to a <a href=\"/portal/products\">product</a>.</p>");
    }
    for s in &subscriptions {
        let base = format!("/portal/subscriptions/{}", url(&s.id));
        let _ = write!(
            out,
            "<section class=\"subscription\" id=\"subscription-{}\"><h3>{}</h3><p>Scope <code>{}</code> · state <strong class=\"state\">{}</strong></p>",
            esc(&s.id),
            esc(&s.name),
            esc(&s.scope),
            esc(&s.state)
        );
        match s.state.as_str() {
            "active" => {
                let keys = web.store().secrets(Kind::Subscription, &s.id);
                if let Ok(Value::Object(k)) = keys {
                    let _ = write!(
                        out,
                        "<dl><dt>Primary key</dt><dd><code class=\"key\" id=\"primary-key\">{}</code> {}</dd>\
                         <dt>Secondary key</dt><dd><code class=\"key\" id=\"secondary-key\">{}</code> {}</dd></dl>",
                        esc(&text(&k, "primaryKey")),
                        html::button_form(&format!("{base}/regenerate-primary"), &visit.csrf, "Regenerate", "regenerate-primary"),
                        esc(&text(&k, "secondaryKey")),
                        html::button_form(&format!("{base}/regenerate-secondary"), &visit.csrf, "Regenerate", "regenerate-secondary"),
                    );
                }
                let _ = write!(out, "<p><a href=\"{base}/usage\" class=\"usage\">Usage</a></p>");
                out.push_str(&html::button_form(&format!("{base}/cancel"), &visit.csrf, "Cancel subscription", "cancel"));
            }
            "submitted" => out.push_str("<p class=\"notice warn\">Awaiting approval by an administrator; the keys are shown here once it is approved.</p>"),
            _ => {}
        }
        out.push_str("</section>");
    }
    show(web, visit, 200, "Profile", &out)
}

fn subscription_action(web: &Web, visit: &Visit, id: &str, action: &str) -> Response {
    let Some(user) = visit.user_id() else {
        return redirect("/portal/signin");
    };
    let result = (|| {
        let mut store = web.store();
        let Some(sub) = store
            .subscriptions_of(user)?
            .into_iter()
            .find(|s| s.id == id)
        else {
            return Ok(None);
        };
        let Value::Object(mut body) = store.get_entity(Kind::Subscription, id)? else {
            return Ok(None);
        };
        let message = match (action, sub.state.as_str()) {
            ("regenerate-primary", "active") | ("regenerate-secondary", "active") => {
                let field = if action == "regenerate-primary" {
                    "primaryKey"
                } else {
                    "secondaryKey"
                };
                body.insert(
                    field.into(),
                    Value::String(crate::manage::entities::new_subscription_key()),
                );
                "The key was regenerated; the old one no longer works."
            }
            ("cancel", "active" | "submitted" | "suspended") => {
                body.insert("state".into(), Value::String("cancelled".into()));
                "The subscription was cancelled."
            }
            _ => return Ok(None),
        };
        store.put_entity(Kind::Subscription, id, body)?;
        Ok::<_, PlaneError>(Some(message))
    })();
    match result {
        Ok(Some(message)) => {
            web.plane().bumped();
            profile_page(web, visit, Some(message))
        }
        Ok(None) => not_found(web, visit),
        Err(e) => server_error(&e),
    }
}

fn usage_page(web: &Web, visit: &Visit, id: &str) -> Response {
    let Some(user) = visit.user_id() else {
        return redirect("/portal/signin");
    };
    let owned = web
        .store()
        .subscriptions_of(user)
        .map(|subs| subs.into_iter().find(|s| s.id == id));
    let sub = match owned {
        Ok(Some(s)) => s,
        Ok(None) => return not_found(web, visit),
        Err(e) => return server_error(&e),
    };
    let (since, range) = catalogue::range_start(visit.form.get("range"));
    let usage = match web.store().subscription_usage(id, since) {
        Ok(u) => u,
        Err(e) => return server_error(&e),
    };
    let mut out = html::range_links(catalogue::RANGES, range);
    out.push_str(&usage_table("usage", &usage));
    out.push_str(&html::line_chart(
        "Calls per minute",
        &usage.series(|m| m.calls as f64),
        640,
        160,
    ));
    out.push_str(&html::line_chart(
        "p99 latency per minute (ms)",
        &usage.series(|m| m.p99_ms),
        640,
        160,
    ));
    show(web, visit, 200, &format!("Usage of {}", sub.name), &out)
}

/// Calls, errors and latency percentiles as a one-row table.
pub fn usage_table(id: &str, u: &catalogue::Usage) -> String {
    let ms = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1} ms"));
    html::table(
        id,
        &["Calls", "Errors", "Error rate", "p50", "p99"],
        &[vec![
            u.calls.to_string(),
            u.errors.to_string(),
            if u.calls == 0 {
                "–".into()
            } else {
                format!("{:.1} %", u.errors as f64 * 100.0 / u.calls as f64)
            },
            ms(u.p50_ms),
            ms(u.p99_ms),
        ]],
    )
}

fn signup_page(web: &Web, visit: &Visit, status: u16, error: &str) -> Response {
    let f = &visit.form;
    let mut out = String::new();
    if !error.is_empty() {
        out.push_str(&html::notice("error", error));
    }
    let _ = write!(
        out,
        "<form method=\"post\" action=\"/portal/signup\" class=\"account\">{}\
         <label>E-mail <input type=\"email\" name=\"email\" id=\"email\" required maxlength=\"254\" value=\"{}\"></label>\
         <label>First name <input name=\"firstName\" id=\"first-name\" required maxlength=\"100\" value=\"{}\"></label>\
         <label>Last name <input name=\"lastName\" id=\"last-name\" required maxlength=\"100\" value=\"{}\"></label>\
         <label>Password <input type=\"password\" name=\"password\" id=\"password\" required minlength=\"{}\" autocomplete=\"new-password\"></label>\
         <label>Invitation code (if you were given one) <input name=\"invitation\" id=\"invitation\" autocomplete=\"off\"></label>\
         <button type=\"submit\" id=\"signup\">Sign up</button></form>\
         <p>Without an invitation, an administrator approves new accounts before they can sign in.</p>",
        html::csrf_field(&visit.csrf),
        esc(f.get("email")),
        esc(f.get("firstName")),
        esc(f.get("lastName")),
        password::MIN_LENGTH
    );
    show(web, visit, status, "Sign up", &out)
}

fn signup(web: &Web, visit: &Visit) -> Response {
    let f = &visit.form;
    let email = f.get("email");
    let (first, last) = (f.get("firstName"), f.get("lastName"));
    let pw = f.raw("password").unwrap_or("");
    let bad_email = email.len() > 254
        || !email
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
        || email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !web.throttle().sign_up(&visit.req.peer) {
        return signup_page(
            web,
            visit,
            429,
            "Too many accounts were made from your address; try again later.",
        );
    }
    if bad_email {
        return signup_page(web, visit, 400, "Enter a valid e-mail address.");
    }
    if first.is_empty() || last.is_empty() || first.len() > 100 || last.len() > 100 {
        return signup_page(
            web,
            visit,
            400,
            "Enter your first and last name (at most 100 characters each).",
        );
    }
    if let Some(why) = password::weakness(pw) {
        return signup_page(web, visit, 400, &why);
    }
    let code = f.get("invitation");
    let invited = !code.is_empty();
    if invited {
        // bound first: the store's guard must be gone before a page (which reads the
        // store) is shown
        let redeemed = web.store().redeem_invitation(code, email);
        match redeemed {
            Ok(true) => {}
            Ok(false) => {
                return signup_page(
                    web,
                    visit,
                    400,
                    "That invitation code is not valid for this e-mail address, or it has expired.",
                )
            }
            Err(e) => return server_error(&e),
        }
    }
    // hashed before the store is locked: it takes a tenth of a second on purpose
    let password_hash = password::hash(pw);
    let created = web.store().create_account(NewAccount {
        email,
        first_name: first,
        last_name: last,
        password_hash,
        active: invited,
    });
    match created {
        Ok(id) if invited => {
            web.plane().bumped();
            web.sign_in(&Principal::User { id }, Area::Portal, "/portal/profile")
        }
        Ok(_) => {
            web.plane().bumped();
            show(web, visit, 200, "Thank you", "<p class=\"notice ok\" id=\"pending\">Your account was created. An administrator approves new accounts; you can sign in once yours is approved.</p>")
        }
        Err(PlaneError::Conflict(m)) => signup_page(web, visit, 409, &m),
        Err(e) => server_error(&e),
    }
}

pub fn signin_page(web: &Web, visit: &Visit, status: u16, error: &str) -> Response {
    let mut out = String::new();
    if !error.is_empty() {
        out.push_str(&html::notice("error", error));
    }
    let _ = write!(
        out,
        "<form method=\"post\" action=\"/portal/signin\" class=\"account\">{}\
         <label>E-mail <input type=\"email\" name=\"email\" id=\"email\" required value=\"{}\"></label>\
         <label>Password <input type=\"password\" name=\"password\" id=\"password\" required autocomplete=\"current-password\"></label>\
         <button type=\"submit\" id=\"signin\">Sign in</button></form>\
         <p>No account? <a href=\"/portal/signup\">Sign up</a>.</p>",
        html::csrf_field(&visit.csrf),
        esc(visit.form.get("email"))
    );
    if let Some(oidc) = web.oidc() {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/portal/signin/oidc\">{}<button type=\"submit\" id=\"signin-oidc\">Sign in with {}</button></form>",
            html::csrf_field(&visit.csrf),
            esc(oidc.label())
        );
    }
    show(web, visit, status, "Sign in", &out)
}

/// A hash of a password nobody has, verified when the account does not exist, so the
/// answer takes as long either way.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| password::hash("not the password of any account"))
}

fn signin(web: &Web, visit: &Visit) -> Response {
    let email = visit.form.get("email").to_lowercase();
    let pw = visit.form.raw("password").unwrap_or("");
    let peer = visit.req.peer.as_str();
    if let Some(wait) = web.throttle().refused(&email, peer) {
        let minutes = wait.as_secs().div_ceil(60);
        return signin_page(
            web,
            visit,
            429,
            &format!("Too many failed sign-ins. Try again in {minutes} minute(s)."),
        );
    }
    let credential = match web.store().credential(&email) {
        Ok(c) => c,
        Err(e) => return server_error(&e),
    };
    let user = match &credential {
        Some((id, hash)) if pw.len() <= password::MAX_LENGTH && password::verify(pw, hash) => {
            Some(id.clone())
        }
        Some(_) => None,
        None => {
            let _ = password::verify(pw, decoy_hash());
            None
        }
    };
    let Some(id) = user else {
        web.throttle().failed(&email, peer);
        return signin_page(
            web,
            visit,
            401,
            "The e-mail address or the password is wrong.",
        );
    };
    web.throttle().succeeded(&email);
    let state = web.store().user_state(&id);
    match state {
        Ok(Some(s)) if s == "active" => {
            web.sign_in(&Principal::User { id }, Area::Portal, "/portal/profile")
        }
        Ok(Some(s)) if s == "pending" => signin_page(
            web,
            visit,
            403,
            "Your account awaits approval by an administrator.",
        ),
        Ok(_) => signin_page(
            web,
            visit,
            403,
            "Your account is blocked; ask an administrator.",
        ),
        Err(e) => server_error(&e),
    }
}
