//! Evaluation: one walk of a compiled expression for one request. `Machine` holds the
//! environment, the local slots and what is left of the request's budget; every node
//! costs a step and every value it builds costs its bytes, so a loop, a LINQ chain or a
//! string built in a loop ends with an error instead of holding the event loop. Operators,
//! casts, indexers and assignment live here; members and static functions in their own
//! modules.
//! Must not touch: syntax (everything is resolved at load), the request's bytes.

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

use super::json::Json;
use super::value::{from_json, list, to_json, Dict};
use super::*;

/// How a statement ended.
pub(super) enum Ctl<'e> {
    Next,
    Break,
    Continue,
    Return(Val<'e>),
}

pub(super) struct Machine<'e> {
    pub env: &'e dyn Env,
    pub slots: Slots<'e>,
    steps: u64,
    bytes: u64,
    /// The type of the exception a `throw` raised, until a catch takes it.
    thrown: Option<&'static str>,
}

/// Evaluates `x`, spending from the request's budget (or a fresh default one).
pub(super) fn run<'e>(x: &'e Expr, env: &'e dyn Env) -> Result<Val<'e>, EvalError> {
    let mut m = Machine::new(env, x.slots);
    let result = match &x.code {
        Code::Value(n) => m.eval(n),
        Code::Block(stmts) => match m.block(stmts) {
            Ok(Ctl::Return(v)) => Ok(v),
            Ok(_) => Err(err("the block ended without a return")),
            Err(e) => Err(e),
        },
    };
    m.settle();
    result
}

impl<'e> Machine<'e> {
    /// A machine for one evaluation, spending from the request's budget (or a fresh
    /// default one).
    pub fn new(env: &'e dyn Env, slots: usize) -> Machine<'e> {
        let (steps, bytes) = match env.budget() {
            Some(b) => (b.steps.get(), b.bytes.get()),
            None => (DEFAULT_STEPS, DEFAULT_BYTES),
        };
        Machine {
            env,
            slots: Slots::new(slots),
            steps,
            bytes,
            thrown: None,
        }
    }

    /// Writes what is left back into the request's budget.
    pub fn settle(&self) {
        if let Some(b) = self.env.budget() {
            b.steps.set(self.steps);
            b.bytes.set(self.bytes);
        }
    }

    pub fn tick(&mut self) -> Result<(), EvalError> {
        self.ticks(1)
    }
    pub fn ticks(&mut self, n: usize) -> Result<(), EvalError> {
        self.steps = self.steps.checked_sub(n as u64).ok_or(BUDGET_STEPS)?;
        Ok(())
    }
    /// Spends `bytes` of the memory budget (what a new value holds).
    pub fn charge(&mut self, bytes: usize) -> Result<(), EvalError> {
        self.bytes = self.bytes.checked_sub(bytes as u64).ok_or(BUDGET_MEMORY)?;
        Ok(())
    }
    /// A new string, paid for.
    pub fn text(&mut self, s: String) -> Result<Val<'e>, EvalError> {
        self.charge(s.len())?;
        Ok(Val::Str(Cow::Owned(s)))
    }
    /// Steps left, for walks that count their own (cycle checks).
    pub fn steps_mut(&mut self) -> &mut u64 {
        &mut self.steps
    }

