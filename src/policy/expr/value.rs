//! Values while an expression runs: C#'s scalars (strings borrowed from the request where
//! they can be), and its reference types as shared handles (JSON containers, lists,
//! dictionaries, StringBuilder), so that two names for one object see one object.
//! Conversions between values and JSON, C# equality and `ToString()` live here.
//! Must not touch: syntax, the request, evaluation order.

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

use super::datetime::Instant;
use super::json::{dotnet_double, Json};
use super::{err, EvalError};

/// A list of values: `T[]`, `List<T>` and what LINQ returns.
pub type List = Rc<RefCell<Vec<Val<'static>>>>;
/// A dictionary with string keys, in insertion order.
pub type Dict = Rc<RefCell<Vec<(String, Val<'static>)>>>;

#[derive(Debug, Clone, Default)]
pub enum Val<'a> {
    #[default]
    Null,
    Bool(bool),
    /// int and long.
    Int(i64),
    /// double, float and decimal.
    Double(f64),
    /// A string; a char is a string of one character.
    Str(Cow<'a, str>),
    /// A JObject or JArray (JSON scalars read from one become the values above).
    Json(Json),
    /// A JProperty: a name and its value.
    Prop(Rc<(String, Json)>),
    List(List),
    Dict(Dict),
    /// A StringBuilder.
    Builder(Rc<RefCell<String>>),
    /// A caught exception (`catch (Exception ex)`): its message.
    Error(Rc<super::exceptions::Exception>),
    /// `byte[]` (Encoding.UTF8.GetBytes, Convert.FromBase64String, hashes).
    Bytes(Rc<Vec<u8>>),
    /// An enum constant a method takes as an option (`StringComparison.OrdinalIgnoreCase`).
    Flag(Flag),
    /// A DateTime or DateTimeOffset.
    Date(Instant),
    /// A TimeSpan, in ticks.
    Span(i64),
    /// A Regex, a Match, its Groups or one Group.
    Re(Rc<super::regexes::Re>),
    /// A decoded JWT (`AsJwt()`, validate-jwt's output variable).
    Jwt(Rc<super::tokens::Jwt>),
    /// BasicAuthCredentials: user name and password.
    Basic(Rc<(String, String)>),
    /// A hash or HMAC object (`SHA256.Create()`, `new HMACSHA256(key)`).
    Hasher(Rc<super::hashes::Hasher>),
    /// An XDocument, XElement, XAttribute, XName or XNamespace.
    Xml(super::xml::Xv),
    /// A System.Uri.
    Uri(Rc<super::uri::Uri>),
    /// An IResponse: what a `send-request` received.
    Response(Rc<super::message::Message>),
    /// An X509Certificate2 (`context.Request.Certificate`).
    Cert(Rc<super::certs::Cert>),
    /// A System.Random: its generator's state.
    Random(Rc<std::cell::Cell<u64>>),
    /// One group of `GroupBy`: its key and its elements.
    Group(Rc<(Val<'static>, Vec<Val<'static>>)>),
}

/// The enum constants methods take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// StringComparison: Ordinal, InvariantCulture, CurrentCulture.
    Ordinal,
    /// StringComparison: OrdinalIgnoreCase and the culture ones.
    IgnoreCase,
    /// StringSplitOptions.None.
    SplitNone,
    RemoveEmptyEntries,
    TrimEntries,
    /// Formatting.None / Formatting.Indented.
    Compact,
    Indented,
    /// SaveOptions.None / SaveOptions.DisableFormatting (XML's ToString).
    SaveIndented,
    DisableFormatting,
    /// UriKind.Absolute / Relative / RelativeOrAbsolute.
    UriAbsolute,
    UriRelative,
    UriAny,
    /// MidpointRounding: ToEven, AwayFromZero, ToZero, ToNegativeInfinity,
    /// ToPositiveInfinity.
    ToEven,
    AwayFromZero,
    ToZero,
    ToNegativeInfinity,
    ToPositiveInfinity,
}

