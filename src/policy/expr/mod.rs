//! Policy expressions: the documented, safe subset of Azure API Management's C#
//! expressions (`@(...)` and `@{ ... return ...; }`). Parsed once at config load into a
//! tree whose `context.*` members are already resolved to `Field`s and `Lookup`s, so a
//! request never parses text. Evaluation borrows from the request where it can (no
//! allocation for a header read or a comparison); only building a new string allocates.
//! There are no loops, no user functions and no member outside the list in README
//! "Policy expressions": nothing can reach the host. Anything else is a load-time error
//! with its column.
//! Must not touch: sockets, the config JSON, the policy XML.

use std::borrow::Cow;
use std::fmt;

mod lex;
mod parse;

use lex::{is_keyword, lex, Part, Tok};
use parse::Parser;

/// A value while an expression runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Str(Cow<'a, str>),
}

impl<'a> Val<'a> {
    pub fn into_owned(self) -> Val<'static> {
        match self {
            Val::Null => Val::Null,
            Val::Bool(b) => Val::Bool(b),
            Val::Int(i) => Val::Int(i),
            Val::Str(s) => Val::Str(Cow::Owned(s.into_owned())),
        }
    }
    pub fn borrowed(&self) -> Val<'_> {
        match self {
            Val::Null => Val::Null,
            Val::Bool(b) => Val::Bool(*b),
            Val::Int(i) => Val::Int(*i),
            Val::Str(s) => Val::Str(Cow::Borrowed(s)),
        }
    }
    /// The value as text, the way C#'s `ToString()` prints it (`True`/`False` for bools).
    pub fn to_text(&self) -> Cow<'_, str> {
        match self {
            Val::Null => Cow::Borrowed(""),
            Val::Bool(true) => Cow::Borrowed("True"),
            Val::Bool(false) => Cow::Borrowed("False"),
            Val::Int(i) => Cow::Owned(i.to_string()),
            Val::Str(s) => Cow::Borrowed(s),
        }
    }
    pub fn truthy(&self) -> Result<bool, EvalError> {
        match self {
            Val::Bool(b) => Ok(*b),
            _ => Err(EvalError("a condition did not evaluate to a bool")),
        }
    }
}

/// A failure while evaluating (APIM: ExpressionValueEvaluationFailure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalError(pub &'static str);

/// A load-time error: what and where (byte offset into the expression text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "expression error at column {}: {}",
            self.offset + 1,
            self.message
        )
    }
}

/// A property of `context` with no argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    RequestMethod,
    RequestIp,
    RequestPath,
    RequestHost,
    RequestScheme,
    RequestPort,
    RequestQueryString,
    /// `context.Request.OriginalUrl.QueryString`: as the client sent it.
    OriginalQueryString,
    /// `context.Request.Url.ToString()` and `OriginalUrl.ToString()`: the whole URL.
    RequestUrl,
    OriginalUrl,
    /// `context.Subscription` / `context.Product` as values: null without one (only
    /// compared with null; their members are fields of their own).
    SubscriptionObject,
    ProductObject,
    ResponseStatus,
    ResponseReason,
    SubscriptionId,
    SubscriptionKey,
    SubscriptionName,
    ApiId,
    ApiName,
    ApiPath,
    OperationId,
    OperationMethod,
    OperationTemplate,
    ProductId,
    ProductName,
    RequestId,
    GatewayId,
    LastErrorSource,
    LastErrorReason,
    LastErrorMessage,
    LastErrorScope,
    LastErrorSection,
    LastErrorPolicyId,
}

/// A keyed collection of `context`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    RequestHeader,
    RequestQuery,
    /// `context.Request.OriginalUrl.Query`: the query as the client sent it.
    OriginalQuery,
    MatchedParameter,
    ResponseHeader,
    Variable,
}

/// What an expression reads from: the request, the response, the variables.
pub trait Env {
    fn field(&self, field: Field) -> Val<'_>;
    /// `None` = not present.
    fn lookup(&self, lookup: Lookup, name: &str) -> Option<Val<'_>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Str,
    Int,
    Bool,
    /// A variable or a null: checked when it runs.
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StrMethod {
    StartsWith,
    EndsWith,
    Contains,
    ToLower,
    ToUpper,
    Substring,
    Trim,
    TrimStart,
    TrimEnd,
    Replace,
    IndexOf,
    LastIndexOf,
    ToString,
    Length,
}

/// Static members of other types: `Guid.NewGuid()`, `int.Parse`, `Convert.To*`,
/// `bool.Parse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Static {
    /// A new random (version 4) GUID, formatted as `ToString(format)` would: D, N, B or P.
    NewGuid(u8),
    /// `int.Parse` / `long.Parse`: a string with an integer (null is an error).
    ParseInt,
    /// `Convert.ToInt32` / `ToInt64`: an int, or a string parsed (null is 0).
    ConvertInt,
    /// `bool.Parse` / `Convert.ToBoolean`.
    ParseBool,
    /// `Convert.ToString`: the value's text (null is "").
    ConvertString,
}

/// Static members of `string`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StrStatic {
    IsNullOrEmpty,
    IsNullOrWhiteSpace,
    Concat,
    Format,
    Equals,
}

