//! Reading a config document with JSON paths. `parse` checks the syntax (reporting the
//! first error by line and column) and builds a `Json` tree that borrows its strings from
//! the text: a document of 100,000 operations costs a few allocations per object rather
//! than a map node and a copy per key (miniserde's `Value` took 12 bytes of memory per
//! byte of text). `Fields` reads an object while collecting every problem under its path
//! (`apis[3].operations[0].urlTemplate`).
//! Must not touch: what the fields mean (that is compile.rs).

use std::borrow::Cow;

use super::ConfigError;

/// A parsed JSON value; strings without escapes borrow from the document text.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'t> {
    Null,
    Bool(bool),
    /// The number as written.
    Number(&'t str),
    String(Cow<'t, str>),
    Array(Vec<Json<'t>>),
    /// Fields in document order.
    Object(Vec<(Cow<'t, str>, Json<'t>)>),
}

impl<'t> Json<'t> {
    /// A field of an object (the last one, if a key repeats).
    pub fn get(&self, key: &str) -> Option<&Json<'t>> {
        match self {
            Json::Object(fields) => fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }
}

/// Writes `value` as JSON text.
pub fn to_text(value: &Json, out: &mut String) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => out.push_str(n),
        Json::String(s) => crate::telemetry::push_json_str(out, s),
        Json::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                to_text(v, out);
            }
            out.push(']');
        }
        Json::Object(fields) => {
            out.push('{');
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                crate::telemetry::push_json_str(out, k);
                out.push(':');
                to_text(v, out);
            }
            out.push('}');
        }
    }
}

/// Collects errors while the document is walked; nothing stops at the first error.
#[derive(Default)]
pub struct Errors(pub Vec<ConfigError>);

impl Errors {
    pub fn push(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.to_string(),
            message: message.into(),
        });
    }
}

pub fn type_name(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// One object being read: rejects keys it was not asked about (`finish`).
pub struct Fields<'a> {
    object: &'a Json<'a>,
    path: String,
    known: &'static [&'static str],
}

impl<'a> Fields<'a> {
    /// `None` (with an error) when `value` is not an object.
    pub fn of(
        value: &'a Json<'a>,
        path: &str,
        known: &'static [&'static str],
        errors: &mut Errors,
    ) -> Option<Self> {
        match value {
            Json::Object(fields) => {
                for (i, (key, _)) in fields.iter().enumerate() {
                    if !known.contains(&key.as_ref()) {
                        errors.push(&join(path, key), "unknown field");
                    } else if fields[..i].iter().any(|(k, _)| k == key) {
                        errors.push(&join(path, key), "duplicate field");
                    }
                }
                Some(Fields {
                    object: value,
                    path: path.to_string(),
                    known,
                })
            }
            other => {
                errors.push(
                    path,
                    format!("expected an object, found {}", type_name(other)),
                );
                None
            }
        }
    }

    pub fn path(&self, key: &str) -> String {
        debug_assert!(
            self.known.contains(&key),
            "field {key} read but not declared"
        );
        join(&self.path, key)
    }

    pub fn get(&self, key: &str) -> Option<&'a Json<'a>> {
        match self.object.get(key) {
            None | Some(Json::Null) => None,
            Some(v) => Some(v),
        }
    }

    pub fn str(&self, key: &str, errors: &mut Errors) -> Option<&'a str> {
        match self.get(key)? {
            Json::String(s) => Some(s),
            other => {
                errors.push(
                    &self.path(key),
                    format!("expected a string, found {}", type_name(other)),
                );
                None
            }
        }
    }

    /// An entity's display name: `displayName`, else `name`, else its id.
    pub fn display_name(&self, id: &'a str, errors: &mut Errors) -> &'a str {
        self.str("displayName", errors)
            .or_else(|| self.str("name", errors))
            .unwrap_or(id)
    }

    /// A string that must be present and non-empty.
    pub fn required_str(&self, key: &str, errors: &mut Errors) -> Option<&'a str> {
        if self.get(key).is_none() {
            errors.push(&self.path(key), "required");
            return None;
        }
        let s = self.str(key, errors)?;
        if s.is_empty() {
            errors.push(&self.path(key), "must not be empty");
            return None;
        }
        Some(s)
    }

    pub fn bool(&self, key: &str, errors: &mut Errors) -> Option<bool> {
        match self.get(key)? {
            Json::Bool(b) => Some(*b),
            other => {
                errors.push(
                    &self.path(key),
                    format!("expected a boolean, found {}", type_name(other)),
                );
                None
            }
        }
    }

    pub fn u64(&self, key: &str, errors: &mut Errors) -> Option<u64> {
        let value = self.get(key)?;
        match value {
            Json::Number(n) if n.bytes().all(|b| b.is_ascii_digit()) => match n.parse() {
                Ok(n) => Some(n),
                Err(_) => {
                    errors.push(&self.path(key), "number too large");
                    None
                }
            },
            other => {
                errors.push(
                    &self.path(key),
                    format!(
                        "expected a non-negative whole number, found {}",
                        type_name(other)
                    ),
                );
                None
            }
        }
    }

    /// The elements of an array field with their paths; absent = empty.
    pub fn array(&self, key: &str, errors: &mut Errors) -> Vec<(String, &'a Json<'a>)> {
        let path = self.path(key);
        match self.get(key) {
            None => Vec::new(),
            Some(Json::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (index(&path, i), v))
                .collect(),
            Some(other) => {
                errors.push(
                    &path,
                    format!("expected an array, found {}", type_name(other)),
                );
                Vec::new()
            }
        }
    }

    /// An array of strings; wrong elements are reported by index.
    pub fn str_array(&self, key: &str, errors: &mut Errors) -> Option<Vec<&'a str>> {
        self.get(key)?;
        let mut out = Vec::new();
        for (path, v) in self.array(key, errors) {
            match v {
                Json::String(s) => out.push(s.as_ref()),
                other => errors.push(
                    &path,
                    format!("expected a string, found {}", type_name(other)),
                ),
            }
        }
        Some(out)
    }
}

