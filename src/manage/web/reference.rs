//! The portal's API reference: an API's page (its operations), an operation's page
//! (parameters, request and response representations with their examples and schemas,
//! curl and HTTP samples) and its try-it console, which posts to the portal and is
//! relayed to the configured gateway (relay.rs) with the developer's key added on the
//! server. Only the shown API's schemas are read, one operation at a time.
//! Must not touch: accounts, subscriptions' mutations (portal.rs).

use std::fmt::Write as _;

use miniserde::json::{Object, Value};

use super::html::{self, esc, url};
use super::portal::{not_found, show, text, with_viewer};
use super::relay::{self, TryAnswer, TryCall};
use super::{server_error, Visit, Web};
use crate::manage::catalogue::SubscriptionCard;
use crate::manage::entities::Kind;
use crate::manage::http::Response;

/// What a try-it post came to: the answer, or why no call was made.
pub enum Tried {
    Answer(TryAnswer),
    Refused(String),
}

/// Operations listed per page of an API's page.
const OPERATIONS_PER_PAGE: usize = 100;

/// Most referenced schemas shown under an operation.
const MAX_SCHEMAS: usize = 24;

pub fn api_page(web: &Web, visit: &Visit, api: &str) -> Response {
    let catalogue = web.catalogue();
    let visible = with_viewer(web, visit, |v| catalogue.api_visible(v, api));
    let Some(card) = catalogue.api(api).filter(|_| visible) else {
        return not_found(web, visit);
    };
    let operations = match web.store().operation_cards(api) {
        Ok(o) => o,
        Err(e) => return server_error(&e),
    };
    let mut out = format!(
        "<p>{}</p><p>Base URL <code id=\"base-url\">{}/{}</code></p>",
        esc(&card.description),
        esc(gateway_base(web)),
        esc(card.path.trim_matches('/'))
    );
    // a large API is read a page at a time, with a filter on name, method and template
    let query = visit.form.get("q").to_lowercase();
    let matching: Vec<_> = operations
        .iter()
        .filter(|o| {
            query.is_empty()
                || [&o.name, &o.method, &o.url_template, &o.id]
                    .iter()
                    .any(|f| f.to_lowercase().contains(&query))
        })
        .collect();
    let pages = matching.len().div_ceil(OPERATIONS_PER_PAGE).max(1);
    let page = visit.form.get("page").parse().unwrap_or(1).clamp(1, pages);
    let first = (page - 1) * OPERATIONS_PER_PAGE;
    let _ = write!(
        out,
        "<form class=\"search\" method=\"get\" action=\"/portal/apis/{}\"><input type=\"search\" name=\"q\" id=\"operation-q\" value=\"{}\" \
         placeholder=\"Filter operations\" aria-label=\"Filter operations\"><button type=\"submit\">Filter</button></form>\
         <p id=\"operation-count\">{} of {} operations</p>",
        url(api),
        esc(visit.form.get("q")),
        matching.len(),
        operations.len()
    );
    let rows: Vec<Vec<String>> = matching
        .iter()
        .skip(first)
        .take(OPERATIONS_PER_PAGE)
        .map(|o| {
            vec![
                format!(
                    "<span class=\"method {}\">{}</span>",
                    esc(&o.method.to_lowercase()),
                    esc(&o.method)
                ),
                format!(
                    "<a href=\"/portal/apis/{}/operations/{}\">{}</a>",
                    url(api),
                    url(&o.id),
                    esc(&o.name)
                ),
                format!("<code>{}</code>", esc(&o.url_template)),
            ]
        })
        .collect();
    out.push_str(&html::table(
        "operations",
        &["Method", "Operation", "URL template"],
        &rows,
    ));
    out.push_str(&html::pager(
        &format!("/portal/apis/{}?q={}&", url(api), url(visit.form.get("q"))),
        page,
        pages,
    ));
    show(web, visit, 200, &card.name, &out)
}

fn gateway_base(web: &Web) -> &str {
    web.settings()
        .gateway_url
        .as_deref()
        .map_or("https://{gateway}", |u| u.trim_end_matches('/'))
}

fn list<'v>(o: &'v Object, key: &str) -> &'v [Value] {
    match o.get(key) {
        Some(Value::Array(a)) => a,
        _ => &[],
    }
}

fn obj<'v>(o: &'v Object, key: &str) -> Option<&'v Object> {
    match o.get(key) {
        Some(Value::Object(x)) => Some(x),
        _ => None,
    }
}

fn objects(values: &[Value]) -> impl Iterator<Item = &Object> {
    values.iter().filter_map(|v| match v {
        Value::Object(o) => Some(o),
        _ => None,
    })
}