#[derive(Debug, Clone)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    Field(Field),
    /// lookup, name, default (GetValueOrDefault), required (indexer: missing = error),
    /// and for variables the `<T>` cast.
    Lookup {
        lookup: Lookup,
        name: Box<Node>,
        default: Option<Box<Node>>,
        required: bool,
        cast: Option<Ty>,
    },
    ContainsKey(Lookup, Box<Node>),
    Local(usize),
    Not(Box<Node>),
    Bin(BinOp, Box<Node>, Box<Node>),
    Cond(Box<Node>, Box<Node>, Box<Node>),
    Cast(Ty, Box<Node>),
    Method(StrMethod, Box<Node>, Vec<Node>),
    StrStatic(StrStatic, Vec<Node>),
    Static(Static, Vec<Node>),
    /// `a ?? b`.
    Coalesce(Box<Node>, Box<Node>),
    /// `x?.Member(...)`: null when `x` is (the member's target).
    NullSafe(Box<Node>),
    /// `$"..."`: the parts' texts joined (null prints as nothing, bools as True/False).
    Interp(Vec<Node>),
}

/// A compiled expression: `@(...)` or a `@{ ... }` block of declarations and a return.
#[derive(Debug, Clone)]
pub struct Expr {
    locals: Vec<Node>,
    result: Node,
    /// What it reads, so the gateway keeps only what later sections need.
    pub reads_request: bool,
}

/// Most nodes one expression may have (bounds recursion and evaluation time).
const MAX_NODES: usize = 512;
const MAX_DEPTH: usize = 48;

impl Expr {
    /// Compiles the text between `@(` and `)` (`block = false`) or `@{` and `}`.
    pub fn parse(text: &str, block: bool) -> Result<Expr, ParseError> {
        let tokens = lex(text)?;
        let mut p = Parser {
            tokens,
            pos: 0,
            locals: Vec::new(),
            nodes: 0,
            depth: 0,
            reads_request: false,
        };
        let mut local_nodes = Vec::new();
        let result = if block {
            loop {
                let at = p.offset();
                match p.peek() {
                    Tok::Ident(w) if w == "return" => {
                        p.pos += 1;
                        let e = p.expr()?;
                        p.expect(&Tok::Punct(";"))?;
                        if p.pos < p.tokens.len() {
                            return Err(p.err_at(p.offset(), "nothing may follow 'return'"));
                        }
                        break e;
                    }
                    Tok::Ident(w) if ["var", "string", "int", "bool", "long"].contains(&w.as_str()) => {
                        let ty = match w.as_str() {
                            "string" => Some(Ty::Str),
                            "int" | "long" => Some(Ty::Int),
                            "bool" => Some(Ty::Bool),
                            _ => None,
                        };
                        p.pos += 1;
                        let name = match p.next() {
                            Tok::Ident(n) if !is_keyword(&n) => n,
                            _ => return Err(p.err_at(at, "expected a variable name")),
                        };
                        if p.locals.contains(&name) {
                            return Err(p.err_at(at, format!("'{name}' is declared twice")));
                        }
                        p.expect(&Tok::Punct("="))?;
                        let e = p.expr()?;
                        p.expect(&Tok::Punct(";"))?;
                        let e = match ty {
                            Some(t) => Node::Cast(t, Box::new(e)),
                            None => e,
                        };
                        local_nodes.push(e);
                        p.locals.push(name);
                    }
                    Tok::End => return Err(p.err_at(at, "a block must end with 'return <expression>;'")),
                    _ => {
                        return Err(p.err_at(
                            at,
                            "only declarations ('var x = ...;') and 'return ...;' are supported in a block",
                        ))
                    }
                }
            }
        } else {
            let e = p.expr()?;
            if p.pos < p.tokens.len() {
                return Err(p.err_at(p.offset(), "unexpected text after the expression"));
            }
            e
        };
        Ok(Expr {
            locals: local_nodes,
            result,
            reads_request: p.reads_request,
        })
    }

    /// The static type of the result, where known.
    pub fn ty(&self) -> Ty {
        ty_of(&self.result, &self.locals)
    }

    pub fn eval<'e>(&'e self, env: &'e dyn Env) -> Result<Val<'e>, EvalError> {
        if self.locals.is_empty() {
            return eval(&self.result, env, &[]);
        }
        let mut slots: Vec<Val<'e>> = Vec::with_capacity(self.locals.len());
        for node in &self.locals {
            let v = eval(node, env, &slots)?.into_owned();
            slots.push(v);
        }
        eval(&self.result, env, &slots).map(Val::into_owned)
    }

    /// `eval` as text (null is "").
    pub fn eval_text<'e>(&'e self, env: &'e dyn Env) -> Result<Cow<'e, str>, EvalError> {
        Ok(match self.eval(env)? {
            Val::Str(s) => s,
            other => Cow::Owned(other.to_text().into_owned()),
        })
    }

    pub fn eval_bool(&self, env: &dyn Env) -> Result<bool, EvalError> {
        self.eval(env)?.truthy()
    }
}

