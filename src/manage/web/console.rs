//! The operator console: sign-in (the admin token, or an active user in the
//! administrators group), the fleet (every gateway and instance with its heartbeat,
//! config version against the one it should run, source, sync error, token expiry,
//! offline since), traffic charts per gateway and API, the approval queue (accounts
//! and subscriptions), invitations, the catalogue, and a policy editor that shows
//! compile errors where they are. Every mutation here goes through the store's own
//! checks, as the admin API's do.
//! Must not touch: portal pages, the admin API's routes.

use std::fmt::Write as _;

use miniserde::json::Value;

use super::html::{self, esc, url, Frame};
use super::portal::text;
use super::{editor, entity_editor, manage_catalogue};
use super::{page_response, password, redirect, server_error, Area, Visit, Web, STYLE_PATH};
use crate::manage::accounts::Principal;
use crate::manage::catalogue;
use crate::manage::entities::Kind;
use crate::manage::http::Response;
use crate::manage::store::{now_unix, PlaneError};

pub fn route(web: &Web, visit: &Visit) -> Response {
    let path: Vec<&str> = visit.req.path.trim_matches('/').split('/').collect();
    let rest = &path[1..];
    match (visit.req.method.as_str(), rest) {
        ("GET", ["signin"]) => signin_page(web, visit, 200, ""),
        ("POST", ["signin"]) => signin(web, visit),
        _ if !visit.is_admin() => redirect("/console/signin"),
        ("POST", ["signout"]) => web.sign_out(visit, "/console/signin"),
        ("GET", []) => fleet_page(web, visit),
        ("GET", ["traffic"]) => traffic_page(web, visit),
        ("GET", ["approvals"]) => approvals_page(web, visit, None),
        ("POST", ["users", id, action]) => approval_action(web, visit, Kind::User, id, action),
        ("POST", ["subscriptions", id, action]) => {
            approval_action(web, visit, Kind::Subscription, id, action)
        }
        ("POST", ["invitations"]) => invite(web, visit),
        ("GET", ["catalogue"]) => manage_catalogue::page(web, visit, None),
        ("POST", ["import"]) => manage_catalogue::import(web, visit),
        ("GET", ["products", id]) => manage_catalogue::product_page(web, visit, id),
        ("POST", ["products"]) => manage_catalogue::save_product(web, visit),
        ("POST", ["products", id, "apis"]) => manage_catalogue::link(web, visit, id, None),
        ("POST", ["products", id, "apis", api, "remove"]) => {
            manage_catalogue::link(web, visit, id, Some(api))
        }
        ("GET", ["entities", segment, id]) => entity_editor::page(web, visit, segment, id),
        ("POST", ["entities", segment]) => entity_editor::save(web, visit, segment),
        ("POST", ["entities", segment, id, "delete"]) => {
            entity_editor::delete(web, visit, segment, id)
        }
        (method, ["policies", rest @ ..]) => match (method, editor::Owner::from_path(rest)) {
            ("GET", Some(owner)) => editor::page(web, visit, owner, None, None),
            ("POST", Some(owner)) => editor::save(web, visit, owner),
            _ => not_found(web, visit),
        },
        _ => not_found(web, visit),
    }
}

fn frame<'v>(visit: &'v Visit) -> Frame<'v> {
    let signed_in = match &visit.session {
        Some(s) => match &s.principal {
            Principal::Admin { name } => Some((
                name.clone(),
                "/console/signout".to_string(),
                visit.csrf.clone(),
            )),
            Principal::User { .. } => None,
        },
        None => None,
    };
    let nav = if signed_in.is_some() {
        vec![
            ("Fleet".to_string(), "/console".to_string()),
            ("Traffic".to_string(), "/console/traffic".to_string()),
            ("Approvals".to_string(), "/console/approvals".to_string()),
            ("Catalogue".to_string(), "/console/catalogue".to_string()),
            ("Portal".to_string(), "/portal".to_string()),
        ]
    } else {
        Vec::new()
    };
    Frame {
        site: "edgegate console".into(),
        home: "/console",
        nav,
        signed_in,
        stylesheet: STYLE_PATH,
        theme: None,
        logo: None,
    }
}

/// The console's 404 page.
pub fn not_found(web: &Web, visit: &Visit) -> Response {
    show(
        web,
        visit,
        404,
        "Not found",
        "<p>There is nothing here.</p>",
    )
}

pub fn show(_web: &Web, visit: &Visit, status: u16, title: &str, body: &str) -> Response {
    page_response(status, html::page(&frame(visit), title, body))
}

