//! DateTime, DateTimeOffset and TimeSpan in expressions: their members, their static
//! members (`DateTime.UtcNow`, `Parse`, `ParseExact`, `TimeSpan.FromMinutes`, …), their
//! constructors and their operators. The calendar itself is datetime.rs; the clock comes
//! from the environment (`Env::now_ms`).
//! Must not touch: other types' members, syntax.

use std::borrow::Cow;

use super::datetime::{self as dt, Instant, Kind};
use super::eval::Machine;
use super::members::{not_a_member, M};
use super::*;

/// DateTimeStyles, as .NET numbers them (the ones that change a result here; the others
/// are accepted and change nothing, since parsing already allows white space).
const ADJUST_TO_UNIVERSAL: i64 = 16;
const ASSUME_LOCAL: i64 = 32;
const ASSUME_UNIVERSAL: i64 = 64;

pub(super) fn style(name: &str) -> Option<i64> {
    Some(match name {
        "None" => 0,
        "AllowLeadingWhite" => 1,
        "AllowTrailingWhite" => 2,
        "AllowInnerWhite" => 4,
        "AllowWhiteSpaces" => 7,
        "NoCurrentDateDefault" => 8,
        "AdjustToUniversal" => ADJUST_TO_UNIVERSAL,
        "AssumeLocal" => ASSUME_LOCAL,
        "AssumeUniversal" => ASSUME_UNIVERSAL,
        "RoundtripKind" => 128,
        _ => return None,
    })
}

/// A parsed DateTime with the styles applied: a time without a zone is taken as
/// universal or local (both UTC here) with Assume*, and AdjustToUniversal gives it the
/// Utc kind.
fn styled(t: Instant, styles: i64) -> Instant {
    let mut t = t;
    if t.kind == Kind::Unspecified && styles & (ASSUME_LOCAL | ASSUME_UNIVERSAL) != 0 {
        t.kind = Kind::Local;
    }
    if styles & ADJUST_TO_UNIVERSAL != 0 {
        t.kind = Kind::Utc;
    }
    t
}

/// Static members of DateTime, DateTimeOffset and TimeSpan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DateFn {
    UtcNow,
    Now,
    Today,
    MinValue,
    MaxValue,
    Parse,
    TryParse,
    ParseExact,
    OffsetUtcNow,
    OffsetNow,
    OffsetParse,
    FromUnixSeconds,
    FromUnixMilliseconds,
    /// TimeSpan.FromX: ticks per unit.
    SpanFrom(i64),
    SpanZero,
    SpanParse,
}

/// `ty.member` for the date types, with its arity (`None`: a property).
pub(super) fn lookup(ty: &str, member: &str) -> Option<(DateFn, Option<(usize, usize)>)> {
    use DateFn::*;
    let prop = |f| Some((f, None));
    let call = |f, min, max| Some((f, Some((min, max))));
    match (ty, member) {
        ("DateTime", "UtcNow") => prop(UtcNow),
        ("DateTime", "Now") => prop(Now),
        ("DateTime", "Today") => prop(Today),
        ("DateTime", "MinValue") => prop(MinValue),
        ("DateTime", "MaxValue") => prop(MaxValue),
        ("DateTime", "Parse") => call(Parse, 1, 3),
        ("DateTime", "TryParse") => call(TryParse, 2, 4),
        ("DateTime", "ParseExact") => call(ParseExact, 2, 4),
        ("DateTimeOffset", "UtcNow") => prop(OffsetUtcNow),
        ("DateTimeOffset", "Now") => prop(OffsetNow),
        ("DateTimeOffset", "Parse") => call(OffsetParse, 1, 3),
        ("DateTimeOffset", "FromUnixTimeSeconds") => call(FromUnixSeconds, 1, 1),
        ("DateTimeOffset", "FromUnixTimeMilliseconds") => call(FromUnixMilliseconds, 1, 1),
        ("TimeSpan", "FromDays") => call(SpanFrom(dt::TICKS_PER_DAY), 1, 1),
        ("TimeSpan", "FromHours") => call(SpanFrom(dt::TICKS_PER_HOUR), 1, 1),
        ("TimeSpan", "FromMinutes") => call(SpanFrom(dt::TICKS_PER_MINUTE), 1, 1),
        ("TimeSpan", "FromSeconds") => call(SpanFrom(dt::TICKS_PER_SECOND), 1, 1),
        ("TimeSpan", "FromMilliseconds") => call(SpanFrom(dt::TICKS_PER_MS), 1, 1),
        ("TimeSpan", "FromTicks") => call(SpanFrom(1), 1, 1),
        ("TimeSpan", "Zero") => prop(SpanZero),
        ("TimeSpan", "Parse") => call(SpanParse, 1, 2),
        _ => None,
    }
}

