//! JSONPath as Newtonsoft's `SelectToken` / `SelectTokens` read it: `$`, `.name`,
//! `['name']` and `['a','b']`, `[n]` (negative from the end), `[n,m]`, `[start:end]`,
//! `[*]` / `.*`, recursive descent `..name` / `..*` / `..[n]`, and filters
//! `[?(@.path op value)]` with `==` `!=` `<` `<=` `>` `>=`, existence `[?(@.path)]`,
//! `&&` and `||`. A selection visits at most `MAX_VISITS` tokens; the caller charges
//! what it visited to the call's budget.
//! Must not touch: JSON parsing and printing (json.rs), the interpreter.

use super::json::Json;
use super::{err, EvalError};

/// The most tokens one selection may visit.
pub const MAX_VISITS: usize = 100_000;

const BAD_PATH: EvalError = err("Unexpected character while parsing JSONPath (SelectToken)");
const TOO_MANY: EvalError = err("the JSONPath visits too many tokens (SelectToken)");

#[derive(Debug, Clone)]
enum Step {
    Names(Vec<String>),
    Indexes(Vec<i64>),
    Slice(Option<i64>, Option<i64>),
    All,
    Filter(Filter),
    /// `..` then the step: applied to the token and everything below it.
    Descend(Box<Step>),
}