impl PartialEq for Val<'_> {
    /// C#'s `==`: values for scalars (an int equals the same double), the same object for
    /// reference types.
    fn eq(&self, other: &Val) -> bool {
        match (self, other) {
            (Val::Null, Val::Null) => true,
            (Val::Bool(a), Val::Bool(b)) => a == b,
            (Val::Int(a), Val::Int(b)) => a == b,
            (Val::Double(a), Val::Double(b)) => a == b,
            (Val::Int(a), Val::Double(b)) | (Val::Double(b), Val::Int(a)) => (*a as f64) == *b,
            (Val::Str(a), Val::Str(b)) => a == b,
            (Val::Json(Json::Array(a)), Val::Json(Json::Array(b))) => Rc::ptr_eq(a, b),
            (Val::Json(Json::Object(a)), Val::Json(Json::Object(b))) => Rc::ptr_eq(a, b),
            (Val::Prop(a), Val::Prop(b)) => Rc::ptr_eq(a, b),
            (Val::List(a), Val::List(b)) => Rc::ptr_eq(a, b),
            (Val::Dict(a), Val::Dict(b)) => Rc::ptr_eq(a, b),
            (Val::Builder(a), Val::Builder(b)) => Rc::ptr_eq(a, b),
            (Val::Bytes(a), Val::Bytes(b)) => Rc::ptr_eq(a, b),
            (Val::Error(a), Val::Error(b)) => Rc::ptr_eq(a, b),
            (Val::Flag(a), Val::Flag(b)) => a == b,
            (Val::Date(a), Val::Date(b)) => a.utc_ticks() == b.utc_ticks(),
            (Val::Span(a), Val::Span(b)) => a == b,
            (Val::Re(a), Val::Re(b)) => Rc::ptr_eq(a, b),
            (Val::Jwt(a), Val::Jwt(b)) => Rc::ptr_eq(a, b),
            (Val::Basic(a), Val::Basic(b)) => Rc::ptr_eq(a, b),
            (Val::Hasher(a), Val::Hasher(b)) => Rc::ptr_eq(a, b),
            (Val::Xml(a), Val::Xml(b)) => a.same(b),
            (Val::Uri(a), Val::Uri(b)) => a.text() == b.text(),
            (Val::Response(a), Val::Response(b)) => Rc::ptr_eq(a, b),
            (Val::Cert(a), Val::Cert(b)) => a.presented.cert.der == b.presented.cert.der,
            // an XName equals the string it converts from
            (Val::Xml(super::xml::Xv::Name(n)), Val::Str(s))
            | (Val::Str(s), Val::Xml(super::xml::Xv::Name(n))) => {
                super::xml::XName::parse(s).is_ok_and(|o| o == *n)
            }
            _ => false,
        }
    }
}

impl<'a> Val<'a> {
    pub fn str(s: impl Into<Cow<'a, str>>) -> Val<'a> {
        Val::Str(s.into())
    }

    /// A UTC DateTime at `ms` milliseconds since 1970 (`context.Timestamp`).
    pub fn utc_ms(ms: u64) -> Val<'static> {
        match Instant::from_unix_ms(ms.min(i64::MAX as u64) as i64, super::datetime::Kind::Utc) {
            Ok(t) => Val::Date(t),
            Err(_) => Val::Null,
        }
    }

