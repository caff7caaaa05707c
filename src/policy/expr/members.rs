//! Instance members: the names an expression may call on a value (`M`), and the
//! dispatch on the value's type when it runs: System.String's members here, numbers' and
//! bools' `ToString`/`Equals`/`CompareTo`, everything else in `collections` (JSON, lists,
//! dictionaries, StringBuilder, byte[]) and `linq` (Enumerable).
//! Must not touch: syntax, static members.

use std::borrow::Cow;

use super::eval::{Machine, OUT_OF_RANGE};
use super::value::{list, Flag};
use super::*;

macro_rules! members {
    ($($name:ident),* $(,)?) => {
        /// Every instance member the language knows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(super) enum M { $($name),* }
        impl M {
            pub(super) fn named(s: &str) -> Option<M> {
                match s {
                    $(stringify!($name) => Some(M::$name),)*
                    _ => None,
                }
            }
        }
    };
}

members! {
    // System.String
    StartsWith, EndsWith, Contains, ToLower, ToLowerInvariant, ToUpper, ToUpperInvariant,
    Substring, Trim, TrimStart, TrimEnd, Replace, IndexOf, LastIndexOf, IndexOfAny, Length,
    Split, PadLeft, PadRight, Insert, Remove, ToCharArray, Equals, CompareTo, ToString,
    Normalize, GetHashCode,
    // collections, dictionaries, pairs
    Count, Add, AddRange, RemoveAt, Clear, ContainsKey, ContainsValue, TryGetValue,
    GetValueOrDefault, Keys, Values, Key, Value, Name,
    // Newtonsoft.Json.Linq
    Property, Properties, SelectToken, SelectTokens, DeepClone, Children, HasValues, Type,
    ToObject, Merge,
    // StringBuilder
    Append, AppendLine, AppendFormat,
    // Exception
    Message,
    // Regex, Match, Group
    IsMatch, Match, Matches, Groups, Success, Index,
    // APIM's extension methods and their types
    AsJwt, TryParseJwt, AsBasic, TryParseBasic, Algorithm, Audiences, Claims, ExpirationTime,
    Id, Issuer, IssuedAt, NotBefore, Subject, Username, Password,
    // IUser, IGroup, IUserIdentity (context.User, context.Product.Groups)
    Email, FirstName, LastName, Note, RegistrationDate, Identities, Provider, Description,
    // System.Xml.Linq
    Root, Element, Elements, Descendants, DescendantsAndSelf, Ancestors, Attribute,
    Attributes, Parent, HasElements, HasAttributes, IsEmpty, SetValue, SetAttributeValue,
    SetElementValue, ReplaceWith, RemoveAll, RemoveNodes, RemoveAttributes, LocalName,
    NamespaceName, Namespace, GetName,
    // JObject.GetValue; X509Certificate2 (context.Request.Certificate)
    GetValue, Thumbprint, NotAfter, SerialNumber, Verify, FriendlyName, SubjectName,
    IssuerName, RawData, HasPrivateKey, Version,
    // XContainer
    FirstNode, LastNode, AddFirst, AddAfterSelf, AddBeforeSelf,
    // System.Uri
    AbsolutePath, AbsoluteUri, Authority, Fragment, Host, LocalPath, OriginalString,
    PathAndQuery, Port, Query, Scheme, Segments, IsAbsoluteUri, UserInfo, DnsSafeHost, Path,
    QueryString,
    // List<T>
    Sort,
    // System.Random
    Next, NextDouble,
    // BasicAuthCredentials (APIM's name), Guid
    UserId, ToByteArray,
    // APIM's byte[] extensions, and the form dictionary's
    Encrypt, Decrypt, ToFormUrlEncodedContent,
    // System.Security.Cryptography
    ComputeHash, Dispose,
    // DateTime, DateTimeOffset, TimeSpan
    Year, Month, Day, Hour, Minute, Second, Millisecond, DayOfWeek, DayOfYear, Date,
    TimeOfDay, Ticks, Kind, Offset, UtcDateTime, DateTime, LocalDateTime, AddYears,
    AddMonths, AddDays, AddHours, AddMinutes, AddSeconds, AddMilliseconds, AddTicks,
    Subtract, ToUniversalTime, ToLocalTime, ToUnixTimeSeconds, ToUnixTimeMilliseconds, Days,
    Hours, Minutes, Seconds, Milliseconds, TotalDays, TotalHours, TotalMinutes, TotalSeconds,
    TotalMilliseconds, Duration, Negate,
    // Nullable
    HasValue,
    // System.Linq.Enumerable
    Where, Select, SelectMany, Any, All, First, FirstOrDefault, Last, LastOrDefault, Single,
    SingleOrDefault, OrderBy, OrderByDescending, ThenBy, ThenByDescending, GroupBy, Skip, Take,
    SkipWhile, TakeWhile, Concat, Distinct, ToArray, ToList, ToDictionary, Aggregate, Sum,
    Min, Max, Average, ElementAt, ElementAtOrDefault, Reverse, Cast, OfType, Union,
    Intersect, Except, SequenceEqual, DefaultIfEmpty, Zip,
}

