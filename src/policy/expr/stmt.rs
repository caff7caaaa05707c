//! Statements of a `@{ ... }` block: declarations (`var`, explicit types, several at
//! once), assignment and compound assignment (`=`, `+=`, `??=`, `++`), calls for their
//! effect, `if`/`else`, `while`, `do`, `for`, `foreach`, `break`, `continue`, `return`,
//! `throw` and `try`/`catch`/`finally`. Locals are scoped by braces as in C#, each with a
//! slot of its own. Loops need no bound here: every turn costs a step of the budget.
//! Must not touch: expression syntax (parse.rs), evaluation.

use super::types::type_named;
use super::*;

impl Parser {
    /// The statements of a whole `@{ ... }` block.
    pub(super) fn block_body(&mut self) -> Result<Vec<Stmt>, ParseError> {
        let mut out = Vec::new();
        while self.pos < self.tokens.len() {
            out.push(self.statement()?);
        }
        Ok(out)
    }

    /// `{ statements }` with a scope of its own.
    pub(in crate::policy::expr) fn braced(&mut self) -> Result<Vec<Stmt>, ParseError> {
        self.punct("{")?;
        let mark = self.scope.len();
        let mut out = Vec::new();
        while !self.eat("}") {
            if self.peek() == Tok::End {
                return Err(self.err_at(self.offset(), "expected '}'"));
            }
            out.push(self.statement()?);
        }
        self.scope.truncate(mark);
        Ok(out)
    }

    /// The body of an `if`, a loop or an `else`: a braced block or one statement.
    fn body(&mut self) -> Result<Vec<Stmt>, ParseError> {
        if self.peek_is(0, "{") {
            return self.braced();
        }
        let mark = self.scope.len();
        let s = self.statement();
        self.scope.truncate(mark);
        Ok(vec![s?])
    }

    fn condition(&mut self) -> Result<Node, ParseError> {
        self.punct("(")?;
        let c = self.expr()?;
        self.punct(")")?;
        if matches!(self.ty_of(&c), Ty::Str | Ty::Int | Ty::Double) {
            return Err(self.err_at(self.offset(), "a condition must be a bool"));
        }
        Ok(c)
    }

    fn looped(&mut self) -> Result<Vec<Stmt>, ParseError> {
        self.loops += 1;
        let b = self.body();
        self.loops -= 1;
        b
    }

