//! The expression parser: tokens to the resolved tree (`Node`). `context.*` members
//! become `Field`s, `Lookup`s and `Body` reads; locals become slots; members and static
//! functions become enums; a type the compiler knows is checked against the member
//! called on it. Every error carries its offset. Statements are in stmt.rs.
//! Must not touch: lexing details, evaluation.

use super::types::{field_of, type_named};
use super::*;

mod construct;
mod functions;
mod message;

pub(super) struct Parser {
    pub(super) tokens: Vec<(Tok, usize)>,
    pub(super) pos: usize,
    /// Visible locals, innermost last: name and slot.
    pub(super) scope: Vec<(String, usize)>,
    /// The declared type of every slot.
    pub(super) slot_types: Vec<Ty>,
    pub(super) slot_count: usize,
    pub(super) nodes: usize,
    pub(super) depth: usize,
    pub(super) reads_request: bool,
    /// Reads the request's ([0]) or the response's ([1]) body.
    pub(super) reads_body: [bool; 2],
    /// The type the block's returns agree on.
    pub(super) return_ty: Option<Ty>,
    /// How many loops enclose the statement being parsed (break / continue).
    pub(super) loops: usize,
    /// The slots of the enclosing catch blocks' exceptions (`throw;`).
    pub(super) catches: Vec<usize>,
    /// The block's local functions, by name.
    pub(super) functions: Vec<(String, std::sync::Arc<LocalFn>)>,
}

/// A member chain while it is resolved: `context.Request.Headers` is a path until a
/// member ends it.
pub(super) enum Chain {
    Value(Node),
    Path(Vec<String>, usize),
}

/// Namespaces that may prefix a type name (`System.Text.Encoding.UTF8`).
const NAMESPACES: [&str; 14] = [
    "System",
    "RegularExpressions",
    "Xml",
    "Text",
    "Linq",
    "Json",
    "Newtonsoft",
    "Collections",
    "Generic",
    "Net",
    "Security",
    "Cryptography",
    "Globalization",
    "Web",
];