impl M {
    /// Members that read like properties (no argument list).
    pub(super) fn is_property(self) -> bool {
        matches!(
            self,
            M::Length
                | M::Count
                | M::Keys
                | M::Values
                | M::Key
                | M::Value
                | M::Name
                | M::HasValues
                | M::Type
                | M::Message
                | M::HasValue
                | M::First
                | M::Last
                | M::Groups
                | M::Success
                | M::Index
                | M::Algorithm
                | M::Audiences
                | M::Claims
                | M::ExpirationTime
                | M::Id
                | M::Issuer
                | M::IssuedAt
                | M::NotBefore
                | M::Subject
                | M::Username
                | M::UserId
                | M::Password
                | M::Year
                | M::Month
                | M::Day
                | M::Hour
                | M::Minute
                | M::Second
                | M::Millisecond
                | M::DayOfWeek
                | M::DayOfYear
                | M::Date
                | M::TimeOfDay
                | M::Ticks
                | M::Kind
                | M::Offset
                | M::UtcDateTime
                | M::DateTime
                | M::LocalDateTime
                | M::Days
                | M::Hours
                | M::Minutes
                | M::Seconds
                | M::Milliseconds
                | M::TotalDays
                | M::TotalHours
                | M::TotalMinutes
                | M::TotalSeconds
                | M::TotalMilliseconds
                | M::Email
                | M::FirstName
                | M::LastName
                | M::Note
                | M::RegistrationDate
                | M::Identities
                | M::Provider
                | M::Description
                | M::Root
                | M::Parent
                | M::HasElements
                | M::HasAttributes
                | M::IsEmpty
                | M::LocalName
                | M::NamespaceName
                | M::Namespace
                | M::Thumbprint
                | M::NotAfter
                | M::SerialNumber
                | M::FriendlyName
                | M::SubjectName
                | M::IssuerName
                | M::RawData
                | M::HasPrivateKey
                | M::Version
                | M::FirstNode
                | M::LastNode
                | M::AbsolutePath
                | M::AbsoluteUri
                | M::Authority
                | M::Fragment
                | M::Host
                | M::LocalPath
                | M::OriginalString
                | M::PathAndQuery
                | M::Port
                | M::Query
                | M::Scheme
                | M::Segments
                | M::IsAbsoluteUri
                | M::UserInfo
                | M::DnsSafeHost
                | M::Path
                | M::QueryString
        )
    }

    /// System.String's members and LINQ over its characters.
    pub(super) fn on_string(self) -> bool {
        self.string_own() || linq::is_linq(self)
    }

    /// System.String's own members.
    fn string_own(self) -> bool {
        matches!(
            self,
            M::StartsWith
                | M::EndsWith
                | M::Contains
                | M::ToLower
                | M::ToLowerInvariant
                | M::ToUpper
                | M::ToUpperInvariant
                | M::Substring
                | M::Trim
                | M::TrimStart
                | M::TrimEnd
                | M::Replace
                | M::IndexOf
                | M::LastIndexOf
                | M::IndexOfAny
                | M::Length
                | M::Split
                | M::PadLeft
                | M::PadRight
                | M::Insert
                | M::Remove
                | M::ToCharArray
                | M::Equals
                | M::CompareTo
                | M::ToString
                | M::Normalize
                | M::GetHashCode
                | M::ToByteArray
                | M::AsJwt
                | M::TryParseJwt
                | M::AsBasic
                | M::TryParseBasic
        )
    }

