//! The console's catalogue management: every API (import from an OpenAPI document,
//! links to its policy and its portal page), products (create or edit with their terms,
//! approval, limit and groups; link and unlink APIs; their policy), users (block or
//! activate), subscriptions, named values (secret values never shown), backends,
//! certificates and policy fragments. Every change goes through the store's checks, as
//! the admin API's do, and is refused whole with each error's path.
//! Must not touch: the approval queue and fleet (console.rs), the policy editor
//! (editor.rs).

use std::fmt::Write as _;

use miniserde::json::{Object, Value};

use super::console::{error_page, show};
use super::html::{self, esc, url};
use super::portal::text;
use super::{redirect, Visit, Web};
use crate::manage::entities::Kind;
use crate::manage::http::Response;
use crate::manage::import::ImportOptions;
use crate::manage::openapi::RequiredQuery;
use crate::manage::store::PlaneError;

pub fn page(web: &Web, visit: &Visit, notice: Option<&str>) -> Response {
    let c = web.catalogue();
    let mut out = String::new();
    if let Some(n) = notice {
        out.push_str(&html::notice("ok", n));
    }
    out.push_str("<h2>APIs</h2>");
    let rows: Vec<Vec<String>> = c
        .apis
        .iter()
        .map(|a| {
            vec![
                esc(&a.name),
                format!("<code>/{}</code>", esc(&a.path)),
                format!(
                    "<a href=\"/console/policies/api/{}\">policy</a> · <a href=\"/portal/apis/{}\">portal</a>",
                    url(&a.id),
                    url(&a.id)
                ),
            ]
        })
        .collect();
    out.push_str(&html::table("console-apis", &["API", "Path", ""], &rows));
    let _ = write!(
        out,
        "<h3>Import an OpenAPI document</h3><form method=\"post\" action=\"/console/import\">{}\
         <label>API id <input name=\"id\" id=\"import-id\" required></label>\
         <label>Path (default: the id) <input name=\"path\" id=\"import-path\"></label>\
         <label>Service URL (default: the document's first server) <input name=\"serviceUrl\" id=\"import-service-url\"></label>\
         <label>OpenAPI 3.0 / 3.1 or Swagger 2.0, JSON or YAML <textarea name=\"document\" id=\"import-document\" rows=\"10\" spellcheck=\"false\"></textarea></label>\
         <button type=\"submit\" id=\"import\">Import</button></form>",
        html::csrf_field(&visit.csrf)
    );
    out.push_str("<h2>Products</h2>");
    let rows: Vec<Vec<String>> = c
        .products
        .iter()
        .map(|p| {
            vec![
                format!(
                    "<a href=\"/console/products/{}\">{}</a>",
                    url(&p.id),
                    esc(&p.name)
                ),
                if p.published {
                    "published"
                } else {
                    "not published"
                }
                .into(),
                esc(&p.apis.join(", ")),
                format!(
                    "<a href=\"/console/policies/product/{}\">policy</a>",
                    url(&p.id)
                ),
            ]
        })
        .collect();
    out.push_str(&html::table(
        "console-products",
        &["Product", "State", "APIs", ""],
        &rows,
    ));
    out.push_str("<p><a href=\"/console/products/new\" id=\"new-product\">New product</a> · <a href=\"/console/policies/global\">The global policy</a></p>");
    out.push_str(&entity_tables(web, visit));
    show(web, visit, 200, "Catalogue", &out)
}

/// Users (with block / activate), subscriptions, named values, backends, certificates,
/// fragments: the admin view, so keys and secret values are not in it.
fn entity_tables(web: &Web, visit: &Visit) -> String {
    let mut out = String::new();
    for (kind, segment, title, fields) in [
        (Kind::User, "users", "Users", &["id", "email", "state"][..]),
        (Kind::Group, "groups", "Groups", &["id", "displayName"][..]),
        (
            Kind::Subscription,
            "subscriptions",
            "Subscriptions",
            &["id", "scope", "state", "ownerId"][..],
        ),
        (
            Kind::NamedValue,
            "named-values",
            "Named values",
            &["name", "secret", "value"][..],
        ),
        (Kind::Backend, "backends", "Backends", &["id", "url"][..]),
        (
            Kind::Certificate,
            "certificates",
            "Certificates",
            &["id"][..],
        ),
        (
            Kind::CaCertificate,
            "ca-certificates",
            "CA certificates",
            &["id"][..],
        ),
        (
            Kind::Fragment,
            "policy-fragments",
            "Policy fragments",
            &["id", "description"][..],
        ),
    ] {
        let list = web.store().list_entities(kind).unwrap_or_default();
        let rows: Vec<Vec<String>> = list
            .iter()
            .filter_map(|v| match v {
                Value::Object(o) => Some(o),
                _ => None,
            })
            .map(|o| {
                let id = text(o, kind.id_field());
                let mut row: Vec<String> = fields
                    .iter()
                    .map(|f| match o.get(*f) {
                        // the first column links to the entity's editor
                        Some(Value::String(s)) if *f == fields[0] => format!(
                            "<a href=\"/console/entities/{segment}/{}\">{}</a>",
                            url(s),
                            esc(s)
                        ),
                        Some(Value::String(s)) => esc(s),
                        Some(Value::Bool(b)) => b.to_string(),
                        None if *f == "value" => "<em>secret</em>".into(),
                        _ => String::new(),
                    })
                    .collect();
                row.push(match kind {
                    Kind::User => user_buttons(visit, &id, &text(o, "state")),
                    Kind::Fragment => format!(
                        "<a href=\"/console/policies/fragment/{}\">policy</a>",
                        url(&id)
                    ),
                    _ => String::new(),
                });
                row
            })
            .collect();
        let mut head = fields.to_vec();
        head.push("");
        let _ = write!(
            out,
            "<h2>{title}</h2><p><a href=\"/console/entities/{segment}/new\" id=\"new-{segment}\">New</a></p>"
        );
        out.push_str(&html::table(
            &format!("console-{}", title.to_lowercase().replace(' ', "-")),
            &head,
            &rows,
        ));
    }
    out
}

