//! Liquid templates for `set-body template="liquid"`, as APIM's DotLiquid dialect uses
//! them: `{{ value | filter: arg }}` output, and the tags `if`/`elsif`/`else`, `unless`,
//! `case`/`when`, `for` (with `limit`, `offset`, `reversed`), `assign`, `capture`,
//! `comment` and `raw`. Values come from `body` (the message body, JSON opened lazily,
//! text otherwise), `context` (the same members expressions read: `context.Request.Method`,
//! `context.Request.Headers["X"]`, `context.Variables["v"]`…) and the template's own
//! variables. Compiled at load; rendering spends the request's expression budget.
//! Must not touch: named-value substitution (a template's `{{ }}` is Liquid's), sockets.

use std::borrow::Cow;

use super::eval::Machine;
use super::json::{self, Json};
use super::value::{from_json, list};
use super::*;

/// A compiled template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<LNode>,
    /// Renders the response body (outbound) rather than the request's.
    pub response: bool,
}

#[derive(Debug, Clone)]
enum LNode {
    Text(String),
    Out(Piped),
    If(Vec<(Cond, Vec<LNode>)>, Vec<LNode>),
    For {
        var: String,
        source: LExpr,
        limit: Option<LExpr>,
        offset: Option<LExpr>,
        reversed: bool,
        body: Vec<LNode>,
    },
    Case(LExpr, Vec<(Vec<LExpr>, Vec<LNode>)>, Vec<LNode>),
    Assign(String, Piped),
    Capture(String, Vec<LNode>),
    /// `{% increment x %}` (true) / `{% decrement x %}`: counters of their own.
    Count(String, bool),
    /// `{% cycle ['group':] a, b, c %}`: the next value of the group's rotation.
    Cycle(String, Vec<LExpr>),
}

/// A value and its filters.
#[derive(Debug, Clone)]
struct Piped(LExpr, Vec<(String, Vec<LExpr>)>);

#[derive(Debug, Clone)]
enum LExpr {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    Nil,
    /// A name and its steps: `.name`, `[expr]`.
    Path(String, Vec<Step>),
}

#[derive(Debug, Clone)]
enum Step {
    Name(String),
    Index(LExpr),
}

#[derive(Debug, Clone)]
enum Cond {
    Truthy(LExpr),
    Cmp(LExpr, &'static str, LExpr),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
}

const MAX_TEMPLATE_DEPTH: usize = 32;

fn perr(offset: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        offset,
        message: message.into(),
    }
}

/// Compiles a template (`response`: it renders an outbound body).
pub fn compile(text: &str, response: bool) -> Result<Template, ParseError> {
    let text = &*whitespace_control(text);
    let mut p = TParser { text, pos: 0 };
    let (nodes, end) = p.nodes(&[], 0)?;
    if let Some(tag) = end {
        return Err(perr(
            p.pos,
            format!("{{% {tag} %}} without its opening tag"),
        ));
    }
    Ok(Template { nodes, response })
}

/// Liquid's whitespace control: `{{-` / `{%-` remove the whitespace before the tag,
/// `-}}` / `-%}` the whitespace after it; the dashes go.
fn whitespace_control(text: &str) -> Cow<'_, str> {
    if !["{{-", "{%-", "-}}", "-%}"]
        .iter()
        .any(|d| text.contains(d))
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut trim_next = false;
    while let Some(p) = rest.find("{{").into_iter().chain(rest.find("{%")).min() {
        let close = if rest[p..].starts_with("{{") {
            "}}"
        } else {
            "%}"
        };
        let Some(c) = rest[p + 2..].find(close).map(|c| c + p + 2) else {
            break;
        };
        let mut literal = &rest[..p];
        if trim_next {
            literal = literal.trim_start();
        }
        let mut inner = &rest[p + 2..c];
        if let Some(i) = inner.strip_prefix('-') {
            literal = literal.trim_end();
            inner = i;
        }
        trim_next = inner.ends_with('-');
        if trim_next {
            inner = &inner[..inner.len() - 1];
        }
        out.push_str(literal);
        out.push_str(&rest[p..p + 2]);
        out.push_str(inner);
        out.push_str(close);
        rest = &rest[c + 2..];
    }
    out.push_str(if trim_next { rest.trim_start() } else { rest });
    Cow::Owned(out)
}

struct TParser<'t> {
    text: &'t str,
    pos: usize,
}

