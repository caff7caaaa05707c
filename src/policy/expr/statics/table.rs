//! The static member table: which `Type.Member` names the language knows, with their
//! argument counts, the enum constants that are options (`StringComparison.X`…) and
//! the type names that have static members.
//! Must not touch: what the members do (statics.rs), syntax.

use super::*;

/// The static member `ty.member` and how many arguments it takes (`None`: it is a
/// property, no argument list).
pub(in crate::policy::expr) fn lookup(
    ty: &str,
    member: &str,
) -> Option<(S, Option<(usize, usize)>)> {
    let call = |s, min, max| Some((s, Some((min, max))));
    match (ty, member) {
        ("string" | "String", "IsNullOrEmpty") => call(S::IsNullOrEmpty, 1, 1),
        ("string" | "String", "IsNullOrWhiteSpace") => call(S::IsNullOrWhiteSpace, 1, 1),
        ("string" | "String", "Concat") => call(S::Concat, 1, 64),
        ("string" | "String", "Format") => call(S::Format, 1, 64),
        ("string" | "String", "Equals") => call(S::StrEquals, 2, 3),
        ("string" | "String", "Join") => call(S::Join, 2, 64),
        ("string" | "String", "Compare" | "CompareOrdinal") => call(S::Compare, 2, 3),
        ("string" | "String", "Empty") => Some((S::Empty, None)),
        // 0: no format chosen yet (the parser takes ToString's format into it once)
        ("Guid", "NewGuid") => call(S::NewGuid(0), 0, 0),
        ("Guid", "Parse") => call(S::GuidParse, 1, 1),
        ("Array", "Copy") => call(S::ArrayCopy, 3, 5),
        ("Tuple", "Create") => call(S::TupleCreate, 1, 7),
        ("Array", "IndexOf") => call(S::ArrayIndexOf, 2, 2),
        ("Array", "Reverse") => call(S::ArrayReverse, 1, 1),
        ("Array", "Empty") => call(S::EmptyList, 0, 0),
        ("double" | "Double", "IsNaN") => call(S::IsNaN, 1, 1),
        ("DateTime", "IsLeapYear") => call(S::IsLeapYear, 1, 1),
        ("DateTime", "DaysInMonth") => call(S::DaysInMonth, 2, 2),
        ("double" | "Double", "IsInfinity") => call(S::IsInfinity, 1, 1),
        ("Guid", "TryParse") => call(S::GuidTryParse, 2, 2),
        ("JToken", "DeepEquals") => call(S::DeepEquals, 2, 2),
        // Parse(text[, styles][, provider]) and TryParse(text[, styles, provider], out)
        ("int" | "long" | "Int32" | "Int64", "Parse") => call(S::ParseInt, 1, 3),
        ("int" | "long" | "Int32" | "Int64", "TryParse") => call(S::TryParseInt, 2, 4),
        ("double" | "decimal" | "float" | "Double" | "Decimal", "Parse") => {
            call(S::ParseDouble, 1, 3)
        }
        ("double" | "decimal" | "float" | "Double" | "Decimal", "TryParse") => {
            call(S::TryParseDouble, 2, 4)
        }
        ("bool" | "Boolean", "Parse") => call(S::ParseBool, 1, 1),
        ("bool" | "Boolean", "TryParse") => call(S::TryParseBool, 2, 2),
        ("Convert", "ToInt32" | "ToInt64" | "ToInt16") => call(S::ConvertInt, 1, 2),
        ("Convert", "ToDouble" | "ToDecimal" | "ToSingle") => call(S::ConvertDouble, 1, 1),
        ("Convert", "ToBoolean") => call(S::ConvertBool, 1, 1),
        ("Convert", "ToString") => call(S::ConvertString, 1, 2),
        ("Convert", "ToBase64String") => call(S::ToBase64, 1, 1),
        ("Convert", "FromBase64String") => call(S::FromBase64, 1, 1),
        ("Encoding.UTF8", "GetBytes") => call(S::GetBytes(false), 1, 1),
        ("Encoding.UTF8", "GetString") => call(S::GetString(false), 1, 1),
        ("Encoding.ASCII", "GetBytes") => call(S::GetBytes(true), 1, 1),
        ("Encoding.ASCII", "GetString") => call(S::GetString(true), 1, 1),
        ("Math", "Max") => call(S::Max, 2, 2),
        ("Math", "Min") => call(S::Min, 2, 2),
        ("Math", "Abs") => call(S::Abs, 1, 1),
        ("Math", "Round") => call(S::Round, 1, 3),
        ("Math", "Floor") => call(S::Floor, 1, 1),
        ("Math", "Ceiling") => call(S::Ceiling, 1, 1),
        ("Math", "Pow") => call(S::Pow, 2, 2),
        ("Math", "Sqrt") => call(S::Sqrt, 1, 1),
        ("char" | "Char", "IsDigit") => call(S::IsDigit, 1, 1),
        ("char" | "Char", "IsLetter") => call(S::IsLetter, 1, 1),
        ("char" | "Char", "IsLetterOrDigit") => call(S::IsLetterOrDigit, 1, 1),
        ("char" | "Char", "IsWhiteSpace") => call(S::IsWhiteSpace, 1, 1),
        ("char" | "Char", "IsUpper") => call(S::IsUpper, 1, 1),
        ("char" | "Char", "IsLower") => call(S::IsLower, 1, 1),
        ("char" | "Char", "ToUpper" | "ToUpperInvariant") => call(S::CharToUpper, 1, 1),
        ("char" | "Char", "ToLower" | "ToLowerInvariant") => call(S::CharToLower, 1, 1),
        ("JObject", "Parse") => call(S::JsonParse(Ty::JObject), 1, 1),
        ("XDocument", "Parse") => call(S::XParse(true), 1, 2),
        ("XElement", "Parse") => call(S::XParse(false), 1, 2),
        ("XNamespace", "Get") => call(S::XNamespaceGet, 1, 1),
        ("Uri", "TryCreate") => call(S::UriTryCreate, 3, 3),
        ("Enumerable", "Range") => call(S::Range, 2, 2),
        ("Enumerable", "Repeat") => call(S::Repeat, 2, 2),
        ("Enumerable", "Empty") => call(S::EmptyList, 0, 0),
        ("Uri", "IsWellFormedUriString") => call(S::UriWellFormed, 2, 2),
        ("XNamespace", "Xmlns") => Some((S::XNamespaceConst(0), None)),
        ("XNamespace", "Xml") => Some((S::XNamespaceConst(1), None)),
        ("XNamespace", "None") => Some((S::XNamespaceConst(2), None)),
        ("XName", "Get") => call(S::XNameGet, 1, 2),
        ("JArray", "Parse") => call(S::JsonParse(Ty::JArray), 1, 1),
        ("JToken", "Parse") => call(S::JsonParse(Ty::JToken), 1, 1),
        ("JObject" | "JArray" | "JToken", "FromObject") => call(S::FromObject, 1, 1),
        ("JsonConvert", "SerializeObject") => call(S::Serialize, 1, 2),
        ("JsonConvert", "DeserializeObject") => call(S::Deserialize, 1, 1),
        ("Uri", "EscapeDataString" | "EscapeUriString") => call(S::EscapeDataString, 1, 1),
        ("Uri", "UnescapeDataString") => call(S::UnescapeDataString, 1, 1),
        ("WebUtility" | "HttpUtility", "UrlEncode") => call(S::UrlEncode, 1, 1),
        ("WebUtility" | "HttpUtility", "HtmlEncode") => call(S::HtmlEncode, 1, 1),
        ("WebUtility" | "HttpUtility", "HtmlDecode") => call(S::HtmlDecode, 1, 1),
        ("WebUtility" | "HttpUtility", "UrlDecode") => call(S::UrlDecode, 1, 1),
        ("TimeZoneInfo", "FindSystemTimeZoneById") => call(S::Zone(zones::Op::Find), 1, 1),
        ("TimeZoneInfo", "ConvertTimeToUtc") => call(S::Zone(zones::Op::ToUtc), 1, 2),
        ("TimeZoneInfo", "ConvertTimeFromUtc") => call(S::Zone(zones::Op::FromUtc), 2, 2),
        ("TimeZoneInfo", "ConvertTimeBySystemTimeZoneId") => {
            call(S::Zone(zones::Op::BySystemId), 2, 3)
        }
        ("TimeZoneInfo", "Utc") => Some((S::Zone(zones::Op::Utc), None)),
        ("Regex", "IsMatch") => call(S::Regex(regexes::Op::IsMatch), 2, 4),
        ("Regex", "Match") => call(S::Regex(regexes::Op::Match), 2, 4),
        ("Regex", "Matches") => call(S::Regex(regexes::Op::Matches), 2, 4),
        ("Regex", "Replace") => call(S::Regex(regexes::Op::Replace), 3, 5),
        ("Regex", "Split") => call(S::Regex(regexes::Op::Split), 2, 4),
        ("Regex", "Escape") => call(S::RegexEscape, 1, 1),
        ("BitConverter", "ToString") => call(S::BitConverter, 1, 1),
        ("Convert", "ToHexString") => call(S::ToHex, 1, 1),
        ("Convert", "FromHexString") => call(S::FromHex, 1, 1),
        (ty, "Create") if hashes::algo_of(ty).is_some_and(|(_, hmac)| !hmac) => {
            call(S::HashCreate(hashes::algo_of(ty)?.0), 0, 0)
        }
        (ty, "HashData") if hashes::algo_of(ty).is_some() => match hashes::algo_of(ty)? {
            (algo, false) => call(S::HashData(algo), 1, 1),
            (algo, true) => call(S::HmacData(algo), 2, 2),
        },
        (ty, member) => dates::lookup(ty, member).map(|(f, arity)| (S::Date(f), arity)),
    }
}