    pub fn eval(&mut self, n: &'e Node) -> Result<Val<'e>, EvalError> {
        self.tick()?;
        Ok(match n {
            Node::Null => Val::Null,
            Node::Bool(b) => Val::Bool(*b),
            Node::Int(i) => Val::Int(*i),
            Node::Double(d) => Val::Double(*d),
            Node::Str(s) => Val::Str(Cow::Borrowed(s)),
            Node::Flag(f) => Val::Flag(*f),
            Node::Regex(r) => Val::Re(Rc::new(regexes::Re::Pattern(r.clone()))),
            Node::Interp(parts) => {
                let mut out = String::new();
                for part in parts {
                    out.push_str(&self.eval(part)?.to_text());
                }
                self.text(out)?
            }
            Node::Field(f) => self.env.field(*f),
            Node::Local(i) => self
                .slots
                .get(*i)
                .cloned()
                .ok_or(err("a local variable is used before it is set"))?,
            Node::Lookup {
                lookup,
                name,
                default,
                required,
                cast,
            } => self.lookup(*lookup, name, default.as_deref(), *required, *cast)?,
            Node::ContainsKey(lookup, name) => {
                let key = self.eval(name)?;
                Val::Bool(self.env.lookup(*lookup, &key.to_text()).is_some())
            }
            Node::Entries(lookup) => self.entries(*lookup)?,
            Node::Body {
                response,
                ty,
                preserve,
            } => {
                let preserve = self.eval(preserve)?.truthy()?;
                self.body(*response, *ty, preserve)?
            }
            Node::Message(..) | Node::MessageBody { .. } => self.message(n)?,
            Node::Not(a) => Val::Bool(!self.eval(a)?.truthy()?),
            Node::Neg(a) => match self.eval(a)? {
                Val::Int(i) => Val::Int(i.checked_neg().ok_or(OVERFLOW)?),
                Val::Double(d) => Val::Double(-d),
                _ => return Err(err("unary '-' needs a number")),
            },
            Node::Cond(c, a, b) => {
                if self.eval(c)?.truthy()? {
                    self.eval(a)?
                } else {
                    self.eval(b)?
                }
            }
            Node::Bin(BinOp::And, a, b) => {
                Val::Bool(self.eval(a)?.truthy()? && self.eval(b)?.truthy()?)
            }
            Node::Bin(BinOp::Or, a, b) => {
                Val::Bool(self.eval(a)?.truthy()? || self.eval(b)?.truthy()?)
            }
            Node::Bin(op, a, b) => {
                let (x, y) = (self.eval(a)?, self.eval(b)?);
                let v = binary(*op, x, y)?;
                if let Val::Str(Cow::Owned(s)) = &v {
                    self.charge(s.len())?;
                }
                v
            }
            Node::Cast(t, a) => cast(*t, self.eval(a)?)?,
            Node::As(t, a) => {
                let v = self.eval(a)?;
                if is_type(&v, *t) {
                    v
                } else {
                    Val::Null
                }
            }
            Node::Is(t, a) => Val::Bool(is_type(&self.eval(a)?, *t)),
            Node::IsBind(slot, t, a) => {
                let v = self.eval(a)?;
                let ok = is_type(&v, *t);
                if ok {
                    if let Some(s) = self.slots.get_mut(*slot) {
                        *s = v;
                    }
                }
                Val::Bool(ok)
            }
            Node::Call {
                member: M::ThenBy | M::ThenByDescending,
                ..
            } => linq::ordered(self, n)?,
            Node::Call {
                target,
                member,
                args,
                generic,
                safe,
            } => {
                let t = self.eval(target)?;
                if *safe && t == Val::Null {
                    return Ok(Val::Null);
                }
                members::call(self, t, *member, args, *generic)?
            }
            Node::Index { target, key, safe } => {
                let t = self.eval(target)?;
                if *safe && t == Val::Null {
                    return Ok(Val::Null);
                }
                let k = self.eval(key)?;
                index(&t, &k)?
            }
            Node::Static(f, args, generic) => statics::call(self, *f, args, *generic)?,
            Node::New(kind, args, items) => statics::new(self, *kind, args, items)?,
            Node::Anonymous(fields) => {
                let mut d = Vec::with_capacity(fields.len());
                for (k, v) in fields {
                    d.push((k.clone(), self.eval(v)?.into_owned()));
                }
                self.charge(64 * d.len())?;
                Val::Dict(Rc::new(RefCell::new(d)))
            }
            Node::Lambda(..) => {
                return Err(err(
                    "a lambda is only allowed as an argument of a LINQ method",
                ))
            }
            Node::Invoke(f, args) => self.invoke(f, args)?,
            Node::Out(_) => return Err(err("'out' is only allowed in a method's arguments")),
            Node::Coalesce(a, b) => match self.eval(a)? {
                Val::Null => self.eval(b)?,
                v => v,
            },
        })
    }

    /// A whole dictionary of the context (`context.Request.Headers`): headers and query
    /// parameters are string[] dictionaries, as in APIM.
    fn entries(&mut self, lookup: Lookup) -> Result<Val<'e>, EvalError> {
        let arrays = is_string_arrays(lookup);
        let entries: Vec<(String, Val<'static>)> = self
            .env
            .entries(lookup)
            .into_iter()
            .map(|(k, v)| {
                let v = v.into_owned();
                (k, if arrays { list(vec![v]) } else { v })
            })
            .collect();
        self.ticks(entries.len())?;
        let d: Dict = Rc::new(RefCell::new(entries));
        Ok(Val::Dict(d))
    }

    /// `context.X[name]`, `GetValueOrDefault(name, default)`, `GetValueOrDefault<T>`.
    fn lookup(
        &mut self,
        lookup: Lookup,
        name: &'e Node,
        default: Option<&'e Node>,
        required: bool,
        cast: Option<Ty>,
    ) -> Result<Val<'e>, EvalError> {
        let key = self.eval(name)?;
        let key = key.to_text();
        let found = match self.env.lookup(lookup, &key) {
            Some(v) => Some(v),
            None if required => {
                return Err(EvalError(Cow::Owned(format!(
                    "The given key '{key}' was not present in the dictionary"
                ))))
            }
            None => None,
        };
        let v = match (found, default) {
            (Some(v), _) => v,
            (None, Some(d)) => self.eval(d)?,
            (None, None) => match cast {
                // default(T)
                Some(Ty::Int) => Val::Int(0),
                Some(Ty::Double) => Val::Double(0.0),
                Some(Ty::Bool) => Val::Bool(false),
                _ => Val::Null,
            },
        };
        // headers and query parameters are string[] behind an indexer, as in APIM
        if required && is_string_arrays(lookup) {
            self.charge(64)?;
            return Ok(list(vec![v.into_owned()]));
        }
        match cast {
            Some(t) => self::cast(t, v),
            None => Ok(v),
        }
    }