impl<'t> TParser<'t> {
    /// Nodes until one of `ends` (a tag name) or the end; returns the nodes and the
    /// closing tag's full text when one ended them.
    fn nodes(
        &mut self,
        ends: &[&str],
        depth: usize,
    ) -> Result<(Vec<LNode>, Option<String>), ParseError> {
        if depth > MAX_TEMPLATE_DEPTH {
            return Err(perr(self.pos, "the template nests too deeply"));
        }
        let mut out = Vec::new();
        loop {
            let rest = &self.text[self.pos..];
            let next = rest
                .find(['{'])
                .filter(|&i| matches!(rest.as_bytes().get(i + 1), Some(b'{' | b'%')));
            let Some(i) = next.or_else(|| {
                // a lone '{' is text: look further
                let mut j = 0;
                while let Some(k) = rest[j..].find('{') {
                    if matches!(rest.as_bytes().get(j + k + 1), Some(b'{' | b'%')) {
                        return Some(j + k);
                    }
                    j += k + 1;
                }
                None
            }) else {
                if !rest.is_empty() {
                    out.push(LNode::Text(rest.to_string()));
                }
                self.pos = self.text.len();
                return Ok((out, None));
            };
            if i > 0 {
                out.push(LNode::Text(rest[..i].to_string()));
            }
            let at = self.pos + i;
            if rest.as_bytes()[i + 1] == b'{' {
                let close = rest[i + 2..]
                    .find("}}")
                    .ok_or_else(|| perr(at, "'{{' without '}}'"))?
                    + i
                    + 2;
                let inner = &rest[i + 2..close];
                out.push(LNode::Out(piped(inner, at + 2)?));
                self.pos += close + 2;
                continue;
            }
            let close = rest[i + 2..]
                .find("%}")
                .ok_or_else(|| perr(at, "'{%' without '%}'"))?
                + i
                + 2;
            let tag = rest[i + 2..close]
                .trim()
                .trim_start_matches('-')
                .trim_end_matches('-')
                .trim();
            self.pos += close + 2;
            let (name, args) = tag.split_once(char::is_whitespace).unwrap_or((tag, ""));
            if ends.contains(&name) {
                return Ok((out, Some(tag.to_string())));
            }
            out.push(self.tag(name, args.trim(), at, depth)?);
        }
    }

