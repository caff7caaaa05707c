//! The JSON values expressions work on (Newtonsoft.Json.Linq's JObject / JArray and
//! their values): a tree whose containers are shared handles, so
//! `var items = (JArray)body["items"]; items.Add(x);` changes `body` as in C#. Parsing is
//! as lenient as `JObject.Parse` (comments, single quotes, unquoted names, trailing
//! commas) with its depth limit of 64; printing follows Newtonsoft's `ToString()`
//! (indented by two spaces) and `Formatting.None`.
//! Must not touch: expression syntax, the request.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::rc::Rc;

use super::{err, EvalError};

/// Newtonsoft's default `MaxDepth` when parsing.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Array(Rc<RefCell<Vec<Json>>>),
    /// Properties in order; a name appears once.
    Object(Rc<RefCell<Vec<(String, Json)>>>),
    /// A container of parsed text not looked into yet (lazy.rs): opened one level when
    /// a child is read, copied through when printed.
    Raw(Raw),
}

/// An unopened JSON container: its span in the (validated, duplicate-free) source.
#[derive(Debug, Clone)]
pub struct Raw {
    pub(super) src: Rc<super::lazy::Source>,
    pub(super) start: u32,
    pub(super) end: u32,
    pub(super) object: bool,
    /// How deeply containers nest in it (1 for one without containers inside).
    pub(super) depth: u8,
    /// Whether its text is what compact printing prints (then it is copied).
    pub(super) canonical: bool,
}

impl Json {
    pub fn new_object() -> Json {
        Json::Object(Rc::new(RefCell::new(Vec::new())))
    }
    pub fn new_array(items: Vec<Json>) -> Json {
        Json::Array(Rc::new(RefCell::new(items)))
    }

