//! Applying an OpenAPI import to the catalogue: the document's operations become the
//! API's, matched to the existing ones by id (a matched operation keeps its policies;
//! a new one takes the policies of an old one with the same method and template, as
//! APIM does), operations gone from the document are deleted, and the API's own fields
//! (path, hostnames, policies, subscription settings) stay. The whole result is
//! compiled before anything is written and written in one transaction: an API is never
//! half-imported. Errors in operations name their place in the document.
//! Must not touch: reading OpenAPI (openapi/), HTTP.

use std::collections::HashMap;

use miniserde::json::{self, Array, Object, Value};
use rusqlite::params;

use super::openapi::{self, Imported, ImportedOperation, RequiredQuery};
use super::store::{Owner, PlaneError, PlaneResult, PlaneStore};
use crate::config::ConfigError;

/// What an import may set besides the document.
#[derive(Debug, Default)]
pub struct ImportOptions {
    /// The API's path (a new API without one is served under its id).
    pub path: Option<String>,
    /// Wins over the document's servers and over the API's current service URL.
    pub service_url: Option<String>,
}

/// What an import changed, by operation id.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub created: bool,
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
    pub deleted: Vec<String>,
}

impl ImportReport {
    pub fn to_json(&self, api: &str) -> String {
        let ids =
            |list: &[String]| Value::Array(list.iter().map(|s| Value::String(s.clone())).collect());
        let mut ops = Object::new();
        ops.insert("added".into(), ids(&self.added));
        ops.insert("updated".into(), ids(&self.updated));
        ops.insert("unchanged".into(), ids(&self.unchanged));
        ops.insert("deleted".into(), ids(&self.deleted));
        let mut o = Object::new();
        o.insert("api".into(), Value::String(api.to_string()));
        o.insert("created".into(), Value::Bool(self.created));
        o.insert("operations".into(), Value::Object(ops));
        json::to_string(&Value::Object(o))
    }
}

