//! Liquid's filters as APIM's DotLiquid has them (snake_case names, and the PascalCase
//! names APIM documents): strings, numbers, collections and dates.
//! Must not touch: template parsing and rendering (liquid.rs).

use super::*;

/// The filters, by their snake_case name (APIM's PascalCase names are accepted too).
const FILTERS: &[&str] = &[
    "append",
    "capitalize",
    "date",
    "default",
    "divided_by",
    "downcase",
    "escape",
    "first",
    "join",
    "last",
    "minus",
    "modulo",
    "plus",
    "prepend",
    "remove",
    "replace",
    "replace_first",
    "round",
    "size",
    "slice",
    "split",
    "strip",
    "lstrip",
    "rstrip",
    "times",
    "truncate",
    "upcase",
    "url_encode",
    "url_decode",
    "json",
    "abs",
    "floor",
    "ceil",
    "reverse",
    "sort",
    "uniq",
    "map",
    "newline_to_br",
    "strip_newlines",
    "at_least",
    "at_most",
    "compact",
    "currency",
    "h",
    "remove_first",
    "strip_html",
    "truncatewords",
    "truncate_words",
];

pub(super) fn filter_name(name: &str) -> Option<String> {
    let mut snake = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    FILTERS.contains(&snake.as_str()).then_some(snake)
}