    /// `JToken.Type` as Newtonsoft names it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "Null",
            Json::Bool(_) => "Boolean",
            Json::Int(_) => "Integer",
            Json::Float(_) => "Float",
            Json::Str(_) => "String",
            Json::Array(_) => "Array",
            Json::Object(_) => "Object",
            Json::Raw(r) if r.object => "Object",
            Json::Raw(_) => "Array",
        }
    }

    /// Opens every unopened child of this container (one level), in place, so what it
    /// hands out is the shared child itself.
    pub fn open_children(&self) {
        let open = |v: &mut Json| {
            if let Json::Raw(r) = v {
                *v = super::lazy::open(r);
            }
        };
        match self {
            Json::Object(o) => o.borrow_mut().iter_mut().for_each(|(_, v)| open(v)),
            Json::Array(a) => a.borrow_mut().iter_mut().for_each(open),
            _ => {}
        }
    }

    /// Element `i` of an array (opened in place).
    pub fn at(&self, i: usize) -> Option<Json> {
        let Json::Array(a) = self else { return None };
        let mut a = a.borrow_mut();
        let v = a.get_mut(i)?;
        if let Json::Raw(r) = v {
            *v = super::lazy::open(r);
        }
        Some(v.clone())
    }

    /// This token with an unopened container opened one level (its children may stay
    /// unopened); anything else as it is.
    pub fn open_level(&self) -> Json {
        match self {
            Json::Raw(r) => super::lazy::open(r),
            other => other.clone(),
        }
    }

    /// This token with every unopened part parsed (for comparisons).
    pub(super) fn opened(&self) -> Json {
        match self {
            Json::Raw(r) => super::lazy::open_all(r),
            other => other.clone(),
        }
    }

    /// `JToken.DeepClone()`.
    pub fn deep_clone(&self) -> Json {
        match self {
            Json::Array(a) => Json::new_array(a.borrow().iter().map(Json::deep_clone).collect()),
            Json::Object(o) => Json::Object(Rc::new(RefCell::new(
                o.borrow()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.deep_clone()))
                    .collect(),
            ))),
            other => other.clone(),
        }
    }

    /// `JToken.DeepEquals` (numbers compared as JValue compares them).
    pub fn deep_equals(&self, other: &Json) -> bool {
        if matches!(self, Json::Raw(_)) || matches!(other, Json::Raw(_)) {
            return self.opened().deep_equals(&other.opened());
        }
        match (self, other) {
            (Json::Null, Json::Null) => true,
            (Json::Bool(a), Json::Bool(b)) => a == b,
            (Json::Int(a), Json::Int(b)) => a == b,
            (Json::Float(a), Json::Float(b)) => floats_equal(*a, *b),
            (Json::Int(a), Json::Float(b)) | (Json::Float(b), Json::Int(a)) => {
                floats_equal(*a as f64, *b)
            }
            (Json::Str(a), Json::Str(b)) => a == b,
            (Json::Array(a), Json::Array(b)) => {
                Rc::ptr_eq(a, b) || {
                    let (a, b) = (a.borrow(), b.borrow());
                    a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| x.deep_equals(y))
                }
            }
            (Json::Object(a), Json::Object(b)) => {
                Rc::ptr_eq(a, b) || {
                    let (a, b) = (a.borrow(), b.borrow());
                    a.len() == b.len()
                        && a.iter()
                            .all(|(k, v)| b.iter().any(|(k2, v2)| k == k2 && v.deep_equals(v2)))
                }
            }
            _ => false,
        }
    }

    /// How deeply containers nest in this token (a scalar is 0), counting no further
    /// than `limit + 1`.
    pub fn depth(&self, limit: usize, steps: &mut u64) -> Result<usize, EvalError> {
        *steps = steps.checked_sub(1).ok_or(super::BUDGET_STEPS)?;
        if let Json::Raw(r) = self {
            return Ok(usize::from(r.depth).min(limit + 1));
        }
        if limit == 0 {
            return Ok(usize::from(matches!(
                self,
                Json::Array(_) | Json::Object(_)
            )));
        }
        let mut deepest = 0;
        match self {
            Json::Array(a) => {
                for v in a.borrow().iter() {
                    deepest = deepest.max(v.depth(limit - 1, steps)?);
                }
            }
            Json::Object(o) => {
                for (_, v) in o.borrow().iter() {
                    deepest = deepest.max(v.depth(limit - 1, steps)?);
                }
            }
            _ => return Ok(0),
        }
        Ok(deepest + 1)
    }

    /// Whether `inner` is this container or one inside it (adding it would make a cycle).
    pub fn holds(&self, inner: &Json, steps: &mut u64) -> Result<bool, EvalError> {
        *steps = steps.checked_sub(1).ok_or(super::BUDGET_STEPS)?;
        Ok(match (self, inner) {
            (Json::Array(a), Json::Array(b)) if Rc::ptr_eq(a, b) => true,
            (Json::Object(a), Json::Object(b)) if Rc::ptr_eq(a, b) => true,
            (Json::Array(a), _) => {
                for v in a.borrow().iter() {
                    if v.holds(inner, steps)? {
                        return Ok(true);
                    }
                }
                false
            }
            (Json::Object(o), _) => {
                for (_, v) in o.borrow().iter() {
                    if v.holds(inner, steps)? {
                        return Ok(true);
                    }
                }
                false
            }
            _ => false,
        })
    }

    /// A property of an object (`obj["name"]`, opened in place); `None` when absent or
    /// not an object.
    pub fn get(&self, name: &str) -> Option<Json> {
        self.with_field(name, Json::clone)
    }

    /// What `f` makes of a property's value (opened in place first), without a copy of
    /// the value: reading a string property into an expression copies its text once.
    pub fn with_field<R>(&self, name: &str, f: impl FnOnce(&Json) -> R) -> Option<R> {
        let Json::Object(o) = self else { return None };
        let mut o = o.borrow_mut();
        let (_, v) = o.iter_mut().find(|(k, _)| k == name)?;
        if let Json::Raw(r) = v {
            *v = super::lazy::open(r);
        }
        Some(f(v))
    }

    /// Sets (or adds at the end) a property: `obj["name"] = value`.
    pub fn set(&self, name: &str, value: Json) -> Result<(), EvalError> {
        let Json::Object(o) = self else {
            return Err(err(
                "Cannot set a property on a JSON value that is not an object",
            ));
        };
        let mut o = o.borrow_mut();
        match o.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value,
            None => o.push((name.to_string(), value)),
        }
        Ok(())
    }

    /// The text of a scalar the way `JValue.ToString()` prints it; containers print as
    /// `ToString()` does (indented).
    pub fn to_text(&self) -> Result<String, EvalError> {
        Ok(match self {
            Json::Null => String::new(),
            Json::Bool(true) => "True".into(),
            Json::Bool(false) => "False".into(),
            Json::Int(i) => i.to_string(),
            Json::Float(f) => dotnet_double(*f),
            Json::Str(s) => s.clone(),
            _ => self.print(true)?,
        })
    }

    /// About how long the compact print is, so printing allocates once: exact for an
    /// unopened container, counted over what is open (scalars guessed), at most 1 MiB.
    fn print_size_hint(&self) -> usize {
        fn hint(j: &Json, budget: &mut usize) -> usize {
            if *budget == 0 {
                return 0;
            }
            *budget -= 1;
            match j {
                Json::Raw(r) => (r.end - r.start) as usize,
                Json::Str(s) => s.len() + 2,
                Json::Array(a) => {
                    a.borrow()
                        .iter()
                        .map(|v| hint(v, budget) + 1)
                        .sum::<usize>()
                        + 2
                }
                Json::Object(o) => {
                    let o = o.borrow();
                    o.iter()
                        .map(|(k, v)| k.len() + 4 + hint(v, budget))
                        .sum::<usize>()
                        + 2
                }
                _ => 8,
            }
        }
        hint(self, &mut 256).min(1 << 20)
    }

    /// JSON text: `ToString()` (indented) or `ToString(Formatting.None)`.
    pub fn print(&self, indented: bool) -> Result<String, EvalError> {
        // a printed body often becomes the body sent on (set-body): its buffer then
        // goes back to the spares with the call's
        let mut out = crate::http::spare::string(self.print_size_hint());
        write(self, indented, 0, &mut out)?;
        Ok(out)
    }
}