    /// Members of numbers and bools.
    pub(super) fn on_scalar(self) -> bool {
        matches!(
            self,
            M::ToString | M::Equals | M::CompareTo | M::GetHashCode | M::HasValue | M::Value
        )
    }
}

/// `t.member(args)`.
pub(super) fn call<'e>(
    m: &mut Machine<'e>,
    t: Val<'e>,
    member: M,
    args: &'e [Node],
    generic: Option<Ty>,
) -> Result<Val<'e>, EvalError> {
    // `token.Value<T>()` on a JSON value read as a scalar: the conversion
    if let (M::Value, Some(ty), true) = (member, generic, args.is_empty()) {
        return eval::cast(ty, t);
    }
    // Nullable<T>: a value type read through `.Value`, tested with `.HasValue`
    if args.is_empty()
        && matches!(
            t,
            Val::Date(_) | Val::Span(_) | Val::Int(_) | Val::Double(_) | Val::Bool(_)
        )
    {
        match member {
            M::Value => return Ok(t),
            M::HasValue => return Ok(Val::Bool(true)),
            _ => {}
        }
    }
    match t {
        Val::Null => match member {
            M::HasValue => Ok(Val::Bool(false)),
            _ => Err(NULL_REFERENCE),
        },
        Val::Str(s)
            if matches!(
                member,
                M::AsJwt | M::TryParseJwt | M::AsBasic | M::TryParseBasic
            ) =>
        {
            tokens::on_string(m, &s, member, args)
        }
        Val::Str(s) if member.string_own() => string(m, s, member, args),
        Val::Str(_) if linq::is_linq(member) => linq::call(m, t, member, args, generic),
        Val::Bool(_) | Val::Int(_) | Val::Double(_) | Val::Flag(_) => scalar(m, t, member, args),
        Val::Date(d) => dates::date_member(m, d, member, args),
        Val::Span(s) => dates::span_member(m, s, member, args),
        Val::Re(r) => regexes::member(m, &r, member, args),
        Val::Jwt(j) => tokens::jwt_member(m, &j, member),
        Val::Basic(b) => tokens::basic_member(&b, member),
        Val::Xml(x) => xml::member(m, &x, member, args),
        Val::Uri(u) => uri::member(m, &u, member, args),
        Val::Cert(c) => certs::member(m, &c, member, args),
        Val::Hasher(h) => {
            let a = m.values(args)?;
            match (member, a.as_slice()) {
                (M::ComputeHash, [Val::Bytes(data)]) => {
                    m.ticks(data.len() / 64 + 1)?;
                    let hash = h.compute(data)?;
                    m.charge(hash.len())?;
                    Ok(Val::Bytes(std::rc::Rc::new(hash)))
                }
                (M::ComputeHash, [Val::Bytes(data), Val::Int(offset), Val::Int(count)]) => {
                    let part = usize::try_from(*offset)
                        .ok()
                        .zip(usize::try_from(*count).ok())
                        .and_then(|(o, c)| data.get(o..o.checked_add(c)?))
                        .ok_or(err("Offset and length were out of bounds for the array"))?;
                    m.ticks(part.len() / 64 + 1)?;
                    Ok(Val::Bytes(std::rc::Rc::new(h.compute(part)?)))
                }
                (M::ComputeHash, _) => Err(err(
                    "ComputeHash takes a byte[] (Encoding.UTF8.GetBytes(text))",
                )),
                (M::Dispose, []) => Ok(Val::Null),
                _ => Err(not_a_member("HashAlgorithm", member)),
            }
        }
        Val::Str(_) => Err(not_a_member("string", member)),
        other => collections::call(m, other, member, args, generic),
    }
}

/// `t.member = v`.
pub(super) fn set<'e>(
    m: &mut Machine<'e>,
    t: &Val<'e>,
    member: M,
    v: Val<'e>,
) -> Result<(), EvalError> {
    collections::set(m, t, member, v)
}