    pub(super) fn statement(&mut self) -> Result<Stmt, ParseError> {
        let at = self.offset();
        self.count(at)?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err_at(at, "statements nested too deeply"));
        }
        let s = self.statement_inner(at);
        self.depth -= 1;
        s
    }

    fn statement_inner(&mut self, at: usize) -> Result<Stmt, ParseError> {
        let word = match self.peek() {
            Tok::Punct(";") => {
                self.pos += 1;
                return Ok(Stmt::Block(Vec::new()));
            }
            Tok::Punct("{") => return Ok(Stmt::Block(self.braced()?)),
            Tok::Ident(w) => w,
            _ => String::new(),
        };
        match word.as_str() {
            "if" => {
                self.pos += 1;
                let c = self.condition()?;
                let then = self.body()?;
                let otherwise = if self.eat_word("else") {
                    self.body()?
                } else {
                    Vec::new()
                };
                Ok(Stmt::If(c, then, otherwise))
            }
            "while" => {
                self.pos += 1;
                let cond = self.condition()?;
                let body = self.looped()?;
                Ok(Stmt::Loop {
                    cond: Some(cond),
                    body,
                    step: Vec::new(),
                    test_first: true,
                })
            }
            "do" => {
                self.pos += 1;
                let body = self.looped()?;
                if !self.eat_word("while") {
                    return Err(self.err_at(self.offset(), "expected 'while' after a do block"));
                }
                let cond = self.condition()?;
                self.punct(";")?;
                Ok(Stmt::Loop {
                    cond: Some(cond),
                    body,
                    step: Vec::new(),
                    test_first: false,
                })
            }
            "for" => self.for_loop(),
            "foreach" => {
                self.pos += 1;
                self.punct("(")?;
                let mark = self.scope.len();
                let t_at = self.offset();
                let ty = self
                    .try_type()
                    .ok_or_else(|| self.err_at(t_at, "expected a type or 'var'"))?;
                let name = self.ident("a variable name")?;
                if !self.eat_word("in") {
                    return Err(self.err_at(self.offset(), "expected 'in'"));
                }
                let source = self.expr()?;
                self.punct(")")?;
                let slot = self.declare(&name, ty, t_at)?;
                let body = self.looped();
                self.scope.truncate(mark);
                Ok(Stmt::Foreach(slot, source, body?))
            }
            "return" => {
                self.pos += 1;
                if self.peek_is(0, ";") {
                    return Err(self.err_at(at, "a return needs a value here"));
                }
                let e = self.expr()?;
                self.punct(";")?;
                let t = self.ty_of(&e);
                self.return_ty = Some(match self.return_ty {
                    None => t,
                    Some(x) if x == t => x,
                    Some(_) => Ty::Any,
                });
                Ok(Stmt::Return(e))
            }
            "break" | "continue" => {
                self.pos += 1;
                if self.loops == 0 {
                    return Err(self.err_at(at, format!("'{word}' outside a loop")));
                }
                self.punct(";")?;
                Ok(if word == "break" {
                    Stmt::Break
                } else {
                    Stmt::Continue
                })
            }
            "throw" => {
                self.pos += 1;
                if self.eat(";") {
                    let slot = *self
                        .catches
                        .last()
                        .ok_or_else(|| self.err_at(at, "'throw;' outside a catch block"))?;
                    return Ok(Stmt::Throw(Node::Local(slot)));
                }
                let e = self.expr()?;
                self.punct(";")?;
                Ok(Stmt::Throw(e))
            }
            "try" => self.try_block(),
            "switch" => self.switch_block(),
            // `unchecked { … }` / `checked { … }`: a block (ints here are 64-bit, and an
            // overflow is always an error)
            "unchecked" | "checked" if self.peek_is(1, "{") => {
                self.pos += 1;
                Ok(Stmt::Block(self.braced()?))
            }
            // `using (var h = new HMACSHA256(key)) { ... }` and `using var h = ...;`:
            // nothing here needs disposing, so it is a scoped declaration
            "using" => {
                self.pos += 1;
                if !self.eat("(") {
                    let s = self.simple()?;
                    self.punct(";")?;
                    return Ok(s);
                }
                let mark = self.scope.len();
                let init = match self.declaration()? {
                    Some(d) => d,
                    None => Stmt::Eval(self.expr()?),
                };
                self.punct(")")?;
                let body = self.body();
                self.scope.truncate(mark);
                Ok(Stmt::Block(vec![init, Stmt::Block(body?)]))
            }
            // `bool Allowed(string ip) { … }`: a local function (no `;` after it)
            _ if self.local_function_here()? => Ok(Stmt::Block(Vec::new())),
            _ => {
                let s = self.simple()?;
                self.punct(";")?;
                Ok(s)
            }
        }
    }

    /// `for (init; cond; step, step) body`.
    fn for_loop(&mut self) -> Result<Stmt, ParseError> {
        self.pos += 1;
        self.punct("(")?;
        let mark = self.scope.len();
        let mut out = Vec::new();
        if !self.eat(";") {
            out.push(self.simple()?);
            self.punct(";")?;
        }
        let cond = if self.peek_is(0, ";") {
            None
        } else {
            Some(self.expr()?)
        };
        self.punct(";")?;
        let mut step = Vec::new();
        while !self.eat(")") {
            step.push(self.simple()?);
            if !self.eat(",") {
                self.punct(")")?;
                break;
            }
        }
        let body = self.looped();
        self.scope.truncate(mark);
        out.push(Stmt::Loop {
            cond,
            body: body?,
            step,
            test_first: true,
        });
        Ok(Stmt::Block(out))
    }

    /// `switch (x) { case A: case B: …; break; default: … }`, as a chain of ifs inside a
    /// loop that runs once (so `break` leaves the switch), over `x` evaluated once.
    fn switch_block(&mut self) -> Result<Stmt, ParseError> {
        let at = self.offset();
        self.pos += 1;
        self.punct("(")?;
        let subject = self.expr()?;
        self.punct(")")?;
        self.punct("{")?;
        let mark = self.scope.len();
        let held = self.declare(&format!("#switch{}", self.slot_count), Ty::Any, at)?;
        let mut sections: Vec<(Option<Node>, Vec<Stmt>)> = Vec::new();
        let mut default: Option<Vec<Stmt>> = None;
        self.loops += 1;
        while !self.eat("}") {
            let mut test: Option<Node> = None;
            let mut is_default = false;
            loop {
                let l_at = self.offset();
                if self.eat_word("default") {
                    is_default = true;
                } else if self.eat_word("case") {
                    let label = self.expr()?;
                    if self.peek_word(0, "when") {
                        return Err(
                            self.err_at(self.offset(), "'case … when' patterns are not supported")
                        );
                    }
                    let eq = Node::Bin(BinOp::Eq, Box::new(Node::Local(held)), Box::new(label));
                    test = Some(match test {
                        None => eq,
                        Some(t) => Node::Bin(BinOp::Or, Box::new(t), Box::new(eq)),
                    });
                } else {
                    return Err(self.err_at(l_at, "expected 'case' or 'default'"));
                }
                self.punct(":")?;
                if !(self.peek_word(0, "case") || self.peek_word(0, "default")) {
                    break;
                }
            }
            let mut body = Vec::new();
            while !(self.peek_word(0, "case")
                || self.peek_word(0, "default")
                || self.peek_is(0, "}"))
            {
                if matches!(self.peek(), Tok::End) {
                    return Err(self.err_at(self.offset(), "a switch is never closed"));
                }
                body.push(self.statement()?);
            }
            if is_default {
                default = Some(body);
            } else if let Some(t) = test {
                sections.push((Some(t), body));
            }
        }
        self.loops -= 1;
        self.scope.truncate(mark);
        // the chain, last section innermost; default where no case matched
        let mut chain = default.unwrap_or_default();
        for (test, body) in sections.into_iter().rev() {
            if let Some(t) = test {
                chain = vec![Stmt::If(t, body, chain)];
            }
        }
        let once = Stmt::Loop {
            cond: Some(Node::Bool(false)),
            body: chain,
            step: Vec::new(),
            test_first: false,
        };
        Ok(Stmt::Block(vec![
            Stmt::Assign(Place::Local(held), subject),
            once,
        ]))
    }

    fn try_block(&mut self) -> Result<Stmt, ParseError> {
        self.pos += 1;
        let body = self.braced()?;
        let mut catches = Vec::new();
        while self.eat_word("catch") {
            let mark = self.scope.len();
            let at = self.offset();
            let mut slot = None;
            let mut wanted = None;
            if self.eat("(") {
                // `catch (Type)` or `catch (Type name)`, the type possibly qualified
                let t_at = self.offset();
                let mut type_name = self.ident("an exception type")?;
                while self.eat(".") {
                    type_name.push('.');
                    type_name.push_str(&self.ident("an exception type")?);
                }
                let kind = exceptions::named(&type_name).ok_or_else(|| {
                    self.err_at(
                        t_at,
                        format!("'{type_name}' is not an exception type expressions can catch"),
                    )
                })?;
                wanted = (kind != "Exception").then_some(kind);
                if let Tok::Ident(name) = self.peek() {
                    self.pos += 1;
                    slot = Some(self.declare(&name, Ty::Any, at)?);
                }
                self.punct(")")?;
            }
            if self.peek_word(0, "when") {
                return Err(self.err_at(
                    self.offset(),
                    "exception filters ('when') are not supported",
                ));
            }
            // a hidden slot holds the exception for a `throw;`
            let held = match slot {
                Some(s) => s,
                None => self.declare(&format!("#catch{}", self.slot_count), Ty::Any, at)?,
            };
            self.catches.push(held);
            let handler = self.braced();
            self.catches.pop();
            self.scope.truncate(mark);
            catches.push((wanted, held, handler?));
        }
        let finally = if self.eat_word("finally") {
            self.braced()?
        } else {
            Vec::new()
        };
        Ok(Stmt::Try {
            body,
            catches,
            finally,
        })
    }

    /// A declaration, an assignment, `x++` or a call, without its `;`.
    fn simple(&mut self) -> Result<Stmt, ParseError> {
        let at = self.offset();
        if let Some(d) = self.declaration()? {
            return Ok(d);
        }
        for (p, op) in [("++", BinOp::Add), ("--", BinOp::Sub)] {
            if self.eat(p) {
                let target = self.unary()?;
                let place = self.place(&target, at)?;
                return Ok(Stmt::Assign(
                    place,
                    Node::Bin(op, Box::new(target), Box::new(Node::Int(1))),
                ));
            }
        }
        let target = self.unary()?;
        let op_at = self.offset();
        let compound = [
            ("+=", BinOp::Add),
            ("-=", BinOp::Sub),
            ("*=", BinOp::Mul),
            ("/=", BinOp::Div),
            ("%=", BinOp::Rem),
        ];
        if self.eat("=") {
            let place = self.place(&target, at)?;
            let value = self.expr()?;
            return Ok(Stmt::Assign(place, value));
        }
        for (p, op) in compound {
            if self.eat(p) {
                let place = self.place(&target, at)?;
                let value = self.expr()?;
                return Ok(Stmt::Assign(
                    place,
                    Node::Bin(op, Box::new(target), Box::new(value)),
                ));
            }
        }
        if self.eat("??=") {
            let place = self.place(&target, at)?;
            let value = self.expr()?;
            return Ok(Stmt::Assign(
                place,
                Node::Coalesce(Box::new(target), Box::new(value)),
            ));
        }
        for (p, op) in [("++", BinOp::Add), ("--", BinOp::Sub)] {
            if self.eat(p) {
                let place = self.place(&target, at)?;
                return Ok(Stmt::Assign(
                    place,
                    Node::Bin(op, Box::new(target), Box::new(Node::Int(1))),
                ));
            }
        }
        match target {
            Node::Call { .. } | Node::Static(..) | Node::New(..) => Ok(Stmt::Eval(target)),
            _ => Err(self.err_at(
                op_at,
                "only calls, assignments, ++ and -- can be statements",
            )),
        }
    }

    /// Where an assignment to `target` writes.
    fn place(&self, target: &Node, at: usize) -> Result<Place, ParseError> {
        match target {
            Node::Local(i) => Ok(Place::Local(*i)),
            Node::Index { target, key, .. } => Ok(Place::Index((**target).clone(), (**key).clone())),
            Node::Call { target, member, args, .. } if args.is_empty() && member.is_property() => {
                Ok(Place::Member((**target).clone(), *member))
            }
            Node::Lookup { .. } => Err(self.err_at(
                at,
                "context collections are read-only (use set-variable, set-header or set-query-parameter)",
            )),
            _ => Err(self.err_at(at, "this cannot be assigned to")),
        }
    }

    /// `T name = value, name2 = value2` (or `T name`), if a declaration is next.
    fn declaration(&mut self) -> Result<Option<Stmt>, ParseError> {
        let Tok::Ident(first) = self.peek() else {
            return Ok(None);
        };
        if self.local(&first).is_some() || first == "context" {
            return Ok(None);
        }
        let save = self.pos;
        let at = self.offset();
        let Some(declared) = self.try_type() else {
            self.pos = save;
            return Ok(None);
        };
        let is_declaration = matches!(self.peek(), Tok::Ident(_))
            && (self.peek_is(1, "=") || self.peek_is(1, ";") || self.peek_is(1, ","));
        if !is_declaration {
            self.pos = save;
            return Ok(None);
        }
        let inferred = first == "var";
        let mut out = Vec::new();
        loop {
            let n_at = self.offset();
            let name = self.ident("a variable name")?;
            let value = if self.eat("=") {
                if declared == Ty::List && self.peek_is(0, "{") {
                    // `string[] parts = { "a", "b" };`: an array initializer
                    Node::New(statics::NewKind::Array, Vec::new(), self.initializer()?)
                } else {
                    self.expr()?
                }
            } else if inferred {
                return Err(self.err_at(n_at, "'var' needs a value"));
            } else {
                match declared {
                    Ty::Int => Node::Int(0),
                    Ty::Double => Node::Double(0.0),
                    Ty::Bool => Node::Bool(false),
                    _ => Node::Null,
                }
            };
            let ty = if inferred {
                self.ty_of(&value)
            } else {
                declared
            };
            let value =
                if inferred || declared == Ty::Any || type_named(&first, &[]) == Some(Ty::Any) {
                    value
                } else {
                    self.check_assignable(declared, &value, n_at)?;
                    Node::Cast(declared, Box::new(value))
                };
            let slot = self.declare(&name, ty, at)?;
            out.push(Stmt::Assign(Place::Local(slot), value));
            if !self.eat(",") {
                break;
            }
        }
        Ok(Some(if out.len() == 1 {
            out.remove(0)
        } else {
            Stmt::Block(out)
        }))
    }

    /// A value of a known type that C# would not convert implicitly to `to`.
    fn check_assignable(&self, to: Ty, value: &Node, at: usize) -> Result<(), ParseError> {
        let from = self.ty_of(value);
        let bad = match (to, from) {
            (_, Ty::Any) => false,
            (a, b) if a == b => false,
            (Ty::Double, Ty::Int) => false,
            (Ty::JToken, Ty::JObject | Ty::JArray | Ty::Str | Ty::Int | Ty::Double | Ty::Bool) => {
                false
            }
            // `byte[] b = new byte[6];`: an array being filled is a list here
            (Ty::List, Ty::List | Ty::Bytes) | (Ty::Bytes, Ty::List) => false,
            // implicit conversions of System.Xml.Linq
            (Ty::XName | Ty::XNs, Ty::Str) | (Ty::XName, Ty::XName) => false,
            _ => true,
        };
        if bad {
            return Err(self.err_at(at, format!("cannot assign a {from:?} to a {to:?} variable")));
        }
        Ok(())
    }
}