pub fn operation_page(
    web: &Web,
    visit: &Visit,
    api: &str,
    op: &str,
    tried: Option<Tried>,
) -> Response {
    let catalogue = web.catalogue();
    let visible = with_viewer(web, visit, |v| catalogue.api_visible(v, api));
    let Some(card) = catalogue.api(api).filter(|_| visible) else {
        return not_found(web, visit);
    };
    let (operation, schemas) = {
        let store = web.store();
        match (store.get_operation(api, op), store.api_schemas(api)) {
            (Ok(Value::Object(o)), Ok(s)) => (o, s),
            (Err(crate::manage::store::PlaneError::NotFound(_)), _) => {
                return not_found(web, visit)
            }
            (Err(e), _) | (_, Err(e)) => return server_error(&e),
            (Ok(_), _) => return not_found(web, visit),
        }
    };
    let method = text(&operation, "method");
    let template = text(&operation, "urlTemplate");
    let mut out = format!(
        "<p class=\"endpoint\"><span class=\"method {}\">{}</span> <code id=\"url-template\">{}/{}{}</code></p><p>{}</p>",
        esc(&method.to_lowercase()),
        esc(&method),
        esc(gateway_base(web)),
        esc(card.path.trim_matches('/')),
        esc(&template),
        esc(&text(&operation, "description"))
    );
    let mut referenced = Vec::new();
    out.push_str(&request_section(&operation, &schemas, &mut referenced));
    out.push_str(&responses_section(&operation, &schemas, &mut referenced));
    out.push_str(&schemas_section(&schemas, referenced));
    out.push_str(&samples(web, card.path.trim_matches('/'), &operation));
    if let Some(t) = tried {
        out.push_str(&answer_section(&t));
    }
    out.push_str(&try_form(web, visit, api, op, &operation));
    let title = format!("{} · {}", text(&operation, "displayName").trim(), card.name);
    show(web, visit, 200, title.trim_start_matches(" · "), &out)
}

fn params_table(id: &str, title: &str, params: &[Value]) -> String {
    if params.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = objects(params)
        .map(|p| {
            vec![
                format!("<code>{}</code>", esc(&text(p, "name"))),
                esc(&text(p, "type")),
                if matches!(p.get("required"), Some(Value::Bool(true))) {
                    "yes"
                } else {
                    "no"
                }
                .into(),
                esc(&text(p, "description")),
            ]
        })
        .collect();
    format!(
        "<h3>{title}</h3>{}",
        html::table(id, &["Name", "Type", "Required", "Description"], &rows)
    )
}

fn representations(reps: &[Value], schemas: &[Value], referenced: &mut Vec<String>) -> String {
    let mut out = String::new();
    for r in objects(reps) {
        let _ = write!(
            out,
            "<div class=\"representation\"><p>Content type <code>{}</code>",
            esc(&text(r, "contentType"))
        );
        let type_name = text(r, "typeName");
        if !type_name.is_empty() {
            let _ = write!(
                out,
                " · schema <a href=\"#schema-{}\">{}</a>",
                esc(&type_name),
                esc(&type_name)
            );
            if find_schema(schemas, &text(r, "schemaId"), &type_name).is_some()
                && !referenced.contains(&type_name)
            {
                referenced.push(type_name);
            }
        }
        out.push_str("</p>");
        let (example, label) = match (text(r, "example"), text(r, "sample")) {
            (e, _) if !e.is_empty() => (e, "Example"),
            (_, s) if !s.is_empty() => (s, "Sample (from the schema)"),
            _ => (String::new(), ""),
        };
        if !example.is_empty() {
            let _ = write!(
                out,
                "<p>{label}</p><pre class=\"example\">{}</pre>",
                esc(&pretty_text(&example))
            );
        }
        out.push_str("</div>");
    }
    out
}

fn request_section(op: &Object, schemas: &[Value], referenced: &mut Vec<String>) -> String {
    let mut out = String::from("<h2>Request</h2>");
    out.push_str(&params_table(
        "template-parameters",
        "Template parameters",
        list(op, "templateParameters"),
    ));
    if let Some(req) = obj(op, "request") {
        out.push_str(&params_table(
            "query-parameters",
            "Query parameters",
            list(req, "queryParameters"),
        ));
        out.push_str(&params_table(
            "request-headers",
            "Headers",
            list(req, "headers"),
        ));
        let reps = list(req, "representations");
        if !reps.is_empty() {
            out.push_str("<h3>Body</h3>");
            out.push_str(&representations(reps, schemas, referenced));
        }
    }
    out
}

