//! DateTime, DateTimeOffset and TimeSpan as .NET counts them: 100-nanosecond ticks since
//! 0001-01-01, the proleptic Gregorian calendar, the invariant culture's names and
//! formats. The gateway's local time zone is UTC (as in a container), so `Now` is
//! `UtcNow` with the Local kind. Formatting and parsing follow .NET's standard ("o", "s",
//! "u", "r", "d", "D", "t", "T", "f", "F", "g", "G", "M", "Y") and custom specifiers.
//! Must not touch: the clock (the caller passes the time), evaluation.

use std::borrow::Cow;

use super::{err, EvalError};

pub const TICKS_PER_MS: i64 = 10_000;
pub const TICKS_PER_SECOND: i64 = 10_000_000;
pub const TICKS_PER_MINUTE: i64 = 60 * TICKS_PER_SECOND;
pub const TICKS_PER_HOUR: i64 = 60 * TICKS_PER_MINUTE;
pub const TICKS_PER_DAY: i64 = 24 * TICKS_PER_HOUR;
/// 1970-01-01 in ticks.
pub const UNIX_EPOCH_TICKS: i64 = 621_355_968_000_000_000;
/// 9999-12-31T23:59:59.9999999.
pub const MAX_TICKS: i64 = 3_155_378_975_999_999_999;

const OUT_OF_RANGE: EvalError =
    err("The added or subtracted value results in an un-representable DateTime");
const BAD_DATE: EvalError = err("String was not recognized as a valid DateTime");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Unspecified,
    Utc,
    Local,
}

/// A DateTime, or a DateTimeOffset (`offset` in minutes; its ticks are the local clock
/// time at that offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instant {
    pub ticks: i64,
    pub kind: Kind,
    pub offset: Option<i16>,
}