fn write(j: &Json, indented: bool, depth: usize, out: &mut String) -> Result<(), EvalError> {
    if depth > 4 * MAX_DEPTH {
        return Err(err("JSON nested too deeply to write"));
    }
    let newline = |out: &mut String, depth: usize| newline(out, indented, depth);
    match j {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Json::Float(f) => push_json_double(out, *f),
        Json::Str(s) => push_string(out, s),
        Json::Raw(r) => super::lazy::emit(r, indented, depth, out)?,
        Json::Array(a) => {
            let a = a.borrow();
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                write(v, indented, depth + 1, out)?;
            }
            if !a.is_empty() {
                newline(out, depth);
            }
            out.push(']');
        }
        Json::Object(o) => {
            let o = o.borrow();
            out.push('{');
            for (i, (k, v)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                push_string(out, k);
                out.push(':');
                if indented {
                    out.push(' ');
                }
                write(v, indented, depth + 1, out)?;
            }
            if !o.is_empty() {
                newline(out, depth);
            }
            out.push('}');
        }
    }
    Ok(())
}

/// A line break and `depth` levels of Newtonsoft's two-space indentation (nothing when
/// not indented).
pub(super) fn newline(out: &mut String, indented: bool, depth: usize) {
    if indented {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    }
}

/// A JSON string as Newtonsoft escapes it by default.
pub fn push_string(out: &mut String, s: &str) {
    crate::telemetry::push_json_str(out, s);
}

/// A double as .NET's `ToString()` prints it (shortest round-trip form; exponent form
/// from 1E+15 and below 1E-05, as "1E+15", "1.5E-07").
pub fn dotnet_double(f: f64) -> String {
    let mut out = String::new();
    push_dotnet_double(&mut out, f);
    out
}

/// `dotnet_double` written into `out` (in the usual range without an allocation: there
/// Rust's shortest form is .NET's).
fn push_dotnet_double(out: &mut String, f: f64) {
    if push_short_decimal(out, f) {
        return;
    }
    if f.is_finite() && (1e-4..1e15).contains(&f.abs()) {
        let _ = write!(out, "{f}");
        return;
    }
    out.push_str(&dotnet_double_slow(f));
}

/// The common case of `push_dotnet_double` without the formatting machinery: a value
/// from 1E-04 to 1E+09 that is exactly the nearest double to a decimal with at most six
/// fractional digits (250.5, 9.99). The fewest such digits are the shortest round-trip
/// form (below 1E+09 a step of 1E-06 is wider than the double's spacing, so no other
/// decimal with as many digits maps to it). `false`: nothing written.
fn push_short_decimal(out: &mut String, f: f64) -> bool {
    let a = f.abs();
    if !(1e-4..1e9).contains(&a) {
        return false;
    }
    let mut scale = 1u64;
    for digits in 0..=6 {
        let m = (a * scale as f64).round();
        // m and scale are exact (below 2^53), and the division rounds correctly: equal
        // means the decimal m / scale reads back as this double
        if m / scale as f64 == a {
            let m = m as u64;
            if f < 0.0 {
                out.push('-');
            }
            push_digits(out, m / scale, 1);
            if digits > 0 {
                out.push('.');
                push_digits(out, m % scale, digits);
            }
            return true;
        }
        scale *= 10;
    }
    false
}

