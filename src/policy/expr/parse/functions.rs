//! C# local functions in a `@{ ... }` block: `bool Allowed(string ip, string list) { … }`
//! or `=> expr;`, declared before use (as real documents write them), called by name.
//! The parameters are slots of the block; the body sees the block's variables. A
//! function cannot call itself (no recursion, so no unbounded depth).
//! Must not touch: evaluation (a call is `Node::Invoke`).

use std::sync::Arc;

use super::*;

impl Parser {
    /// The local function `name`, if the block declared one.
    pub(in crate::policy::expr) fn function(&self, name: &str) -> Option<Arc<LocalFn>> {
        self.functions
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, f)| Arc::clone(f))
    }

    /// `name(args)`: a call of a local function.
    pub(in crate::policy::expr) fn invoke(&mut self, name: &str) -> Result<Node, ParseError> {
        let at = self.offset();
        let f = self
            .function(name)
            .ok_or_else(|| self.err_at(at, format!("'{name}' is not a local function")))?;
        let args = self.args()?;
        if args.len() != f.params.len() {
            return Err(self.err_at(at, format!("{name} takes {} argument(s)", f.params.len())));
        }
        Ok(Node::Invoke(f, args))
    }

    /// A local function's declaration where a statement starts (`Type Name(`): parsed,
    /// and true; otherwise nothing is consumed.
    pub(in crate::policy::expr) fn local_function_here(&mut self) -> Result<bool, ParseError> {
        let (save, at) = (self.pos, self.offset());
        if self.try_type().is_none() {
            self.pos = save;
            return Ok(false);
        }
        match (self.peek(), self.peek_is(1, "(")) {
            (Tok::Ident(name), true) if self.local(&name).is_none() => {
                self.pos += 1;
                self.local_function(name, at)?;
                Ok(true)
            }
            _ => {
                self.pos = save;
                Ok(false)
            }
        }
    }

    /// After a return type and a name, at `(`: the parameters and the body of a local
    /// function, which is then known by `name`.
    fn local_function(&mut self, name: String, at: usize) -> Result<(), ParseError> {
        if self.function(&name).is_some() {
            return Err(self.err_at(at, format!("'{name}' is declared twice")));
        }
        self.punct("(")?;
        let mark = self.scope.len();
        let mut params = Vec::new();
        if !self.eat(")") {
            loop {
                let p_at = self.offset();
                let ty = self
                    .try_type()
                    .ok_or_else(|| self.err_at(p_at, "expected a parameter type"))?;
                let p = self.ident("a parameter name")?;
                params.push(self.declare(&p, ty, p_at)?);
                if self.eat(")") {
                    break;
                }
                self.punct(",")?;
            }
        }
        // the body has returns, loops and catches of its own
        let outer = (
            self.return_ty.take(),
            std::mem::take(&mut self.loops),
            std::mem::take(&mut self.catches),
        );
        let body = if self.eat("=>") {
            let value = self.expr()?;
            self.punct(";")?;
            vec![Stmt::Return(value)]
        } else {
            self.braced()?
        };
        (self.return_ty, self.loops, self.catches) = outer;
        self.scope.truncate(mark);
        self.functions
            .push((name, Arc::new(LocalFn { params, body })));
        Ok(())
    }
}