fn ty_of(n: &Node, locals: &[Node]) -> Ty {
    match n {
        Node::Bool(_) | Node::Not(_) | Node::ContainsKey(..) => Ty::Bool,
        Node::Static(f, _) => match f {
            Static::NewGuid(_) | Static::ConvertString => Ty::Str,
            Static::ParseInt | Static::ConvertInt => Ty::Int,
            Static::ParseBool => Ty::Bool,
        },
        Node::StrStatic(f, _) => match f {
            StrStatic::Concat | StrStatic::Format => Ty::Str,
            _ => Ty::Bool,
        },
        Node::Int(_) => Ty::Int,
        Node::Str(_) | Node::Interp(_) => Ty::Str,
        Node::Null => Ty::Any,
        Node::Field(f) => match f {
            Field::ResponseStatus | Field::RequestPort => Ty::Int,
            Field::SubscriptionObject | Field::ProductObject => Ty::Any,
            _ => Ty::Str,
        },
        Node::Coalesce(a, b) => {
            let (x, y) = (ty_of(a, locals), ty_of(b, locals));
            if x == y {
                x
            } else {
                Ty::Any
            }
        }
        Node::NullSafe(member) => ty_of(member, locals),
        Node::Lookup { lookup, cast, .. } => match (lookup, cast) {
            (_, Some(t)) => *t,
            (Lookup::Variable, None) => Ty::Any,
            _ => Ty::Str,
        },
        Node::Local(i) => locals.get(*i).map_or(Ty::Any, |n| ty_of(n, locals)),
        Node::Bin(op, a, b) => match op {
            BinOp::Add => match (ty_of(a, locals), ty_of(b, locals)) {
                (Ty::Int, Ty::Int) => Ty::Int,
                (Ty::Str, _) | (_, Ty::Str) => Ty::Str,
                _ => Ty::Any,
            },
            BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => Ty::Int,
            _ => Ty::Bool,
        },
        Node::Cond(_, a, b) => {
            let (x, y) = (ty_of(a, locals), ty_of(b, locals));
            if x == y {
                x
            } else {
                Ty::Any
            }
        }
        Node::Cast(t, _) => *t,
        Node::Method(m, ..) => match m {
            StrMethod::StartsWith | StrMethod::EndsWith | StrMethod::Contains => Ty::Bool,
            StrMethod::Length | StrMethod::IndexOf | StrMethod::LastIndexOf => Ty::Int,
            _ => Ty::Str,
        },
    }
}

// ------------------------------------------------------------------ evaluation

fn eval<'e>(n: &'e Node, env: &'e dyn Env, slots: &[Val<'e>]) -> Result<Val<'e>, EvalError> {
    Ok(match n {
        Node::Null => Val::Null,
        Node::Bool(b) => Val::Bool(*b),
        Node::Int(i) => Val::Int(*i),
        Node::Str(s) => Val::Str(Cow::Borrowed(s)),
        Node::Interp(parts) => {
            let mut out = String::new();
            for part in parts {
                out.push_str(&eval(part, env, slots)?.to_text());
            }
            Val::Str(Cow::Owned(out))
        }
        Node::Field(f) => env.field(*f),
        Node::Local(i) => slots
            .get(*i)
            .cloned()
            .ok_or(EvalError("a local variable is used before it is set"))?,
        Node::Lookup {
            lookup,
            name,
            default,
            required,
            cast,
        } => {
            let key = eval(name, env, slots)?;
            let key = key.to_text();
            let found = match env.lookup(*lookup, &key) {
                Some(v) => Some(v),
                None if *required => {
                    return Err(EvalError("the given key was not present in the dictionary"))
                }
                None => None,
            };
            let v = match (found, default) {
                (Some(v), _) => v,
                (None, Some(d)) => eval(d, env, slots)?,
                (None, None) => Val::Null,
            };
            match cast {
                Some(t) => cast_to(*t, v)?,
                None => v,
            }
        }
        Node::ContainsKey(lookup, name) => {
            let key = eval(name, env, slots)?;
            Val::Bool(env.lookup(*lookup, &key.to_text()).is_some())
        }
        Node::Not(a) => Val::Bool(!eval(a, env, slots)?.truthy()?),
        Node::Cond(c, a, b) => {
            if eval(c, env, slots)?.truthy()? {
                eval(a, env, slots)?
            } else {
                eval(b, env, slots)?
            }
        }
        Node::Bin(op, a, b) => {
            match op {
                BinOp::And => {
                    return Ok(Val::Bool(
                        eval(a, env, slots)?.truthy()? && eval(b, env, slots)?.truthy()?,
                    ))
                }
                BinOp::Or => {
                    return Ok(Val::Bool(
                        eval(a, env, slots)?.truthy()? || eval(b, env, slots)?.truthy()?,
                    ))
                }
                _ => {}
            }
            let (x, y) = (eval(a, env, slots)?, eval(b, env, slots)?);
            binary(*op, x, y)?
        }
        Node::Cast(t, a) => cast_to(*t, eval(a, env, slots)?)?,
        Node::StrStatic(f, args) => string_static(*f, args, env, slots)?,
        Node::Static(f, args) => {
            let arg = match args.first() {
                Some(a) => eval(a, env, slots)?,
                None => Val::Null,
            };
            other_static(*f, arg)?
        }
        Node::Coalesce(a, b) => match eval(a, env, slots)? {
            Val::Null => eval(b, env, slots)?,
            v => v,
        },
        Node::NullSafe(member) => match &**member {
            Node::Method(_, target, _) if eval(target, env, slots)? == Val::Null => Val::Null,
            other => eval(other, env, slots)?,
        },
        Node::Method(m, target, args) => string_method(*m, target, args, env, slots)?,
    })
}