pub(super) fn not_a_member(ty: &str, member: M) -> EvalError {
    EvalError(Cow::Owned(format!("'{member:?}' is not a member of {ty}")))
}

fn scalar<'e>(
    m: &mut Machine<'e>,
    t: Val<'e>,
    member: M,
    args: &'e [Node],
) -> Result<Val<'e>, EvalError> {
    let a = m.values(args)?;
    Ok(match (member, a.as_slice()) {
        (M::ToString, []) => m.text(t.to_text().into_owned())?,
        (M::ToString, [Val::Str(f), ..]) => m.text(format::number(&t, f)?)?,
        (M::ToString, [_]) => m.text(t.to_text().into_owned())?,
        (M::Equals, [other]) => Val::Bool(t == *other),
        (M::CompareTo, [other]) => {
            let lt = eval::binary(BinOp::Lt, t.clone(), other.clone())?.truthy()?;
            let gt = eval::binary(BinOp::Gt, t, other.clone())?.truthy()?;
            Val::Int(i64::from(gt) - i64::from(lt))
        }
        (M::HasValue, []) => Val::Bool(true),
        (M::Value, []) => t,
        (M::GetHashCode, []) => Val::Int(0),
        _ => return Err(not_a_member(t.type_name(), member)),
    })
}

/// Whether the comparison flag among `args` asks to ignore case.
fn ignore_case(args: &[Val]) -> bool {
    args.contains(&Val::Flag(Flag::IgnoreCase))
}

fn string<'e>(
    m: &mut Machine<'e>,
    s: Cow<'e, str>,
    member: M,
    args: &'e [Node],
) -> Result<Val<'e>, EvalError> {
    let a = m.values(args)?;
    let ic = ignore_case(&a);
    Ok(match member {
        M::StartsWith => Val::Bool(fold(&s, ic).starts_with(&*fold(arg_str(&a, 0)?, ic))),
        M::EndsWith => Val::Bool(fold(&s, ic).ends_with(&*fold(arg_str(&a, 0)?, ic))),
        M::Contains => Val::Bool(fold(&s, ic).contains(&*fold(arg_str(&a, 0)?, ic))),
        M::Equals => Val::Bool(match a.first() {
            Some(Val::Str(x)) => fold(&s, ic) == fold(x, ic),
            _ => false,
        }),
        M::CompareTo => Val::Int(match s.as_ref().cmp(arg_str(&a, 0)?) {
            std::cmp::Ordering::Less => -1,
            std::cmp::Ordering::Equal => 0,
            std::cmp::Ordering::Greater => 1,
        }),
        M::ToLower | M::ToLowerInvariant => match s {
            s if s.chars().any(char::is_uppercase) => m.text(s.to_lowercase())?,
            s => Val::Str(s),
        },
        M::ToUpper | M::ToUpperInvariant => match s {
            s if s.chars().any(char::is_lowercase) => m.text(s.to_uppercase())?,
            s => Val::Str(s),
        },
        M::Length => Val::Int(s.encode_utf16().count() as i64),
        M::IndexOf => {
            let start = match a.get(1) {
                Some(Val::Int(n)) => *n,
                _ => 0,
            };
            let chars: Vec<char> = s.chars().collect();
            let start = usize::try_from(start)
                .ok()
                .filter(|n| *n <= chars.len())
                .ok_or(err("startIndex must be within the string (IndexOf)"))?;
            let hay: String = chars[start..].iter().collect();
            let needle = fold(arg_str(&a, 0)?, ic);
            Val::Int(match fold(&hay, ic).find(&*needle) {
                Some(i) => (start + hay[..i].chars().count()) as i64,
                None => -1,
            })
        }
        M::LastIndexOf => {
            let needle = fold(arg_str(&a, 0)?, ic);
            let hay = fold(&s, ic);
            Val::Int(
                hay.rfind(&*needle)
                    .map_or(-1, |i| hay[..i].chars().count() as i64),
            )
        }
        M::IndexOfAny => {
            let set: String = match a.first() {
                Some(Val::List(l)) => l
                    .borrow()
                    .iter()
                    .map(|c| c.to_text().into_owned())
                    .collect(),
                _ => return Err(err("IndexOfAny takes a char[]")),
            };
            Val::Int(
                s.chars()
                    .position(|c| set.contains(c))
                    .map_or(-1, |i| i as i64),
            )
        }
        M::ToString => Val::Str(s),
        M::Normalize => Val::Str(s),
        // a Guid is its text here: its 16 bytes in .NET's order (the first three groups
        // little-endian)
        M::ToByteArray => {
            let d = super::numbers::guid_of(&s).ok_or(err("ToByteArray is a member of Guid"))?;
            let hex = d.replace('-', "");
            let mut b: Vec<u8> = (0..16)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
                .collect();
            b[0..4].reverse();
            b[4..6].reverse();
            b[6..8].reverse();
            Val::Bytes(std::rc::Rc::new(b))
        }
        M::GetHashCode => Val::Int(
            s.bytes()
                .fold(0i64, |h, b| h.wrapping_mul(31).wrapping_add(i64::from(b))),
        ),
        _ => string_edit(m, s, member, &a)?,
    })
}