const NOT_A_NUMBER: EvalError = err("a number argument is not a number");

fn number(v: &Val) -> Result<f64, EvalError> {
    match v {
        Val::Int(i) => Ok(*i as f64),
        Val::Double(d) => Ok(*d),
        _ => Err(NOT_A_NUMBER),
    }
}

fn int(v: &Val) -> Result<i64, EvalError> {
    match v {
        Val::Int(i) => Ok(*i),
        _ => Err(err("an int argument is not an int")),
    }
}

/// Ticks of `units` of `per` ticks each, rounded to the millisecond as .NET's FromX do.
fn span_of(units: f64, per: i64) -> Result<i64, EvalError> {
    let ticks = units * per as f64;
    if !ticks.is_finite() || ticks.abs() > 9.2e18 {
        return Err(err("TimeSpan overflowed because the duration is too long"));
    }
    Ok(if per == 1 {
        ticks as i64
    } else {
        (ticks / dt::TICKS_PER_MS as f64).round() as i64 * dt::TICKS_PER_MS
    })
}

fn now(m: &Machine, kind: Kind) -> Result<Instant, EvalError> {
    Instant::from_unix_ms(m.env.now_ms() as i64, kind)
}

pub(super) fn call<'e>(
    m: &mut Machine<'e>,
    f: DateFn,
    args: &'e [Node],
) -> Result<Val<'e>, EvalError> {
    use DateFn::*;
    if f == TryParse {
        let text = m.eval(
            args.first()
                .ok_or(err("TryParse takes a text and an out variable"))?,
        )?;
        let parsed = match &text {
            Val::Str(s) => dt::parse(s).and_then(Instant::to_datetime).ok(),
            _ => None,
        };
        let ok = parsed.is_some();
        let out = args.iter().rev().find(|a| matches!(a, Node::Out(_)));
        let value = parsed.map_or(Val::Date(Instant::new(0, Kind::Unspecified)?), Val::Date);
        m.write_out(out, value)?;
        return Ok(Val::Bool(ok));
    }
    let a = m.values(args)?;
    let text = |i: usize| -> Result<&str, EvalError> {
        match a.get(i) {
            Some(Val::Str(s)) => Ok(s),
            Some(Val::Null) => Err(err("String reference not set to an instance of a String")),
            _ => Err(err("a string argument is missing or not a string")),
        }
    };
    Ok(match f {
        UtcNow => Val::Date(now(m, Kind::Utc)?),
        Now => Val::Date(now(m, Kind::Local)?),
        Today => {
            let t = now(m, Kind::Local)?;
            Val::Date(t.with_ticks(t.ticks - t.ticks.rem_euclid(dt::TICKS_PER_DAY))?)
        }
        MinValue => Val::Date(Instant::new(0, Kind::Unspecified)?),
        MaxValue => Val::Date(Instant::new(dt::MAX_TICKS, Kind::Unspecified)?),
        Parse => Val::Date(styled(dt::parse(text(0)?)?.to_datetime()?, styles(&a))),
        ParseExact => {
            let formats: Vec<String> = match a.get(1) {
                Some(Val::Str(f)) => vec![f.to_string()],
                Some(Val::List(l)) => l
                    .borrow()
                    .iter()
                    .map(|f| f.to_text().into_owned())
                    .collect(),
                _ => return Err(err("ParseExact takes a format")),
            };
            let mut last = err("String was not recognized as a valid DateTime");
            let mut parsed = None;
            for f in &formats {
                match dt::parse_exact(text(0)?, f) {
                    Ok(t) => {
                        parsed = Some(t);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            Val::Date(styled(parsed.ok_or(last)?.to_datetime()?, styles(&a)))
        }
        OffsetUtcNow | OffsetNow => Val::Date(now(m, Kind::Utc)?.to_offset()),
        OffsetParse => Val::Date(dt::parse(text(0)?)?.to_offset()),
        FromUnixSeconds => {
            let ms = int(&a[0])?.checked_mul(1000).ok_or(err(
                "Valid values are between -62135596800 and 253402300799, inclusive",
            ))?;
            Val::Date(Instant::from_unix_ms(ms, Kind::Utc)?.to_offset())
        }
        FromUnixMilliseconds => {
            Val::Date(Instant::from_unix_ms(int(&a[0])?, Kind::Utc)?.to_offset())
        }
        SpanFrom(per) => Val::Span(span_of(number(&a[0])?, per)?),
        SpanZero => Val::Span(0),
        SpanParse => Val::Span(parse_span(text(0)?)?),
        TryParse => Val::Null,
    })
}

/// The DateTimeStyles argument of a Parse call (after the text and the culture).
fn styles(a: &[Val]) -> i64 {
    a.iter()
        .skip(1)
        .find_map(|v| match v {
            Val::Int(i) => Some(*i),
            _ => None,
        })
        .unwrap_or(0)
}

/// `TimeSpan.Parse`: `[-][d.]hh:mm[:ss[.fffffff]]` or a whole number of days.
fn parse_span(s: &str) -> Result<i64, EvalError> {
    let bad = err("String was not recognized as a valid TimeSpan");
    let s = s.trim();
    let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
    let (days, clock) = match s.split_once(':') {
        None => (s.parse::<i64>().map_err(|_| bad.clone())?, "0:0"),
        Some(_) => match s.split_once('.') {
            Some((d, rest)) if !d.contains(':') => {
                (d.parse::<i64>().map_err(|_| bad.clone())?, rest)
            }
            _ => (0, s),
        },
    };
    let mut f = clock.split(':');
    let h: i64 = f
        .next()
        .ok_or(bad.clone())?
        .parse()
        .map_err(|_| bad.clone())?;
    let mi: i64 = f
        .next()
        .ok_or(bad.clone())?
        .parse()
        .map_err(|_| bad.clone())?;
    let (sec, frac) = match f.next() {
        Some(sf) => {
            let (w, fr) = sf.split_once('.').unwrap_or((sf, ""));
            let frac: i64 = if fr.is_empty() {
                0
            } else {
                format!("{fr:0<7}")
                    .get(..7)
                    .ok_or(bad.clone())?
                    .parse()
                    .map_err(|_| bad.clone())?
            };
            (w.parse::<i64>().map_err(|_| bad.clone())?, frac)
        }
        None => (0, 0),
    };
    if h > 23 || mi > 59 || sec > 59 || !(0..=10_675_199).contains(&days) {
        return Err(bad);
    }
    let t = days * dt::TICKS_PER_DAY
        + h * dt::TICKS_PER_HOUR
        + mi * dt::TICKS_PER_MINUTE
        + sec * dt::TICKS_PER_SECOND
        + frac;
    Ok(if neg { -t } else { t })
}

/// `new DateTime(...)`, `new TimeSpan(...)`, `new DateTimeOffset(...)`.
pub(super) fn new<'e>(span: bool, offset: bool, a: &[Val<'e>]) -> Result<Val<'e>, EvalError> {
    if span {
        let n: Vec<i64> = a.iter().map(int).collect::<Result<_, _>>()?;
        let ticks = match n.as_slice() {
            [ticks] => *ticks,
            [h, m, s] => {
                h * dt::TICKS_PER_HOUR + m * dt::TICKS_PER_MINUTE + s * dt::TICKS_PER_SECOND
            }
            [d, h, m, s] => {
                d * dt::TICKS_PER_DAY
                    + h * dt::TICKS_PER_HOUR
                    + m * dt::TICKS_PER_MINUTE
                    + s * dt::TICKS_PER_SECOND
            }
            [d, h, m, s, ms] => {
                d * dt::TICKS_PER_DAY
                    + h * dt::TICKS_PER_HOUR
                    + m * dt::TICKS_PER_MINUTE
                    + s * dt::TICKS_PER_SECOND
                    + ms * dt::TICKS_PER_MS
            }
            _ => {
                return Err(err(
                    "new TimeSpan takes (ticks), (h, m, s), (d, h, m, s) or (d, h, m, s, ms)",
                ))
            }
        };
        return Ok(Val::Span(ticks));
    }
    if offset {
        return match a {
            [Val::Date(t)] => Ok(Val::Date(t.to_offset())),
            _ => Err(err("new DateTimeOffset takes a DateTime")),
        };
    }
    let kind = match a.last() {
        Some(Val::Str(k)) if k == "Utc" => Kind::Utc,
        Some(Val::Str(k)) if k == "Local" => Kind::Local,
        _ => Kind::Unspecified,
    };
    let n: Vec<i64> = a
        .iter()
        .filter(|v| matches!(v, Val::Int(_)))
        .map(int)
        .collect::<Result<_, _>>()?;
    let ticks = match n.as_slice() {
        [ticks] => *ticks,
        [y, mo, d] => dt::from_parts(*y, *mo, *d, 0, 0, 0, 0)?,
        [y, mo, d, h, mi, s] => dt::from_parts(*y, *mo, *d, *h, *mi, *s, 0)?,
        [y, mo, d, h, mi, s, ms] => dt::from_parts(*y, *mo, *d, *h, *mi, *s, *ms)?,
        _ => return Err(err("new DateTime takes (ticks), (y, m, d), (y, m, d, h, m, s) or (y, m, d, h, m, s, ms), and optionally a DateTimeKind")),
    };
    Ok(Val::Date(Instant::new(ticks, kind)?))
}

