//! .NET formatting with the invariant culture: numbers' `ToString(format)` (standard
//! D, N, F, X, E, P, G, R and simple custom patterns such as "0.00" and "#,##0"),
//! composite formatting (`string.Format`, `AppendFormat`, `$"{x,5:N2}"`) and Base64.
//! Must not touch: evaluation, syntax.

use std::borrow::Cow;

use base64::Engine;

use super::{err, EvalError, Val};

const BAD_FORMAT: EvalError = err("Input string was not in a correct format (format)");

/// `v.ToString(format)` for a number (other values print as they are).
pub fn number(v: &Val, format: &str) -> Result<String, EvalError> {
    let (int, float) = match v {
        Val::Int(i) => (Some(*i), *i as f64),
        Val::Double(d) => (None, *d),
        // `{0:yyyy-MM-dd}`, `$"{date:o}"`: a date's own format
        Val::Date(t) => return super::datetime::format(t, Some(format)),
        other => return Ok(other.to_text().into_owned()),
    };
    let mut chars = format.chars();
    let (Some(kind), digits) = (chars.next(), chars.as_str()) else {
        return Ok(v.to_text().into_owned());
    };
    let precision: Option<usize> = if digits.is_empty() {
        None
    } else if digits.bytes().all(|b| b.is_ascii_digit()) && digits.len() <= 2 {
        digits.parse().ok()
    } else {
        return custom(float, format);
    };
    Ok(match kind.to_ascii_uppercase() {
        'D' => {
            let i = int.ok_or(BAD_FORMAT)?;
            let body = format!(
                "{:0width$}",
                i.unsigned_abs(),
                width = precision.unwrap_or(1)
            );
            if i < 0 {
                format!("-{body}")
            } else {
                body
            }
        }
        'X' => {
            let i = int.ok_or(BAD_FORMAT)?;
            let body = format!("{:0width$x}", i, width = precision.unwrap_or(1));
            if kind == 'X' {
                body.to_uppercase()
            } else {
                body
            }
        }
        'F' => fixed(float, precision.unwrap_or(2)),
        'N' => group(&fixed(float, precision.unwrap_or(2))),
        'P' => format!("{} %", group(&fixed(float * 100.0, precision.unwrap_or(2)))),
        'E' => {
            let s = format!("{:.p$e}", float, p = precision.unwrap_or(6));
            let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
            let e: i32 = e.parse().unwrap_or(0);
            let sign = if e < 0 { '-' } else { '+' };
            format!(
                "{m}{}{sign}{:03}",
                if kind == 'E' { 'E' } else { 'e' },
                e.abs()
            )
        }
        'G' | 'R' => v.to_text().into_owned(),
        'C' => format!("¤{}", group(&fixed(float, precision.unwrap_or(2)))),
        _ => return custom(float, format),
    })
}

/// `f` with `p` decimals, a tie rounded away from zero as .NET does (Rust's `{:.p}`
/// rounds a tie to even): the exact decimal expansion, cut and rounded by hand.
fn fixed(f: f64, p: usize) -> String {
    if !f.is_finite() {
        return super::json::dotnet_double(f);
    }
    let p = p.min(30);
    let exact = format!("{:.*}", p + 40, f.abs());
    let (int, frac) = exact.split_once('.').unwrap_or((&exact, ""));
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes().take(p)).collect();
    if frac.as_bytes().get(p).is_some_and(|d| *d >= b'5') {
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, b'1');
                break;
            }
            i -= 1;
            if digits[i] == b'9' {
                digits[i] = b'0';
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    let int_len = digits.len() - p;
    let mut out = String::with_capacity(digits.len() + 2);
    let zero = digits.iter().all(|d| *d == b'0');
    if f.is_sign_negative() && !zero {
        out.push('-');
    }
    out.push_str(std::str::from_utf8(&digits[..int_len]).unwrap_or("0"));
    if p > 0 {
        out.push('.');
        out.push_str(std::str::from_utf8(&digits[int_len..]).unwrap_or(""));
    }
    out
}

/// Thousands separators in the integer part of a formatted number.
fn group(s: &str) -> String {
    let (sign, s) = s.strip_prefix('-').map_or(("", s), |r| ("-", r));
    let (int, frac) = s.split_once('.').map_or((s, None), |(i, f)| (i, Some(f)));
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    let mut r = format!("{sign}{out}");
    if let Some(f) = frac {
        r.push('.');
        r.push_str(f);
    }
    r
}

