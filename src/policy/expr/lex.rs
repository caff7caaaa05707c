//! The expression lexer: text to tokens with their byte offsets (identifiers, numbers,
//! string literals: regular, verbatim `@"..."` and interpolated `$"..."`, punctuation);
//! `//` and `/* */` comments are skipped.
//! Must not touch: parsing, evaluation.

use super::*;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Int(i64),
    /// A number with a fraction, an exponent or a `d`/`f`/`m` suffix.
    Double(f64),
    Str(String),
    /// `$"..."`: literal text and holes, each hole already lexed.
    Interp(Vec<Part>),
    Punct(&'static str),
    End,
}

/// A piece of an interpolated string.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Part {
    Text(String),
    /// A hole's tokens, its alignment (`{x,5}`) and its format (`{x:N2}`).
    Hole(Vec<(Tok, usize)>, Option<i64>, Option<String>),
}

pub(super) const PUNCTS: [&str; 42] = [
    "??=", "??", "?.", "==", "!=", "<=", ">=", "&&", "||", "=>", "++", "--", "+=", "-=", "*=",
    "/=", "%=", "|=", "&=", "(", ")", "{", "}", "[", "]", ".", ",", ";", "?", ":", "!", "<", ">",
    "+", "-", "*", "/", "%", "=", "&", "|", "^",
];

fn error(offset: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        offset,
        message: message.into(),
    }
}

/// Where the comment or whitespace at `i` ends (`i` itself when there is none).
fn skip_blank(text: &str, mut i: usize) -> Result<usize, ParseError> {
    let b = text.as_bytes();
    loop {
        match (b.get(i), b.get(i + 1)) {
            (Some(c), _) if c.is_ascii_whitespace() => i += 1,
            // C# takes every Unicode space as whitespace (a no-break space copied from
            // a web page, say)
            (Some(c), _) if *c >= 0x80 => match text[i..].chars().next() {
                Some(ch) if ch.is_whitespace() => i += ch.len_utf8(),
                _ => return Ok(i),
            },
            (Some(b'/'), Some(b'/')) => {
                i = text[i..].find('\n').map_or(text.len(), |n| i + n + 1);
            }
            (Some(b'/'), Some(b'*')) => match text[i + 2..].find("*/") {
                Some(n) => i += 2 + n + 2,
                None => return Err(error(i, "unterminated comment")),
            },
            _ => return Ok(i),
        }
    }
}

pub(super) fn lex(text: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        i = skip_blank(text, i)?;
        let Some(&c) = b.get(i) else { break };
        let start = i;
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((Tok::Ident(text[start..i].to_string()), start));
        } else if c.is_ascii_digit() {
            let (tok, end) = number(text, i)?;
            i = end;
            out.push((tok, start));
        } else if c == b'\'' {
            let (ch, end) = char_literal(text, i)?;
            i = end;
            // a char is a one-character string here (no char arithmetic)
            out.push((Tok::Str(ch.to_string()), start));
        } else if let Some((prefix, verbatim, interpolated)) = string_start(&text[i..]) {
            i += prefix;
            let (tok, end) = if interpolated {
                interpolated_string(text, i, start, verbatim)?
            } else {
                let (s, end, _) = string_body(text, i, start, verbatim, false)?;
                (Tok::Str(s), end)
            };
            i = end;
            out.push((tok, start));
        } else if let Some(p) = PUNCTS.iter().find(|p| text[i..].starts_with(**p)) {
            i += p.len();
            out.push((Tok::Punct(p), start));
        } else {
            let ch = text[i..].chars().next().unwrap_or('?');
            return Err(error(start, format!("unexpected character '{ch}'")));
        }
    }
    Ok(out)
}