/// The members of a string that build a new one (or a list of them).
fn string_edit<'e>(
    m: &mut Machine<'e>,
    s: Cow<'e, str>,
    member: M,
    a: &[Val<'e>],
) -> Result<Val<'e>, EvalError> {
    Ok(match member {
        M::Trim | M::TrimStart | M::TrimEnd if !a.is_empty() => {
            let mut set = String::new();
            for v in a {
                match v {
                    Val::Str(x) => set.push_str(x),
                    Val::List(l) => l.borrow().iter().for_each(|c| set.push_str(&c.to_text())),
                    _ => return Err(err("Trim takes characters")),
                }
            }
            let trim = |c: char| set.contains(c);
            let r = match member {
                M::TrimStart => s.trim_start_matches(trim),
                M::TrimEnd => s.trim_end_matches(trim),
                _ => s.trim_matches(trim),
            };
            m.text(r.to_string())?
        }
        M::Trim => match s {
            Cow::Borrowed(b) => Val::Str(Cow::Borrowed(b.trim())),
            Cow::Owned(o) => m.text(o.trim().to_string())?,
        },
        M::TrimStart => m.text(s.trim_start().to_string())?,
        M::TrimEnd => m.text(s.trim_end().to_string())?,
        M::Replace => {
            let from = arg_str(a, 0)?;
            if from.is_empty() {
                return Err(err("String cannot be of zero length (Replace)"));
            }
            let to = match a.get(1) {
                Some(Val::Null) => "",
                _ => arg_str(a, 1)?,
            };
            m.text(s.replace(from, to))?
        }
        M::Substring => {
            let chars: Vec<char> = s.chars().collect();
            let start = arg_int(a, 0)?.unwrap_or(0);
            let len = arg_int(a, 1)?.unwrap_or(chars.len() as i64 - start);
            if start < 0 || len < 0 || start.saturating_add(len) as usize > chars.len() {
                return Err(err(
                    "Substring index and length must refer to a location within the string",
                ));
            }
            m.text(
                chars[start as usize..(start + len) as usize]
                    .iter()
                    .collect(),
            )?
        }
        M::PadLeft | M::PadRight => {
            let width = arg_int(a, 0)?.unwrap_or(0);
            if !(0..=1 << 20).contains(&width) {
                return Err(err("totalWidth is out of range (PadLeft/PadRight)"));
            }
            let fill = match a.get(1) {
                Some(Val::Str(c)) => c.chars().next().unwrap_or(' '),
                _ => ' ',
            };
            let have = s.chars().count();
            let pad: String =
                std::iter::repeat_n(fill, (width as usize).saturating_sub(have)).collect();
            m.text(if member == M::PadLeft {
                pad + &s
            } else {
                s.into_owned() + &pad
            })?
        }
        M::Insert => {
            let at = arg_int(a, 0)?.unwrap_or(0);
            let chars: Vec<char> = s.chars().collect();
            let at = usize::try_from(at)
                .ok()
                .filter(|i| *i <= chars.len())
                .ok_or(OUT_OF_RANGE)?;
            let mut r: String = chars[..at].iter().collect();
            r.push_str(arg_str(a, 1)?);
            r.extend(&chars[at..]);
            m.text(r)?
        }
        M::Remove => {
            let chars: Vec<char> = s.chars().collect();
            let start = arg_int(a, 0)?.unwrap_or(0);
            let count = arg_int(a, 1)?.unwrap_or(chars.len() as i64 - start);
            if start < 0 || count < 0 || start.saturating_add(count) as usize > chars.len() {
                return Err(OUT_OF_RANGE);
            }
            let (start, end) = (start as usize, (start + count) as usize);
            m.text(chars[..start].iter().chain(&chars[end..]).collect())?
        }
        M::ToCharArray => {
            m.ticks(s.len())?;
            m.charge(s.len() * 32)?;
            list(
                s.chars()
                    .map(|c| Val::Str(Cow::Owned(c.to_string())))
                    .collect(),
            )
        }
        M::Split => split(m, &s, a)?,
        _ => return Err(not_a_member("string", member)),
    })
}

