//! Reading a `miniserde::json::Value` with JSON paths. miniserde reports neither where a
//! syntax error is nor which field is wrong, so this module does both: `syntax_error`
//! locates the first syntax error by line and column, and `Fields` reads an object while
//! collecting every problem under its path (`apis[3].operations[0].urlTemplate`).
//! Must not touch: what the fields mean (that is compile.rs).

use miniserde::json::{Number, Object, Value};

use super::ConfigError;

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

pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
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
    object: &'a Object,
    path: String,
    known: &'static [&'static str],
}

impl<'a> Fields<'a> {
    /// `None` (with an error) when `value` is not an object.
    pub fn of(
        value: &'a Value,
        path: &str,
        known: &'static [&'static str],
        errors: &mut Errors,
    ) -> Option<Self> {
        match value {
            Value::Object(object) => {
                for key in object.keys() {
                    if !known.contains(&key.as_str()) {
                        errors.push(&join(path, key), "unknown field");
                    }
                }
                Some(Fields {
                    object,
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

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        match self.object.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    pub fn str(&self, key: &str, errors: &mut Errors) -> Option<&'a str> {
        match self.get(key)? {
            Value::String(s) => Some(s),
            other => {
                errors.push(
                    &self.path(key),
                    format!("expected a string, found {}", type_name(other)),
                );
                None
            }
        }
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
            Value::Bool(b) => Some(*b),
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
        match self.get(key)? {
            Value::Number(Number::U64(n)) => Some(*n),
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
    pub fn array(&self, key: &str, errors: &mut Errors) -> Vec<(String, &'a Value)> {
        let path = self.path(key);
        match self.get(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
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
                Value::String(s) => out.push(s.as_str()),
                other => errors.push(
                    &path,
                    format!("expected a string, found {}", type_name(other)),
                ),
            }
        }
        Some(out)
    }
}

/// Line and column (1-based) of the first JSON syntax error, for the message miniserde
/// cannot give. Iterative (no recursion), so deep nesting cannot overflow the stack.
pub fn syntax_error(text: &str) -> (usize, usize, &'static str) {
    let bytes = text.as_bytes();
    let mut scan = Scanner { bytes, pos: 0 };
    let problem = scan.document().err().unwrap_or("invalid JSON");
    let upto = &text.as_bytes()[..scan.pos.min(bytes.len())];
    let line = upto.iter().filter(|b| **b == b'\n').count() + 1;
    let column = upto.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    (line, column, problem)
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
}
