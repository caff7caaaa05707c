//! Static members and constructors: what `string.`, `Guid.`, `int.`, `Convert.`,
//! `Encoding.UTF8.`, `Math.`, `char.`, `JObject.`, `JsonConvert.`, `Uri.` and
//! `WebUtility.` offer (`S`, resolved at load by `lookup`), and `new T(...) { ... }` of
//! the types expressions may build (`NewKind`).
//! Must not touch: instance members, syntax beyond the name tables.

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

use super::eval::Machine;
use super::json::{self, Json};
use super::value::{from_json, list, to_json, Flag};
use super::*;

mod table;
pub(super) use table::{flag, is_static_type, lookup};

/// A static member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum S {
    IsNullOrEmpty,
    IsNullOrWhiteSpace,
    Concat,
    Format,
    StrEquals,
    Join,
    Compare,
    Empty,
    /// A new random (version 4) GUID, formatted as `ToString(format)` would: D, N, B or P.
    NewGuid(u8),
    ParseInt,
    TryParseInt,
    ParseDouble,
    TryParseDouble,
    ParseBool,
    TryParseBool,
    ConvertInt,
    ConvertDouble,
    ConvertBool,
    ConvertString,
    ToBase64,
    FromBase64,
    /// Encoding.UTF8 / Encoding.ASCII (`true`).
    GetBytes(bool),
    GetString(bool),
    Max,
    Min,
    Abs,
    Round,
    Floor,
    Ceiling,
    Pow,
    Sqrt,
    IsDigit,
    IsLetter,
    IsLetterOrDigit,
    IsWhiteSpace,
    IsUpper,
    IsLower,
    CharToUpper,
    CharToLower,
    /// `JObject.Parse` / `JArray.Parse` / `JToken.Parse`.
    JsonParse(Ty),
    /// `XDocument.Parse` (true) / `XElement.Parse`; `XNamespace.Get`, `XName.Get`.
    XParse(bool),
    XNamespaceGet,
    XNameGet,
    /// `XNamespace.Xmlns` / `XNamespace.Xml` / `XNamespace.None`.
    /// (An index into `XML_NAMESPACES`: a small `S` keeps every tree node small.)
    XNamespaceConst(u8),
    /// `Enumerable.Range(start, count)`, `Enumerable.Repeat(value, count)`,
    /// `Enumerable.Empty<T>()`.
    Range,
    Repeat,
    EmptyList,
    /// `Uri.TryCreate(text, kind, out uri)` / `Uri.IsWellFormedUriString(text, kind)`.
    UriTryCreate,
    UriWellFormed,
    FromObject,
    Serialize,
    Deserialize,
    EscapeDataString,
    UnescapeDataString,
    UrlEncode,
    UrlDecode,
    /// DateTime, DateTimeOffset and TimeSpan members (dates.rs).
    Date(dates::DateFn),
    /// Regex.IsMatch / Match / Matches / Replace / Split (regexes.rs).
    Regex(regexes::Op),
    /// TimeZoneInfo's statics.
    Zone(super::zones::Op),
    RegexEscape,
    /// `SHA256.Create()` and kin; `SHA256.HashData(bytes)`; `HMACSHA256.HashData(key, bytes)`.
    HashCreate(hashes::Algo),
    HashData(hashes::Algo),
    HmacData(hashes::Algo),
    BitConverter,
    ToHex,
    FromHex,
    /// `Guid.Parse(text)` / `Guid.TryParse(text, out guid)`: the GUID in its D form.
    GuidParse,
    GuidTryParse,
    /// `JToken.DeepEquals(a, b)`.
    DeepEquals,
    /// `context.Trace(message)`.
    ContextTrace,
    /// A narrowing integer cast, `(byte)x` and kin: the bits and whether it is signed
    /// (an index into `NARROW`).
    Narrow(u8),
    /// `Tuple.Create(a, b…)`: a record with Item1, Item2….
    TupleCreate,
    /// `Array.Copy`, `Array.IndexOf`, `Array.Reverse`.
    ArrayCopy,
    ArrayIndexOf,
    ArrayReverse,
    /// `DateTime.IsLeapYear(year)` / `DateTime.DaysInMonth(year, month)`.
    IsLeapYear,
    DaysInMonth,
    /// `WebUtility.HtmlEncode` / `HtmlDecode`.
    HtmlEncode,
    HtmlDecode,
    /// `double.IsNaN(x)` / `double.IsInfinity(x)`.
    IsNaN,
    IsInfinity,
}

/// A type `new` may build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NewKind {
    JObject,
    JArray,
    JProperty,
    JValue,
    List,
    Dict,
    Builder,
    /// `new T[n]`, `new T[] { ... }`, `new[] { ... }`.
    Array,
    /// `new ArgumentException(message)`: the type (its index in `exceptions`' table).
    Exception(u8),
    DateTime,
    DateTimeOffset,
    TimeSpan,
    Regex,
    /// `new HMACSHA256(key)`, `new SHA256Managed()`: the algorithm, and whether it is an
    /// HMAC.
    Hash(hashes::Algo, bool),
    /// `{ key, value }` or `[key] = value` inside an initializer.
    Pair,
    XElement,
    XAttribute,
    XDocument,
    Uri,
    /// `new string(chars)`, `new string(c, count)`.
    Str,
    /// `new Random()`, `new Random(seed)`.
    Random,
    /// `new Guid(bytes)`, `new Guid(text)`.
    Guid,
}

