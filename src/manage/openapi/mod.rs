//! OpenAPI in the management plane: an OpenAPI 3.0 / 3.1 document (JSON or YAML) or a
//! Swagger 2.0 one (JSON) read into an API's operations, template parameters, request
//! and response representations and API-scoped schemas, as Azure API Management maps
//! them (read.rs); samples for mock-response generated from schemas (sample.rs); and an
//! API exported back as OpenAPI 3 (export.rs). Everything here is pure: the store
//! (store.rs) applies an import in one transaction, so an API is never half-imported.
//! Must not touch: SQLite, HTTP, the gateway.

pub mod export;
mod ordered;
mod pointer;
mod read;
mod sample;
mod values;
pub mod yaml;

use miniserde::json::{Object, Value};

pub use read::import;

/// The largest document imported inline (and from a file by `edgegate manage import`).
pub const MAX_DOCUMENT: usize = 16 * 1024 * 1024;
/// The most operations one document may define.
pub const MAX_OPERATIONS: usize = 20_000;

/// Why a document cannot be imported: where (a JSON pointer into the document, "" for
/// the whole) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    pub pointer: String,
    pub message: String,
}

impl ImportError {
    pub fn at(pointer: impl Into<String>, message: impl Into<String>) -> ImportError {
        ImportError {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.pointer, self.message)
        }
    }
}

/// How required query parameters are imported: as template parameters of the
/// operation's URL template (APIM's default) or as query parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequiredQuery {
    Template,
    Query,
}

/// What a document holds, ready to become an API's fields and operations.
#[derive(Debug)]
pub struct Imported {
    pub display_name: Option<String>,
    pub description: Option<String>,
    /// The first https server (else the first http one), variables filled in.
    pub service_url: Option<String>,
    /// The API-scoped schema entity, when the document has schemas.
    pub schemas: Option<Value>,
    /// The document's tag names (its `tags`, then those its operations use), for the
    /// portal's catalogue.
    pub tags: Vec<String>,
    pub operations: Vec<ImportedOperation>,
}

#[derive(Debug)]
pub struct ImportedOperation {
    pub id: String,
    /// Where it is in the document (`/paths/~1pets/get`), for errors found later.
    pub pointer: String,
    /// The operation as the config document holds it (without id and policies).
    pub body: Object,
}

/// A document read: as the plane's values (for the mapping) and as written (for examples).
#[derive(Debug)]
pub struct Document {
    pub value: Value,
    pub written: ordered::Node,
}

/// The document's text read: JSON when it starts with `{`, YAML otherwise.
pub fn parse_document(text: &str) -> Result<Document, ImportError> {
    if text.len() > MAX_DOCUMENT {
        return Err(ImportError::at(
            "",
            format!("the document is larger than {} MiB", MAX_DOCUMENT >> 20),
        ));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let written = if text.trim_start().starts_with('{') {
        match crate::config::json::parse(text) {
            Ok(tree) => ordered::Node::from_json(&tree),
            // JSON as Newtonsoft reads it (APIM's parser) may end a list with a comma;
            // YAML, a superset of JSON, reads that too
            Err((line, column, problem)) => yaml::parse(text).map_err(|_| {
                ImportError::at(
                    "",
                    format!("not valid JSON: {problem} at line {line} column {column}"),
                )
            })?,
        }
    } else {
        yaml::parse(text).map_err(|e| ImportError::at("", e))?
    };
    Ok(Document {
        value: written.to_value(),
        written,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_with_trailing_commas_reads_as_newtonsoft_reads_it() {
        let doc =
            parse_document(r#"{"openapi": "3.0.0", "tags": [{"name": "a",},], "paths": {},}"#)
                .unwrap();
        // as written, and as the plane's (sorted) values
        assert_eq!(
            doc.written.json(),
            r#"{"openapi":"3.0.0","tags":[{"name":"a"}],"paths":{}}"#
        );
        assert_eq!(
            miniserde::json::to_string(&doc.value),
            r#"{"openapi":"3.0.0","paths":{},"tags":[{"name":"a"}]}"#
        );
        // OpenAPI 3.1: a schema's `examples` list gives the representation's example
        let doc = parse_document(
            "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    get:\n      responses:\n        '200':\n          description: ok\n          content:\n            application/json:\n              schema: {type: object, examples: [{z: 1, a: [true]}]}\n",
        )
        .unwrap();
        let imported = import(&doc, RequiredQuery::Template).unwrap();
        let body = miniserde::json::to_string(&Value::Object(imported.operations[0].body.clone()));
        assert!(
            body.contains(r#""example":"{\"z\":1,\"a\":[true]}""#),
            "{body}"
        );
        // broken JSON is reported as JSON, with its place
        let e = parse_document("{\"openapi\": \"3.0.0\",\n \"paths\": {\"a\": [}}").unwrap_err();
        assert_eq!(
            e.message,
            "not valid JSON: expected a value at line 2 column 18"
        );
    }
}
