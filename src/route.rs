//! The routing table: built once per config, read by the event loop for every request.
//! Two segment tries, so a lookup costs one hash probe per path segment whatever the
//! number of APIs or operations: the API trie finds the longest API `path` prefix on a
//! segment boundary (then hostname and scheme), the API's operation trie finds the
//! operation by `urlTemplate` (literal segments, then segments mixing text and
//! parameters such as `{base}...{head}`, then `{param}`, then a trailing `/*`) and method
//! (exact before `*`).
//! Must not touch: sockets, headers, the config document (compile.rs feeds it).

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::http::query::{decode, query_value};

/// FNV-1a: keys come from the config, not from clients, and segments are short.
#[derive(Default)]
pub struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        self.0 = h;
    }
}

pub type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// One segment of a URL template, borrowed from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'t> {
    Literal(&'t str),
    Param(&'t str),
    /// Text and parameters in one segment, as written: `{base}...{head}`, `{id}.json`.
    Pattern(&'t str),
}

/// A segment as a span of the template's text (a parameter's span is its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SegmentSpan {
    start: u32,
    len: u32,
    param: bool,
    /// A segment mixing text and parameters (the span is the whole segment).
    pattern: bool,
}

/// A query parameter a template requires, as spans of the template's text: `name={p}`
/// captures its value as parameter `p`, `name=text` requires that value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QuerySpan {
    name: SegmentSpan,
    value: SegmentSpan,
}

/// A parsed `urlTemplate`: `/items/{id}/*` = [Literal(items), Param(id)] + wildcard;
/// `/search?q={term}&v=2` also requires the query parameters `q` (captured as `term`)
/// and `v` (equal to `2`), as APIM's templates do.
/// The text as written, and its parts as spans of it: a few allocations per operation
/// however many segments it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: Box<str>,
    segments: Box<[SegmentSpan]>,
    query: Box<[QuerySpan]>,
    pub wildcard: bool,
}

impl Default for Template {
    /// Matches everything and has no text (the operation of calls that match no API).
    fn default() -> Template {
        Template {
            text: "".into(),
            segments: Box::default(),
            query: Box::default(),
            wildcard: true,
        }
    }
}

/// Most segments a template may have; also bounds the matcher's recursion.
pub const MAX_TEMPLATE_SEGMENTS: usize = 32;