    fn tag(
        &mut self,
        name: &str,
        args: &str,
        at: usize,
        depth: usize,
    ) -> Result<LNode, ParseError> {
        Ok(match name {
            "if" | "unless" => {
                let mut cond = condition(args, at)?;
                if name == "unless" {
                    cond = Cond::Cmp(LExpr::Bool(false), "==", LExpr::Bool(false));
                    let real = condition(args, at)?;
                    cond = Cond::And(Box::new(cond), Box::new(not(real)));
                }
                let mut branches = Vec::new();
                let mut otherwise = Vec::new();
                let end = if name == "if" { "endif" } else { "endunless" };
                loop {
                    let (body, closing) = self.nodes(&["elsif", "else", end], depth + 1)?;
                    let closing = closing
                        .ok_or_else(|| perr(at, format!("{{% {name} %}} without {{% {end} %}}")))?;
                    branches.push((cond, body));
                    let (word, rest) = closing
                        .split_once(char::is_whitespace)
                        .unwrap_or((&closing, ""));
                    match word {
                        "elsif" => cond = condition(rest.trim(), at)?,
                        "else" => {
                            let (body, closing) = self.nodes(&[end], depth + 1)?;
                            closing.ok_or_else(|| {
                                perr(at, format!("{{% else %}} without {{% {end} %}}"))
                            })?;
                            otherwise = body;
                            break;
                        }
                        _ => break,
                    }
                }
                LNode::If(branches, otherwise)
            }
            "for" => {
                let (var, rest) = args
                    .split_once(" in ")
                    .ok_or_else(|| perr(at, "expected {% for x in list %}"))?;
                let mut words = rest.split_whitespace();
                let source = expr(words.next().unwrap_or(""), at)?;
                let (mut limit, mut offset, mut reversed) = (None, None, false);
                for w in words {
                    match w.split_once(':') {
                        Some(("limit", v)) => limit = Some(expr(v, at)?),
                        Some(("offset", v)) => offset = Some(expr(v, at)?),
                        None if w == "reversed" => reversed = true,
                        _ => return Err(perr(at, format!("unknown for option '{w}'"))),
                    }
                }
                let (body, closing) = self.nodes(&["endfor"], depth + 1)?;
                closing.ok_or_else(|| perr(at, "{% for %} without {% endfor %}"))?;
                LNode::For {
                    var: var.trim().to_string(),
                    source,
                    limit,
                    offset,
                    reversed,
                    body,
                }
            }
            "case" => {
                let subject = expr(args, at)?;
                let (_, mut closing) = self.nodes(&["when", "else", "endcase"], depth + 1)?;
                let mut whens = Vec::new();
                let mut otherwise = Vec::new();
                loop {
                    let tag =
                        closing.ok_or_else(|| perr(at, "{% case %} without {% endcase %}"))?;
                    let (word, rest) = tag.split_once(char::is_whitespace).unwrap_or((&tag, ""));
                    match word {
                        "when" => {
                            let values = rest
                                .split([',', ' '])
                                .filter(|v| !v.is_empty() && *v != "or")
                                .map(|v| expr(v, at))
                                .collect::<Result<Vec<_>, _>>()?;
                            let (body, c) = self.nodes(&["when", "else", "endcase"], depth + 1)?;
                            whens.push((values, body));
                            closing = c;
                        }
                        "else" => {
                            let (body, c) = self.nodes(&["endcase"], depth + 1)?;
                            otherwise = body;
                            closing = c;
                        }
                        _ => break,
                    }
                }
                LNode::Case(subject, whens, otherwise)
            }
            "assign" => {
                let (var, value) = args
                    .split_once('=')
                    .ok_or_else(|| perr(at, "expected {% assign x = value %}"))?;
                LNode::Assign(var.trim().to_string(), piped(value, at)?)
            }
            "increment" | "decrement" | "cycle" => counter_tag(name, args, at)?,
            "capture" => {
                let (body, closing) = self.nodes(&["endcapture"], depth + 1)?;
                closing.ok_or_else(|| perr(at, "{% capture %} without {% endcapture %}"))?;
                LNode::Capture(args.to_string(), body)
            }
            "comment" | "raw" => {
                let end = if name == "comment" {
                    "endcomment"
                } else {
                    "endraw"
                };
                let rest = &self.text[self.pos..];
                let mut search = 0;
                loop {
                    let open = rest[search..]
                        .find("{%")
                        .ok_or_else(|| perr(at, format!("{{% {name} %}} without {{% {end} %}}")))?
                        + search;
                    let close = rest[open + 2..]
                        .find("%}")
                        .ok_or_else(|| perr(at, "'{%' without '%}'"))?
                        + open
                        + 2;
                    if rest[open + 2..close].trim() == end {
                        let inner = rest[..open].to_string();
                        self.pos += close + 2;
                        return Ok(if name == "raw" {
                            LNode::Text(inner)
                        } else {
                            LNode::Text(String::new())
                        });
                    }
                    search = close + 2;
                }
            }
            other if other.starts_with("end") || matches!(other, "else" | "elsif" | "when") => {
                return Err(perr(at, format!("{{% {other} %}} without its opening tag")))
            }
            other => {
                return Err(perr(
                    at,
                    format!("the Liquid tag '{other}' is not supported"),
                ))
            }
        })
    }
}

/// `{% increment x %}`, `{% decrement x %}` and `{% cycle ['group':] a, b %}`.
fn counter_tag(name: &str, args: &str, at: usize) -> Result<LNode, ParseError> {
    if name != "cycle" {
        let var = args.trim();
        if var.is_empty()
            || !var
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        {
            return Err(perr(at, format!("expected {{% {name} variable %}}")));
        }
        return Ok(LNode::Count(var.to_string(), name == "increment"));
    }
    let (group, list) = match split_outside_quotes(args, ":") {
        Some((g, rest)) => (g.trim().trim_matches(['\'', '"']).to_string(), rest),
        None => (args.trim().to_string(), args),
    };
    let mut values = Vec::new();
    let mut rest = list;
    while let Some((first, tail)) = split_outside_quotes(rest, ",") {
        values.push(expr(first.trim(), at)?);
        rest = tail;
    }
    if !rest.trim().is_empty() {
        values.push(expr(rest.trim(), at)?);
    }
    if values.is_empty() {
        return Err(perr(at, "expected {% cycle a, b %}"));
    }
    Ok(LNode::Cycle(group, values))
}

fn not(c: Cond) -> Cond {
    // `unless x` is `x` negated: nil and false are the only false values
    match c {
        Cond::Truthy(e) => Cond::Cmp(e, "falsy", LExpr::Nil),
        Cond::Cmp(a, op, b) => Cond::Cmp(
            a,
            match op {
                "==" => "!=",
                "!=" | "<>" => "==",
                "<" => ">=",
                ">" => "<=",
                "<=" => ">",
                ">=" => "<",
                "contains" => "!contains",
                "falsy" => "truthy",
                _ => "contains",
            },
            b,
        ),
        Cond::And(a, b) => Cond::Or(Box::new(not(*a)), Box::new(not(*b))),
        Cond::Or(a, b) => Cond::And(Box::new(not(*a)), Box::new(not(*b))),
    }
}