/// An operation's method and template, to find an old operation a new one replaces.
fn shape(op: &Object) -> (String, String) {
    let text = |k: &str| match op.get(k) {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    (text("method"), text("urlTemplate"))
}

impl PlaneStore {
    /// Reads an OpenAPI document's text and imports it as API `id`; a problem in the
    /// document is refused with its JSON pointer, nothing written.
    pub fn import_text(
        &mut self,
        id: &str,
        text: &str,
        required_query: RequiredQuery,
        options: ImportOptions,
    ) -> PlaneResult<ImportReport> {
        let imported = openapi::parse_document(text)
            .and_then(|doc| openapi::import(&doc, required_query))
            .map_err(|e| {
                PlaneError::Invalid(vec![ConfigError {
                    path: e.pointer,
                    message: e.message,
                }])
            })?;
        self.import_api(id, imported, options)
    }

    /// Imports `imported` as API `id` (created, or updated in place).
    pub fn import_api(
        &mut self,
        id: &str,
        imported: Imported,
        options: ImportOptions,
    ) -> PlaneResult<ImportReport> {
        let existing = match self.get_api(id) {
            Ok(Value::Object(o)) => Some(o),
            Ok(_) => None,
            Err(PlaneError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let mut report = ImportReport {
            created: existing.is_none(),
            ..ImportReport::default()
        };
        let mut api = existing.clone().unwrap_or_default();
        let old_ops: Vec<Object> = match api.remove("operations") {
            Some(Value::Array(ops)) => ops
                .into_iter()
                .filter_map(|o| match o {
                    Value::Object(o) => Some(o),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let set = |api: &mut Object, key: &str, value: Option<String>| {
            if let Some(v) = value {
                api.insert(key.into(), Value::String(v));
            }
        };
        set(&mut api, "displayName", imported.display_name);
        set(&mut api, "description", imported.description);
        if !imported.tags.is_empty() {
            api.insert(
                "tags".into(),
                Value::Array(imported.tags.into_iter().map(Value::String).collect()),
            );
        }
        if let Some(p) = options.path {
            api.insert("path".into(), Value::String(p));
        } else if existing.is_none() {
            api.insert("path".into(), Value::String(id.to_string()));
        }
        let service_url = options.service_url.or_else(|| match api.get("serviceUrl") {
            Some(Value::String(u)) if !u.is_empty() => None,
            _ => imported.service_url,
        });
        set(&mut api, "serviceUrl", service_url);
        if !matches!(api.get("serviceUrl"), Some(Value::String(u)) if !u.is_empty()) {
            return Err(PlaneError::Invalid(vec![ConfigError {
                path: "/servers".into(),
                message: "the document names no absolute http(s) server and the API has no service URL: give one (serviceUrl=, --service-url)".into(),
            }]));
        }
        match imported.schemas {
            Some(schemas) => api.insert("schemas".into(), schemas),
            None => api.remove("schemas"),
        };
        let by_id: HashMap<&str, &Object> = old_ops
            .iter()
            .filter_map(|o| Some((op_id_of(o)?, o)))
            .collect();
        let by_shape: HashMap<(String, String), &Object> =
            old_ops.iter().map(|o| (shape(o), o)).collect();
        let mut new_ops: Vec<(String, Object)> = Vec::new();
        let mut pointers: Vec<String> = Vec::new();
        for ImportedOperation {
            id: op_id,
            pointer,
            mut body,
        } in imported.operations
        {
            let old = by_id.get(op_id.as_str()).copied();
            let inherited = old.or_else(|| by_shape.get(&shape(&body)).copied());
            if let Some(Value::String(p)) = inherited.and_then(|o| o.get("policies")) {
                body.insert("policies".into(), Value::String(p.clone()));
            }
            match old {
                None => report.added.push(op_id.clone()),
                Some(o) => {
                    let mut before = o.clone();
                    before.remove("id");
                    if json::to_string(&Value::Object(before))
                        == json::to_string(&Value::Object(body.clone()))
                    {
                        report.unchanged.push(op_id.clone());
                    } else {
                        report.updated.push(op_id.clone());
                    }
                }
            }
            new_ops.push((op_id, body));
            pointers.push(pointer);
        }
        for old_id in old_ops.iter().filter_map(op_id_of) {
            if !new_ops.iter().any(|(n, _)| n == old_id) {
                report.deleted.push(old_id.to_string());
            }
        }
        // the whole API as it will be, compiled first
        let mut candidate = api.clone();
        candidate.insert("id".into(), Value::String(id.to_string()));
        let ops: Array = new_ops
            .iter()
            .map(|(op_id, body)| {
                let mut o = body.clone();
                o.insert("id".into(), Value::String(op_id.clone()));
                Value::Object(o)
            })
            .collect();
        candidate.insert("operations".into(), Value::Array(ops));
        let references = self
            .validate_api(Value::Object(candidate))
            .map_err(|e| in_document(e, &pointers))?;
        api.remove("id");
        self.forget_rendered(id);
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO apis (id, body) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET body = excluded.body",
            params![id, json::to_string(&Value::Object(api))],
        )?;
        for old_id in &report.deleted {
            tx.execute(
                "DELETE FROM operations WHERE api = ?1 AND id = ?2",
                params![id, old_id],
            )?;
        }
        {
            let mut upsert = tx.prepare(
                "INSERT INTO operations (api, id, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT(api, id) DO UPDATE SET body = excluded.body",
            )?;
            for (op_id, body) in new_ops {
                upsert.execute(params![id, op_id, json::to_string(&Value::Object(body))])?;
            }
        }
        Self::record_refs(&tx, &Owner::Api(id), &references)?;
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(report)
    }
}

/// `edgegate manage import`: reads `file` and imports it into the database at `db` as
/// API `api`. The report as JSON, or each problem as a line.
pub fn import_file(
    db: &std::path::Path,
    api: &str,
    file: &std::path::Path,
    required_query: RequiredQuery,
    options: ImportOptions,
) -> Result<String, Vec<String>> {
    if !crate::config::compile::valid_id(api) {
        return Err(vec![format!(
            "--api {api}: ids may hold only letters, digits and - _ . ~ (at most 256)"
        )]);
    }
    let size = std::fs::metadata(file)
        .map_err(|e| vec![format!("{}: {e}", file.display())])?
        .len();
    if size > openapi::MAX_DOCUMENT as u64 {
        return Err(vec![format!(
            "{}: larger than {} MiB",
            file.display(),
            openapi::MAX_DOCUMENT >> 20
        )]);
    }
    let text =
        std::fs::read_to_string(file).map_err(|e| vec![format!("{}: {e}", file.display())])?;
    let imported = openapi::parse_document(&text)
        .and_then(|doc| openapi::import(&doc, required_query))
        .map_err(|e| vec![e.to_string()])?;
    let mut store = PlaneStore::open(db).map_err(|e| vec![e])?;
    match store.import_api(api, imported, options) {
        Ok(report) => Ok(report.to_json(api)),
        Err(PlaneError::Invalid(errors)) => Err(errors.iter().map(ToString::to_string).collect()),
        Err(e) => Err(vec![format!("{e:?}")]),
    }
}

/// `message` with each "apis[0].operations[N]" it names written as that operation's
/// place in the document.
fn named_operations(message: &str, pointers: &[String]) -> String {
    const NAMED: &str = "apis[0].operations[";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(NAMED) {
        out.push_str(&rest[..at]);
        let after = &rest[at + NAMED.len()..];
        let pointer = after
            .split_once(']')
            .and_then(|(n, tail)| Some((pointers.get(n.parse::<usize>().ok()?)?, tail)));
        match pointer {
            Some((p, tail)) => {
                out.push_str(p);
                rest = tail;
            }
            None => {
                out.push_str(NAMED);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn op_id_of(op: &Object) -> Option<&str> {
    match op.get("id") {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// Compile errors of imported operations (`operations[3].urlTemplate`) as places in the
/// document (`/paths/~1pets/get: urlTemplate: …`).
fn in_document(e: PlaneError, pointers: &[String]) -> PlaneError {
    let PlaneError::Invalid(errors) = e else {
        return e;
    };
    PlaneError::Invalid(
        errors
            .into_iter()
            .map(|err| {
                let mapped = err.path.strip_prefix("operations[").and_then(|rest| {
                    let (index, tail) = rest.split_once(']')?;
                    let pointer = pointers.get(index.parse::<usize>().ok()?)?;
                    let field = tail.trim_start_matches('.');
                    let message = named_operations(&err.message, pointers);
                    Some(ConfigError {
                        path: pointer.clone(),
                        message: if field.is_empty() {
                            message
                        } else {
                            format!("{field}: {message}")
                        },
                    })
                });
                mapped.unwrap_or(err)
            })
            .collect(),
    )
}