impl Template {
    /// Parses a template; the error text is shown after the JSON path.
    ///
    /// ```
    /// use edgegate::route::{Segment, Template};
    ///
    /// let t = Template::parse("/items/{id}/*").unwrap();
    /// assert_eq!(t.segments().collect::<Vec<_>>(), [Segment::Literal("items"), Segment::Param("id")]);
    /// assert!(t.wildcard);
    /// assert_eq!(t.text(), "/items/{id}/*");
    /// assert_eq!(Template::parse("/a/*/b").unwrap_err(), "'*' is only allowed as the last segment");
    ///
    /// let q = Template::parse("/search?q={term}&v=2").unwrap();
    /// assert_eq!(q.query().collect::<Vec<_>>(), [("q", Segment::Param("term")), ("v", Segment::Literal("2"))]);
    /// assert!(q.accepts_query(Some("v=2&q=rust")));
    /// assert!(!q.accepts_query(Some("q=rust")));
    /// assert_eq!(q.param("/search", Some("v=2&q=a%20b"), "term"), Some("a%20b"));
    /// ```
    pub fn parse(text: &str) -> Result<Template, String> {
        let (path, query) = match text.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (text, None),
        };
        let rest = path.strip_prefix('/').ok_or("must start with '/'")?;
        if text.len() > u32::MAX as usize {
            return Err("too long".into());
        }
        let mut segments: Vec<SegmentSpan> = Vec::new();
        let mut wildcard = false;
        if !rest.is_empty() {
            let parts: Vec<&str> = rest.split('/').collect();
            // each part's offset in `text`: after the leading '/' and the parts before it
            let mut offset = 1usize;
            for (i, part) in parts.iter().enumerate() {
                let at = offset;
                offset += part.len() + 1;
                let last = i + 1 == parts.len();
                if *part == "*" {
                    if !last {
                        return Err("'*' is only allowed as the last segment".into());
                    }
                    wildcard = true;
                } else if part.is_empty() {
                    if !last {
                        return Err("empty segment".into());
                    }
                } else if let Some(name) = part
                    .strip_prefix('{')
                    .and_then(|p| p.strip_suffix('}'))
                    .filter(|n| !n.contains(['{', '}']))
                {
                    if !is_param_name(name) {
                        return Err(format!("bad parameter name in segment '{part}'"));
                    }
                    if taken_names(text, &segments).any(|n| n == name) {
                        return Err(format!("parameter '{name}' appears twice"));
                    }
                    segments.push(SegmentSpan {
                        start: (at + 1) as u32,
                        len: name.len() as u32,
                        param: true,
                        pattern: false,
                    });
                } else if part.contains(['{', '}', '*']) {
                    let names = pattern_names(part)?;
                    if let Some(twice) = names
                        .iter()
                        .enumerate()
                        .find(|(i, n)| {
                            names[..*i].contains(n)
                                || taken_names(text, &segments).any(|t| t == **n)
                        })
                        .map(|(_, n)| *n)
                    {
                        return Err(format!("parameter '{twice}' appears twice"));
                    }
                    segments.push(SegmentSpan {
                        start: at as u32,
                        len: part.len() as u32,
                        param: false,
                        pattern: true,
                    });
                } else {
                    segments.push(SegmentSpan {
                        start: at as u32,
                        len: part.len() as u32,
                        param: false,
                        pattern: false,
                    });
                }
            }
        }
        if segments.len() > MAX_TEMPLATE_SEGMENTS {
            return Err(format!("more than {MAX_TEMPLATE_SEGMENTS} segments"));
        }
        let query = match query {
            Some(query) => parse_query_part(text, path.len() + 1, query, &segments)?,
            None => Vec::new(),
        };
        Ok(Template {
            text: text.into(),
            segments: segments.into_boxed_slice(),
            query: query.into_boxed_slice(),
            wildcard,
        })
    }

    /// The query parameters it requires, in order: (name, `Param(captured as)` or
    /// `Literal(required value)`).
    pub fn query(&self) -> impl Iterator<Item = (&str, Segment<'_>)> + '_ {
        self.query.iter().map(|q| {
            let name = span_text(&self.text, q.name);
            let value = span_text(&self.text, q.value);
            if q.value.param {
                (name, Segment::Param(value))
            } else {
                (name, Segment::Literal(value))
            }
        })
    }

    /// Whether a request's query has every parameter the template requires (a literal
    /// one with that value, compared decoded).
    pub fn accepts_query(&self, query: Option<&str>) -> bool {
        self.query().all(|(name, want)| match want {
            // a query value is never a pattern
            Segment::Param(_) | Segment::Pattern(_) => query_meets(query, name, None),
            Segment::Literal(value) => query_meets(query, name, Some(&decode(value))),
        })
    }

    /// The template as written in the config.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Its path segments in order (the trailing `/*` is `wildcard`).
    pub fn segments(&self) -> impl Iterator<Item = Segment<'_>> + '_ {
        self.segments.iter().map(|s| {
            let text = span_text(&self.text, *s);
            if s.param {
                Segment::Param(text)
            } else if s.pattern {
                Segment::Pattern(text)
            } else {
                Segment::Literal(text)
            }
        })
    }

    /// The raw value of parameter `name` in `rest` (the path after the API path) and
    /// `query` that this template matched: path segments line up by position, query
    /// parameters by name.
    pub fn param<'r>(&self, rest: &'r str, query: Option<&'r str>, name: &str) -> Option<&'r str> {
        let at = self.segments().enumerate().find(|(_, s)| match s {
            Segment::Param(n) => *n == name,
            Segment::Pattern(p) => pattern_has(p, name),
            Segment::Literal(_) => false,
        });
        match at {
            Some((i, seg)) => {
                let value = rest.strip_prefix('/').unwrap_or(rest).split('/').nth(i)?;
                match seg {
                    Segment::Pattern(p) => {
                        let mut found = None;
                        pattern_values(p, value, |n, v| {
                            if n == name {
                                found = Some(v);
                            }
                        });
                        found
                    }
                    _ => Some(value),
                }
            }
            None => {
                let (key, _) = self
                    .query()
                    .find(|(_, v)| matches!(v, Segment::Param(n) if *n == name))?;
                query_value(query, key)
            }
        }
    }

    /// Every parameter's name and raw value in `rest` and `query`, in template order.
    pub fn params<'r>(&self, rest: &'r str, query: Option<&'r str>) -> Vec<(&str, &'r str)> {
        let mut values = rest.strip_prefix('/').unwrap_or(rest).split('/');
        let mut out = Vec::new();
        for seg in self.segments() {
            match (seg, values.next()) {
                (Segment::Param(name), Some(v)) => out.push((name, v)),
                (Segment::Pattern(p), Some(v)) => {
                    pattern_values(p, v, |name, value| out.push((name, value)));
                }
                _ => {}
            }
        }
        for (key, value) in self.query() {
            if let (Segment::Param(name), Some(v)) = (value, query_value(query, key)) {
                out.push((name, v));
            }
        }
        out
    }

    /// The template with parameter names erased: two operations with the same shape
    /// and method can never both be reached.
    pub fn shape(&self) -> String {
        let mut s = String::new();
        for seg in self.segments() {
            s.push('/');
            match seg {
                Segment::Literal(l) => s.push_str(l),
                Segment::Param(_) => s.push_str("{}"),
                Segment::Pattern(p) => {
                    let mut pieces = PatternPieces(p);
                    while let Some((literal, param)) = pieces.next_piece() {
                        s.push_str(literal);
                        if param.is_some() {
                            s.push_str("{}");
                        }
                    }
                }
            }
        }
        if self.wildcard {
            s.push_str("/*");
        }
        let mut query: Vec<String> = self
            .query()
            .map(|(name, value)| match value {
                Segment::Param(_) | Segment::Pattern(_) => format!("{name}={{}}"),
                Segment::Literal(v) => format!("{name}={v}"),
            })
            .collect();
        query.sort_unstable();
        if !query.is_empty() {
            s.push('?');
            s.push_str(&query.join("&"));
        }
        s
    }
}

