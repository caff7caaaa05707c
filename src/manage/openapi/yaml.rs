//! YAML text to the plane's JSON values, for OpenAPI documents written in YAML. Built on
//! yaml-rust2's event parser rather than its tree, so that anchors and aliases are
//! expanded under a node budget (a "billion laughs" document stops with an error
//! instead of exhausting memory) and errors carry a line and column.
//! Scalars resolve by YAML 1.2's core schema; mapping keys keep the text they were
//! written with (`200:` is the key "200", as OpenAPI means it).
//! Must not touch: OpenAPI semantics (read.rs), storage.

use std::collections::HashMap;

use super::ordered::{Map, Node};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// How many nodes a document may expand to, aliases counted at their full size.
pub const MAX_NODES: usize = 2_000_000;
/// How deeply collections may nest.
const MAX_DEPTH: usize = 256;

/// Parses one YAML document into a value.
pub fn parse(text: &str) -> Result<Node, String> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    let loaded = parser.load(&mut builder, false);
    if let Some(e) = builder.error.take() {
        return Err(e);
    }
    loaded.map_err(|e| {
        format!(
            "YAML: {} at line {} column {}",
            e.info(),
            e.marker().line(),
            e.marker().col() + 1
        )
    })?;
    builder
        .root
        .ok_or_else(|| "YAML: the document is empty".into())
}

enum Open {
    Seq(Vec<Node>, usize),
    Map {
        map: Map,
        anchor: usize,
        key: Option<String>,
        /// Keys that came from a merge (`<<`): an explicit key replaces them.
        merged: Vec<String>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    root: Option<Node>,
    /// Anchored values and how many nodes each holds.
    anchors: HashMap<usize, (Node, usize)>,
    /// Nodes of the open collections, per level, to size anchors.
    sizes: Vec<usize>,
    nodes: usize,
    error: Option<String>,
}

impl Builder {
    fn fail(&mut self, mark: Marker, why: &str) {
        if self.error.is_none() {
            self.error = Some(format!(
                "YAML: {why} at line {} column {}",
                mark.line(),
                mark.col() + 1
            ));
        }
    }

    fn count(&mut self, n: usize, mark: Marker) -> bool {
        self.nodes = self.nodes.saturating_add(n);
        if let Some(top) = self.sizes.last_mut() {
            *top = top.saturating_add(n);
        }
        if self.nodes > MAX_NODES {
            self.fail(
                mark,
                &format!("the document expands to more than {MAX_NODES} nodes"),
            );
            return false;
        }
        true
    }