fn arg_str<'v>(a: &'v [Val], i: usize) -> Result<&'v str, EvalError> {
    match a.get(i) {
        Some(Val::Str(x)) => Ok(x),
        Some(Val::Null) => Err(err("Value cannot be null (a string argument)")),
        _ => Err(err("a string argument is missing or not a string")),
    }
}

fn arg_int(a: &[Val], i: usize) -> Result<Option<i64>, EvalError> {
    match a.get(i) {
        None => Ok(None),
        Some(Val::Int(n)) => Ok(Some(*n)),
        Some(_) => Err(err("an int argument is not an int")),
    }
}

/// `x`, lower-cased when comparing without case.
fn fold(x: &str, ignore_case: bool) -> Cow<'_, str> {
    if ignore_case {
        Cow::Owned(x.to_lowercase())
    } else {
        Cow::Borrowed(x)
    }
}

/// `s.Split(...)`: separators as chars, strings or arrays of either (whitespace
/// without any), an optional count and StringSplitOptions.
fn split<'e>(m: &mut Machine<'e>, s: &str, a: &[Val<'e>]) -> Result<Val<'e>, EvalError> {
    let mut seps: Vec<String> = Vec::new();
    let mut count = i64::MAX;
    let (mut remove_empty, mut trim) = (false, false);
    for v in a {
        match v {
            Val::Str(x) => seps.push(x.to_string()),
            Val::List(l) => seps.extend(l.borrow().iter().map(|x| x.to_text().into_owned())),
            Val::Int(n) if *n >= 0 => count = *n,
            Val::Flag(Flag::RemoveEmptyEntries) => remove_empty = true,
            Val::Flag(Flag::TrimEntries) => trim = true,
            Val::Flag(Flag::SplitNone) | Val::Null => {}
            _ => {
                return Err(err(
                    "Split takes separators, a count and StringSplitOptions",
                ))
            }
        }
    }
    seps.retain(|x| !x.is_empty());
    let whitespace = seps.is_empty();
    let mut parts: Vec<&str> = Vec::new();
    let mut rest = s;
    while (parts.len() as i64) < count - 1 {
        // the earliest separator; at one position, the first one listed
        let found = if whitespace {
            rest.char_indices()
                .find(|(_, c)| c.is_whitespace())
                .map(|(i, c)| (i, c.len_utf8()))
        } else {
            seps.iter()
                .filter_map(|sep| rest.find(sep.as_str()).map(|i| (i, sep.len())))
                .min_by_key(|(i, _)| *i)
        };
        let Some((i, len)) = found else { break };
        parts.push(&rest[..i]);
        rest = &rest[i + len..];
        m.tick()?;
    }
    if count > 0 {
        parts.push(rest);
    }
    let mut items = Vec::with_capacity(parts.len());
    for p in parts {
        let p = if trim { p.trim() } else { p };
        if remove_empty && p.is_empty() {
            continue;
        }
        m.charge(p.len() + 32)?;
        items.push(Val::Str(Cow::Owned(p.to_string())));
    }
    Ok(list(items))
}