/// Whether every path through `stmts` ends in a `return` or a `throw`.
pub(super) fn returns(stmts: &[Stmt]) -> bool {
    match stmts.last() {
        Some(Stmt::Return(_) | Stmt::Throw(_)) => true,
        Some(Stmt::If(_, a, b)) => returns(a) && returns(b),
        Some(Stmt::Block(b)) => returns(b),
        Some(Stmt::Try {
            body,
            catches,
            finally,
        }) => returns(finally) || (returns(body) && catches.iter().all(|(_, _, c)| returns(c))),
        // a switch: a loop that runs once
        Some(Stmt::Loop {
            cond: Some(Node::Bool(false)),
            body,
            test_first: false,
            ..
        }) => returns(body) && !breaks(body),
        // `while (true)` without a break never falls through
        Some(Stmt::Loop {
            cond: None, body, ..
        }) => !breaks(body),
        Some(Stmt::Loop {
            cond: Some(Node::Bool(true)),
            body,
            ..
        }) => !breaks(body),
        _ => false,
    }
}

/// Whether a loop body has a `break` for this loop.
fn breaks(stmts: &[Stmt]) -> bool {
    stmts.iter().any(|s| match s {
        Stmt::Break => true,
        Stmt::If(_, a, b) => breaks(a) || breaks(b),
        Stmt::Block(b) => breaks(b),
        Stmt::Try {
            body,
            catches,
            finally,
        } => breaks(body) || catches.iter().any(|(_, _, c)| breaks(c)) || breaks(finally),
        _ => false,
    })
}
