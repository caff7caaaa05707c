//! TimeZoneInfo for the zones policy documents name, from a built-in table (an edge or
//! air-gapped host has no time zone database to rely on): Windows and IANA ids, the
//! standard offset and the daylight rule (the EU's, the US's, or none). A zone is its
//! id as a value (`TimeZoneInfo zone = TimeZoneInfo.FindSystemTimeZoneById(…)`), used
//! by `ConvertTimeToUtc`, `ConvertTimeFromUtc` and `ConvertTimeBySystemTimeZoneId`. An
//! id the table lacks is TimeZoneNotFoundException's message, never a guess.
//! Must not touch: other DateTime arithmetic (datetime.rs).

use std::borrow::Cow;

use super::datetime::{
    days_from_civil, Instant, Kind, TICKS_PER_DAY, TICKS_PER_HOUR, TICKS_PER_MINUTE,
};
use super::eval::Machine;
use super::value::Val;
use super::{EvalError, Node};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    None,
    /// Last Sunday of March 01:00 UTC to last Sunday of October 01:00 UTC.
    Eu,
    /// Second Sunday of March 02:00 local to first Sunday of November 02:00 local.
    Us,
}

struct Zone {
    ids: &'static [&'static str],
    standard_minutes: i64,
    rule: Rule,
}

const ZONES: &[Zone] = &[
    Zone {
        ids: &[
            "UTC",
            "Etc/UTC",
            "Coordinated Universal Time",
            "Etc/GMT",
            "UTC+00",
        ],
        standard_minutes: 0,
        rule: Rule::None,
    },
    Zone {
        ids: &[
            "GMT Standard Time",
            "Europe/London",
            "Europe/Dublin",
            "Europe/Lisbon",
        ],
        standard_minutes: 0,
        rule: Rule::Eu,
    },
    Zone {
        ids: &[
            "W. Europe Standard Time",
            "Central European Standard Time",
            "Romance Standard Time",
            "Central Europe Standard Time",
            "Europe/Rome",
            "Europe/Berlin",
            "Europe/Paris",
            "Europe/Madrid",
            "Europe/Amsterdam",
            "Europe/Brussels",
            "Europe/Vienna",
            "Europe/Zurich",
            "Europe/Stockholm",
            "Europe/Oslo",
            "Europe/Copenhagen",
            "Europe/Warsaw",
            "Europe/Prague",
            "Europe/Budapest",
            "Europe/Luxembourg",
            "CET",
        ],
        standard_minutes: 60,
        rule: Rule::Eu,
    },
    Zone {
        ids: &[
            "E. Europe Standard Time",
            "FLE Standard Time",
            "GTB Standard Time",
            "Europe/Helsinki",
            "Europe/Athens",
            "Europe/Bucharest",
            "Europe/Kyiv",
            "Europe/Kiev",
            "Europe/Sofia",
            "Europe/Riga",
            "Europe/Vilnius",
            "Europe/Tallinn",
            "EET",
        ],
        standard_minutes: 120,
        rule: Rule::Eu,
    },
    Zone {
        ids: &[
            "Eastern Standard Time",
            "America/New_York",
            "US/Eastern",
            "EST5EDT",
        ],
        standard_minutes: -300,
        rule: Rule::Us,
    },
    Zone {
        ids: &[
            "Central Standard Time",
            "America/Chicago",
            "US/Central",
            "CST6CDT",
        ],
        standard_minutes: -360,
        rule: Rule::Us,
    },
    Zone {
        ids: &[
            "Mountain Standard Time",
            "America/Denver",
            "US/Mountain",
            "MST7MDT",
        ],
        standard_minutes: -420,
        rule: Rule::Us,
    },
    Zone {
        ids: &[
            "Pacific Standard Time",
            "America/Los_Angeles",
            "US/Pacific",
            "PST8PDT",
        ],
        standard_minutes: -480,
        rule: Rule::Us,
    },
    Zone {
        ids: &["US Mountain Standard Time", "America/Phoenix"],
        standard_minutes: -420,
        rule: Rule::None,
    },
    Zone {
        ids: &["Hawaiian Standard Time", "Pacific/Honolulu"],
        standard_minutes: -600,
        rule: Rule::None,
    },
    Zone {
        ids: &["E. South America Standard Time", "America/Sao_Paulo"],
        standard_minutes: -180,
        rule: Rule::None,
    },
    Zone {
        ids: &["South Africa Standard Time", "Africa/Johannesburg"],
        standard_minutes: 120,
        rule: Rule::None,
    },
    Zone {
        ids: &["Russian Standard Time", "Europe/Moscow"],
        standard_minutes: 180,
        rule: Rule::None,
    },
    Zone {
        ids: &["Arabian Standard Time", "Asia/Dubai"],
        standard_minutes: 240,
        rule: Rule::None,
    },
    Zone {
        ids: &["India Standard Time", "Asia/Kolkata", "Asia/Calcutta"],
        standard_minutes: 330,
        rule: Rule::None,
    },
    Zone {
        ids: &[
            "China Standard Time",
            "Asia/Shanghai",
            "Singapore Standard Time",
            "Asia/Singapore",
        ],
        standard_minutes: 480,
        rule: Rule::None,
    },
    Zone {
        ids: &[
            "Tokyo Standard Time",
            "Asia/Tokyo",
            "Korea Standard Time",
            "Asia/Seoul",
        ],
        standard_minutes: 540,
        rule: Rule::None,
    },
];