    /// Evaluates every argument (for members that take values, not lambdas).
    pub fn values(&mut self, args: &'e [Node]) -> Result<Args<'e>, EvalError> {
        let mut out = Args::default();
        for a in args {
            let v = self.eval(a)?;
            out.push(v);
        }
        Ok(out)
    }

    /// Calls a lambda argument with `params`.
    pub fn apply(&mut self, lambda: &'e Node, params: &[Val<'e>]) -> Result<Val<'e>, EvalError> {
        let Node::Lambda(slots, body) = lambda else {
            return Err(err("expected a lambda (x => ...)"));
        };
        if slots.len() != params.len() {
            return Err(err("the lambda takes a different number of parameters"));
        }
        for (slot, v) in slots.iter().zip(params) {
            if let Some(s) = self.slots.get_mut(*slot) {
                *s = v.clone();
            }
        }
        self.eval(body)
    }

    /// Writes `v` to an `out` argument.
    pub fn write_out(&mut self, arg: Option<&'e Node>, v: Val<'e>) -> Result<(), EvalError> {
        match arg {
            Some(Node::Out(slot)) => {
                if let Some(s) = self.slots.get_mut(*slot) {
                    *s = v;
                }
                Ok(())
            }
            _ => Err(err("expected an 'out' argument")),
        }
    }

    fn body(&mut self, response: bool, ty: Ty, preserve: bool) -> Result<Val<'e>, EvalError> {
        let env = self.env;
        let Some(bytes) = env.body(response) else {
            return Ok(Val::Null);
        };
        if !preserve {
            env.consume_body(response);
        }
        self.body_value(bytes, ty)
    }

    /// A member of an IResponse (a send-request's response).
    fn message(&mut self, n: &'e Node) -> Result<Val<'e>, EvalError> {
        let (target, safe) = match n {
            Node::Message(target, _, safe) | Node::MessageBody { target, safe, .. } => {
                (target, *safe)
            }
            _ => return Err(err("not a member of IResponse")),
        };
        let v = self.eval(target)?;
        let Some(m) = message::of(&v, "a member")? else {
            return if safe {
                Ok(Val::Null)
            } else {
                Err(NULL_REFERENCE)
            };
        };
        match n {
            Node::Message(_, part, _) => Ok(message::part(m, *part)),
            Node::MessageBody { ty, preserve, .. } => {
                let preserve = self.eval(preserve)?.truthy()?;
                match message::take_body(m, preserve) {
                    Some(bytes) => Ok(self.body_value(bytes, *ty)?.into_owned()),
                    None => Ok(Val::Null),
                }
            }
            _ => Err(err("not a member of IResponse")),
        }
    }

    /// A body's bytes read as `T` (`As<T>()`).
    fn body_value<'b>(&mut self, bytes: &'b [u8], ty: Ty) -> Result<Val<'b>, EvalError> {
        self.ticks(bytes.len() / 64)?;
        Ok(match ty {
            Ty::Str | Ty::Any => Val::Str(String::from_utf8_lossy(bytes)),
            Ty::Bytes => {
                self.charge(bytes.len())?;
                Val::Bytes(Rc::new(bytes.to_vec()))
            }
            Ty::Dict => {
                self.charge(bytes.len() * 2 + 64)?;
                let text = String::from_utf8_lossy(bytes);
                let mut form: Vec<(String, Val<'static>)> = Vec::new();
                for pair in text.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    let (k, v) = (
                        statics::unescape(k, true),
                        Val::Str(Cow::Owned(statics::unescape(v, true))),
                    );
                    match form.iter_mut().find(|(name, _)| *name == k) {
                        Some((_, Val::List(values))) => values.borrow_mut().push(v),
                        _ => form.push((k, list(vec![v]))),
                    }
                }
                Val::Dict(Rc::new(RefCell::new(form)))
            }
            Ty::XDoc | Ty::XElem => {
                if bytes.is_empty() {
                    return Ok(Val::Null);
                }
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| err("the body is not UTF-8 text (As<XDocument>)"))?;
                xml::parse_value(self, text, ty == Ty::XDoc)?
            }
            Ty::JObject | Ty::JArray | Ty::JToken => {
                self.charge(bytes.len() * 4)?;
                if bytes.is_empty() {
                    return Ok(Val::Null);
                }
                let j = json::parse_utf8(bytes)
                    .ok_or(err("the body is not UTF-8 text (As<JObject>)"))??;
                let v = from_json(&j);
                cast(ty, v)?
            }
            _ => {
                return Err(err(
                    "a body reads As<string>, As<JObject>, As<JArray>, As<JToken>, As<XDocument>, As<XElement> or As<byte[]>",
                ))
            }
        })
    }

    /// A local function's call: the arguments into its parameters, then its body.
    fn invoke(&mut self, f: &'e LocalFn, args: &'e [Node]) -> Result<Val<'e>, EvalError> {
        let mut values = Vec::with_capacity(args.len());
        for a in args {
            values.push(self.eval(a)?);
        }
        for (slot, v) in f.params.iter().zip(values) {
            if let Some(s) = self.slots.get_mut(*slot) {
                *s = v;
            }
        }
        Ok(match self.block(&f.body)? {
            Ctl::Return(v) => v,
            _ => Val::Null,
        })
    }

    pub fn block(&mut self, stmts: &'e [Stmt]) -> Result<Ctl<'e>, EvalError> {
        for s in stmts {
            match self.stmt(s)? {
                Ctl::Next => {}
                other => return Ok(other),
            }
        }
        Ok(Ctl::Next)
    }

    fn stmt(&mut self, s: &'e Stmt) -> Result<Ctl<'e>, EvalError> {
        self.tick()?;
        match s {
            Stmt::Assign(place, value) => {
                let v = self.eval(value)?;
                self.assign(place, v)?;
            }
            Stmt::Eval(n) => {
                self.eval(n)?;
            }
            Stmt::If(c, a, b) => {
                return if self.eval(c)?.truthy()? {
                    self.block(a)
                } else {
                    self.block(b)
                }
            }
            Stmt::Block(b) => return self.block(b),
            Stmt::Loop {
                cond,
                body,
                step,
                test_first,
            } => {
                let mut first = true;
                loop {
                    self.tick()?;
                    if let Some(c) = cond {
                        if (*test_first || !first) && !self.eval(c)?.truthy()? {
                            break;
                        }
                    }
                    first = false;
                    match self.block(body)? {
                        Ctl::Break => break,
                        Ctl::Return(v) => return Ok(Ctl::Return(v)),
                        Ctl::Next | Ctl::Continue => {}
                    }
                    self.block(step)?;
                }
            }
            Stmt::Foreach(slot, source, body) => {
                let items = self.eval(source)?.items()?;
                for item in items {
                    self.tick()?;
                    if let Some(s) = self.slots.get_mut(*slot) {
                        *s = item;
                    }
                    match self.block(body)? {
                        Ctl::Break => break,
                        Ctl::Return(v) => return Ok(Ctl::Return(v)),
                        Ctl::Next | Ctl::Continue => {}
                    }
                }
            }
            Stmt::Break => return Ok(Ctl::Break),
            Stmt::Continue => return Ok(Ctl::Continue),
            Stmt::Return(n) => return Ok(Ctl::Return(self.eval(n)?)),
            Stmt::Throw(n) => {
                let v = self.eval(n)?;
                let (kind, message) = match &v {
                    Val::Error(e) => (e.kind, e.message.clone()),
                    Val::Null => ("NullReferenceException", NULL_REFERENCE.0.to_string()),
                    other => ("Exception", other.to_text().into_owned()),
                };
                // the type travels beside the message to the catch that takes it
                self.thrown = Some(kind);
                return Err(EvalError(Cow::Owned(message)));
            }
            Stmt::Try {
                body,
                catches,
                finally,
            } => {
                let outcome = match self.block(body) {
                    Err(e) if !e.is_budget() => {
                        let kind = self
                            .thrown
                            .take()
                            .unwrap_or_else(|| exceptions::kind_of(e.message()));
                        let taker = catches.iter().find(|(wanted, _, _)| {
                            wanted.is_none_or(|w| exceptions::catches(w, kind))
                        });
                        match taker {
                            Some((_, slot, handler)) => {
                                if let Some(s) = self.slots.get_mut(*slot) {
                                    *s = Val::Error(Rc::new(exceptions::Exception {
                                        kind,
                                        message: e.message().to_string(),
                                    }));
                                }
                                self.block(handler)
                            }
                            None => {
                                self.thrown = Some(kind);
                                Err(e)
                            }
                        }
                    }
                    other => other,
                };
                match self.block(finally)? {
                    Ctl::Next => return outcome,
                    other => return Ok(other),
                }
            }
        }
        Ok(Ctl::Next)
    }

    fn assign(&mut self, place: &'e Place, v: Val<'e>) -> Result<(), EvalError> {
        match place {
            Place::Local(i) => {
                if let Some(s) = self.slots.get_mut(*i) {
                    *s = v;
                }
                Ok(())
            }
            Place::Index(target, key) => {
                let t = self.eval(target)?;
                let k = self.eval(key)?;
                self.set_index(&t, &k, v)
            }
            Place::Member(target, member) => {
                let t = self.eval(target)?;
                members::set(self, &t, *member, v)
            }
        }
    }

    /// `t[k] = v`.
    pub fn set_index(&mut self, t: &Val<'e>, k: &Val<'e>, v: Val<'e>) -> Result<(), EvalError> {
        match (t, k) {
            (Val::Json(j @ Json::Object(_)), Val::Str(name)) => {
                let value = self.json_item(j, &v)?;
                j.set(name, value)
            }
            (Val::Json(j @ Json::Array(a)), Val::Int(i)) => {
                let value = self.json_item(j, &v)?;
                let mut a = a.borrow_mut();
                let slot = usize::try_from(*i)
                    .ok()
                    .and_then(|i| a.get_mut(i))
                    .ok_or(OUT_OF_RANGE)?;
                *slot = value;
                Ok(())
            }
            (Val::List(l), Val::Int(i)) => {
                let v = self.list_item(t, v)?;
                let mut l = l.borrow_mut();
                let slot = usize::try_from(*i)
                    .ok()
                    .and_then(|i| l.get_mut(i))
                    .ok_or(OUT_OF_RANGE)?;
                *slot = v;
                Ok(())
            }
            (Val::Dict(d), key) => {
                let key = key.to_text().into_owned();
                let v = self.list_item(t, v)?;
                let mut d = d.borrow_mut();
                match d.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, old)) => *old = v,
                    None => d.push((key, v)),
                }
                Ok(())
            }
            (Val::Null, _) => Err(NULL_REFERENCE),
            _ => Err(EvalError(Cow::Owned(format!(
                "cannot assign to an index of {} with a {} key",
                t.type_name(),
                k.type_name()
            )))),
        }
    }

    /// `v` as a token to put into the JSON container `into`: not `into` itself or one
    /// of its ancestors (a cycle would never print and never be freed).
    pub fn json_item(&mut self, into: &Json, v: &Val) -> Result<Json, EvalError> {
        let value = to_json(v)?;
        self.charge(64)?;
        if value.depth(MAX_BUILT_DEPTH, self.steps_mut())? >= MAX_BUILT_DEPTH {
            return Err(TOO_DEEP);
        }
        if value.holds(into, self.steps_mut())? {
            return Err(err(
                "Can not add a JSON container to itself or to one inside it",
            ));
        }
        Ok(value)
    }

    /// `v` as an element of the list or dictionary `into`, refusing a cycle.
    pub fn list_item(&mut self, into: &Val, v: Val<'e>) -> Result<Val<'static>, EvalError> {
        self.charge(32)?;
        if holds(&v, into, 0, self.steps_mut())? {
            return Err(err(
                "Can not add a collection to itself or to one inside it",
            ));
        }
        Ok(v.into_owned())
    }
}

