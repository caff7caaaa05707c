//! Policy expressions: Azure API Management's C# expression language, as far as a
//! request can use it (`@(...)` expressions and `@{ ... }` statement blocks). Text is
//! compiled once per config apply into a tree whose names are already resolved:
//! `context.*` members to `Field`s and `Lookup`s, locals to numbered slots, members and
//! static functions to enums, and every unknown name, member or type is a load-time
//! error with its column. A request only walks the tree.
//!
//! Evaluation (eval.rs) runs on the event loop, so it is bounded: every node, loop turn
//! and element a LINQ method visits costs a step, every string, list or JSON value it
//! builds costs its bytes, and both come out of a per-request `Budget`; running out is an
//! error that no `catch` can swallow. Reading a header borrows from the request and
//! allocates nothing.
//!
//! Modules: lex (text to tokens), parse (expressions), stmt (statements), value (the
//! values), json (JObject/JArray), eval (the walk), members (instance members), statics
//! (static members and `new`), linq (Enumerable), format (number formats), xml
//! (System.Xml.Linq).
//! Must not touch: sockets, the config JSON, the policy XML.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

pub mod certs;
pub mod ciphers;
mod collections;
mod dates;
mod datetime;
mod eval;
mod exceptions;
mod format;
mod hashes;
mod json;
mod jsonpath;
mod lazy;
mod lex;
mod linq;
pub mod liquid;
mod members;
pub mod message;
mod numbers;
mod parse;
mod regexes;
mod statics;
mod stmt;
mod tokens;
mod types;
mod uri;
mod value;
mod xml;
mod zones;

pub use json::{dotnet_double, Json};

/// JSON text parsed (checked whole, containers opened as they are read: validate-
/// content's body), or the parser's message (Newtonsoft's wording).
pub fn parse_json(text: &str) -> Result<Json, String> {
    json::parse(text).map_err(|e| e.message().to_string())
}
pub use tokens::jwt_value;

/// JSON text parsed into a whole tree, as `JToken.Parse` reads it (json-to-xml).
pub fn parse_json_tree(text: &str) -> Result<Json, EvalError> {
    json::parse_eager(text)
}
/// JSON text parsed as a body's `As<JObject>()` reads it: plain JSON lazily (nested
/// containers opened when read), anything else whole. Prints as the whole tree would.
pub fn parse_json_body(text: &str) -> Result<Json, EvalError> {
    json::parse(text)
}
/// `parse_json_body` of a body's bytes, as `As<JObject>()` reads them: `None` when they
/// are not UTF-8.
pub fn parse_json_body_bytes(bytes: &[u8]) -> Option<Result<Json, EvalError>> {
    json::parse_utf8(bytes)
}
pub use value::Val;

use lex::{is_keyword, lex, Part, Tok};
use members::M;
use parse::Parser;
use statics::{NewKind, S};

/// A failure while evaluating (APIM: ExpressionValueEvaluationFailure): the message
/// `context.LastError.Message` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError(pub Cow<'static, str>);

/// An error with a fixed message.
pub const fn err(message: &'static str) -> EvalError {
    EvalError(Cow::Borrowed(message))
}

impl EvalError {
    pub fn message(&self) -> &str {
        &self.0
    }
    /// A budget ran out: no `catch` may swallow it.
    fn is_budget(&self) -> bool {
        *self == BUDGET_STEPS || *self == BUDGET_MEMORY
    }
}

pub const BUDGET_STEPS: EvalError =
    err("the expression ran out of its step budget (limits.expressions.steps.max)");
pub const BUDGET_MEMORY: EvalError =
    err("the expression ran out of its memory budget (limits.expressions.memory.max)");
pub const NULL_REFERENCE: EvalError = err("Object reference not set to an instance of an object");

/// What expressions may still spend during one request: steps (nodes, loop turns,
/// elements visited) and bytes (strings, lists and JSON built). Shared by every
/// expression of the request.
#[derive(Debug, Clone)]
pub struct Budget {
    pub steps: Cell<u64>,
    pub bytes: Cell<u64>,
}