impl Instant {
    pub fn new(ticks: i64, kind: Kind) -> Result<Instant, EvalError> {
        if !(0..=MAX_TICKS).contains(&ticks) {
            return Err(OUT_OF_RANGE);
        }
        Ok(Instant {
            ticks,
            kind,
            offset: None,
        })
    }
    pub fn from_unix_ms(ms: i64, kind: Kind) -> Result<Instant, EvalError> {
        let ticks = ms
            .checked_mul(TICKS_PER_MS)
            .and_then(|t| t.checked_add(UNIX_EPOCH_TICKS))
            .ok_or(OUT_OF_RANGE)?;
        Instant::new(ticks, kind)
    }
    /// The ticks in UTC (for comparing, subtracting and Unix times).
    pub fn utc_ticks(&self) -> i64 {
        self.ticks - i64::from(self.offset.unwrap_or(0)) * TICKS_PER_MINUTE
    }
    pub fn with_ticks(&self, ticks: i64) -> Result<Instant, EvalError> {
        if !(0..=MAX_TICKS).contains(&ticks) {
            return Err(OUT_OF_RANGE);
        }
        Ok(Instant { ticks, ..*self })
    }
    pub fn add_ticks(&self, t: i64) -> Result<Instant, EvalError> {
        self.with_ticks(self.ticks.checked_add(t).ok_or(OUT_OF_RANGE)?)
    }
    /// `AddMonths` (and `AddYears` as 12 months): the day is clamped to the month's end.
    pub fn add_months(&self, months: i64) -> Result<Instant, EvalError> {
        let p = self.parts();
        let total = i64::from(p.year) * 12 + i64::from(p.month) - 1 + months;
        let (year, month) = (total.div_euclid(12), total.rem_euclid(12) + 1);
        if !(1..=9999).contains(&year) {
            return Err(OUT_OF_RANGE);
        }
        let day = p.day.min(days_in_month(year as i32, month as u32));
        let date = days_from_civil(year as i32, month as u32, day) * TICKS_PER_DAY;
        self.with_ticks(date + self.ticks.rem_euclid(TICKS_PER_DAY))
    }
    pub fn parts(&self) -> Parts {
        let days = self.ticks.div_euclid(TICKS_PER_DAY);
        let rest = self.ticks.rem_euclid(TICKS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        Parts {
            year,
            month,
            day,
            hour: (rest / TICKS_PER_HOUR) as u32,
            minute: (rest % TICKS_PER_HOUR / TICKS_PER_MINUTE) as u32,
            second: (rest % TICKS_PER_MINUTE / TICKS_PER_SECOND) as u32,
            fraction: (rest % TICKS_PER_SECOND) as u32,
            day_of_week: ((days + 1).rem_euclid(7)) as u32,
        }
    }
    pub fn day_of_year(&self) -> i64 {
        let p = self.parts();
        self.ticks.div_euclid(TICKS_PER_DAY) - days_from_civil(p.year, 1, 1) + 1
    }
}

/// A date's fields (`day_of_week`: 0 = Sunday, as .NET's DayOfWeek).
#[derive(Debug, Clone, Copy)]
pub struct Parts {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// Ticks within the second.
    pub fraction: u32,
    pub day_of_week: u32,
}

pub const DAY_NAMES: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

pub fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 0001-01-01 to the date (Howard Hinnant's algorithm, shifted).
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    // days from 1970-01-01, then moved to 0001-01-01
    era * 146_097 + doe - 719_468 + 719_162
}

fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days - 719_162 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

/// A date and time from its fields, checked.
pub fn from_parts(
    y: i64,
    mo: i64,
    d: i64,
    h: i64,
    mi: i64,
    s: i64,
    ms: i64,
) -> Result<i64, EvalError> {
    let bad = err("Year, Month, and Day parameters describe an un-representable DateTime");
    if !(1..=9999).contains(&y) || !(1..=12).contains(&mo) {
        return Err(bad);
    }
    if d < 1 || d > i64::from(days_in_month(y as i32, mo as u32)) {
        return Err(bad);
    }
    if !(0..24).contains(&h)
        || !(0..60).contains(&mi)
        || !(0..60).contains(&s)
        || !(0..1000).contains(&ms)
    {
        return Err(err(
            "Hour, Minute, and Second parameters describe an un-representable DateTime",
        ));
    }
    Ok(
        days_from_civil(y as i32, mo as u32, d as u32) * TICKS_PER_DAY
            + h * TICKS_PER_HOUR
            + mi * TICKS_PER_MINUTE
            + s * TICKS_PER_SECOND
            + ms * TICKS_PER_MS,
    )
}

/// `ToString(format)` of a DateTime / DateTimeOffset (invariant culture).
pub fn format(t: &Instant, format: Option<&str>) -> Result<String, EvalError> {
    let f = format.unwrap_or("G");
    let pattern: Cow<str> = match f {
        "o" | "O" => match (t.offset, t.kind) {
            (Some(_), _) | (None, Kind::Utc | Kind::Local) => {
                "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK".into()
            }
            _ => "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffff".into(),
        },
        "s" => "yyyy'-'MM'-'dd'T'HH':'mm':'ss".into(),
        "u" => "yyyy'-'MM'-'dd HH':'mm':'ss'Z'".into(),
        "r" | "R" => "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'".into(),
        "d" => "MM/dd/yyyy".into(),
        "D" => "dddd, dd MMMM yyyy".into(),
        "t" => "HH:mm".into(),
        "T" => "HH:mm:ss".into(),
        "f" => "dddd, dd MMMM yyyy HH:mm".into(),
        "F" => "dddd, dd MMMM yyyy HH:mm:ss".into(),
        "g" => "MM/dd/yyyy HH:mm".into(),
        "G" => "MM/dd/yyyy HH:mm:ss".into(),
        "M" | "m" => "MMMM dd".into(),
        "Y" | "y" => "yyyy MMMM".into(),
        other if other.chars().count() == 1 => {
            return Err(err(
                "Input string was not in a correct format (DateTime format)",
            ))
        }
        other => other.into(),
    };
    // "r" and "u" print the UTC time
    let t = match f {
        "r" | "R" | "u" => Instant {
            ticks: t.utc_ticks(),
            kind: Kind::Utc,
            offset: None,
        },
        _ => *t,
    };
    custom(&t, &pattern)
}

fn custom(t: &Instant, pattern: &str) -> Result<String, EvalError> {
    let p = t.parts();
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut n = 1;
        while i + n < chars.len() && chars[i + n] == c {
            n += 1;
        }
        match c {
            'y' => match n {
                1 => out.push_str(&(p.year % 100).to_string()),
                2 => out.push_str(&format!("{:02}", p.year % 100)),
                _ => out.push_str(&format!("{:0n$}", p.year)),
            },
            'M' => match n {
                1 => out.push_str(&p.month.to_string()),
                2 => out.push_str(&format!("{:02}", p.month)),
                3 => out.push_str(&MONTH_NAMES[p.month as usize - 1][..3]),
                _ => out.push_str(MONTH_NAMES[p.month as usize - 1]),
            },
            'd' => match n {
                1 => out.push_str(&p.day.to_string()),
                2 => out.push_str(&format!("{:02}", p.day)),
                3 => out.push_str(&DAY_NAMES[p.day_of_week as usize][..3]),
                _ => out.push_str(DAY_NAMES[p.day_of_week as usize]),
            },
            'H' => out.push_str(&format!("{:0w$}", p.hour, w = n.min(2))),
            'h' => out.push_str(&format!("{:0w$}", (p.hour + 11) % 12 + 1, w = n.min(2))),
            'm' => out.push_str(&format!("{:0w$}", p.minute, w = n.min(2))),
            's' => out.push_str(&format!("{:0w$}", p.second, w = n.min(2))),
            'f' | 'F' => {
                if n > 7 {
                    return Err(err(
                        "Input string was not in a correct format (DateTime format)",
                    ));
                }
                let digits = format!("{:07}", p.fraction);
                let mut part = digits[..n].to_string();
                if c == 'F' {
                    while part.ends_with('0') {
                        part.pop();
                    }
                    if part.is_empty() && out.ends_with('.') {
                        out.pop();
                    }
                }
                out.push_str(&part);
            }
            't' => {
                let ampm = if p.hour < 12 { "AM" } else { "PM" };
                out.push_str(if n == 1 { &ampm[..1] } else { ampm });
            }
            'K' => match (t.offset, t.kind) {
                (Some(o), _) => out.push_str(&offset_text(o, true)),
                (None, Kind::Utc) => out.push('Z'),
                (None, Kind::Local) => out.push_str("+00:00"),
                (None, Kind::Unspecified) => {}
            },
            'z' => {
                let o = t.offset.unwrap_or(0);
                let sign = if o < 0 { '-' } else { '+' };
                let (h, m) = (o.unsigned_abs() / 60, o.unsigned_abs() % 60);
                match n {
                    1 => out.push_str(&format!("{sign}{h}")),
                    2 => out.push_str(&format!("{sign}{h:02}")),
                    _ => out.push_str(&format!("{sign}{h:02}:{m:02}")),
                }
            }
            '\'' | '"' => {
                let close = chars[i + 1..].iter().position(|x| *x == c).ok_or(err(
                    "Cannot find a matching quote character (DateTime format)",
                ))?;
                out.extend(&chars[i + 1..i + 1 + close]);
                i += close + 2;
                continue;
            }
            '\\' => {
                if let Some(next) = chars.get(i + 1) {
                    out.push(*next);
                }
                i += 2;
                continue;
            }
            other => {
                for _ in 0..n {
                    out.push(other);
                }
            }
        }
        i += n;
    }
    Ok(out)
}