/// The local variables of one evaluation: up to eight in place, so a block with a few
/// locals allocates nothing (it lives on the stack for one evaluation, so the inline
/// variant's size is the point).
#[allow(clippy::large_enum_variant)]
pub(super) enum Slots<'e> {
    Inline([Val<'e>; 8]),
    Heap(Vec<Val<'e>>),
}

impl<'e> Slots<'e> {
    fn new(n: usize) -> Slots<'e> {
        if n <= 8 {
            Slots::Inline(Default::default())
        } else {
            Slots::Heap(vec![Val::Null; n])
        }
    }
}

impl<'e> std::ops::Deref for Slots<'e> {
    type Target = [Val<'e>];
    fn deref(&self) -> &[Val<'e>] {
        match self {
            Slots::Inline(a) => a,
            Slots::Heap(v) => v,
        }
    }
}

impl std::ops::DerefMut for Slots<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Slots::Inline(a) => a,
            Slots::Heap(v) => v,
        }
    }
}

/// Evaluated arguments: up to four in place, so a call such as `s.StartsWith("x")`
/// allocates nothing.
#[derive(Default)]
pub(super) struct Args<'e> {
    small: [Val<'e>; 4],
    len: usize,
    spill: Vec<Val<'e>>,
}

impl<'e> Args<'e> {
    fn push(&mut self, v: Val<'e>) {
        if self.len < self.small.len() && self.spill.is_empty() {
            self.small[self.len] = v;
            self.len += 1;
        } else {
            if self.spill.is_empty() {
                self.spill.extend(self.small.iter_mut().map(std::mem::take));
                self.len = 0;
            }
            self.spill.push(v);
        }
    }
    pub fn as_slice(&self) -> &[Val<'e>] {
        if self.spill.is_empty() {
            &self.small[..self.len]
        } else {
            &self.spill
        }
    }
    pub fn into_vec(self) -> Vec<Val<'e>> {
        if self.spill.is_empty() {
            self.small.into_iter().take(self.len).collect()
        } else {
            self.spill
        }
    }
}

