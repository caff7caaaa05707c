//! Static names at load time: what the compiler knows about a node's type (`ty_of`),
//! the types member and static calls return, the C# type names the language accepts
//! (`type_named`) and the `context` paths that name a value (`field_of`). Used to refuse
//! a member a value cannot have, and to tell a bool condition from a string.
//! Must not touch: evaluation, syntax.

use super::parse::Parser;
use super::*;

impl Parser {
    /// The static type of a node, where the compiler knows it.
    pub(super) fn ty_of(&self, n: &Node) -> Ty {
        match n {
            Node::Bool(_)
            | Node::Not(_)
            | Node::ContainsKey(..)
            | Node::Is(..)
            | Node::IsBind(..) => Ty::Bool,
            Node::Int(_) => Ty::Int,
            Node::Double(_) => Ty::Double,
            Node::Str(_) | Node::Interp(_) => Ty::Str,
            Node::Field(f) => match f {
                Field::ResponseStatus | Field::RequestPort => Ty::Int,
                Field::Timestamp => Ty::Date,
                Field::ApiProtocols
                | Field::ProductGroups
                | Field::UserGroups
                | Field::UserIdentities => Ty::List,
                Field::ApiIsCurrentRevision
                | Field::ProductSubscriptionRequired
                | Field::ProductApprovalRequired
                | Field::Tracing => Ty::Bool,
                Field::SubscriptionDate
                | Field::ApiVersion
                | Field::ProductSubscriptionLimit
                | Field::RequestCertificate
                | Field::UserObject
                | Field::UserRegistrationDate => Ty::Any,
                Field::Elapsed => Ty::Span,
                Field::ApiServiceUrl => Ty::Uri,
                Field::SubscriptionObject
                | Field::ProductObject
                | Field::ResponseObject
                | Field::RequestBodyObject => Ty::Any,
                _ => Ty::Str,
            },
            Node::Lookup { lookup, cast, .. } => match (lookup, cast) {
                (_, Some(t)) => *t,
                (Lookup::Variable, None) => Ty::Any,
                _ => Ty::Str,
            },
            Node::Local(i) => self.slot_types.get(*i).copied().unwrap_or(Ty::Any),
            Node::Bin(op, a, b) => match op {
                BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => {
                    match (self.ty_of(a), self.ty_of(b)) {
                        (Ty::Str, _) | (_, Ty::Str) if *op == BinOp::Add => Ty::Str,
                        (Ty::Int, Ty::Int) => Ty::Int,
                        (Ty::Double, Ty::Int | Ty::Double) | (Ty::Int, Ty::Double) => Ty::Double,
                        _ => Ty::Any,
                    }
                }
                BinOp::Shl | BinOp::Shr => Ty::Int,
                BinOp::BitOr | BinOp::BitAnd | BinOp::BitXor => {
                    match (self.ty_of(a), self.ty_of(b)) {
                        (Ty::Int, Ty::Int) => Ty::Int,
                        (Ty::Bool, Ty::Bool) => Ty::Bool,
                        _ => Ty::Any,
                    }
                }
                _ => Ty::Bool,
            },
            Node::Cond(_, a, b) | Node::Coalesce(a, b) => {
                let (x, y) = (self.ty_of(a), self.ty_of(b));
                if x == y || matches!(**b, Node::Null) {
                    x
                } else {
                    Ty::Any
                }
            }
            Node::Neg(a) => self.ty_of(a),
            Node::Cast(t, _) | Node::As(t, _) => *t,
            Node::Body { ty, .. } | Node::MessageBody { ty, .. } => *ty,
            Node::Message(_, part, _) => match part {
                super::message::Part::StatusCode => Ty::Int,
                super::message::Part::StatusReason => Ty::Str,
                super::message::Part::Headers => Ty::Dict,
            },
            Node::Entries(_) | Node::Anonymous(_) => Ty::Dict,
            Node::New(kind, ..) => match kind {
                statics::NewKind::JObject => Ty::JObject,
                statics::NewKind::JArray => Ty::JArray,
                statics::NewKind::JProperty => Ty::JProperty,
                statics::NewKind::List | statics::NewKind::Array => Ty::List,
                statics::NewKind::Dict => Ty::Dict,
                statics::NewKind::Builder => Ty::Builder,
                statics::NewKind::DateTime | statics::NewKind::DateTimeOffset => Ty::Date,
                statics::NewKind::TimeSpan => Ty::Span,
                statics::NewKind::XElement => Ty::XElem,
                statics::NewKind::XAttribute => Ty::XAttr,
                statics::NewKind::XDocument => Ty::XDoc,
                statics::NewKind::Uri => Ty::Uri,
                statics::NewKind::Str | statics::NewKind::Guid => Ty::Str,
                _ => Ty::Any,
            },
            Node::Static(f, _, generic) => statics_ty(*f, *generic),
            Node::Call { target, member, .. } => member_ty(*member, self.ty_of(target)),
            _ => Ty::Any,
        }
    }
}