/// The budget when no setting gives one (the settings' defaults).
pub const DEFAULT_STEPS: u64 = crate::settings::EXPRESSION_STEPS_DEFAULT;
pub const DEFAULT_BYTES: u64 = crate::settings::EXPRESSION_MEMORY_DEFAULT;

impl Budget {
    pub fn new(steps: u64, bytes: u64) -> Budget {
        Budget {
            steps: Cell::new(steps),
            bytes: Cell::new(bytes),
        }
    }
}

impl Default for Budget {
    fn default() -> Budget {
        Budget::new(DEFAULT_STEPS, DEFAULT_BYTES)
    }
}

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
    /// `context.Response` as a value: null before the backend answered.
    ResponseObject,
    /// `context.Request.Body` as a value (`!= null`): null when the request has none.
    RequestBodyObject,
    ProductObject,
    ResponseStatus,
    ResponseReason,
    SubscriptionId,
    SubscriptionKey,
    SubscriptionName,
    ApiId,
    ApiName,
    ApiPath,
    /// `context.Api.ServiceUrl` (the backend's URL), `.Protocols` (a list),
    /// `.SubscriptionKeyParameterNames.Header` / `.Query`, and `.Version`, `.Revision`,
    /// `.IsCurrentRevision` (edgegate has no versions or revisions: null, "1", true).
    ApiServiceUrl,
    ApiProtocols,
    ApiKeyHeaderName,
    ApiKeyQueryName,
    ApiVersion,
    ApiRevision,
    ApiIsCurrentRevision,
    OperationName,
    /// `context.Product.State` ("published" / "notPublished"), `.SubscriptionRequired`,
    /// `.ApprovalRequired` (false), `.SubscriptionLimit` (null), `.Groups` (a list).
    ProductState,
    ProductSubscriptionRequired,
    ProductApprovalRequired,
    ProductSubscriptionLimit,
    ProductGroups,
    /// `context.Subscription.CreatedDate` / `StartDate` / `EndDate`: not recorded (null).
    SubscriptionDate,
    /// `context.Deployment.Region` / `ServiceName` / `ServiceId`.
    DeploymentRegion,
    DeploymentServiceName,
    DeploymentServiceId,
    /// `context.Request.Certificate`: the TLS client's certificate, or null.
    RequestCertificate,
    /// `context.Tracing`: false.
    Tracing,
    /// `context.User` (null for a call without a subscription that belongs to a user)
    /// and its members; `Groups` and `Identities` are lists of records (`g.Id`,
    /// `g.Name`; `i.Provider`, `i.Id`).
    UserObject,
    UserId,
    UserEmail,
    UserFirstName,
    UserLastName,
    UserNote,
    UserRegistrationDate,
    UserGroups,
    UserIdentities,
    /// `context.Subscription.PrimaryKey` / `SecondaryKey`.
    SubscriptionPrimaryKey,
    SubscriptionSecondaryKey,
    OperationId,
    OperationMethod,
    OperationTemplate,
    ProductId,
    ProductName,
    RequestId,
    /// `context.Timestamp`: when the gateway received the request (UTC).
    Timestamp,
    /// `context.Elapsed`: the time since then.
    Elapsed,
    GatewayId,
    LastErrorSource,
    LastErrorReason,
    LastErrorMessage,
    LastErrorScope,
    LastErrorSection,
    LastErrorPolicyId,
    LastErrorPath,
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
    /// Every entry of a collection, in order (`foreach` over headers, `.Count`, LINQ).
    fn entries(&self, _lookup: Lookup) -> Vec<(String, Val<'_>)> {
        Vec::new()
    }
    /// The request's (or response's) body when the gateway read it whole; an empty
    /// slice once it was consumed.
    fn body(&self, _response: bool) -> Option<&[u8]> {
        None
    }
    /// `As<T>()` without `preserveContent`: later readers see no body.
    fn consume_body(&self, _response: bool) {}
    /// `context.Trace(message)` (the gateway keeps it with the call's traces).
    fn trace(&self, _message: &str) {}
    /// The request's budget (`None`: a fresh default budget per evaluation).
    fn budget(&self) -> Option<&Budget> {
        None
    }
    /// Now, in milliseconds since 1970 (`DateTime.UtcNow`); the gateway passes the
    /// loop's clock.
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// The static type of a value where the compiler knows it (`Any` where it does not:
/// then the member is looked up on the value's type when it runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Any,
    Str,
    Int,
    Double,
    Bool,
    JObject,
    JArray,
    /// JToken / JValue: any JSON.
    JToken,
    JProperty,
    /// Arrays, `List<T>`, `IEnumerable<T>`.
    List,
    /// `Dictionary<string, T>`.
    Dict,
    Builder,
    /// `byte[]`.
    Bytes,
    /// DateTime and DateTimeOffset.
    Date,
    /// TimeSpan.
    Span,
    /// APIM's Jwt and BasicAuthCredentials.
    Jwt,
    Basic,
    /// System.Xml.Linq: XDocument, XElement, XAttribute, XName, XNamespace.
    XDoc,
    XElem,
    XAttr,
    XName,
    XNs,
    Uri,
    /// APIM's IResponse (a send-request's response).
    Response,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinOp {
    Shl,
    Shr,
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
    /// `|`, `&`, `^`: bitwise on ints (RegexOptions), logical without short-circuit on
    /// bools.
    BitOr,
    BitAnd,
    BitXor,
}