fn responses_section(op: &Object, schemas: &[Value], referenced: &mut Vec<String>) -> String {
    let mut out = String::from("<h2>Responses</h2>");
    for r in objects(list(op, "responses")) {
        let status = match r.get("statusCode") {
            Some(Value::Number(n)) => miniserde::json::to_string(n),
            _ => "?".into(),
        };
        let _ = write!(
            out,
            "<section class=\"response\"><h3>{}</h3><p>{}</p>",
            esc(&status),
            esc(&text(r, "description"))
        );
        out.push_str(&params_table(
            &format!("response-{status}-headers"),
            "Headers",
            list(r, "headers"),
        ));
        out.push_str(&representations(
            list(r, "representations"),
            schemas,
            referenced,
        ));
        out.push_str("</section>");
    }
    out
}

/// The schema `name` of the API's schema document `schema_id`.
fn find_schema<'s>(schemas: &'s [Value], schema_id: &str, name: &str) -> Option<&'s Value> {
    objects(schemas)
        .filter(|s| schema_id.is_empty() || text(s, "id") == schema_id)
        .find_map(|s| {
            let doc = obj(s, "document")?;
            let holder = obj(doc, "components")
                .and_then(|c| obj(c, "schemas"))
                .or_else(|| obj(doc, "definitions"))?;
            holder.get(name)
        })
}

/// The named schemas `referenced` and those they refer to, each once, at most
/// `MAX_SCHEMAS`.
fn schemas_section(schemas: &[Value], mut referenced: Vec<String>) -> String {
    if referenced.is_empty() {
        return String::new();
    }
    let mut out = String::from("<h2>Schemas</h2>");
    let mut i = 0;
    while i < referenced.len() && i < MAX_SCHEMAS {
        let name = referenced[i].clone();
        if let Some(schema) = find_schema(schemas, "", &name) {
            collect_refs(schema, &mut referenced);
            let _ = write!(
                out,
                "<section class=\"schema\" id=\"schema-{}\"><h3>{}</h3><pre>{}</pre></section>",
                esc(&name),
                esc(&name),
                esc(&pretty(schema))
            );
        }
        i += 1;
    }
    out
}

fn collect_refs(v: &Value, into: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("$ref") {
                if let Some(name) = r.rsplit('/').next() {
                    let name = name.replace("~1", "/").replace("~0", "~");
                    if !into.contains(&name) {
                        into.push(name);
                    }
                }
            }
            o.values().for_each(|x| collect_refs(x, into));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, into)),
        _ => {}
    }
}

/// A JSON text indented for reading (left as it is when it is not JSON).
fn pretty_text(s: &str) -> String {
    match miniserde::json::from_str::<Value>(s) {
        Ok(v) => pretty(&v),
        Err(_) => s.to_string(),
    }
}

/// A value as JSON, two spaces per level.
pub fn pretty(v: &Value) -> String {
    fn go(v: &Value, depth: usize, out: &mut String) {
        let pad = |n: usize| "  ".repeat(n);
        match v {
            Value::Object(o) if !o.is_empty() => {
                out.push_str("{\n");
                for (i, (k, x)) in o.iter().enumerate() {
                    let _ = write!(out, "{}{}: ", pad(depth + 1), miniserde::json::to_string(k));
                    go(x, depth + 1, out);
                    out.push_str(if i + 1 < o.len() { ",\n" } else { "\n" });
                }
                let _ = write!(out, "{}}}", pad(depth));
            }
            Value::Array(a) if !a.is_empty() => {
                out.push_str("[\n");
                for (i, x) in a.iter().enumerate() {
                    out.push_str(&pad(depth + 1));
                    go(x, depth + 1, out);
                    out.push_str(if i + 1 < a.len() { ",\n" } else { "\n" });
                }
                let _ = write!(out, "{}]", pad(depth));
            }
            other => out.push_str(&miniserde::json::to_string(other)),
        }
    }
    let mut out = String::new();
    go(v, 0, &mut out);
    out
}

/// The first request representation's content type and example (or sample).
fn request_example(op: &Object) -> (String, String) {
    let first = obj(op, "request").and_then(|r| objects(list(r, "representations")).next());
    match first {
        Some(r) => {
            let body = match text(r, "example") {
                e if e.is_empty() => text(r, "sample"),
                e => e,
            };
            (text(r, "contentType"), body)
        }
        None => (String::new(), String::new()),
    }
}