/// A string or null (the string statics' arguments).
fn text_of(v: &Val) -> Result<bool, EvalError> {
    match v {
        Val::Null | Val::Str(_) => Ok(true),
        _ => Err(err("a string argument is not a string")),
    }
}

fn arg_text<'v>(v: &'v Val) -> Result<&'v str, EvalError> {
    match v {
        Val::Str(s) => Ok(s),
        Val::Null => Err(err("Value cannot be null (a string argument)")),
        _ => Err(err("a string argument is not a string")),
    }
}

fn number(v: &Val) -> Result<f64, EvalError> {
    match v {
        Val::Int(i) => Ok(*i as f64),
        Val::Double(d) => Ok(*d),
        _ => Err(err("a number argument is not a number")),
    }
}

fn char_test(v: &Val, test: fn(char) -> bool) -> Result<Val<'static>, EvalError> {
    let c = arg_text(v)?.chars().next().ok_or(err("an empty char"))?;
    Ok(Val::Bool(test(c)))
}

pub(super) fn call<'e>(
    m: &mut Machine<'e>,
    f: S,
    args: &'e [Node],
    generic: Option<Ty>,
) -> Result<Val<'e>, EvalError> {
    // the `out` forms write their result to the second argument
    if let S::TryParseInt | S::TryParseDouble | S::TryParseBool = f {
        let text = m.eval(
            args.first()
                .ok_or(err("TryParse takes a text and an out variable"))?,
        )?;
        let text = text.to_text();
        // TryParse(text, styles, provider, out value)
        let styles = match args.len() {
            4 => m.eval(&args[1])?,
            _ => Val::Null,
        };
        let parsed = match f {
            S::TryParseInt => numbers::parse_int(&text, &styles).map(Val::Int),
            S::TryParseDouble => numbers::parse_double(&text, &styles).map(Val::Double),
            _ => match text.trim().to_ascii_lowercase().as_str() {
                "true" => Some(Val::Bool(true)),
                "false" => Some(Val::Bool(false)),
                _ => None,
            },
        };
        let ok = parsed.is_some();
        let default = match f {
            S::TryParseInt => Val::Int(0),
            S::TryParseDouble => Val::Double(0.0),
            _ => Val::Bool(false),
        };
        m.write_out(args.last(), parsed.unwrap_or(default))?;
        return Ok(Val::Bool(ok));
    }
    if let S::Date(f) = f {
        return dates::call(m, f, args);
    }
    if let S::GuidTryParse = f {
        let text = m.eval(
            args.first()
                .ok_or(err("TryParse takes a text and an out variable"))?,
        )?;
        let parsed = numbers::guid_of(&text.to_text());
        let ok = parsed.is_some();
        let empty = "00000000-0000-0000-0000-000000000000";
        let v = Val::Str(Cow::Owned(parsed.unwrap_or_else(|| empty.to_string())));
        m.write_out(args.get(1), v)?;
        return Ok(Val::Bool(ok));
    }
    if let S::UriTryCreate = f {
        let text = m.eval(
            args.first()
                .ok_or(err("TryCreate takes a text, a kind and an out variable"))?,
        )?;
        let parsed = uri::Uri::parse(&text.to_text()).ok();
        let ok = parsed.is_some();
        m.write_out(
            args.get(2),
            parsed.map_or(Val::Null, |u| Val::Uri(Rc::new(u))),
        )?;
        return Ok(Val::Bool(ok));
    }
    if let S::Regex(op) = f {
        return regexes::call_static(m, op, args);
    }
    if let S::Zone(op) = f {
        return super::zones::call(m, op, args);
    }
    let a = m.values(args)?;
    match f {
        S::IsNullOrEmpty
        | S::IsNullOrWhiteSpace
        | S::StrEquals
        | S::Compare
        | S::Empty
        | S::Concat
        | S::Join
        | S::Format
        | S::NewGuid(_) => text_statics(m, f, &a),
        S::ParseInt
        | S::ParseDouble
        | S::ParseBool
        | S::ConvertBool
        | S::ConvertInt
        | S::ConvertDouble
        | S::ConvertString
        | S::ToBase64
        | S::FromBase64
        | S::GetBytes(_)
        | S::GetString(_) => conversions(m, f, &a),
        S::Max
        | S::Min
        | S::Abs
        | S::Round
        | S::Floor
        | S::Ceiling
        | S::Pow
        | S::Sqrt
        | S::IsDigit
        | S::IsLetter
        | S::IsLetterOrDigit
        | S::IsWhiteSpace
        | S::IsUpper
        | S::IsLower
        | S::CharToUpper
        | S::CharToLower
        | S::IsNaN
        | S::IsInfinity => math(f, &a),
        S::ContextTrace
        | S::IsLeapYear
        | S::DaysInMonth
        | S::GuidParse
        | S::DeepEquals
        | S::Narrow(_) => library(m, f, &a),
        S::TupleCreate => {
            let fields: Vec<(String, Val<'static>)> = a
                .into_vec()
                .into_iter()
                .enumerate()
                .map(|(i, v)| (format!("Item{}", i + 1), v.into_owned()))
                .collect();
            m.charge(64 * fields.len())?;
            Ok(Val::Dict(Rc::new(std::cell::RefCell::new(fields))))
        }
        S::ArrayCopy | S::ArrayIndexOf | S::ArrayReverse => arrays(m, f, &a),
        _ => json_and_urls(m, f, &a, generic),
    }
}