impl Parser {
    pub(super) fn new(tokens: Vec<(Tok, usize)>) -> Parser {
        Parser {
            tokens,
            pos: 0,
            scope: Vec::new(),
            slot_types: Vec::new(),
            slot_count: 0,
            nodes: 0,
            depth: 0,
            reads_request: false,
            reads_body: [false, false],
            return_ty: None,
            loops: 0,
            catches: Vec::new(),
            functions: Vec::new(),
        }
    }
    pub(super) fn peek(&self) -> Tok {
        self.peek_at(0)
    }
    pub(super) fn peek_at(&self, ahead: usize) -> Tok {
        self.tokens
            .get(self.pos + ahead)
            .map_or(Tok::End, |t| t.0.clone())
    }
    pub(super) fn peek_is(&self, ahead: usize, p: &str) -> bool {
        matches!(self.tokens.get(self.pos + ahead), Some((Tok::Punct(x), _)) if *x == p)
    }
    pub(super) fn peek_word(&self, ahead: usize, w: &str) -> bool {
        matches!(self.tokens.get(self.pos + ahead), Some((Tok::Ident(x), _)) if x == w)
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
        if self.peek_is(0, p) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    pub(super) fn eat_word(&mut self, w: &str) -> bool {
        if self.peek_word(0, w) {
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
    pub(super) fn punct(&mut self, p: &'static str) -> Result<(), ParseError> {
        self.expect(&Tok::Punct(p))
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
    pub(super) fn ident(&mut self, what: &str) -> Result<String, ParseError> {
        let at = self.offset();
        match self.next() {
            Tok::Ident(n) => Ok(n),
            _ => Err(self.err_at(at, format!("expected {what}"))),
        }
    }

    /// A new local in the innermost scope.
    pub(super) fn declare(&mut self, name: &str, ty: Ty, at: usize) -> Result<usize, ParseError> {
        if is_keyword(name) {
            return Err(self.err_at(at, format!("'{name}' is a keyword")));
        }
        if self.scope.iter().any(|(n, _)| n == name) {
            return Err(self.err_at(at, format!("'{name}' is declared twice")));
        }
        if self.slot_count >= MAX_SLOTS {
            return Err(self.err_at(at, "too many local variables"));
        }
        let slot = self.slot_count;
        self.slot_count += 1;
        self.slot_types.push(ty);
        self.scope.push((name.to_string(), slot));
        Ok(slot)
    }
    pub(super) fn local(&self, name: &str) -> Option<usize> {
        self.scope
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, s)| *s)
    }

    pub(super) fn expr(&mut self) -> Result<Node, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err_at(self.offset(), "expression nested too deeply"));
        }
        let r = self.conditional();
        self.depth -= 1;
        r
    }

    fn conditional(&mut self) -> Result<Node, ParseError> {
        if let Some(lambda) = self.lambda()? {
            return Ok(lambda);
        }
        let c = self.coalesce()?;
        if self.eat("?") {
            let a = self.expr()?;
            self.punct(":")?;
            let b = self.expr()?;
            return Ok(Node::Cond(Box::new(c), Box::new(a), Box::new(b)));
        }
        Ok(c)
    }

    /// `x => body` or `(x, y) => body`, if that is what follows.
    fn lambda(&mut self) -> Result<Option<Node>, ParseError> {
        let at = self.offset();
        let names: Vec<String> = match (self.peek(), self.peek_is(1, "=>")) {
            (Tok::Ident(n), true) => {
                self.pos += 2;
                vec![n]
            }
            (Tok::Punct("("), _) => {
                let mut i = 1;
                let mut names = Vec::new();
                loop {
                    match self.peek_at(i) {
                        Tok::Ident(n) => names.push(n),
                        Tok::Punct(")") if names.is_empty() => break,
                        _ => return Ok(None),
                    }
                    i += 1;
                    if self.peek_is(i, ",") {
                        i += 1;
                    } else {
                        break;
                    }
                }
                if !(self.peek_is(i, ")") && self.peek_is(i + 1, "=>")) {
                    return Ok(None);
                }
                self.pos += i + 2;
                names
            }
            _ => return Ok(None),
        };
        let mark = self.scope.len();
        let mut slots = Vec::with_capacity(names.len());
        for n in &names {
            slots.push(self.declare(n, Ty::Any, at)?);
        }
        if self.peek_is(0, "{") {
            return Err(self.err_at(
                self.offset(),
                "a lambda's body is an expression here, not a block",
            ));
        }
        let body = self.expr();
        self.scope.truncate(mark);
        Ok(Some(Node::Lambda(slots, Box::new(body?))))
    }

    fn binary_level(
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
                    left = match (op, &left, &right) {
                        // flags combine at load (RegexOptions.IgnoreCase | RegexOptions.Multiline)
                        (BinOp::BitOr, Node::Int(a), Node::Int(b)) => Node::Int(a | b),
                        (BinOp::BitAnd, Node::Int(a), Node::Int(b)) => Node::Int(a & b),
                        _ => Node::Bin(*op, Box::new(left), Box::new(right)),
                    };
                    continue 'outer;
                }
            }
            return Ok(left);
        }
    }
    /// `a ?? b`: `b` when `a` is null (right to left, as in C#).
    fn coalesce(&mut self) -> Result<Node, ParseError> {
        let left = self.or()?;
        let at = self.offset();
        if self.eat("??") {
            self.count(at)?;
            let right = self.coalesce()?;
            return Ok(Node::Coalesce(Box::new(left), Box::new(right)));
        }
        Ok(left)
    }
    fn or(&mut self) -> Result<Node, ParseError> {
        self.binary_level(&[("||", BinOp::Or)], Parser::and)
    }
    fn and(&mut self) -> Result<Node, ParseError> {
        self.binary_level(&[("&&", BinOp::And)], Parser::bit_or)
    }
    fn bit_or(&mut self) -> Result<Node, ParseError> {
        self.binary_level(&[("|", BinOp::BitOr)], Parser::bit_xor)
    }
    fn bit_xor(&mut self) -> Result<Node, ParseError> {
        self.binary_level(&[("^", BinOp::BitXor)], Parser::bit_and)
    }
    fn bit_and(&mut self) -> Result<Node, ParseError> {
        self.binary_level(&[("&", BinOp::BitAnd)], Parser::equality)
    }
    fn equality(&mut self) -> Result<Node, ParseError> {
        self.binary_level(&[("==", BinOp::Eq), ("!=", BinOp::Ne)], Parser::relational)
    }
    /// `< <= > >=`, and `is T` / `is null` / `is not null` / `as T`.
    fn relational(&mut self) -> Result<Node, ParseError> {
        let mut left = self.binary_level(
            &[
                ("<=", BinOp::Le),
                (">=", BinOp::Ge),
                ("<", BinOp::Lt),
                (">", BinOp::Gt),
            ],
            Parser::shift,
        )?;
        loop {
            let at = self.offset();
            if self.eat_word("is") {
                let negate = self.eat_word("not");
                let test = if self.eat_word("null") {
                    Node::Bin(BinOp::Eq, Box::new(left), Box::new(Node::Null))
                } else {
                    let t = self
                        .try_type()
                        .ok_or_else(|| self.err_at(at, "expected a type after 'is'"))?;
                    if let Tok::Ident(name) = self.peek() {
                        let n_at = self.offset();
                        self.pos += 1;
                        let slot = self.declare(&name, t, n_at)?;
                        Node::IsBind(slot, t, Box::new(left))
                    } else {
                        Node::Is(t, Box::new(left))
                    }
                };
                left = if negate {
                    Node::Not(Box::new(test))
                } else {
                    test
                };
            } else if self.eat_word("as") {
                let t = self
                    .try_type()
                    .ok_or_else(|| self.err_at(at, "expected a type after 'as'"))?;
                left = Node::As(t, Box::new(left));
            } else {
                return Ok(left);
            }
        }
    }
    /// `a << n`, `a >> n`: two adjacent `<` or `>` (the lexer keeps them apart, for
    /// generic types such as `List<List<int>>`).
    fn shift(&mut self) -> Result<Node, ParseError> {
        let mut left = self.additive()?;
        loop {
            let adjacent = |p: &Parser, c: &str| {
                p.peek_is(0, c)
                    && p.peek_is(1, c)
                    && p.tokens.get(p.pos + 1).map(|t| t.1) == Some(p.offset() + 1)
                    && !p.peek_is(2, "=")
            };
            let op = if adjacent(self, "<") {
                BinOp::Shl
            } else if adjacent(self, ">") {
                BinOp::Shr
            } else {
                return Ok(left);
            };
            let at = self.offset();
            self.pos += 2;
            self.count(at)?;
            let right = self.additive()?;
            left = Node::Bin(op, Box::new(left), Box::new(right));
        }
    }
    fn additive(&mut self) -> Result<Node, ParseError> {
        self.binary_level(
            &[("+", BinOp::Add), ("-", BinOp::Sub)],
            Parser::multiplicative,
        )
    }
    fn multiplicative(&mut self) -> Result<Node, ParseError> {
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
            return Ok(match self.unary()? {
                Node::Int(n) => Node::Int(-n),
                Node::Double(d) => Node::Double(-d),
                other => Node::Neg(Box::new(other)),
            });
        }
        if self.eat("+") {
            return self.unary();
        }
        if self.peek_is(0, "++") || self.peek_is(0, "--") {
            return Err(self.err_at(at, "'++' and '--' are statements here (x++;), not values"));
        }
        // (T)x
        if self.peek_is(0, "(") {
            let save = self.pos;
            self.pos += 1;
            let narrow = match self.peek() {
                Tok::Ident(name) if !self.peek_is(1, "[") => statics::narrow_of(&name),
                _ => None,
            };
            if let Some(t) = self.try_type() {
                if self.eat(")") && self.starts_operand() {
                    let cast = Node::Cast(t, Box::new(self.unary()?));
                    // (byte)x, (short)x, (int)x…: C#'s unchecked conversion keeps the low bits
                    return Ok(match narrow {
                        Some(n) => Node::Static(statics::S::Narrow(n), vec![cast], None),
                        None => cast,
                    });
                }
            }
            self.pos = save;
        }
        self.postfix()
    }

    /// Whether the next token can start an operand (so `(T)` before it is a cast).
    fn starts_operand(&self) -> bool {
        match self.peek() {
            Tok::Ident(w) => !matches!(w.as_str(), "is" | "as"),
            Tok::Int(_) | Tok::Double(_) | Tok::Str(_) | Tok::Interp(_) => true,
            Tok::Punct(p) => matches!(p, "(" | "!"),
            Tok::End => false,
        }
    }

    /// A type name at the cursor (`string`, `JObject`, `List<string>`, `string[]`,
    /// `int?`), consumed; `None` (nothing consumed) when there is none.
    pub(super) fn try_type(&mut self) -> Option<Ty> {
        let save = self.pos;
        let t = self.type_name();
        if t.is_none() {
            self.pos = save;
        }
        t
    }

    fn type_name(&mut self) -> Option<Ty> {
        let mut name = match self.next() {
            Tok::Ident(n) => n,
            _ => return None,
        };
        while NAMESPACES.contains(&name.as_str()) && self.peek_is(0, ".") {
            self.pos += 1;
            name = match self.next() {
                Tok::Ident(n) => n,
                _ => return None,
            };
        }
        let mut args = Vec::new();
        if self.peek_is(0, "<") {
            self.pos += 1;
            loop {
                args.push(self.type_name()?);
                if self.eat(">") {
                    break;
                }
                if !self.eat(",") {
                    return None;
                }
            }
        }
        let mut ty = type_named(&name, &args)?;
        while self.peek_is(0, "[") && self.peek_is(1, "]") {
            self.pos += 2;
            ty = if ty == Ty::Int && name == "byte" {
                Ty::Bytes
            } else {
                Ty::List
            };
        }
        self.eat("?");
        Some(ty)
    }

    pub(super) fn postfix(&mut self) -> Result<Node, ParseError> {
        let at = self.offset();
        let mut chain = self.primary(at)?;
        loop {
            let at = self.offset();
            let safe = self.peek_is(0, "?.");
            if self.eat(".") || self.eat("?.") {
                let name = self.ident("a member name after '.'")?;
                chain = self.member(chain, name, at, safe)?;
            } else if self.peek_is(0, "[") || (self.peek_is(0, "?") && self.peek_is(1, "[")) {
                let safe = self.eat("?");
                self.pos += 1;
                let key = self.expr()?;
                self.punct("]")?;
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
                    Chain::Value(v) => Chain::Value(Node::Index {
                        target: Box::new(v),
                        key: Box::new(key),
                        safe,
                    }),
                };
            } else {
                break;
            }
        }
        self.chain_value(chain)
    }

    /// The value a finished chain stands for.
    pub(super) fn chain_value(&mut self, chain: Chain) -> Result<Node, ParseError> {
        match chain {
            Chain::Value(v) => Ok(v),
            // the objects a call may lack, as values: compared with null
            Chain::Path(p, _) if p.len() == 2 && p[1] == "Subscription" => {
                Ok(Node::Field(Field::SubscriptionObject))
            }
            Chain::Path(p, _) if p.len() == 2 && p[1] == "Product" => {
                Ok(Node::Field(Field::ProductObject))
            }
            Chain::Path(p, _) if p.len() == 2 && p[1] == "User" => {
                Ok(Node::Field(Field::UserObject))
            }
            // `context.Request.Body != null`
            Chain::Path(p, _) if p.len() == 3 && p[1] == "Request" && p[2] == "Body" => {
                Ok(Node::Field(Field::RequestBodyObject))
            }
            // `context.Response != null` (in a retry's policies, before any answer)
            Chain::Path(p, _) if p.len() == 2 && p[1] == "Response" => {
                Ok(Node::Field(Field::ResponseObject))
            }
            Chain::Path(p, start) => match self.collection(&p, start) {
                Ok(lookup) => Ok(Node::Entries(lookup)),
                Err(_) => Err(self.err_at(start, format!("'{}' is not a value", p.join(".")))),
            },
        }
    }

    fn primary(&mut self, at: usize) -> Result<Chain, ParseError> {
        Ok(match self.next() {
            Tok::Int(n) => Chain::Value(Node::Int(n)),
            Tok::Double(d) => Chain::Value(Node::Double(d)),
            Tok::Str(s) => Chain::Value(Node::Str(s)),
            Tok::Interp(parts) => Chain::Value(self.interpolation(parts)?),
            Tok::Punct("(") => {
                let e = self.expr()?;
                self.punct(")")?;
                Chain::Value(e)
            }
            Tok::Ident(w) => match w.as_str() {
                "true" => Chain::Value(Node::Bool(true)),
                "false" => Chain::Value(Node::Bool(false)),
                "null" => Chain::Value(Node::Null),
                "context" => Chain::Path(vec!["context".into()], at),
                "new" => Chain::Value(self.new_expr(at)?),
                // `unchecked(x)` / `checked(x)`: x (ints are 64-bit, overflow an error)
                "unchecked" | "checked" if self.peek_is(0, "(") => {
                    self.pos += 1;
                    let e = self.expr()?;
                    self.punct(")")?;
                    Chain::Value(e)
                }
                // `nameof(a.b.C)`: "C", the last name, as C# gives it
                "nameof" if self.peek_is(0, "(") => {
                    self.pos += 1;
                    let mut last = None;
                    while let Tok::Ident(w) = self.peek() {
                        self.pos += 1;
                        last = Some(w);
                        if !self.eat(".") {
                            break;
                        }
                    }
                    self.punct(")")?;
                    let name =
                        last.ok_or_else(|| self.err_at(at, "expected a name in nameof(...)"))?;
                    Chain::Value(Node::Str(name))
                }
                // `default(T)`: null, or the zero of a number or bool
                "default" if self.peek_is(0, "(") => {
                    self.pos += 1;
                    let t = self
                        .try_type()
                        .ok_or_else(|| self.err_at(at, "expected a type in default(...)"))?;
                    self.punct(")")?;
                    Chain::Value(match t {
                        Ty::Int => Node::Int(0),
                        Ty::Double => Node::Double(0.0),
                        Ty::Bool => Node::Bool(false),
                        _ => Node::Null,
                    })
                }
                name if self.local(name).is_some() => {
                    Chain::Value(Node::Local(self.local(name).unwrap_or_default()))
                }
                name if self.peek_is(0, "(") && self.function(name).is_some() => {
                    Chain::Value(self.invoke(name)?)
                }
                name => Chain::Value(self.static_member(name.to_string(), at)?),
            },
            Tok::End => return Err(self.err_at(at, "expected an expression")),
            other => return Err(self.err_at(at, format!("unexpected {}", describe(&other)))),
        })
    }

    /// `Type.Member(...)`: a static member, an enum constant or a constant.
    fn static_member(&mut self, mut ty: String, at: usize) -> Result<Node, ParseError> {
        let mut written = ty.clone();
        while NAMESPACES.contains(&ty.as_str()) && self.peek_is(0, ".") {
            self.pos += 1;
            ty = self.ident("a type name")?;
            written = format!("{written}.{ty}");
        }
        if !statics::is_static_type(&ty) || !self.peek_is(0, ".") {
            return Err(self.err_at(
                at,
                format!("'{written}' is not supported here (known: context, literals, declared variables and the types in README \"Policy expressions\")"),
            ));
        }
        self.pos += 1;
        let m_at = self.offset();
        let mut member = self.ident(&format!("a member of '{ty}'"))?;
        if ty == "Encoding" {
            if !matches!(member.as_str(), "UTF8" | "ASCII") {
                return Err(self.err_at(
                    m_at,
                    format!("Encoding.{member} is not supported (UTF8 and ASCII are)"),
                ));
            }
            ty = format!("Encoding.{member}");
            self.punct(".")?;
            member = self.ident("a member of Encoding")?;
        }
        // enum constants that print as their name; culture and style options are the
        // invariant culture's anyway
        if matches!(ty.as_str(), "JTokenType" | "DayOfWeek" | "DateTimeKind") {
            return Ok(Node::Str(member));
        }
        if ty == "CultureInfo" {
            return Ok(Node::Null);
        }
        if ty == "NumberStyles" {
            return numbers::number_style(&member)
                .map(Node::Int)
                .ok_or_else(|| {
                    self.err_at(m_at, format!("NumberStyles.{member} is not supported"))
                });
        }
        if ty == "DateTimeStyles" {
            return dates::style(&member).map(Node::Int).ok_or_else(|| {
                self.err_at(m_at, format!("DateTimeStyles.{member} is not supported"))
            });
        }
        if ty == "RegexOptions" {
            return regexes::option(&member).map(Node::Int).ok_or_else(|| {
                self.err_at(m_at, format!("RegexOptions.{member} is not supported"))
            });
        }
        if let Some(f) = statics::flag(&ty, &member) {
            return Ok(Node::Flag(f));
        }
        match (ty.as_str(), member.as_str()) {
            ("int" | "Int32", "MaxValue") => return Ok(Node::Int(i64::from(i32::MAX))),
            ("int" | "Int32", "MinValue") => return Ok(Node::Int(i64::from(i32::MIN))),
            ("long" | "Int64", "MaxValue") => return Ok(Node::Int(i64::MAX)),
            ("long" | "Int64", "MinValue") => return Ok(Node::Int(i64::MIN)),
            ("double" | "Double", "NaN") => return Ok(Node::Double(f64::NAN)),
            ("double" | "Double", "PositiveInfinity") => return Ok(Node::Double(f64::INFINITY)),
            ("double" | "Double", "NegativeInfinity") => {
                return Ok(Node::Double(f64::NEG_INFINITY))
            }
            ("double" | "Double", "MaxValue") => return Ok(Node::Double(f64::MAX)),
            ("double" | "Double", "MinValue") => return Ok(Node::Double(f64::MIN)),
            ("double" | "Double", "Epsilon") => return Ok(Node::Double(f64::from_bits(1))),
            _ => {}
        }
        if let Some(call) = self.array_predicate(&ty, &member, m_at)? {
            return Ok(call);
        }
        let Some((f, arity)) = statics::lookup(&ty, &member) else {
            return Err(self.err_at(at, format!("{ty}.{member} is not supported")));
        };
        let generic = if self.peek_is(0, "<") {
            Some(self.generic_arg()?)
        } else {
            None
        };
        let Some((min, max)) = arity else {
            return Ok(Node::Static(f, Vec::new(), generic));
        };
        // a method group as a LINQ argument (`s.All(char.IsDigit)`): `x => char.IsDigit(x)`
        if !self.peek_is(0, "(") && (min..=max).contains(&1) {
            let mark = self.scope.len();
            let slot = self.declare(&format!("#group{}", self.slot_count), Ty::Any, m_at)?;
            self.scope.truncate(mark);
            let body = Node::Static(f, vec![Node::Local(slot)], generic);
            return Ok(Node::Lambda(vec![slot], Box::new(body)));
        }
        let args = self.args()?;
        if args.len() < min || args.len() > max {
            let want = if min == max {
                format!("{min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(self.err_at(m_at, format!("{ty}.{member} takes {want} argument(s)")));
        }
        if f == statics::S::Format
            && matches!(self.ty_of(&args[0]), Ty::Int | Ty::Bool | Ty::Double)
        {
            return Err(self.err_at(m_at, "string.Format needs a format string first"));
        }
        let mut args = args;
        if let statics::S::Regex(op) = f {
            // options follow the input, the pattern and (for Replace) the replacement
            let at = if op == regexes::Op::Replace { 3 } else { 2 };
            match args.get(at) {
                None => self.precompile(&mut args, 1, 0, m_at)?,
                Some(Node::Int(o)) => {
                    let o = *o;
                    self.precompile(&mut args, 1, o, m_at)?
                }
                Some(_) => {}
            }
        }
        Ok(Node::Static(f, args, generic))
    }

    /// `<T>` after a generic method's name.
    fn generic_arg(&mut self) -> Result<Ty, ParseError> {
        let at = self.offset();
        self.punct("<")?;
        let t = self
            .try_type()
            .ok_or_else(|| self.err_at(at, "expected a type argument"))?;
        self.punct(">")?;
        Ok(t)
    }

    /// A pattern written as a literal compiles now: its errors are load errors.
    fn precompile(
        &self,
        args: &mut [Node],
        at: usize,
        options: i64,
        offset: usize,
    ) -> Result<(), ParseError> {
        if let Some(Node::Str(p)) = args.get(at) {
            let re = regexes::compile(p, options).map_err(|e| self.err_at(offset, e))?;
            args[at] = Node::Regex(re);
        }
        Ok(())
    }

    /// `(args)`: values, lambdas, `out var x` and `name: value`.
    pub(super) fn args(&mut self) -> Result<Vec<Node>, ParseError> {
        self.punct("(")?;
        let mut args = Vec::new();
        if self.eat(")") {
            return Ok(args);
        }
        loop {
            // a named argument: its name is only documentation here
            if matches!(self.peek(), Tok::Ident(_)) && self.peek_is(1, ":") {
                self.pos += 2;
            }
            let at = self.offset();
            if self.eat_word("out") {
                let slot = if self.peek_word(0, "var") || matches!(self.peek_at(1), Tok::Ident(_)) {
                    let ty = if self.eat_word("var") {
                        Ty::Any
                    } else {
                        self.try_type()
                            .ok_or_else(|| self.err_at(at, "expected a type after 'out'"))?
                    };
                    let name = self.ident("a variable name")?;
                    self.declare(&name, ty, at)?
                } else {
                    let name = self.ident("a variable name")?;
                    self.local(&name)
                        .ok_or_else(|| self.err_at(at, format!("'{name}' is not declared")))?
                };
                args.push(Node::Out(slot));
            } else {
                args.push(self.expr()?);
            }
            if self.eat(")") {
                return Ok(args);
            }
            self.punct(",")?;
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

    /// `$"..."`: each hole is parsed as an expression of its own, with the same locals;
    /// a format becomes `ToString(format)`, an alignment pads.
    fn interpolation(&mut self, parts: Vec<Part>) -> Result<Node, ParseError> {
        let mut nodes = Vec::with_capacity(parts.len());
        for part in parts {
            match part {
                Part::Text(s) => nodes.push(Node::Str(s)),
                Part::Hole(tokens, align, format) => {
                    let outer = std::mem::replace(&mut self.tokens, tokens);
                    let outer_pos = std::mem::replace(&mut self.pos, 0);
                    let hole = self.expr();
                    let rest = (self.pos < self.tokens.len()).then(|| self.offset());
                    self.tokens = outer;
                    self.pos = outer_pos;
                    let mut hole = hole?;
                    if let Some(at) = rest {
                        return Err(self.err_at(at, "unexpected text in an interpolated hole"));
                    }
                    if let Some(f) = format {
                        hole = Node::Static(
                            statics::S::Format,
                            vec![Node::Str(format!("{{0:{f}}}")), hole],
                            None,
                        );
                    }
                    if let Some(a) = align {
                        hole = Node::Static(
                            statics::S::Format,
                            vec![Node::Str(format!("{{0,{a}}}")), hole],
                            None,
                        );
                    }
                    nodes.push(hole);
                }
            }
        }
        Ok(Node::Interp(nodes))
    }

    /// `.name` after a chain: a context member, or a member of a value.
    fn member(
        &mut self,
        chain: Chain,
        name: String,
        at: usize,
        safe: bool,
    ) -> Result<Chain, ParseError> {
        match chain {
            Chain::Value(v) => Ok(Chain::Value(self.value_member(v, &name, at, safe)?)),
            Chain::Path(path, start) => self.context_member(path, start, name, at),
        }
    }

    /// A member of a value: checked against the value's type where it is known.
    fn value_member(
        &mut self,
        v: Node,
        name: &str,
        at: usize,
        safe: bool,
    ) -> Result<Node, ParseError> {
        if self.ty_of(&v) == Ty::Response {
            return self.message_member(v, name, at, safe);
        }
        let Some(member) = M::named(name) else {
            // a field of an anonymous object or a tuple (`new { total = 1 }.total`)
            if self.ty_of(&v) == Ty::Dict && !self.peek_is(0, "(") {
                return Ok(Node::Index {
                    target: Box::new(v),
                    key: Box::new(Node::Str(name.to_string())),
                    safe,
                });
            }
            return Err(self.err_at(at, format!("member '{name}' is not supported")));
        };
        let ty = self.ty_of(&v);
        let fits = match ty {
            Ty::Str => member.on_string(),
            Ty::Int | Ty::Double | Ty::Bool => member.on_scalar(),
            _ => true,
        };
        if !fits {
            let what = match ty {
                Ty::Str => "a string",
                _ => "a number or bool",
            };
            return Err(self.err_at(at, format!("'{name}' is not a member of {what}")));
        }
        // Guid.NewGuid().ToString("N"): the format goes to the GUID
        if let (M::ToString, Node::Static(statics::S::NewGuid(0), _, _)) = (member, &v) {
            let args = self.args()?;
            let format = match args.as_slice() {
                [] => b'D',
                [Node::Str(f)]
                    if ["D", "N", "B", "P", "d", "n", "b", "p"].contains(&f.as_str()) =>
                {
                    f.as_bytes()[0].to_ascii_uppercase()
                }
                _ => return Err(self.err_at(at, "a GUID's format is \"D\", \"N\", \"B\" or \"P\"")),
            };
            return Ok(Node::Static(statics::S::NewGuid(format), Vec::new(), None));
        }
        let generic = if self.peek_is(0, "<") {
            let save = self.pos;
            match self.generic_arg() {
                Ok(t) if self.peek_is(0, "(") => Some(t),
                _ => {
                    self.pos = save;
                    None
                }
            }
        } else {
            None
        };
        let args = if self.peek_is(0, "(") {
            self.args()?
        } else if member.is_property() {
            Vec::new()
        } else {
            return Err(self.err_at(at, format!("'{name}' is a method: call it with (...)")));
        };
        // `obj.Property(name).Remove()` (Microsoft's set-body example): a JProperty here
        // does not know its object, so this is `obj.Remove(name)`
        if let (
            M::Remove,
            true,
            Node::Call {
                member: M::Property,
                ..
            },
        ) = (member, args.is_empty(), &v)
        {
            if let Node::Call {
                target,
                args: mut name,
                safe: outer,
                ..
            } = v
            {
                return Ok(Node::Call {
                    target,
                    member: M::Remove,
                    args: name.drain(..).take(1).collect(),
                    generic: None,
                    safe: safe || outer,
                });
            }
        }
        Ok(Node::Call {
            target: Box::new(v),
            member,
            args,
            generic,
            safe,
        })
    }

    /// A member of a `context` path: a field, a body read, a collection method, or
    /// the next step of the path.
    fn context_member(
        &mut self,
        mut path: Vec<String>,
        start: usize,
        name: String,
        at: usize,
    ) -> Result<Chain, ParseError> {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        if name == "ToString"
            && matches!(p.as_slice(), ["context", "Request", "Url" | "OriginalUrl"])
        {
            self.punct("(")?;
            self.punct(")")?;
            self.reads_request = true;
            return Ok(Chain::Value(Node::Field(if path[2] == "Url" {
                Field::RequestUrl
            } else {
                Field::OriginalUrl
            })));
        }
        if name == "ToUri" && matches!(p.as_slice(), ["context", "Request", "Url" | "OriginalUrl"])
        {
            self.punct("(")?;
            self.punct(")")?;
            self.reads_request = true;
            let url = Node::Field(if path[2] == "Url" {
                Field::RequestUrl
            } else {
                Field::OriginalUrl
            });
            return Ok(Chain::Value(Node::New(
                statics::NewKind::Uri,
                vec![url],
                Vec::new(),
            )));
        }
        if let ["context", side @ ("Request" | "Response"), "Body"] = p.as_slice() {
            return self
                .body_read(*side == "Response", &name, at)
                .map(Chain::Value);
        }
        // `context.Trace(message)`: APIM's trace from an expression
        if name == "Trace" && p.as_slice() == ["context"] && self.peek_is(0, "(") {
            let args = self.args()?;
            if args.len() != 1 {
                return Err(self.err_at(at, "context.Trace takes a message"));
            }
            return Ok(Chain::Value(Node::Static(
                statics::S::ContextTrace,
                args,
                None,
            )));
        }
        // a request never comes through an Azure private endpoint here
        if name == "PrivateEndpointConnection" && p.as_slice() == ["context", "Request"] {
            return Ok(Chain::Value(Node::Null));
        }
        let mut full = p.clone();
        full.push(&name);
        if let Some(f) = field_of(&full) {
            if full[1] == "Request" {
                self.reads_request = true;
            }
            return Ok(Chain::Value(Node::Field(f)));
        }
        if let Ok(lookup) = self.collection(&path, start) {
            return self.collection_member(lookup, &name, at).map(Chain::Value);
        }
        if full.len() >= 2 && full[1] == "GraphQL" {
            return Err(self.err_at(at, "context.GraphQL: GraphQL APIs are not supported"));
        }
        let known_prefix = matches!(
            full.as_slice(),
            ["context", "Api", "SubscriptionKeyParameterNames"]
                | [
                    "context",
                    "Request"
                        | "Response"
                        | "Subscription"
                        | "User"
                        | "Api"
                        | "Operation"
                        | "Product"
                        | "Deployment"
                        | "LastError"
                        | "Variables"
                ]
                | [
                    "context",
                    "Request",
                    "Url" | "OriginalUrl" | "Headers" | "MatchedParameters" | "Body"
                ]
                | ["context", "Request", "Url" | "OriginalUrl", "Query"]
                | ["context", "Response", "Headers" | "Body"]
        );
        if known_prefix {
            path.push(name);
            Ok(Chain::Path(path, start))
        } else {
            Err(self.err_at(at, format!("'{}' is not supported", full.join("."))))
        }
    }

    /// `context.Request.Body.As<T>(preserveContent: bool)`.
    fn body_read(&mut self, response: bool, name: &str, at: usize) -> Result<Node, ParseError> {
        let (ty, preserve) = self.body_form(name, at)?;
        self.reads_body[usize::from(response)] = true;
        self.reads_request |= !response;
        Ok(Node::Body {
            response,
            ty,
            preserve: Box::new(preserve),
        })
    }

    /// A read of a body (`As<T>(preserveContent)` or
    /// `AsFormUrlEncodedContent(preserveContent)`, `name` already read): its type and the
    /// preserveContent argument.
    pub(super) fn body_form(&mut self, name: &str, at: usize) -> Result<(Ty, Node), ParseError> {
        let ty = match name {
            "As" => self.generic_arg()?,
            // IDictionary<string, IList<string>> of an application/x-www-form-urlencoded body
            "AsFormUrlEncodedContent" => Ty::Dict,
            _ => {
                return Err(self.err_at(
                    at,
                    format!("'{name}' of a body is not supported (As<T>(preserveContent) and AsFormUrlEncodedContent(preserveContent) are)"),
                ))
            }
        };
        if !matches!(
            ty,
            Ty::Str
                | Ty::JObject
                | Ty::JArray
                | Ty::JToken
                | Ty::Bytes
                | Ty::Dict
                | Ty::XDoc
                | Ty::XElem
        ) {
            return Err(self.err_at(
                at,
                "a body reads As<string>, As<JObject>, As<JArray>, As<JToken>, As<XDocument>, As<XElement> or As<byte[]>",
            ));
        }
        let mut args = self.args()?;
        if args.len() > 1 {
            return Err(self.err_at(at, "As<T> takes one argument (preserveContent)"));
        }
        Ok((ty, args.pop().unwrap_or(Node::Bool(false))))
    }

    /// `GetValueOrDefault`, `ContainsKey` and anything else on a context collection.
    fn collection_member(
        &mut self,
        lookup: Lookup,
        name: &str,
        at: usize,
    ) -> Result<Node, ParseError> {
        match name {
            "GetValueOrDefault" => {
                let cast = if self.peek_is(0, "<") {
                    Some(self.generic_arg()?)
                } else {
                    None
                };
                let mut args = self.args()?;
                if args.is_empty() || args.len() > 2 {
                    return Err(
                        self.err_at(at, "GetValueOrDefault takes a name and an optional default")
                    );
                }
                let default = (args.len() == 2).then(|| Box::new(args.remove(1)));
                Ok(Node::Lookup {
                    lookup,
                    name: Box::new(args.remove(0)),
                    default,
                    required: false,
                    cast,
                })
            }
            "ContainsKey" => {
                let mut args = self.args()?;
                if args.len() != 1 {
                    return Err(self.err_at(at, "ContainsKey takes one argument"));
                }
                Ok(Node::ContainsKey(lookup, Box::new(args.remove(0))))
            }
            other => self.value_member(Node::Entries(lookup), other, at, false),
        }
    }
}

pub(super) fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(w) => format!("'{w}'"),
        Tok::Int(n) => format!("number {n}"),
        Tok::Double(d) => format!("number {d}"),
        Tok::Str(_) => "string".into(),
        Tok::Interp(_) => "interpolated string".into(),
        Tok::Punct(p) => format!("'{p}'"),
        Tok::End => "end of expression".into(),
    }
}