/// Whether `query` has parameter `name` and, for a literal requirement, that value
/// (`literal` is decoded; the request's value is decoded to compare).
fn query_meets(query: Option<&str>, name: &str, literal: Option<&str>) -> bool {
    match (query_value(query, name), literal) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(got), Some(want)) => decode(got) == want,
    }
}

/// A span's text (empty if it were out of range, which parsing rules out).
fn span_text(text: &str, s: SegmentSpan) -> &str {
    text.get(s.start as usize..(s.start + s.len) as usize)
        .unwrap_or("")
}

fn is_param_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The parameter names already taken by `segments` (plain and in patterns).
fn taken_names<'a>(
    text: &'a str,
    segments: &'a [SegmentSpan],
) -> impl Iterator<Item = &'a str> + 'a {
    segments.iter().flat_map(move |s| {
        let t = span_text(text, *s);
        let names: Vec<&str> = if s.param {
            vec![t]
        } else if s.pattern {
            pattern_names(t).unwrap_or_default()
        } else {
            Vec::new()
        };
        names
    })
}

/// A pattern segment read piece by piece: (literal text, then the parameter after it,
/// if any).
struct PatternPieces<'p>(&'p str);

impl<'p> PatternPieces<'p> {
    fn next_piece(&mut self) -> Option<(&'p str, Option<&'p str>)> {
        if self.0.is_empty() {
            return None;
        }
        match self.0.split_once('{') {
            Some((literal, rest)) => {
                let (name, after) = rest.split_once('}').unwrap_or((rest, ""));
                self.0 = after;
                Some((literal, Some(name)))
            }
            None => {
                let literal = self.0;
                self.0 = "";
                Some((literal, None))
            }
        }
    }
}

/// The parameter names of a segment that mixes text and `{parameters}`: each a valid
/// name, two parameters never side by side (where one ends would be a guess), no `*`.
fn pattern_names(part: &str) -> Result<Vec<&str>, String> {
    if part.contains('*') {
        return Err(format!(
            "segment '{part}' has a '*' that is not the last segment"
        ));
    }
    let mut names = Vec::new();
    let mut pieces = PatternPieces(part);
    let mut first = true;
    while let Some((literal, param)) = pieces.next_piece() {
        if literal.contains(['{', '}']) {
            return Err(format!("bad parameter name in segment '{part}'"));
        }
        if literal.is_empty() && !first && param.is_some() {
            return Err(format!(
                "segment '{part}' has two parameters side by side; put text between them"
            ));
        }
        first = false;
        if let Some(name) = param {
            if !is_param_name(name) {
                return Err(format!("bad parameter name in segment '{part}'"));
            }
            names.push(name);
        }
    }
    Ok(names)
}

/// Whether pattern `p` holds parameter `name`.
fn pattern_has(p: &str, name: &str) -> bool {
    let mut pieces = PatternPieces(p);
    while let Some((_, param)) = pieces.next_piece() {
        if param == Some(name) {
            return true;
        }
    }
    false
}

/// Matches a request's path segment against pattern `p`, calling `found` with each
/// parameter's raw value; false when it does not match. The text before the first
/// parameter and after the last must be there as written; each parameter takes the
/// shortest non-empty text up to the next piece of text (the last, all up to the final
/// text). No allocation: the event loop matches with it.
fn pattern_values<'p, 's>(
    p: &'p str,
    segment: &'s str,
    mut found: impl FnMut(&'p str, &'s str),
) -> bool {
    let mut pieces = PatternPieces(p);
    let mut rest = segment;
    let mut pending: Option<&str> = None;
    while let Some((literal, param)) = pieces.next_piece() {
        match pending.take() {
            None => match rest.strip_prefix(literal) {
                Some(r) => rest = r,
                None => return false,
            },
            Some(name) => {
                // the final literal is at the end; a middle one, the first after one byte
                let at = if pieces.0.is_empty() && param.is_none() {
                    match rest.strip_suffix(literal) {
                        Some(v) => v.len(),
                        None => return false,
                    }
                } else {
                    match rest.get(1..).and_then(|r| r.find(literal)) {
                        Some(i) if !literal.is_empty() => i + 1,
                        _ => return false,
                    }
                };
                if at == 0 {
                    return false;
                }
                found(name, &rest[..at]);
                rest = &rest[at + literal.len()..];
            }
        }
        pending = param;
    }
    match pending {
        Some(name) if !rest.is_empty() => {
            found(name, rest);
            true
        }
        Some(_) => false,
        None => rest.is_empty(),
    }
}