/// A JSON syntax error: line and column (1-based) and what is wrong.
pub type SyntaxError = (usize, usize, &'static str);

/// Parses a document: the syntax is checked first (the first error by line and
/// column), then the tree is built. Both passes are iterative (no recursion), so deep
/// nesting cannot overflow the stack.
pub fn parse(text: &str) -> Result<Json<'_>, SyntaxError> {
    let bytes = text.as_bytes();
    let mut scan = Scanner { bytes, pos: 0 };
    if let Err(problem) = scan.document() {
        let upto = &bytes[..scan.pos.min(bytes.len())];
        let line = upto.iter().filter(|b| **b == b'\n').count() + 1;
        let column = upto.iter().rev().take_while(|b| **b != b'\n').count() + 1;
        return Err((line, column, problem));
    }
    Ok(Builder { text, pos: 0 }.document())
}

/// Builds the tree of a document the `Scanner` accepted.
struct Builder<'t> {
    text: &'t str,
    pos: usize,
}

/// A container being filled: an array, or an object and the key of its next value.
enum Open<'t> {
    Array(Vec<Json<'t>>),
    Object(Vec<(Cow<'t, str>, Json<'t>)>, Cow<'t, str>),
}

impl<'t> Builder<'t> {
    fn peek(&self) -> u8 {
        self.text.as_bytes().get(self.pos).copied().unwrap_or(0)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
    }

    /// A key and its ':'.
    fn key(&mut self) -> Cow<'t, str> {
        self.ws();
        let key = self.string();
        self.ws();
        self.pos += 1; // ':'
        key
    }

    /// A string at `pos` (its opening quote): borrowed unless it has escapes.
    fn string(&mut self) -> Cow<'t, str> {
        self.pos += 1;
        let start = self.pos;
        let bytes = self.text.as_bytes();
        while let Some(&b) = bytes.get(self.pos) {
            match b {
                b'"' => {
                    let s = self.text.get(start..self.pos).unwrap_or_default();
                    self.pos += 1;
                    return Cow::Borrowed(s);
                }
                b'\\' => break,
                _ => self.pos += 1,
            }
        }
        let mut out = String::from(self.text.get(start..self.pos).unwrap_or_default());
        // a high surrogate waiting for its low half
        let mut high: Option<u32> = None;
        while let Some(&b) = bytes.get(self.pos) {
            let unit = if b == b'\\' && bytes.get(self.pos + 1) == Some(&b'u') {
                let hex = self.text.get(self.pos + 2..self.pos + 6).unwrap_or("");
                u32::from_str_radix(hex, 16).ok()
            } else {
                None
            };
            let pair = match (high.take(), unit) {
                (Some(h), Some(low @ 0xDC00..=0xDFFF)) => {
                    char::from_u32(0x10000 + ((h - 0xD800) << 10) + (low - 0xDC00))
                }
                (Some(_), _) => {
                    out.push('\u{FFFD}');
                    None
                }
                (None, _) => None,
            };
            if let Some(c) = pair {
                out.push(c);
                self.pos += 6;
                continue;
            }
            if b == b'"' {
                self.pos += 1;
                break;
            }
            if b != b'\\' {
                // a run of plain characters (UTF-8 boundaries are at quotes and '\\')
                let run = bytes[self.pos..]
                    .iter()
                    .position(|c| *c == b'"' || *c == b'\\')
                    .unwrap_or(bytes.len() - self.pos);
                out.push_str(self.text.get(self.pos..self.pos + run).unwrap_or_default());
                self.pos += run;
                continue;
            }
            let escape = bytes.get(self.pos + 1).copied().unwrap_or(b'"');
            self.pos += 2;
            let c = match (escape, unit) {
                (b'u', Some(u @ 0xD800..=0xDBFF)) => {
                    self.pos += 4;
                    high = Some(u);
                    continue;
                }
                (b'u', u) => {
                    self.pos += 4;
                    u.and_then(char::from_u32).unwrap_or('\u{FFFD}')
                }
                (b'n', _) => '\n',
                (b't', _) => '\t',
                (b'r', _) => '\r',
                (b'b', _) => '\u{8}',
                (b'f', _) => '\u{c}',
                (other, _) => char::from(other),
            };
            out.push(c);
        }
        if high.is_some() {
            out.push('\u{FFFD}');
        }
        Cow::Owned(out)
    }

    fn scalar(&mut self) -> Json<'t> {
        let rest = &self.text.as_bytes()[self.pos..];
        for (word, value) in [
            (&b"true"[..], Json::Bool(true)),
            (b"false", Json::Bool(false)),
            (b"null", Json::Null),
        ] {
            if rest.starts_with(word) {
                self.pos += word.len();
                return value;
            }
        }
        let len = rest
            .iter()
            .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            .unwrap_or(rest.len());
        let n = self.text.get(self.pos..self.pos + len).unwrap_or("0");
        self.pos += len;
        Json::Number(n)
    }

    fn document(&mut self) -> Json<'t> {
        let mut stack: Vec<Open<'t>> = Vec::new();
        loop {
            self.ws();
            let mut value = match self.peek() {
                b'{' => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() == b'}' {
                        self.pos += 1;
                        Json::Object(Vec::new())
                    } else {
                        let key = self.key();
                        stack.push(Open::Object(Vec::new(), key));
                        continue;
                    }
                }
                b'[' => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() == b']' {
                        self.pos += 1;
                        Json::Array(Vec::new())
                    } else {
                        stack.push(Open::Array(Vec::new()));
                        continue;
                    }
                }
                b'"' => Json::String(self.string()),
                _ => self.scalar(),
            };
            // put the value into its container, closing every container that ends here
            loop {
                let Some(open) = stack.last_mut() else {
                    return value;
                };
                self.ws();
                let more = self.peek() == b',';
                self.pos += 1; // ',' or the closing bracket
                match open {
                    Open::Array(items) => items.push(value),
                    Open::Object(fields, key) => {
                        let key = if more {
                            std::mem::replace(key, self.key())
                        } else {
                            std::mem::take(key)
                        };
                        fields.push((key, value));
                    }
                }
                if more {
                    break;
                }
                value = match stack.pop() {
                    Some(Open::Array(mut items)) => {
                        items.shrink_to_fit();
                        Json::Array(items)
                    }
                    Some(Open::Object(mut fields, _)) => {
                        fields.shrink_to_fit();
                        Json::Object(fields)
                    }
                    None => Json::Null,
                };
            }
        }
    }
}

struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

#[derive(Clone, Copy)]
enum Frame {
    Array,
    Object,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }
    fn expect(&mut self, b: u8, what: &'static str) -> Result<(), &'static str> {
        self.ws();
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(what)
        }
    }
    fn string(&mut self) -> Result<(), &'static str> {
        self.expect(b'"', "expected a string")?;
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => return Ok(()),
                b'\\' => match self.peek() {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 1,
                    Some(b'u') => {
                        self.pos += 1;
                        for _ in 0..4 {
                            if !self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                                return Err("bad \\u escape");
                            }
                            self.pos += 1;
                        }
                    }
                    _ => return Err("bad escape in string"),
                },
                0..=0x1f => {
                    self.pos -= 1;
                    return Err("control character in string");
                }
                _ => {}
            }
        }
        Err("unterminated string")
    }
    fn scalar(&mut self) -> Result<(), &'static str> {
        for word in [&b"true"[..], b"false", b"null"] {
            if self.bytes[self.pos..].starts_with(word) {
                self.pos += word.len();
                return Ok(());
            }
        }
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let digits = |s: &mut Self| {
            let from = s.pos;
            while s.peek().is_some_and(|c| c.is_ascii_digit()) {
                s.pos += 1;
            }
            s.pos > from
        };
        if !digits(self) {
            self.pos = start;
            return Err("expected a value");
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !digits(self) {
                return Err("bad number");
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !digits(self) {
                return Err("bad number");
            }
        }
        Ok(())
    }
    fn document(&mut self) -> Result<(), &'static str> {
        let mut stack: Vec<Frame> = Vec::new();
        // Each turn parses one value, then closes as many containers as it can.
        loop {
            self.ws();
            match self.peek() {
                Some(b'{') => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                    } else {
                        self.string()?;
                        self.expect(b':', "expected ':'")?;
                        stack.push(Frame::Object);
                        continue;
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                    } else {
                        stack.push(Frame::Array);
                        continue;
                    }
                }
                Some(b'"') => self.string()?,
                Some(_) => self.scalar()?,
                None => return Err("unexpected end of document"),
            }
            loop {
                self.ws();
                match stack.last().copied() {
                    None => {
                        return if self.pos == self.bytes.len() {
                            Ok(())
                        } else {
                            Err("trailing characters")
                        };
                    }
                    Some(Frame::Array) => match self.peek() {
                        Some(b',') => {
                            self.pos += 1;
                            break;
                        }
                        Some(b']') => {
                            self.pos += 1;
                            stack.pop();
                        }
                        _ => return Err("expected ',' or ']'"),
                    },
                    Some(Frame::Object) => match self.peek() {
                        Some(b',') => {
                            self.pos += 1;
                            self.string()?;
                            self.expect(b':', "expected ':'")?;
                            break;
                        }
                        Some(b'}') => {
                            self.pos += 1;
                            stack.pop();
                        }
                        _ => return Err("expected ',' or '}'"),
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syntax_error(text: &str) -> SyntaxError {
        parse(text).unwrap_err()
    }

    #[test]
    fn locates_syntax_errors() {
        assert_eq!(
            syntax_error("{\n  \"a\": 1,\n  \"b\" 2\n}"),
            (3, 7, "expected ':'")
        );
        assert_eq!(syntax_error("[1, 2,]"), (1, 7, "expected a value"));
        assert_eq!(syntax_error("{\"a\": \"x"), (1, 9, "unterminated string"));
        assert_eq!(syntax_error("{} x"), (1, 4, "trailing characters"));
        assert_eq!(
            syntax_error(&"[".repeat(100_000)).2,
            "unexpected end of document"
        );
    }

    #[test]
    fn builds_what_miniserde_builds() {
        let texts = [
            r#"{"a": [1, -2.5e3, true, false, null, {}], "b": {"c": "d\"e\\f\n\u00e9\ud83d\ude00"}, "": []}"#,
            r#" [ "x" , [ [ ] ] , { "k" : { "l" : [ 1 ] } } ] "#,
            r#""plain é ü""#,
            "0",
        ];
        for text in texts {
            let ours = parse(text).unwrap();
            let mut written = String::new();
            to_text(&ours, &mut written);
            let theirs: miniserde::json::Value = miniserde::json::from_str(text).unwrap();
            let again: miniserde::json::Value = miniserde::json::from_str(&written).unwrap();
            assert_eq!(
                miniserde::json::to_string(&theirs),
                miniserde::json::to_string(&again),
                "{text} -> {written}"
            );
        }
        // strings without escapes are borrowed
        let doc = parse(r#"{"key": "value"}"#).unwrap();
        assert!(matches!(
            doc.get("key"),
            Some(Json::String(Cow::Borrowed("value")))
        ));
        // a lone surrogate becomes U+FFFD rather than an error
        assert_eq!(
            parse(r#""\ud800x""#).unwrap(),
            Json::String(Cow::Owned("\u{FFFD}x".into()))
        );
    }
}