fn user_buttons(visit: &Visit, id: &str, state: &str) -> String {
    let base = format!("/console/users/{}", url(id));
    match state {
        "blocked" | "pending" => html::button_form(
            &format!("{base}/approve"),
            &visit.csrf,
            "Activate",
            &format!("activate-user-{id}"),
        ),
        "deleted" => String::new(),
        _ => html::button_form(
            &format!("{base}/block"),
            &visit.csrf,
            "Block",
            &format!("block-user-{id}"),
        ),
    }
}

pub fn import(web: &Web, visit: &Visit) -> Response {
    let f = &visit.form;
    let id = f.get("id");
    if let Err(e) = form_id(id) {
        return error_page(web, visit, &e);
    }
    let some = |v: &str| (!v.is_empty()).then(|| v.to_string());
    let options = ImportOptions {
        path: some(f.get("path")),
        service_url: some(f.get("serviceUrl")),
    };
    let document = f.raw("document").unwrap_or("");
    let report = web
        .store()
        .import_text(id, document, RequiredQuery::Template, options);
    match report {
        Ok(r) => {
            web.plane().bumped();
            let message = format!(
                "API {id} {}: {} operation(s) added, {} updated, {} unchanged, {} deleted.",
                if r.created { "imported" } else { "re-imported" },
                r.added.len(),
                r.updated.len(),
                r.unchanged.len(),
                r.deleted.len()
            );
            page(web, visit, Some(&message))
        }
        Err(e) => error_page(web, visit, &e),
    }
}

/// The `id` of a form: as the admin API takes ids.
pub(super) fn form_id(id: &str) -> Result<(), PlaneError> {
    if crate::config::compile::valid_id(id) {
        Ok(())
    } else {
        Err(invalid(
            "id",
            "ids may hold only letters, digits and - _ . ~ (at most 256)",
        ))
    }
}

/// A form field the plane refuses: its name and why.
pub(super) fn invalid(path: &str, message: &str) -> PlaneError {
    PlaneError::Invalid(vec![crate::config::ConfigError {
        path: path.into(),
        message: message.into(),
    }])
}