/// Members of a DateTime / DateTimeOffset.
pub(super) fn date_member<'e>(
    m: &mut Machine<'e>,
    t: Instant,
    member: M,
    args: &'e [Node],
) -> Result<Val<'e>, EvalError> {
    let a = m.values(args)?;
    let p = t.parts();
    let add = |units: &Val, per: i64| -> Result<Val<'e>, EvalError> {
        Ok(Val::Date(t.add_ticks(span_of(number(units)?, per)?)?))
    };
    Ok(match (member, a.as_slice()) {
        (M::Year, []) => Val::Int(i64::from(p.year)),
        (M::Month, []) => Val::Int(i64::from(p.month)),
        (M::Day, []) => Val::Int(i64::from(p.day)),
        (M::Hour, []) => Val::Int(i64::from(p.hour)),
        (M::Minute, []) => Val::Int(i64::from(p.minute)),
        (M::Second, []) => Val::Int(i64::from(p.second)),
        (M::Millisecond, []) => Val::Int(i64::from(p.fraction) / dt::TICKS_PER_MS),
        (M::Ticks, []) => Val::Int(t.ticks),
        (M::DayOfWeek, []) => Val::Str(Cow::Borrowed(dt::DAY_NAMES[p.day_of_week as usize])),
        (M::DayOfYear, []) => Val::Int(t.day_of_year()),
        (M::Date, []) => Val::Date(t.with_ticks(t.ticks - t.ticks.rem_euclid(dt::TICKS_PER_DAY))?),
        (M::TimeOfDay, []) => Val::Span(t.ticks.rem_euclid(dt::TICKS_PER_DAY)),
        (M::Kind, []) => Val::Str(Cow::Borrowed(match t.kind {
            Kind::Utc => "Utc",
            Kind::Local => "Local",
            Kind::Unspecified => "Unspecified",
        })),
        (M::Offset, []) => Val::Span(i64::from(t.offset.unwrap_or(0)) * dt::TICKS_PER_MINUTE),
        (M::UtcDateTime, []) => Val::Date(Instant::new(t.utc_ticks(), Kind::Utc)?),
        (M::DateTime | M::LocalDateTime, []) => Val::Date(Instant::new(
            t.ticks,
            if member == M::DateTime {
                Kind::Unspecified
            } else {
                Kind::Local
            },
        )?),
        (M::AddYears, [n]) => {
            Val::Date(t.add_months(int(n)?.checked_mul(12).ok_or(err("years out of range"))?)?)
        }
        (M::AddMonths, [n]) => Val::Date(t.add_months(int(n)?)?),
        (M::AddDays, [n]) => add(n, dt::TICKS_PER_DAY)?,
        (M::AddHours, [n]) => add(n, dt::TICKS_PER_HOUR)?,
        (M::AddMinutes, [n]) => add(n, dt::TICKS_PER_MINUTE)?,
        (M::AddSeconds, [n]) => add(n, dt::TICKS_PER_SECOND)?,
        (M::AddMilliseconds, [n]) => add(n, dt::TICKS_PER_MS)?,
        (M::AddTicks, [n]) => Val::Date(t.add_ticks(int(n)?)?),
        (M::Add, [Val::Span(s)]) => Val::Date(t.add_ticks(*s)?),
        (M::Subtract, [Val::Span(s)]) => Val::Date(t.add_ticks(-*s)?),
        (M::Subtract, [Val::Date(other)]) => Val::Span(t.utc_ticks() - other.utc_ticks()),
        (M::ToUniversalTime, []) => Val::Date(Instant::new(t.utc_ticks(), Kind::Utc)?),
        (M::ToLocalTime, []) => Val::Date(Instant::new(t.utc_ticks(), Kind::Local)?),
        (M::ToUnixTimeSeconds, []) => {
            Val::Int((t.utc_ticks() - dt::UNIX_EPOCH_TICKS).div_euclid(dt::TICKS_PER_SECOND))
        }
        (M::ToUnixTimeMilliseconds, []) => {
            Val::Int((t.utc_ticks() - dt::UNIX_EPOCH_TICKS).div_euclid(dt::TICKS_PER_MS))
        }
        (M::ToString, []) => m.text(dt::format(&t, None)?)?,
        (M::ToString, [Val::Str(f), ..]) => m.text(dt::format(&t, Some(f))?)?,
        (M::ToString, [_]) => m.text(dt::format(&t, None)?)?,
        (M::Equals, [other]) => Val::Bool(Val::Date(t) == *other),
        (M::CompareTo, [Val::Date(o)]) => Val::Int((t.utc_ticks() - o.utc_ticks()).signum()),
        _ => return Err(not_a_member("DateTime", member)),
    })
}