/// `a == b and c or d` (Liquid evaluates right to left, without precedence).
fn condition(text: &str, at: usize) -> Result<Cond, ParseError> {
    if let Some((a, b)) = split_word(text, "or") {
        return Ok(Cond::Or(
            Box::new(condition(a, at)?),
            Box::new(condition(b, at)?),
        ));
    }
    if let Some((a, b)) = split_word(text, "and") {
        return Ok(Cond::And(
            Box::new(condition(a, at)?),
            Box::new(condition(b, at)?),
        ));
    }
    for op in ["==", "!=", "<>", ">=", "<=", ">", "<"] {
        if let Some((a, b)) = split_outside_quotes(text, op) {
            return Ok(Cond::Cmp(expr(a, at)?, op, expr(b, at)?));
        }
    }
    if let Some((a, b)) = split_word(text, "contains") {
        return Ok(Cond::Cmp(expr(a, at)?, "contains", expr(b, at)?));
    }
    Ok(Cond::Truthy(expr(text, at)?))
}

fn split_word<'a>(text: &'a str, word: &str) -> Option<(&'a str, &'a str)> {
    split_outside_quotes(text, &format!(" {word} "))
}

fn split_outside_quotes<'a>(text: &'a str, sep: &str) -> Option<(&'a str, &'a str)> {
    let mut quote = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, _) if text[i..].starts_with(sep) => {
                return Some((&text[..i], &text[i + sep.len()..]))
            }
            _ => {}
        }
    }
    None
}

/// `value | filter: a, b | filter2`.
fn piped(text: &str, at: usize) -> Result<Piped, ParseError> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some((a, b)) = split_outside_quotes(rest, "|") {
        parts.push(a);
        rest = b;
    }
    parts.push(rest);
    let value = expr(parts[0], at)?;
    let mut filters = Vec::new();
    for f in &parts[1..] {
        let (name, args) = f.split_once(':').unwrap_or((f, ""));
        let name = filter_name(name.trim()).ok_or_else(|| {
            perr(
                at,
                format!("the Liquid filter '{}' is not supported", name.trim()),
            )
        })?;
        let mut list = Vec::new();
        let mut args = args;
        while !args.trim().is_empty() {
            let (a, b) = split_outside_quotes(args, ",").unwrap_or((args, ""));
            list.push(expr(a, at)?);
            args = b;
        }
        filters.push((name, list));
    }
    Ok(Piped(value, filters))
}

fn expr(text: &str, at: usize) -> Result<LExpr, ParseError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(perr(at, "expected a value"));
    }
    if let Some(s) = t
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| t.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
    {
        return Ok(LExpr::Str(s.to_string()));
    }
    match t {
        "true" => return Ok(LExpr::Bool(true)),
        "false" => return Ok(LExpr::Bool(false)),
        "nil" | "null" | "empty" => return Ok(LExpr::Nil),
        _ => {}
    }
    if let Ok(i) = t.parse::<i64>() {
        return Ok(LExpr::Int(i));
    }
    if t.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
        return t
            .parse::<f64>()
            .map(LExpr::Double)
            .map_err(|_| perr(at, format!("'{t}' is not a value")));
    }
    // a path: name(.name|[expr])*
    let b = t.as_bytes();
    let mut i = 0;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'-') {
        i += 1;
    }
    if i == 0 {
        return Err(perr(at, format!("'{t}' is not a value")));
    }
    let root = t[..i].to_string();
    let mut steps = Vec::new();
    while i < b.len() {
        match b[i] {
            b'.' => {
                let start = i + 1;
                i = start;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'-')
                {
                    i += 1;
                }
                steps.push(Step::Name(t[start..i].to_string()));
            }
            b'[' => {
                let close = t[i..]
                    .find(']')
                    .ok_or_else(|| perr(at, format!("'{t}': '[' without ']'")))?
                    + i;
                steps.push(Step::Index(expr(&t[i + 1..close], at)?));
                i = close + 1;
            }
            _ => return Err(perr(at, format!("'{t}' is not a value"))),
        }
    }
    Ok(LExpr::Path(root, steps))
}

/// Renders `t` for one call, spending from the request's expression budget.
pub fn render(t: &Template, env: &dyn Env) -> Result<String, EvalError> {
    let mut m = Machine::new(env, 0);
    let r = render_with(&mut m, t);
    m.settle();
    r
}

