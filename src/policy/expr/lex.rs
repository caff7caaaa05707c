//! The expression lexer: text to tokens with their byte offsets (identifiers, numbers,
//! string literals: regular, verbatim `@"..."` and interpolated `$"..."`, punctuation);
//! `//` and `/* */` comments are skipped.
//! Must not touch: parsing, evaluation.

use super::*;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Int(i64),
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
    Hole(Vec<(Tok, usize)>),
}

pub(super) const PUNCTS: [&str; 28] = [
    "??", "?.", "==", "!=", "<=", ">=", "&&", "||", "(", ")", "{", "}", "[", "]", ".", ",", ";",
    "?", ":", "!", "<", ">", "+", "-", "*", "/", "%", "=",
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
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let n = text[start..i]
                .parse()
                .map_err(|_| error(start, "number too large"))?;
            out.push((Tok::Int(n), start));
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
        let hole_end = hole_end(text, hole_start)?;
        let hole = &text[hole_start..hole_end];
        let mut tokens = lex(hole)?;
        for (_, at) in &mut tokens {
            *at += hole_start;
        }
        if tokens.is_empty() {
            return Err(error(end, "an empty hole in an interpolated string"));
        }
        parts.push(Part::Hole(tokens));
        i = hole_end + 1;
    }
}

/// Where the hole starting at `i` ends (its closing `}`), skipping nested brackets and
/// string literals. A format or alignment (`{x:N2}`, `{x,5}`) is refused for now.
fn hole_end(text: &str, mut i: usize) -> Result<usize, ParseError> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    loop {
        match b.get(i) {
            None => return Err(error(i, "unterminated hole in an interpolated string")),
            Some(b'}') if depth == 0 => return Ok(i),
            Some(b'(' | b'[' | b'{') => depth += 1,
            Some(b')' | b']' | b'}') => depth = depth.saturating_sub(1),
            Some(b':' | b',') if depth == 0 => {
                // `a ? b : c` needs parentheses in a hole, as in C#
                return Err(error(
                    i,
                    "format and alignment in interpolated strings are not supported yet",
                ));
            }
            Some(b'"') => {
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
        "new", "if", "else", "for", "while", "foreach", "do",
    ]
    .contains(&w)
}