fn samples(web: &Web, api_path: &str, op: &Object) -> String {
    let method = text(op, "method");
    let template = text(op, "urlTemplate");
    let base = gateway_base(web);
    let (content_type, body) = request_example(op);
    let target = format!("/{api_path}{template}").replace("//", "/");
    let mut curl = format!("curl -X {method} \"{base}{target}\" \\\n  -H \"Ocp-Apim-Subscription-Key: {{subscription-key}}\"");
    let host = base.split_once("://").map_or(base, |(_, h)| h);
    let mut http = format!("{method} {target} HTTP/1.1\nHost: {host}\nOcp-Apim-Subscription-Key: {{subscription-key}}\n");
    if !content_type.is_empty() {
        let _ = write!(curl, " \\\n  -H \"Content-Type: {content_type}\"");
        let _ = writeln!(http, "Content-Type: {content_type}");
    }
    if !body.is_empty() {
        let _ = write!(curl, " \\\n  --data '{}'", body.replace('\'', "'\\''"));
        let _ = write!(http, "\n{body}");
    }
    format!(
        "<h2>Code samples</h2><h3>curl</h3><pre id=\"sample-curl\">{}</pre><h3>HTTP</h3><pre id=\"sample-http\">{}</pre>",
        esc(&curl),
        esc(&http)
    )
}

/// The visitor's active subscriptions that cover `api` (all APIs, the API, or a product
/// that holds it).
fn covering(web: &Web, user: &str, api: &str) -> Vec<SubscriptionCard> {
    let catalogue = web.catalogue();
    let subs = web.store().subscriptions_of(user).unwrap_or_default();
    subs.into_iter()
        .filter(|s| s.state == "active")
        .filter(|s| match s.scope.as_str() {
            "/apis" => true,
            scope => match (
                scope.strip_prefix("/apis/"),
                scope.strip_prefix("/products/"),
            ) {
                (Some(a), _) => a == api,
                (_, Some(p)) => catalogue
                    .product(p)
                    .is_some_and(|p| p.apis.iter().any(|a| a == api)),
                _ => false,
            },
        })
        .collect()
}

fn try_form(web: &Web, visit: &Visit, api: &str, op_id: &str, op: &Object) -> String {
    let mut out = String::from("<h2 id=\"try\">Try it</h2>");
    if web.settings().gateway_url.is_none() {
        out.push_str("<p>Try-it is off: the plane has no manage.portal.gateway.url.</p>");
        return out;
    }
    let Some(user) = visit.user_id() else {
        out.push_str(
            "<p><a href=\"/portal/signin\">Sign in</a> to call this operation with your key.</p>",
        );
        return out;
    };
    let subs = covering(web, user, api);
    let f = &visit.form;
    let _ = write!(
        out,
        "<form method=\"post\" action=\"/portal/apis/{}/operations/{}/try#try-answer\" class=\"try\">{}<label>Subscription <select name=\"subscription\" id=\"try-subscription\">",
        url(api),
        url(op_id),
        html::csrf_field(&visit.csrf)
    );
    for s in &subs {
        let selected = if f.get("subscription") == s.id {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<option value=\"{}\"{selected}>{} (primary key)</option>",
            esc(&s.id),
            esc(&s.name)
        );
    }
    out.push_str("<option value=\"\">No key</option></select></label>");
    for p in objects(list(op, "templateParameters")) {
        let name = text(p, "name");
        let field = format!("p.{name}");
        let _ = write!(
            out,
            "<label>{} <input name=\"{}\" id=\"try-param-{}\" value=\"{}\" required></label>",
            esc(&name),
            esc(&field),
            esc(&name),
            esc(f.get(&field))
        );
    }
    let (content_type, body) = request_example(op);
    let query_default: Vec<String> = obj(op, "request")
        .map(|r| {
            objects(list(r, "queryParameters"))
                .filter(|p| matches!(p.get("required"), Some(Value::Bool(true))))
                .map(|p| format!("{}=", text(p, "name")))
                .collect()
        })
        .unwrap_or_default();
    let posted = visit.req.method == "POST";
    let pick = |name: &str, default: String| {
        if posted {
            f.raw(name).unwrap_or("").to_string()
        } else {
            default
        }
    };
    let headers_default = if content_type.is_empty() {
        String::new()
    } else {
        format!("Content-Type: {content_type}")
    };
    let _ = write!(
        out,
        "<label>Query <input name=\"query\" id=\"try-query\" value=\"{}\"></label>\
         <label>Headers (one <code>Name: value</code> per line) <textarea name=\"headers\" id=\"try-headers\" rows=\"3\">{}</textarea></label>\
         <label>Body <textarea name=\"body\" id=\"try-body\" rows=\"6\">{}</textarea></label>\
         <button type=\"submit\" id=\"try-send\">Send</button></form>",
        esc(&pick("query", query_default.join("&"))),
        esc(&pick("headers", headers_default)),
        esc(&pick("body", body))
    );
    out
}