/// A string member on the value of `target`.
fn string_method<'e>(
    m: StrMethod,
    target: &'e Node,
    args: &'e [Node],
    env: &'e dyn Env,
    slots: &[Val<'e>],
) -> Result<Val<'e>, EvalError> {
    let t = eval(target, env, slots)?;
    if m == StrMethod::ToString {
        return Ok(match t {
            Val::Null => return Err(EvalError("ToString() on a null value")),
            Val::Str(s) => Val::Str(s),
            other => Val::Str(Cow::Owned(other.to_text().into_owned())),
        });
    }
    let s = match t {
        Val::Str(s) => s,
        Val::Null => return Err(EvalError("a string method was called on a null value")),
        _ => return Err(EvalError("a string method was called on a non-string")),
    };
    let arg_str = |i: usize| -> Result<Cow<'e, str>, EvalError> {
        match args.get(i).map(|a| eval(a, env, slots)).transpose()? {
            Some(Val::Str(a)) => Ok(a),
            _ => Err(EvalError("a string argument is null or not a string")),
        }
    };
    let arg_int = |i: usize| -> Result<Option<i64>, EvalError> {
        match args.get(i).map(|a| eval(a, env, slots)).transpose()? {
            None => Ok(None),
            Some(Val::Int(n)) => Ok(Some(n)),
            Some(_) => Err(EvalError("an int argument is not an int")),
        }
    };
    Ok(match m {
        StrMethod::StartsWith => Val::Bool(s.starts_with(&*arg_str(0)?)),
        StrMethod::EndsWith => Val::Bool(s.ends_with(&*arg_str(0)?)),
        StrMethod::Contains => Val::Bool(s.contains(&*arg_str(0)?)),
        StrMethod::ToLower => Val::Str(lower(s)),
        StrMethod::ToUpper => Val::Str(Cow::Owned(s.to_uppercase())),
        StrMethod::Trim | StrMethod::TrimStart | StrMethod::TrimEnd if !args.is_empty() => {
            let mut set = String::new();
            for i in 0..args.len() {
                set.push_str(&arg_str(i)?);
            }
            let trim = |c: char| set.contains(c);
            Val::Str(Cow::Owned(match m {
                StrMethod::TrimStart => s.trim_start_matches(trim).to_string(),
                StrMethod::TrimEnd => s.trim_end_matches(trim).to_string(),
                _ => s.trim_matches(trim).to_string(),
            }))
        }
        StrMethod::Trim => Val::Str(match s {
            Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
            Cow::Owned(o) => Cow::Owned(o.trim().to_string()),
        }),
        StrMethod::Length => Val::Int(s.chars().count() as i64),
        StrMethod::TrimStart => Val::Str(Cow::Owned(s.trim_start().to_string())),
        StrMethod::TrimEnd => Val::Str(Cow::Owned(s.trim_end().to_string())),
        StrMethod::Replace => {
            let from = arg_str(0)?;
            if from.is_empty() {
                return Err(EvalError("String cannot be of zero length (Replace)"));
            }
            Val::Str(Cow::Owned(s.replace(&*from, &arg_str(1)?)))
        }
        StrMethod::IndexOf => {
            let from = arg_int(1)?.unwrap_or(0);
            let start = usize::try_from(from)
                .ok()
                .and_then(|n| s.char_indices().map(|(i, _)| i).chain([s.len()]).nth(n));
            let Some(start) = start else {
                return Err(EvalError("startIndex must be within the string (IndexOf)"));
            };
            let found = s[start..].find(&*arg_str(0)?).map(|i| i + start);
            Val::Int(char_index(&s, found))
        }
        StrMethod::LastIndexOf => Val::Int(char_index(&s, s.rfind(&*arg_str(0)?))),
        StrMethod::Substring => {
            let start = arg_int(0)?.unwrap_or(0);
            let chars: Vec<char> = s.chars().collect();
            let len = arg_int(1)?.unwrap_or(chars.len() as i64 - start);
            if start < 0 || len < 0 || (start + len) as usize > chars.len() {
                return Err(EvalError(
                    "Substring index and length must refer to a location within the string",
                ));
            }
            Val::Str(Cow::Owned(
                chars[start as usize..(start + len) as usize]
                    .iter()
                    .collect(),
            ))
        }
        StrMethod::ToString => Val::Str(s),
    })
}

/// `Guid`, `int`, `bool` and `Convert` members on their argument.
fn other_static(f: Static, arg: Val) -> Result<Val<'static>, EvalError> {
    let int = |s: &str| -> Result<i64, EvalError> {
        s.trim()
            .parse()
            .map_err(|_| EvalError("Input string was not in a correct format (int)"))
    };
    Ok(match (f, arg) {
        (Static::NewGuid(format), _) => Val::Str(Cow::Owned(new_guid(format))),
        (Static::ParseInt, Val::Null) => return Err(EvalError("Value cannot be null (int.Parse)")),
        (Static::ConvertInt, Val::Null) => Val::Int(0),
        (Static::ParseInt | Static::ConvertInt, Val::Int(n)) => Val::Int(n),
        (Static::ParseInt | Static::ConvertInt, Val::Str(s)) => Val::Int(int(&s)?),
        (Static::ConvertInt, Val::Bool(b)) => Val::Int(i64::from(b)),
        (Static::ParseBool, Val::Bool(b)) => Val::Bool(b),
        (Static::ParseBool, Val::Str(s)) if s.trim().eq_ignore_ascii_case("true") => {
            Val::Bool(true)
        }
        (Static::ParseBool, Val::Str(s)) if s.trim().eq_ignore_ascii_case("false") => {
            Val::Bool(false)
        }
        (Static::ParseBool, _) => {
            return Err(EvalError("String was not recognized as a valid Boolean"))
        }
        (Static::ConvertString, v) => Val::Str(Cow::Owned(v.to_text().into_owned())),
        (_, _) => return Err(EvalError("an argument of the wrong type")),
    })
}

/// A random (version 4) GUID as .NET prints it: lower-case hex, `D` (8-4-4-4-12), `N`
/// (32 digits), `B` ({D}) or `P` ((D)).
fn new_guid(format: u8) -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    // SystemRandom only fails if the OS has no randomness source at all
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let d = format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    match format {
        b'N' => hex,
        b'B' => format!("{{{d}}}"),
        b'P' => format!("({d})"),
        _ => d,
    }
}