fn statics_ty(f: statics::S, generic: Option<Ty>) -> Ty {
    use statics::S;
    match f {
        S::IsNullOrEmpty
        | S::IsNullOrWhiteSpace
        | S::StrEquals
        | S::TryParseInt
        | S::TryParseDouble
        | S::TryParseBool => Ty::Bool,
        S::IsDigit
        | S::IsLetter
        | S::IsLetterOrDigit
        | S::IsWhiteSpace
        | S::IsUpper
        | S::IsLower => Ty::Bool,
        S::ParseBool | S::ConvertBool => Ty::Bool,
        S::Concat
        | S::Format
        | S::Join
        | S::Empty
        | S::NewGuid(_)
        | S::ConvertString
        | S::ToBase64 => Ty::Str,
        S::GetString(_)
        | S::Serialize
        | S::EscapeDataString
        | S::UnescapeDataString
        | S::UrlEncode
        | S::UrlDecode => Ty::Str,
        S::CharToUpper | S::CharToLower => Ty::Str,
        S::ParseInt | S::ConvertInt | S::Compare => Ty::Int,
        S::ParseDouble | S::ConvertDouble | S::Pow | S::Sqrt => Ty::Double,
        S::FromBase64 | S::GetBytes(_) => Ty::Bytes,
        S::JsonParse(t) => t,
        S::XParse(true) => Ty::XDoc,
        S::XParse(false) => Ty::XElem,
        S::XNamespaceGet | S::XNamespaceConst(_) => Ty::XNs,
        S::UriTryCreate
        | S::UriWellFormed
        | S::GuidTryParse
        | S::DeepEquals
        | S::IsNaN
        | S::IsInfinity => Ty::Bool,
        S::GuidParse | S::HtmlEncode | S::HtmlDecode => Ty::Str,
        S::IsLeapYear => Ty::Bool,
        S::Narrow(_) | S::ArrayIndexOf => Ty::Int,
        S::TupleCreate => Ty::Dict,
        S::DaysInMonth => Ty::Int,
        S::ContextTrace => Ty::Any,
        S::Range | S::Repeat | S::EmptyList => Ty::List,
        S::XNameGet => Ty::XName,
        S::Date(dates::DateFn::TryParse) => Ty::Bool,
        S::Date(
            dates::DateFn::SpanFrom(_) | dates::DateFn::SpanZero | dates::DateFn::SpanParse,
        ) => Ty::Span,
        S::Date(_) => Ty::Date,
        S::Deserialize => generic.unwrap_or(Ty::Any),
        _ => Ty::Any,
    }
}

fn member_ty(m: M, target: Ty) -> Ty {
    match m {
        M::StartsWith
        | M::EndsWith
        | M::Contains
        | M::Equals
        | M::Any
        | M::All
        | M::ContainsKey => Ty::Bool,
        M::ContainsValue | M::HasValues | M::HasValue | M::TryGetValue | M::SequenceEqual => {
            Ty::Bool
        }
        M::Length | M::IndexOf | M::LastIndexOf | M::IndexOfAny | M::Count | M::CompareTo => {
            Ty::Int
        }
        M::ToLower | M::ToLowerInvariant | M::ToUpper | M::ToUpperInvariant | M::Substring => {
            Ty::Str
        }
        M::Trim | M::TrimStart | M::TrimEnd | M::PadLeft | M::PadRight | M::ToString => Ty::Str,
        // an XML node's name is an XName (and a value of unknown type may be one)
        M::Name if matches!(target, Ty::XElem | Ty::XAttr) => Ty::XName,
        M::Name if target == Ty::Any => Ty::Any,
        M::Message | M::Name | M::Key | M::Type | M::Normalize => Ty::Str,
        M::Root | M::Element | M::Parent => Ty::XElem,
        M::Attribute => Ty::XAttr,
        M::Namespace => Ty::XNs,
        M::LocalName | M::NamespaceName => Ty::Str,
        M::Elements | M::Descendants | M::DescendantsAndSelf | M::Ancestors | M::Attributes => {
            Ty::List
        }
        M::Replace | M::Insert | M::Remove if target == Ty::Str => Ty::Str,
        M::Split | M::ToCharArray | M::Where | M::Select | M::ToList | M::ToArray => Ty::List,
        M::DeepClone => target,
        _ => Ty::Any,
    }
}