fn render_with(m: &mut Machine, t: &Template) -> Result<String, EvalError> {
    let mut r = Render {
        locals: Vec::new(),
        counters: Vec::new(),
        cycles: Vec::new(),
        body: None,
        response: t.response,
    };
    let mut out = String::new();
    r.nodes(m, &t.nodes, &mut out)?;
    Ok(out)
}

struct Render {
    locals: Vec<(String, Val<'static>)>,
    /// `increment` / `decrement` counters, and `cycle` rotations by group.
    counters: Vec<(String, i64)>,
    cycles: Vec<(String, usize)>,
    body: Option<Val<'static>>,
    response: bool,
}

impl Render {
    fn nodes(
        &mut self,
        m: &mut Machine,
        nodes: &[LNode],
        out: &mut String,
    ) -> Result<(), EvalError> {
        for n in nodes {
            m.tick()?;
            match n {
                LNode::Text(s) => out.push_str(s),
                LNode::Out(p) => {
                    let v = self.piped(m, p)?;
                    out.push_str(&text(&v));
                }
                LNode::If(branches, otherwise) => {
                    let mut done = false;
                    for (c, body) in branches {
                        if self.cond(m, c)? {
                            self.nodes(m, body, out)?;
                            done = true;
                            break;
                        }
                    }
                    if !done {
                        self.nodes(m, otherwise, out)?;
                    }
                }
                LNode::For {
                    var,
                    source,
                    limit,
                    offset,
                    reversed,
                    body,
                } => {
                    let items = match self.value(m, source)? {
                        Val::Null => Vec::new(),
                        v => v.items()?,
                    };
                    let skip = match offset {
                        Some(o) => number(&self.value(m, o)?) as usize,
                        None => 0,
                    };
                    let take = match limit {
                        Some(l) => number(&self.value(m, l)?) as usize,
                        None => usize::MAX,
                    };
                    let mut items: Vec<Val<'static>> =
                        items.into_iter().skip(skip).take(take).collect();
                    if *reversed {
                        items.reverse();
                    }
                    let mark = self.locals.len();
                    let length = items.len();
                    for (i, item) in items.into_iter().enumerate() {
                        self.locals.truncate(mark);
                        self.locals.push((var.clone(), item));
                        // forloop.index (from 1), index0, rindex, first, last, length
                        let n = |x: usize| Val::Int(x as i64);
                        let facts = vec![
                            ("index".to_string(), n(i + 1)),
                            ("index0".to_string(), n(i)),
                            ("rindex".to_string(), n(length - i)),
                            ("first".to_string(), Val::Bool(i == 0)),
                            ("last".to_string(), Val::Bool(i + 1 == length)),
                            ("length".to_string(), n(length)),
                        ];
                        self.locals.push((
                            "forloop".into(),
                            Val::Dict(std::rc::Rc::new(std::cell::RefCell::new(facts))),
                        ));
                        self.nodes(m, body, out)?;
                    }
                    self.locals.truncate(mark);
                }
                LNode::Case(subject, whens, otherwise) => {
                    let s = self.value(m, subject)?;
                    let mut done = false;
                    for (values, body) in whens {
                        let mut hit = false;
                        for v in values {
                            if equal(&s, &self.value(m, v)?) {
                                hit = true;
                                break;
                            }
                        }
                        if hit {
                            self.nodes(m, body, out)?;
                            done = true;
                            break;
                        }
                    }
                    if !done {
                        self.nodes(m, otherwise, out)?;
                    }
                }
                LNode::Assign(var, p) => {
                    let v = self.piped(m, p)?;
                    self.set(var, v);
                }
                LNode::Capture(var, body) => {
                    let mut s = String::new();
                    self.nodes(m, body, &mut s)?;
                    self.set(var, Val::Str(Cow::Owned(s)));
                }
                LNode::Count(var, up) => {
                    let at = match self.counters.iter().position(|(k, _)| k == var) {
                        Some(i) => i,
                        None => {
                            self.counters.push((var.clone(), 0));
                            self.counters.len() - 1
                        }
                    };
                    let c = &mut self.counters[at].1;
                    if *up {
                        out.push_str(&c.to_string());
                        *c += 1;
                    } else {
                        *c -= 1;
                        out.push_str(&c.to_string());
                    }
                }
                LNode::Cycle(group, values) => {
                    let at = match self.cycles.iter().position(|(k, _)| k == group) {
                        Some(i) => i,
                        None => {
                            self.cycles.push((group.clone(), 0));
                            self.cycles.len() - 1
                        }
                    };
                    let turn = self.cycles[at].1;
                    self.cycles[at].1 = turn + 1;
                    let v = self.value(m, &values[turn % values.len()])?;
                    out.push_str(&text(&v));
                }
            }
            m.charge(0)?;
            if out.len() > 4 << 20 {
                return Err(err("the Liquid template's output is larger than 4 MiB"));
            }
        }
        Ok(())
    }