/// `n` in decimal, zero-padded to at least `width` digits.
fn push_digits(out: &mut String, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    while n > 0 || digits.len() - i < width {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend(digits[i..].iter().map(|&d| char::from(d)));
}

fn dotnet_double_slow(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "∞".into() } else { "-∞".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..15).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{}E{sign}{:02}", mantissa.to_uppercase(), exp.abs());
    }
    format!("{f}")
}

/// `json_double` written into `out`.
pub(super) fn push_json_double(out: &mut String, f: f64) {
    if !f.is_finite() {
        out.push_str(&json_double(f));
        return;
    }
    let start = out.len();
    push_dotnet_double(out, f);
    if !out[start..].contains(['.', 'E']) {
        out.push_str(".0");
    }
}

/// A double in JSON as Newtonsoft writes it: like .NET's, with ".0" when it would look
/// like an integer.
fn json_double(f: f64) -> String {
    if !f.is_finite() {
        return format!(
            "\"{}\"",
            if f.is_nan() {
                "NaN"
            } else if f > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            }
        );
    }
    let s = dotnet_double(f);
    if s.contains(['.', 'E']) {
        s
    } else {
        s + ".0"
    }
}

/// Two JSON numbers as JValue compares them: Newtonsoft's `MathUtils.ApproxEquals`
/// (equal within a few ulps), then `Double.CompareTo` (NaN equals NaN).
fn floats_equal(a: f64, b: f64) -> bool {
    if a == b || (a.is_nan() && b.is_nan()) {
        return true;
    }
    let tolerance = (a.abs() + b.abs() + 10.0) * f64::EPSILON;
    let difference = a - b;
    -tolerance < difference && tolerance > difference
}

/// Parses JSON text as `JToken.Parse` does (the caller checks the kind it wanted).
pub fn parse(text: &str) -> Result<Json, EvalError> {
    super::lazy::parse(text)
}

/// `parse` of bytes that may not be UTF-8 (`None` then), without checking them twice.
pub fn parse_utf8(bytes: &[u8]) -> Option<Result<Json, EvalError>> {
    super::lazy::parse_utf8(bytes)
}

/// Parses JSON text into a tree at once (the lazy parser's fallback for documents that
/// repeat a property name).
pub(super) fn parse_eager(text: &str) -> Result<Json, EvalError> {
    let mut p = Reader::new(text);
    let v = p.value(0)?;
    p.end()?;
    Ok(v)
}

pub(super) struct Reader<'t> {
    pub(super) b: &'t [u8],
    pub(super) text: &'t str,
    pub(super) pos: usize,
}

pub(super) const BAD: EvalError = err("Unexpected character encountered while parsing JSON");

