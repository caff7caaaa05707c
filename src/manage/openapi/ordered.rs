//! A document as it was written: objects keep their keys in order and numbers their
//! JSON text. The mapping reads the plane's JSON values (`to_value`); examples are
//! written from this tree (`json_at`), so a mock response shows its properties in the
//! document's order.
//! Must not touch: what the values mean.

use std::collections::HashSet;

use miniserde::json::{Array, Number, Object, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    /// JSON number text.
    Num(String),
    Str(String),
    Arr(Vec<Node>),
    Obj(Map),
}

/// An object's entries in order, with an index of its keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Map {
    pub entries: Vec<(String, Node)>,
    keys: HashSet<String>,
}

impl Map {
    pub fn contains(&self, key: &str) -> bool {
        self.keys.contains(key)
    }

    /// Adds `key` (true) or leaves an existing one (false).
    pub fn insert_new(&mut self, key: String, value: Node) -> bool {
        if !self.keys.insert(key.clone()) {
            return false;
        }
        self.entries.push((key, value));
        true
    }

    /// Adds `key` or replaces its value.
    pub fn set(&mut self, key: String, value: Node) {
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => {
                self.keys.insert(key.clone());
                self.entries.push((key, value));
            }
        }
    }

    fn get(&self, key: &str) -> Option<&Node> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

impl Node {
    /// The plane's JSON value (a repeated key: the last one wins).
    pub fn to_value(&self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Num(text) => Value::Number(number(text)),
            Node::Str(s) => Value::String(s.clone()),
            Node::Arr(items) => Value::Array(items.iter().map(Node::to_value).collect::<Array>()),
            Node::Obj(map) => {
                let mut o = Object::new();
                for (k, v) in &map.entries {
                    o.insert(k.clone(), v.to_value());
                }
                Value::Object(o)
            }
        }
    }

    /// The node a local JSON pointer names.
    pub fn at(&self, pointer: &str) -> Option<&Node> {
        let mut here = self;
        for token in super::pointer::tokens(pointer)? {
            here = match here {
                Node::Obj(map) => map.get(&token)?,
                Node::Arr(items) => items.get(token.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(here)
    }

    /// Compact JSON text, keys in the document's order.
    pub fn json(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Node::Null => out.push_str("null"),
            Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Node::Num(text) => out.push_str(text),
            Node::Str(s) => crate::telemetry::push_json_str(out, s),
            Node::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Node::Obj(map) => {
                out.push('{');
                for (i, (k, v)) in map.entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    crate::telemetry::push_json_str(out, k);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    /// From the config reader's tree (JSON documents).
    pub fn from_json(j: &crate::config::json::Json) -> Node {
        use crate::config::json::Json;
        match j {
            Json::Null => Node::Null,
            Json::Bool(b) => Node::Bool(*b),
            Json::Number(n) => Node::Num((*n).to_string()),
            Json::String(s) => Node::Str(s.to_string()),
            Json::Array(items) => Node::Arr(items.iter().map(Node::from_json).collect()),
            Json::Object(fields) => {
                let mut map = Map::default();
                for (k, v) in fields {
                    map.set(k.to_string(), Node::from_json(v));
                }
                Node::Obj(map)
            }
        }
    }
}

/// JSON number text as the plane's number.
fn number(text: &str) -> Number {
    if let Ok(u) = text.parse::<u64>() {
        return Number::U64(u);
    }
    if let Ok(i) = text.parse::<i64>() {
        return Number::I64(i);
    }
    Number::F64(text.parse::<f64>().unwrap_or(0.0))
}