/// A numeric literal from `i`: decimal or hex (`0x1F`) integers with `L`/`U` suffixes,
/// and reals (`1.5`, `2e3`, `1.5m`, `2d`, `3f`).
fn number(text: &str, mut i: usize) -> Result<(Tok, usize), ParseError> {
    let b = text.as_bytes();
    let start = i;
    if text[i..].starts_with("0x") || text[i..].starts_with("0X") {
        i += 2;
        while i < b.len() && (b[i].is_ascii_hexdigit() || b[i] == b'_') {
            i += 1;
        }
        let digits: String = text[start + 2..i].chars().filter(|c| *c != '_').collect();
        let n = i64::from_str_radix(&digits, 16).map_err(|_| error(start, "bad hex number"))?;
        while i < b.len() && matches!(b[i], b'L' | b'l' | b'U' | b'u') {
            i += 1;
        }
        return Ok((Tok::Int(n), i));
    }
    let mut real = false;
    while i < b.len() {
        match b[i] {
            b'0'..=b'9' | b'_' => i += 1,
            b'.' if !real && b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                real = true;
                i += 1;
            }
            b'e' | b'E' => {
                real = true;
                i += 1;
                if matches!(b.get(i), Some(b'+' | b'-')) {
                    i += 1;
                }
            }
            _ => break,
        }
    }
    let digits: String = text[start..i].chars().filter(|c| *c != '_').collect();
    match b.get(i) {
        Some(b'd' | b'D' | b'f' | b'F' | b'm' | b'M') => {
            real = true;
            i += 1;
        }
        Some(b'L' | b'l' | b'U' | b'u') => {
            while i < b.len() && matches!(b[i], b'L' | b'l' | b'U' | b'u') {
                i += 1;
            }
        }
        _ => {}
    }
    if b.get(i).is_some_and(|c| c.is_ascii_alphanumeric()) {
        return Err(error(start, "bad number"));
    }
    if real {
        let f: f64 = digits.parse().map_err(|_| error(start, "bad number"))?;
        return Ok((Tok::Double(f), i));
    }
    let n = digits
        .parse()
        .map_err(|_| error(start, "number too large"))?;
    Ok((Tok::Int(n), i))
}

/// `'x'` or `'\n'` from `i` (its opening quote): the char and the offset after it.
fn char_literal(text: &str, i: usize) -> Result<(char, usize), ParseError> {
    let rest = &text[i + 1..];
    let mut chars = rest.chars();
    let (ch, len) = match chars.next() {
        Some('\\') => {
            let esc = chars.next().unwrap_or('?');
            let ch = match esc {
                '\'' => '\'',
                '"' => '"',
                '\\' => '\\',
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '0' => '\0',
                _ => return Err(error(i, "unsupported escape in a char literal")),
            };
            (ch, 1 + esc.len_utf8())
        }
        Some('\'') | None => return Err(error(i, "empty char literal")),
        Some(ch) => (ch, ch.len_utf8()),
    };
    if rest[len..].starts_with('\'') {
        Ok((ch, i + 1 + len + 1))
    } else {
        Err(error(i, "a char literal holds one character"))
    }
}

/// Where a string's text stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Quote,
    Hole,
}

/// A string literal's opening: (its length up to and with the quote, verbatim,
/// interpolated).
fn string_start(rest: &str) -> Option<(usize, bool, bool)> {
    for (prefix, verbatim, interpolated) in [
        ("\"", false, false),
        ("@\"", true, false),
        ("$\"", false, true),
        ("$@\"", true, true),
        ("@$\"", true, true),
    ] {
        if rest.starts_with(prefix) {
            return Some((prefix.len(), verbatim, interpolated));
        }
    }
    None
}

/// The text of a string literal from `i` (after its opening quote) to its closing quote:
/// C# escapes in a regular string, `""` in a verbatim one; with `holes`, `{{` and `}}`
/// stand for braces and a lone `{` ends the text (the caller reads the hole). Returns the
/// text, the offset after the closing quote or at the `{`, and which of the two it was.
fn string_body(
    text: &str,
    mut i: usize,
    start: usize,
    verbatim: bool,
    holes: bool,
) -> Result<(String, usize, End), ParseError> {
    let b = text.as_bytes();
    let mut s = String::new();
    loop {
        let Some(&ch) = b.get(i) else {
            return Err(error(start, "unterminated string"));
        };
        match ch {
            b'"' if verbatim && b.get(i + 1) == Some(&b'"') => {
                s.push('"');
                i += 2;
            }
            b'"' => return Ok((s, i + 1, End::Quote)),
            b'{' | b'}' if holes && b.get(i + 1) == Some(&ch) => {
                s.push(char::from(ch));
                i += 2;
            }
            b'{' if holes => return Ok((s, i, End::Hole)),
            b'}' if holes => {
                return Err(error(i, "a '}' in an interpolated string must be doubled"))
            }
            b'\\' if !verbatim => {
                s.push(match b.get(i + 1).copied().unwrap_or(0) {
                    b'"' => '"',
                    b'\'' => '\'',
                    b'\\' => '\\',
                    b'n' => '\n',
                    b't' => '\t',
                    b'r' => '\r',
                    b'0' => '\0',
                    _ => return Err(error(i, "unsupported escape in string")),
                });
                i += 2;
            }
            _ => {
                let ch_len = text[i..].chars().next().map_or(1, char::len_utf8);
                s.push_str(&text[i..i + ch_len]);
                i += ch_len;
            }
        }
    }
}

