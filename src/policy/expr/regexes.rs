//! System.Text.RegularExpressions in expressions: `Regex.IsMatch` / `Match` / `Matches`
//! / `Replace` / `Split` / `Escape`, `new Regex(pattern, options)`, and Match, Group and
//! GroupCollection members. Patterns run on the rust-lang `regex` engine: linear-time
//! matching, each compiled program bounded in size. .NET syntax it lacks (look-around,
//! backreferences) is an error, at load time when the pattern is a literal. Indexes are
//! in characters, as C# counts them (outside the BMP they differ from .NET's UTF-16).
//! Must not touch: other types, syntax beyond the option and replacement translation.

use std::borrow::Cow;
use std::rc::Rc;

use regex::{Regex, RegexBuilder};

use super::eval::Machine;
use super::members::{not_a_member, M};
use super::value::list;
use super::*;

/// RegexOptions, as .NET numbers them.
pub const IGNORE_CASE: i64 = 1;
pub const MULTILINE: i64 = 2;
pub const EXPLICIT_CAPTURE: i64 = 4;
pub const COMPILED: i64 = 8;
pub const SINGLELINE: i64 = 16;
pub const IGNORE_PATTERN_WHITESPACE: i64 = 32;
pub const RIGHT_TO_LEFT: i64 = 64;
pub const ECMA_SCRIPT: i64 = 256;
pub const CULTURE_INVARIANT: i64 = 512;

pub fn option(name: &str) -> Option<i64> {
    Some(match name {
        "None" => 0,
        "IgnoreCase" => IGNORE_CASE,
        "Multiline" => MULTILINE,
        "ExplicitCapture" => EXPLICIT_CAPTURE,
        "Compiled" => COMPILED,
        "Singleline" => SINGLELINE,
        "IgnorePatternWhitespace" => IGNORE_PATTERN_WHITESPACE,
        "RightToLeft" => RIGHT_TO_LEFT,
        "ECMAScript" => ECMA_SCRIPT,
        "CultureInvariant" => CULTURE_INVARIANT,
        _ => return None,
    })
}

/// Compiles a .NET pattern with its options, bounded in size.
pub fn compile(pattern: &str, options: i64) -> Result<Regex, String> {
    if options & RIGHT_TO_LEFT != 0 {
        return Err("RegexOptions.RightToLeft is not supported".into());
    }
    RegexBuilder::new(pattern)
        .case_insensitive(options & IGNORE_CASE != 0)
        .multi_line(options & MULTILINE != 0)
        .dot_matches_new_line(options & SINGLELINE != 0)
        .ignore_whitespace(options & IGNORE_PATTERN_WHITESPACE != 0)
        .size_limit(1 << 20)
        .dfa_size_limit(2 << 20)
        .nest_limit(64)
        .build()
        .map_err(|e| {
            let text = e.to_string();
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or(&text);
            format!(
                "the regular expression is not supported: {}",
                last.trim().trim_start_matches("error: ")
            )
        })
}

/// A regex value: a pattern, a match, its groups, or one group.
#[derive(Debug)]
pub enum Re {
    Pattern(Regex),
    Match(Capture),
    Groups(Capture),
    Group(Found),
}

/// A Match: its groups (0 is the whole match).
impl Re {
    /// `ToString()`: a pattern's text, a match's or group's value.
    pub fn text(&self) -> String {
        match self {
            Re::Pattern(p) => p.as_str().to_string(),
            Re::Match(c) => c.groups.first().map_or(String::new(), |g| g.value.clone()),
            Re::Groups(_) => "System.Text.RegularExpressions.GroupCollection".into(),
            Re::Group(g) => g.value.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Capture {
    pub groups: Vec<Found>,
}

#[derive(Debug, Clone)]
pub struct Found {
    pub success: bool,
    pub value: String,
    /// In characters.
    pub index: i64,
    pub name: String,
}

impl Capture {
    fn failed() -> Capture {
        Capture {
            groups: vec![Found {
                success: false,
                value: String::new(),
                index: 0,
                name: "0".into(),
            }],
        }
    }
    fn of(re: &Regex, text: &str, caps: &regex::Captures) -> Capture {
        let names: Vec<Option<&str>> = re.capture_names().collect();
        let groups = (0..caps.len())
            .map(|i| {
                let name = names
                    .get(i)
                    .copied()
                    .flatten()
                    .map_or_else(|| i.to_string(), str::to_string);
                match caps.get(i) {
                    Some(m) => Found {
                        success: true,
                        value: m.as_str().to_string(),
                        index: text[..m.start()].chars().count() as i64,
                        name,
                    },
                    None => Found {
                        success: false,
                        value: String::new(),
                        index: 0,
                        name,
                    },
                }
            })
            .collect();
        Capture { groups }
    }
}

fn re_val<'e>(r: Re) -> Val<'e> {
    Val::Re(Rc::new(r))
}

/// The pattern of a call: a compiled literal, a Regex value, or text compiled now.
fn pattern(m: &mut Machine, v: &Val, options: i64) -> Result<Regex, EvalError> {
    match v {
        Val::Re(r) => match &**r {
            Re::Pattern(p) => Ok(p.clone()),
            _ => Err(err("expected a regular expression")),
        },
        Val::Str(s) => {
            // compiling costs about what matching a text of its size a few times does
            m.ticks(s.len() * 16 + 100)?;
            m.charge(s.len() * 64 + 1024)?;
            compile(s, options).map_err(|e| EvalError(Cow::Owned(e)))
        }
        Val::Null => Err(err("Value cannot be null (pattern)")),
        _ => Err(err("a pattern is a string")),
    }
}

fn text_arg<'v>(v: &'v Val) -> Result<&'v str, EvalError> {
    match v {
        Val::Str(s) => Ok(s),
        Val::Null => Err(err("Value cannot be null (input)")),
        _ => Err(err("the input is not a string")),
    }
}

/// What a regex function does (static and instance forms share it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    IsMatch,
    Match,
    Matches,
    Replace,
    Split,
}

