//! JSON Schema as OpenAPI documents use it, compiled once per config apply and checked
//! against request and response bodies by validate-content (and parameter values by
//! validate-parameters / validate-headers). A `SchemaSet` is the API's named schemas
//! (`components.schemas`, or Swagger's `definitions`), each a tree of nodes whose `$ref`s
//! are resolved to node indices at compile time, so recursion costs nothing and nothing
//! is looked up by name per request. Keywords: type (and OpenAPI 3.0's nullable), enum,
//! const, properties, required, additionalProperties, items, min/maxItems, uniqueItems,
//! min/maxLength, pattern, minimum, maximum, exclusive bounds (3.0 booleans and 3.1
//! numbers), multipleOf, allOf, anyOf, oneOf, not, and the formats date-time, date,
//! email, uuid, ipv4 and ipv6. Messages are Newtonsoft.Json.Schema's, which APIM reports.
//! Every check is bounded: depth, nodes visited and errors kept.
//! Must not touch: where bodies come from, actions (the policies decide).

use std::collections::HashMap;
use std::fmt::Write as _;

use miniserde::json::{Number, Value};

use super::expr::Json;

/// At most this many errors are reported per validation.
pub const MAX_ERRORS: usize = 20;
const MAX_DEPTH: usize = 64;
const MAX_VISITS: usize = 200_000;

type Idx = u32;

#[derive(Debug, Default)]
struct Node {
    /// Allowed types as bits (`T_*`); 0 allows any.
    types: u8,
    enumeration: Vec<Value>,
    properties: Vec<(String, Idx)>,
    required: Vec<String>,
    additional: Additional,
    items: Option<Idx>,
    min_items: Option<u64>,
    max_items: Option<u64>,
    unique_items: bool,
    min_length: Option<u64>,
    max_length: Option<u64>,
    pattern: Option<(regex::Regex, String)>,
    minimum: Option<(f64, bool)>,
    maximum: Option<(f64, bool)>,
    multiple_of: Option<f64>,
    all_of: Vec<Idx>,
    any_of: Vec<Idx>,
    one_of: Vec<Idx>,
    not: Option<Idx>,
    format: Option<Format>,
    /// A `$ref`: this node is the named schema it points to.
    target: Option<Idx>,
}

#[derive(Debug, Default)]
enum Additional {
    #[default]
    Any,
    Never,
    Schema(Idx),
}

#[derive(Debug, Clone, Copy)]
enum Format {
    DateTime,
    Date,
    Email,
    Uuid,
    Ipv4,
    Ipv6,
}

const T_NULL: u8 = 1;
const T_BOOL: u8 = 2;
const T_INT: u8 = 4;
const T_NUM: u8 = 8;
const T_STR: u8 = 16;
const T_ARR: u8 = 32;
const T_OBJ: u8 = 64;
const TYPE_NAMES: [(u8, &str); 7] = [
    (T_STR, "String"),
    (T_INT, "Integer"),
    (T_NUM, "Number"),
    (T_BOOL, "Boolean"),
    (T_OBJ, "Object"),
    (T_ARR, "Array"),
    (T_NULL, "Null"),
];

/// An API's named schemas, compiled.
#[derive(Debug, Default)]
pub struct SchemaSet {
    nodes: Vec<Node>,
    names: HashMap<String, Idx>,
}

impl SchemaSet {
    /// Compiles the named schemas of OpenAPI documents: each `{"components": {"schemas":
    /// …}}` or `{"definitions": …}`. A `$ref` must name one of them
    /// (`#/components/schemas/X` or `#/definitions/X`).
    pub fn compile(documents: &[&Value]) -> Result<SchemaSet, String> {
        let mut named: Vec<(&String, &Value)> = Vec::new();
        for doc in documents {
            let schemas = field(doc, "components")
                .and_then(|c| field(c, "schemas"))
                .or_else(|| field(doc, "definitions"));
            match schemas {
                Some(Value::Object(o)) => named.extend(o.iter()),
                Some(_) => return Err("components.schemas must be an object".into()),
                None => {}
            }
        }
        let mut set = SchemaSet::default();
        for (i, (name, _)) in named.iter().enumerate() {
            set.names.insert((*name).clone(), i as Idx);
            set.nodes.push(Node::default());
        }
        for (i, (name, schema)) in named.iter().enumerate() {
            let node = set
                .node(schema, 0)
                .map_err(|e| format!("schema '{name}': {e}"))?;
            set.nodes[i] = node;
        }
        Ok(set)
    }