/// `string.*` and `Guid.NewGuid`.
fn text_statics<'e>(m: &mut Machine<'e>, f: S, a: &[Val<'e>]) -> Result<Val<'e>, EvalError> {
    let first = a.first().cloned().unwrap_or(Val::Null);
    Ok(match f {
        S::IsNullOrEmpty | S::IsNullOrWhiteSpace => {
            text_of(&first)?;
            let s = first.to_text();
            Val::Bool(if f == S::IsNullOrEmpty {
                s.is_empty()
            } else {
                s.trim().is_empty()
            })
        }
        S::StrEquals => {
            text_of(&a[0])?;
            text_of(&a[1])?;
            let ic = a.get(2) == Some(&Val::Flag(Flag::IgnoreCase));
            Val::Bool(match (&a[0], &a[1]) {
                (Val::Str(x), Val::Str(y)) if ic => x.to_lowercase() == y.to_lowercase(),
                (x, y) => x == y,
            })
        }
        S::Compare => {
            let ic = a.get(2) == Some(&Val::Flag(Flag::IgnoreCase))
                || a.get(2) == Some(&Val::Bool(true));
            let fold = |v: &Val| {
                let t = v.to_text().into_owned();
                if ic {
                    t.to_lowercase()
                } else {
                    t
                }
            };
            Val::Int(
                match linq::compare(&Val::str(fold(&a[0])), &Val::str(fold(&a[1]))) {
                    std::cmp::Ordering::Less => -1,
                    std::cmp::Ordering::Equal => 0,
                    std::cmp::Ordering::Greater => 1,
                },
            )
        }
        S::Empty => Val::Str(Cow::Borrowed("")),
        S::Concat => {
            let parts = match a {
                [v @ (Val::List(_) | Val::Json(Json::Array(_)))] => v.items()?,
                _ => a.iter().map(|v| v.clone().into_owned()).collect(),
            };
            let s: String = parts.iter().map(|v| v.to_text()).collect();
            m.text(s)?
        }
        S::Join => {
            let sep = a[0].to_text().into_owned();
            let parts = match &a[1..] {
                [v @ (Val::List(_) | Val::Json(Json::Array(_)) | Val::Dict(_) | Val::Group(_))] => {
                    v.items()?
                }
                rest => rest.iter().map(|v| v.clone().into_owned()).collect(),
            };
            m.ticks(parts.len())?;
            let texts: Vec<Cow<str>> = parts.iter().map(|v| v.to_text()).collect();
            m.text(texts.join(&sep))?
        }
        S::Format => {
            let Val::Str(fmt) = &a[0] else {
                return Err(err("string.Format needs a format string"));
            };
            let values = match &a[1..] {
                [Val::List(l)] => l.borrow().clone(),
                rest => rest.iter().map(|v| v.clone().into_owned()).collect(),
            };
            m.text(format::composite(fmt, &values)?)?
        }
        S::NewGuid(format) => m.text(numbers::new_guid(if format == 0 { b'D' } else { format }))?,
        _ => return Err(err("not a static member of this kind")),
    })
}

/// Parsing, `Convert.*` and `Encoding.*`.
fn conversions<'e>(m: &mut Machine<'e>, f: S, a: &[Val<'e>]) -> Result<Val<'e>, EvalError> {
    let first = a.first().cloned().unwrap_or(Val::Null);
    // `new byte[] { 1, 2 }` is a list of ints here: the byte[] takers take it as bytes
    let first = match f {
        S::ToBase64 | S::GetString(_) => byte_list(first),
        _ => first,
    };
    Ok(match f {
        S::ParseInt => match first {
            Val::Null => return Err(err("Value cannot be null (int.Parse)")),
            v => Val::Int(
                numbers::parse_int(arg_text(&v)?, a.get(1).unwrap_or(&Val::Null))
                    .ok_or(err("Input string was not in a correct format (int.Parse)"))?,
            ),
        },
        S::ParseDouble => Val::Double(
            numbers::parse_double(arg_text(&first)?, a.get(1).unwrap_or(&Val::Null)).ok_or(err(
                "Input string was not in a correct format (double.Parse)",
            ))?,
        ),
        S::ParseBool | S::ConvertBool => match first {
            Val::Bool(b) => Val::Bool(b),
            Val::Int(i) if f == S::ConvertBool => Val::Bool(i != 0),
            Val::Null if f == S::ConvertBool => Val::Bool(false),
            Val::Str(s) if s.trim().eq_ignore_ascii_case("true") => Val::Bool(true),
            Val::Str(s) if s.trim().eq_ignore_ascii_case("false") => Val::Bool(false),
            _ => return Err(err("String was not recognized as a valid Boolean")),
        },
        S::ConvertInt => {
            match first {
                Val::Null => Val::Int(0),
                Val::Int(n) => Val::Int(n),
                Val::Bool(b) => Val::Int(i64::from(b)),
                // Convert.ToInt32(double) rounds to even
                Val::Double(d) if d.is_finite() && d.abs() < 9.2e18 => {
                    Val::Int(d.round_ties_even() as i64)
                }
                // Convert.ToInt32(text, fromBase): 2, 8, 10 or 16
                Val::Str(s) if matches!(a.get(1), Some(Val::Int(_))) => {
                    let radix = match a.get(1) {
                        Some(Val::Int(b @ (2 | 8 | 10 | 16))) => *b as u32,
                        _ => return Err(err("Invalid Base (Convert.ToInt32)")),
                    };
                    let t = s.trim();
                    let t = match radix {
                        16 => t.trim_start_matches("0x").trim_start_matches("0X"),
                        _ => t,
                    };
                    Val::Int(i64::from_str_radix(t, radix).map_err(|_| {
                        err("Could not find any recognizable digits (Convert.ToInt32)")
                    })?)
                }
                Val::Str(s) => Val::Int(s.trim().parse().map_err(|_| {
                    err("Input string was not in a correct format (Convert.ToInt32)")
                })?),
                _ => return Err(err("the value cannot be converted to an int")),
            }
        }
        S::ConvertDouble => {
            match first {
                Val::Null => Val::Double(0.0),
                Val::Str(s) => Val::Double(s.trim().parse().map_err(|_| {
                    err("Input string was not in a correct format (Convert.ToDouble)")
                })?),
                Val::Bool(b) => Val::Double(f64::from(u8::from(b))),
                v => Val::Double(number(&v)?),
            }
        }
        // Convert.ToString(value, toBase): 2, 8, 10 or 16, negatives in two's complement
        S::ConvertString if matches!(a.get(1), Some(Val::Int(_))) => {
            let (Val::Int(n), Some(Val::Int(radix))) = (&first, a.get(1)) else {
                return Err(err("Convert.ToString(value, toBase) takes an integer"));
            };
            let n = *n as u64;
            let s = match radix {
                2 => format!("{n:b}"),
                8 => format!("{n:o}"),
                10 => (n as i64).to_string(),
                16 => format!("{n:x}"),
                _ => return Err(err("Invalid Base (Convert.ToString)")),
            };
            m.text(s)?
        }
        S::ConvertString => {
            let s = first.to_text().into_owned();
            m.text(s)?
        }
        S::ToBase64 => match &first {
            Val::Bytes(b) => m.text(format::base64(b))?,
            _ => return Err(err("Convert.ToBase64String takes a byte[]")),
        },
        S::FromBase64 => {
            let bytes = format::from_base64(arg_text(&first)?)?;
            m.charge(bytes.len())?;
            Val::Bytes(Rc::new(bytes))
        }
        S::GetBytes(ascii) => {
            let s = arg_text(&first)?;
            m.charge(s.len())?;
            let bytes = if ascii {
                s.chars()
                    .map(|c| if c.is_ascii() { c as u8 } else { b'?' })
                    .collect()
            } else {
                s.as_bytes().to_vec()
            };
            Val::Bytes(Rc::new(bytes))
        }
        S::GetString(ascii) => match &first {
            Val::Bytes(b) => {
                let s = if ascii {
                    b.iter()
                        .map(|x| if x.is_ascii() { char::from(*x) } else { '?' })
                        .collect()
                } else {
                    String::from_utf8_lossy(b).into_owned()
                };
                m.text(s)?
            }
            _ => return Err(err("GetString takes a byte[]")),
        },
        _ => return Err(err("not a static member of this kind")),
    })
}

/// `Math.*` and `char.*`.
fn math<'e>(f: S, a: &[Val<'e>]) -> Result<Val<'e>, EvalError> {
    let first = a.first().cloned().unwrap_or(Val::Null);
    Ok(match f {
        S::IsNaN => Val::Bool(number(&first)?.is_nan()),
        S::IsInfinity => Val::Bool(number(&first)?.is_infinite()),
        S::Max | S::Min => match (&a[0], &a[1]) {
            (Val::Int(x), Val::Int(y)) => Val::Int(if f == S::Max { *x.max(y) } else { *x.min(y) }),
            (x, y) => {
                let (x, y) = (number(x)?, number(y)?);
                Val::Double(if f == S::Max { x.max(y) } else { x.min(y) })
            }
        },
        S::Abs => match first {
            Val::Int(i) => Val::Int(i.checked_abs().ok_or(err(
                "Negating the minimum value of a twos complement number is invalid",
            ))?),
            v => Val::Double(number(&v)?.abs()),
        },
        // Round(x), Round(x, digits), Round(x, mode), Round(x, digits, mode)
        S::Round => {
            let (digits, mode) = match (a.get(1), a.get(2)) {
                (None, _) => (0, Flag::ToEven),
                (Some(Val::Flag(f)), None) => (0, *f),
                (Some(Val::Int(d)), mode) if (0..=15).contains(d) => {
                    let mode = match mode {
                        Some(Val::Flag(f)) => *f,
                        _ => Flag::ToEven,
                    };
                    (*d as i32, mode)
                }
                _ => return Err(err("Rounding digits must be between 0 and 15, inclusive")),
            };
            match first {
                Val::Int(i) => Val::Int(i),
                v => {
                    // as .NET: scale, round the scaled value by the mode, scale back
                    let scale = 10f64.powi(digits);
                    let x = number(&v)? * scale;
                    let r = match mode {
                        Flag::AwayFromZero => x.round(),
                        Flag::ToZero => x.trunc(),
                        Flag::ToNegativeInfinity => x.floor(),
                        Flag::ToPositiveInfinity => x.ceil(),
                        _ => x.round_ties_even(),
                    };
                    Val::Double(r / scale)
                }
            }
        }
        S::Floor | S::Ceiling => match first {
            Val::Int(i) => Val::Int(i),
            v => {
                let x = number(&v)?;
                Val::Double(if f == S::Floor { x.floor() } else { x.ceil() })
            }
        },
        S::Pow => Val::Double(number(&a[0])?.powf(number(&a[1])?)),
        S::Sqrt => Val::Double(number(&first)?.sqrt()),
        S::IsDigit => char_test(&first, |c| c.is_ascii_digit())?,
        S::IsLetter => char_test(&first, char::is_alphabetic)?,
        S::IsLetterOrDigit => char_test(&first, char::is_alphanumeric)?,
        S::IsWhiteSpace => char_test(&first, char::is_whitespace)?,
        S::IsUpper => char_test(&first, char::is_uppercase)?,
        S::IsLower => char_test(&first, char::is_lowercase)?,
        S::CharToUpper => Val::Str(Cow::Owned(arg_text(&first)?.to_uppercase())),
        S::CharToLower => Val::Str(Cow::Owned(arg_text(&first)?.to_lowercase())),
        _ => return Err(err("not a static member of this kind")),
    })
}