/// A custom numeric format of zeros, `#`, one `.` and `,` grouping (e.g. "0.00",
/// "#,##0", "000"); anything else is refused.
fn custom(f: f64, format: &str) -> Result<String, EvalError> {
    if format.is_empty() || !format.chars().all(|c| matches!(c, '0' | '#' | '.' | ',')) {
        return Err(EvalError(Cow::Owned(format!(
            "the number format \"{format}\" is not supported"
        ))));
    }
    let (int_part, frac_part) = format.split_once('.').unwrap_or((format, ""));
    let required = frac_part.chars().filter(|c| *c == '0').count();
    let optional = frac_part.chars().filter(|c| *c == '#').count();
    let mut s = fixed(f, required + optional);
    if optional > 0 && s.contains('.') {
        let keep = s.find('.').map_or(0, |i| i + 1 + required);
        while s.len() > keep && s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    let min_int = int_part.chars().filter(|c| *c == '0').count();
    let (sign, body) = s.strip_prefix('-').map_or(("", s.as_str()), |r| ("-", r));
    let (int, frac) = body
        .split_once('.')
        .map_or((body, None), |(i, f)| (i, Some(f)));
    let mut int = if int == "0" && min_int == 0 {
        String::new()
    } else {
        int.to_string()
    };
    while int.len() < min_int {
        int.insert(0, '0');
    }
    if int_part.contains(',') {
        int = group(&int);
    }
    Ok(match frac {
        Some(fr) => format!("{sign}{int}.{fr}"),
        None => format!("{sign}{int}"),
    })
}

/// Composite formatting: `{index[,alignment][:format]}` with `{{` and `}}` for braces.
pub fn composite(format: &str, values: &[Val]) -> Result<String, EvalError> {
    let bad = err("Input string was not in a correct format (string.Format)");
    let mut out = String::with_capacity(format.len());
    let mut rest = format;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let brace = rest.as_bytes()[i];
        if rest.as_bytes().get(i + 1) == Some(&brace) {
            out.push(char::from(brace));
            rest = &rest[i + 2..];
            continue;
        }
        if brace == b'}' {
            return Err(bad);
        }
        let close = rest[i..].find('}').ok_or(bad.clone())? + i;
        let spec = &rest[i + 1..close];
        let (head, fmt) = spec
            .split_once(':')
            .map_or((spec, None), |(h, f)| (h, Some(f)));
        let (index, align) = head
            .split_once(',')
            .map_or((head, None), |(x, a)| (x, Some(a)));
        let index: usize = index.trim().parse().map_err(|_| bad.clone())?;
        let value = values.get(index).ok_or(err(
            "Index (zero based) must be greater than or equal to zero and less than the size of the argument list (string.Format)",
        ))?;
        let text = match fmt {
            Some(f) => number(value, f)?,
            None => value.to_text().into_owned(),
        };
        let align: i64 = match align {
            Some(a) => a.trim().parse().map_err(|_| bad.clone())?,
            None => 0,
        };
        out.push_str(&aligned(&text, align));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `text` padded to `align` characters: right-aligned when positive, left when negative.
pub fn aligned(text: &str, align: i64) -> String {
    let width = align.unsigned_abs().min(1024) as usize;
    let have = text.chars().count();
    if have >= width {
        return text.to_string();
    }
    let pad = " ".repeat(width - have);
    if align > 0 {
        pad + text
    } else {
        text.to_string() + &pad
    }
}

/// `WebUtility.HtmlEncode`: `< > & " '` as entities, and the characters 160 to 255 as
/// numeric references, as .NET writes them.
pub fn html_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (160..256).contains(&(c as u32)) => out.push_str(&format!("&#{};", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// `WebUtility.HtmlDecode`: numeric references and the common named entities; anything
/// else is left as it is.
pub fn html_decode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        let decoded = rest.find(';').filter(|e| *e <= 10).and_then(|e| {
            let name = &rest[1..e];
            let c = match name {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                n if n.starts_with("#x") || n.starts_with("#X") => u32::from_str_radix(&n[2..], 16)
                    .ok()
                    .and_then(char::from_u32),
                n if n.starts_with('#') => n[1..].parse().ok().and_then(char::from_u32),
                _ => None,
            };
            c.map(|c| (c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn from_base64(text: &str) -> Result<Vec<u8>, EvalError> {
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map_err(|_| err("The input is not a valid Base-64 string"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_dotnet_invariant() {
        let n = |v: Val, f: &str| number(&v, f).unwrap();
        assert_eq!(n(Val::Int(1234567), "N0"), "1,234,567");
        assert_eq!(n(Val::Double(1234.5), "N2"), "1,234.50");
        assert_eq!(n(Val::Double(-1234.5), "N1"), "-1,234.5");
        assert_eq!(n(Val::Int(42), "D5"), "00042");
        assert_eq!(n(Val::Int(-42), "D4"), "-0042");
        assert_eq!(n(Val::Int(255), "X"), "FF");
        assert_eq!(n(Val::Int(255), "x4"), "00ff");
        assert_eq!(n(Val::Double(1.23456), "F3"), "1.235");
        assert_eq!(n(Val::Double(0.256), "P1"), "25.6 %");
        assert_eq!(n(Val::Double(1234.5678), "E2"), "1.23E+003");
        assert_eq!(n(Val::Double(3.5), "0.00"), "3.50");
        assert_eq!(n(Val::Double(1234567.891), "#,##0.##"), "1,234,567.89");
        assert_eq!(n(Val::Int(7), "000"), "007");
        assert_eq!(
            n(Val::Double(0.125), "F2"),
            "0.13",
            "a tie rounds away from zero"
        );
        assert_eq!(
            n(Val::Double(9.995), "F2"),
            "9.99",
            "9.995 is below the tie in binary"
        );
        assert_eq!(n(Val::Double(99.5), "F0"), "100");
        assert!(number(&Val::Double(1.5), "D").is_err());
        assert_eq!(
            composite(
                "{0,-4}|{1,5:F1}|{{x}}",
                &[Val::Str("ab".into()), Val::Double(2.25)]
            )
            .unwrap(),
            "ab  |  2.3|{x}"
        );
        assert!(composite("{2}", &[Val::Int(1)]).is_err());
        assert!(composite("{0", &[Val::Int(1)]).is_err());
    }
}
