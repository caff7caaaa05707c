//! JSON pointers (RFC 6901) over a document: building them for errors, and following a
//! local `$ref` ("#/components/schemas/Pet") to what it names. A reference to another
//! file or URL is an error with its location; chains of references are bounded.
//! Must not touch: what the referenced values mean.

use miniserde::json::Value;

use super::ImportError;

/// `base` with one more token, escaped (`~` as `~0`, `/` as `~1`).
pub fn push(base: &str, token: &str) -> String {
    let mut p = String::with_capacity(base.len() + token.len() + 1);
    p.push_str(base);
    p.push('/');
    for c in token.chars() {
        match c {
            '~' => p.push_str("~0"),
            '/' => p.push_str("~1"),
            c => p.push(c),
        }
    }
    p
}

/// The tokens of a local pointer (without `#`), unescaped; None when it is not one.
pub fn tokens(pointer: &str) -> Option<impl Iterator<Item = String> + '_> {
    let rest = match pointer {
        "" => None,
        p => Some(p.strip_prefix('/')?),
    };
    Some(rest.into_iter().flat_map(|r| r.split('/')).map(|token| {
        let token = token.replace("~1", "/").replace("~0", "~");
        // a `$ref` in a URI fragment may be percent-encoded (`#/paths/~1a%7Bb%7D`)
        crate::telemetry::percent_decoded(&token)
    }))
}

/// The value a local pointer (without `#`) names in `root`.
pub fn get<'a>(root: &'a Value, pointer: &str) -> Option<&'a Value> {
    let mut at = root;
    for token in tokens(pointer)? {
        at = match at {
            Value::Object(o) => o.get(&token)?,
            Value::Array(a) => a.get(token.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(at)
}

/// The `$ref` of an object, if it has one.
pub fn ref_of(v: &Value) -> Option<&str> {
    match v {
        Value::Object(o) => match o.get("$ref") {
            Some(Value::String(s)) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// Follows `$ref`s from `v` (found at `at`) to a value that is not one: the value and
/// its pointer. A reference outside the document, or to nothing, is an error at `at`.
pub fn resolve<'a>(
    root: &'a Value,
    mut v: &'a Value,
    at: &str,
) -> Result<(&'a Value, String), ImportError> {
    let mut here = at.to_string();
    for _ in 0..32 {
        let Some(target) = ref_of(v) else {
            return Ok((v, here));
        };
        let local = local_ref(target, &push(&here, "$ref"))?;
        v = get(root, local).ok_or_else(|| {
            ImportError::at(
                push(&here, "$ref"),
                format!("'{target}' names nothing in the document"),
            )
        })?;
        here = local.to_string();
    }
    Err(ImportError::at(at, "a chain of more than 32 references"))
}

/// The pointer of a local reference; a reference to another file or URL is an error.
pub fn local_ref<'r>(target: &'r str, at: &str) -> Result<&'r str, ImportError> {
    target.strip_prefix('#').ok_or_else(|| {
        ImportError::at(
            at,
            format!("'{target}' refers outside the document; external references are not supported (merge them into one document)"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_escape_and_resolve() {
        assert_eq!(push("/paths", "/pets/{id}"), "/paths/~1pets~1{id}");
        assert_eq!(push("", "a~b"), "/a~0b");
        let doc: Value = miniserde::json::from_str(
            r##"{"paths": {"/a{b}": {"x": 1}}, "r": {"$ref": "#/s"}, "s": {"$ref": "#/paths/~1a%7Bb%7D"}, "e": {"$ref": "other.yaml#/x"}}"##,
        )
        .unwrap();
        let r = get(&doc, "/r").unwrap();
        let (v, p) = resolve(&doc, r, "/r").unwrap();
        assert_eq!(miniserde::json::to_string(v), r#"{"x":1}"#);
        assert_eq!(p, "/paths/~1a%7Bb%7D");
        let e = resolve(&doc, get(&doc, "/e").unwrap(), "/e").unwrap_err();
        assert_eq!(e.pointer, "/e/$ref");
        assert!(e.message.contains("external references are not supported"));
    }
}
