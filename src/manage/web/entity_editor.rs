//! The console's editor for the catalogue's other entities (named values, backends,
//! certificates, CA certificates, policy fragments, users, groups, subscriptions): the
//! admin API's JSON of one entity in a text area, saved through the same store checks
//! (refused whole, each error with its path), and deleted with the same rules (409
//! while in use). Secrets are never put in the page: a secret named value's value and
//! a certificate's private key are left out, and kept when a save leaves them out.
//! Must not touch: products and APIs (manage_catalogue.rs), policies (editor.rs).

use miniserde::json::{self, Value};

use super::console::{error_page, not_found, show};
use super::html::{self, esc, url};
use super::manage_catalogue::{form_id, invalid};
use super::reference::pretty;
use super::{redirect, Visit, Web};
use crate::manage::entities::Kind;
use crate::manage::http::Response;

/// The kinds this editor handles, by their admin API segment.
pub fn kind_of(segment: &str) -> Option<Kind> {
    Kind::from_segment(segment).filter(|k| *k != Kind::Product)
}

pub fn page(web: &Web, visit: &Visit, segment: &str, id: &str) -> Response {
    let Some(kind) = kind_of(segment) else {
        return not_found(web, visit);
    };
    let text = if id == "new" {
        "{\n}".to_string()
    } else {
        let got = web.store().get_entity(kind, id);
        match got {
            Ok(Value::Object(mut o)) => {
                o.remove("id");
                o.remove(kind.id_field());
                pretty(&Value::Object(o))
            }
            Ok(_) => "{}".into(),
            Err(e) => return error_page(web, visit, &e),
        }
    };
    form(web, visit, kind, segment, id, &text, 200)
}

fn form(
    web: &Web,
    visit: &Visit,
    kind: Kind,
    segment: &str,
    id: &str,
    text: &str,
    status: u16,
) -> Response {
    let new = id == "new";
    let mut out = format!(
        "<form method=\"post\" action=\"/console/entities/{}\">{}\
         <label>Id <input name=\"id\" id=\"entity-id\" required value=\"{}\"{}></label>\
         <label>JSON, as the admin API takes it <textarea name=\"json\" id=\"entity-json\" rows=\"16\" spellcheck=\"false\">{}</textarea></label>\
         <button type=\"submit\" id=\"save-entity\">Save</button></form>",
        url(segment),
        html::csrf_field(&visit.csrf),
        if new { "" } else { id },
        if new { "" } else { " readonly" },
        esc(text)
    );
    if matches!(kind, Kind::NamedValue | Kind::Certificate) {
        out.push_str("<p>Secret values and private keys are not shown; leave them out to keep what is stored.</p>");
    }
    if !new {
        out.push_str(&html::button_form(
            &format!("/console/entities/{}/{}/delete", url(segment), url(id)),
            &visit.csrf,
            "Delete",
            "delete-entity",
        ));
    }
    let title = if new {
        format!("New {}", kind.label())
    } else {
        format!("{} {id}", kind.label())
    };
    show(web, visit, status, &title, &out)
}

pub fn save(web: &Web, visit: &Visit, segment: &str) -> Response {
    let Some(kind) = kind_of(segment) else {
        return not_found(web, visit);
    };
    let id = visit.form.get("id");
    let text = visit.form.raw("json").unwrap_or("");
    let body = match json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => o,
        _ => {
            let e = invalid("json", "the text is not a JSON object");
            return error_page(web, visit, &e);
        }
    };
    if let Err(e) = form_id(id) {
        return error_page(web, visit, &e);
    }
    let saved = web.store().put_entity_keeping_secrets(kind, id, body);
    match saved {
        Ok(_) => {
            web.plane().bumped();
            redirect(&format!("/console/entities/{}/{}", url(segment), url(id)))
        }
        Err(e) => error_page(web, visit, &e),
    }
}

pub fn delete(web: &Web, visit: &Visit, segment: &str, id: &str) -> Response {
    let Some(kind) = kind_of(segment) else {
        return not_found(web, visit);
    };
    let deleted = web.store().delete_entity(kind, id, false);
    match deleted {
        Ok(()) => {
            web.plane().bumped();
            redirect("/console/catalogue")
        }
        Err(e) => error_page(web, visit, &e),
    }
}
