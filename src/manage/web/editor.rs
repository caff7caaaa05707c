//! The console's policy editor: the XML of the global policy, an API's, a product's or a
//! policy fragment, compiled by the store's own checks on save. A document that does not
//! compile is not saved; the page keeps the draft and lists every error with its place
//! (the compiler's line and column).
//! Must not touch: other console pages, the admin API's routes.

use std::fmt::Write as _;

use miniserde::json::{Object, Value};

use super::html::{self, esc, url};
use super::portal::text;
use super::{redirect, Visit, Web};
use crate::config::ConfigError;
use crate::manage::entities::Kind;
use crate::manage::http::Response;
use crate::manage::store::{PlaneError, PlaneResult, PlaneStore};

/// Whose policy a page edits.
#[derive(Debug, Clone, Copy)]
pub enum Owner<'a> {
    Global,
    Api(&'a str),
    Product(&'a str),
    Fragment(&'a str),
}

impl<'a> Owner<'a> {
    /// From the path after `/console/policies/`.
    pub fn from_path(rest: &[&'a str]) -> Option<Owner<'a>> {
        match rest {
            ["global"] => Some(Owner::Global),
            ["api", id] => Some(Owner::Api(id)),
            ["product", id] => Some(Owner::Product(id)),
            ["fragment", id] => Some(Owner::Fragment(id)),
            _ => None,
        }
    }

    fn path(&self) -> String {
        match self {
            Owner::Global => "/console/policies/global".into(),
            Owner::Api(id) => format!("/console/policies/api/{}", url(id)),
            Owner::Product(id) => format!("/console/policies/product/{}", url(id)),
            Owner::Fragment(id) => format!("/console/policies/fragment/{}", url(id)),
        }
    }

    fn title(&self) -> String {
        match self {
            Owner::Global => "The global policy".into(),
            Owner::Api(id) => format!("Policy of API {id}"),
            Owner::Product(id) => format!("Policy of product {id}"),
            Owner::Fragment(id) => format!("Policy fragment {id}"),
        }
    }

    /// The stored body and the field that holds the XML.
    fn body(&self, store: &PlaneStore) -> PlaneResult<(Object, &'static str)> {
        let object = |v: Value| match v {
            Value::Object(o) => o,
            _ => Object::new(),
        };
        Ok(match self {
            Owner::Global => {
                let mut o = Object::new();
                if let Some(v) = store.global_policy()? {
                    o.insert("value".into(), Value::String(v));
                }
                (o, "value")
            }
            Owner::Api(id) => (object(store.get_api(id)?), "policies"),
            Owner::Product(id) => {
                let mut o = object(store.get_entity(Kind::Product, id)?);
                // linked through their own route, not a field
                o.remove("apis");
                (o, "policies")
            }
            Owner::Fragment(id) => (object(store.get_entity(Kind::Fragment, id)?), "policy"),
        })
    }

    /// Stores `xml` (empty: no policy) through the same checks as the admin API.
    fn save(&self, store: &mut PlaneStore, xml: &str) -> PlaneResult<()> {
        let (mut body, field) = self.body(store)?;
        if xml.trim().is_empty() {
            body.remove(field);
        } else {
            body.insert(field.into(), Value::String(xml.to_string()));
        }
        match self {
            Owner::Global if xml.trim().is_empty() => store.delete_global_policy(),
            Owner::Global => store.put_global_policy(&body).map(drop),
            Owner::Api(id) => store.put_api(id, body).map(drop),
            Owner::Product(id) => store.put_entity(Kind::Product, id, body).map(drop),
            Owner::Fragment(id) => store.put_entity(Kind::Fragment, id, body).map(drop),
        }
    }
}

pub fn page(
    web: &Web,
    visit: &Visit,
    owner: Owner,
    draft: Option<&str>,
    errors: Option<&[ConfigError]>,
) -> Response {
    // read first: the guard must be gone before the page (which reads too) renders
    let stored = {
        let store = web.store();
        owner.body(&store)
    };
    let current = match (draft, stored) {
        (Some(d), _) => d.to_string(),
        (None, Ok((body, field))) => text(&body, field),
        (None, Err(PlaneError::NotFound(_))) if matches!(owner, Owner::Global) => String::new(),
        (None, Err(e)) => return super::console::error_page(web, visit, &e),
    };
    let mut out = String::new();
    if let Some(errors) = errors {
        let list: String = errors
            .iter()
            .map(|e| format!("<li>{}</li>", esc(&e.to_string())))
            .collect();
        let _ = write!(
            out,
            "<div class=\"notice error\" id=\"policy-errors\"><p>The policy was not saved:</p><ul>{list}</ul></div>"
        );
    }
    let _ = write!(
        out,
        "<form method=\"post\" action=\"{}\">{}<textarea name=\"policies\" id=\"policy-xml\" rows=\"24\" spellcheck=\"false\">{}</textarea>\
         <button type=\"submit\" id=\"save-policy\">Compile and save</button></form>",
        esc(&owner.path()),
        html::csrf_field(&visit.csrf),
        esc(&current)
    );
    let status = if errors.is_some() { 400 } else { 200 };
    super::console::show(web, visit, status, &owner.title(), &out)
}

pub fn save(web: &Web, visit: &Visit, owner: Owner) -> Response {
    let xml = visit
        .form
        .raw("policies")
        .unwrap_or("")
        .replace("\r\n", "\n");
    let saved = owner.save(&mut web.store(), &xml);
    match saved {
        Ok(()) => {
            web.plane().bumped();
            redirect(&owner.path())
        }
        Err(PlaneError::Invalid(errors)) => page(web, visit, owner, Some(&xml), Some(&errors)),
        Err(e) => super::console::error_page(web, visit, &e),
    }
}