/// The query part of a template (`query` starts at `at` in `text`): `name={param}` or
/// `name=value` pairs joined by `&`, each name once, parameter names unique across the
/// path and the query.
fn parse_query_part(
    text: &str,
    mut at: usize,
    query: &str,
    segments: &[SegmentSpan],
) -> Result<Vec<QuerySpan>, String> {
    let span = |start: usize, s: &str, param: bool| SegmentSpan {
        start: start as u32,
        len: s.len() as u32,
        param,
        pattern: false,
    };
    let mut out: Vec<QuerySpan> = Vec::new();
    for pair in query.split('&') {
        let start = at;
        at += pair.len() + 1;
        let Some((name, value)) = pair.split_once('=') else {
            return Err(format!(
                "query parameter '{pair}' needs a value: name={{param}} or name=value"
            ));
        };
        if name.is_empty() || name.contains(['{', '}', '/', '#']) {
            return Err(format!("bad query parameter name '{name}'"));
        }
        if out.iter().any(|q| span_text(text, q.name) == name) {
            return Err(format!("query parameter '{name}' appears twice"));
        }
        let value_at = start + name.len() + 1;
        let value = match value.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
            Some(param) => {
                if !is_param_name(param) {
                    return Err(format!("bad parameter name in query parameter '{pair}'"));
                }
                let taken = segments.iter().chain(out.iter().map(|q| &q.value));
                if taken
                    .filter(|s| s.param)
                    .any(|s| span_text(text, *s) == param)
                {
                    return Err(format!("parameter '{param}' appears twice"));
                }
                span(value_at + 1, param, true)
            }
            None if value.contains(['{', '}', '#']) => {
                return Err(format!(
                    "query parameter '{pair}' mixes text and a parameter, which is not supported"
                ));
            }
            None => span(value_at, value, false),
        };
        out.push(QuerySpan {
            name: span(start, name, false),
            value,
        });
    }
    Ok(out)
}

