//! An OpenAPI 3.0 / 3.1 or Swagger 2.0 document read into an API as Azure API
//! Management imports it: one operation per path and method, its id from `operationId`
//! (normalised) or from the method and path, its display name from `summary`; path
//! parameters and required query parameters as template parameters (or the latter as
//! query parameters); request bodies dropped for GET, HEAD and OPTIONS; request and
//! response representations naming API-scoped schemas, with examples, or samples made
//! from the schemas; the first https server as the service URL.
//! Refused, with the JSON pointer of the construct: references to other files,
//! recursive schemas, cookie parameters, Swagger `formData` parameters.
//! Must not touch: storage, HTTP, what a re-import keeps (store.rs).

use std::collections::{BTreeMap, HashMap, HashSet};

use miniserde::json::{Array, Object, Value};

use super::ordered::Node;
use super::pointer::{self, push, resolve};
use super::values::{arr_at, field, obj_at, s, str_at, truthy};
use super::{
    sample, Document, ImportError, Imported, ImportedOperation, RequiredQuery, MAX_OPERATIONS,
};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];
/// The id of the API-scoped schema entity an import creates.
pub const SCHEMA_ID: &str = "openapi-components";
const SCHEMA_CONTENT_TYPE: &str = "application/vnd.oai.openapi.components+json";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    Swagger2,
    OpenApi3,
}

/// Reads `doc` into an API's fields and operations.
pub fn import(document: &Document, required_query: RequiredQuery) -> Result<Imported, ImportError> {
    let doc = &document.value;
    let version = version_of(doc)?;
    refuse_external_refs(doc, "")?;
    let mut reader = Reader {
        doc,
        written: &document.written,
        version,
        required_query,
        schemas: component_schemas(doc, version),
        lifted: BTreeMap::new(),
        ids: HashSet::new(),
    };
    refuse_recursion(doc, version)?;
    let mut operations = Vec::new();
    for paths_key in ["paths", "x-ms-paths"] {
        let Some(paths) = obj_at(doc, paths_key) else {
            continue;
        };
        for (path, item) in paths.iter() {
            let item_at = push(&push("", paths_key), path);
            if path.starts_with("x-") {
                continue;
            }
            let (item, item_at) = resolve(doc, item, &item_at)?;
            for method in METHODS {
                let Some(op) = field(item, method).filter(|v| matches!(v, Value::Object(_))) else {
                    continue;
                };
                if operations.len() >= MAX_OPERATIONS {
                    return Err(ImportError::at(
                        "/paths",
                        format!("more than {MAX_OPERATIONS} operations"),
                    ));
                }
                let at = push(&item_at, method);
                operations.push(reader.operation(path, method, item, &item_at, op, &at)?);
            }
        }
    }
    let info = match doc {
        Value::Object(o) => o.get("info"),
        _ => None,
    };
    let text = |key: &str| info.and_then(|i| str_at(i, key)).map(str::to_string);
    let mut schemas = reader.schemas;
    schemas.extend(reader.lifted);
    let schemas = (!schemas.is_empty()).then(|| schema_entity(schemas, version));
    Ok(Imported {
        tags: tags_of(doc),
        display_name: text("title").filter(|t| !t.trim().is_empty()),
        description: text("description").filter(|t| !t.trim().is_empty()),
        service_url: service_url(doc, version),
        schemas,
        operations,
    })
}

/// The names in the document's `tags`, then the other tags its operations use; each
/// once, at most 32, each at most 64 characters.
fn tags_of(doc: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |t: &str| {
        let t = t.trim();
        if !t.is_empty() && t.len() <= 64 && out.len() < 32 && !out.iter().any(|x| x == t) {
            out.push(t.to_string());
        }
    };
    if let Some(Value::Array(list)) = field(doc, "tags") {
        for t in list {
            if let Some(name) = str_at(t, "name") {
                add(name);
            }
        }
    }
    if let Some(Value::Object(paths)) = field(doc, "paths") {
        for item in paths.values() {
            let Value::Object(item) = item else { continue };
            for op in item.values() {
                if let Some(Value::Array(tags)) = field(op, "tags") {
                    for t in tags {
                        if let Value::String(t) = t {
                            add(t);
                        }
                    }
                }
            }
        }
    }
    out
}