fn signin_page(web: &Web, visit: &Visit, status: u16, error: &str) -> Response {
    let mut out = String::new();
    if !error.is_empty() {
        out.push_str(&html::notice("error", error));
    }
    let _ = write!(
        out,
        "<form method=\"post\" action=\"/console/signin\" class=\"account\">{}\
         <label>Admin token <input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"off\"></label>\
         <p>or, as an administrator's account:</p>\
         <label>E-mail <input type=\"email\" name=\"email\" id=\"email\"></label>\
         <label>Password <input type=\"password\" name=\"password\" id=\"password\" autocomplete=\"current-password\"></label>\
         <button type=\"submit\" id=\"signin\">Sign in</button></form>",
        html::csrf_field(&visit.csrf)
    );
    show(web, visit, status, "Console sign-in", &out)
}

fn signin(web: &Web, visit: &Visit) -> Response {
    let f = &visit.form;
    let peer = visit.req.peer.as_str();
    let (account, token) = (
        f.get("email").to_lowercase(),
        f.raw("token").unwrap_or("").trim(),
    );
    let key = if token.is_empty() {
        account.clone()
    } else {
        "admin-token".to_string()
    };
    if let Some(wait) = web.throttle().refused(&key, peer) {
        return signin_page(
            web,
            visit,
            429,
            &format!(
                "Too many failed sign-ins. Try again in {} minute(s).",
                wait.as_secs().div_ceil(60)
            ),
        );
    }
    let name = if !token.is_empty() {
        web.plane()
            .is_admin_token(token)
            .then(|| format!("token {}", crate::manage::audit::token_fingerprint(token)))
    } else {
        administrator(web, &account, f.raw("password").unwrap_or(""))
    };
    match name {
        Some(name) => {
            web.throttle().succeeded(&key);
            web.sign_in(&Principal::Admin { name }, Area::Console, "/console")
        }
        None => {
            web.throttle().failed(&key, peer);
            signin_page(
                web,
                visit,
                401,
                "That token, or that e-mail and password of an administrator, is wrong.",
            )
        }
    }
}

/// The e-mail of an active user in the administrators group whose password this is.
fn administrator(web: &Web, email: &str, pw: &str) -> Option<String> {
    let (id, hash) = web.store().credential(email).ok().flatten()?;
    if pw.len() > password::MAX_LENGTH || !password::verify(pw, &hash) {
        return None;
    }
    let store = web.store();
    let active = store.user_state(&id).ok().flatten().as_deref() == Some("active");
    let admin = store
        .user_groups(&id)
        .ok()?
        .iter()
        .any(|g| g == "administrators");
    (active && admin).then(|| email.to_string())
}

/// One instance's row of the fleet table.
fn instance_row(gateway: &str, o: &miniserde::json::Object, want: Option<&str>) -> Vec<String> {
    let state = text(o, "state");
    let version = text(o, "configVersion");
    let lag = match want {
        Some(w) if w == version => "<span class=\"ok\">current</span>".to_string(),
        Some(_) => "<span class=\"warn\">behind</span>".to_string(),
        None => "–".to_string(),
    };
    let heartbeat = text(o, "lastHeartbeat");
    let offline = match state.as_str() {
        "connected" => String::new(),
        _ => format!("since {}", esc(&heartbeat)),
    };
    let expiry = text(o, "tokenExpiry");
    let expiry_cell = match crate::telemetry::parse_rfc3339(&expiry) {
        Some(at) if at <= now_unix() + 7 * 86_400 => format!(
            "<span class=\"warn\">{} (expires soon)</span>",
            esc(&expiry)
        ),
        Some(_) => esc(&expiry),
        None => "–".into(),
    };
    let reason = text(o, "disconnectReason");
    vec![
        esc(gateway),
        format!("<code>{}</code>", esc(&text(o, "instanceId"))),
        format!(
            "<span class=\"state {}\">{}</span>{}",
            esc(&state),
            esc(&state),
            if reason.is_empty() {
                String::new()
            } else {
                format!("<br><small>{}</small>", esc(&reason))
            }
        ),
        esc(&heartbeat),
        offline,
        format!(
            "<code>{}</code> {lag}",
            esc(version.get(..12).unwrap_or(&version))
        ),
        esc(&text(o, "configSource")),
        esc(&text(o, "lastSyncError")),
        expiry_cell,
        esc(&text(o, "version")),
    ]
}