    /// The schema named `name`.
    pub fn named(&self, name: &str) -> Option<Idx> {
        self.names.get(name).copied()
    }

    fn push(&mut self, schema: &Value, depth: usize) -> Result<Idx, String> {
        let node = self.node(schema, depth + 1)?;
        self.nodes.push(node);
        Ok((self.nodes.len() - 1) as Idx)
    }

    fn list(&mut self, v: Option<&Value>, depth: usize) -> Result<Vec<Idx>, String> {
        match v {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a.iter().map(|s| self.push(s, depth)).collect(),
            Some(_) => Err("expected an array of schemas".into()),
        }
    }

    fn node(&mut self, schema: &Value, depth: usize) -> Result<Node, String> {
        if depth > MAX_DEPTH {
            return Err("schemas nest too deeply".into());
        }
        let o = match schema {
            Value::Object(o) => o,
            Value::Bool(true) => return Ok(Node::default()),
            Value::Bool(false) => {
                return Ok(Node {
                    not: Some(self.push(&Value::Object(Default::default()), depth)?),
                    ..Node::default()
                })
            }
            _ => return Err("a schema is an object".into()),
        };
        let mut n = Node::default();
        if let Some(Value::String(target)) = o.get("$ref") {
            let name = target
                .strip_prefix("#/components/schemas/")
                .or_else(|| target.strip_prefix("#/definitions/"))
                .ok_or_else(|| format!("$ref '{target}' does not name a schema of the API"))?;
            let name = name.replace("~1", "/").replace("~0", "~");
            n.target = Some(
                self.named(&name)
                    .ok_or_else(|| format!("$ref '{target}' names no schema of the API"))?,
            );
            return Ok(n);
        }
        let type_bit = |t: &str| match t {
            "null" => Ok(T_NULL),
            "boolean" => Ok(T_BOOL),
            "integer" => Ok(T_INT),
            "number" => Ok(T_NUM | T_INT),
            "string" => Ok(T_STR),
            "array" => Ok(T_ARR),
            "object" => Ok(T_OBJ),
            other => Err(format!("unknown type '{other}'")),
        };
        match o.get("type") {
            None => {}
            Some(Value::String(t)) => n.types = type_bit(t)?,
            Some(Value::Array(ts)) => {
                for t in ts {
                    if let Value::String(t) = t {
                        n.types |= type_bit(t)?;
                    }
                }
            }
            Some(_) => return Err("type must be a string or an array".into()),
        }
        if matches!(o.get("nullable"), Some(Value::Bool(true))) && n.types != 0 {
            n.types |= T_NULL;
        }
        if let Some(Value::Array(values)) = o.get("enum") {
            n.enumeration = values.iter().cloned().collect();
        }
        if let Some(c) = o.get("const") {
            n.enumeration = vec![c.clone()];
        }
        if let Some(Value::Object(props)) = o.get("properties") {
            for (name, p) in props.iter() {
                let i = self.push(p, depth)?;
                n.properties.push((name.clone(), i));
            }
        }
        if let Some(Value::Array(req)) = o.get("required") {
            n.required = req
                .iter()
                .filter_map(|r| match r {
                    Value::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect();
        }
        n.additional = match o.get("additionalProperties") {
            None | Some(Value::Bool(true)) => Additional::Any,
            Some(Value::Bool(false)) => Additional::Never,
            Some(s) => Additional::Schema(self.push(s, depth)?),
        };
        if let Some(items) = o.get("items") {
            n.items = Some(self.push(items, depth)?);
        }
        let count = |k: &str| match o.get(k) {
            Some(Value::Number(num)) => as_f64(num).filter(|f| *f >= 0.0).map(|f| f as u64),
            _ => None,
        };
        n.min_items = count("minItems");
        n.max_items = count("maxItems");
        n.min_length = count("minLength");
        n.max_length = count("maxLength");
        n.unique_items = matches!(o.get("uniqueItems"), Some(Value::Bool(true)));
        if let Some(Value::String(p)) = o.get("pattern") {
            let re = regex::RegexBuilder::new(p)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| format!("pattern '{p}': {e}"))?;
            n.pattern = Some((re, p.clone()));
        }
        let number = |k: &str| match o.get(k) {
            Some(Value::Number(num)) => as_f64(num),
            _ => None,
        };
        // 3.0 writes exclusiveMinimum: true beside minimum; 3.1 a number of its own
        let exclusive = |k: &str| matches!(o.get(k), Some(Value::Bool(true)));
        n.minimum = number("minimum").map(|m| (m, exclusive("exclusiveMinimum")));
        if let Some(m) = number("exclusiveMinimum") {
            n.minimum = Some((m, true));
        }
        n.maximum = number("maximum").map(|m| (m, exclusive("exclusiveMaximum")));
        if let Some(m) = number("exclusiveMaximum") {
            n.maximum = Some((m, true));
        }
        n.multiple_of = number("multipleOf").filter(|m| *m > 0.0);
        n.all_of = self.list(o.get("allOf"), depth)?;
        n.any_of = self.list(o.get("anyOf"), depth)?;
        n.one_of = self.list(o.get("oneOf"), depth)?;
        if let Some(not) = o.get("not") {
            n.not = Some(self.push(not, depth)?);
        }
        n.format = match o.get("format") {
            Some(Value::String(f)) => match f.as_str() {
                "date-time" => Some(Format::DateTime),
                "date" => Some(Format::Date),
                "email" => Some(Format::Email),
                "uuid" => Some(Format::Uuid),
                "ipv4" => Some(Format::Ipv4),
                "ipv6" => Some(Format::Ipv6),
                _ => None,
            },
            _ => None,
        };
        Ok(n)
    }

    /// Checks `value` against schema `root`; `allow_additional` overrides the schemas'
    /// `additionalProperties` (validate-content's allow-additional-properties). The
    /// errors, at most `MAX_ERRORS`, each with its JSON path.
    pub fn validate(&self, root: Idx, value: &Json, allow_additional: Option<bool>) -> Vec<String> {
        let mut check = Check {
            set: self,
            allow_additional,
            visits: 0,
            errors: Vec::new(),
        };
        check.value(root, value, &mut String::new(), 0);
        check.errors
    }
}

fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(o) => o.get(key),
        _ => None,
    }
}