/// `Regex.Op(input, pattern, [replacement,] [options])` or `regex.Op(input, ...)`.
pub(super) fn run<'e>(
    m: &mut Machine<'e>,
    op: Op,
    re: Regex,
    input: &str,
    rest: &'e [Node],
    rest_values: &[Val<'e>],
) -> Result<Val<'e>, EvalError> {
    m.ticks(input.len() / 16 + 1)?;
    Ok(match op {
        Op::IsMatch => Val::Bool(re.is_match(input)),
        Op::Match => match re.captures(input) {
            Some(c) => re_val(Re::Match(Capture::of(&re, input, &c))),
            None => re_val(Re::Match(Capture::failed())),
        },
        Op::Matches => {
            let mut out = Vec::new();
            for c in re.captures_iter(input) {
                m.tick()?;
                m.charge(64 + c.get(0).map_or(0, |x| x.len()))?;
                out.push(re_val(Re::Match(Capture::of(&re, input, &c))));
            }
            list(out)
        }
        Op::Replace => {
            let text = match (rest.first(), rest_values.first()) {
                (Some(f @ Node::Lambda(..)), _) => {
                    let mut out = String::with_capacity(input.len());
                    let mut last = 0;
                    for c in re.captures_iter(input) {
                        let Some(whole) = c.get(0) else { continue };
                        out.push_str(&input[last..whole.start()]);
                        let arg = re_val(Re::Match(Capture::of(&re, input, &c)));
                        out.push_str(&m.apply(f, &[arg])?.to_text());
                        last = whole.end();
                    }
                    out.push_str(&input[last..]);
                    out
                }
                (_, Some(v)) => {
                    let replacement = dotnet_replacement(text_arg(v)?)?;
                    re.replace_all(input, replacement.as_str()).into_owned()
                }
                _ => return Err(err("Replace takes a replacement or a MatchEvaluator")),
            };
            m.text(text)?
        }
        Op::Split => {
            // as .NET: captured groups are part of the result
            let mut out = Vec::new();
            let mut last = 0;
            for c in re.captures_iter(input) {
                let Some(whole) = c.get(0) else { continue };
                m.tick()?;
                out.push(Val::Str(Cow::Owned(input[last..whole.start()].to_string())));
                for g in c.iter().skip(1).flatten() {
                    out.push(Val::Str(Cow::Owned(g.as_str().to_string())));
                }
                last = whole.end();
            }
            out.push(Val::Str(Cow::Owned(input[last..].to_string())));
            m.charge(input.len() + out.len() * 32)?;
            list(out)
        }
    })
}

/// A .NET replacement pattern in the regex crate's syntax: `$1`, `${name}`, `$0`, `$&`
/// and `$$`; `$_`, `` $` `` and `$'` are refused.
fn dotnet_replacement(r: &str) -> Result<String, EvalError> {
    let mut out = String::with_capacity(r.len() + 8);
    let mut chars = r.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('$') => {
                chars.next();
                out.push_str("$$");
            }
            Some('&') => {
                chars.next();
                out.push_str("${0}");
            }
            Some(d) if d.is_ascii_digit() => {
                let mut n = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    n.push(*d);
                    chars.next();
                }
                out.push_str(&format!("${{{n}}}"));
            }
            Some('{') => {
                out.push('$');
                for c in chars.by_ref() {
                    out.push(c);
                    if c == '}' {
                        break;
                    }
                }
            }
            Some('_' | '`' | '\'' | '+') => {
                return Err(err(
                    "the replacement substitutions $_, $`, $' and $+ are not supported",
                ))
            }
            _ => out.push_str("$$"),
        }
    }
    Ok(out)
}

/// `Regex.Escape`: the metacharacters .NET escapes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' | '*' | '+' | '?' | '|' | '{' | '[' | '(' | ')' | '^' | '$' | '.' | '#' => {
                out.push('\\');
                out.push(c);
            }
            ' ' => out.push_str("\\ "),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{c}' => out.push_str("\\f"),
            c => out.push(c),
        }
    }
    out
}