    /// A list of strings (`context.Api.Protocols`).
    pub fn list_of(items: Vec<&str>) -> Val<'static> {
        list(
            items
                .into_iter()
                .map(|s| Val::Str(Cow::Owned(s.to_string())))
                .collect(),
        )
    }

    /// A System.Uri of `text` (`context.Api.ServiceUrl`); the text itself if it is not
    /// an absolute URI.
    pub fn uri(text: String) -> Val<'static> {
        match super::uri::Uri::parse(&text) {
            Ok(u) => Val::Uri(Rc::new(u)),
            Err(_) => Val::Str(Cow::Owned(text)),
        }
    }

    /// A list of values (`context.User.Groups`).
    pub fn list_from(items: Vec<Val<'static>>) -> Val<'static> {
        list(items)
    }

    /// A record whose fields read as members (`g.Id`, `g.Name`): an IGroup, an IUser.
    pub fn record(fields: Vec<(&str, Val<'static>)>) -> Val<'static> {
        Val::Dict(Rc::new(RefCell::new(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )))
    }

    /// A TimeSpan of `ms` milliseconds (`context.Elapsed`).
    pub fn span_ms(ms: i64) -> Val<'static> {
        Val::Span(ms.saturating_mul(super::datetime::TICKS_PER_MS))
    }

    pub fn into_owned(self) -> Val<'static> {
        match self {
            Val::Null => Val::Null,
            Val::Bool(b) => Val::Bool(b),
            Val::Int(i) => Val::Int(i),
            Val::Double(d) => Val::Double(d),
            Val::Str(s) => Val::Str(Cow::Owned(s.into_owned())),
            Val::Json(j) => Val::Json(j),
            Val::Prop(p) => Val::Prop(p),
            Val::List(l) => Val::List(l),
            Val::Dict(d) => Val::Dict(d),
            Val::Builder(b) => Val::Builder(b),
            Val::Error(e) => Val::Error(e),
            Val::Bytes(b) => Val::Bytes(b),
            Val::Flag(f) => Val::Flag(f),
            Val::Date(t) => Val::Date(t),
            Val::Span(s) => Val::Span(s),
            Val::Re(r) => Val::Re(r),
            Val::Jwt(j) => Val::Jwt(j),
            Val::Basic(b) => Val::Basic(b),
            Val::Hasher(h) => Val::Hasher(h),
            Val::Xml(x) => Val::Xml(x),
            Val::Uri(u) => Val::Uri(u),
            Val::Response(m) => Val::Response(m),
            Val::Cert(c) => Val::Cert(c),
            Val::Random(r) => Val::Random(r),
            Val::Group(g) => Val::Group(g),
        }
    }

    pub fn borrowed(&self) -> Val<'_> {
        match self {
            Val::Str(s) => Val::Str(Cow::Borrowed(s)),
            other => other.clone(),
        }
    }

    /// The value as text, the way C#'s `ToString()` prints it (`True`/`False` for bools,
    /// JSON indented, a StringBuilder's content).
    pub fn to_text(&self) -> Cow<'_, str> {
        match self {
            Val::Null => Cow::Borrowed(""),
            Val::Bool(true) => Cow::Borrowed("True"),
            Val::Bool(false) => Cow::Borrowed("False"),
            Val::Int(i) => Cow::Owned(i.to_string()),
            Val::Double(d) => Cow::Owned(dotnet_double(*d)),
            Val::Str(s) => Cow::Borrowed(s),
            // past the writer's depth limit there is nothing sensible to print
            Val::Json(j) => Cow::Owned(j.print(true).unwrap_or_default()),
            Val::Prop(p) => Cow::Owned(prop_text(p, true)),
            Val::List(_) => Cow::Borrowed("System.Collections.Generic.List`1[System.Object]"),
            Val::Dict(_) => Cow::Borrowed(
                "System.Collections.Generic.Dictionary`2[System.String,System.Object]",
            ),
            Val::Builder(b) => Cow::Owned(b.borrow().clone()),
            Val::Error(e) => Cow::Owned(super::exceptions::text(e)),
            Val::Bytes(_) => Cow::Borrowed("System.Byte[]"),
            Val::Flag(f) => Cow::Owned(format!("{f:?}")),
            Val::Date(t) => Cow::Owned(super::datetime::format(t, None).unwrap_or_default()),
            Val::Span(s) => Cow::Owned(super::datetime::span_text(*s)),
            Val::Re(r) => Cow::Owned(r.text()),
            Val::Jwt(j) => Cow::Borrowed(&j.raw),
            Val::Basic(_) => Cow::Borrowed("BasicAuthCredentials"),
            Val::Hasher(_) => Cow::Borrowed("System.Security.Cryptography.HashAlgorithm"),
            Val::Xml(x) => Cow::Owned(x.text()),
            Val::Uri(u) => Cow::Owned(u.text()),
            Val::Random(_) => Cow::Borrowed("System.Random"),
            Val::Cert(c) => Cow::Owned(c.presented.cert.subject.clone()),
            Val::Group(_) => Cow::Borrowed("System.Linq.Grouping"),
            Val::Response(_) => Cow::Borrowed(
                "Microsoft.WindowsAzure.ApiManagement.Proxy.Gateway.Policies.IResponse",
            ),
        }
    }

    pub fn truthy(&self) -> Result<bool, EvalError> {
        match self {
            Val::Bool(b) => Ok(*b),
            _ => Err(err("a condition did not evaluate to a bool")),
        }
    }

    /// The C# type's name, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Bool(_) => "bool",
            Val::Int(_) => "long",
            Val::Double(_) => "double",
            Val::Str(_) => "string",
            Val::Json(Json::Array(_)) => "JArray",
            Val::Json(_) => "JObject",
            Val::Prop(_) => "JProperty",
            Val::List(_) => "List",
            Val::Dict(_) => "Dictionary",
            Val::Builder(_) => "StringBuilder",
            Val::Error(e) => e.kind,
            Val::Bytes(_) => "byte[]",
            Val::Flag(_) => "enum",
            Val::Date(t) if t.offset.is_some() => "DateTimeOffset",
            Val::Date(_) => "DateTime",
            Val::Span(_) => "TimeSpan",
            Val::Re(_) => "Regex",
            Val::Jwt(_) => "Jwt",
            Val::Basic(_) => "BasicAuthCredentials",
            Val::Hasher(_) => "HashAlgorithm",
            Val::Xml(x) => x.type_name(),
            Val::Uri(_) => "Uri",
            Val::Response(_) => "IResponse",
            Val::Cert(_) => "X509Certificate2",
            Val::Random(_) => "Random",
            Val::Group(_) => "IGrouping",
        }
    }

    /// The elements when this is something a `foreach` or LINQ walks: a list, a JSON
    /// array (its items), a JSON object (its properties), a dictionary (its entries as
    /// JProperty-like pairs) or a string (its characters).
    pub fn items(&self) -> Result<Vec<Val<'static>>, EvalError> {
        if let Val::Json(j) = self {
            j.open_children();
        }
        Ok(match self {
            Val::List(l) => l.borrow().clone(),
            Val::Json(Json::Array(a)) => a.borrow().iter().map(from_json).collect(),
            Val::Json(Json::Object(o)) => o
                .borrow()
                .iter()
                .map(|(k, v)| Val::Prop(Rc::new((k.clone(), v.clone()))))
                .collect(),
            Val::Dict(d) => d
                .borrow()
                .iter()
                .map(|(k, v)| Val::Prop(Rc::new((k.clone(), to_json(v).unwrap_or(Json::Null)))))
                .collect(),
            Val::Str(s) => s
                .chars()
                .map(|c| Val::Str(Cow::Owned(c.to_string())))
                .collect(),
            Val::Bytes(b) => b.iter().map(|x| Val::Int(i64::from(*x))).collect(),
            Val::Group(g) => g.1.clone(),
            Val::Null => return Err(err("Value cannot be null (source)")),
            _ => return Err(err("the value is not a collection")),
        })
    }
}

