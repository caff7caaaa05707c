//! A sample value made from a schema, for mock-response when the document gives no
//! example (APIM's order: example, then a sample from the schema, then empty). Bounded
//! in depth, properties and references, so any schema gives a small sample.
//! Must not touch: validation (a sample is an illustration, not a check).

use miniserde::json::{Array, Number, Object, Value};

use super::pointer;

const MAX_DEPTH: usize = 6;
const MAX_PROPERTIES: usize = 40;

/// A sample of `schema`, references resolved in `doc`.
pub fn of(doc: &Value, schema: &Value) -> Value {
    let mut budget = 2_000;
    sample(doc, schema, 0, &mut budget)
}

fn sample(doc: &Value, schema: &Value, depth: usize, budget: &mut usize) -> Value {
    if depth > MAX_DEPTH || *budget == 0 {
        return Value::Null;
    }
    *budget -= 1;
    let schema = match pointer::resolve(doc, schema, "") {
        Ok((s, _)) => s,
        Err(_) => return Value::Null,
    };
    let Value::Object(o) = schema else {
        return Value::Null;
    };
    for given in ["example", "default"] {
        if let Some(v) = o.get(given) {
            return v.clone();
        }
    }
    // JSON Schema's (OpenAPI 3.1) list of examples
    if let Some(Value::Array(examples)) = o.get("examples") {
        if let Some(first) = examples.first() {
            return first.clone();
        }
    }
    if let Some(Value::Array(values)) = o.get("enum") {
        if let Some(first) = values.first() {
            return first.clone();
        }
    }
    if let Some(v) = o.get("const") {
        return v.clone();
    }
    for choice in ["oneOf", "anyOf"] {
        if let Some(Value::Array(options)) = o.get(choice) {
            if let Some(first) = options.first() {
                return sample(doc, first, depth + 1, budget);
            }
        }
    }
    if let Some(Value::Array(parts)) = o.get("allOf") {
        let mut merged = Object::new();
        for part in parts {
            match sample(doc, part, depth + 1, budget) {
                Value::Object(p) => merged.extend(p),
                other if parts.len() == 1 => return other,
                _ => {}
            }
        }
        return Value::Object(merged);
    }
    // 3.1 writes `type: [string, "null"]`
    let ty = match o.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(types)) => types
            .iter()
            .find_map(|t| match t {
                Value::String(t) if t != "null" => Some(t.as_str()),
                _ => None,
            })
            .unwrap_or("null"),
        _ if o.contains_key("properties") => "object",
        _ if o.contains_key("items") => "array",
        _ => "",
    };
    let format = match o.get("format") {
        Some(Value::String(f)) => f.as_str(),
        _ => "",
    };
    match ty {
        "object" => {
            let mut out = Object::new();
            if let Some(Value::Object(props)) = o.get("properties") {
                for (name, p) in props.iter().take(MAX_PROPERTIES) {
                    out.insert(name.clone(), sample(doc, p, depth + 1, budget));
                }
            }
            Value::Object(out)
        }
        "array" => {
            let mut out = Array::new();
            if let Some(items) = o.get("items") {
                out.push(sample(doc, items, depth + 1, budget));
            }
            Value::Array(out)
        }
        "string" => Value::String(
            match format {
                "date-time" => "2026-01-01T00:00:00Z",
                "date" => "2026-01-01",
                "time" => "00:00:00",
                "uuid" => "00000000-0000-0000-0000-000000000000",
                "email" => "user@example.com",
                "uri" | "url" => "https://example.com",
                "byte" => "U3dhZ2dlciByb2Nrcw==",
                "ipv4" => "192.0.2.1",
                "ipv6" => "2001:db8::1",
                _ => "string",
            }
            .into(),
        ),
        "integer" => Value::Number(Number::U64(0)),
        "number" => Value::Number(Number::F64(0.0)),
        "boolean" => Value::Bool(true),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_follow_the_schema() {
        let doc: Value = miniserde::json::from_str(
            r##"{"components": {"schemas": {
                "Pet": {"type": "object", "required": ["id"], "properties": {
                    "id": {"type": "integer", "format": "int64"},
                    "name": {"type": "string", "example": "doggie"},
                    "status": {"type": "string", "enum": ["available", "sold"]},
                    "born": {"type": "string", "format": "date"},
                    "tags": {"type": "array", "items": {"$ref": "#/components/schemas/Tag"}}}},
                "Tag": {"allOf": [{"type": "object", "properties": {"label": {"type": ["string", "null"]}, "weight": {"type": "number", "examples": [2.5, 3]}}}]}}}}"##,
        )
        .unwrap();
        let pet = pointer::get(&doc, "/components/schemas/Pet").unwrap();
        assert_eq!(
            miniserde::json::to_string(&of(&doc, pet)),
            r#"{"born":"2026-01-01","id":0,"name":"doggie","status":"available","tags":[{"label":"string","weight":2.5}]}"#
        );
    }
}