fn offset_text(minutes: i16, colon: bool) -> String {
    let sign = if minutes < 0 { '-' } else { '+' };
    let (h, m) = (minutes.unsigned_abs() / 60, minutes.unsigned_abs() % 60);
    if colon {
        format!("{sign}{h:02}:{m:02}")
    } else {
        format!("{sign}{h:02}{m:02}")
    }
}

/// `TimeSpan.ToString()`: `[-][d.]hh:mm:ss[.fffffff]`.
pub fn span_text(ticks: i64) -> String {
    let sign = if ticks < 0 { "-" } else { "" };
    let t = ticks.unsigned_abs();
    let day = TICKS_PER_DAY as u64;
    let (d, rest) = (t / day, t % day);
    let (h, m, s, f) = (
        rest / TICKS_PER_HOUR as u64,
        rest % TICKS_PER_HOUR as u64 / TICKS_PER_MINUTE as u64,
        rest % TICKS_PER_MINUTE as u64 / TICKS_PER_SECOND as u64,
        rest % TICKS_PER_SECOND as u64,
    );
    let mut out = String::from(sign);
    if d > 0 {
        out.push_str(&format!("{d}."));
    }
    out.push_str(&format!("{h:02}:{m:02}:{s:02}"));
    if f > 0 {
        out.push_str(&format!(".{f:07}"));
    }
    out
}

