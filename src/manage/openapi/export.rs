//! An API as OpenAPI 3.0 (what APIM's export gives): its operations under `paths`
//! (operationId = the operation's id, summary = its display name), template and query
//! parameters, request and response representations with their schemas and examples,
//! the API-scoped schemas under `components`, and the subscription key as security
//! schemes when the API requires one. JSON, or YAML for `format=yaml`.
//! Must not touch: storage; import (read.rs) — export does not undo normalisation.

use miniserde::json::{Array, Number, Object, Value};

use super::values::{arr_at, field, s, str_at};

fn obj(pairs: Vec<(&str, Value)>) -> Value {
    let mut o = Object::new();
    for (k, v) in pairs {
        o.insert(k.to_string(), v);
    }
    Value::Object(o)
}

/// The OpenAPI 3.0 document of `api` (as the admin API returns it, with operations).
pub fn document(api: &Value) -> Value {
    let id = str_at(api, "id").unwrap_or_default();
    let mut info = vec![
        (
            "title",
            s(str_at(api, "displayName")
                .or(str_at(api, "name"))
                .unwrap_or(id)),
        ),
        ("version", s("1.0")),
    ];
    if let Some(d) = str_at(api, "description") {
        info.push(("description", s(d)));
    }
    let path = str_at(api, "path").unwrap_or_default().trim_matches('/');
    let mut paths = Object::new();
    for op in arr_at(api, "operations") {
        let template = str_at(op, "urlTemplate").unwrap_or("/");
        let (op_path, query) = template.split_once('?').unwrap_or((template, ""));
        let method = str_at(op, "method").unwrap_or("GET");
        // an operation for any method is listed as each method it answers
        let methods: Vec<String> = if method == "*" {
            ["get", "put", "post", "delete", "patch"]
                .iter()
                .map(|m| m.to_string())
                .collect()
        } else {
            vec![method.to_ascii_lowercase()]
        };
        let entry = paths
            .entry(op_path.to_string())
            .or_insert_with(|| Value::Object(Object::new()));
        if let Value::Object(item) = entry {
            for m in methods {
                item.insert(m, operation(op, query));
            }
        }
    }
    let mut doc = vec![
        ("openapi", s("3.0.1")),
        ("info", obj(info)),
        (
            "servers",
            Value::Array(std::iter::once(obj(vec![("url", s(&format!("/{path}")))])).collect()),
        ),
        ("paths", Value::Object(paths)),
    ];
    let mut components = Object::new();
    for schema in arr_at(api, "schemas") {
        if let Some(Value::Object(found)) = field(schema, "document")
            .and_then(|d| field(d, "components"))
            .and_then(|c| field(c, "schemas"))
        {
            let entry = components
                .entry("schemas".into())
                .or_insert_with(|| Value::Object(Object::new()));
            if let Value::Object(all) = entry {
                all.extend(found.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
    }
    let key_required = !matches!(field(api, "subscriptionRequired"), Some(Value::Bool(false)));
    if key_required {
        let names = field(api, "subscriptionKeyParameterNames");
        let header = names
            .and_then(|n| str_at(n, "header"))
            .unwrap_or("Ocp-Apim-Subscription-Key");
        let query = names
            .and_then(|n| str_at(n, "query"))
            .unwrap_or("subscription-key");
        components.insert(
            "securitySchemes".into(),
            obj(vec![
                (
                    "apiKeyHeader",
                    obj(vec![
                        ("type", s("apiKey")),
                        ("name", s(header)),
                        ("in", s("header")),
                    ]),
                ),
                (
                    "apiKeyQuery",
                    obj(vec![
                        ("type", s("apiKey")),
                        ("name", s(query)),
                        ("in", s("query")),
                    ]),
                ),
            ]),
        );
        doc.push((
            "security",
            Value::Array(
                [("apiKeyHeader"), ("apiKeyQuery")]
                    .iter()
                    .map(|name| obj(vec![(name, Value::Array(Array::new()))]))
                    .collect(),
            ),
        ));
    }
    if !components.is_empty() {
        doc.push(("components", Value::Object(components)));
    }
    obj(doc)
}

fn parameter(p: &Value, place: &str, required: bool) -> Value {
    let mut schema = vec![("type", s(str_at(p, "type").unwrap_or("string")))];
    let values = arr_at(p, "values");
    if !values.is_empty() {
        schema.push(("enum", Value::Array(values.iter().cloned().collect())));
    }
    if let Some(d) = str_at(p, "defaultValue") {
        schema.push(("default", s(d)));
    }
    let mut out = vec![
        ("name", s(str_at(p, "name").unwrap_or_default())),
        ("in", s(place)),
        ("required", Value::Bool(required)),
        ("schema", obj(schema)),
    ];
    if let Some(d) = str_at(p, "description") {
        out.push(("description", s(d)));
    }
    obj(out)
}

fn operation(op: &Value, query_template: &str) -> Value {
    let mut out = vec![
        ("operationId", s(str_at(op, "id").unwrap_or_default())),
        (
            "summary",
            s(str_at(op, "displayName")
                .or(str_at(op, "id"))
                .unwrap_or_default()),
        ),
    ];
    if let Some(d) = str_at(op, "description") {
        out.push(("description", s(d)));
    }
    let mut params = Array::new();
    let template_params = arr_at(op, "templateParameters");
    let in_query: Vec<&str> = query_template
        .split('&')
        .filter_map(|pair| {
            pair.split_once('=')
                .map(|(_, v)| v.trim_matches(['{', '}']))
        })
        .collect();
    for p in template_params {
        let name = str_at(p, "name").unwrap_or_default();
        let place = if in_query.contains(&name) {
            "query"
        } else {
            "path"
        };
        params.push(parameter(p, place, true));
    }
    let request = field(op, "request");
    for p in request.map_or(&[][..], |r| arr_at(r, "queryParameters")) {
        params.push(parameter(
            p,
            "query",
            matches!(field(p, "required"), Some(Value::Bool(true))),
        ));
    }
    for p in request.map_or(&[][..], |r| arr_at(r, "headers")) {
        params.push(parameter(
            p,
            "header",
            matches!(field(p, "required"), Some(Value::Bool(true))),
        ));
    }
    if !params.is_empty() {
        out.push(("parameters", Value::Array(params)));
    }
    if let Some(r) = request {
        let content = content(arr_at(r, "representations"));
        if let Some(content) = content {
            let mut body = vec![("content", content)];
            if let Some(d) = str_at(r, "description") {
                body.push(("description", s(d)));
            }
            out.push(("requestBody", obj(body)));
        }
    }
    let mut responses = Object::new();
    for r in arr_at(op, "responses") {
        let code = match field(r, "statusCode") {
            Some(Value::Number(Number::U64(c))) => c.to_string(),
            _ => continue,
        };
        let mut resp = vec![("description", s(str_at(r, "description").unwrap_or("")))];
        if let Some(c) = content(arr_at(r, "representations")) {
            resp.push(("content", c));
        }
        let headers = arr_at(r, "headers");
        if !headers.is_empty() {
            let mut hs = Object::new();
            for h in headers {
                let mut p = parameter(h, "header", false);
                if let Value::Object(o) = &mut p {
                    o.remove("name");
                    o.remove("in");
                }
                hs.insert(str_at(h, "name").unwrap_or_default().to_string(), p);
            }
            resp.push(("headers", Value::Object(hs)));
        }
        responses.insert(code, obj(resp));
    }
    if responses.is_empty() {
        responses.insert("200".into(), obj(vec![("description", s("Null response"))]));
    }
    out.push(("responses", Value::Object(responses)));
    obj(out)
}

fn content(reps: &[Value]) -> Option<Value> {
    if reps.is_empty() {
        return None;
    }
    let mut content = Object::new();
    for rep in reps {
        let ct = str_at(rep, "contentType").unwrap_or("application/json");
        let mut media = Vec::new();
        if let Some(t) = str_at(rep, "typeName") {
            media.push((
                "schema",
                obj(vec![("$ref", s(&format!("#/components/schemas/{t}")))]),
            ));
        }
        if let Some(example) = str_at(rep, "example") {
            // a JSON example goes back as JSON, anything else as text
            let value = if ct.contains("json") {
                miniserde::json::from_str::<Value>(example).unwrap_or_else(|_| s(example))
            } else {
                s(example)
            };
            media.push(("example", value));
        }
        content.insert(ct.to_string(), obj(media));
    }
    Some(Value::Object(content))
}

/// `value` as YAML text.
pub fn to_yaml(value: &Value) -> String {
    let yaml = to_yaml_node(value);
    let mut out = String::new();
    let mut emitter = yaml_rust2::YamlEmitter::new(&mut out);
    if emitter.dump(&yaml).is_err() {
        return String::new();
    }
    out.push('\n');
    out
}

fn to_yaml_node(value: &Value) -> yaml_rust2::Yaml {
    use yaml_rust2::Yaml;
    match value {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(Number::U64(u)) => {
            i64::try_from(*u).map_or_else(|_| Yaml::Real(u.to_string()), Yaml::Integer)
        }
        Value::Number(Number::I64(i)) => Yaml::Integer(*i),
        Value::Number(Number::F64(f)) => Yaml::Real(format!("{f:?}")),
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(a) => Yaml::Array(a.iter().map(to_yaml_node).collect()),
        Value::Object(o) => Yaml::Hash(
            o.iter()
                .map(|(k, v)| (Yaml::String(k.clone()), to_yaml_node(v)))
                .collect(),
        ),
    }
}