impl<'t> Reader<'t> {
    pub(super) fn new(text: &'t str) -> Reader<'t> {
        Reader {
            b: text.as_bytes(),
            text,
            pos: 0,
        }
    }

    /// Nothing but blanks may follow the value.
    pub(super) fn end(&mut self) -> Result<(), EvalError> {
        self.blank()?;
        if self.pos < self.b.len() {
            return Err(err(
                "Additional text encountered after finished reading JSON content",
            ));
        }
        Ok(())
    }

    #[inline]
    pub(super) fn blank(&mut self) -> Result<(), EvalError> {
        // the usual case: already at a token
        if self
            .b
            .get(self.pos)
            .is_some_and(|c| *c > b' ' && *c != b'/')
        {
            return Ok(());
        }
        loop {
            while self.b.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
                self.pos += 1;
            }
            if self.b.get(self.pos) != Some(&b'/') {
                return Ok(());
            }
            match (self.b.get(self.pos), self.b.get(self.pos + 1)) {
                (Some(c), _) if c.is_ascii_whitespace() => self.pos += 1,
                (Some(b'/'), Some(b'/')) => {
                    while self.pos < self.b.len() && self.b[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                (Some(b'/'), Some(b'*')) => match self.text[self.pos + 2..].find("*/") {
                    Some(n) => self.pos += n + 4,
                    None => return Err(err("Unexpected end while parsing JSON comment")),
                },
                _ => return Ok(()),
            }
        }
    }

    pub(super) fn value(&mut self, depth: usize) -> Result<Json, EvalError> {
        self.blank()?;
        let Some(&c) = self.b.get(self.pos) else {
            return Err(err("Unexpected end of JSON content"));
        };
        if matches!(c, b'{' | b'[') && depth >= MAX_DEPTH {
            return Err(err("The reader's MaxDepth of 64 has been exceeded (JSON)"));
        }
        match c {
            b'{' => {
                self.pos += 1;
                let mut fields: Vec<(String, Json)> = Vec::with_capacity(8);
                loop {
                    self.blank()?;
                    match self.b.get(self.pos) {
                        Some(b'}') => {
                            self.pos += 1;
                            break;
                        }
                        Some(b'"' | b'\'') => {}
                        Some(c) if c.is_ascii_alphabetic() || *c == b'_' || *c == b'$' => {}
                        _ => return Err(BAD),
                    }
                    let name = match self.b[self.pos] {
                        q @ (b'"' | b'\'') => self.string(q)?,
                        _ => {
                            let start = self.pos;
                            while self.pos < self.b.len()
                                && (self.b[self.pos].is_ascii_alphanumeric()
                                    || matches!(self.b[self.pos], b'_' | b'$'))
                            {
                                self.pos += 1;
                            }
                            self.text[start..self.pos].to_string()
                        }
                    };
                    self.blank()?;
                    if self.b.get(self.pos) != Some(&b':') {
                        return Err(err("Invalid character after parsing property name (JSON)"));
                    }
                    self.pos += 1;
                    let v = self.value(depth + 1)?;
                    // a repeated name keeps the last value, in the first one's place
                    match fields.iter_mut().find(|(k, _)| *k == name) {
                        Some((_, old)) => *old = v,
                        None => fields.push((name, v)),
                    }
                    self.blank()?;
                    match self.b.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {}
                        _ => return Err(BAD),
                    }
                }
                Ok(Json::Object(Rc::new(RefCell::new(fields))))
            }
            b'[' => {
                self.pos += 1;
                let mut items = Vec::with_capacity(8);
                loop {
                    self.blank()?;
                    if self.b.get(self.pos) == Some(&b']') {
                        self.pos += 1;
                        break;
                    }
                    items.push(self.value(depth + 1)?);
                    self.blank()?;
                    match self.b.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {}
                        _ => return Err(BAD),
                    }
                }
                Ok(Json::new_array(items))
            }
            b'"' | b'\'' => Ok(Json::Str(self.string(c)?)),
            b'-' | b'0'..=b'9' => self.number(),
            _ => {
                for (word, v) in [
                    ("true", Json::Bool(true)),
                    ("false", Json::Bool(false)),
                    ("null", Json::Null),
                    ("NaN", Json::Float(f64::NAN)),
                    ("Infinity", Json::Float(f64::INFINITY)),
                ] {
                    if self.text[self.pos..].starts_with(word) {
                        self.pos += word.len();
                        return Ok(v);
                    }
                }
                Err(BAD)
            }
        }
    }

    pub(super) fn number(&mut self) -> Result<Json, EvalError> {
        let start = self.pos;
        if self.b[self.pos] == b'-' {
            self.pos += 1;
            if self.text[self.pos..].starts_with("Infinity") {
                self.pos += 8;
                return Ok(Json::Float(f64::NEG_INFINITY));
            }
        }
        let mut float = false;
        while let Some(&c) = self.b.get(self.pos) {
            match c {
                b'0'..=b'9' => {}
                b'.' | b'e' | b'E' => float = true,
                b'+' | b'-' if float => {}
                _ => break,
            }
            self.pos += 1;
        }
        let s = &self.text[start..self.pos];
        let bad = err("Input string was not a valid number (JSON)");
        if !float {
            if let Ok(i) = s.parse::<i64>() {
                return Ok(Json::Int(i));
            }
        }
        s.parse::<f64>().map(Json::Float).map_err(|_| bad)
    }