    /// A finished value goes into the collection open above it (or is the root).
    fn place(&mut self, value: Node, key_text: Option<String>, mark: Marker) {
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Open::Seq(items, _)) => items.push(value),
            Some(Open::Map {
                map, key, merged, ..
            }) => match key.take() {
                None => match key_text {
                    Some(k) => *key = Some(k),
                    None => self.fail(mark, "a mapping key must be a scalar"),
                },
                Some(k) if k == "<<" => match value {
                    // a merge key: entries not written out explicitly
                    Node::Obj(from) => {
                        for (k, v) in from.entries {
                            if map.insert_new(k.clone(), v) {
                                merged.push(k);
                            }
                        }
                    }
                    _ => self.fail(mark, "a merge key (<<) needs a mapping"),
                },
                Some(k) => {
                    if let Some(i) = merged.iter().position(|m| *m == k) {
                        merged.swap_remove(i);
                        map.set(k, value);
                    } else if map.contains(&k) {
                        let why = format!("duplicate key '{k}'");
                        self.fail(mark, &why);
                    } else {
                        map.insert_new(k, value);
                    }
                }
            },
        }
    }

    fn remember(&mut self, anchor: usize, value: &Node, size: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, (value.clone(), size));
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                if !self.count(1, mark) {
                    return;
                }
                let value = match resolve(&text, style, tag.as_ref()) {
                    Ok(v) => v,
                    Err(why) => return self.fail(mark, &why),
                };
                self.remember(anchor, &value, 1);
                self.place(value, Some(text), mark);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    return self.fail(mark, "collections nest too deeply");
                }
                if !self.count(1, mark) {
                    return;
                }
                self.sizes.push(1);
                self.stack.push(match ev {
                    Event::SequenceStart(..) => Open::Seq(Vec::new(), anchor),
                    _ => Open::Map {
                        map: Map::default(),
                        anchor,
                        key: None,
                        merged: Vec::new(),
                    },
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let size = self.sizes.pop().unwrap_or(1);
                let (value, anchor) = match self.stack.pop() {
                    Some(Open::Seq(items, anchor)) => (Node::Arr(items), anchor),
                    Some(Open::Map {
                        map, anchor, key, ..
                    }) => {
                        if key.is_some() {
                            return self.fail(mark, "a mapping key has no value");
                        }
                        (Node::Obj(map), anchor)
                    }
                    None => return,
                };
                if let Some(parent) = self.sizes.last_mut() {
                    // the parent counted the start already
                    *parent = parent.saturating_add(size - 1);
                }
                self.remember(anchor, &value, size);
                self.place(value, None, mark);
            }
            Event::Alias(anchor) => {
                let Some((value, size)) = self.anchors.get(&anchor).cloned() else {
                    return self.fail(mark, "an alias to an unknown anchor");
                };
                if !self.count(size, mark) {
                    return;
                }
                let key_text = match &value {
                    Node::Str(s) => Some(s.clone()),
                    _ => None,
                };
                self.place(value, key_text, mark);
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

/// A scalar's value: quoted scalars and `!!str` are strings; plain ones resolve by the
/// core schema (null, booleans, integers, floats, else a string).
fn resolve(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Result<Node, String> {
    if let Some(tag) = tag {
        if tag.handle == "tag:yaml.org,2002:" || tag.handle == "!!" {
            return match tag.suffix.as_str() {
                "str" | "binary" | "timestamp" => Ok(Node::Str(text.to_string())),
                "null" => Ok(Node::Null),
                "bool" | "int" | "float" => match plain(text) {
                    Node::Str(_) => Err(format!("'{text}' is not a {}", tag.suffix)),
                    v => Ok(v),
                },
                _ => Ok(Node::Str(text.to_string())),
            };
        }
        return Ok(Node::Str(text.to_string()));
    }
    Ok(match style {
        TScalarStyle::Plain => plain(text),
        _ => Node::Str(text.to_string()),
    })
}

fn plain(text: &str) -> Node {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Node::Null,
        "true" | "True" | "TRUE" => return Node::Bool(true),
        "false" | "False" | "FALSE" => return Node::Bool(false),
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        let negative = text.starts_with('-');
        if let Ok(u) = digits.parse::<u64>() {
            if !negative {
                return Node::Num(u.to_string());
            }
            if let Ok(i) = i64::try_from(u) {
                return Node::Num((-i).to_string());
            }
        }
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(u) = u64::from_str_radix(hex, 16) {
            return Node::Num(u.to_string());
        }
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if let Ok(u) = u64::from_str_radix(oct, 8) {
            return Node::Num(u.to_string());
        }
    }
    let float_like = digits
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && digits.bytes().any(|b| b.is_ascii_digit())
        && digits.bytes().filter(|&b| b == b'.').count() <= 1;
    if float_like {
        if let Ok(f) = text.parse::<f64>() {
            if f.is_finite() {
                return Node::Num(format!("{f:?}"));
            }
        }
    }
    match digits {
        ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN" => {
            // JSON has no such numbers; keep the text
            Node::Str(text.to_string())
        }
        _ => Node::Str(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> String {
        miniserde::json::to_string(&parse(text).unwrap().to_value())
    }

    #[test]
    fn scalars_keys_anchors_and_bounds() {
        assert_eq!(
            json("openapi: 3.0.3\nversion: 1.0\ncount: 12\nneg: -3\nok: true\nnone: ~\nq: '12'\nresponses:\n  200:\n    description: OK\n"),
            r#"{"count":12,"neg":-3,"none":null,"ok":true,"openapi":"3.0.3","q":"12","responses":{"200":{"description":"OK"}},"version":1.0}"#
        );
        assert_eq!(
            json("base: &b {a: 1, b: 2}\nuse:\n  <<: *b\n  b: 3\nlist: [*b, x]\n"),
            r#"{"base":{"a":1,"b":2},"list":[{"a":1,"b":2},"x"],"use":{"a":1,"b":3}}"#
        );
        assert_eq!(
            json("text: |\n  line one\n  line two\nfolded: >\n  a\n  b\n"),
            r#"{"folded":"a b\n","text":"line one\nline two\n"}"#
        );
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert!(e.contains("duplicate key 'a' at line 2"), "{e}");
        let e = parse("a: [1, 2\n").unwrap_err();
        assert!(e.starts_with("YAML: "), "{e}");
        // nine levels of ten aliases each: 10^9 nodes
        let mut laughs = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            laughs.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = parse(&laughs).unwrap_err();
        assert!(e.contains("expands to more than"), "{e}");
        let deep = "[".repeat(300) + &"]".repeat(300);
        let e = parse(&deep).unwrap_err();
        assert!(
            e.contains("nest too deeply") || e.contains("recursion limit"),
            "{e}"
        );
    }
}