/// One node of a compiled expression.
#[derive(Debug, Clone)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(String),
    /// An enum constant (`StringComparison.OrdinalIgnoreCase`).
    Flag(value::Flag),
    /// A regular expression written as a literal, compiled at load.
    Regex(regex::Regex),
    Field(Field),
    /// lookup, name, default (GetValueOrDefault), required (indexer: missing = error),
    /// and the `<T>` cast of `GetValueOrDefault<T>`.
    Lookup {
        lookup: Lookup,
        name: Box<Node>,
        default: Option<Box<Node>>,
        required: bool,
        cast: Option<Ty>,
    },
    ContainsKey(Lookup, Box<Node>),
    /// A context collection as a value (`context.Request.Headers`): its entries.
    Entries(Lookup),
    /// `context.Request.Body.As<T>(preserveContent)` (`response`: context.Response).
    Body {
        response: bool,
        ty: Ty,
        preserve: Box<Node>,
    },
    /// StatusCode, StatusReason or Headers of an IResponse (`safe`: `?.`).
    Message(Box<Node>, message::Part, bool),
    /// `response.Body.As<T>(preserveContent)` of an IResponse.
    MessageBody {
        target: Box<Node>,
        ty: Ty,
        preserve: Box<Node>,
        safe: bool,
    },
    Local(usize),
    Not(Box<Node>),
    Neg(Box<Node>),
    Bin(BinOp, Box<Node>, Box<Node>),
    Cond(Box<Node>, Box<Node>, Box<Node>),
    /// `(T)x`: a checked conversion.
    Cast(Ty, Box<Node>),
    /// `x as T`: null when it is not one.
    As(Ty, Box<Node>),
    /// `x is T`.
    Is(Ty, Box<Node>),
    /// `x is T name`: true, and `name` (a slot) holds `x`, when `x` is a `T`.
    IsBind(usize, Ty, Box<Node>),
    /// A member of a value: `x.M(args)`, `x.P`, `x?.M(...)` (`safe`: null when x is).
    Call {
        target: Box<Node>,
        member: M,
        args: Vec<Node>,
        generic: Option<Ty>,
        safe: bool,
    },
    /// `x[key]`.
    Index {
        target: Box<Node>,
        key: Box<Node>,
        safe: bool,
    },
    /// A static member: `string.Join(...)`, `JObject.Parse(...)`, `Math.Max(...)`.
    Static(S, Vec<Node>, Option<Ty>),
    /// `new T(args) { items }`.
    New(NewKind, Vec<Node>, Vec<Node>),
    /// `new { a = 1, b }`: serialises as a JSON object.
    Anonymous(Vec<(String, Node)>),
    /// `params => body`: only as an argument of a LINQ method.
    Lambda(Vec<usize>, Box<Node>),
    /// A call of a local function declared in the block: its arguments.
    Invoke(std::sync::Arc<LocalFn>, Vec<Node>),
    /// `out var x` / `out x`: the slot the method writes.
    Out(usize),
    /// `a ?? b`.
    Coalesce(Box<Node>, Box<Node>),
    /// `$"..."`: the parts' texts joined (null prints as nothing, bools as True/False).
    Interp(Vec<Node>),
}