/// A product's form (`id` "new" for a new one) and its APIs.
pub fn product_page(web: &Web, visit: &Visit, id: &str) -> Response {
    let stored = if id == "new" {
        Object::new()
    } else {
        let got = web.store().get_entity(Kind::Product, id);
        match got {
            Ok(Value::Object(o)) => o,
            Ok(_) => Object::new(),
            Err(e) => return error_page(web, visit, &e),
        }
    };
    let flag = |k: &str, default: bool| match stored.get(k) {
        Some(Value::Bool(b)) => *b,
        _ => default,
    };
    let checked = |on: bool| if on { " checked" } else { "" };
    let limit = match stored.get("subscriptionsLimit") {
        Some(Value::Number(n)) => miniserde::json::to_string(n),
        _ => String::new(),
    };
    let groups = match stored.get("groups") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|g| match g {
                Value::String(g) => Some(g.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    };
    let mut out = format!(
        "<form method=\"post\" action=\"/console/products\">{}\
         <label>Id <input name=\"id\" id=\"product-id\" required value=\"{}\"{}></label>\
         <label>Name <input name=\"displayName\" id=\"product-name\" value=\"{}\"></label>\
         <label>Description <textarea name=\"description\" rows=\"3\">{}</textarea></label>\
         <label>Terms of use <textarea name=\"terms\" id=\"product-terms\" rows=\"3\">{}</textarea></label>\
         <label><input type=\"checkbox\" name=\"published\" value=\"on\"{}> Published</label>\
         <label><input type=\"checkbox\" name=\"subscriptionRequired\" value=\"on\"{}> Subscription required</label>\
         <label><input type=\"checkbox\" name=\"approvalRequired\" value=\"on\" id=\"product-approval\"{}> Approval required</label>\
         <label>Subscriptions per developer (empty: no limit) <input name=\"subscriptionsLimit\" value=\"{}\"></label>\
         <label>Visible to groups (comma-separated; empty: everyone) <input name=\"groups\" value=\"{}\"></label>\
         <button type=\"submit\" id=\"save-product\">Save</button></form>",
        html::csrf_field(&visit.csrf),
        if id == "new" { "" } else { id },
        if id == "new" { "" } else { " readonly" },
        esc(&text(&stored, "displayName")),
        esc(&text(&stored, "description")),
        esc(&text(&stored, "terms")),
        checked(text(&stored, "state") != "notPublished"),
        checked(flag("subscriptionRequired", true)),
        checked(flag("approvalRequired", false)),
        esc(&limit),
        esc(&groups)
    );
    if id != "new" {
        out.push_str(&product_apis(web, visit, id));
    }
    show(
        web,
        visit,
        200,
        if id == "new" { "New product" } else { id },
        &out,
    )
}

fn product_apis(web: &Web, visit: &Visit, id: &str) -> String {
    let c = web.catalogue();
    let linked = c.product(id).map(|p| p.apis.clone()).unwrap_or_default();
    let base = format!("/console/products/{}/apis", url(id));
    let rows: Vec<Vec<String>> = linked
        .iter()
        .map(|a| {
            vec![
                esc(a),
                html::button_form(
                    &format!("{base}/{}/remove", url(a)),
                    &visit.csrf,
                    "Remove",
                    &format!("remove-api-{a}"),
                ),
            ]
        })
        .collect();
    let mut out = format!(
        "<h2>APIs</h2>{}",
        html::table("product-apis", &["API", ""], &rows)
    );
    let _ = write!(
        out,
        "<form method=\"post\" action=\"{base}\">{}<label>Add API <select name=\"api\" id=\"add-api\">",
        html::csrf_field(&visit.csrf)
    );
    for a in c.apis.iter().filter(|a| !linked.contains(&a.id)) {
        let _ = write!(
            out,
            "<option value=\"{}\">{}</option>",
            esc(&a.id),
            esc(&a.name)
        );
    }
    out.push_str(
        "</select></label><button type=\"submit\" id=\"add-api-button\">Add</button></form>",
    );
    out
}

/// Creates or updates a product from its form; its policy and links stay.
pub fn save_product(web: &Web, visit: &Visit) -> Response {
    let f = &visit.form;
    let id = f.get("id");
    if let Err(e) = form_id(id) {
        return error_page(web, visit, &e);
    }
    let result = (|| {
        let mut store = web.store();
        let mut body = match store.get_entity(Kind::Product, id) {
            Ok(Value::Object(o)) => o,
            Ok(_) | Err(PlaneError::NotFound(_)) => Object::new(),
            Err(e) => return Err(e),
        };
        body.remove("apis");
        let s = |v: &str| Value::String(v.to_string());
        for key in ["displayName", "description", "terms"] {
            match f.get(key) {
                "" => body.remove(key),
                v => body.insert(key.into(), s(v)),
            };
        }
        let on = |k: &str| Value::Bool(f.get(k) == "on");
        body.insert(
            "state".into(),
            s(if f.get("published") == "on" {
                "published"
            } else {
                "notPublished"
            }),
        );
        body.insert("subscriptionRequired".into(), on("subscriptionRequired"));
        body.insert("approvalRequired".into(), on("approvalRequired"));
        match f.get("subscriptionsLimit") {
            "" => {
                body.remove("subscriptionsLimit");
            }
            n => match n.parse::<u64>() {
                Ok(n) => {
                    body.insert(
                        "subscriptionsLimit".into(),
                        Value::Number(miniserde::json::Number::U64(n)),
                    );
                }
                Err(_) => {
                    return Err(invalid(
                        "subscriptionsLimit",
                        "must be a whole number of at least 0",
                    ))
                }
            },
        }
        let groups: Vec<Value> = f
            .get("groups")
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(s)
            .collect();
        if groups.is_empty() {
            body.remove("groups");
        } else {
            body.insert("groups".into(), Value::Array(groups.into_iter().collect()));
        }
        store.put_entity(Kind::Product, id, body)
    })();
    match result {
        Ok(_) => {
            web.plane().bumped();
            redirect(&format!("/console/products/{}", url(id)))
        }
        Err(e) => error_page(web, visit, &e),
    }
}

/// Links (`api` in the form) or, with `remove`, unlinks an API.
pub fn link(web: &Web, visit: &Visit, product: &str, remove: Option<&str>) -> Response {
    let result = match remove {
        Some(api) => web.store().unlink_product(product, api),
        None => web
            .store()
            .link_product(product, visit.form.get("api"))
            .map(drop),
    };
    match result {
        Ok(()) => {
            web.plane().bumped();
            redirect(&format!("/console/products/{}", url(product)))
        }
        Err(e) => error_page(web, visit, &e),
    }
}