fn as_f64(n: &Number) -> Option<f64> {
    Some(match n {
        Number::U64(u) => *u as f64,
        Number::I64(i) => *i as f64,
        Number::F64(f) => *f,
    })
}

struct Check<'s> {
    set: &'s SchemaSet,
    allow_additional: Option<bool>,
    visits: usize,
    errors: Vec<String>,
}

fn type_of(v: &Json) -> u8 {
    match v {
        Json::Null => T_NULL,
        Json::Bool(_) => T_BOOL,
        Json::Int(_) => T_INT,
        Json::Float(f) if f.fract() == 0.0 && f.is_finite() => T_INT | T_NUM,
        Json::Float(_) => T_NUM,
        Json::Str(_) => T_STR,
        Json::Array(_) => T_ARR,
        Json::Object(_) | Json::Raw(_) => T_OBJ,
    }
}

fn type_name(bits: u8) -> &'static str {
    TYPE_NAMES
        .iter()
        .find(|(b, _)| bits & b != 0)
        .map_or("Null", |(_, n)| n)
}

fn number_of(v: &Json) -> Option<f64> {
    match v {
        Json::Int(i) => Some(*i as f64),
        Json::Float(f) => Some(*f),
        _ => None,
    }
}

/// A JSON value and a schema literal (enum, const) are the same value.
fn same(v: &Json, lit: &Value) -> bool {
    match (v, lit) {
        (Json::Raw(_), _) => same(&v.open_level(), lit),
        (Json::Null, Value::Null) => true,
        (Json::Bool(a), Value::Bool(b)) => a == b,
        (Json::Str(a), Value::String(b)) => a == b,
        (Json::Int(_) | Json::Float(_), Value::Number(n)) => number_of(v) == as_f64(n),
        (Json::Array(a), Value::Array(b)) => {
            let a = a.borrow();
            a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| same(x, y))
        }
        (Json::Object(a), Value::Object(b)) => {
            let a = a.borrow();
            a.len() == b.len() && a.iter().all(|(k, x)| b.get(k).is_some_and(|y| same(x, y)))
        }
        _ => false,
    }
}