/// What a TimeZoneInfo static does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Find,
    ToUtc,
    FromUtc,
    BySystemId,
    Utc,
}

fn zone(id: &str) -> Result<(&'static str, &'static Zone), EvalError> {
    ZONES
        .iter()
        .find_map(|z| {
            z.ids
                .iter()
                .find(|i| i.eq_ignore_ascii_case(id.trim()))
                .map(|i| (*i, z))
        })
        .ok_or_else(|| {
            EvalError(Cow::Owned(format!(
                "The time zone ID '{id}' was not found on the local computer."
            )))
        })
}

/// The Sunday on or before day `d` (days from 0001-01-01, a Monday).
fn sunday_on_or_before(d: i64) -> i64 {
    d - (d.rem_euclid(7) + 1) % 7
}

/// Whether daylight time is in force at `utc` (ticks).
fn daylight(z: &Zone, utc: i64) -> bool {
    let Ok(at) = Instant::new(utc, Kind::Utc) else {
        return false;
    };
    let year = at.parts().year;
    let (start, end) = match z.rule {
        Rule::None => return false,
        Rule::Eu => {
            let march = sunday_on_or_before(days_from_civil(year, 3, 31));
            let october = sunday_on_or_before(days_from_civil(year, 10, 31));
            (
                march * TICKS_PER_DAY + TICKS_PER_HOUR,
                october * TICKS_PER_DAY + TICKS_PER_HOUR,
            )
        }
        Rule::Us => {
            let first_march = sunday_on_or_before(days_from_civil(year, 3, 7));
            let first_november = sunday_on_or_before(days_from_civil(year, 11, 7));
            let standard = z.standard_minutes * TICKS_PER_MINUTE;
            (
                (first_march + 7) * TICKS_PER_DAY + 2 * TICKS_PER_HOUR - standard,
                first_november * TICKS_PER_DAY + 2 * TICKS_PER_HOUR - standard - TICKS_PER_HOUR,
            )
        }
    };
    (start..end).contains(&utc)
}

/// The zone's offset from UTC at `utc`, in ticks.
fn offset_at(z: &Zone, utc: i64) -> i64 {
    z.standard_minutes * TICKS_PER_MINUTE + if daylight(z, utc) { TICKS_PER_HOUR } else { 0 }
}

/// A local time of the zone in UTC (an hour that does not exist, or repeats, at a
/// change is read as standard time's).
fn to_utc(z: &Zone, local: i64) -> i64 {
    let standard = local - z.standard_minutes * TICKS_PER_MINUTE;
    if daylight(z, standard - TICKS_PER_HOUR) {
        standard - TICKS_PER_HOUR
    } else {
        standard
    }
}

fn date(v: &Val) -> Result<Instant, EvalError> {
    match v {
        Val::Date(d) => Ok(*d),
        other => Err(EvalError(Cow::Owned(format!(
            "TimeZoneInfo converts a DateTime, not a {}",
            other.type_name()
        )))),
    }
}

fn id<'v>(v: &'v Val<'_>) -> Result<&'v str, EvalError> {
    match v {
        Val::Str(s) => Ok(s),
        _ => Err(EvalError(Cow::Borrowed("a time zone is named by its id"))),
    }
}

/// A DateTime's ticks in UTC (a local or unspecified one is the gateway's clock, UTC).
fn utc_of(d: &Instant) -> i64 {
    d.utc_ticks()
}

pub(super) fn call<'e>(
    m: &mut Machine<'e>,
    op: Op,
    args: &'e [Node],
) -> Result<Val<'e>, EvalError> {
    let a = m.values(args)?;
    let at = |ticks: i64, kind: Kind| Instant::new(ticks, kind).map(Val::Date);
    match (op, a.as_slice()) {
        (Op::Utc, []) => Ok(Val::Str(Cow::Borrowed("UTC"))),
        (Op::Find, [name]) => Ok(Val::Str(Cow::Borrowed(zone(id(name)?)?.0))),
        // a time of `zone` (or, without one, the gateway's: UTC) in UTC
        (Op::ToUtc, [d]) => at(utc_of(&date(d)?), Kind::Utc),
        (Op::ToUtc, [d, z]) => {
            let d = date(d)?;
            if d.kind == Kind::Utc {
                return at(d.ticks, Kind::Utc);
            }
            at(to_utc(zone(id(z)?)?.1, d.ticks), Kind::Utc)
        }
        // a UTC (or the gateway's local, UTC) time in the zone
        (Op::FromUtc | Op::BySystemId, [d, to]) => {
            let utc = utc_of(&date(d)?);
            let z = zone(id(to)?)?.1;
            at(utc + offset_at(z, utc), Kind::Unspecified)
        }
        (Op::BySystemId, [d, from, to]) => {
            let d = date(d)?;
            let utc = to_utc(zone(id(from)?)?.1, d.ticks);
            let z = zone(id(to)?)?.1;
            at(utc + offset_at(z, utc), Kind::Unspecified)
        }
        _ => Err(EvalError(Cow::Borrowed(
            "TimeZoneInfo takes a DateTime and a time zone id",
        ))),
    }
}