/// The narrowing casts: bits and signedness, by `S::Narrow`'s index.
const NARROW: [(u32, bool); 6] = [
    (8, false),
    (8, true),
    (16, true),
    (16, false),
    (32, true),
    (32, false),
];

/// `S::Narrow`'s index for a cast to `name`, when it narrows a 64-bit int.
pub(super) fn narrow_of(name: &str) -> Option<u8> {
    Some(match name {
        "byte" | "Byte" => 0,
        "sbyte" | "SByte" => 1,
        "short" | "Int16" => 2,
        "ushort" | "UInt16" => 3,
        "int" | "Int32" => 4,
        "uint" | "UInt32" => 5,
        _ => return None,
    })
}

/// `Array.Copy(source, [sourceIndex,] destination, [destinationIndex,] length)` into a
/// list (`new byte[n]`, `new int[n]`…), `Array.IndexOf`, `Array.Reverse` in place.
fn arrays<'e>(m: &mut Machine<'e>, f: S, a: &[Val<'e>]) -> Result<Val<'e>, EvalError> {
    const RANGE: EvalError = err("Source array was not long enough. Check the source index, length, and the array's lower bounds. (Parameter 'sourceArray')");
    const SHORT: EvalError = err("Destination array was not long enough. Check the destination index, length, and the array's lower bounds. (Parameter 'destinationArray')");
    let index = |v: &Val| match v {
        Val::Int(i) => usize::try_from(*i).map_err(|_| err("Non-negative number required.")),
        _ => Err(err("Array.Copy takes indexes and a length")),
    };
    Ok(match f {
        S::ArrayCopy => {
            let (src, si, dst, di, len) = match a {
                [s, d, n] => (s, 0, d, 0, index(n)?),
                [s, si, d, di, n] => (s, index(si)?, d, index(di)?, index(n)?),
                _ => return Err(err("Array.Copy takes 3 or 5 arguments")),
            };
            let items = src.items()?;
            let Val::List(dst) = dst else {
                return Err(err("Array.Copy writes into an array"));
            };
            let part = items
                .get(si..si.checked_add(len).ok_or(RANGE)?)
                .ok_or(RANGE)?;
            let mut d = dst.borrow_mut();
            let slot = d
                .get_mut(di..di.checked_add(len).ok_or(SHORT)?)
                .ok_or(SHORT)?;
            m.ticks(len)?;
            slot.clone_from_slice(part);
            Val::Null
        }
        S::ArrayIndexOf => {
            let items = a.first().map(Val::items).transpose()?.unwrap_or_default();
            let want = a.get(1).cloned().unwrap_or(Val::Null);
            m.ticks(items.len())?;
            Val::Int(
                items
                    .iter()
                    .position(|v| *v == want)
                    .map_or(-1, |i| i as i64),
            )
        }
        _ => {
            if let Some(Val::List(l)) = a.first() {
                l.borrow_mut().reverse();
            }
            Val::Null
        }
    })
}

/// `context.Trace`, the calendar's `DateTime.IsLeapYear` / `DaysInMonth`,
/// `Guid.Parse` and `JToken.DeepEquals`.
fn library<'e>(m: &mut Machine<'e>, f: S, a: &[Val<'e>]) -> Result<Val<'e>, EvalError> {
    let first = a.first().cloned().unwrap_or(Val::Null);
    Ok(match f {
        S::Narrow(n) => {
            let (bits, signed) = NARROW.get(usize::from(n)).copied().unwrap_or((64, true));
            match first {
                Val::Int(i) if bits < 64 => {
                    let low = (i as u64) & ((1u64 << bits) - 1);
                    let top = 1u64 << (bits - 1);
                    Val::Int(if signed && low & top != 0 {
                        low as i64 - (1i64 << bits)
                    } else {
                        low as i64
                    })
                }
                v => v,
            }
        }
        S::ContextTrace => {
            let message = first.to_text().into_owned();
            m.ticks(message.len() / 64 + 1)?;
            m.env.trace(&message);
            Val::Null
        }
        S::IsLeapYear | S::DaysInMonth => {
            let (Val::Int(y), month) = (&first, a.get(1)) else {
                return Err(err("DateTime.IsLeapYear and DaysInMonth take a year"));
            };
            if !(1..=9999).contains(y) {
                return Err(err("Year must be between 1 and 9999."));
            }
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            match (f, month) {
                (S::IsLeapYear, _) => Val::Bool(leap),
                (_, Some(Val::Int(mo @ 1..=12))) => Val::Int(match mo {
                    2 if leap => 29,
                    2 => 28,
                    4 | 6 | 9 | 11 => 30,
                    _ => 31,
                }),
                _ => return Err(err("Month must be between one and twelve.")),
            }
        }
        S::GuidParse => m.text(numbers::guid_of(arg_text(&first)?).ok_or(err(
            "Guid should contain 32 digits with 4 dashes (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
        ))?)?,
        S::DeepEquals => {
            let other = a.get(1).cloned().unwrap_or(Val::Null);
            m.ticks(8)?;
            Val::Bool(to_json(&first)?.deep_equals(&to_json(&other)?))
        }
        _ => return Err(err("not a static member of this kind")),
    })
}

/// `JObject.Parse`, `JsonConvert.*`, `Uri.*` and `WebUtility.*`.
fn json_and_urls<'e>(
    m: &mut Machine<'e>,
    f: S,
    a: &[Val<'e>],
    generic: Option<Ty>,
) -> Result<Val<'e>, EvalError> {
    let first = a.first().cloned().unwrap_or(Val::Null);
    // `new byte[] { 1, 2 }` is a list of ints here: the byte[] takers take it as bytes
    let first = match f {
        S::BitConverter | S::ToHex => byte_list(first),
        _ => first,
    };
    Ok(match f {
        S::XParse(document) => {
            let text = arg_text(&first)?;
            m.ticks(text.len() / 64)?;
            xml::parse_value(m, text, document)?
        }
        S::XNamespaceGet => Val::Xml(xml::Xv::Ns(std::rc::Rc::from(&*first.to_text()))),
        S::XNamespaceConst(i) => {
            let uri = XML_NAMESPACES.get(usize::from(i)).copied().unwrap_or("");
            Val::Xml(xml::Xv::Ns(std::rc::Rc::from(uri)))
        }
        S::Range | S::Repeat => {
            let count = match a.get(1) {
                Some(Val::Int(n)) if *n >= 0 => *n as usize,
                _ => {
                    return Err(err(
                        "Specified argument was out of the range of valid values (count)",
                    ))
                }
            };
            m.ticks(count)?;
            m.charge(count.saturating_mul(16))?;
            match (f, &first) {
                (S::Range, Val::Int(start)) => {
                    let end = start
                        .checked_add(count as i64)
                        .ok_or(err("Arithmetic operation resulted in an overflow"))?;
                    list((*start..end).map(Val::Int).collect())
                }
                (S::Range, _) => return Err(err("Enumerable.Range takes ints")),
                _ => list(vec![first.clone().into_owned(); count]),
            }
        }
        S::EmptyList => list(Vec::new()),
        S::UriWellFormed => match a.get(1) {
            // a relative reference is well formed when it has no scheme and no spaces
            Some(Val::Flag(Flag::UriRelative)) => {
                let t = first.to_text();
                Val::Bool(!t.contains("://") && !t.contains(' '))
            }
            _ => Val::Bool(
                uri::Uri::parse(&first.to_text()).is_ok() && !first.to_text().contains(' '),
            ),
        },
        S::XNameGet => match a.get(1) {
            Some(ns) => xml::join_name(&ns.to_text(), arg_text(&first)?)?,
            None => Val::Xml(xml::Xv::Name(xml::name_of(&first)?)),
        },
        S::JsonParse(kind) => {
            let text = arg_text(&first)?;
            m.charge(text.len() * 4)?;
            m.ticks(text.len() / 64)?;
            let j = json::parse(text)?;
            match (kind, &j) {
                (Ty::JObject, Json::Object(_)) | (Ty::JArray, Json::Array(_)) | (Ty::JToken, _) => from_json(&j),
                (Ty::JObject, _) => return Err(err("Error reading JObject from JsonReader. Current JsonReader item is not an object")),
                _ => return Err(err("Error reading JArray from JsonReader. Current JsonReader item is not an array")),
            }
        }
        S::FromObject => {
            let j = to_json(&first)?;
            m.charge(64)?;
            from_json(&j)
        }
        S::Serialize => {
            let indented = a.get(1) == Some(&Val::Flag(Flag::Indented));
            let text = to_json(&first)?.print(indented)?;
            m.text(text)?
        }
        S::Deserialize => {
            let text = arg_text(&first)?;
            m.charge(text.len() * 4)?;
            let j = json::parse(text)?;
            collections::convert(m, &j, generic.unwrap_or(Ty::Any))?
        }
        S::EscapeDataString => m.text(escape(arg_text(&first)?, false))?,
        S::RegexEscape => m.text(regexes::escape(arg_text(&first)?))?,
        S::BitConverter | S::ToHex => match &first {
            Val::Bytes(b) => m.text(if f == S::ToHex {
                hashes::hex(b)
            } else {
                hashes::bit_converter(b)
            })?,
            _ => {
                return Err(err(
                    "BitConverter.ToString and Convert.ToHexString take a byte[]",
                ))
            }
        },
        S::FromHex => Val::Bytes(Rc::new(hashes::from_hex(arg_text(&first)?)?)),
        S::HashCreate(algo) => Val::Hasher(Rc::new(hashes::Hasher { algo, key: None })),
        S::HashData(algo) | S::HmacData(algo) => {
            let (key, data) = match (f, a) {
                (S::HmacData(_), [Val::Bytes(k), Val::Bytes(d)]) => (Some(k.to_vec()), d),
                (S::HashData(_), [Val::Bytes(d)]) => (None, d),
                _ => return Err(err("HashData takes byte[] arguments")),
            };
            m.ticks(data.len() / 64 + 1)?;
            Val::Bytes(Rc::new(hashes::Hasher { algo, key }.compute(data)?))
        }
        S::UrlEncode => match first {
            Val::Null => Val::Null,
            v => m.text(escape(arg_text(&v)?, true))?,
        },
        S::UnescapeDataString => m.text(unescape(arg_text(&first)?, false))?,
        S::HtmlEncode | S::HtmlDecode => match first {
            Val::Null => Val::Null,
            v if f == S::HtmlEncode => m.text(format::html_encode(arg_text(&v)?))?,
            v => m.text(format::html_decode(arg_text(&v)?))?,
        },
        S::UrlDecode => match first {
            Val::Null => Val::Null,
            v => m.text(unescape(arg_text(&v)?, true))?,
        },
        S::TryParseInt | S::TryParseDouble | S::TryParseBool => Val::Null,
        _ => return Err(err("not a static member of this kind")),
    })
}

/// `Uri.EscapeDataString` (RFC 3986 unreserved kept) or `WebUtility.UrlEncode` (space
/// as '+', also `!*()` kept).
fn escape(s: &str, form: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(char::from(b)),
            b'~' if !form => out.push('~'),
            b'!' | b'*' | b'(' | b')' if form => out.push(char::from(b)),
            b' ' if form => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `WebUtility.UrlEncode` (Liquid's url_encode).
pub(super) fn escape_form(s: &str) -> String {
    escape(s, true)
}

pub(super) fn unescape(s: &str, form: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' if form => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| char::from(c).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// XNamespace.Xmlns, .Xml, .None.
const XML_NAMESPACES: [&str; 3] = [
    "http://www.w3.org/2000/xmlns/",
    "http://www.w3.org/XML/1998/namespace",
    "",
];

/// A list of ints 0–255 as a byte[] (an element never set, as in `new byte[16]`, is
/// 0); anything else as it is.
pub(super) fn byte_list(v: Val) -> Val {
    let Val::List(items) = &v else {
        return v;
    };
    let bytes: Option<Vec<u8>> = items
        .borrow()
        .iter()
        .map(|x| match x {
            Val::Int(i) => u8::try_from(*i).ok(),
            Val::Null => Some(0),
            _ => None,
        })
        .collect();
    match bytes {
        Some(b) => Val::Bytes(Rc::new(b)),
        None => v,
    }
}

pub(super) fn new<'e>(
    m: &mut Machine<'e>,
    kind: NewKind,
    args: &'e [Node],
    items: &'e [Node],
) -> Result<Val<'e>, EvalError> {
    let a = m.values(args)?;
    m.charge(64)?;
    // the key and value of an initializer pair
    let pair =
        |m: &mut Machine<'e>, item: &'e Node| -> Result<Option<(Val<'e>, Val<'e>)>, EvalError> {
            match item {
                Node::New(NewKind::Pair, kv, _) if kv.len() == 2 => {
                    Ok(Some((m.eval(&kv[0])?, m.eval(&kv[1])?)))
                }
                _ => Ok(None),
            }
        };
    Ok(match kind {
        NewKind::JObject => {
            let obj = Json::new_object();
            let this = Val::Json(obj.clone());
            for v in a.iter() {
                add_to_object(m, &obj, v)?;
            }
            for item in items {
                match pair(m, item)? {
                    Some((k, v)) => m.set_index(&this, &k, v)?,
                    None => {
                        let v = m.eval(item)?;
                        add_to_object(m, &obj, &v)?;
                    }
                }
            }
            this
        }
        NewKind::JArray => {
            let arr = Json::new_array(Vec::new());
            let sources: Vec<Val<'e>> = match a.as_slice() {
                [v @ (Val::List(_) | Val::Json(Json::Array(_)))] => {
                    v.items()?.into_iter().collect()
                }
                _ => a.into_vec(),
            };
            let mut values = sources;
            for item in items {
                values.push(m.eval(item)?);
            }
            for v in &values {
                let j = m.json_item(&arr, v)?;
                if let Json::Array(inner) = &arr {
                    inner.borrow_mut().push(j);
                }
            }
            Val::Json(arr)
        }
        NewKind::JProperty => match a.as_slice() {
            [name, value] => Val::Prop(Rc::new((name.to_text().into_owned(), to_json(value)?))),
            _ => return Err(err("new JProperty takes a name and a value")),
        },
        NewKind::JValue => a.into_vec().into_iter().next().unwrap_or(Val::Null),
        NewKind::List | NewKind::Array => {
            let mut out: Vec<Val<'static>> = match a.as_slice() {
                // new T[n]: n of T's default value
                [Val::Int(n), default] if kind == NewKind::Array => {
                    let n = usize::try_from(*n)
                        .map_err(|_| err("Arithmetic operation resulted in an overflow"))?;
                    m.charge(n.saturating_mul(32))?;
                    vec![default.clone().into_owned(); n]
                }
                // new List<T>(capacity)
                [Val::Int(_)] => Vec::new(),
                [v] => v.items()?,
                _ => Vec::new(),
            };
            for item in items {
                out.push(m.eval(item)?.into_owned());
            }
            m.charge(out.len() * 32)?;
            list(out)
        }
        NewKind::Dict => {
            let d = Val::Dict(Rc::new(RefCell::new(Vec::new())));
            if let [Val::Dict(src)] = a.as_slice() {
                if let Val::Dict(dst) = &d {
                    *dst.borrow_mut() = src.borrow().clone();
                }
            }
            for item in items {
                let (k, v) = pair(m, item)?
                    .ok_or(err("a dictionary initializer takes { key, value } pairs"))?;
                m.set_index(&d, &k, v)?;
            }
            d
        }
        NewKind::Builder => {
            let init = match a.first() {
                Some(Val::Str(s)) => s.to_string(),
                _ => String::new(),
            };
            m.charge(init.len())?;
            Val::Builder(Rc::new(RefCell::new(init)))
        }
        NewKind::Exception(kind) => Val::Error(Rc::new(exceptions::Exception {
            kind: exceptions::by_index(kind),
            message: a
                .first()
                .map_or(Cow::Borrowed(""), Val::to_text)
                .into_owned(),
        })),
        NewKind::Hash(algo, hmac) => {
            let key = match (hmac, a.first()) {
                (false, _) => None,
                (true, Some(Val::Bytes(k))) => Some(k.to_vec()),
                // new HMACSHA256() takes a random key in .NET
                (true, None) => Some(numbers::new_guid(b'N').into_bytes()),
                (true, Some(_)) => {
                    return Err(err(
                        "an HMAC key is a byte[] (Encoding.UTF8.GetBytes(secret))",
                    ))
                }
            };
            Val::Hasher(Rc::new(hashes::Hasher { algo, key }))
        }
        NewKind::DateTime | NewKind::DateTimeOffset | NewKind::TimeSpan => dates::new(
            kind == NewKind::TimeSpan,
            kind == NewKind::DateTimeOffset,
            &a,
        )?,
        NewKind::Pair => return Err(err("an initializer pair outside an initializer")),
        NewKind::XElement
        | NewKind::XAttribute
        | NewKind::XDocument
        | NewKind::Uri
        | NewKind::Str
        | NewKind::Random
        | NewKind::Guid
        | NewKind::Regex => new_library(m, kind, &a)?,
    })
}

