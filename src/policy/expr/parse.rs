//! The expression parser: tokens to the resolved tree (`Node`), with `context.*`
//! members mapped to `Field`s and `Lookup`s and every error at its offset.
//! Must not touch: lexing details, evaluation.

use super::*;

pub(super) struct Parser {
    pub(super) tokens: Vec<(Tok, usize)>,
    pub(super) pos: usize,
    pub(super) locals: Vec<String>,
    pub(super) nodes: usize,
    pub(super) depth: usize,
    pub(super) reads_request: bool,
}

/// A member chain while it is resolved: `context.Request.Headers` is a path until a
/// member ends it.
pub(super) enum Chain {
    Value(Node),
    Path(Vec<String>, usize),
}

impl Parser {
    pub(super) fn peek(&self) -> Tok {
        self.tokens.get(self.pos).map_or(Tok::End, |t| t.0.clone())
    }
    pub(super) fn offset(&self) -> usize {
        self.tokens
            .get(self.pos)
            .or(self.tokens.last())
            .map_or(0, |t| t.1)
    }
    pub(super) fn next(&mut self) -> Tok {
        let t = self.peek();
        self.pos += 1;
        t
    }
    pub(super) fn eat(&mut self, p: &'static str) -> bool {
        if self.peek() == Tok::Punct(p) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    pub(super) fn expect(&mut self, t: &Tok) -> Result<(), ParseError> {
        if &self.peek() == t {
            self.pos += 1;
            Ok(())
        } else {
            let want = match t {
                Tok::Punct(p) => format!("'{p}'"),
                _ => "a token".into(),
            };
            Err(self.err_at(self.offset(), format!("expected {want}")))
        }
    }
    pub(super) fn err_at(&self, offset: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            offset,
            message: message.into(),
        }
    }
    pub(super) fn count(&mut self, at: usize) -> Result<(), ParseError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(self.err_at(at, "expression too large"));
        }
        Ok(())
    }

    pub(super) fn expr(&mut self) -> Result<Node, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err_at(self.offset(), "expression nested too deeply"));
        }
        let c = self.coalesce()?;
        let r = if self.eat("?") {
            let a = self.expr()?;
            self.expect(&Tok::Punct(":"))?;
            let b = self.expr()?;
            Node::Cond(Box::new(c), Box::new(a), Box::new(b))
        } else {
            c
        };
        self.depth -= 1;
        Ok(r)
    }

    pub(super) fn binary_level(
        &mut self,
        ops: &[(&'static str, BinOp)],
        next: fn(&mut Parser) -> Result<Node, ParseError>,
    ) -> Result<Node, ParseError> {
        let mut left = next(self)?;
        'outer: loop {
            for (p, op) in ops {
                let at = self.offset();
                if self.eat(p) {
                    self.count(at)?;
                    let right = next(self)?;
                    left = Node::Bin(*op, Box::new(left), Box::new(right));
                    continue 'outer;
                }
            }
            return Ok(left);
        }
    }
    /// `a ?? b`: `b` when `a` is null (right to left, as in C#).
    pub(super) fn coalesce(&mut self) -> Result<Node, ParseError> {
        let left = self.or()?;
        let at = self.offset();
        if self.eat("??") {
            self.count(at)?;
            let right = self.coalesce()?;
            return Ok(Node::Coalesce(Box::new(left), Box::new(right)));
        }
        Ok(left)
    }

    pub(super) fn or(&mut self) -> Result<Node, ParseError> {
        self.binary_level(&[("||", BinOp::Or)], Parser::and)
    }
    pub(super) fn and(&mut self) -> Result<Node, ParseError> {
        self.binary_level(&[("&&", BinOp::And)], Parser::equality)
    }
    pub(super) fn equality(&mut self) -> Result<Node, ParseError> {
        self.binary_level(&[("==", BinOp::Eq), ("!=", BinOp::Ne)], Parser::relational)
    }
    pub(super) fn relational(&mut self) -> Result<Node, ParseError> {
        self.binary_level(
            &[
                ("<=", BinOp::Le),
                (">=", BinOp::Ge),
                ("<", BinOp::Lt),
                (">", BinOp::Gt),
            ],
            Parser::additive,
        )
    }
    pub(super) fn additive(&mut self) -> Result<Node, ParseError> {
        self.binary_level(
            &[("+", BinOp::Add), ("-", BinOp::Sub)],
            Parser::multiplicative,
        )
    }
    pub(super) fn multiplicative(&mut self) -> Result<Node, ParseError> {
        self.binary_level(
            &[("*", BinOp::Mul), ("/", BinOp::Div), ("%", BinOp::Rem)],
            Parser::unary,
        )
    }

    pub(super) fn unary(&mut self) -> Result<Node, ParseError> {
        let at = self.offset();
        self.count(at)?;
        if self.eat("!") {
            return Ok(Node::Not(Box::new(self.unary()?)));
        }
        if self.eat("-") {
            return match self.next() {
                Tok::Int(n) => Ok(Node::Int(-n)),
                _ => Err(self.err_at(at, "'-' is only supported before a number")),
            };
        }
        // (type)x
        if self.peek() == Tok::Punct("(") {
            if let Some((Tok::Ident(w), _)) = self.tokens.get(self.pos + 1) {
                let ty = match w.as_str() {
                    "string" => Some(Ty::Str),
                    "int" | "long" => Some(Ty::Int),
                    "bool" => Some(Ty::Bool),
                    _ => None,
                };
                if let (Some(t), Some((Tok::Punct(")"), _))) = (ty, self.tokens.get(self.pos + 2)) {
                    self.pos += 3;
                    return Ok(Node::Cast(t, Box::new(self.unary()?)));
                }
            }
        }
        self.postfix()
    }

    pub(super) fn postfix(&mut self) -> Result<Node, ParseError> {
        let at = self.offset();
        let mut chain = match self.next() {
            Tok::Int(n) => Chain::Value(Node::Int(n)),
            Tok::Str(s) => Chain::Value(Node::Str(s)),
            Tok::Interp(parts) => Chain::Value(self.interpolation(parts)?),
            Tok::Punct("(") => {
                let e = self.expr()?;
                self.expect(&Tok::Punct(")"))?;
                Chain::Value(e)
            }
            Tok::Ident(w) => match w.as_str() {
                "true" => Chain::Value(Node::Bool(true)),
                "false" => Chain::Value(Node::Bool(false)),
                "null" => Chain::Value(Node::Null),
                "context" => Chain::Path(vec!["context".into()], at),
                "string" | "String" => Chain::Value(self.string_static()?),
                "Guid" | "int" | "long" | "Int32" | "Int64" | "bool" | "Boolean" | "Convert" => {
                    Chain::Value(self.other_static(&w, at)?)
                }
                name => match self.locals.iter().position(|l| l == name) {
                    Some(i) => Chain::Value(Node::Local(i)),
                    None => {
                        return Err(self.err_at(
                            at,
                            format!("'{name}' is not supported here (known: context, literals, declared variables)"),
                        ))
                    }
                },
            },
            Tok::End => return Err(self.err_at(at, "expected an expression")),
            other => {
                return Err(self.err_at(at, format!("unexpected {}", describe(&other))))
            }
        };
        loop {
            let at = self.offset();
            let safe = self.peek() == Tok::Punct("?.");
            if self.eat(".") || self.eat("?.") {
                let name = match self.next() {
                    Tok::Ident(n) => n,
                    _ => return Err(self.err_at(at, "expected a member name after '.'")),
                };
                // `?.` on context's objects is `.`: their members are null when they are
                chain = match (safe, self.member(chain, name, at)?) {
                    (true, Chain::Value(member)) => Chain::Value(Node::NullSafe(Box::new(member))),
                    (_, other) => other,
                };
            } else if self.peek() == Tok::Punct("[") {
                self.pos += 1;
                let key = self.expr()?;
                self.expect(&Tok::Punct("]"))?;
                chain = match chain {
                    Chain::Path(p, start) => {
                        let lookup = self.collection(&p, start)?;
                        Chain::Value(Node::Lookup {
                            lookup,
                            name: Box::new(key),
                            default: None,
                            required: true,
                            cast: None,
                        })
                    }
                    Chain::Value(_) => {
                        return Err(
                            self.err_at(at, "indexing is only supported on context collections")
                        )
                    }
                };
            } else {
                break;
            }
        }
        match chain {
            Chain::Value(v) => Ok(v),
            // the objects a call may lack, as values: compared with null
            Chain::Path(p, _) if p.len() == 2 && p[1] == "Subscription" => {
                Ok(Node::Field(Field::SubscriptionObject))
            }
            Chain::Path(p, _) if p.len() == 2 && p[1] == "Product" => {
                Ok(Node::Field(Field::ProductObject))
            }
            Chain::Path(p, _) if p.len() == 2 && p[1] == "User" => Ok(Node::Null),
            Chain::Path(p, start) => {
                Err(self.err_at(start, format!("'{}' is not a value", p.join("."))))
            }
        }
    }

    /// `(args)` after a method name.
    /// `string.IsNullOrEmpty(x)`, `IsNullOrWhiteSpace(x)`, `Concat(a, ...)`,
    /// `Format(text, a, ...)` and `Equals(a, b)`.
    pub(super) fn string_static(&mut self) -> Result<Node, ParseError> {
        self.expect(&Tok::Punct("."))?;
        let at = self.offset();
        let name = match self.next() {
            Tok::Ident(m) => m,
            _ => return Err(self.err_at(at, "expected a member of 'string'")),
        };
        let (f, min, max) = match name.as_str() {
            "IsNullOrEmpty" => (StrStatic::IsNullOrEmpty, 1, 1),
            "IsNullOrWhiteSpace" => (StrStatic::IsNullOrWhiteSpace, 1, 1),
            "Concat" => (StrStatic::Concat, 1, 64),
            "Format" => (StrStatic::Format, 1, 64),
            "Equals" => (StrStatic::Equals, 2, 2),
            _ => {
                return Err(self.err_at(
                    at,
                    format!("string.{name} is not supported (IsNullOrEmpty, IsNullOrWhiteSpace, Concat, Format, Equals are)"),
                ))
            }
        };
        let args = self.args()?;
        if args.len() < min || args.len() > max {
            return Err(self.err_at(at, format!("string.{name} takes {min}..{max} arguments")));
        }
        if f == StrStatic::Format && !matches!(ty_of(&args[0], &[]), Ty::Str | Ty::Any) {
            return Err(self.err_at(at, "string.Format needs a format string first"));
        }
        Ok(Node::StrStatic(f, args))
    }

    /// `Guid.NewGuid()`, `int.Parse(s)`, `bool.Parse(s)`, `Convert.ToInt32(x)` and kin.
    pub(super) fn other_static(&mut self, ty: &str, at: usize) -> Result<Node, ParseError> {
        self.expect(&Tok::Punct("."))?;
        let m_at = self.offset();
        let member = match self.next() {
            Tok::Ident(m) => m,
            _ => return Err(self.err_at(m_at, format!("expected a member of '{ty}'"))),
        };
        let f = match (ty, member.as_str()) {
            ("Guid", "NewGuid") => Static::NewGuid(b'D'),
            ("int" | "long" | "Int32" | "Int64", "Parse") => Static::ParseInt,
            ("bool" | "Boolean", "Parse") => Static::ParseBool,
            ("Convert", "ToInt32" | "ToInt64") => Static::ConvertInt,
            ("Convert", "ToBoolean") => Static::ParseBool,
            ("Convert", "ToString") => Static::ConvertString,
            _ => {
                return Err(self.err_at(at, format!("{ty}.{member} is not supported")));
            }
        };
        let args = self.args()?;
        let want = usize::from(!matches!(f, Static::NewGuid(_)));
        if args.len() != want {
            return Err(self.err_at(m_at, format!("{ty}.{member} takes {want} argument(s)")));
        }
        Ok(Node::Static(f, args))
    }

    pub(super) fn args(&mut self) -> Result<Vec<Node>, ParseError> {
        self.expect(&Tok::Punct("("))?;
        let mut args = Vec::new();
        if self.eat(")") {
            return Ok(args);
        }
        loop {
            args.push(self.expr()?);
            if self.eat(")") {
                return Ok(args);
            }
            self.expect(&Tok::Punct(","))?;
        }
    }

    pub(super) fn collection(&mut self, path: &[String], at: usize) -> Result<Lookup, ParseError> {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        let l = match p.as_slice() {
            ["context", "Request", "Headers"] => Lookup::RequestHeader,
            ["context", "Request", "Url", "Query"] => Lookup::RequestQuery,
            ["context", "Request", "OriginalUrl", "Query"] => Lookup::OriginalQuery,
            ["context", "Request", "MatchedParameters"] => Lookup::MatchedParameter,
            ["context", "Response", "Headers"] => Lookup::ResponseHeader,
            ["context", "Variables"] => Lookup::Variable,
            _ => return Err(self.err_at(at, format!("'{}' is not a collection", p.join(".")))),
        };
        if matches!(
            l,
            Lookup::RequestHeader
                | Lookup::RequestQuery
                | Lookup::OriginalQuery
                | Lookup::MatchedParameter
        ) {
            self.reads_request = true;
        }
        Ok(l)
    }

    /// `$"..."`: each hole is parsed as an expression of its own, with the same locals.
    pub(super) fn interpolation(&mut self, parts: Vec<Part>) -> Result<Node, ParseError> {
        let mut nodes = Vec::with_capacity(parts.len());
        for part in parts {
            match part {
                Part::Text(s) => nodes.push(Node::Str(s)),
                Part::Hole(tokens) => {
                    let outer = std::mem::replace(&mut self.tokens, tokens);
                    let outer_pos = std::mem::replace(&mut self.pos, 0);
                    let hole = self.expr();
                    let rest = (self.pos < self.tokens.len()).then(|| self.offset());
                    self.tokens = outer;
                    self.pos = outer_pos;
                    let hole = hole?;
                    if let Some(at) = rest {
                        return Err(self.err_at(at, "unexpected text in an interpolated hole"));
                    }
                    nodes.push(hole);
                }
            }
        }
        Ok(Node::Interp(nodes))
    }

    /// `a.Equals(b)` and `a.Equals(b, StringComparison.X)`: ordinal, or ignoring case.
    pub(super) fn equals(&mut self, left: Node) -> Result<Node, ParseError> {
        self.expect(&Tok::Punct("("))?;
        let right = self.expr()?;
        let mut ignore_case = false;
        if self.peek() == Tok::Punct(",") {
            self.pos += 1;
            let at = self.offset();
            let comparison = match (self.next(), self.next(), self.next()) {
                (Tok::Ident(t), Tok::Punct("."), Tok::Ident(c)) if t == "StringComparison" => c,
                _ => return Err(self.err_at(at, "expected StringComparison.<kind>")),
            };
            ignore_case = match comparison.as_str() {
                "Ordinal" | "InvariantCulture" | "CurrentCulture" => false,
                "OrdinalIgnoreCase" | "InvariantCultureIgnoreCase" | "CurrentCultureIgnoreCase" => {
                    true
                }
                other => {
                    return Err(self.err_at(at, format!("unknown StringComparison.{other}")));
                }
            };
        }
        self.expect(&Tok::Punct(")"))?;
        let fold = |n: Node| Node::Method(StrMethod::ToLower, Box::new(n), Vec::new());
        Ok(if ignore_case {
            Node::Bin(BinOp::Eq, Box::new(fold(left)), Box::new(fold(right)))
        } else {
            Node::Bin(BinOp::Eq, Box::new(left), Box::new(right))
        })
    }

    /// A member of a string value: `StartsWith`, `Replace`, `Length`...
    pub(super) fn string_member(
        &mut self,
        v: Node,
        name: &str,
        at: usize,
    ) -> Result<Node, ParseError> {
        let m = match name {
            "StartsWith" => StrMethod::StartsWith,
            "EndsWith" => StrMethod::EndsWith,
            "Contains" => StrMethod::Contains,
            "ToLower" | "ToLowerInvariant" => StrMethod::ToLower,
            "ToUpper" | "ToUpperInvariant" => StrMethod::ToUpper,
            "Substring" => StrMethod::Substring,
            "Trim" => StrMethod::Trim,
            "TrimStart" => StrMethod::TrimStart,
            "TrimEnd" => StrMethod::TrimEnd,
            "Replace" => StrMethod::Replace,
            "IndexOf" => StrMethod::IndexOf,
            "LastIndexOf" => StrMethod::LastIndexOf,
            "ToString" => StrMethod::ToString,
            "Length" => StrMethod::Length,
            _ => return Err(self.err_at(at, format!("member '{name}' is not supported"))),
        };
        // Guid.NewGuid().ToString("N"): the format goes to the GUID
        if let (StrMethod::ToString, Node::Static(Static::NewGuid(_), _)) = (m, &v) {
            let args = self.args()?;
            let format = match args.as_slice() {
                [] => b'D',
                [Node::Str(f)] if ["D", "N", "B", "P"].contains(&f.as_str()) => f.as_bytes()[0],
                _ => return Err(self.err_at(at, "a GUID's format is \"D\", \"N\", \"B\" or \"P\"")),
            };
            return Ok(Node::Static(Static::NewGuid(format), Vec::new()));
        }
        let ty = ty_of(&v, &[]);
        if m != StrMethod::ToString && matches!(ty, Ty::Int | Ty::Bool) {
            return Err(self.err_at(at, format!("'{name}' needs a string")));
        }
        let args = if m == StrMethod::Length {
            Vec::new()
        } else {
            self.args()?
        };
        let (min, max) = match m {
            StrMethod::StartsWith
            | StrMethod::EndsWith
            | StrMethod::Contains
            | StrMethod::LastIndexOf => (1, 1),
            StrMethod::IndexOf | StrMethod::Substring => (1, 2),
            // the characters to trim (whitespace without)
            StrMethod::Trim | StrMethod::TrimStart | StrMethod::TrimEnd => (0, 16),
            StrMethod::Replace => (2, 2),
            _ => (0, 0),
        };
        if args.len() < min || args.len() > max {
            return Err(self.err_at(at, format!("'{name}' takes {min}..{max} arguments")));
        }
        Ok(Node::Method(m, Box::new(v), args))
    }

    pub(super) fn member(
        &mut self,
        chain: Chain,
        name: String,
        at: usize,
    ) -> Result<Chain, ParseError> {
        match chain {
            Chain::Value(v) if name == "Equals" => Ok(Chain::Value(self.equals(v)?)),
            Chain::Value(v) => Ok(Chain::Value(self.string_member(v, &name, at)?)),
            Chain::Path(path, _)
                if name == "ToString"
                    && matches!(
                        path.iter()
                            .map(String::as_str)
                            .collect::<Vec<_>>()
                            .as_slice(),
                        ["context", "Request", "Url" | "OriginalUrl"]
                    ) =>
            {
                self.expect(&Tok::Punct("("))?;
                self.expect(&Tok::Punct(")"))?;
                self.reads_request = true;
                Ok(Chain::Value(Node::Field(if path[2] == "Url" {
                    Field::RequestUrl
                } else {
                    Field::OriginalUrl
                })))
            }
            Chain::Path(mut path, start) => {
                path.push(name.clone());
                let p: Vec<&str> = path.iter().map(String::as_str).collect();
                let field = field_of(&p);
                if let Some(f) = field {
                    if p[1] == "Request" {
                        self.reads_request = true;
                    }
                    return Ok(Chain::Value(Node::Field(f)));
                }
                // methods on collections
                let parent = &path[..path.len() - 1];
                match name.as_str() {
                    "GetValueOrDefault" | "ContainsKey" if parent.len() >= 2 => {
                        let lookup = self.collection(parent, start)?;
                        let mut cast = None;
                        if name == "GetValueOrDefault" && self.peek() == Tok::Punct("<") {
                            if lookup != Lookup::Variable {
                                return Err(self.err_at(
                                    at,
                                    "GetValueOrDefault<T> is only supported on context.Variables",
                                ));
                            }
                            self.pos += 1;
                            let t_at = self.offset();
                            cast = Some(match self.next() {
                                Tok::Ident(t) if t == "string" => Ty::Str,
                                Tok::Ident(t) if t == "int" || t == "long" => Ty::Int,
                                Tok::Ident(t) if t == "bool" => Ty::Bool,
                                _ => {
                                    return Err(self.err_at(
                                        t_at,
                                        "GetValueOrDefault<T> supports string, int and bool",
                                    ))
                                }
                            });
                            self.expect(&Tok::Punct(">"))?;
                        }
                        let mut args = self.args()?;
                        if name == "ContainsKey" {
                            if args.len() != 1 {
                                return Err(self.err_at(at, "ContainsKey takes one argument"));
                            }
                            let a = args.remove(0);
                            return Ok(Chain::Value(Node::ContainsKey(lookup, Box::new(a))));
                        }
                        if args.is_empty() || args.len() > 2 {
                            return Err(self.err_at(
                                at,
                                "GetValueOrDefault takes a name and an optional default",
                            ));
                        }
                        let default = if args.len() == 2 {
                            Some(Box::new(args.remove(1)))
                        } else {
                            None
                        };
                        let key = args.remove(0);
                        Ok(Chain::Value(Node::Lookup {
                            lookup,
                            name: Box::new(key),
                            default,
                            required: false,
                            cast,
                        }))
                    }
                    _ => {
                        let known_prefix = matches!(
                            p.as_slice(),
                            ["context", "Request"]
                                | ["context", "Request", "Url" | "OriginalUrl"]
                                | ["context", "Request", "Headers"]
                                | ["context", "Request", "Url" | "OriginalUrl", "Query"]
                                | ["context", "Request", "MatchedParameters"]
                                | ["context", "Response"]
                                | ["context", "Response", "Headers"]
                                | ["context", "Subscription"]
                                | ["context", "User"]
                                | ["context", "Api"]
                                | ["context", "Operation"]
                                | ["context", "Product"]
                                | ["context", "Deployment"]
                                | ["context", "LastError"]
                                | ["context", "Variables"]
                        );
                        if known_prefix {
                            Ok(Chain::Path(path, start))
                        } else {
                            Err(self.err_at(at, format!("'{}' is not supported", p.join("."))))
                        }
                    }
                }
            }
        }
    }
}

