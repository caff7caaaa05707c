//! An API's contract from its definition (what an OpenAPI import stores, or what is
//! written by hand): the API's `schemas` compiled once per apply into a `SchemaSet`,
//! and per operation the representations of its request and responses with the schema
//! each names (`typeName`), its template, query and header parameters and its
//! responses' headers. The validate-* policies check calls against it. A `typeName`
//! that names no schema of the API rejects the document with its path.
//! Must not touch: mock-response examples (entities.rs), routing.

use std::sync::Arc;

use super::json::{index, to_text, type_name, Errors, Fields, Json};
use crate::policy::schema::{
    Contract, Param, ParamType, Representation, ResponseContract, SchemaSet,
};

/// The API's `schemas` (each `{id, contentType, document}`), compiled together.
pub fn schemas(value: Option<&Json>, path: &str, errors: &mut Errors) -> Arc<SchemaSet> {
    let Some(value) = value else {
        return Arc::default();
    };
    let mut documents = Vec::new();
    for (at, entity) in items(value, path, errors) {
        let Some(f) = Fields::of(
            entity,
            &at,
            &["id", "contentType", "document", "description"],
            errors,
        ) else {
            continue;
        };
        let Some(document) = f.get("document") else {
            errors.push(&f.path("document"), "required");
            continue;
        };
        let mut text = String::new();
        to_text(document, &mut text);
        match miniserde::json::from_str::<miniserde::json::Value>(&text) {
            Ok(v) => documents.push((f.path("document"), v)),
            Err(_) => errors.push(&f.path("document"), "expected a JSON schema document"),
        }
    }
    let refs: Vec<&miniserde::json::Value> = documents.iter().map(|(_, v)| v).collect();
    match SchemaSet::compile(&refs) {
        Ok(set) => Arc::new(set),
        Err(e) => {
            let at = documents
                .first()
                .map_or(path.to_string(), |(p, _)| p.clone());
            errors.push(&at, e);
            Arc::default()
        }
    }
}

/// One operation's contract: `request`, `templateParameters` and the `responses`'
/// representations and headers.
pub fn operation(o: &Fields, set: &SchemaSet, errors: &mut Errors) -> Contract {
    let mut c = Contract::default();
    if let Some(list) = o.get("templateParameters") {
        c.template = params(list, &o.path("templateParameters"), errors);
    }
    if let Some(request) = o.get("request") {
        let at = o.path("request");
        if let Some(r) = Fields::of(
            request,
            &at,
            &[
                "description",
                "queryParameters",
                "headers",
                "representations",
            ],
            errors,
        ) {
            if let Some(q) = r.get("queryParameters") {
                c.query = params(q, &r.path("queryParameters"), errors);
            }
            if let Some(h) = r.get("headers") {
                c.headers = params(h, &r.path("headers"), errors);
            }
            if let Some(reps) = r.get("representations") {
                c.request = representations(reps, &r.path("representations"), set, errors);
            }
        }
    }
    if let Some(Json::Array(list)) = o.get("responses") {
        let at = o.path("responses");
        for (i, resp) in list.iter().enumerate() {
            let rp = index(&at, i);
            let status = match resp.get("statusCode") {
                Some(Json::Number(n)) => n.parse::<u16>().unwrap_or(0),
                _ => 0,
            };
            let mut rc = ResponseContract {
                status,
                ..ResponseContract::default()
            };
            if let Some(reps) = resp.get("representations") {
                rc.representations =
                    representations(reps, &format!("{rp}.representations"), set, errors);
            }
            if let Some(h) = resp.get("headers") {
                rc.headers = params(h, &format!("{rp}.headers"), errors);
            }
            c.responses.push(rc);
        }
    }
    c
}

fn representations(
    value: &Json,
    path: &str,
    set: &SchemaSet,
    errors: &mut Errors,
) -> Vec<Representation> {
    let mut out = Vec::new();
    for (at, rep) in items(value, path, errors) {
        let content_type = rep
            .get("contentType")
            .and_then(Json::as_str)
            .unwrap_or_default();
        let schema = match rep.get("typeName").and_then(Json::as_str) {
            None => None,
            Some(name) => match set.named(name) {
                Some(idx) => Some((name.to_string(), idx)),
                None => {
                    errors.push(
                        &format!("{at}.typeName"),
                        format!("'{name}' is not among the API's schemas"),
                    );
                    None
                }
            },
        };
        out.push(Representation {
            content_type: content_type.to_ascii_lowercase(),
            schema,
        });
    }
    out
}

fn params(value: &Json, path: &str, errors: &mut Errors) -> Vec<Param> {
    let mut out = Vec::new();
    for (at, p) in items(value, path, errors) {
        let Some(f) = Fields::of(
            p,
            &at,
            &[
                "name",
                "description",
                "type",
                "required",
                "values",
                "defaultValue",
                "schemaId",
                "typeName",
            ],
            errors,
        ) else {
            continue;
        };
        let Some(name) = f.required_str("name", errors) else {
            continue;
        };
        out.push(Param {
            name: name.to_string(),
            ty: ParamType::of(f.str("type", errors).unwrap_or("string")),
            values: f
                .str_array("values", errors)
                .unwrap_or_default()
                .into_iter()
                .map(str::to_string)
                .collect(),
            required: f.bool("required", errors).unwrap_or(false),
        });
    }
    out
}

/// The elements of an array value with their paths (an error when it is not one).
fn items<'a>(value: &'a Json<'a>, path: &str, errors: &mut Errors) -> Vec<(String, &'a Json<'a>)> {
    match value {
        Json::Array(list) => list
            .iter()
            .enumerate()
            .map(|(i, v)| (index(path, i), v))
            .collect(),
        other => {
            errors.push(
                path,
                format!("expected an array, found {}", type_name(other)),
            );
            Vec::new()
        }
    }
}