/// Enum constants: `StringComparison.X`, `StringSplitOptions.X`, `Formatting.X`.
pub(in crate::policy::expr) fn flag(ty: &str, member: &str) -> Option<Flag> {
    Some(match (ty, member) {
        ("StringComparison", "Ordinal" | "InvariantCulture" | "CurrentCulture") => Flag::Ordinal,
        (
            "StringComparison",
            "OrdinalIgnoreCase" | "InvariantCultureIgnoreCase" | "CurrentCultureIgnoreCase",
        ) => Flag::IgnoreCase,
        ("StringSplitOptions", "None") => Flag::SplitNone,
        ("StringSplitOptions", "RemoveEmptyEntries") => Flag::RemoveEmptyEntries,
        ("StringSplitOptions", "TrimEntries") => Flag::TrimEntries,
        ("Formatting", "None") => Flag::Compact,
        ("Formatting", "Indented") => Flag::Indented,
        ("SaveOptions", "None") => Flag::SaveIndented,
        ("SaveOptions", "DisableFormatting") => Flag::DisableFormatting,
        ("LoadOptions", "None") => Flag::SaveIndented,
        ("MidpointRounding", "ToEven") => Flag::ToEven,
        ("MidpointRounding", "AwayFromZero") => Flag::AwayFromZero,
        ("MidpointRounding", "ToZero") => Flag::ToZero,
        ("MidpointRounding", "ToNegativeInfinity") => Flag::ToNegativeInfinity,
        ("MidpointRounding", "ToPositiveInfinity") => Flag::ToPositiveInfinity,
        ("UriKind", "Absolute") => Flag::UriAbsolute,
        ("UriKind", "Relative") => Flag::UriRelative,
        ("UriKind", "RelativeOrAbsolute") => Flag::UriAny,
        _ => return None,
    })
}