    fn set(&mut self, var: &str, v: Val<'static>) {
        match self.locals.iter_mut().rev().find(|(k, _)| k == var) {
            Some(slot) => slot.1 = v,
            None => self.locals.push((var.to_string(), v)),
        }
    }

    fn cond(&mut self, m: &mut Machine, c: &Cond) -> Result<bool, EvalError> {
        Ok(match c {
            Cond::Truthy(e) => truthy(&self.value(m, e)?),
            Cond::And(a, b) => self.cond(m, a)? && self.cond(m, b)?,
            Cond::Or(a, b) => self.cond(m, a)? || self.cond(m, b)?,
            Cond::Cmp(a, op, b) => {
                let (x, y) = (self.value(m, a)?, self.value(m, b)?);
                match *op {
                    "==" => equal(&x, &y),
                    "!=" | "<>" => !equal(&x, &y),
                    "truthy" => truthy(&x),
                    "falsy" => !truthy(&x),
                    "contains" | "!contains" => {
                        let needle = text(&y);
                        let found = match &x {
                            Val::Str(s) => s.contains(needle.as_str()),
                            Val::Null => false,
                            other => other
                                .items()
                                .map(|i| i.iter().any(|v| text(v) == needle))
                                .unwrap_or(false),
                        };
                        found == (*op == "contains")
                    }
                    _ => {
                        let (p, q) = (number(&x), number(&y));
                        match *op {
                            "<" => p < q,
                            ">" => p > q,
                            "<=" => p <= q,
                            _ => p >= q,
                        }
                    }
                }
            }
        })
    }

    fn piped(&mut self, m: &mut Machine, p: &Piped) -> Result<Val<'static>, EvalError> {
        let mut v = self.value(m, &p.0)?;
        for (name, args) in &p.1 {
            let mut a = Vec::with_capacity(args.len());
            for x in args {
                a.push(self.value(m, x)?);
            }
            v = filter(m, name, v, &a)?;
        }
        Ok(v)
    }

    fn value(&mut self, m: &mut Machine, e: &LExpr) -> Result<Val<'static>, EvalError> {
        m.tick()?;
        Ok(match e {
            LExpr::Str(s) => Val::Str(Cow::Owned(s.clone())),
            LExpr::Int(i) => Val::Int(*i),
            LExpr::Double(d) => Val::Double(*d),
            LExpr::Bool(b) => Val::Bool(*b),
            LExpr::Nil => Val::Null,
            LExpr::Path(root, steps) => {
                let mut keys = Vec::with_capacity(steps.len());
                for s in steps {
                    keys.push(match s {
                        Step::Name(n) => Val::Str(Cow::Owned(n.clone())),
                        Step::Index(e) => self.value(m, e)?,
                    });
                }
                self.path(m, root, &keys)?
            }
        })
    }

    /// A path's value: a template variable, `body`, or `context`.
    fn path(
        &mut self,
        m: &mut Machine,
        root: &str,
        keys: &[Val<'static>],
    ) -> Result<Val<'static>, EvalError> {
        let (mut v, rest) = if let Some((_, v)) = self.locals.iter().rev().find(|(k, _)| k == root)
        {
            (v.clone(), keys)
        } else if root == "body" {
            (self.body(m)?, keys)
        } else if root == "context" {
            return context(m, keys);
        } else {
            return Ok(Val::Null);
        };
        for k in rest {
            v = step(&v, k)?;
        }
        Ok(v)
    }

    fn body(&mut self, m: &mut Machine) -> Result<Val<'static>, EvalError> {
        if let Some(b) = &self.body {
            return Ok(b.clone());
        }
        let bytes = m.env.body(self.response).unwrap_or(&[]);
        m.ticks(bytes.len() / 64)?;
        let text = String::from_utf8_lossy(bytes);
        let v = match json::parse(&text) {
            Ok(j) => from_json(&j),
            Err(_) => Val::Str(Cow::Owned(text.into_owned())),
        };
        self.body = Some(v.clone());
        Ok(v)
    }
}