/// The value a member path names (`context.Request.Method`…), if it is one.
pub(super) fn field_of(path: &[&str]) -> Option<Field> {
    Some(match path {
        ["context", "Request", "Method"] => Field::RequestMethod,
        ["context", "Request", "IpAddress"] => Field::RequestIp,
        // the gateway does not move the request's path or host: Url and OriginalUrl
        // differ in their query (set-query-parameter edits Url's)
        ["context", "Request", "Url" | "OriginalUrl", "Path"] => Field::RequestPath,
        ["context", "Request", "Url" | "OriginalUrl", "Host"] => Field::RequestHost,
        ["context", "Request", "Url" | "OriginalUrl", "Scheme"] => Field::RequestScheme,
        ["context", "Request", "Url" | "OriginalUrl", "Port"] => Field::RequestPort,
        ["context", "Request", "Url", "QueryString"] => Field::RequestQueryString,
        ["context", "Request", "OriginalUrl", "QueryString"] => Field::OriginalQueryString,
        ["context", "Response", "StatusCode"] => Field::ResponseStatus,
        ["context", "Response", "StatusReason"] => Field::ResponseReason,
        ["context", "Subscription", "Id"] => Field::SubscriptionId,
        ["context", "Subscription", "Key"] => Field::SubscriptionKey,
        ["context", "Subscription", "Name"] => Field::SubscriptionName,
        ["context", "Api", "Id"] => Field::ApiId,
        ["context", "Api", "Name"] => Field::ApiName,
        ["context", "Api", "Path"] => Field::ApiPath,
        ["context", "Operation", "Id"] => Field::OperationId,
        ["context", "Operation", "Method"] => Field::OperationMethod,
        ["context", "Operation", "UrlTemplate"] => Field::OperationTemplate,
        ["context", "Product", "Id"] => Field::ProductId,
        ["context", "Product", "Name"] => Field::ProductName,
        ["context", "RequestId"] => Field::RequestId,
        ["context", "Deployment", "GatewayId"] => Field::GatewayId,
        ["context", "LastError", "Source"] => Field::LastErrorSource,
        ["context", "LastError", "Reason"] => Field::LastErrorReason,
        ["context", "LastError", "Message"] => Field::LastErrorMessage,
        ["context", "LastError", "Scope"] => Field::LastErrorScope,
        ["context", "LastError", "Section"] => Field::LastErrorSection,
        ["context", "LastError", "PolicyId"] => Field::LastErrorPolicyId,
        _ => return None,
    })
}

pub(super) fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(w) => format!("'{w}'"),
        Tok::Int(n) => format!("number {n}"),
        Tok::Str(_) => "string".into(),
        Tok::Interp(_) => "interpolated string".into(),
        Tok::Punct(p) => format!("'{p}'"),
        Tok::End => "end of expression".into(),
    }
}