/// `$"text {expr} text"` from `i` (after the opening quote): text and lexed holes.
fn interpolated_string(
    text: &str,
    mut i: usize,
    start: usize,
    verbatim: bool,
) -> Result<(Tok, usize), ParseError> {
    let mut parts = Vec::new();
    loop {
        let (s, end, stop) = string_body(text, i, start, verbatim, true)?;
        if !s.is_empty() {
            parts.push(Part::Text(s));
        }
        if stop == End::Quote {
            return Ok((Tok::Interp(parts), end));
        }
        let hole_start = end + 1;
        let (hole_end, split) = hole_end(text, hole_start)?;
        let expr_end = split.unwrap_or(hole_end);
        let hole = &text[hole_start..expr_end];
        let (align, format) = match split {
            None => (None, None),
            Some(at) => align_and_format(text, at, hole_end)?,
        };
        let mut tokens = lex(hole)?;
        for (_, at) in &mut tokens {
            *at += hole_start;
        }
        if tokens.is_empty() {
            return Err(error(end, "an empty hole in an interpolated string"));
        }
        parts.push(Part::Hole(tokens, align, format));
        i = hole_end + 1;
    }
}

/// `,5:N2` / `,-5` / `:N2` after a hole's expression (from `at` to the closing `}`).
fn align_and_format(
    text: &str,
    at: usize,
    end: usize,
) -> Result<(Option<i64>, Option<String>), ParseError> {
    let spec = &text[at..end];
    let (align, format) = match spec.strip_prefix(',') {
        Some(rest) => match rest.split_once(':') {
            Some((a, f)) => (Some(a), Some(f)),
            None => (Some(rest), None),
        },
        None => (None, spec.strip_prefix(':')),
    };
    let align = match align {
        Some(a) => Some(
            a.trim()
                .parse::<i64>()
                .ok()
                .filter(|n| n.abs() <= 1024)
                .ok_or_else(|| error(at, "an alignment is a number (up to 1024)"))?,
        ),
        None => None,
    };
    Ok((align, format.map(str::to_string)))
}

/// Where the hole starting at `i` ends (its closing `}`), skipping nested brackets and
/// string literals, and where its alignment or format starts (a `,` or `:` outside
/// brackets: `a ? b : c` needs parentheses in a hole, as in C#).
fn hole_end(text: &str, mut i: usize) -> Result<(usize, Option<usize>), ParseError> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut split = None;
    loop {
        match b.get(i) {
            None => return Err(error(i, "unterminated hole in an interpolated string")),
            Some(b'}') if depth == 0 => return Ok((i, split)),
            Some(b'(' | b'[' | b'{') if split.is_none() => depth += 1,
            Some(b')' | b']' | b'}') if split.is_none() => depth = depth.saturating_sub(1),
            Some(b':' | b',') if depth == 0 && split.is_none() => split = Some(i),
            Some(b'"') if split.is_none() => {
                let (_, end, _) = string_body(text, i + 1, i, false, false)?;
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
}

pub(super) fn is_keyword(w: &str) -> bool {
    [
        "true", "false", "null", "context", "return", "var", "string", "int", "bool", "long",
        "new", "if", "else", "for", "while", "foreach", "do", "try", "catch", "finally", "throw",
        "break", "continue", "in", "out", "is", "as", "typeof", "double", "decimal", "object",
        "char", "float", "using",
    ]
    .contains(&w)
}