fn version_of(doc: &Value) -> Result<Version, ImportError> {
    if !matches!(doc, Value::Object(_)) {
        return Err(ImportError::at("", "an OpenAPI document is an object"));
    }
    if let Some(v) = str_at(doc, "openapi") {
        if v.starts_with("3.0") || v.starts_with("3.1") {
            return Ok(Version::OpenApi3);
        }
        return Err(ImportError::at(
            "/openapi",
            format!("OpenAPI {v} is not supported (3.0 and 3.1 are, and Swagger 2.0)"),
        ));
    }
    match doc {
        Value::Object(o) => match o.get("swagger") {
            Some(Value::String(v)) if v == "2.0" => Ok(Version::Swagger2),
            Some(Value::Number(_)) => Ok(Version::Swagger2),
            Some(_) => Err(ImportError::at(
                "/swagger",
                "only Swagger 2.0 is supported of the Swagger versions",
            )),
            None => Err(ImportError::at(
                "",
                "not an OpenAPI document: it has neither 'openapi' nor 'swagger'",
            )),
        },
        _ => unreachable!("checked above"),
    }
}

/// Every `$ref` must point into the document itself.
fn refuse_external_refs(v: &Value, at: &str) -> Result<(), ImportError> {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(target)) = o.get("$ref") {
                pointer::local_ref(target, &push(at, "$ref"))?;
            }
            for (k, child) in o.iter() {
                if matches!(child, Value::Object(_) | Value::Array(_)) {
                    refuse_external_refs(child, &push(at, k))?;
                }
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                refuse_external_refs(child, &push(at, &i.to_string()))?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn schemas_pointer(version: Version) -> &'static str {
    match version {
        Version::Swagger2 => "/definitions",
        Version::OpenApi3 => "/components/schemas",
    }
}

fn component_schemas(doc: &Value, version: Version) -> BTreeMap<String, Value> {
    match pointer::get(doc, schemas_pointer(version)) {
        Some(Value::Object(o)) => o.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        _ => BTreeMap::new(),
    }
}