/// A node of the operation trie while it is built (texts borrowed from the templates).
#[derive(Default)]
struct BuildNode<'t> {
    literal: FnvMap<&'t str, u32>,
    /// Segments mixing text and parameters, tried in the order they were defined.
    patterns: Vec<(&'t str, u32)>,
    param: Option<u32>,
    terminal: Vec<(&'t str, u32)>,
    wildcard: Vec<(&'t str, u32)>,
}

/// A query parameter an operation requires while its table is built: its name, and
/// its decoded value when the template gives one.
type Requirement<'t> = (&'t str, Option<Cow<'t, str>>);

/// A run of entries in one of the table's arrays: (start, length).
#[derive(Default, Clone, Copy)]
struct Run(u32, u32);

impl Run {
    fn of<T>(self, all: &[T]) -> &[T] {
        let (start, len) = (self.0 as usize, self.1 as usize);
        all.get(start..start + len).unwrap_or(&[])
    }
}

/// A node of the operation trie, flattened: its literal children, its parameter child,
/// and the operations that end here (exactly or with `/*`), as runs of the table's
/// arrays.
#[derive(Default, Clone, Copy)]
struct OpNode {
    /// Sorted by segment, for a binary search.
    literal: Run,
    /// Pattern segments, in definition order (a run of `OpTable::patterns`).
    patterns: Run,
    param: Option<u32>,
    /// (method or "*", operation index).
    terminal: Run,
    wildcard: Run,
}

/// The operations of one API: a segment trie in a few flat arrays, with every segment
/// and method text in one string (no map or string allocation per node), built once per
/// config.
#[derive(Default)]
pub struct OpTable {
    nodes: Box<[OpNode]>,
    /// (segment, child node), by node run, sorted within each run.
    edges: Box<[(Span, u32)]>,
    /// (pattern segment, child node), by node run.
    patterns: Box<[(Span, u32)]>,
    /// (method, operation index), by node run.
    ends: Box<[(Span, u32)]>,
    /// (query parameter name, the decoded value it must have if literal), by operation
    /// run.
    requirements: Box<[(Span, Option<Span>)]>,
    /// Each operation's run of `requirements`, by operation index.
    op_requirements: Box<[Run]>,
    text: Box<str>,
}

/// A slice of `OpTable::text`.
#[derive(Clone, Copy)]
struct Span(u32, u32);

impl OpTable {
    pub fn build<'t>(ops: impl Iterator<Item = (&'t str, &'t Template)>) -> OpTable {
        let mut nodes = vec![BuildNode::default()];
        let mut requirements = Vec::new();
        for (index, (method, template)) in ops.enumerate() {
            // literal values decoded once here, not per request
            let required: Vec<Requirement> = template
                .query()
                .map(|(name, value)| match value {
                    Segment::Param(_) | Segment::Pattern(_) => (name, None),
                    Segment::Literal(v) => (name, Some(decode(v))),
                })
                .collect();
            requirements.push(required);
            let mut node = 0usize;
            for seg in template.segments() {
                let next = match seg {
                    Segment::Literal(l) => nodes[node].literal.get(l).copied(),
                    Segment::Param(_) => nodes[node].param,
                    Segment::Pattern(p) => nodes[node]
                        .patterns
                        .iter()
                        .find(|(q, _)| *q == p)
                        .map(|(_, n)| *n),
                };
                node = match next {
                    Some(n) => n as usize,
                    None => {
                        let n = nodes.len();
                        nodes.push(BuildNode::default());
                        match seg {
                            Segment::Literal(l) => {
                                nodes[node].literal.insert(l, n as u32);
                            }
                            Segment::Param(_) => nodes[node].param = Some(n as u32),
                            Segment::Pattern(p) => nodes[node].patterns.push((p, n as u32)),
                        }
                        n
                    }
                };
            }
            let entry = (method, index as u32);
            if template.wildcard {
                nodes[node].wildcard.push(entry);
            } else {
                nodes[node].terminal.push(entry);
            }
        }
        OpTable::flatten(nodes, &requirements)
    }

    fn flatten(built: Vec<BuildNode>, required: &[Vec<Requirement>]) -> OpTable {
        let mut text = String::new();
        let mut span = |s: &str| {
            let start = text.len() as u32;
            text.push_str(s);
            Span(start, s.len() as u32)
        };
        let mut edges = Vec::new();
        let mut patterns = Vec::new();
        let mut ends = Vec::new();
        let mut nodes = Vec::with_capacity(built.len());
        for b in &built {
            let mut literal: Vec<(&str, u32)> = b.literal.iter().map(|(k, v)| (*k, *v)).collect();
            literal.sort_unstable();
            let start = edges.len() as u32;
            edges.extend(literal.iter().map(|(k, child)| (span(k), *child)));
            let literal = Run(start, literal.len() as u32);
            let pattern_start = patterns.len() as u32;
            patterns.extend(b.patterns.iter().map(|(p, child)| (span(p), *child)));
            let pattern_run = Run(pattern_start, b.patterns.len() as u32);
            let mut run_of = |list: &[(&str, u32)]| {
                let start = ends.len() as u32;
                ends.extend(list.iter().map(|(m, op)| (span(m), *op)));
                Run(start, list.len() as u32)
            };
            let terminal = run_of(&b.terminal);
            let wildcard = run_of(&b.wildcard);
            nodes.push(OpNode {
                literal,
                patterns: pattern_run,
                param: b.param,
                terminal,
                wildcard,
            });
        }
        let mut requirements = Vec::new();
        let mut op_requirements = Vec::with_capacity(required.len());
        for list in required {
            let start = requirements.len() as u32;
            requirements.extend(
                list.iter()
                    .map(|(name, value)| (span(name), value.as_deref().map(&mut span))),
            );
            op_requirements.push(Run(start, list.len() as u32));
        }
        OpTable {
            nodes: nodes.into_boxed_slice(),
            edges: edges.into_boxed_slice(),
            patterns: patterns.into_boxed_slice(),
            ends: ends.into_boxed_slice(),
            requirements: requirements.into_boxed_slice(),
            op_requirements: op_requirements.into_boxed_slice(),
            text: text.into_boxed_str(),
        }
    }

    fn str_of(&self, s: Span) -> &str {
        let (start, len) = (s.0 as usize, s.1 as usize);
        self.text.get(start..start + len).unwrap_or("")
    }

    /// The operation for `method` among `run` of the ends whose query parameters the
    /// request has: the method itself, else `*`; among those, the one requiring the
    /// most parameters, then the first defined.
    fn pick(&self, run: Run, method: &str, query: Option<&str>) -> Option<u32> {
        let candidates = run.of(&self.ends);
        let best = |want: &str| {
            candidates
                .iter()
                .filter(|(m, op)| self.str_of(*m) == want && self.query_holds(*op, query))
                .rev()
                .max_by_key(|(_, op)| self.required(*op).len())
                .map(|(_, op)| *op)
        };
        best(method).or_else(|| best("*"))
    }

    fn required(&self, op: u32) -> &[(Span, Option<Span>)] {
        self.op_requirements
            .get(op as usize)
            .map_or(&[], |run| run.of(&self.requirements))
    }

    fn query_holds(&self, op: u32, query: Option<&str>) -> bool {
        self.required(op).iter().all(|(name, value)| {
            query_meets(query, self.str_of(*name), value.map(|v| self.str_of(v)))
        })
    }

    /// The operation for `rest` (the path after the API path), the request's query and
    /// method.
    pub fn find(&self, rest: &str, query: Option<&str>, method: &str) -> Option<u32> {
        self.match_from(0, rest.strip_prefix('/').unwrap_or(rest), query, method)
    }

    fn match_from(
        &self,
        node: usize,
        rest: &str,
        query: Option<&str>,
        method: &str,
    ) -> Option<u32> {
        let n = self.nodes.get(node)?;
        if rest.is_empty() {
            if let Some(op) = self.pick(n.terminal, method, query) {
                return Some(op);
            }
        } else {
            let (segment, tail) = rest.split_once('/').unwrap_or((rest, ""));
            let edges = n.literal.of(&self.edges);
            if let Ok(i) = edges.binary_search_by(|(s, _)| self.str_of(*s).cmp(segment)) {
                if let Some(op) = self.match_from(edges[i].1 as usize, tail, query, method) {
                    return Some(op);
                }
            }
            for (pattern, child) in n.patterns.of(&self.patterns) {
                if pattern_values(self.str_of(*pattern), segment, |_, _| {}) {
                    if let Some(op) = self.match_from(*child as usize, tail, query, method) {
                        return Some(op);
                    }
                }
            }
            if let (Some(child), false) = (n.param, segment.is_empty()) {
                if let Some(op) = self.match_from(child as usize, tail, query, method) {
                    return Some(op);
                }
            }
        }
        self.pick(n.wildcard, method, query)
    }
}

/// What the API trie needs to know of each API.
pub struct ApiKey<'a> {
    pub path: &'a str,
    pub hostnames: &'a [String],
    pub http: bool,
    pub https: bool,
}