/// `DateTime.Parse` / `DateTimeOffset.Parse` with the invariant culture: ISO 8601
/// (`2024-05-01`, `2024-05-01T10:20:30.123Z`, with an offset or a space for the `T`),
/// RFC 1123 (`Wed, 01 May 2024 10:20:30 GMT`) and `MM/dd/yyyy[ HH:mm[:ss]]`. A time with
/// `Z` or an offset becomes the gateway's local time (Local kind), as .NET's Parse does.
pub fn parse(text: &str) -> Result<Instant, EvalError> {
    let s = text.trim();
    if let Some(t) = parse_rfc1123(s) {
        return Ok(t);
    }
    let (date, rest) = if s.len() >= 10 && s.as_bytes().get(4) == Some(&b'-') {
        let y: i64 = num(&s[0..4])?;
        let mo: i64 = num(&s[5..7])?;
        let d: i64 = num(&s[8..10])?;
        if s.as_bytes()[7] != b'-' {
            return Err(BAD_DATE);
        }
        ((y, mo, d), &s[10..])
    } else if let Some((m, rest)) = s.split_once('/') {
        let (d, rest) = rest.split_once('/').ok_or(BAD_DATE)?;
        let (y, rest) = match rest.split_once(' ') {
            Some((y, r)) => (y, r),
            None => (rest, ""),
        };
        (
            (num(y)?, num(m)?, num(d)?),
            if rest.is_empty() { "" } else { rest },
        )
    } else {
        return Err(BAD_DATE);
    };
    let rest = rest.strip_prefix(['T', ' ']).unwrap_or(rest);
    let (mut h, mut mi, mut sec, mut frac) = (0, 0, 0, 0i64);
    let mut zone: Option<i16> = None;
    if !rest.is_empty() {
        let end = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
        let (clock, tz) = rest.split_at(end);
        let mut fields = clock.trim().split(':');
        h = num(fields.next().ok_or(BAD_DATE)?)?;
        mi = num(fields.next().ok_or(BAD_DATE)?)?;
        if let Some(sf) = fields.next() {
            let (whole, fraction) = sf.split_once('.').unwrap_or((sf, ""));
            sec = num(whole)?;
            if !fraction.is_empty() {
                if fraction.len() > 7 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(BAD_DATE);
                }
                frac = format!("{fraction:0<7}").parse().map_err(|_| BAD_DATE)?;
            }
        }
        if fields.next().is_some() {
            return Err(BAD_DATE);
        }
        zone = parse_zone(tz)?;
    }
    let ticks = from_parts(date.0, date.1, date.2, h, mi, sec, 0).map_err(|_| BAD_DATE)? + frac;
    match zone {
        None => Instant::new(ticks, Kind::Unspecified),
        Some(o) => Ok(Instant {
            offset: Some(o),
            ..Instant::new(ticks, Kind::Local)?
        }),
    }
}

impl Instant {
    /// As a DateTime: one with an offset becomes the gateway's local time (UTC).
    pub fn to_datetime(self) -> Result<Instant, EvalError> {
        match self.offset {
            None => Ok(self),
            Some(_) => Instant::new(self.utc_ticks(), Kind::Local),
        }
    }
    /// As a DateTimeOffset: a DateTime gets offset 0 (UTC and local alike here).
    pub fn to_offset(self) -> Instant {
        Instant {
            offset: Some(self.offset.unwrap_or(0)),
            ..self
        }
    }
}

fn parse_zone(tz: &str) -> Result<Option<i16>, EvalError> {
    let tz = tz.trim();
    if tz.is_empty() {
        return Ok(None);
    }
    if tz.eq_ignore_ascii_case("z") {
        return Ok(Some(0));
    }
    let sign = match tz.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return Err(BAD_DATE),
    };
    let digits: String = tz[1..].chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 && digits.len() != 2 {
        return Err(BAD_DATE);
    }
    let h: i16 = digits[..2].parse().map_err(|_| BAD_DATE)?;
    let m: i16 = if digits.len() == 4 {
        digits[2..].parse().map_err(|_| BAD_DATE)?
    } else {
        0
    };
    if h > 14 || m > 59 {
        return Err(BAD_DATE);
    }
    Ok(Some(sign * (h * 60 + m)))
}

fn parse_rfc1123(s: &str) -> Option<Instant> {
    // Wed, 01 May 2024 10:20:30 GMT
    let (_, rest) = s.split_once(", ")?;
    let mut f = rest.split(' ');
    let d: i64 = f.next()?.parse().ok()?;
    let mon = f.next()?;
    let mo = MONTH_NAMES
        .iter()
        .position(|m| m[..3].eq_ignore_ascii_case(mon))? as i64
        + 1;
    let y: i64 = f.next()?.parse().ok()?;
    let mut clock = f.next()?.split(':');
    let h: i64 = clock.next()?.parse().ok()?;
    let mi: i64 = clock.next()?.parse().ok()?;
    let sec: i64 = clock.next()?.parse().ok()?;
    if !matches!(f.next(), Some("GMT" | "UTC" | "Z")) {
        return None;
    }
    let ticks = from_parts(y, mo, d, h, mi, sec, 0).ok()?;
    Some(Instant {
        offset: Some(0),
        ..Instant::new(ticks, Kind::Local).ok()?
    })
}

