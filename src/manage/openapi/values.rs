//! Reading the plane's JSON values by member, shared by reading and exporting OpenAPI.
//! Must not touch: what the members mean.

use miniserde::json::{Object, Value};

/// A string value.
pub fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

/// A member of an object value.
pub fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(o) => o.get(key),
        _ => None,
    }
}

/// A string member.
pub fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    match field(v, key) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// An object member.
pub fn obj_at<'a>(v: &'a Value, key: &str) -> Option<&'a Object> {
    match field(v, key) {
        Some(Value::Object(inner)) => Some(inner),
        _ => None,
    }
}

/// An array member (empty when absent).
pub fn arr_at<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    match field(v, key) {
        Some(Value::Array(a)) => a,
        _ => &[],
    }
}

/// A member that is `true`.
pub fn truthy(v: &Value, key: &str) -> bool {
    matches!(field(v, key), Some(Value::Bool(true)))
}