/// Members of a TimeSpan.
pub(super) fn span_member<'e>(
    m: &mut Machine<'e>,
    ticks: i64,
    member: M,
    args: &'e [Node],
) -> Result<Val<'e>, EvalError> {
    let a = m.values(args)?;
    let total = |per: i64| Val::Double(ticks as f64 / per as f64);
    Ok(match (member, a.as_slice()) {
        (M::Days, []) => Val::Int(ticks / dt::TICKS_PER_DAY),
        (M::Hours, []) => Val::Int(ticks % dt::TICKS_PER_DAY / dt::TICKS_PER_HOUR),
        (M::Minutes, []) => Val::Int(ticks % dt::TICKS_PER_HOUR / dt::TICKS_PER_MINUTE),
        (M::Seconds, []) => Val::Int(ticks % dt::TICKS_PER_MINUTE / dt::TICKS_PER_SECOND),
        (M::Milliseconds, []) => Val::Int(ticks % dt::TICKS_PER_SECOND / dt::TICKS_PER_MS),
        (M::Ticks, []) => Val::Int(ticks),
        (M::TotalDays, []) => total(dt::TICKS_PER_DAY),
        (M::TotalHours, []) => total(dt::TICKS_PER_HOUR),
        (M::TotalMinutes, []) => total(dt::TICKS_PER_MINUTE),
        (M::TotalSeconds, []) => total(dt::TICKS_PER_SECOND),
        (M::TotalMilliseconds, []) => total(dt::TICKS_PER_MS),
        (M::Duration, []) => Val::Span(
            ticks
                .checked_abs()
                .ok_or(err("The duration cannot be returned for TimeSpan.MinValue"))?,
        ),
        (M::Negate, []) => Val::Span(ticks.checked_neg().ok_or(err(
            "The negated value of TimeSpan.MinValue cannot be represented",
        ))?),
        (M::Add, [Val::Span(s)]) => {
            Val::Span(ticks.checked_add(*s).ok_or(err("TimeSpan overflowed"))?)
        }
        (M::Subtract, [Val::Span(s)]) => {
            Val::Span(ticks.checked_sub(*s).ok_or(err("TimeSpan overflowed"))?)
        }
        (M::ToString, _) => m.text(dt::span_text(ticks))?,
        (M::Equals, [other]) => Val::Bool(Val::Span(ticks) == *other),
        (M::CompareTo, [Val::Span(o)]) => Val::Int((ticks - o).signum()),
        _ => return Err(not_a_member("TimeSpan", member)),
    })
}