/// The static `Regex.X(input, pattern, …)`.
pub(super) fn call_static<'e>(
    m: &mut Machine<'e>,
    op: Op,
    args: &'e [Node],
) -> Result<Val<'e>, EvalError> {
    let lambda_at = args.iter().position(|a| matches!(a, Node::Lambda(..)));
    let mut values = Vec::with_capacity(args.len());
    for (i, a) in args.iter().enumerate() {
        values.push(if Some(i) == lambda_at {
            Val::Null
        } else {
            m.eval(a)?
        });
    }
    let input = text_arg(values.first().ok_or(err("Regex takes an input"))?)?.to_string();
    let at = if op == Op::Replace { 3 } else { 2 };
    let options = match values.get(at) {
        Some(Val::Int(o)) => *o,
        _ => 0,
    };
    let re = pattern(
        m,
        values.get(1).ok_or(err("Regex takes a pattern"))?,
        options,
    )?;
    run(
        m,
        op,
        re,
        &input,
        &args[2.min(args.len())..],
        &values[2.min(values.len())..],
    )
}

/// Members of a Regex, Match, GroupCollection or Group.
pub(super) fn member<'e>(
    m: &mut Machine<'e>,
    r: &Rc<Re>,
    member: M,
    args: &'e [Node],
) -> Result<Val<'e>, EvalError> {
    match &**r {
        Re::Pattern(re) => {
            let op = match member {
                M::IsMatch => Op::IsMatch,
                M::Match => Op::Match,
                M::Matches => Op::Matches,
                M::Replace => Op::Replace,
                M::Split => Op::Split,
                M::ToString => return Ok(Val::Str(Cow::Owned(re.as_str().to_string()))),
                _ => return Err(not_a_member("Regex", member)),
            };
            let lambda = args
                .get(1)
                .filter(|a| matches!(a, Node::Lambda(..)))
                .is_some();
            let input = m.eval(args.first().ok_or(err("expected an input"))?)?;
            let input = text_arg(&input)?.to_string();
            let mut rest = Vec::new();
            if !lambda {
                for a in args.iter().skip(1) {
                    rest.push(m.eval(a)?);
                }
            }
            run(m, op, re.clone(), &input, &args[1.min(args.len())..], &rest)
        }
        Re::Match(c) => {
            let whole = c
                .groups
                .first()
                .cloned()
                .unwrap_or_else(|| Capture::failed().groups[0].clone());
            match member {
                M::Groups => Ok(re_val(Re::Groups(c.clone()))),
                _ => found_member(m, &whole, member),
            }
        }
        Re::Groups(c) => match member {
            M::Count => Ok(Val::Int(c.groups.len() as i64)),
            _ => Err(not_a_member("GroupCollection", member)),
        },
        Re::Group(g) => found_member(m, g, member),
    }
}

fn found_member<'e>(m: &mut Machine<'e>, g: &Found, member: M) -> Result<Val<'e>, EvalError> {
    Ok(match member {
        M::Success => Val::Bool(g.success),
        M::Value | M::ToString => m.text(g.value.clone())?,
        M::Index => Val::Int(g.index),
        M::Length => Val::Int(g.value.chars().count() as i64),
        M::Name => Val::Str(Cow::Owned(g.name.clone())),
        _ => return Err(not_a_member("Match", member)),
    })
}

/// `match.Groups[i]` / `match.Groups["name"]`: a group that did not take part is an
/// unsuccessful group, as in .NET.
pub(super) fn group<'e>(r: &Re, key: &Val) -> Result<Val<'e>, EvalError> {
    let Re::Groups(c) = r else {
        return Err(err("Cannot apply indexing to this value"));
    };
    let found = match key {
        Val::Int(i) => usize::try_from(*i).ok().and_then(|i| c.groups.get(i)),
        Val::Str(name) => c.groups.iter().find(|g| g.name == **name),
        _ => None,
    };
    Ok(re_val(Re::Group(found.cloned().unwrap_or(Found {
        success: false,
        value: String::new(),
        index: 0,
        name: key.to_text().into_owned(),
    }))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacements_and_escapes_translate() {
        assert_eq!(dotnet_replacement("$1-$2").unwrap(), "${1}-${2}");
        assert_eq!(
            dotnet_replacement("[$&] $$ ${year}").unwrap(),
            "[${0}] $$ ${year}"
        );
        assert_eq!(dotnet_replacement("cost $x").unwrap(), "cost $$x");
        assert!(dotnet_replacement("$_").is_err());
        assert_eq!(escape("a.b*c (d) #1"), "a\\.b\\*c\\ \\(d\\)\\ \\#1");
        assert!(compile("(?<=a)b", 0).unwrap_err().contains("not supported"));
        assert!(
            compile("a{1000}{1000}{1000}", 0).is_err(),
            "bounded in size"
        );
        assert!(compile("ABC", IGNORE_CASE).unwrap().is_match("xabcx"));
    }
}