/// `context.…` through the expression language's own names.
fn context(m: &mut Machine, keys: &[Val<'static>]) -> Result<Val<'static>, EvalError> {
    let names: Vec<String> = keys.iter().map(|k| k.to_text().into_owned()).collect();
    let path: Vec<&str> = std::iter::once("context")
        .chain(names.iter().map(String::as_str))
        .collect();
    for take in (2..=path.len()).rev() {
        if let Some(f) = types::field_of(&path[..take]) {
            let mut v = m.env.field(f).into_owned();
            for k in &keys[take - 1..] {
                v = step(&v, k)?;
            }
            return Ok(v);
        }
        let lookup = match &path[..take] {
            ["context", "Request", "Headers"] => Some(Lookup::RequestHeader),
            ["context", "Response", "Headers"] => Some(Lookup::ResponseHeader),
            ["context", "Request", "Url", "Query"] => Some(Lookup::RequestQuery),
            ["context", "Request", "OriginalUrl", "Query"] => Some(Lookup::OriginalQuery),
            ["context", "Request", "MatchedParameters"] => Some(Lookup::MatchedParameter),
            ["context", "Variables"] => Some(Lookup::Variable),
            _ => None,
        };
        if let Some(l) = lookup {
            let Some(name) = path.get(take) else {
                // the whole collection (`{% for h in context.Request.Headers %}`): its
                // entries, each with a Key and a Value
                let entries = m.env.entries(l);
                m.ticks(entries.len())?;
                let entries = entries
                    .into_iter()
                    .map(|(k, v)| (k, v.into_owned()))
                    .collect();
                return Ok(Val::Dict(std::rc::Rc::new(std::cell::RefCell::new(
                    entries,
                ))));
            };
            let mut v = m.env.lookup(l, name).map_or(Val::Null, Val::into_owned);
            for k in keys.iter().skip(take) {
                v = step(&v, k)?;
            }
            return Ok(v);
        }
    }
    Ok(Val::Null)
}

/// One step into a value: a property, an index, or `size` / `first` / `last`.
fn step(v: &Val<'static>, key: &Val<'static>) -> Result<Val<'static>, EvalError> {
    Ok(match (v, key) {
        (Val::Json(j @ Json::Object(_)), Val::Str(k)) => match j.get(k) {
            Some(x) => from_json(&x),
            None if k == "size" => Val::Int(v.items()?.len() as i64),
            None => Val::Null,
        },
        (Val::Json(j @ Json::Array(_)), Val::Int(i)) => usize::try_from(*i)
            .ok()
            .and_then(|i| j.at(i))
            .map_or(Val::Null, |x| from_json(&x)),
        (Val::List(l), Val::Int(i)) => usize::try_from(*i)
            .ok()
            .and_then(|i| l.borrow().get(i).cloned())
            .unwrap_or(Val::Null),
        (Val::Dict(d), Val::Str(k)) => d
            .borrow()
            .iter()
            .find(|(n, _)| n == k)
            .map_or(Val::Null, |(_, x)| x.clone()),
        // an entry of a dictionary or a JSON object being walked by `for`
        (Val::Prop(p), Val::Str(k)) if k == "Key" || k == "Name" => {
            Val::Str(Cow::Owned(p.0.clone()))
        }
        (Val::Prop(p), Val::Str(k)) if k == "Value" => from_json(&p.1),
        (Val::Null, _) => Val::Null,
        (_, Val::Str(k)) if k == "size" => Val::Int(match v {
            Val::Str(s) => s.chars().count(),
            other => other.items().map_or(0, |i| i.len()),
        } as i64),
        (_, Val::Str(k)) if k == "first" || k == "last" => end_item(v, k == "first"),
        _ => Val::Null,
    })
}

/// The first or last item of a sequence (nil when empty or not a sequence).
fn end_item(v: &Val<'static>, first: bool) -> Val<'static> {
    let items = v.items().unwrap_or_default();
    let pick = if first { items.first() } else { items.last() };
    pick.cloned().unwrap_or(Val::Null)
}

fn truthy(v: &Val) -> bool {
    !matches!(v, Val::Null | Val::Bool(false))
}

fn equal(a: &Val, b: &Val) -> bool {
    match (a, b) {
        (Val::Str(x), y) | (y, Val::Str(x)) if !matches!(y, Val::Str(_)) => *x == text(y),
        _ => a == b,
    }
}

fn number(v: &Val) -> f64 {
    match v {
        Val::Int(i) => *i as f64,
        Val::Double(d) => *d,
        Val::Str(s) => s.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// A value as the template prints it: JSON containers compact, nil as nothing.
fn text(v: &Val) -> String {
    match v {
        Val::Json(j) => j.print(false).unwrap_or_default(),
        Val::Bool(true) => "true".into(),
        Val::Bool(false) => "false".into(),
        Val::List(_) => v
            .items()
            .map(|i| i.iter().map(text).collect::<String>())
            .unwrap_or_default(),
        other => other.to_text().into_owned(),
    }
}

fn num_val(f: f64) -> Val<'static> {
    if f.fract() == 0.0 && f.abs() < 9e15 {
        Val::Int(f as i64)
    } else {
        Val::Double(f)
    }
}

mod filters;
use filters::{filter, filter_name};

#[cfg(test)]
mod tests {
    use super::*;

    struct Body(&'static str, Budget);
    impl Env for Body {
        fn field(&self, f: Field) -> Val<'_> {
            match f {
                Field::RequestMethod => Val::Str(Cow::Borrowed("POST")),
                _ => Val::Null,
            }
        }
        fn lookup(&self, _: Lookup, _: &str) -> Option<Val<'_>> {
            None
        }
        fn body(&self, _: bool) -> Option<&[u8]> {
            Some(self.0.as_bytes())
        }
        fn budget(&self) -> Option<&Budget> {
            Some(&self.1)
        }
    }

    fn render_text(t: &str, body: &'static str) -> Result<String, String> {
        let t = compile(t, false).map_err(|e| e.to_string())?;
        render(&t, &Body(body, Budget::default())).map_err(|e| e.message().to_string())
    }

    #[test]
    fn tags_and_filters() {
        let body = r#"{"kind": "b", "n": 7, "tags": ["x", "y"], "when": "2024-05-01T10:20:30Z", "html": "<a & b>"}"#;
        for (t, want) in [
            ("{% case body.kind %}{% when 'a' %}A{% when 'b', 'c' %}BC{% else %}?{% endcase %}", "BC"),
            ("{% capture c %}{{ body.n | plus: 1 }}!{% endcapture %}[{{ c }}]", "[8!]"),
            ("{% raw %}{{ not }}{% endraw %}", "{{ not }}"),
            ("{{ body.tags | join: '+' }} {{ body.tags | size }} {{ body.tags.first }}", "x+y 2 x"),
            ("{{ body.html | escape }}", "&lt;a &amp; b&gt;"),
            ("{{ body.when | date: 'yyyy-MM-dd' }}", "2024-05-01"),
            ("{{ body.missing | default: 'none' }} {{ context.Request.Method | downcase }}", "none post"),
            ("{% if body.n > 5 and body.kind == 'b' %}big{% endif %}{% if body.tags contains 'y' %} has-y{% endif %}", "big has-y"),
            ("{{ body.n | divided_by: 2 }} {{ body.n | modulo: 4 }} {{ 'a b' | url_encode }}", "3 3 a+b"),
            ("{{ body | json }}", r#"{"kind":"b","n":7,"tags":["x","y"],"when":"2024-05-01T10:20:30Z","html":"<a & b>"}"#),
            // counters and rotations
            ("{% increment n %}{% increment n %}{% decrement d %}{% decrement d %}{% increment d %}", "01-1-2-2"),
            ("{% for t in body.tags %}{% cycle 'odd', 'even' %} {% endfor %}{% cycle 'g': 1, 2 %}{% cycle 'g': 1, 2 %}", "odd even 12"),
            // whitespace control
            ("[\n  {%- for t in body.tags -%}\n  {{- t }},\n  {%- endfor %}\n]", "[x,y,\n]"),
            ("a  {{- body.kind -}}  z", "abz"),
        ] {
            assert_eq!(render_text(t, body).as_deref(), Ok(want), "{t}");
        }
        // loops cost steps: a runaway template ends at the budget
        let nested = "{% for a in body.tags %}".repeat(20) + "x" + &"{% endfor %}".repeat(20);
        let spin = r#"{"tags": [1,2,3,4,5,6,7,8]}"#;
        assert_eq!(
            render_text(&nested, spin).unwrap_err(),
            BUDGET_STEPS.message()
        );
    }

    #[test]
    fn templates_compile_or_say_where() {
        assert!(compile(
            "{{ body.a | upcase }}{% if x %}y{% else %}z{% endif %}",
            false
        )
        .is_ok());
        for (t, want) in [
            ("{% if x %}", "without {% endif %}"),
            (
                "{{ x | nope }}",
                "the Liquid filter 'nope' is not supported",
            ),
            (
                "{% include 'x' %}",
                "the Liquid tag 'include' is not supported",
            ),
            ("{{ x ", "'{{' without '}}'"),
            ("{% endfor %}", "without its opening tag"),
            // found by fuzzing: a tag closed where it opens
            ("{%}", "'{%' without '%}'"),
            ("{% raw %}{%}", "'{%' without '%}'"),
            ("{{}}", "expected a value"),
        ] {
            let e = compile(t, false).unwrap_err();
            assert!(e.message.contains(want), "{t}: {e}");
        }
    }
}