fn scalar_text(v: &Json) -> String {
    match v {
        Json::Str(s) => s.clone(),
        other => other.print(false).unwrap_or_default(),
    }
}

impl Check<'_> {
    fn fail(&mut self, path: &str, message: String) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(format!("{message} Path '{path}'."));
        }
    }

    /// Whether `v` matches schema `i`, errors not kept.
    fn matches(&mut self, i: Idx, v: &Json, path: &mut String, depth: usize) -> bool {
        let kept = std::mem::take(&mut self.errors);
        self.value(i, v, path, depth);
        let ok = self.errors.is_empty();
        self.errors = kept;
        ok
    }

    fn value(&mut self, i: Idx, v: &Json, path: &mut String, depth: usize) {
        self.visits += 1;
        if self.visits > MAX_VISITS || depth > MAX_DEPTH || self.errors.len() >= MAX_ERRORS {
            if self.errors.is_empty() {
                self.fail(
                    path,
                    "The JSON is too large or too deep to validate.".into(),
                );
            }
            return;
        }
        let set = self.set;
        let Some(n) = set.nodes.get(i as usize) else {
            return;
        };
        if let Some(t) = n.target {
            return self.value(t, v, path, depth + 1);
        }
        let opened;
        let v = match v {
            Json::Raw(_) => {
                opened = v.open_level();
                &opened
            }
            other => other,
        };
        let actual = type_of(v);
        if n.types != 0 && n.types & actual == 0 {
            let expected: Vec<&str> = TYPE_NAMES
                .iter()
                .filter(|(b, _)| n.types & b != 0 && !(*b == T_INT && n.types & T_NUM != 0))
                .map(|(_, name)| *name)
                .collect();
            let message = format!(
                "Invalid type. Expected {} but got {}.",
                expected.join(", "),
                type_name(actual)
            );
            return self.fail(path, message);
        }
        if !n.enumeration.is_empty() && !n.enumeration.iter().any(|lit| same(v, lit)) {
            let message = format!("Value {} is not defined in enum.", scalar_text(v));
            self.fail(path, message);
        }
        match v {
            Json::Str(s) => self.string(n, s, path),
            Json::Int(_) | Json::Float(_) => self.number(n, v, path),
            Json::Array(items) => {
                let items = items.borrow();
                self.array(n, &items, path, depth);
            }
            Json::Object(_) | Json::Raw(_) => self.object(n, v, path, depth),
            Json::Null | Json::Bool(_) => {}
        }
        self.combinators(n, v, path, depth);
    }

    fn combinators(&mut self, n: &Node, v: &Json, path: &mut String, depth: usize) {
        let failed: Vec<String> = n
            .all_of
            .iter()
            .enumerate()
            .filter(|(_, s)| !self.matches(**s, v, path, depth + 1))
            .map(|(k, _)| k.to_string())
            .collect();
        if !failed.is_empty() {
            self.fail(
                path,
                format!(
                    "JSON does not match all schemas from 'allOf'. Invalid schema indexes: {}.",
                    failed.join(", ")
                ),
            );
        }
        if !n.any_of.is_empty()
            && !n
                .any_of
                .iter()
                .any(|s| self.matches(*s, v, path, depth + 1))
        {
            self.fail(path, "JSON does not match any schemas from 'anyOf'.".into());
        }
        if !n.one_of.is_empty() {
            let valid: Vec<String> = n
                .one_of
                .iter()
                .enumerate()
                .filter(|(_, s)| self.matches(**s, v, path, depth + 1))
                .map(|(k, _)| k.to_string())
                .collect();
            match valid.len() {
                1 => {}
                0 => self.fail(path, "JSON is valid against no schemas from 'oneOf'.".into()),
                _ => self.fail(
                    path,
                    format!(
                        "JSON is valid against more than one schema from 'oneOf'. Valid schema indexes: {}.",
                        valid.join(", ")
                    ),
                ),
            }
        }
        if let Some(not) = n.not {
            if self.matches(not, v, path, depth + 1) {
                self.fail(path, "JSON is valid against schema from 'not'.".into());
            }
        }
    }

    fn string(&mut self, n: &Node, s: &str, path: &str) {
        let len = s.chars().count() as u64;
        if let Some(min) = n.min_length.filter(|m| len < *m) {
            self.fail(
                path,
                format!("String '{s}' is less than minimum length of {min}."),
            );
        }
        if let Some(max) = n.max_length.filter(|m| len > *m) {
            self.fail(
                path,
                format!("String '{s}' exceeds maximum length of {max}."),
            );
        }
        if let Some((re, text)) = &n.pattern {
            if !re.is_match(s) {
                self.fail(
                    path,
                    format!("String '{s}' does not match regex pattern '{text}'."),
                );
            }
        }
        if let Some(f) = n.format {
            if !format_holds(f, s) {
                let name = match f {
                    Format::DateTime => "date-time",
                    Format::Date => "date",
                    Format::Email => "email",
                    Format::Uuid => "uuid",
                    Format::Ipv4 => "ipv4",
                    Format::Ipv6 => "ipv6",
                };
                self.fail(
                    path,
                    format!("String '{s}' does not validate against format '{name}'."),
                );
            }
        }
    }

    fn number(&mut self, n: &Node, v: &Json, path: &str) {
        let Some(x) = number_of(v) else { return };
        // what is wrong, as "is less than minimum value of 1"; the value is printed only then
        let mut problems: Vec<String> = Vec::new();
        if let Some((min, exclusive)) = n.minimum {
            if x < min {
                problems.push(format!("is less than minimum value of {}", show(min)));
            } else if exclusive && x == min {
                problems.push(format!("equals exclusive minimum value of {}", show(min)));
            }
        }
        if let Some((max, exclusive)) = n.maximum {
            if x > max {
                problems.push(format!("exceeds maximum value of {}", show(max)));
            } else if exclusive && x == max {
                problems.push(format!("equals exclusive maximum value of {}", show(max)));
            }
        }
        if let Some(m) = n.multiple_of {
            let q = x / m;
            if (q - q.round()).abs() > 1e-9 {
                problems.push(format!("is not a multiple of {}", show(m)));
            }
        }
        if problems.is_empty() {
            return;
        }
        let kind = if matches!(v, Json::Int(_)) {
            "Integer"
        } else {
            "Float"
        };
        let shown = scalar_text(v);
        for p in problems {
            self.fail(path, format!("{kind} {shown} {p}."));
        }
    }

    fn array(&mut self, n: &Node, items: &[Json], path: &mut String, depth: usize) {
        let count = items.len() as u64;
        if let Some(min) = n.min_items.filter(|m| count < *m) {
            self.fail(
                path,
                format!("Array item count {count} is less than minimum count of {min}."),
            );
        }
        if let Some(max) = n.max_items.filter(|m| count > *m) {
            self.fail(
                path,
                format!("Array item count {count} exceeds maximum count of {max}."),
            );
        }
        if n.unique_items {
            for (k, item) in items.iter().enumerate().skip(1) {
                if items[..k].iter().any(|earlier| earlier.deep_equals(item)) {
                    self.fail(path, format!("Non-unique array item at index {k}."));
                    break;
                }
            }
        }
        if let Some(schema) = n.items {
            for (k, item) in items.iter().enumerate() {
                let len = path.len();
                let _ = write!(path, "[{k}]");
                self.value(schema, item, path, depth + 1);
                path.truncate(len);
                if self.errors.len() >= MAX_ERRORS {
                    break;
                }
            }
        }
    }

    fn object(&mut self, n: &Node, v: &Json, path: &mut String, depth: usize) {
        let Json::Object(o) = v else {
            return;
        };
        // read-only: children are other cells, borrowed again only to be read
        let entries = o.borrow();
        let missing: Vec<&str> = n
            .required
            .iter()
            .filter(|r| !entries.iter().any(|(k, _)| k == *r))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            self.fail(
                path,
                format!(
                    "Required properties are missing from object: {}.",
                    missing.join(", ")
                ),
            );
        }
        for (name, value) in entries.iter() {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(name);
            match n.properties.iter().find(|(p, _)| p == name) {
                Some((_, schema)) => self.value(*schema, value, path, depth + 1),
                None => {
                    let never = match (self.allow_additional, &n.additional) {
                        (Some(allow), _) => !allow,
                        (None, Additional::Never) => true,
                        (None, Additional::Schema(s)) => {
                            self.value(*s, value, path, depth + 1);
                            false
                        }
                        (None, Additional::Any) => false,
                    };
                    if never {
                        self.fail(
                            path,
                            format!("Property '{name}' has not been defined and the schema does not allow additional properties."),
                        );
                    }
                }
            }
            path.truncate(len);
            if self.errors.len() >= MAX_ERRORS {
                break;
            }
        }
    }
}

