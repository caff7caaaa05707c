//! The expression lexer: text to tokens with their byte offsets (identifiers, numbers,
//! string and character literals, punctuation), comments skipped.
//! Must not touch: parsing, evaluation.

use super::*;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Int(i64),
    Str(String),
    Punct(&'static str),
    End,
}

pub(super) const PUNCTS: [&str; 23] = [
    "==", "!=", "<=", ">=", "&&", "||", "(", ")", "{", "}", "[", "]", ".", ",", ";", "?", ":", "!",
    "<", ">", "+", "-", "=",
];

pub(super) fn lex(text: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
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
            let n = text[start..i].parse().map_err(|_| ParseError {
                offset: start,
                message: "number too large".into(),
            })?;
            out.push((Tok::Int(n), start));
        } else if c == b'"' {
            i += 1;
            let mut s = String::new();
            loop {
                let Some(&ch) = b.get(i) else {
                    return Err(ParseError {
                        offset: start,
                        message: "unterminated string".into(),
                    });
                };
                match ch {
                    b'"' => {
                        i += 1;
                        break;
                    }
                    b'\\' => {
                        let esc = b.get(i + 1).copied().unwrap_or(0);
                        s.push(match esc {
                            b'"' => '"',
                            b'\\' => '\\',
                            b'n' => '\n',
                            b't' => '\t',
                            b'r' => '\r',
                            b'0' => '\0',
                            _ => {
                                return Err(ParseError {
                                    offset: i,
                                    message: "unsupported escape in string".into(),
                                })
                            }
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
            out.push((Tok::Str(s), start));
        } else if let Some(p) = PUNCTS.iter().find(|p| text[i..].starts_with(**p)) {
            i += p.len();
            out.push((Tok::Punct(p), start));
        } else {
            let ch = text[i..].chars().next().unwrap_or('?');
            return Err(ParseError {
                offset: start,
                message: format!("unexpected character '{ch}'"),
            });
        }
    }
    Ok(out)
}

pub(super) fn is_keyword(w: &str) -> bool {
    [
        "true", "false", "null", "context", "return", "var", "string", "int", "bool", "long",
        "new", "if", "else", "for", "while", "foreach", "do",
    ]
    .contains(&w)
}
