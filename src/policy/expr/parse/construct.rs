//! The parser's constructions: `new T(...)` with object, collection and dictionary
//! initialisers, arrays (`new[] { … }`, `new T[n]`) and anonymous objects.
//! Must not touch: the rest of the grammar (parse.rs), evaluation.

use super::*;

impl Parser {
    /// `new T(args) { items }`, `new[] { ... }`, `new T[n]`, `new { a = 1 }`.
    pub(super) fn new_expr(&mut self, at: usize) -> Result<Node, ParseError> {
        if self.peek_is(0, "{") {
            return self.anonymous();
        }
        if self.peek_is(0, "[") && self.peek_is(1, "]") {
            self.pos += 2;
            let items = self.initializer()?;
            return Ok(Node::New(statics::NewKind::Array, Vec::new(), items));
        }
        let name_at = self.offset();
        let mut name = self.ident("a type after 'new'")?;
        while NAMESPACES.contains(&name.as_str()) && self.peek_is(0, ".") {
            self.pos += 1;
            name = self.ident("a type name")?;
        }
        // generic arguments only matter for checking
        if self.peek_is(0, "<") {
            self.pos -= 1;
            self.try_type().ok_or_else(|| {
                self.err_at(name_at, format!("'new {name}<...>' is not supported"))
            })?;
        }
        let kind = match name.as_str() {
            "JObject" => statics::NewKind::JObject,
            "JArray" => statics::NewKind::JArray,
            "JProperty" => statics::NewKind::JProperty,
            "JValue" => statics::NewKind::JValue,
            "List" | "HashSet" => statics::NewKind::List,
            "Dictionary" => statics::NewKind::Dict,
            "StringBuilder" => statics::NewKind::Builder,
            "Regex" => statics::NewKind::Regex,
            "XElement" => statics::NewKind::XElement,
            "XAttribute" => statics::NewKind::XAttribute,
            "XDocument" => statics::NewKind::XDocument,
            "Uri" => statics::NewKind::Uri,
            "Random" => statics::NewKind::Random,
            "Guid" => statics::NewKind::Guid,
            "string" | "String" if !self.peek_is(0, "[") => statics::NewKind::Str,
            n if hashes::algo_of(n).is_some() => {
                let (algo, hmac) = hashes::algo_of(n).unwrap_or((hashes::Algo::Sha256, false));
                statics::NewKind::Hash(algo, hmac)
            }
            "DateTime" => statics::NewKind::DateTime,
            "DateTimeOffset" => statics::NewKind::DateTimeOffset,
            "TimeSpan" => statics::NewKind::TimeSpan,
            n if exceptions::index_of(n).is_some() => {
                statics::NewKind::Exception(exceptions::index_of(n).unwrap_or(0))
            }
            n if type_named(n, &[]).is_some() && self.peek_is(0, "[") => statics::NewKind::Array,
            other => {
                return Err(self.err_at(at, format!("'new {other}' is not supported")));
            }
        };
        if kind == statics::NewKind::Array {
            self.punct("[")?;
            if self.eat("]") {
                let items = self.initializer()?;
                return Ok(Node::New(kind, Vec::new(), items));
            }
            let size = self.expr()?;
            self.punct("]")?;
            // the element type's default value: 0 for numbers, false for bool
            let default = match type_named(&name, &[]) {
                Some(Ty::Int) => Node::Int(0),
                Some(Ty::Double) => Node::Double(0.0),
                Some(Ty::Bool) => Node::Bool(false),
                _ => Node::Null,
            };
            return Ok(Node::New(kind, vec![size, default], Vec::new()));
        }
        let mut args = if self.peek_is(0, "(") {
            self.args()?
        } else {
            Vec::new()
        };
        if kind == statics::NewKind::Regex {
            match args.get(1) {
                None => self.precompile(&mut args, 0, 0, name_at)?,
                Some(Node::Int(o)) => {
                    let o = *o;
                    self.precompile(&mut args, 0, o, name_at)?
                }
                Some(_) => {}
            }
        }
        let items = if self.peek_is(0, "{") {
            self.initializer()?
        } else {
            Vec::new()
        };
        Ok(Node::New(kind, args, items))
    }

    /// `Array.Exists(a, p)`, `TrueForAll`, `Find`, `FindAll`: Array's predicate helpers
    /// are the LINQ members over their first argument.
    pub(in crate::policy::expr) fn array_predicate(
        &mut self,
        ty: &str,
        member: &str,
        m_at: usize,
    ) -> Result<Option<Node>, ParseError> {
        let linq = match (ty, member) {
            ("Array", "Exists") => M::Any,
            ("Array", "TrueForAll") => M::All,
            ("Array", "Find") => M::FirstOrDefault,
            ("Array", "FindAll") => M::Where,
            _ => return Ok(None),
        };
        let mut args = self.args()?;
        if args.len() != 2 {
            return Err(self.err_at(m_at, format!("{ty}.{member} takes 2 argument(s)")));
        }
        let predicate = args.pop().unwrap_or(Node::Null);
        let array = args.pop().unwrap_or(Node::Null);
        let call = |target: Node, member: M, args: Vec<Node>| Node::Call {
            target: Box::new(target),
            member,
            args,
            generic: None,
            safe: false,
        };
        let found = call(array, linq, vec![predicate]);
        Ok(Some(match linq {
            // FindAll gives an array
            M::Where => call(found, M::ToArray, Vec::new()),
            _ => found,
        }))
    }

    /// `{ a, b }`, `{ { k, v }, ... }` or `{ ["k"] = v, ... }`.
    pub(in crate::policy::expr) fn initializer(&mut self) -> Result<Vec<Node>, ParseError> {
        self.punct("{")?;
        let mut items = Vec::new();
        while !self.eat("}") {
            if self.eat("{") {
                let k = self.expr()?;
                self.punct(",")?;
                let v = self.expr()?;
                self.punct("}")?;
                items.push(Node::New(statics::NewKind::Pair, vec![k, v], Vec::new()));
            } else if self.eat("[") {
                let k = self.expr()?;
                self.punct("]")?;
                self.punct("=")?;
                let v = self.expr()?;
                items.push(Node::New(statics::NewKind::Pair, vec![k, v], Vec::new()));
            } else {
                items.push(self.expr()?);
            }
            if !self.eat(",") {
                self.punct("}")?;
                break;
            }
        }
        Ok(items)
    }

    /// `new { a = 1, b = x, c }`.
    pub(super) fn anonymous(&mut self) -> Result<Node, ParseError> {
        self.punct("{")?;
        let mut fields = Vec::new();
        while !self.eat("}") {
            let at = self.offset();
            let (name, value) = if matches!(self.peek(), Tok::Ident(_)) && self.peek_is(1, "=") {
                let name = self.ident("a name")?;
                self.pos += 1;
                (name, self.expr()?)
            } else {
                let v = self.expr()?;
                let name = match &v {
                    Node::Local(i) => self
                        .scope
                        .iter()
                        .find(|(_, s)| s == i)
                        .map(|(n, _)| n.clone()),
                    _ => None,
                }
                .ok_or_else(|| self.err_at(at, "a member of an anonymous object needs a name"))?;
                (name, v)
            };
            fields.push((name, value));
            if !self.eat(",") {
                self.punct("}")?;
                break;
            }
        }
        Ok(Node::Anonymous(fields))
    }
}