/// The type a name (with its generic arguments) stands for, if the language knows it.
pub(super) fn type_named(name: &str, args: &[Ty]) -> Option<Ty> {
    Some(match name {
        "string" | "String" | "char" | "Char" => Ty::Str,
        "int" | "long" | "short" | "byte" | "uint" | "ulong" | "Int32" | "Int64" | "Int16"
        | "Byte" | "sbyte" | "SByte" | "ushort" | "UInt16" | "UInt32" | "UInt64" => Ty::Int,
        "double" | "float" | "decimal" | "Double" | "Single" | "Decimal" => Ty::Double,
        "bool" | "Boolean" => Ty::Bool,
        "object" | "Object" | "var" | "dynamic" | "KeyValuePair" => Ty::Any,
        "JObject" => Ty::JObject,
        "JArray" => Ty::JArray,
        "JToken" | "JValue" => Ty::JToken,
        "JProperty" => Ty::JProperty,
        "List"
        | "IList"
        | "IEnumerable"
        | "ICollection"
        | "IReadOnlyList"
        | "IReadOnlyCollection"
        | "HashSet"
        | "Array" => Ty::List,
        "Dictionary" | "IDictionary" | "IReadOnlyDictionary" => Ty::Dict,
        "StringBuilder" => Ty::Builder,
        "DateTime" | "DateTimeOffset" => Ty::Date,
        "TimeSpan" => Ty::Span,
        "Jwt" => Ty::Jwt,
        "HashAlgorithm" | "KeyedHashAlgorithm" | "HMAC" => Ty::Any,
        n if hashes::algo_of(n).is_some() => Ty::Any,
        "BasicAuthCredentials" => Ty::Basic,
        "XDocument" => Ty::XDoc,
        "XElement" | "XNode" | "XContainer" => Ty::XElem,
        "XAttribute" => Ty::XAttr,
        "XName" => Ty::XName,
        "XNamespace" => Ty::XNs,
        "Uri" => Ty::Uri,
        "IResponse" => Ty::Response,
        // a Guid is its text here (ToString, ToByteArray, comparisons)
        "Guid" => Ty::Str,
        // a time zone is its id here
        "TimeZoneInfo" => Ty::Str,
        "Regex" | "Match" | "Group" | "MatchCollection" | "GroupCollection" | "Random" => Ty::Any,
        "Exception" => Ty::Any,
        "Nullable" => args.first().copied().unwrap_or(Ty::Any),
        _ => return None,
    })
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
        ["context", "Api", "ServiceUrl"] => Field::ApiServiceUrl,
        ["context", "Api", "Protocols"] => Field::ApiProtocols,
        ["context", "Api", "SubscriptionKeyParameterNames", "Header"] => Field::ApiKeyHeaderName,
        ["context", "Api", "SubscriptionKeyParameterNames", "Query"] => Field::ApiKeyQueryName,
        ["context", "Api", "Version"] => Field::ApiVersion,
        ["context", "Api", "Revision"] => Field::ApiRevision,
        ["context", "Api", "IsCurrentRevision"] => Field::ApiIsCurrentRevision,
        ["context", "Operation", "Name"] => Field::OperationName,
        ["context", "Product", "State"] => Field::ProductState,
        ["context", "Product", "SubscriptionRequired"] => Field::ProductSubscriptionRequired,
        ["context", "Product", "ApprovalRequired"] => Field::ProductApprovalRequired,
        ["context", "Product", "SubscriptionLimit"] => Field::ProductSubscriptionLimit,
        ["context", "Product", "Groups"] => Field::ProductGroups,
        ["context", "Subscription", "CreatedDate" | "StartDate" | "EndDate"] => {
            Field::SubscriptionDate
        }
        ["context", "Deployment", "Region"] => Field::DeploymentRegion,
        ["context", "Deployment", "ServiceName"] => Field::DeploymentServiceName,
        ["context", "Deployment", "ServiceId"] => Field::DeploymentServiceId,
        ["context", "Request", "Certificate"] => Field::RequestCertificate,
        ["context", "Tracing"] => Field::Tracing,
        ["context", "User", "Id"] => Field::UserId,
        ["context", "User", "Email"] => Field::UserEmail,
        ["context", "User", "FirstName"] => Field::UserFirstName,
        ["context", "User", "LastName"] => Field::UserLastName,
        ["context", "User", "Note"] => Field::UserNote,
        ["context", "User", "RegistrationDate"] => Field::UserRegistrationDate,
        ["context", "User", "Groups"] => Field::UserGroups,
        ["context", "User", "Identities"] => Field::UserIdentities,
        ["context", "Subscription", "PrimaryKey"] => Field::SubscriptionPrimaryKey,
        ["context", "Subscription", "SecondaryKey"] => Field::SubscriptionSecondaryKey,
        ["context", "Operation", "Id"] => Field::OperationId,
        ["context", "Operation", "Method"] => Field::OperationMethod,
        ["context", "Operation", "UrlTemplate"] => Field::OperationTemplate,
        ["context", "Product", "Id"] => Field::ProductId,
        ["context", "Product", "Name"] => Field::ProductName,
        ["context", "RequestId"] => Field::RequestId,
        ["context", "Timestamp"] => Field::Timestamp,
        ["context", "Elapsed"] => Field::Elapsed,
        ["context", "Deployment", "GatewayId"] => Field::GatewayId,
        ["context", "LastError", "Source"] => Field::LastErrorSource,
        ["context", "LastError", "Reason"] => Field::LastErrorReason,
        ["context", "LastError", "Message"] => Field::LastErrorMessage,
        ["context", "LastError", "Scope"] => Field::LastErrorScope,
        ["context", "LastError", "Section"] => Field::LastErrorSection,
        ["context", "LastError", "PolicyId"] => Field::LastErrorPolicyId,
        ["context", "LastError", "Path"] => Field::LastErrorPath,
        _ => return None,
    })
}