fn fleet_page(web: &Web, visit: &Visit) -> Response {
    let ids = match web.store().list_gateways() {
        Ok(ids) => ids,
        Err(e) => return server_error(&e),
    };
    let mut rows = Vec::new();
    let (mut online, mut offline) = (0, 0);
    for id in &ids {
        let Ok(Value::Object(view)) = web.plane().gateway_view(id) else {
            continue;
        };
        let want = web.plane().current_version(id);
        let instances: Vec<_> = match view.get("instances") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| match v {
                    Value::Object(o) => Some(o),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        if instances.is_empty() {
            offline += 1;
            let mut row = vec![
                esc(id),
                "–".into(),
                "<span class=\"state never\">never connected</span>".into(),
            ];
            row.extend(std::iter::repeat_n(String::new(), 7));
            rows.push(row);
        }
        for o in instances {
            if text(o, "state") == "connected" {
                online += 1
            } else {
                offline += 1
            }
            rows.push(instance_row(id, o, want.as_deref()));
        }
        let error = text(&view, "documentError");
        if !error.is_empty() {
            rows.push(vec![
                esc(id),
                String::new(),
                format!(
                    "<span class=\"warn\">its newest document does not compile: {}</span>",
                    esc(&error)
                ),
            ]);
        }
    }
    let summary = format!(
        "<p id=\"fleet-summary\" class=\"notice {}\">{online} instance(s) connected, {offline} offline or never connected, {} gateway(s).</p>",
        if offline > 0 { "warn" } else { "ok" },
        ids.len()
    );
    let table = html::table(
        "fleet",
        &[
            "Gateway",
            "Instance",
            "State",
            "Last heartbeat",
            "Offline",
            "Config version",
            "Source",
            "Last sync error",
            "Token expiry",
            "Version",
        ],
        &rows,
    );
    show(web, visit, 200, "Fleet", &format!("{summary}{table}"))
}

fn traffic_page(web: &Web, visit: &Visit) -> Response {
    let (since, range) = catalogue::range_start(visit.form.get("range"));
    let traffic = match web.store().traffic(since) {
        Ok(t) => t,
        Err(e) => return server_error(&e),
    };
    let mut out = html::range_links(catalogue::RANGES, range);
    if traffic.is_empty() {
        out.push_str("<p id=\"no-traffic\">No calls were recorded in this range.</p>");
    }
    for ((gateway, api), usage) in &traffic {
        let _ = write!(
            out,
            "<section class=\"traffic\"><h2>{} · {}</h2>",
            esc(gateway),
            esc(if api.is_empty() { "(no API)" } else { api })
        );
        out.push_str(&super::portal::usage_table(
            &format!("traffic-{}-{}", gateway, api),
            usage,
        ));
        let calls = usage.series(|m| m.calls as f64);
        let errors = usage.series(catalogue::Minute::error_rate);
        let p50 = usage.series(|m| m.p50_ms);
        let p99 = usage.series(|m| m.p99_ms);
        out.push_str("<div class=\"charts\">");
        out.push_str(&html::line_chart("Requests per minute", &calls, 420, 120));
        out.push_str(&html::line_chart(
            "Error rate per minute (%)",
            &errors,
            420,
            120,
        ));
        out.push_str(&html::line_chart(
            "p50 latency per minute (ms)",
            &p50,
            420,
            120,
        ));
        out.push_str(&html::line_chart(
            "p99 latency per minute (ms)",
            &p99,
            420,
            120,
        ));
        out.push_str("</div></section>");
    }
    show(web, visit, 200, "Traffic", &out)
}

fn approvals_page(web: &Web, visit: &Visit, message: Option<&str>) -> Response {
    let (users, subscriptions) = {
        let store = web.store();
        match (
            store.list_entities(Kind::User),
            store.list_entities(Kind::Subscription),
        ) {
            (Ok(u), Ok(s)) => (u, s),
            (Err(e), _) | (_, Err(e)) => return server_error(&e),
        }
    };
    let mut out = String::new();
    if let Some(m) = message {
        out.push_str(&html::notice("ok", m));
    }
    out.push_str(&queue(
        visit,
        &users,
        ("pending", "users"),
        (
            "Accounts awaiting approval",
            &["E-mail", "Name", "Registered", ""],
        ),
        &[("approve", "Approve"), ("block", "Block")],
        |o| {
            vec![
                esc(&text(o, "email")),
                esc(&format!("{} {}", text(o, "firstName"), text(o, "lastName"))),
                esc(&text(o, "registrationDate")),
            ]
        },
    ));
    out.push_str(&queue(
        visit,
        &subscriptions,
        ("submitted", "subscriptions"),
        (
            "Subscriptions awaiting approval",
            &["Name", "Scope", "Owner", ""],
        ),
        &[("approve", "Approve"), ("reject", "Reject")],
        |o| {
            vec![
                esc(&text(o, "displayName")),
                format!("<code>{}</code>", esc(&text(o, "scope"))),
                esc(&text(o, "ownerId")),
            ]
        },
    ));
    let _ = write!(
        out,
        "<h2>Invite a developer</h2><p>An invited developer's account is active at once: give them the code (there is no mail server to send it).</p>\
         <form method=\"post\" action=\"/console/invitations\">{}<label>E-mail <input type=\"email\" name=\"email\" id=\"invite-email\" required></label>\
         <button type=\"submit\" id=\"invite\">Make an invitation code</button></form>",
        html::csrf_field(&visit.csrf)
    );
    show(web, visit, 200, "Approvals", &out)
}

/// One approval queue: the entities of `list` in `state`, as a table with a button per
/// action (`POST /console/{segment}/{id}/{action}`), or "None.".
fn queue(
    visit: &Visit,
    list: &[Value],
    (state, segment): (&str, &str),
    (title, head): (&str, &[&str]),
    actions: &[(&str, &str)],
    cells: impl Fn(&miniserde::json::Object) -> Vec<String>,
) -> String {
    let singular = segment.trim_end_matches('s');
    let rows: Vec<Vec<String>> = list
        .iter()
        .filter_map(|v| match v {
            Value::Object(o) if text(o, "state") == state => Some(o),
            _ => None,
        })
        .map(|o| {
            let id = text(o, "id");
            let buttons: Vec<String> = actions
                .iter()
                .map(|(action, label)| {
                    html::button_form(
                        &format!("/console/{segment}/{}/{action}", url(&id)),
                        &visit.csrf,
                        label,
                        &format!("{action}-{singular}-{id}"),
                    )
                })
                .collect();
            let mut row = cells(o);
            row.push(buttons.join(" "));
            row
        })
        .collect();
    let body = if rows.is_empty() {
        format!("<p id=\"no-pending-{segment}\">None.</p>")
    } else {
        html::table(&format!("pending-{segment}"), head, &rows)
    };
    format!("<h2>{}</h2>{body}", esc(title))
}

/// Sets `state` on a stored entity (the rest of it unchanged).
fn set_state(web: &Web, kind: Kind, id: &str, state: &str) -> Result<(), PlaneError> {
    let mut store = web.store();
    let Value::Object(mut body) = store.get_entity(kind, id)? else {
        return Err(PlaneError::NotFound(id.to_string()));
    };
    body.insert("state".into(), Value::String(state.into()));
    store.put_entity(kind, id, body)?;
    if kind == Kind::User && state != "active" {
        store.end_sessions_of(&Principal::User { id: id.to_string() })?;
    }
    Ok(())
}

/// Approve, block or reject from the approval queue: the state it sets and what the
/// page then says, per kind and action.
fn approval_action(web: &Web, visit: &Visit, kind: Kind, id: &str, action: &str) -> Response {
    let outcome = match (kind, action) {
        (Kind::User, "approve") => Some((
            "active",
            "The account was approved; its owner can sign in now.",
        )),
        (Kind::User, "block") => {
            Some(("blocked", "The account was blocked and its sessions ended."))
        }
        (Kind::Subscription, "approve") => Some((
            "active",
            "The subscription was approved; its keys work and its owner sees them.",
        )),
        (Kind::Subscription, "reject") => Some(("rejected", "The subscription was rejected.")),
        _ => None,
    };
    let Some((state, message)) = outcome else {
        return not_found(web, visit);
    };
    match set_state(web, kind, id, state) {
        Ok(()) => {
            web.plane().bumped();
            approvals_page(web, visit, Some(message))
        }
        Err(e) => error_page(web, visit, &e),
    }
}

pub fn error_page(web: &Web, visit: &Visit, e: &PlaneError) -> Response {
    match e {
        PlaneError::NotFound(what) => show(
            web,
            visit,
            404,
            "Not found",
            &html::notice("error", &format!("{what} was not found.")),
        ),
        PlaneError::Conflict(m) => show(web, visit, 409, "Conflict", &html::notice("error", m)),
        PlaneError::Invalid(errors) => {
            let list: String = errors
                .iter()
                .map(|e| format!("<li>{}</li>", esc(&e.to_string())))
                .collect();
            show(
                web,
                visit,
                400,
                "Refused",
                &format!("<ul class=\"errors\">{list}</ul>"),
            )
        }
        other => server_error(other),
    }
}

fn invite(web: &Web, visit: &Visit) -> Response {
    let email = visit.form.get("email");
    if !email.contains('@') || email.len() > 254 {
        return approvals_page(
            web,
            visit,
            Some("Enter the e-mail address of the developer to invite."),
        );
    }
    let invited = web.store().invite(email);
    match invited {
        Ok(code) => show(
            web,
            visit,
            200,
            "Invitation",
            &format!(
                "<p>Give this code to <strong>{}</strong>; it works once, for that address, for 7 days, and is not shown again.</p><p><code id=\"invitation-code\">{}</code></p>",
                esc(email),
                esc(&code)
            ),
        ),
        Err(e) => server_error(&e),
    }
}