#[derive(Debug, Clone)]
enum Filter {
    Exists(Vec<String>),
    Compare(Vec<String>, Op, Json),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// `SelectToken(path)`: the one token the path selects (`None`: nothing); more than one
/// is an error, as in Newtonsoft. Also returns how many tokens it visited.
pub fn select(root: &Json, path: &str) -> Result<(Option<Json>, usize), EvalError> {
    let (mut found, visited) = select_all(root, path)?;
    match found.len() {
        0 | 1 => Ok((found.pop(), visited)),
        _ => Err(err("Path returned multiple tokens (SelectToken)")),
    }
}

/// `SelectTokens(path)`: every token the path selects, in document order, and how many
/// tokens it visited.
pub fn select_all(root: &Json, path: &str) -> Result<(Vec<Json>, usize), EvalError> {
    let steps = parse(path)?;
    let mut visited = 0usize;
    let mut current = vec![root.clone()];
    for step in &steps {
        let mut next = Vec::new();
        for token in &current {
            apply(step, token, &mut next, &mut visited)?;
        }
        current = next;
    }
    Ok((current, visited))
}

fn visit(visited: &mut usize, n: usize) -> Result<(), EvalError> {
    *visited += n;
    if *visited > MAX_VISITS {
        return Err(TOO_MANY);
    }
    Ok(())
}

fn children(token: &Json) -> Vec<Json> {
    token.open_children();
    match token {
        Json::Array(a) => a.borrow().clone(),
        Json::Object(o) => o.borrow().iter().map(|(_, v)| v.clone()).collect(),
        _ => Vec::new(),
    }
}

fn apply(
    step: &Step,
    token: &Json,
    out: &mut Vec<Json>,
    visited: &mut usize,
) -> Result<(), EvalError> {
    visit(visited, 1)?;
    token.open_children();
    match (step, token) {
        (Step::Names(names), Json::Object(_)) => {
            out.extend(names.iter().filter_map(|n| token.get(n)));
        }
        (Step::Indexes(ks), Json::Array(a)) => {
            let a = a.borrow();
            for k in ks {
                let at = if *k < 0 { a.len() as i64 + k } else { *k };
                out.extend(usize::try_from(at).ok().and_then(|at| a.get(at)).cloned());
            }
        }
        (Step::Slice(start, end), Json::Array(a)) => {
            let a = a.borrow();
            let len = a.len() as i64;
            let clamp = |v: i64| (if v < 0 { len + v } else { v }).clamp(0, len) as usize;
            let from = start.map_or(0, clamp);
            let to = end.map_or(a.len(), clamp);
            if from < to {
                out.extend(a[from..to].iter().cloned());
            }
        }
        (Step::All, Json::Array(_) | Json::Object(_)) => out.extend(children(token)),
        (Step::Filter(f), Json::Array(_) | Json::Object(_)) => {
            for c in children(token) {
                visit(visited, 1)?;
                if holds(f, &c) {
                    out.push(c);
                }
            }
        }
        (Step::Descend(inner), _) => descend(inner, token, out, visited, 0)?,
        _ => {}
    }
    Ok(())
}

/// `..step`: walks everything below `token` in document order. A name (or `*`) is
/// matched at each property as it is reached, as Newtonsoft does (so `$..c` gives the
/// deeper `c` of an earlier property first); other steps apply to each container.
fn descend(
    inner: &Step,
    token: &Json,
    out: &mut Vec<Json>,
    visited: &mut usize,
    depth: usize,
) -> Result<(), EvalError> {
    if depth > 4 * super::json::MAX_DEPTH {
        return Ok(());
    }
    visit(visited, 1)?;
    token.open_children();
    if !matches!(inner, Step::Names(_) | Step::All) {
        apply(inner, token, out, visited)?;
    }
    let entries: Vec<(Option<String>, Json)> = match token {
        Json::Object(o) => o
            .borrow()
            .iter()
            .map(|(k, v)| (Some(k.clone()), v.clone()))
            .collect(),
        Json::Array(a) => a.borrow().iter().map(|v| (None, v.clone())).collect(),
        _ => return Ok(()),
    };
    for (name, value) in entries {
        let hit = match (inner, &name) {
            (Step::All, _) => true,
            (Step::Names(names), Some(n)) => names.contains(n),
            _ => false,
        };
        if hit {
            out.push(value.clone());
        }
        descend(inner, &value, out, visited, depth + 1)?;
    }
    Ok(())
}

/// The token at a filter's relative path (`@.a.b`), if any.
fn at_path(token: &Json, path: &[String]) -> Option<Json> {
    let mut t = token.clone();
    for name in path {
        t.open_children();
        t = match &t {
            Json::Object(_) => t.get(name)?,
            Json::Array(a) => {
                let i: usize = name.parse().ok()?;
                a.borrow().get(i).cloned()?
            }
            _ => return None,
        };
    }
    Some(t)
}

fn holds(f: &Filter, token: &Json) -> bool {
    match f {
        Filter::Exists(path) => at_path(token, path).is_some(),
        Filter::And(a, b) => holds(a, token) && holds(b, token),
        Filter::Or(a, b) => holds(a, token) || holds(b, token),
        Filter::Compare(path, op, value) => {
            let Some(have) = at_path(token, path) else {
                return false;
            };
            let have = have.opened();
            let order = match (&have, value) {
                (Json::Str(a), Json::Str(b)) => Some(a.cmp(b)),
                (Json::Int(a), Json::Int(b)) => Some(a.cmp(b)),
                (Json::Int(_) | Json::Float(_), Json::Int(_) | Json::Float(_)) => {
                    number(&have).partial_cmp(&number(value))
                }
                (Json::Bool(a), Json::Bool(b)) => Some(a.cmp(b)),
                (Json::Null, Json::Null) => Some(std::cmp::Ordering::Equal),
                _ => None,
            };
            use std::cmp::Ordering::*;
            match (op, order) {
                (Op::Eq, o) => o == Some(Equal),
                (Op::Ne, o) => o != Some(Equal),
                (Op::Lt, Some(o)) => o == Less,
                (Op::Le, Some(o)) => o != Greater,
                (Op::Gt, Some(o)) => o == Greater,
                (Op::Ge, Some(o)) => o != Less,
                (_, None) => false,
            }
        }
    }
}

fn number(j: &Json) -> f64 {
    match j {
        Json::Int(i) => *i as f64,
        Json::Float(f) => *f,
        _ => f64::NAN,
    }
}

fn parse(path: &str) -> Result<Vec<Step>, EvalError> {
    let mut p = Cursor {
        b: path.as_bytes(),
        text: path,
        i: 0,
    };
    let mut steps = Vec::new();
    p.skip_ws();
    if p.peek() == Some(b'$') {
        p.i += 1;
    } else if p.peek().is_some_and(|c| c != b'.' && c != b'[') {
        // a leading name without a dot: "a.b"
        steps.push(Step::Names(vec![p.name()?]));
    }
    while p.i < p.b.len() {
        match (p.peek(), p.b.get(p.i + 1)) {
            (Some(b'.'), Some(b'.')) => {
                p.i += 2;
                let inner = match p.peek() {
                    Some(b'[') => p.bracket()?,
                    Some(b'*') => {
                        p.i += 1;
                        Step::All
                    }
                    _ => Step::Names(vec![p.name()?]),
                };
                steps.push(Step::Descend(Box::new(inner)));
            }
            (Some(b'.'), Some(b'*')) => {
                p.i += 2;
                steps.push(Step::All);
            }
            (Some(b'.'), _) => {
                p.i += 1;
                steps.push(Step::Names(vec![p.name()?]));
            }
            (Some(b'['), _) => steps.push(p.bracket()?),
            _ => return Err(BAD_PATH),
        }
    }
    Ok(steps)
}

struct Cursor<'p> {
    b: &'p [u8],
    text: &'p str,
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn skip_ws(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }
    fn eat(&mut self, s: &str) -> bool {
        self.skip_ws();
        if self.text[self.i..].starts_with(s) {
            self.i += s.len();
            true
        } else {
            false
        }
    }
    /// A name up to the next `.`, `[`, or (inside a filter) an operator or `)`.
    fn name(&mut self) -> Result<String, EvalError> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if matches!(
                c,
                b'.' | b'[' | b']' | b')' | b' ' | b'=' | b'!' | b'<' | b'>' | b'&' | b'|'
            ) {
                break;
            }
            self.i += 1;
        }
        if self.i == start {
            return Err(BAD_PATH);
        }
        Ok(self.text[start..self.i].to_string())
    }
    fn quoted(&mut self) -> Result<String, EvalError> {
        let q = self.peek().ok_or(BAD_PATH)?;
        self.i += 1;
        let mut s = String::new();
        while let Some(c) = self.text[self.i..].chars().next() {
            self.i += c.len_utf8();
            match c {
                '\\' => {
                    let e = self.text[self.i..].chars().next().ok_or(BAD_PATH)?;
                    self.i += e.len_utf8();
                    s.push(e);
                }
                c if c as u32 == u32::from(q) => return Ok(s),
                c => s.push(c),
            }
        }
        Err(BAD_PATH)
    }
    fn int(&mut self) -> Result<i64, EvalError> {
        self.skip_ws();
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.text[start..self.i].parse().map_err(|_| BAD_PATH)
    }
    /// `[...]`: names, indexes, a slice, `*` or a filter.
    fn bracket(&mut self) -> Result<Step, EvalError> {
        self.i += 1;
        self.skip_ws();
        let step = match self.peek() {
            Some(b'*') => {
                self.i += 1;
                Step::All
            }
            Some(b'?') => {
                self.i += 1;
                if !self.eat("(") {
                    return Err(BAD_PATH);
                }
                let f = self.filter()?;
                if !self.eat(")") {
                    return Err(BAD_PATH);
                }
                Step::Filter(f)
            }
            Some(b'\'' | b'"') => {
                let mut names = vec![self.quoted()?];
                while self.eat(",") {
                    self.skip_ws();
                    names.push(self.quoted()?);
                }
                Step::Names(names)
            }
            Some(b':') => {
                self.i += 1;
                let end = self.slice_end()?;
                Step::Slice(None, end)
            }
            _ => {
                let first = self.int()?;
                if self.eat(":") {
                    let end = self.slice_end()?;
                    Step::Slice(Some(first), end)
                } else {
                    let mut ks = vec![first];
                    while self.eat(",") {
                        ks.push(self.int()?);
                    }
                    Step::Indexes(ks)
                }
            }
        };
        if !self.eat("]") {
            return Err(BAD_PATH);
        }
        Ok(step)
    }
    fn slice_end(&mut self) -> Result<Option<i64>, EvalError> {
        self.skip_ws();
        if self.peek() == Some(b']') {
            return Ok(None);
        }
        let end = self.int()?;
        // a step (`[a:b:c]`) is not supported
        if self.peek() == Some(b':') {
            return Err(err("a JSONPath slice step is not supported (SelectToken)"));
        }
        Ok(Some(end))
    }
    fn filter(&mut self) -> Result<Filter, EvalError> {
        let mut left = self.filter_and()?;
        while self.eat("||") {
            left = Filter::Or(Box::new(left), Box::new(self.filter_and()?));
        }
        Ok(left)
    }
    fn filter_and(&mut self) -> Result<Filter, EvalError> {
        let mut left = self.comparison()?;
        while self.eat("&&") {
            left = Filter::And(Box::new(left), Box::new(self.comparison()?));
        }
        Ok(left)
    }
    fn comparison(&mut self) -> Result<Filter, EvalError> {
        if !self.eat("@") {
            return Err(err(
                "a JSONPath filter compares '@.path' with a value (SelectToken)",
            ));
        }
        let mut path = Vec::new();
        loop {
            if self.peek() == Some(b'.') {
                self.i += 1;
                path.push(self.name()?);
            } else if self.peek() == Some(b'[') {
                self.i += 1;
                self.skip_ws();
                let part = match self.peek() {
                    Some(b'\'' | b'"') => self.quoted()?,
                    _ => self.int()?.to_string(),
                };
                if !self.eat("]") {
                    return Err(BAD_PATH);
                }
                path.push(part);
            } else {
                break;
            }
        }
        let ops = [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("<", Op::Lt),
            (">", Op::Gt),
        ];
        let Some(op) = ops.iter().find(|(s, _)| self.eat(s)).map(|(_, op)| *op) else {
            return Ok(Filter::Exists(path));
        };
        self.skip_ws();
        let value = match self.peek() {
            Some(b'\'' | b'"') => Json::Str(self.quoted()?),
            _ => {
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|c| !matches!(c, b')' | b' ' | b'&' | b'|'))
                {
                    self.i += 1;
                }
                match &self.text[start..self.i] {
                    "true" => Json::Bool(true),
                    "false" => Json::Bool(false),
                    "null" => Json::Null,
                    t => match t.parse::<i64>() {
                        Ok(i) => Json::Int(i),
                        Err(_) => Json::Float(t.parse().map_err(|_| BAD_PATH)?),
                    },
                }
            }
        };
        Ok(Filter::Compare(path, op, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::expr::json::parse as parse_json;

    fn texts(j: &Json, path: &str) -> Vec<String> {
        let (found, _) = select_all(j, path).unwrap();
        found.iter().map(|t| t.print(false).unwrap()).collect()
    }

    #[test]
    fn paths_as_newtonsoft_reads_them() {
        let j = parse_json(
            r#"{"a": {"b": [{"c": 1, "k": "x"}, {"c": 2, "k": "y"}, {"c": 3}]}, "x y": 3, "c": 0}"#,
        )
        .unwrap();
        assert_eq!(texts(&j, "a.b[1].c"), ["2"]);
        assert_eq!(texts(&j, "$.a.b[-1]"), [r#"{"c":3}"#]);
        assert_eq!(texts(&j, "['x y']"), ["3"]);
        assert_eq!(texts(&j, "$['x y','c']"), ["3", "0"]);
        assert_eq!(texts(&j, "a.missing"), Vec::<String>::new());
        assert_eq!(texts(&j, "a.b[*].c"), ["1", "2", "3"]);
        assert_eq!(texts(&j, "a.b[0,2].c"), ["1", "3"]);
        assert_eq!(texts(&j, "a.b[1:].c"), ["2", "3"]);
        assert_eq!(texts(&j, "a.b[:1].c"), ["1"]);
        assert_eq!(texts(&j, "$..c"), ["1", "2", "3", "0"], "document order");
        assert_eq!(texts(&j, "$.a..k"), ["\"x\"", "\"y\""]);
        assert_eq!(texts(&j, "$..b[1].c"), ["2"]);
        assert_eq!(texts(&j, "$.a.b[?(@.c >= 2)].k"), ["\"y\""]);
        assert_eq!(texts(&j, "$.a.b[?(@.k == 'x' || @.c == 3)].c"), ["1", "3"]);
        assert_eq!(texts(&j, "$.a.b[?(@.k)].c"), ["1", "2"]);
        assert_eq!(
            texts(&j, "$.a.b[?(@.c > 1 && @.k != 'x')].c"),
            ["2"],
            "a missing @.k matches no comparison"
        );
        assert_eq!(
            select(&j, "a.b[0].c")
                .unwrap()
                .0
                .map(|t| t.print(false).unwrap()),
            Some("1".into())
        );
        assert!(
            select(&j, "a.b[*].c").is_err(),
            "SelectToken: more than one"
        );
        assert!(select_all(&j, "a.b[").is_err());
    }
}