pub(super) fn filter(
    m: &mut Machine,
    name: &str,
    v: Val<'static>,
    a: &[Val<'static>],
) -> Result<Val<'static>, EvalError> {
    let arg = |i: usize| a.get(i).map(text).unwrap_or_default();
    let s = || text(&v);
    let out = |x: String| Val::Str(Cow::Owned(x));
    m.tick()?;
    Ok(match name {
        "append" => out(s() + &arg(0)),
        "prepend" => out(arg(0) + &s()),
        "capitalize" => {
            let t = s();
            let mut c = t.chars();
            out(c
                .next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default())
        }
        "downcase" => out(s().to_lowercase()),
        "upcase" => out(s().to_uppercase()),
        "default" => {
            if truthy(&v) && !matches!(&v, Val::Str(x) if x.is_empty()) {
                v
            } else {
                a.first().cloned().unwrap_or(Val::Null)
            }
        }
        "escape" => out(s()
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;")),
        "json" => {
            let mut o = String::new();
            match &v {
                Val::Json(j) => o = j.print(false)?,
                Val::Str(x) => json::push_string(&mut o, x),
                other => o = value::to_json(other)?.print(false)?,
            }
            out(o)
        }
        "first" | "last" => end_item(&v, name == "first"),
        "join" => {
            let sep = if a.is_empty() {
                " ".to_string()
            } else {
                arg(0)
            };
            out(v
                .items()
                .unwrap_or_default()
                .iter()
                .map(text)
                .collect::<Vec<_>>()
                .join(&sep))
        }
        "split" => list(
            s().split(arg(0).as_str())
                .map(|x| Val::Str(Cow::Owned(x.to_string())))
                .collect(),
        ),
        "size" => Val::Int(match &v {
            Val::Str(x) => x.chars().count(),
            Val::Null => 0,
            other => other.items().map_or(0, |i| i.len()),
        } as i64),
        "remove" => out(s().replace(&arg(0), "")),
        "replace" => out(s().replace(&arg(0), &arg(1))),
        "replace_first" => out(s().replacen(&arg(0), &arg(1), 1)),
        "strip" => out(s().trim().to_string()),
        "lstrip" => out(s().trim_start().to_string()),
        "rstrip" => out(s().trim_end().to_string()),
        "strip_newlines" => out(s().replace(['\r', '\n'], "")),
        "newline_to_br" => out(s().replace('\n', "<br />\n")),
        "h" => return filter(m, "escape", v, a),
        "remove_first" => out(s().replacen(&arg(0), "", 1)),
        "strip_html" => out(strip_html(&s())),
        "truncatewords" | "truncate_words" => {
            let n = a.first().map_or(15.0, number).max(1.0) as usize;
            let ellipsis = if a.len() > 1 { arg(1) } else { "...".into() };
            let t = s();
            let words: Vec<&str> = t.split_whitespace().collect();
            if words.len() <= n {
                out(t)
            } else {
                out(words[..n].join(" ") + &ellipsis)
            }
        }
        "truncate" => {
            let n = a.first().map_or(50.0, number).max(0.0) as usize;
            let ellipsis = if a.len() > 1 { arg(1) } else { "...".into() };
            let t = s();
            if t.chars().count() <= n {
                out(t)
            } else {
                let keep = n.saturating_sub(ellipsis.chars().count());
                out(t.chars().take(keep).collect::<String>() + &ellipsis)
            }
        }
        "slice" => {
            let t: Vec<char> = s().chars().collect();
            let start = a.first().map_or(0.0, number) as i64;
            let len = a.get(1).map_or(1.0, number).max(0.0) as usize;
            let start = if start < 0 {
                (t.len() as i64 + start).max(0) as usize
            } else {
                start as usize
            };
            out(t.iter().skip(start).take(len).collect())
        }
        "url_encode" => out(statics::escape_form(&s())),
        "url_decode" => out(statics::unescape(&s(), true)),
        _ => return filter_more(m, name, v, a),
    })
}

/// The numeric, collection and date filters.
fn filter_more(
    m: &mut Machine,
    name: &str,
    v: Val<'static>,
    a: &[Val<'static>],
) -> Result<Val<'static>, EvalError> {
    let arg = |i: usize| a.get(i).map(text).unwrap_or_default();
    let out = |x: String| Val::Str(Cow::Owned(x));
    Ok(match name {
        "plus" => num_val(number(&v) + a.first().map_or(0.0, number)),
        "minus" => num_val(number(&v) - a.first().map_or(0.0, number)),
        "times" => num_val(number(&v) * a.first().map_or(1.0, number)),
        "divided_by" => {
            let d = a.first().map_or(1.0, number);
            if d == 0.0 {
                return Err(err("Liquid divided_by: division by zero"));
            }
            match (&v, a.first()) {
                (Val::Int(x), Some(Val::Int(y))) => Val::Int(x / y),
                _ => num_val(number(&v) / d),
            }
        }
        "modulo" => {
            let d = a.first().map_or(1.0, number);
            if d == 0.0 {
                return Err(err("Liquid modulo: division by zero"));
            }
            num_val(number(&v) % d)
        }
        "abs" => num_val(number(&v).abs()),
        "at_least" => num_val(number(&v).max(a.first().map_or(f64::MIN, number))),
        "at_most" => num_val(number(&v).min(a.first().map_or(f64::MAX, number))),
        "currency" => out(crate::policy::expr::format::number(
            &Val::Double(number(&v)),
            "C",
        )?),
        "compact" => {
            let items = v.items().unwrap_or_default();
            m.ticks(items.len())?;
            list(items.into_iter().filter(|x| *x != Val::Null).collect())
        }
        "floor" => num_val(number(&v).floor()),
        "ceil" => num_val(number(&v).ceil()),
        "round" => {
            let digits = a.first().map_or(0.0, number) as i32;
            let scale = 10f64.powi(digits.clamp(0, 15));
            num_val((number(&v) * scale).round() / scale)
        }
        "reverse" => list(v.items().unwrap_or_default().into_iter().rev().collect()),
        "sort" => {
            let mut items = v.items().unwrap_or_default();
            items.sort_by(linq::compare);
            list(items)
        }
        "uniq" => {
            let mut seen: Vec<Val<'static>> = Vec::new();
            for i in v.items().unwrap_or_default() {
                if !seen.contains(&i) {
                    seen.push(i);
                }
            }
            list(seen)
        }
        "map" => {
            let key = Val::Str(Cow::Owned(arg(0)));
            let mut mapped = Vec::new();
            for i in v.items().unwrap_or_default() {
                mapped.push(step(&i, &key)?);
            }
            list(mapped)
        }
        "date" => {
            let t = match &v {
                Val::Date(d) => *d,
                Val::Str(x) if x == "now" || x == "today" => {
                    datetime::Instant::from_unix_ms(m.env.now_ms() as i64, datetime::Kind::Utc)?
                }
                Val::Str(x) => datetime::parse(x)?,
                _ => return Ok(Val::Null),
            };
            out(datetime::format(&t, a.first().map(text).as_deref())?)
        }
        _ => {
            return Err(EvalError(Cow::Owned(format!(
                "the Liquid filter '{name}' is not supported"
            ))))
        }
    })
}

/// `strip_html`: the text without tags, comments, scripts and styles.
fn strip_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let tail = &rest[open..];
        let lower = tail.get(..7).unwrap_or(tail).to_ascii_lowercase();
        let end = if tail.starts_with("<!--") {
            tail.find("-->").map(|e| e + 3)
        } else if lower.starts_with("<script") {
            tail.to_ascii_lowercase().find("</script>").map(|e| e + 9)
        } else if lower.starts_with("<style") {
            tail.to_ascii_lowercase().find("</style>").map(|e| e + 8)
        } else {
            tail.find('>').map(|e| e + 1)
        };
        match end {
            Some(e) => rest = &tail[e..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out
}