/// A number as Newtonsoft writes a schema bound: integers without a fraction.
fn show(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

fn format_holds(f: Format, s: &str) -> bool {
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let date = |d: &str| {
        let p: Vec<&str> = d.split('-').collect();
        p.len() == 3
            && p[0].len() == 4
            && p[1].len() == 2
            && p[2].len() == 2
            && p.iter().all(|x| digits(x))
    };
    match f {
        Format::Date => date(s),
        Format::DateTime => {
            let Some((d, t)) = s.split_once(['T', 't', ' ']) else {
                return false;
            };
            let b = t.as_bytes();
            date(d)
                && b.len() >= 8
                && b[2] == b':'
                && b[5] == b':'
                && digits(&t[..2])
                && digits(&t[3..5])
                && digits(&t[6..8])
        }
        Format::Email => s.split_once('@').is_some_and(|(user, host)| {
            !user.is_empty() && host.contains('.') && !host.contains('@')
        }),
        Format::Uuid => {
            let parts: Vec<&str> = s.split('-').collect();
            parts.len() == 5
                && [8, 4, 4, 4, 12]
                    .iter()
                    .zip(&parts)
                    .all(|(n, p)| p.len() == *n && p.bytes().all(|b| b.is_ascii_hexdigit()))
        }
        Format::Ipv4 => s.parse::<std::net::Ipv4Addr>().is_ok(),
        Format::Ipv6 => s.parse::<std::net::Ipv6Addr>().is_ok(),
    }
}

/// What an API's definition says of one operation, for the validate-* policies: the
/// representations of its request and of each response (with the schema each names),
/// its parameters and its responses' headers.
#[derive(Debug, Clone, Default)]
pub struct Contract {
    pub request: Vec<Representation>,
    pub responses: Vec<ResponseContract>,
    /// Template parameters (path, and query ones the URL template names).
    pub template: Vec<Param>,
    pub query: Vec<Param>,
    pub headers: Vec<Param>,
}

#[derive(Debug, Clone, Default)]
pub struct ResponseContract {
    pub status: u16,
    pub representations: Vec<Representation>,
    pub headers: Vec<Param>,
}

#[derive(Debug, Clone)]
pub struct Representation {
    pub content_type: String,
    /// The schema's name (`typeName`) and its index in the API's set.
    pub schema: Option<(String, u32)>,
}

/// A parameter or header: its name, type and allowed values.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub ty: ParamType,
    pub values: Vec<String>,
    pub required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
    /// array, object and anything else: not checked beyond presence
    Other,
}