impl<'e> std::ops::Deref for Args<'e> {
    type Target = [Val<'e>];
    fn deref(&self) -> &[Val<'e>] {
        self.as_slice()
    }
}

pub(super) const OUT_OF_RANGE: EvalError =
    err("Index was out of range. Must be non-negative and less than the size of the collection");
const OVERFLOW: EvalError = err("Arithmetic operation resulted in an overflow");

/// The context collections whose values are `string[]` in APIM (headers, query).
fn is_string_arrays(lookup: Lookup) -> bool {
    matches!(
        lookup,
        Lookup::RequestHeader
            | Lookup::ResponseHeader
            | Lookup::RequestQuery
            | Lookup::OriginalQuery
    )
}

/// How deeply values built by expressions may nest (JSON containers, lists).
const MAX_BUILT_DEPTH: usize = 4 * json::MAX_DEPTH;
const TOO_DEEP: EvalError = err("values nested too deeply (more than 256 levels)");

/// Whether `v` is `target` or holds it (lists and dictionaries); too deep a value is
/// an error.
fn holds(v: &Val, target: &Val, depth: usize, steps: &mut u64) -> Result<bool, EvalError> {
    *steps = steps.checked_sub(1).ok_or(BUDGET_STEPS)?;
    if depth >= MAX_BUILT_DEPTH {
        return Err(TOO_DEEP);
    }
    if v == target
        && !matches!(
            v,
            Val::Null | Val::Bool(_) | Val::Int(_) | Val::Double(_) | Val::Str(_)
        )
    {
        return Ok(true);
    }
    match v {
        Val::List(l) => {
            for item in l.borrow().iter() {
                if holds(item, target, depth + 1, steps)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Val::Dict(d) => {
            for (_, item) in d.borrow().iter() {
                if holds(item, target, depth + 1, steps)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        _ => Ok(false),
    }
}

/// `t[k]`.
pub(super) fn index<'e>(t: &Val<'e>, k: &Val) -> Result<Val<'e>, EvalError> {
    let at = |len: usize| -> Result<usize, EvalError> {
        match k {
            Val::Int(i) => usize::try_from(*i)
                .ok()
                .filter(|i| *i < len)
                .ok_or(OUT_OF_RANGE),
            _ => Err(err("an index must be an int")),
        }
    };
    Ok(match t {
        Val::Json(j @ Json::Object(_)) => {
            match k {
                Val::Str(name) => j.with_field(name, from_json).unwrap_or(Val::Null),
                _ => return Err(err(
                    "Accessed JObject values with invalid key value. Object property name expected",
                )),
            }
        }
        Val::Json(j @ Json::Array(a)) => {
            let i = at(a.borrow().len())?;
            j.at(i).map_or(Val::Null, |v| from_json(&v))
        }
        Val::List(l) => {
            let l = l.borrow();
            l[at(l.len())?].clone()
        }
        Val::Dict(d) => {
            let key = k.to_text();
            match d.borrow().iter().find(|(name, _)| *name == *key) {
                Some((_, v)) => v.clone(),
                None => {
                    return Err(EvalError(Cow::Owned(format!(
                        "The given key '{key}' was not present in the dictionary"
                    ))))
                }
            }
        }
        Val::Str(s) => {
            let Val::Int(i) = k else {
                return Err(err("a string's index must be an int"));
            };
            let c = usize::try_from(*i)
                .ok()
                .and_then(|i| s.chars().nth(i))
                .ok_or(OUT_OF_RANGE)?;
            Val::Str(Cow::Owned(c.to_string()))
        }
        Val::Bytes(b) => Val::Int(i64::from(b[at(b.len())?])),
        Val::Re(r) => regexes::group(r, k)?,
        Val::Null => return Err(NULL_REFERENCE),
        other => {
            return Err(EvalError(Cow::Owned(format!(
                "Cannot apply indexing to a value of type {}",
                other.type_name()
            ))))
        }
    })
}

/// Whether `v` is a `t` (`is`, `as`).
pub(super) fn is_type(v: &Val, t: Ty) -> bool {
    matches!(
        (t, v),
        (Ty::Any, v) if *v != Val::Null
    ) || matches!(
        (t, v),
        (Ty::Str, Val::Str(_))
            | (Ty::Int, Val::Int(_))
            | (Ty::Double, Val::Double(_))
            | (Ty::Bool, Val::Bool(_))
            | (Ty::JObject, Val::Json(Json::Object(_)))
            | (Ty::JArray, Val::Json(Json::Array(_)))
            | (Ty::JToken, Val::Json(_))
            | (Ty::JProperty, Val::Prop(_))
            | (Ty::List, Val::List(_))
            | (Ty::Dict, Val::Dict(_))
            | (Ty::Builder, Val::Builder(_))
            | (Ty::Bytes, Val::Bytes(_))
            | (Ty::Date, Val::Date(_))
            | (Ty::Span, Val::Span(_))
            | (Ty::Jwt, Val::Jwt(_))
            | (Ty::Basic, Val::Basic(_))
            | (Ty::XDoc, Val::Xml(xml::Xv::Doc(_)))
            | (Ty::XElem, Val::Xml(xml::Xv::Elem(..)))
            | (Ty::XAttr, Val::Xml(xml::Xv::Attr { .. }))
            | (Ty::XName, Val::Xml(xml::Xv::Name(_)))
            | (Ty::XNs, Val::Xml(xml::Xv::Ns(_)))
            | (Ty::Uri, Val::Uri(_))
            | (Ty::Response, Val::Response(_))
    )
}

fn invalid_cast(v: &Val, t: Ty) -> EvalError {
    EvalError(Cow::Owned(format!(
        "Unable to cast object of type '{}' to type '{t:?}'",
        v.type_name()
    )))
}

/// `(T)v`: C#'s explicit conversion as far as it applies to these values (a JSON value's
/// text converts to a number or bool as Newtonsoft's explicit operators do).
pub(super) fn cast<'e>(t: Ty, v: Val<'e>) -> Result<Val<'e>, EvalError> {
    let number = |s: &str| -> Result<f64, EvalError> {
        s.trim()
            .parse::<f64>()
            .map_err(|_| err("Input string was not in a correct format"))
    };
    Ok(match (t, v) {
        (Ty::Any, v) => v,
        (_, Val::Null) => Val::Null,
        (Ty::Str, Val::Str(s)) => Val::Str(s),
        (Ty::Str, v @ (Val::Bool(_) | Val::Int(_) | Val::Double(_) | Val::Builder(_))) => {
            Val::Str(Cow::Owned(v.to_text().into_owned()))
        }
        (Ty::Int, Val::Int(i)) => Val::Int(i),
        (Ty::Int, Val::Double(d)) if d.is_finite() && d.abs() < 9.2e18 => {
            Val::Int(d.trunc() as i64)
        }
        (Ty::Int, Val::Str(s)) => Val::Int(
            s.trim()
                .parse()
                .or_else(|_| number(&s).map(|d| d.trunc() as i64))
                .map_err(|_| err("Input string was not in a correct format"))?,
        ),
        (Ty::Double, Val::Double(d)) => Val::Double(d),
        (Ty::Double, Val::Int(i)) => Val::Double(i as f64),
        (Ty::Double, Val::Str(s)) => Val::Double(number(&s)?),
        (Ty::Bool, Val::Bool(b)) => Val::Bool(b),
        (Ty::Bool, Val::Str(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Val::Bool(true),
            "false" => Val::Bool(false),
            _ => return Err(err("String was not recognized as a valid Boolean")),
        },
        (
            Ty::JToken,
            v @ (Val::Json(_) | Val::Str(_) | Val::Int(_) | Val::Double(_) | Val::Bool(_)),
        ) => v,
        (Ty::List, v @ (Val::List(_) | Val::Json(Json::Array(_)) | Val::Bytes(_))) => v,
        // a JSON date is a string here: (DateTime)token parses it
        (Ty::Date, Val::Str(s)) => Val::Date(datetime::parse(&s)?.to_datetime()?),
        // System.Xml.Linq's conversions: a string to a name or namespace, an element or
        // attribute to its value's type
        (Ty::XNs, Val::Str(s)) => Val::Xml(xml::Xv::Ns(Rc::from(&*s))),
        (Ty::Str, Val::Uri(u)) => Val::Str(Cow::Owned(u.text())),
        (Ty::Uri, Val::Str(s)) => Val::Uri(Rc::new(uri::Uri::parse(&s)?)),
        (Ty::XName, Val::Str(s)) => Val::Xml(xml::Xv::Name(xml::XName::parse(&s)?)),
        (
            t @ (Ty::Str | Ty::Int | Ty::Double | Ty::Bool | Ty::Date),
            Val::Xml(x @ (xml::Xv::Elem(..) | xml::Xv::Attr { .. })),
        ) => cast(t, Val::Str(Cow::Owned(x.value().unwrap_or_default())))?,
        (t, v) if is_type(&v, t) => v,
        (t, v) => return Err(invalid_cast(&v, t)),
    })
}

pub(super) fn binary<'e>(op: BinOp, x: Val<'e>, y: Val<'e>) -> Result<Val<'e>, EvalError> {
    use Val::{Double, Int};
    if matches!(x, Val::Date(_) | Val::Span(_)) || matches!(y, Val::Date(_) | Val::Span(_)) {
        if let Some(r) = dates::binary(op, &x, &y) {
            return r;
        }
    }
    let float = |v: &Val| match v {
        Int(i) => Some(*i as f64),
        Double(d) => Some(*d),
        _ => None,
    };
    Ok(match op {
        BinOp::Eq => Val::Bool(x == y),
        BinOp::Ne => Val::Bool(x != y),
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            let ord = match (&x, &y) {
                (Int(a), Int(b)) => a.partial_cmp(b),
                _ => match (float(&x), float(&y)) {
                    (Some(a), Some(b)) => a.partial_cmp(&b),
                    // a comparison with null (a nullable) is false, as in C#
                    _ if x == Val::Null || y == Val::Null => return Ok(Val::Bool(false)),
                    _ => return Err(err("<, <=, > and >= compare numbers")),
                },
            };
            let Some(ord) = ord else {
                return Ok(Val::Bool(false));
            };
            Val::Bool(match op {
                BinOp::Lt => ord.is_lt(),
                BinOp::Le => ord.is_le(),
                BinOp::Gt => ord.is_gt(),
                _ => ord.is_ge(),
            })
        }
        BinOp::Add => match (x, y) {
            (Int(a), Int(b)) => Int(a.checked_add(b).ok_or(OVERFLOW)?),
            (Val::Xml(xml::Xv::Ns(ns)), Val::Str(local)) => xml::join_name(&ns, &local)?,
            (Val::Str(a), b) => {
                let mut s = a.into_owned();
                s.push_str(&b.to_text());
                Val::Str(Cow::Owned(s))
            }
            (a, Val::Str(b)) => {
                let mut s = a.to_text().into_owned();
                s.push_str(&b);
                Val::Str(Cow::Owned(s))
            }
            (Val::Null, Val::Null) => Val::Null,
            (a, b) => match (float(&a), float(&b)) {
                (Some(a), Some(b)) => Double(a + b),
                _ => return Err(err("+ adds numbers or joins strings")),
            },
        },
        BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => match (&x, &y) {
            (Int(a), Int(b)) => {
                let (a, b) = (*a, *b);
                if b == 0 && matches!(op, BinOp::Div | BinOp::Rem) {
                    return Err(err("Attempted to divide by zero"));
                }
                // C#'s integer division and remainder truncate toward zero, as Rust's do
                let r = match op {
                    BinOp::Sub => a.checked_sub(b),
                    BinOp::Mul => a.checked_mul(b),
                    BinOp::Div => a.checked_div(b),
                    _ => a.checked_rem(b),
                };
                Int(r.ok_or(OVERFLOW)?)
            }
            _ => match (float(&x), float(&y)) {
                (Some(a), Some(b)) => Double(match op {
                    BinOp::Sub => a - b,
                    BinOp::Mul => a * b,
                    BinOp::Div => a / b,
                    _ => a % b,
                }),
                _ => return Err(err("- * / and % take numbers")),
            },
        },
        BinOp::And | BinOp::Or => Val::Bool(x.truthy()? && y.truthy()?),
        // on the 64-bit ints here: the count taken modulo 64, as C# does for long
        BinOp::Shl | BinOp::Shr => match (&x, &y) {
            (Int(a), Int(n)) => Int(if op == BinOp::Shl {
                a.wrapping_shl((*n & 63) as u32)
            } else {
                a >> (*n & 63)
            }),
            _ => return Err(err("<< and >> take ints")),
        },
        BinOp::BitOr | BinOp::BitAnd | BinOp::BitXor => match (&x, &y) {
            (Int(a), Int(b)) => Int(match op {
                BinOp::BitOr => a | b,
                BinOp::BitAnd => a & b,
                _ => a ^ b,
            }),
            (Val::Bool(a), Val::Bool(b)) => Val::Bool(match op {
                BinOp::BitOr => a | b,
                BinOp::BitAnd => a & b,
                _ => a ^ b,
            }),
            _ => return Err(err("| & and ^ take ints or bools")),
        },
    })
}