/// The type names that have static members (with the namespaces that may prefix them).
pub(in crate::policy::expr) fn is_static_type(name: &str) -> bool {
    matches!(
        name,
        "string"
            | "String"
            | "Guid"
            | "int"
            | "long"
            | "Int32"
            | "Int64"
            | "double"
            | "decimal"
            | "float"
            | "Double"
            | "Decimal"
            | "bool"
            | "Boolean"
            | "Convert"
            | "Encoding"
            | "Math"
            | "char"
            | "Char"
            | "JObject"
            | "JArray"
            | "JToken"
            | "JsonConvert"
            | "Uri"
            | "WebUtility"
            | "HttpUtility"
            | "StringComparison"
            | "StringSplitOptions"
            | "Formatting"
            | "SaveOptions"
            | "UriKind"
            | "Enumerable"
            | "LoadOptions"
            | "XDocument"
            | "XElement"
            | "XNamespace"
            | "XName"
            | "JTokenType"
            | "DateTime"
            | "DateTimeOffset"
            | "TimeSpan"
            | "CultureInfo"
            | "NumberStyles"
            | "Array"
            | "Tuple"
            | "MidpointRounding"
            | "DateTimeStyles"
            | "DateTimeKind"
            | "DayOfWeek"
            | "Regex"
            | "TimeZoneInfo"
            | "RegexOptions"
            | "BitConverter"
    ) || hashes::algo_of(name).is_some()
}