/// A byte position in `s` as C# counts it (characters), or -1.
fn char_index(s: &str, at: Option<usize>) -> i64 {
    at.map_or(-1, |i| s[..i].chars().count() as i64)
}

/// `string.X(...)`.
fn string_static<'e>(
    f: StrStatic,
    args: &'e [Node],
    env: &'e dyn Env,
    slots: &[Val<'e>],
) -> Result<Val<'e>, EvalError> {
    let mut values = Vec::with_capacity(args.len());
    for a in args {
        values.push(eval(a, env, slots)?);
    }
    let text = |v: &Val| -> Result<bool, EvalError> {
        match v {
            Val::Null | Val::Str(_) => Ok(true),
            _ => Err(EvalError("a string argument is not a string")),
        }
    };
    Ok(match f {
        StrStatic::IsNullOrEmpty | StrStatic::IsNullOrWhiteSpace => {
            text(&values[0])?;
            let s = values[0].to_text();
            Val::Bool(if f == StrStatic::IsNullOrEmpty {
                s.is_empty()
            } else {
                s.trim().is_empty()
            })
        }
        StrStatic::Equals => {
            text(&values[0])?;
            text(&values[1])?;
            Val::Bool(values[0] == values[1])
        }
        StrStatic::Concat => Val::Str(Cow::Owned(values.iter().map(|v| v.to_text()).collect())),
        StrStatic::Format => {
            let Val::Str(format) = &values[0] else {
                return Err(EvalError("string.Format needs a format string"));
            };
            Val::Str(Cow::Owned(format_text(format, &values[1..])?))
        }
    })
}