    pub(super) fn string(&mut self, quote: u8) -> Result<String, EvalError> {
        self.pos += 1;
        let mut s = String::new();
        loop {
            let start = self.pos;
            while self.pos < self.b.len() && self.b[self.pos] != quote && self.b[self.pos] != b'\\'
            {
                self.pos += 1;
            }
            s.push_str(&self.text[start..self.pos]);
            match self.b.get(self.pos) {
                None => return Err(err("Unterminated string (JSON)")),
                Some(&c) if c == quote => {
                    self.pos += 1;
                    return Ok(s);
                }
                _ => {}
            }
            let esc = self.b.get(self.pos + 1).copied().unwrap_or(0);
            self.pos += 2;
            s.push(match esc {
                b'"' => '"',
                b'\'' => '\'',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    let unit = self.hex4()?;
                    if (0xD800..0xDC00).contains(&unit) && self.text[self.pos..].starts_with("\\u")
                    {
                        self.pos += 2;
                        let low = self.hex4()?;
                        let c =
                            0x10000 + ((unit - 0xD800) << 10) + (low.wrapping_sub(0xDC00) & 0x3FF);
                        char::from_u32(c).unwrap_or('\u{FFFD}')
                    } else {
                        char::from_u32(unit).unwrap_or('\u{FFFD}')
                    }
                }
                _ => return Err(err("Bad JSON escape sequence")),
            });
        }
    }

    pub(super) fn hex4(&mut self) -> Result<u32, EvalError> {
        let h = self
            .text
            .get(self.pos..self.pos + 4)
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or(err("Invalid Unicode escape sequence (JSON)"))?;
        self.pos += 4;
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_as_newtonsoft() {
        let j =
            parse(r#"{"a": 1, "b": [true, null, 1.5, "x\"y"], 'c': {d: 2,}, "e": {}, "f": []}"#)
                .unwrap();
        assert_eq!(
            j.print(false).unwrap(),
            r#"{"a":1,"b":[true,null,1.5,"x\"y"],"c":{"d":2},"e":{},"f":[]}"#
        );
        assert_eq!(
            j.print(true).unwrap(),
            "{\n  \"a\": 1,\n  \"b\": [\n    true,\n    null,\n    1.5,\n    \"x\\\"y\"\n  ],\n  \"c\": {\n    \"d\": 2\n  },\n  \"e\": {},\n  \"f\": []\n}"
        );
        assert_eq!(Json::Float(2.0).print(false).unwrap(), "2.0");
        assert_eq!(dotnet_double(1e20), "1E+20");
        assert_eq!(dotnet_double(0.00001), "1E-05");
        assert_eq!(dotnet_double(123.25), "123.25");
        assert_eq!(dotnet_double(1e14), "100000000000000");
    }

    /// The short-decimal path prints what the general one prints, wherever it applies.
    #[test]
    fn short_decimals_print_as_the_shortest_round_trip_form() {
        let mut values = vec![
            250.5,
            9.99,
            0.0001,
            0.1,
            0.3,
            1e-4,
            999_999_999.999_999,
            123.25,
        ];
        values.extend([
            1.0 / 3.0,
            2f64.sqrt(),
            1e9 - 0.5,
            0.000_123_4,
            5e-324,
            1e8 + 0.1,
        ]);
        // decimals of every length, and arbitrary doubles, from a fixed generator
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = (x % 8) as i32;
            values.push((x >> 20) as f64 % 1e12 / 10f64.powi(digits));
            values.push(f64::from_bits(x) % 1e9);
        }
        let mut taken = 0;
        for v in values {
            for f in [v, -v] {
                let mut out = String::new();
                if push_short_decimal(&mut out, f) {
                    taken += 1;
                    assert_eq!(out, format!("{f}"), "{f:e}");
                }
            }
        }
        assert!(taken > 100_000, "{taken}");
    }

    #[test]
    fn bad_json_is_an_error_not_a_panic() {
        for text in [
            "",
            "{",
            "{\"a\":}",
            "[1,",
            "{\"a\" 1}",
            "\"abc",
            "1 2",
            "{a:1}}",
            "\"\\u12\"",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
        let deep = "[".repeat(65) + &"]".repeat(65);
        assert!(parse(&deep).is_err());
        let ok = "[".repeat(64) + &"]".repeat(64);
        assert!(parse(&ok).is_ok());
        assert_eq!(
            parse(r#""\ud83d\ude00 \u00e9""#)
                .unwrap()
                .to_text()
                .unwrap(),
            "😀 é"
        );
    }
}