impl ParamType {
    pub fn of(name: &str) -> ParamType {
        match name {
            "integer" => ParamType::Integer,
            "number" => ParamType::Number,
            "boolean" => ParamType::Boolean,
            "string" | "" => ParamType::String,
            _ => ParamType::Other,
        }
    }
}

impl Param {
    /// Why `value` does not conform, in Newtonsoft's words; None when it does.
    pub fn problem(&self, value: &str) -> Option<String> {
        let (ok, expected) = match self.ty {
            ParamType::Integer => (value.parse::<i64>().is_ok(), "Integer"),
            ParamType::Number => (value.parse::<f64>().is_ok_and(f64::is_finite), "Number"),
            ParamType::Boolean => (
                matches!(value, "true" | "false" | "True" | "False"),
                "Boolean",
            ),
            ParamType::String | ParamType::Other => (true, "String"),
        };
        if !ok {
            return Some(format!("Invalid type. Expected {expected} but got String."));
        }
        if !self.values.is_empty() && !self.values.iter().any(|v| v == value) {
            return Some(format!("Value {value} is not defined in enum."));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::expr::parse_json;

    fn set(doc: &str) -> SchemaSet {
        let v: Value = miniserde::json::from_str(doc).unwrap();
        SchemaSet::compile(&[&v]).unwrap()
    }

    #[test]
    fn bodies_are_checked_with_newtonsoft_messages() {
        let s = set(r##"{"components": {"schemas": {
              "Pet": {"type": "object", "required": ["id", "name"], "additionalProperties": false,
                "properties": {"id": {"type": "integer", "minimum": 1}, "name": {"type": "string", "maxLength": 5},
                  "tag": {"type": "string", "nullable": true, "pattern": "^[a-z]+$"},
                  "kind": {"enum": ["cat", "dog"]}, "born": {"type": "string", "format": "date"},
                  "friends": {"type": "array", "maxItems": 2, "items": {"$ref": "#/components/schemas/Pet"}}}},
              "Shape": {"oneOf": [{"type": "object", "required": ["r"]}, {"type": "object", "required": ["w"]}]}}}}"##);
        let pet = s.named("Pet").unwrap();
        let check =
            |body: &str, allow: Option<bool>| s.validate(pet, &parse_json(body).unwrap(), allow);
        assert!(check(
            r#"{"id": 1, "name": "Rex", "tag": null, "kind": "dog", "born": "2020-01-31"}"#,
            None
        )
        .is_empty());
        assert_eq!(
            check(r#"{"id": "7", "name": "Rexanne", "tag": "A1", "kind": "cow", "born": "31/01/2020", "extra": 1}"#, None),
            [
                "Invalid type. Expected Integer but got String. Path 'id'.",
                "String 'Rexanne' exceeds maximum length of 5. Path 'name'.",
                "String 'A1' does not match regex pattern '^[a-z]+$'. Path 'tag'.",
                "Value cow is not defined in enum. Path 'kind'.",
                "String '31/01/2020' does not validate against format 'date'. Path 'born'.",
                "Property 'extra' has not been defined and the schema does not allow additional properties. Path 'extra'.",
            ]
        );
        // recursion through $ref, paths into arrays, minimum, required
        assert_eq!(
            check(
                r#"{"id": 1, "name": "a", "friends": [{"id": 0, "name": "b"}, {"name": "c"}]}"#,
                None
            ),
            [
                "Integer 0 is less than minimum value of 1. Path 'friends[0].id'.",
                "Required properties are missing from object: id. Path 'friends[1]'.",
            ]
        );
        // allow-additional-properties="true" overrides the schema
        assert!(check(r#"{"id": 1, "name": "a", "extra": true}"#, Some(true)).is_empty());
        assert_eq!(
            check("[1]", None),
            ["Invalid type. Expected Object but got Array. Path ''."]
        );
        let shape = s.named("Shape").unwrap();
        let one = |body: &str| s.validate(shape, &parse_json(body).unwrap(), None);
        assert!(one(r#"{"r": 1}"#).is_empty());
        assert_eq!(
            one(r#"{"x": 1}"#),
            ["JSON is valid against no schemas from 'oneOf'. Path ''."]
        );
        assert_eq!(
            one(r#"{"r": 1, "w": 2}"#),
            ["JSON is valid against more than one schema from 'oneOf'. Valid schema indexes: 0, 1. Path ''."]
        );
        let bad: Value =
            miniserde::json::from_str(r##"{"definitions": {"A": {"$ref": "#/definitions/B"}}}"##)
                .unwrap();
        assert_eq!(
            SchemaSet::compile(&[&bad]).unwrap_err(),
            "schema 'A': $ref '#/definitions/B' names no schema of the API"
        );
    }
}