/// A local function of a `@{ ... }` block (`bool Allowed(string ip) { … }`): the slots
/// of its parameters and its body. It sees the block's variables; it cannot call itself.
#[derive(Debug)]
struct LocalFn {
    params: Vec<usize>,
    body: Vec<Stmt>,
}

/// Where an assignment writes.
#[derive(Debug, Clone)]
enum Place {
    Local(usize),
    /// `x[key] = v` (a JSON object or array, a list, a dictionary).
    Index(Node, Node),
    /// `x.Member = v` (JProperty.Value).
    Member(Node, M),
}

/// One statement of a `@{ ... }` block.
#[derive(Debug, Clone)]
enum Stmt {
    Assign(Place, Node),
    /// A call for its effect (`list.Add(x);`).
    Eval(Node),
    If(Node, Vec<Stmt>, Vec<Stmt>),
    /// `while`, `for` (its step runs after each turn and after `continue`) and
    /// `do ... while` (`test_first` false).
    Loop {
        cond: Option<Node>,
        body: Vec<Stmt>,
        step: Vec<Stmt>,
        test_first: bool,
    },
    Foreach(usize, Node, Vec<Stmt>),
    Break,
    Continue,
    Return(Node),
    /// `try { } catch (T e) { } … finally { }`: each catch with the type it takes
    /// (None: all) and the slot that holds the exception.
    Try {
        body: Vec<Stmt>,
        catches: Vec<(Option<&'static str>, usize, Vec<Stmt>)>,
        finally: Vec<Stmt>,
    },
    Throw(Node),
    Block(Vec<Stmt>),
}

#[derive(Debug, Clone)]
enum Code {
    Value(Node),
    Block(Vec<Stmt>),
}

/// A compiled expression: `@(...)` or a `@{ ... }` block.
#[derive(Debug, Clone)]
pub struct Expr {
    code: Code,
    /// How many local slots it needs (declarations, loop and lambda variables).
    slots: usize,
    /// Its result type where known.
    ty: Ty,
    /// What it reads, so the gateway keeps only what later sections need.
    pub reads_request: bool,
    /// It reads `context.Request.Body` / `context.Response.Body`: the gateway reads
    /// that body whole first.
    pub reads_request_body: bool,
    pub reads_response_body: bool,
}

/// Most nodes one expression may have, and how deep it may nest (bounds recursion).
const MAX_NODES: usize = 4096;
const MAX_DEPTH: usize = 48;
/// Most local slots of one expression.
const MAX_SLOTS: usize = 256;

impl Expr {
    /// Compiles the text between `@(` and `)` (`block = false`) or `@{` and `}`.
    pub fn parse(text: &str, block: bool) -> Result<Expr, ParseError> {
        let mut p = Parser::new(lex(text)?);
        let code = if block {
            let stmts = p.block_body()?;
            if !stmt::returns(&stmts) {
                return Err(p.err_at(
                    text.len().saturating_sub(1),
                    "not all code paths return a value (a block ends with 'return <expression>;')",
                ));
            }
            Code::Block(stmts)
        } else {
            let e = p.expr()?;
            if p.pos < p.tokens.len() {
                return Err(p.err_at(p.offset(), "unexpected text after the expression"));
            }
            Code::Value(e)
        };
        let ty = match &code {
            Code::Value(n) => p.ty_of(n),
            Code::Block(_) => p.return_ty.unwrap_or(Ty::Any),
        };
        Ok(Expr {
            code,
            slots: p.slot_count,
            ty,
            reads_request: p.reads_request,
            reads_request_body: p.reads_body[0],
            reads_response_body: p.reads_body[1],
        })
    }

    /// The static type of the result, where known.
    pub fn ty(&self) -> Ty {
        self.ty
    }

    pub fn eval<'e>(&'e self, env: &'e dyn Env) -> Result<Val<'e>, EvalError> {
        eval::run(self, env)
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

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_library;