pub fn prop_text(p: &(String, Json), indented: bool) -> String {
    let mut out = String::new();
    super::json::push_string(&mut out, &p.0);
    out.push_str(if indented { ": " } else { ":" });
    out.push_str(&p.1.print(indented).unwrap_or_default());
    out
}

pub fn list(items: Vec<Val<'static>>) -> Val<'static> {
    Val::List(Rc::new(RefCell::new(items)))
}

/// A JSON token as a value: scalars become C# values, containers stay shared.
pub fn from_json(j: &Json) -> Val<'static> {
    match j {
        Json::Null => Val::Null,
        Json::Bool(b) => Val::Bool(*b),
        Json::Int(i) => Val::Int(*i),
        Json::Float(f) => Val::Double(*f),
        Json::Str(s) => Val::Str(Cow::Owned(s.clone())),
        // only reached for a token no container handed out (they open children in
        // place first): a detached copy
        Json::Raw(r) => Val::Json(super::lazy::open(r)),
        other => Val::Json(other.clone()),
    }
}

/// A value as a JSON token (`new JValue(x)`, `obj["a"] = x`, `JArray.Add(x)`,
/// `JsonConvert.SerializeObject`): lists and dictionaries become new JSON containers.
pub fn to_json(v: &Val) -> Result<Json, EvalError> {
    to_json_at(v, 0)
}

fn to_json_at(v: &Val, depth: usize) -> Result<Json, EvalError> {
    if depth > 4 * super::json::MAX_DEPTH {
        return Err(err("a value nested too deeply for JSON"));
    }
    let item = |v: &Val| to_json_at(v, depth + 1);
    Ok(match v {
        Val::Null => Json::Null,
        Val::Bool(b) => Json::Bool(*b),
        Val::Int(i) => Json::Int(*i),
        Val::Double(d) => Json::Float(*d),
        Val::Str(s) => Json::Str(s.to_string()),
        Val::Json(j) => j.clone(),
        Val::Prop(p) => Json::Object(Rc::new(RefCell::new(vec![(p.0.clone(), p.1.clone())]))),
        Val::List(l) => {
            Json::new_array(l.borrow().iter().map(item).collect::<Result<Vec<_>, _>>()?)
        }
        Val::Dict(d) => Json::Object(Rc::new(RefCell::new(
            d.borrow()
                .iter()
                .map(|(k, v)| Ok((k.clone(), item(v)?)))
                .collect::<Result<Vec<_>, EvalError>>()?,
        ))),
        Val::Builder(b) => Json::Str(b.borrow().clone()),
        Val::Error(e) => Json::Str(e.message.clone()),
        // as Newtonsoft writes a byte[]
        Val::Bytes(b) => Json::Str(super::format::base64(b)),
        Val::Flag(f) => Json::Str(format!("{f:?}")),
        // as Newtonsoft writes dates: ISO 8601, fraction digits only as needed
        Val::Date(t) => Json::Str(super::datetime::format(
            t,
            Some("yyyy'-'MM'-'dd'T'HH':'mm':'ss.FFFFFFFK"),
        )?),
        Val::Span(s) => Json::Str(super::datetime::span_text(*s)),
        Val::Re(r) => Json::Str(r.text()),
        Val::Jwt(j) => Json::Str(j.raw.clone()),
        Val::Basic(b) => Json::Str(b.0.clone()),
        Val::Hasher(_) | Val::Random(_) | Val::Response(_) => Json::Null,
        Val::Cert(c) => Json::Str(c.presented.cert.subject.clone()),
        Val::Group(g) => Json::new_array(g.1.iter().map(item).collect::<Result<Vec<_>, _>>()?),
        Val::Xml(x) => Json::Str(x.text()),
        Val::Uri(u) => Json::Str(u.text()),
    })
}