fn answer_section(t: &Tried) -> String {
    match t {
        Tried::Refused(why) => format!(
            "<section id=\"try-answer\">{}</section>",
            html::notice("error", why)
        ),
        Tried::Answer(a) => {
            let mut out = format!(
                "<section id=\"try-answer\"><h3>Answer</h3><p>Status <strong id=\"try-status\">{}</strong> in {} ms</p><pre id=\"try-headers-out\">",
                a.status,
                a.elapsed.as_millis()
            );
            for (k, v) in &a.headers {
                let _ = writeln!(out, "{}: {}", esc(k), esc(v));
            }
            let _ = write!(out, "</pre><pre id=\"try-body-out\">{}</pre>", esc(&a.body));
            if a.truncated {
                let _ = write!(
                    out,
                    "<p>The answer was cut at {} KiB.</p>",
                    relay::MAX_ANSWER / 1024
                );
            }
            out.push_str("</section>");
            out
        }
    }
}

pub fn try_it(web: &Web, visit: &Visit, api: &str, op: &str) -> Response {
    let tried = match call(web, visit, api, op) {
        Ok(c) => c,
        Err(r) => return r,
    };
    operation_page(web, visit, api, op, Some(tried))
}

/// Builds and makes the relayed call; `Err` is a page to answer instead (not found,
/// sign in).
fn call(web: &Web, visit: &Visit, api: &str, op: &str) -> Result<Tried, Response> {
    let Some(user) = visit.user_id() else {
        return Err(super::redirect("/portal/signin"));
    };
    let catalogue = web.catalogue();
    let visible = with_viewer(web, visit, |v| catalogue.api_visible(v, api));
    let (Some(card), Some(base)) = (
        catalogue.api(api).filter(|_| visible),
        web.settings().gateway_url.clone(),
    ) else {
        return Err(not_found(web, visit));
    };
    let (operation, detail) = {
        let store = web.store();
        match (store.get_operation(api, op), store.api_detail(api)) {
            (Ok(Value::Object(o)), Ok(d)) => (o, d),
            _ => return Err(not_found(web, visit)),
        }
    };
    let f = &visit.form;
    let mut path = text(&operation, "urlTemplate");
    for p in objects(list(&operation, "templateParameters")) {
        let name = text(p, "name");
        path = path.replace(&format!("{{{name}}}"), &url(f.get(&format!("p.{name}"))));
    }
    let path = path.split(['?', '#']).next().unwrap_or("").replace('*', "");
    let query = f.get("query").trim_start_matches('?');
    if query.len() > 4096 || query.contains(['#', ' ', '\r', '\n']) {
        return Ok(Tried::Refused(
            "The query must be URL-encoded and at most 4 KiB.".into(),
        ));
    }
    let headers = match relay::parse_headers(f.raw("headers").unwrap_or("")) {
        Ok(h) => h,
        Err(why) => return Ok(Tried::Refused(why)),
    };
    let body = f.raw("body").unwrap_or("").replace("\r\n", "\n");
    if body.len() > relay::MAX_BODY {
        return Ok(Tried::Refused(format!(
            "A try-it body may have at most {} KiB.",
            relay::MAX_BODY / 1024
        )));
    }
    let key = match f.get("subscription") {
        "" => None,
        id => {
            if !covering(web, user, api).iter().any(|s| s.id == id) {
                return Ok(Tried::Refused(
                    "That subscription is not yours, not active, or does not cover this API."
                        .into(),
                ));
            }
            match web.store().secrets(Kind::Subscription, id) {
                Ok(Value::Object(k)) => Some((detail.key_header.clone(), text(&k, "primaryKey"))),
                Ok(_) => None,
                Err(e) => return Err(server_error(&e)),
            }
        }
    };
    let mut target = format!(
        "{}/{}{}",
        base.trim_end_matches('/'),
        card.path.trim_matches('/'),
        path
    );
    if !query.is_empty() {
        target = format!("{target}?{query}");
    }
    let method = text(&operation, "method");
    let method = if method == "*" {
        "GET".to_string()
    } else {
        method
    };
    let outcome = relay::relay(&TryCall {
        method: &method,
        url: target,
        headers,
        body: body.as_bytes(),
        key,
    });
    Ok(match outcome {
        Ok(a) => Tried::Answer(a),
        Err(why) => Tried::Refused(why),
    })
}