/// `a op b` when one side is a date or a span: differences, sums and comparisons.
pub(super) fn binary<'e>(
    op: BinOp,
    x: &Val<'e>,
    y: &Val<'e>,
) -> Option<Result<Val<'e>, EvalError>> {
    let overflow = || err("The added or subtracted value results in an un-representable DateTime");
    let key = |v: &Val| match v {
        Val::Date(t) => Some(t.utc_ticks()),
        Val::Span(s) => Some(*s),
        _ => None,
    };
    Some(match (op, x, y) {
        (BinOp::Sub, Val::Date(a), Val::Date(b)) => Ok(Val::Span(a.utc_ticks() - b.utc_ticks())),
        (BinOp::Add, Val::Date(a), Val::Span(s)) | (BinOp::Add, Val::Span(s), Val::Date(a)) => {
            a.add_ticks(*s).map(Val::Date)
        }
        (BinOp::Sub, Val::Date(a), Val::Span(s)) => a.add_ticks(-*s).map(Val::Date),
        (BinOp::Add, Val::Span(a), Val::Span(b)) => {
            a.checked_add(*b).map(Val::Span).ok_or_else(overflow)
        }
        (BinOp::Sub, Val::Span(a), Val::Span(b)) => {
            a.checked_sub(*b).map(Val::Span).ok_or_else(overflow)
        }
        (BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge, Val::Date(_), Val::Date(_))
        | (BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge, Val::Span(_), Val::Span(_)) => {
            let (a, b) = (key(x)?, key(y)?);
            Ok(Val::Bool(match op {
                BinOp::Lt => a < b,
                BinOp::Le => a <= b,
                BinOp::Gt => a > b,
                _ => a >= b,
            }))
        }
        _ => return None,
    })
}