fn num(s: &str) -> Result<i64, EvalError> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD_DATE);
    }
    s.parse().map_err(|_| BAD_DATE)
}

/// `DateTime.ParseExact(text, format, …)`: the custom specifiers `yyyy`, `yy`, `MM`, `M`,
/// `MMM`, `dd`, `d`, `HH`, `H`, `hh`, `mm`, `ss`, `f`…`fffffff`, `tt`, `K`, `zzz` and
/// literals; or a standard format letter.
pub fn parse_exact(text: &str, format: &str) -> Result<Instant, EvalError> {
    let pattern: &str = match format {
        "o" | "O" => "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
        "s" => "yyyy'-'MM'-'dd'T'HH':'mm':'ss",
        "u" => "yyyy'-'MM'-'dd HH':'mm':'ss'Z'",
        "r" | "R" => "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
        other => other,
    };
    let chars: Vec<char> = pattern.chars().collect();
    let input: Vec<char> = text.chars().collect();
    let (mut y, mut mo, mut d, mut h, mut mi, mut s, mut frac) =
        (1i64, 1i64, 1i64, 0i64, 0i64, 0i64, 0i64);
    let mut pm: Option<bool> = None;
    let mut zone: Option<i16> = None;
    let (mut i, mut at) = (0, 0);
    let digits = |at: &mut usize, min: usize, max: usize| -> Result<i64, EvalError> {
        let start = *at;
        while *at < input.len() && *at - start < max && input[*at].is_ascii_digit() {
            *at += 1;
        }
        if *at - start < min {
            return Err(BAD_DATE);
        }
        input[start..*at]
            .iter()
            .collect::<String>()
            .parse()
            .map_err(|_| BAD_DATE)
    };
    while i < chars.len() {
        let c = chars[i];
        let mut n = 1;
        while i + n < chars.len() && chars[i + n] == c {
            n += 1;
        }
        match c {
            'y' => {
                y = if n <= 2 {
                    2000 + digits(&mut at, 2, 2)?
                } else {
                    digits(&mut at, n, n.max(4))?
                }
            }
            'M' if n >= 3 => {
                let word: String = input[at..]
                    .iter()
                    .take_while(|c| c.is_alphabetic())
                    .collect();
                mo = MONTH_NAMES
                    .iter()
                    .position(|m| if n == 3 { m[..3] == word } else { *m == word })
                    .ok_or(BAD_DATE)? as i64
                    + 1;
                at += word.chars().count();
            }
            'M' => mo = digits(&mut at, n, 2)?,
            'd' if n >= 3 => {
                let word: String = input[at..]
                    .iter()
                    .take_while(|c| c.is_alphabetic())
                    .collect();
                at += word.chars().count();
            }
            'd' => d = digits(&mut at, n, 2)?,
            'H' | 'h' => h = digits(&mut at, n, 2)?,
            'm' => mi = digits(&mut at, n, 2)?,
            's' => s = digits(&mut at, n, 2)?,
            'f' | 'F' => {
                let start = at;
                let v = digits(&mut at, if c == 'f' { n } else { 0 }, n)?;
                frac = v * 10i64.pow(7 - (at - start) as u32);
            }
            't' => {
                let word: String = input[at..].iter().take(n.min(2)).collect();
                pm = Some(word.starts_with('P') || word.starts_with('p'));
                at += word.chars().count();
            }
            'K' | 'z' => {
                let rest: String = input[at..].iter().collect();
                let len = rest
                    .find(|ch: char| {
                        !(ch.is_ascii_digit() || matches!(ch, '+' | '-' | ':' | 'Z' | 'z'))
                    })
                    .unwrap_or(rest.len());
                zone = parse_zone(&rest[..len])?;
                at += len;
            }
            '\'' | '"' => {
                let close = chars[i + 1..]
                    .iter()
                    .position(|x| *x == c)
                    .ok_or(BAD_DATE)?;
                for lit in &chars[i + 1..i + 1 + close] {
                    if input.get(at) != Some(lit) {
                        return Err(BAD_DATE);
                    }
                    at += 1;
                }
                i += close + 2;
                continue;
            }
            '\\' => {
                if input.get(at) != chars.get(i + 1) {
                    return Err(BAD_DATE);
                }
                at += 1;
                i += 2;
                continue;
            }
            lit => {
                for _ in 0..n {
                    if input.get(at) != Some(&lit) {
                        return Err(BAD_DATE);
                    }
                    at += 1;
                }
            }
        }
        i += n;
    }
    if at != input.len() {
        return Err(BAD_DATE);
    }
    if let Some(pm) = pm {
        h = h % 12 + if pm { 12 } else { 0 };
    }
    let ticks = from_parts(y, mo, d, h, mi, s, 0).map_err(|_| BAD_DATE)? + frac;
    match zone {
        None => Instant::new(ticks, Kind::Unspecified),
        Some(o) => Ok(Instant {
            offset: Some(o),
            ..Instant::new(ticks, Kind::Local)?
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_and_formats() {
        let t = Instant::new(from_parts(2024, 2, 29, 13, 5, 9, 123).unwrap(), Kind::Utc).unwrap();
        assert_eq!(
            format(&t, Some("o")).unwrap(),
            "2024-02-29T13:05:09.1230000Z"
        );
        assert_eq!(format(&t, Some("s")).unwrap(), "2024-02-29T13:05:09");
        assert_eq!(format(&t, Some("u")).unwrap(), "2024-02-29 13:05:09Z");
        assert_eq!(
            format(&t, Some("r")).unwrap(),
            "Thu, 29 Feb 2024 13:05:09 GMT"
        );
        assert_eq!(format(&t, None).unwrap(), "02/29/2024 13:05:09");
        assert_eq!(format(&t, Some("D")).unwrap(), "Thursday, 29 February 2024");
        assert_eq!(
            format(&t, Some("yyyy-MM-ddTHH:mm:ss.fffZ")).unwrap(),
            "2024-02-29T13:05:09.123Z"
        );
        assert_eq!(
            format(&t, Some("dd/MM/yy h:mm tt")).unwrap(),
            "29/02/24 1:05 PM"
        );
        assert_eq!(format(&t, Some("'day' d")).unwrap(), "day 29");
        assert_eq!(
            t.add_months(12).unwrap().parts().day,
            28,
            "clamped to Feb 28"
        );
        assert_eq!(
            Instant::from_unix_ms(0, Kind::Utc).unwrap().ticks,
            UNIX_EPOCH_TICKS
        );
        assert_eq!(t.day_of_year(), 60);
        assert_eq!(
            span_text(TICKS_PER_DAY + 90 * TICKS_PER_MINUTE + 5),
            "1.01:30:00.0000005"
        );
        assert_eq!(span_text(-TICKS_PER_SECOND), "-00:00:01");
        // round trip through the calendar over a range of days
        for days in (0..3_652_059).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn parsing() {
        let p = |s: &str| format(&parse(s).unwrap(), Some("o")).unwrap();
        assert_eq!(p("2024-05-01"), "2024-05-01T00:00:00.0000000");
        assert_eq!(
            p("2024-05-01T10:20:30.5Z"),
            "2024-05-01T10:20:30.5000000+00:00"
        );
        assert_eq!(p("2024-05-01 10:20"), "2024-05-01T10:20:00.0000000");
        assert_eq!(
            p("2024-05-01T10:20:30+02:00"),
            "2024-05-01T10:20:30.0000000+02:00"
        );
        assert_eq!(
            p("Wed, 01 May 2024 10:20:30 GMT"),
            "2024-05-01T10:20:30.0000000+00:00"
        );
        assert_eq!(p("05/01/2024 10:20:30"), "2024-05-01T10:20:30.0000000");
        for bad in [
            "",
            "2024-13-01",
            "2024-02-30",
            "yesterday",
            "2024-05-01T25:00",
            "2024-05-01T10:20:30.12345678",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let e = |s: &str, f: &str| parse_exact(s, f).map(|t| format(&t, Some("o")).unwrap());
        assert_eq!(
            e("20240501", "yyyyMMdd").unwrap(),
            "2024-05-01T00:00:00.0000000"
        );
        assert_eq!(
            e("01-May-2024 07:08 PM", "dd-MMM-yyyy hh:mm tt").unwrap(),
            "2024-05-01T19:08:00.0000000"
        );
        assert!(e("2024/05/01", "yyyy-MM-dd").is_err());
        assert!(e("20240501x", "yyyyMMdd").is_err());
    }
}