/// `string.Format`'s `{0}` placeholders (and `{{` / `}}`); a format or alignment in a
/// placeholder is not supported yet.
fn format_text(format: &str, values: &[Val]) -> Result<String, EvalError> {
    let bad = || EvalError("Input string was not in a correct format (string.Format)");
    let mut out = String::with_capacity(format.len());
    let mut rest = format;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let brace = rest.as_bytes()[i];
        if rest.as_bytes().get(i + 1) == Some(&brace) {
            out.push(char::from(brace));
            rest = &rest[i + 2..];
            continue;
        }
        if brace == b'}' {
            return Err(bad());
        }
        let close = rest[i..].find('}').ok_or_else(bad)? + i;
        let index: usize = rest[i + 1..close].trim().parse().map_err(|_| bad())?;
        let value = values.get(index).ok_or(EvalError(
            "Index (zero based) must be greater than or equal to zero and less than the size of the argument list (string.Format)",
        ))?;
        out.push_str(&value.to_text());
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn lower(s: Cow<'_, str>) -> Cow<'_, str> {
    if s.chars().any(char::is_uppercase) {
        Cow::Owned(s.to_lowercase())
    } else {
        s
    }
}

fn cast_to<'e>(t: Ty, v: Val<'e>) -> Result<Val<'e>, EvalError> {
    Ok(match (t, v) {
        (Ty::Any, v) => v,
        (_, Val::Null) => Val::Null,
        (Ty::Str, Val::Str(s)) => Val::Str(s),
        (Ty::Str, v) => Val::Str(Cow::Owned(v.to_text().into_owned())),
        (Ty::Int, Val::Int(i)) => Val::Int(i),
        (Ty::Int, Val::Str(s)) => Val::Int(
            s.trim()
                .parse()
                .map_err(|_| EvalError("the value is not an int"))?,
        ),
        (Ty::Int, Val::Bool(_)) => return Err(EvalError("a bool cannot be cast to int")),
        (Ty::Bool, Val::Bool(b)) => Val::Bool(b),
        (Ty::Bool, Val::Str(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Val::Bool(true),
            "false" => Val::Bool(false),
            _ => return Err(EvalError("the value is not a bool")),
        },
        (Ty::Bool, Val::Int(_)) => return Err(EvalError("an int cannot be cast to bool")),
    })
}

fn binary<'e>(op: BinOp, x: Val<'e>, y: Val<'e>) -> Result<Val<'e>, EvalError> {
    Ok(match op {
        BinOp::Eq => Val::Bool(x == y),
        BinOp::Ne => Val::Bool(x != y),
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            let (Val::Int(a), Val::Int(b)) = (&x, &y) else {
                return Err(EvalError("<, <=, > and >= compare ints"));
            };
            Val::Bool(match op {
                BinOp::Lt => a < b,
                BinOp::Le => a <= b,
                BinOp::Gt => a > b,
                _ => a >= b,
            })
        }
        BinOp::Add => match (x, y) {
            (Val::Int(a), Val::Int(b)) => {
                Val::Int(a.checked_add(b).ok_or(EvalError("integer overflow"))?)
            }
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
            _ => return Err(EvalError("+ adds two ints or joins strings")),
        },
        BinOp::Sub => match (x, y) {
            (Val::Int(a), Val::Int(b)) => {
                Val::Int(a.checked_sub(b).ok_or(EvalError("integer overflow"))?)
            }
            _ => return Err(EvalError("- subtracts ints")),
        },
        BinOp::Mul | BinOp::Div | BinOp::Rem => {
            let (Val::Int(a), Val::Int(b)) = (x, y) else {
                return Err(EvalError("* / and % take ints"));
            };
            if b == 0 && op != BinOp::Mul {
                return Err(EvalError("Attempted to divide by zero"));
            }
            // C#'s integer division and remainder truncate toward zero, as Rust's do
            let r = match op {
                BinOp::Mul => a.checked_mul(b),
                BinOp::Div => a.checked_div(b),
                _ => a.checked_rem(b),
            };
            Val::Int(r.ok_or(EvalError("integer overflow"))?)
        }
        BinOp::And | BinOp::Or => Val::Bool(x.truthy()? && y.truthy()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct TestEnv {
        headers: HashMap<&'static str, &'static str>,
        vars: HashMap<&'static str, Val<'static>>,
    }
    impl Env for TestEnv {
        fn field(&self, f: Field) -> Val<'_> {
            match f {
                Field::RequestMethod => Val::Str("GET".into()),
                Field::RequestIp => Val::Str("10.0.0.7".into()),
                Field::ResponseStatus => Val::Int(200),
                Field::SubscriptionId | Field::SubscriptionObject => Val::Str("sub-1".into()),
                _ => Val::Null,
            }
        }
        fn lookup(&self, l: Lookup, name: &str) -> Option<Val<'_>> {
            match l {
                Lookup::RequestHeader => self
                    .headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| Val::Str(Cow::Borrowed(*v))),
                Lookup::Variable => self.vars.get(name).map(Val::borrowed),
                _ => None,
            }
        }
    }

    fn env() -> TestEnv {
        TestEnv {
            headers: [("X-Tier", "Gold"), ("Authorization", "Bearer abc")].into(),
            vars: [("n", Val::Int(3)), ("s", Val::Str("7".into()))].into(),
        }
    }

    fn run(text: &str) -> Result<Val<'static>, String> {
        let block = text.starts_with('{');
        let inner = if block {
            &text[1..text.len() - 1]
        } else {
            text
        };
        let e = Expr::parse(inner, block).map_err(|e| e.to_string())?;
        let env = env();
        e.eval(&env)
            .map(Val::into_owned)
            .map_err(|e| e.0.to_string())
    }

    fn s(v: &str) -> Val<'static> {
        Val::Str(Cow::Owned(v.to_string()))
    }

    /// The literal forms of C# that real APIM documents use: comments, verbatim and
    /// interpolated strings, and `Equals` (before, each was a load error).
    #[test]
    fn comments_verbatim_and_interpolated_strings_and_equals() {
        let cases: &[(&str, Val)] = &[
            (
                "context.Request.Method /* the verb */ == \"GET\" // only reads",
                Val::Bool(true),
            ),
            (
                "{\n  // a block with comments\n  var t = context.Request.Headers.GetValueOrDefault(\"X-Tier\", \"\"); /* keep */\n  return t;\n}",
                s("Gold"),
            ),
            (r#"@"c:\temp\""quoted""""#, s(r#"c:\temp\"quoted""#)),
            (
                r#"$"{context.Request.Method} /items/{context.Response.StatusCode} tier={context.Request.Headers.GetValueOrDefault("x-tier", "none").ToLower()}""#,
                s("GET /items/200 tier=gold"),
            ),
            (
                r#"$"{{literal}} {1 < 2} [{context.Request.Headers.GetValueOrDefault("nope")}]""#,
                s("{literal} True []"),
            ),
            (r#"$@"c:\{context.Subscription.Id}\""x""""#, s(r#"c:\sub-1\"x""#)),
            (r#"context.Request.Method.Equals("GET")"#, Val::Bool(true)),
            (r#"context.Request.Method.Equals("get")"#, Val::Bool(false)),
            (
                r#"context.Request.Method.Equals("get", StringComparison.OrdinalIgnoreCase)"#,
                Val::Bool(true),
            ),
            (
                r#"context.Request.Headers.GetValueOrDefault("X-Tier","").Equals("GOLD", StringComparison.InvariantCultureIgnoreCase)"#,
                Val::Bool(true),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(run(text).as_ref(), Ok(want), "{text}");
        }
        for (text, error) in [
            ("1 /* open", "unterminated comment"),
            (
                r#"$"{1:N2}""#,
                "format and alignment in interpolated strings are not supported yet",
            ),
            (r#"$"a } b""#, "must be doubled"),
            (r#"$"{}""#, "an empty hole"),
            (
                r#""a".Equals("b", StringComparison.Whatever)"#,
                "unknown StringComparison.Whatever",
            ),
        ] {
            let got = run(text).expect_err(text);
            assert!(got.contains(error), "{text}: {got}");
        }
    }

    /// String members and statics that APIM documents use most after the literals.
    #[test]
    fn string_members_and_statics() {
        let cases: &[(&str, Val)] = &[
            (r#""a-b-c".Replace("-", "/")"#, s("a/b/c")),
            (r#""héllo wörld".IndexOf("wö")"#, Val::Int(6)),
            (r#""abcabc".LastIndexOf("b")"#, Val::Int(4)),
            (r#""abc".IndexOf("z")"#, Val::Int(-1)),
            (
                r#""  x  ".TrimStart() + "|" + "  y  ".TrimEnd() + "|""#,
                s("x  |  y|"),
            ),
            (
                r#""/a/b/c".Substring(0, "/a/b/c".IndexOf("/", 1))"#,
                s("/a"),
            ),
            (r#""/a/b/c".IndexOf("/", 6)"#, Val::Int(-1)),
            (r#"string.IsNullOrWhiteSpace("  \t")"#, Val::Bool(true)),
            (r#"String.IsNullOrEmpty(null)"#, Val::Bool(true)),
            (
                r#"string.Concat("a", 1, true, null, context.Request.Method)"#,
                s("a1TrueGET"),
            ),
            (
                r#"string.Format("{0}:{1} {{x}} {0}", context.Request.Method, 42)"#,
                s("GET:42 {x} GET"),
            ),
            (
                r#"string.Equals(context.Request.Method, "GET")"#,
                Val::Bool(true),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(run(text).as_ref(), Ok(want), "{text}");
        }
        for (text, error) in [
            (r#"string.Format("{1}", "a")"#, "Index (zero based)"),
            (r#""/a/b/c".IndexOf("/", 9)"#, "startIndex must be within"),
            (r#"string.Format("{0", "a")"#, "not in a correct format"),
            (r#""abc".Replace("", "x")"#, "zero length"),
            (r#"string.Join(",", "a")"#, "string.Join is not supported"),
            (r#"string.Format(1)"#, "needs a format string"),
        ] {
            let got = run(text).expect_err(text);
            assert!(got.contains(error), "{text}: {got}");
        }
    }

    /// Null handling as APIM documents write it: `??`, `?.`, and the call's optional
    /// objects compared with null.
    #[test]
    fn null_coalescing_safe_navigation_and_optional_objects() {
        let cases: &[(&str, Val)] = &[
            (
                r#"context.Request.Headers.GetValueOrDefault("nope") ?? "dflt""#,
                s("dflt"),
            ),
            (r#"null ?? null ?? "c""#, s("c")),
            (
                r#"context.Request.Headers.GetValueOrDefault("nope")?.ToLower() ?? "none""#,
                s("none"),
            ),
            (
                r#"context.Request.Headers.GetValueOrDefault("X-Tier")?.ToLower()"#,
                s("gold"),
            ),
            (r#"context.Subscription?.Id"#, s("sub-1")),
            (r#"context.Subscription != null"#, Val::Bool(true)),
            (r#"context.Product == null"#, Val::Bool(true)),
            (r#"context.User == null"#, Val::Bool(true)),
            (
                r#"context.Product == null ? "no product" : context.Product.Name"#,
                s("no product"),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(run(text).as_ref(), Ok(want), "{text}");
        }
        let got = run(r#"context.Request.Headers.GetValueOrDefault("nope").ToLower()"#);
        assert_eq!(
            got,
            Err("a string method was called on a null value".to_string()),
            "without ?. a null target is an error, as in C#"
        );
    }

    /// Char literals (one-character strings here) and trimming given characters.
    #[test]
    fn char_literals_and_trimming_characters() {
        let cases: &[(&str, Val)] = &[
            (r#""/a/b/".TrimEnd('/')"#, s("/a/b")),
            (r#""/a/b/".TrimStart('/')"#, s("a/b/")),
            (r#""-x_-".Trim('-', '_')"#, s("x")),
            (r#""a,b".IndexOf(',')"#, Val::Int(1)),
            (r#""it's".Replace('\'', '"')"#, s("it\"s")),
            (r#"'\n' == "\n""#, Val::Bool(true)),
        ];
        for (text, want) in cases {
            assert_eq!(run(text).as_ref(), Ok(want), "{text}");
        }
        for (text, error) in [
            ("''", "empty char literal"),
            ("'ab'", "holds one character"),
            (r"'\q'", "unsupported escape"),
        ] {
            let got = run(text).expect_err(text);
            assert!(got.contains(error), "{text}: {got}");
        }
    }

    /// `Guid.NewGuid()`, `int.Parse`, `bool.Parse` and `Convert.To*`.
    #[test]
    fn guids_and_conversions() {
        let cases: &[(&str, Val)] = &[
            (r#"int.Parse(" 42 ") + 1"#, Val::Int(43)),
            (r#"long.Parse("-7")"#, Val::Int(-7)),
            (
                r#"Convert.ToInt32((string)context.Variables["s"]) + 1"#,
                Val::Int(8),
            ),
            (r#"Convert.ToInt32(null)"#, Val::Int(0)),
            (
                r#"bool.Parse("True") && Convert.ToBoolean("false") == false"#,
                Val::Bool(true),
            ),
            (r#"Convert.ToString(12) + Convert.ToString(null)"#, s("12")),
        ];
        for (text, want) in cases {
            assert_eq!(run(text).as_ref(), Ok(want), "{text}");
        }
        let hex = |c: char| c.is_ascii_hexdigit() && !c.is_ascii_uppercase();
        let Ok(Val::Str(d)) = run("Guid.NewGuid().ToString()") else {
            panic!("a guid")
        };
        let groups: Vec<&str> = d.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12],
            "{d}"
        );
        assert!(d.chars().all(|c| c == '-' || hex(c)), "{d}");
        assert_eq!(&groups[2][..1], "4", "version 4: {d}");
        let Ok(Val::Str(n)) = run(r#"Guid.NewGuid().ToString("N")"#) else {
            panic!("a guid")
        };
        assert!(n.len() == 32 && n.chars().all(hex), "{n}");
        assert_ne!(
            run("Guid.NewGuid().ToString()"),
            run("Guid.NewGuid().ToString()")
        );
        for (text, error) in [
            (r#"int.Parse("x")"#, "not in a correct format"),
            (r#"int.Parse(null)"#, "Value cannot be null"),
            (r#"bool.Parse("yes")"#, "not recognized as a valid Boolean"),
            (r#"Guid.NewGuid().ToString("X")"#, "a GUID's format"),
            (r#"Guid.Parse("x")"#, "Guid.Parse is not supported"),
        ] {
            let got = run(text).expect_err(text);
            assert!(got.contains(error), "{text}: {got}");
        }
    }

    /// `*`, `/` and `%` on ints, with C#'s precedence, truncation and errors.
    #[test]
    fn multiplicative_operators() {
        let cases: &[(&str, Val)] = &[
            ("2 + 3 * 4", Val::Int(14)),
            ("(2 + 3) * 4", Val::Int(20)),
            ("7 / 2", Val::Int(3)),
            ("-7 / 2", Val::Int(-3)),
            ("-7 % 3", Val::Int(-1)),
            ("10 - 4 / 2 * 3 % 4", Val::Int(8)),
            ("context.Response.StatusCode / 100 == 2", Val::Bool(true)),
        ];
        for (text, want) in cases {
            assert_eq!(run(text).as_ref(), Ok(want), "{text}");
        }
        assert_eq!(run("1 / 0"), Err("Attempted to divide by zero".to_string()));
        assert_eq!(run("1 % 0"), Err("Attempted to divide by zero".to_string()));
        assert!(run(r#""a" * 2"#).is_err());
    }

    #[test]
    fn evaluates_the_subset() {
        let cases: &[(&str, Val)] = &[
            (
                r#"context.Request.Headers.GetValueOrDefault("x-tier", "")"#,
                s("Gold"),
            ),
            (
                r#"context.Request.Headers.GetValueOrDefault("missing", "d")"#,
                s("d"),
            ),
            (
                r#"context.Request.Headers.GetValueOrDefault("missing")"#,
                Val::Null,
            ),
            (
                r#"context.Response.StatusCode == 200 && context.Request.Method != "POST""#,
                Val::Bool(true),
            ),
            (
                r#"context.Request.Headers.GetValueOrDefault("Authorization","").StartsWith("Bearer ")"#,
                Val::Bool(true),
            ),
            (
                r#"context.Request.Headers.GetValueOrDefault("x-tier","").ToLower() + "-" + context.Subscription.Id"#,
                s("gold-sub-1"),
            ),
            (r#"(string)context.Response.StatusCode"#, s("200")),
            (
                r#"(int)context.Variables["s"] + context.Variables.GetValueOrDefault<int>("n", 0)"#,
                Val::Int(10),
            ),
            (
                r#"context.Variables.ContainsKey("n") ? "yes" : "no""#,
                s("yes"),
            ),
            (
                r#"context.Variables.GetValueOrDefault<int>("none", 5) >= 5"#,
                Val::Bool(true),
            ),
            (r#"!(1 < 2) || "abc".Substring(1) == "bc""#, Val::Bool(true)),
            (r#""  a ".Trim().ToUpper().Length"#, Val::Int(1)),
            (
                r#"string.IsNullOrEmpty(context.Request.Headers.GetValueOrDefault("nope"))"#,
                Val::Bool(true),
            ),
            (
                r#"{ var t = context.Request.Headers.GetValueOrDefault("X-Tier",""); string u = t + "!"; return u.EndsWith("!"); }"#,
                Val::Bool(true),
            ),
            (r#""a<b" == "a<b" && 2 > 1"#, Val::Bool(true)),
            (r#"(bool)"True""#, Val::Bool(true)),
            (r#"context.Response.StatusCode.ToString()"#, s("200")),
        ];
        for (text, want) in cases {
            assert_eq!(run(text).as_ref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_what_is_not_in_the_subset_with_a_column() {
        let cases = [
            ("System.IO.File.ReadAllText(\"/etc/passwd\")", "expression error at column 1: 'System' is not supported here (known: context, literals, declared variables)"),
            ("context.Request.Body.As<string>()", "expression error at column 16: 'context.Request.Body' is not supported"),
            ("context.Request.Method.Split(\",\")", "expression error at column 23: member 'Split' is not supported"),
            ("context.Response.StatusCode.StartsWith(\"2\")", "expression error at column 28: 'StartsWith' needs a string"),
            ("1 +", "expression error at column 3: expected an expression"),
            ("\"open", "expression error at column 1: unterminated string"),
            ("a = 1", "expression error at column 1: 'a' is not supported here (known: context, literals, declared variables)"),
            ("context.Request", "expression error at column 1: 'context.Request' is not a value"),
            ("1 ; 2", "expression error at column 3: expected ';'"),
        ];
        for (text, want) in cases {
            let got = Expr::parse(text, false)
                .map(|_| ())
                .map_err(|e| e.to_string());
            // "1 ; 2" is an error either way; the message is what matters for the others
            if text == "1 ; 2" {
                assert!(got.is_err());
                continue;
            }
            assert_eq!(got, Err(want.to_string()), "{text}");
        }
        let loops = Expr::parse("for (;;) { } return 1;", true).unwrap_err();
        assert!(loops.message.contains("only declarations"), "{loops}");
    }

    #[test]
    fn runtime_errors_are_values_not_panics() {
        assert_eq!(
            run(r#"context.Variables["absent"]"#).unwrap_err(),
            "the given key was not present in the dictionary"
        );
        assert!(run(r#""abc".Substring(5)"#).is_err());
        assert!(run(r#"context.Request.Headers.GetValueOrDefault("nope").ToLower()"#).is_err());
        assert!(run(r#"(int)"x""#).is_err());
    }

    #[test]
    fn reads_request_is_tracked() {
        assert!(
            Expr::parse(
                r#"context.Request.Headers.GetValueOrDefault("a","")"#,
                false
            )
            .unwrap()
            .reads_request
        );
        assert!(
            !Expr::parse("context.Response.StatusCode == 200", false)
                .unwrap()
                .reads_request
        );
    }
}