/// A schema that refers to itself, directly or through others, is refused (as APIM
/// refuses it): the error names the reference that closes the cycle.
fn refuse_recursion(doc: &Value, version: Version) -> Result<(), ImportError> {
    let base = schemas_pointer(version);
    let Some(Value::Object(all)) = pointer::get(doc, base) else {
        return Ok(());
    };
    // each schema's references to other schemas, with where each reference is
    let mut edges: HashMap<&str, Vec<(String, String)>> = HashMap::new();
    for (name, schema) in all.iter() {
        let mut refs = Vec::new();
        collect_refs(schema, &push(base, name), &mut refs);
        let prefix = format!("#{base}/");
        let targets = refs
            .into_iter()
            .filter_map(|(target, at)| {
                let t = target.strip_prefix(&prefix)?;
                let t = t.split('/').next()?.replace("~1", "/").replace("~0", "~");
                Some((t, at))
            })
            .collect();
        edges.insert(name.as_str(), targets);
    }
    // iterative depth-first search: 0 unseen, 1 on the path, 2 done
    let mut state: HashMap<&str, u8> = HashMap::new();
    for start in all.keys() {
        if state.get(start.as_str()).copied().unwrap_or(0) != 0 {
            continue;
        }
        let mut stack: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        state.insert(start.as_str(), 1);
        while let Some((node, next)) = stack.last_mut() {
            let out = edges.get(*node).map_or(&[][..], Vec::as_slice);
            if *next >= out.len() {
                state.insert(node, 2);
                stack.pop();
                continue;
            }
            let (target, at) = &out[*next];
            *next += 1;
            let Some((key, _)) = all.get_key_value(target.as_str()) else {
                continue;
            };
            match state.get(key.as_str()).copied().unwrap_or(0) {
                1 => {
                    return Err(ImportError::at(
                        at.clone(),
                        format!("schema '{key}' is recursive (it refers back to itself); recursive schemas are not supported"),
                    ))
                }
                0 => {
                    state.insert(key.as_str(), 1);
                    stack.push((key.as_str(), 0));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn collect_refs(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o.iter() {
                match (k.as_str(), child) {
                    ("$ref", Value::String(target)) => out.push((target.clone(), push(at, k))),
                    // examples are data, not schemas
                    ("example" | "examples" | "enum" | "default" | "const", _) => {}
                    _ => collect_refs(child, &push(at, k), out),
                }
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                collect_refs(child, &push(at, &i.to_string()), out);
            }
        }
        _ => {}
    }
}

/// The schema entity: the document's schemas (Swagger's `definitions` too) under
/// `components.schemas`, references rewritten to match.
fn schema_entity(schemas: BTreeMap<String, Value>, version: Version) -> Value {
    let mut map = Object::new();
    for (name, mut schema) in schemas {
        if version == Version::Swagger2 {
            rewrite_refs(&mut schema);
        }
        map.insert(name, schema);
    }
    let mut components = Object::new();
    components.insert("schemas".into(), Value::Object(map));
    let mut document = Object::new();
    document.insert("components".into(), Value::Object(components));
    let mut entity = Object::new();
    entity.insert("id".into(), s(SCHEMA_ID));
    entity.insert("contentType".into(), s(SCHEMA_CONTENT_TYPE));
    entity.insert("document".into(), Value::Object(document));
    Value::Array(std::iter::once(Value::Object(entity)).collect())
}

fn rewrite_refs(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for (k, child) in o.iter_mut() {
                match child {
                    Value::String(target) if k == "$ref" => {
                        if let Some(rest) = target.strip_prefix("#/definitions/") {
                            *target = format!("#/components/schemas/{rest}");
                        }
                    }
                    _ => rewrite_refs(child),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// OpenAPI 3: the first https server (else http), variables at their defaults; a
/// relative server names no service URL. Swagger 2: `schemes`, `host` and `basePath`
/// (or the `x-servers` extension).
fn service_url(doc: &Value, version: Version) -> Option<String> {
    let servers: Vec<String> = match version {
        Version::OpenApi3 => arr_at(doc, "servers")
            .iter()
            .filter_map(server_url)
            .collect(),
        Version::Swagger2 => {
            let backport: Vec<String> = arr_at(doc, "x-servers")
                .iter()
                .filter_map(server_url)
                .collect();
            if !backport.is_empty() {
                backport
            } else {
                let host = str_at(doc, "host")?;
                let base = str_at(doc, "basePath").unwrap_or("");
                let schemes: Vec<&str> = arr_at(doc, "schemes")
                    .iter()
                    .filter_map(|v| match v {
                        Value::String(s) => Some(s.as_str()),
                        _ => None,
                    })
                    .collect();
                let schemes = if schemes.is_empty() {
                    vec!["https"]
                } else {
                    schemes
                };
                schemes
                    .iter()
                    .map(|sc| format!("{sc}://{host}{base}"))
                    .collect()
            }
        }
    };
    let pick = |scheme: &str| {
        servers
            .iter()
            .find(|u| u.to_ascii_lowercase().starts_with(scheme))
            .map(|u| u.trim_end_matches('/').to_string())
    };
    pick("https://").or_else(|| pick("http://"))
}

fn server_url(server: &Value) -> Option<String> {
    let mut url = str_at(server, "url")?.to_string();
    if let Some(vars) = obj_at(server, "variables") {
        for (name, var) in vars.iter() {
            let value = match var {
                Value::Object(o) => match o.get("default") {
                    Some(Value::String(d)) => d.clone(),
                    _ => continue,
                },
                _ => continue,
            };
            url = url.replace(&format!("{{{name}}}"), &value);
        }
    }
    (!url.contains('{')).then_some(url)
}

/// APIM's normalisation of an `operationId` (or of "method path"): lower case, each run
/// of other than letters and digits one dash, dashes trimmed, at most 76 characters.
pub fn normalise_id(text: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        } else {
            dash = true;
        }
    }
    out.truncate(76);
    out.trim_end_matches('-').to_string()
}

struct Reader<'d> {
    doc: &'d Value,
    /// The document as written (examples are copied from it).
    written: &'d Node,
    version: Version,
    required_query: RequiredQuery,
    schemas: BTreeMap<String, Value>,
    /// Inline schemas given names at API scope, as APIM's import names them.
    lifted: BTreeMap<String, Value>,
    ids: HashSet<String>,
}

/// A parameter, resolved, with where it came from.
struct Param<'d> {
    value: &'d Value,
    at: String,
    name: String,
    place: String,
}

impl<'d> Reader<'d> {
    fn unique_id(&mut self, base: &str, at: &str) -> Result<String, ImportError> {
        let base = if base.is_empty() {
            "operation".to_string()
        } else {
            base.to_string()
        };
        if self.ids.insert(base.clone()) {
            return Ok(base);
        }
        for n in 1..=999 {
            let candidate = format!("{base}-{n}");
            if self.ids.insert(candidate.clone()) {
                return Ok(candidate);
            }
        }
        Err(ImportError::at(
            at,
            format!("more than 999 operations named '{base}'"),
        ))
    }

    fn params(
        &self,
        item: &'d Value,
        item_at: &str,
        op: &'d Value,
        op_at: &str,
    ) -> Result<Vec<Param<'d>>, ImportError> {
        let mut out: Vec<Param<'d>> = Vec::new();
        for (list, base) in [
            (arr_at(item, "parameters"), item_at),
            (arr_at(op, "parameters"), op_at),
        ] {
            for (i, p) in list.iter().enumerate() {
                let at = push(&push(base, "parameters"), &i.to_string());
                let (value, at) = resolve(self.doc, p, &at)?;
                let name = str_at(value, "name").unwrap_or_default().to_string();
                let place = str_at(value, "in").unwrap_or_default().to_string();
                match place.as_str() {
                    "cookie" => {
                        return Err(ImportError::at(
                            push(&at, "in"),
                            format!("cookie parameter '{name}' is not supported (a policy can read cookies)"),
                        ))
                    }
                    "formData" => {
                        return Err(ImportError::at(
                            push(&at, "in"),
                            format!("formData parameter '{name}' is not supported (a policy can read form bodies)"),
                        ))
                    }
                    "path" | "query" | "header" | "body" => {}
                    other => {
                        return Err(ImportError::at(
                            push(&at, "in"),
                            format!("parameter '{name}' is in '{other}', not path, query, header or body"),
                        ))
                    }
                }
                if name.is_empty() {
                    return Err(ImportError::at(
                        push(&at, "name"),
                        "a parameter needs a name",
                    ));
                }
                // an operation's parameter replaces the path item's of the same name and place
                out.retain(|q| !(q.name == name && q.place == place));
                out.push(Param {
                    value,
                    at,
                    name,
                    place,
                });
            }
        }
        Ok(out)
    }

    /// A parameter as the config holds it: name, description, type, required, values,
    /// default.
    fn parameter(&self, p: &Param, required: bool) -> Value {
        let mut o = Object::new();
        o.insert("name".into(), s(&p.name));
        if let Some(d) = str_at(p.value, "description") {
            o.insert("description".into(), s(d));
        }
        // Swagger 2 keeps type and enum on the parameter, OpenAPI 3 in its schema
        let schema = match obj_at(p.value, "schema") {
            Some(_) => resolve(self.doc, field(p.value, "schema").unwrap_or(p.value), &p.at)
                .map(|(v, _)| v)
                .ok(),
            None => Some(p.value),
        };
        let ty = schema.and_then(|sc| str_at(sc, "type")).unwrap_or("string");
        o.insert("type".into(), s(ty));
        o.insert("required".into(), Value::Bool(required));
        if let Some(sc) = schema {
            let values = arr_at(sc, "enum");
            if !values.is_empty() {
                o.insert(
                    "values".into(),
                    Value::Array(values.iter().map(|v| s(&scalar_text(v))).collect()),
                );
            }
            if let Some(Value::Object(so)) = Some(sc) {
                if let Some(d) = so.get("default") {
                    o.insert("defaultValue".into(), s(&scalar_text(d)));
                }
            }
        }
        Value::Object(o)
    }

    #[allow(clippy::too_many_arguments)]
    fn operation(
        &mut self,
        path: &str,
        method: &str,
        item: &'d Value,
        item_at: &str,
        op: &'d Value,
        at: &str,
    ) -> Result<ImportedOperation, ImportError> {
        let upper = method.to_ascii_uppercase();
        let operation_id = str_at(op, "operationId").filter(|s| !s.trim().is_empty());
        let base = normalise_id(operation_id.unwrap_or(&format!("{method} {path}")));
        let id = self.unique_id(&base, at)?;
        let mut body = Object::new();
        body.insert("method".into(), s(&upper));
        let summary = str_at(op, "summary")
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let display = match (summary, operation_id) {
            (Some(sm), _) => sm.chars().take(300).collect(),
            (None, Some(oid)) => oid.to_string(),
            (None, None) => format!("{upper} {path}"),
        };
        body.insert("displayName".into(), s(&display));
        if let Some(d) = str_at(op, "description").filter(|d| !d.trim().is_empty()) {
            body.insert("description".into(), s(d));
        }
        let params = self.params(item, item_at, op, at)?;
        let in_path = template_names(path);
        let mut template = path.to_string();
        if !template.starts_with('/') {
            template.insert(0, '/');
        }
        let mut template_params = Array::new();
        let mut query = Array::new();
        let mut headers = Array::new();
        let mut body_param = None;
        let mut query_template = Vec::new();
        for p in &params {
            match p.place.as_str() {
                "path" => {
                    if !in_path.contains(&p.name) {
                        return Err(ImportError::at(
                            push(&p.at, "name"),
                            format!("path parameter '{}' is not in the path '{path}'", p.name),
                        ));
                    }
                    template_params.push(self.parameter(p, true));
                }
                "query" => {
                    let required = truthy(p.value, "required");
                    if required && self.required_query == RequiredQuery::Template {
                        if in_path.contains(&p.name) || query_template.contains(&p.name) {
                            return Err(ImportError::at(
                                push(&p.at, "name"),
                                format!("'{}' names both a path and a query parameter; names must be unique within the URL template", p.name),
                            ));
                        }
                        query_template.push(p.name.clone());
                        template_params.push(self.parameter(p, true));
                    } else {
                        query.push(self.parameter(p, required));
                    }
                }
                "header" => headers.push(self.parameter(p, truthy(p.value, "required"))),
                _ => body_param = Some(p),
            }
        }
        // a path parameter the document forgot to declare is still one
        for name in &in_path {
            let declared = template_params
                .iter()
                .any(|t| str_at(t, "name") == Some(name));
            if !declared {
                let mut o = Object::new();
                o.insert("name".into(), s(name));
                o.insert("type".into(), s("string"));
                o.insert("required".into(), Value::Bool(true));
                template_params.push(Value::Object(o));
            }
        }
        for (i, name) in query_template.iter().enumerate() {
            template.push(if i == 0 { '?' } else { '&' });
            template.push_str(&format!("{name}={{{name}}}"));
        }
        body.insert("urlTemplate".into(), s(&template));
        if !template_params.is_empty() {
            body.insert("templateParameters".into(), Value::Array(template_params));
        }
        let mut request = Object::new();
        if !query.is_empty() {
            request.insert("queryParameters".into(), Value::Array(query));
        }
        if !headers.is_empty() {
            request.insert("headers".into(), Value::Array(headers));
        }
        // APIM drops a request body of GET, HEAD and OPTIONS
        if !matches!(method, "get" | "head" | "options") {
            let reps = self.request_representations(op, at, body_param, &id)?;
            if let Some((description, reps)) = reps {
                if let Some(d) = description {
                    request.insert("description".into(), s(&d));
                }
                if !reps.is_empty() {
                    request.insert("representations".into(), Value::Array(reps));
                }
            }
        }
        if !request.is_empty() {
            body.insert("request".into(), Value::Object(request));
        }
        let responses = self.responses(op, at, &id)?;
        if !responses.is_empty() {
            body.insert("responses".into(), Value::Array(responses));
        }
        Ok(ImportedOperation {
            id,
            pointer: at.to_string(),
            body,
        })
    }

    fn media_types(&self, op: &Value, key: &str) -> Vec<String> {
        let own: Vec<String> = arr_at(op, key)
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        if !own.is_empty() {
            return own;
        }
        let global: Vec<String> = arr_at(self.doc, key)
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        if global.is_empty() {
            vec!["application/json".into()]
        } else {
            global
        }
    }

    /// The request body's description and representations.
    fn request_representations(
        &mut self,
        op: &'d Value,
        at: &str,
        body_param: Option<&Param<'d>>,
        id: &str,
    ) -> Result<Option<(Option<String>, Array)>, ImportError> {
        match self.version {
            Version::Swagger2 => {
                let Some(p) = body_param else { return Ok(None) };
                let mut reps = Array::new();
                for ct in self.media_types(op, "consumes") {
                    let schema = field(p.value, "schema");
                    reps.push(self.representation(
                        &ct,
                        schema,
                        None,
                        &push(&p.at, "schema"),
                        id,
                        "Request",
                    )?);
                }
                Ok(Some((
                    str_at(p.value, "description").map(str::to_string),
                    reps,
                )))
            }
            Version::OpenApi3 => {
                let Some(body) = field(op, "requestBody") else {
                    return Ok(None);
                };
                let (rb, rb_at) = resolve(self.doc, body, &push(at, "requestBody"))?;
                let reps = self.content(rb, &rb_at, id, "Request")?;
                Ok(Some((str_at(rb, "description").map(str::to_string), reps)))
            }
        }
    }

    /// OpenAPI 3's `content` map as representations.
    fn content(
        &mut self,
        holder: &'d Value,
        at: &str,
        id: &str,
        role: &str,
    ) -> Result<Array, ImportError> {
        let mut reps = Array::new();
        let Some(content) = obj_at(holder, "content") else {
            return Ok(reps);
        };
        let content_at = push(at, "content");
        for (ct, media) in content.iter() {
            let media_at = push(&content_at, ct);
            let schema = field(media, "schema");
            let example = self.media_example(media, &media_at)?;
            reps.push(self.representation(
                ct,
                schema,
                example,
                &push(&media_at, "schema"),
                id,
                role,
            )?);
        }
        Ok(reps)
    }

    /// A media type's `example`, or the value of the first of its `examples`.
    /// Where a media type's example is: its `example`, or the value of the first of
    /// its `examples` (first as written).
    fn media_example(&self, media: &'d Value, at: &str) -> Result<Option<String>, ImportError> {
        if field(media, "example").is_some() {
            return Ok(Some(push(at, "example")));
        }
        let list_at = push(at, "examples");
        let first = match self.written.at(&list_at) {
            Some(Node::Obj(map)) => map.entries.first().map(|(name, _)| name.clone()),
            _ => None,
        };
        let Some(name) = first else {
            return Ok(None);
        };
        let Some(entry) = obj_at(media, "examples").and_then(|e| e.get(&name)) else {
            return Ok(None);
        };
        let (ex, ex_at) = resolve(self.doc, entry, &push(&list_at, &name))?;
        Ok(field(ex, "value").map(|_| push(&ex_at, "value")))
    }

    /// One representation: its content type, the schema it names at API scope (an
    /// inline schema is given a name there), its example, else a sample of the schema.
    fn representation(
        &mut self,
        content_type: &str,
        schema: Option<&'d Value>,
        example: Option<String>,
        schema_at: &str,
        id: &str,
        role: &str,
    ) -> Result<Value, ImportError> {
        let mut rep = Object::new();
        rep.insert("contentType".into(), s(content_type));
        let mut resolved_schema = None;
        if let Some(schema) = schema {
            let type_name = match pointer::ref_of(schema) {
                Some(target) => {
                    let prefix = format!("#{}/", schemas_pointer(self.version));
                    target
                        .strip_prefix(&prefix)
                        .map(|n| n.replace("~1", "/").replace("~0", "~"))
                }
                None => None,
            };
            let type_name = match type_name {
                Some(n) => n,
                None => {
                    let base = format!("{}{role}", pascal(id));
                    let mut name = base.clone();
                    let mut n = 1;
                    while self.schemas.contains_key(&name) || self.lifted.contains_key(&name) {
                        n += 1;
                        name = format!("{base}{n}");
                    }
                    let mut copy = schema.clone();
                    if self.version == Version::Swagger2 {
                        rewrite_refs(&mut copy);
                    }
                    self.lifted.insert(name.clone(), copy);
                    name
                }
            };
            rep.insert("schemaId".into(), s(SCHEMA_ID));
            rep.insert("typeName".into(), s(&type_name));
            resolved_schema = Some(resolve(self.doc, schema, schema_at)?);
        }
        let json = content_type.to_ascii_lowercase().contains("json");
        // the example as written: keys in the document's order, numbers as written
        let example = example.or_else(|| {
            let (sc, at) = resolved_schema.as_ref()?;
            // OpenAPI 3.0's `example`, or the first of JSON Schema's (3.1) `examples`
            match (field(sc, "example"), field(sc, "examples")) {
                (Some(_), _) => Some(push(at, "example")),
                (None, Some(Value::Array(list))) if !list.is_empty() => {
                    Some(push(&push(at, "examples"), "0"))
                }
                _ => None,
            }
        });
        match example.as_deref().and_then(|at| self.written.at(at)) {
            Some(Node::Str(text)) => {
                rep.insert("example".into(), s(text));
            }
            Some(other) => {
                rep.insert("example".into(), s(&other.json()));
            }
            None => {
                if let (true, Some((sc, _))) = (json, resolved_schema) {
                    let sample = sample::of(self.doc, sc);
                    rep.insert("sample".into(), s(&miniserde::json::to_string(&sample)));
                }
            }
        }
        Ok(Value::Object(rep))
    }

    fn responses(&mut self, op: &'d Value, at: &str, id: &str) -> Result<Array, ImportError> {
        let mut out = Array::new();
        let Some(responses) = obj_at(op, "responses") else {
            return Ok(out);
        };
        let list_at = push(at, "responses");
        for (code, response) in responses.iter() {
            // "default" and ranges (2XX) have no one status to answer with
            let Ok(status) = code.parse::<u16>() else {
                continue;
            };
            if !(100..=599).contains(&status) {
                continue;
            }
            let r_at = push(&list_at, code);
            let (response, r_at) = resolve(self.doc, response, &r_at)?;
            let mut o = Object::new();
            o.insert(
                "statusCode".into(),
                Value::Number(miniserde::json::Number::U64(status.into())),
            );
            if let Some(d) = str_at(response, "description").filter(|d| !d.is_empty()) {
                o.insert("description".into(), s(d));
            }
            let role = format!("{status}Response");
            let reps = match self.version {
                Version::OpenApi3 => self.content(response, &r_at, id, &role)?,
                Version::Swagger2 => {
                    let schema = field(response, "schema");
                    let examples = obj_at(response, "examples");
                    let mut reps = Array::new();
                    if schema.is_some() || examples.is_some() {
                        for ct in self.media_types(op, "produces") {
                            let example = examples
                                .and_then(|e| e.get(&ct))
                                .map(|_| push(&push(&r_at, "examples"), &ct));
                            reps.push(self.representation(
                                &ct,
                                schema,
                                example,
                                &push(&r_at, "schema"),
                                id,
                                &role,
                            )?);
                        }
                    }
                    reps
                }
            };
            if !reps.is_empty() {
                o.insert("representations".into(), Value::Array(reps));
            }
            if let Some(hs) = obj_at(response, "headers") {
                let mut headers = Array::new();
                for (name, h) in hs.iter() {
                    let (h, _) = resolve(self.doc, h, &push(&push(&r_at, "headers"), name))?;
                    let p = Param {
                        value: h,
                        at: String::new(),
                        name: name.clone(),
                        place: "header".into(),
                    };
                    headers.push(self.parameter(&p, truthy(h, "required")));
                }
                o.insert("headers".into(), Value::Array(headers));
            }
            out.push(Value::Object(o));
        }
        Ok(out)
    }
}

/// The `{name}`s of a path.
fn template_names(path: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        names.push(rest[open + 1..open + close].to_string());
        rest = &rest[open + close + 1..];
    }
    names
}

/// "get-pets-by-id" as "GetPetsById", for names of lifted schemas.
fn pascal(id: &str) -> String {
    id.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => miniserde::json::to_string(other),
    }
}