/// `new` of System.Xml.Linq's types, Uri, string and Random.
fn new_library<'e>(
    m: &mut Machine<'e>,
    kind: NewKind,
    a: &[Val<'e>],
) -> Result<Val<'e>, EvalError> {
    Ok(match kind {
        NewKind::XElement => xml::new_element(m, a)?,
        NewKind::XAttribute => xml::new_attribute(m, a)?,
        NewKind::XDocument => xml::new_document(m, a)?,
        NewKind::Uri => uri::new_uri(a)?,
        NewKind::Regex => match a.first() {
            Some(v @ Val::Re(_)) => v.clone(),
            Some(Val::Str(p)) => {
                let options = match a.get(1) {
                    Some(Val::Int(o)) => *o,
                    _ => 0,
                };
                m.ticks(p.len() * 16 + 100)?;
                let re = regexes::compile(p, options).map_err(|e| EvalError(Cow::Owned(e)))?;
                Val::Re(Rc::new(regexes::Re::Pattern(re)))
            }
            _ => return Err(err("new Regex takes a pattern")),
        },
        NewKind::Guid => {
            let text = match a.first().cloned().map(byte_list) {
                Some(Val::Bytes(b)) => numbers::guid_of_bytes(&b),
                Some(Val::Str(s)) => numbers::guid_of(&s),
                _ => None,
            };
            m.text(text.ok_or(err("new Guid takes 16 bytes or a GUID's text"))?)?
        }
        NewKind::Random => Val::Random(Rc::new(std::cell::Cell::new(numbers::random_seed(
            a.first(),
        )))),
        NewKind::Str => {
            let text = match a {
                [Val::Str(c), Val::Int(n)] if c.chars().count() == 1 => {
                    let n =
                        usize::try_from(*n).map_err(|_| err("Count cannot be less than zero"))?;
                    m.charge(n.saturating_mul(c.len()))?;
                    c.repeat(n)
                }
                [chars] => chars.items()?.iter().map(|c| c.to_text()).collect(),
                _ => return Err(err("new string takes a char[] or a char and a count")),
            };
            m.text(text)?
        }
        _ => return Err(err("not a library type")),
    })
}

/// `new JObject(x)`: a JProperty, a JObject whose properties are copied, or a list of
/// JProperty.
fn add_to_object(m: &mut Machine, obj: &Json, v: &Val) -> Result<(), EvalError> {
    match v {
        Val::Prop(p) => {
            let value = m.json_item(obj, &from_json(&p.1))?;
            obj.set(&p.0, value)
        }
        Val::Json(Json::Object(o)) => {
            let props: Vec<(String, Json)> = o
                .borrow()
                .iter()
                .map(|(k, v)| (k.clone(), v.deep_clone()))
                .collect();
            for (k, v) in props {
                obj.set(&k, v)?;
            }
            Ok(())
        }
        Val::List(l) => {
            let items = l.borrow().clone();
            for item in &items {
                add_to_object(m, obj, item)?;
            }
            Ok(())
        }
        Val::Null => Ok(()),
        _ => Err(err(
            "Can not add a value to a JObject: it takes JProperty values",
        )),
    }
}