#[derive(Default)]
struct ApiNode {
    children: FnvMap<Box<str>, u32>,
    apis: Vec<u32>,
}

/// The APIs of a config, by path prefix.
pub struct ApiTable {
    nodes: Vec<ApiNode>,
    hostnames: Vec<Vec<String>>,
    schemes: Vec<(bool, bool)>,
}

/// An API match: its index and where in the path the rest (for the operation) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiMatch {
    pub api: u32,
    pub rest_offset: usize,
}

impl ApiTable {
    pub fn build<'a>(apis: impl Iterator<Item = ApiKey<'a>>) -> ApiTable {
        let mut table = ApiTable {
            nodes: vec![ApiNode::default()],
            hostnames: Vec::new(),
            schemes: Vec::new(),
        };
        for (index, api) in apis.enumerate() {
            let mut node = 0usize;
            for seg in api.path.split('/').filter(|s| !s.is_empty()) {
                node = match table.nodes[node].children.get(seg) {
                    Some(n) => *n as usize,
                    None => {
                        let n = table.nodes.len();
                        table.nodes.push(ApiNode::default());
                        table.nodes[node].children.insert(seg.into(), n as u32);
                        n
                    }
                };
            }
            table.nodes[node].apis.push(index as u32);
            table.hostnames.push(api.hostnames.to_vec());
            table.schemes.push((api.http, api.https));
        }
        table
    }

    /// Best API at one trie node: one naming this host first, then one with no hostnames.
    fn pick(&self, node: &ApiNode, host: &str, https: bool) -> Option<u32> {
        let usable = |a: &&u32| {
            let (http_ok, https_ok) = self.schemes[**a as usize];
            if https {
                https_ok
            } else {
                http_ok
            }
        };
        let named = node.apis.iter().filter(usable).find(|a| {
            self.hostnames[**a as usize]
                .iter()
                .any(|h| h.eq_ignore_ascii_case(host))
        });
        named
            .or_else(|| {
                node.apis
                    .iter()
                    .filter(usable)
                    .find(|a| self.hostnames[**a as usize].is_empty())
            })
            .copied()
    }

    /// The longest API path that prefixes `path` on a segment boundary.
    /// `host` is the request's host without port.
    pub fn find(&self, path: &str, host: &str, https: bool) -> Option<ApiMatch> {
        let mut node = &self.nodes[0];
        let mut best = self.pick(node, host, https).map(|api| ApiMatch {
            api,
            rest_offset: 0,
        });
        let mut offset = 0;
        let bytes = path.as_bytes();
        loop {
            // skip one '/'
            while offset < bytes.len() && bytes[offset] == b'/' {
                offset += 1;
            }
            if offset >= bytes.len() {
                return best;
            }
            let end = path[offset..].find('/').map_or(path.len(), |i| offset + i);
            let Some(child) = node.children.get(&path[offset..end]) else {
                return best;
            };
            node = &self.nodes[*child as usize];
            if let Some(api) = self.pick(node, host, https) {
                best = Some(ApiMatch {
                    api,
                    rest_offset: end,
                });
            }
            offset = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(list: &[(&str, &str)]) -> OpTable {
        let parsed: Vec<(String, Template)> = list
            .iter()
            .map(|(m, t)| (m.to_string(), Template::parse(t).unwrap()))
            .collect();
        OpTable::build(parsed.iter().map(|(m, t)| (m.as_str(), t)))
    }

    /// Segments that mix text and parameters (GitHub's `/compare/{base}...{head}`,
    /// `/{name}.json`): matched after literal segments and before a whole-segment
    /// parameter, each parameter the shortest non-empty text up to the next text.
    #[test]
    fn pattern_segments_match_and_capture() {
        let t = ops(&[
            ("GET", "/compare/{base}...{head}"),
            ("GET", "/compare/{ref}"),
            ("GET", "/files/{name}.json"),
            ("GET", "/files/latest.json"),
            ("GET", "/v{major}.{minor}/x"),
        ]);
        assert_eq!(t.find("/compare/main...dev", None, "GET"), Some(0));
        assert_eq!(t.find("/compare/main", None, "GET"), Some(1));
        assert_eq!(
            t.find("/compare/...dev", None, "GET"),
            Some(1),
            "an empty base"
        );
        assert_eq!(t.find("/files/a.json", None, "GET"), Some(2));
        assert_eq!(
            t.find("/files/latest.json", None, "GET"),
            Some(3),
            "literal first"
        );
        assert_eq!(t.find("/files/.json", None, "GET"), None);
        assert_eq!(t.find("/files/a.xml", None, "GET"), None);
        assert_eq!(t.find("/v1.2/x", None, "GET"), Some(4));
        let c = Template::parse("/compare/{base}...{head}").unwrap();
        assert_eq!(
            c.params("/compare/v1.0...feature...x", None),
            [("base", "v1.0"), ("head", "feature...x")]
        );
        assert_eq!(c.param("/compare/a...b", None, "head"), Some("b"));
        assert_eq!(c.shape(), "/compare/{}...{}");
        assert_eq!(
            c.segments().collect::<Vec<_>>(),
            [
                Segment::Literal("compare"),
                Segment::Pattern("{base}...{head}")
            ]
        );
        let v = Template::parse("/v{major}.{minor}/x").unwrap();
        assert_eq!(
            v.params("/v10.2/x", None),
            [("major", "10"), ("minor", "2")]
        );
        for (bad, why) in [
            ("/{a}{b}", "two parameters side by side"),
            ("/{a}-{a}", "parameter 'a' appears twice"),
            ("/{a}/x{a}", "parameter 'a' appears twice"),
            ("/x{a b}", "bad parameter name"),
            ("/x{a}*", "'*'"),
        ] {
            let e = Template::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn templates() {
        let t = Template::parse("/items/{id}/*").unwrap();
        assert_eq!(
            t.segments().collect::<Vec<_>>(),
            [Segment::Literal("items"), Segment::Param("id")]
        );
        assert!(t.wildcard);
        assert_eq!(t.shape(), "/items/{}/*");
        assert_eq!(t.param("/items/7/x", None, "id"), Some("7"));
        assert_eq!(Template::parse("/").unwrap().segments().count(), 0);
        let deep = Template::parse("/a/{b}/c/").unwrap();
        assert_eq!(
            deep.segments().collect::<Vec<_>>(),
            [
                Segment::Literal("a"),
                Segment::Param("b"),
                Segment::Literal("c")
            ]
        );
        assert_eq!(deep.text(), "/a/{b}/c/");
        assert!(Template::parse("items").is_err());
        assert!(Template::parse("/a/*/b").is_err());
        assert!(Template::parse("/a//b").is_err());
        assert!(Template::parse("/{id}.json").is_ok(), "a pattern segment");
        assert!(Template::parse("/{id}x{").is_err());
        assert!(Template::parse("/{a}/{a}").is_err());
        // query parameters: captured or literal, each name and parameter once
        let q = Template::parse("/a/{id}?b={b}&v=2.0&c={c}").unwrap();
        assert_eq!(q.shape(), "/a/{}?b={}&c={}&v=2.0");
        assert_eq!(q.text(), "/a/{id}?b={b}&v=2.0&c={c}");
        let query = Some("c=3&v=2%2E0&b=x%20y&z=1");
        assert!(q.accepts_query(query));
        assert!(!q.accepts_query(Some("b=1&c=2&v=3")));
        assert!(!q.accepts_query(None));
        assert_eq!(
            q.params("/a/7", query),
            [("id", "7"), ("b", "x%20y"), ("c", "3")]
        );
        assert_eq!(q.param("/a/7", query, "c"), Some("3"));
        assert_eq!(q.param("/a/7", query, "v"), None);
        for (bad, why) in [
            (
                "/a?b",
                "query parameter 'b' needs a value: name={param} or name=value",
            ),
            ("/a?b={b}&b=1", "query parameter 'b' appears twice"),
            ("/a/{b}?x={b}", "parameter 'b' appears twice"),
            ("/a?x={b}&y={b}", "parameter 'b' appears twice"),
            (
                "/a?x={b c}",
                "bad parameter name in query parameter 'x={b c}'",
            ),
            (
                "/a?x=v{b}",
                "query parameter 'x=v{b}' mixes text and a parameter, which is not supported",
            ),
            ("/a?={b}", "bad query parameter name ''"),
        ] {
            assert_eq!(Template::parse(bad).unwrap_err(), why, "{bad}");
        }
    }

    #[test]
    fn operations_told_apart_by_query() {
        let t = ops(&[
            ("GET", "/r?action=list"),
            ("GET", "/r?action=get&id={id}"),
            ("GET", "/r"),
            ("GET", "/s?q={q}"),
            ("*", "/s"),
            ("GET", "/w/*?k={k}"),
        ]);
        let cases = [
            ("/r", Some("action=list"), Some(0)),
            ("/r", Some("action=get&id=3"), Some(1)),
            ("/r", Some("id=3&action=get&x=1"), Some(1)),
            ("/r", Some("action=get"), Some(2)),
            ("/r", None, Some(2)),
            ("/s", Some("q=1"), Some(3)),
            ("/s", Some("p=1"), Some(4)),
            ("/w/a/b", Some("k="), Some(5)),
            ("/w/a/b", None, None),
        ];
        for (path, query, want) in cases {
            assert_eq!(t.find(path, query, "GET"), want, "{path}?{query:?}");
        }
    }

    #[test]
    fn operation_matching_table() {
        let t = ops(&[
            ("GET", "/items/{id}"),
            ("GET", "/items/special"),
            ("*", "/items/{id}"),
            ("GET", "/files/*"),
            ("POST", "/"),
            ("GET", "/items"),
        ]);
        let cases = [
            ("/items/7", "GET", Some(0)),
            ("/items/special", "GET", Some(1)),
            ("/items/special", "PUT", Some(2)),
            ("/items/7", "DELETE", Some(2)),
            ("/files", "GET", Some(3)),
            ("/files/a/b/c", "GET", Some(3)),
            ("/files/a", "POST", None),
            ("/", "POST", Some(4)),
            ("", "POST", Some(4)),
            ("/items", "GET", Some(5)),
            ("/items/", "GET", Some(5)),
            ("/items/7/x", "GET", None),
            ("/nope", "GET", None),
        ];
        for (path, method, want) in cases {
            assert_eq!(t.find(path, None, method), want, "{method} {path}");
        }
    }

    #[test]
    fn api_longest_prefix_on_segment_boundary() {
        let none: Vec<String> = vec![];
        let host = vec!["api.example.com".to_string()];
        let keys = [
            ApiKey {
                path: "",
                hostnames: &none,
                http: true,
                https: true,
            },
            ApiKey {
                path: "echo",
                hostnames: &none,
                http: true,
                https: true,
            },
            ApiKey {
                path: "echo/v2",
                hostnames: &none,
                http: true,
                https: true,
            },
            ApiKey {
                path: "secure",
                hostnames: &none,
                http: false,
                https: true,
            },
            ApiKey {
                path: "echo",
                hostnames: &host,
                http: true,
                https: true,
            },
        ];
        let t = ApiTable::build(keys.into_iter());
        let m = |p: &str, h: &str, s: bool| t.find(p, h, s).map(|m| (m.api, m.rest_offset));
        assert_eq!(m("/echo/items", "x", false), Some((1, 5)));
        assert_eq!(m("/echo", "x", false), Some((1, 5)));
        assert_eq!(m("/echoes", "x", false), Some((0, 0)));
        assert_eq!(m("/echo/v2/a", "x", false), Some((2, 8)));
        assert_eq!(m("/echo/v3", "x", false), Some((1, 5)));
        assert_eq!(m("/secure/a", "x", false), Some((0, 0)));
        assert_eq!(m("/secure/a", "x", true), Some((3, 7)));
        assert_eq!(m("/echo/a", "API.example.com", false), Some((4, 5)));
        assert_eq!(m("/", "x", false), Some((0, 0)));
    }
}
