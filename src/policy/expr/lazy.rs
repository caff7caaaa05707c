//! Lazy JSON: a parsed body is checked whole (syntax, depth, repeated names) without
//! building anything, then only the root container is opened; a nested container stays
//! a `Json::Raw` span of the shared source text until something reads into it, and is
//! re-emitted from the text when printed. A policy that reads two fields of a 2 KB body
//! and prints it back so allocates for what it touches, not for every value.
//! Printing re-emits canonical JSON (Newtonsoft's number forms and string escapes), so
//! the output is what the eager tree would print. A document that repeats a property
//! name (or spells names with escapes) is parsed eagerly: only there do the two differ.
//! Must not touch: expression evaluation, the eager tree's semantics.

use std::borrow::Cow;
use std::rc::Rc;

use super::json::{self, newline, push_json_double, push_string, Json, Raw, Reader, BAD};
use super::{err, EvalError};
use check::End;

mod check;

/// A parsed text (without insignificant whitespace) and its containers, found while it
/// was checked: opening a container looks its children's ends up instead of scanning
/// them again.
#[derive(Debug)]
pub struct Source {
    pub text: String,
    ends: Vec<End>,
}

impl Drop for Source {
    /// The text and ends go back to the thread's spares for the next body checked.
    fn drop(&mut self) {
        check::give_back(
            std::mem::take(&mut self.text),
            std::mem::take(&mut self.ends),
        );
    }
}

impl Source {
    fn end_of(&self, start: u32) -> Option<End> {
        let i = self.ends.binary_search_by_key(&start, |e| e.start).ok()?;
        Some(self.ends[i])
    }
}

/// Parses JSON text: plain JSON is checked whole and its root opened, nested containers
/// left unopened; anything else (and every error) goes to the eager parser.
pub fn parse(text: &str) -> Result<Json, EvalError> {
    match check::check(text.as_bytes()) {
        Some(checked) => Ok(open_root(checked)),
        None => json::parse_eager(text),
    }
}

/// `parse` of bytes (a body): `None` when they are not UTF-8. The check of plain JSON
/// is also the check of its encoding.
pub fn parse_utf8(bytes: &[u8]) -> Option<Result<Json, EvalError>> {
    match check::check(bytes) {
        Some(checked) => Some(Ok(open_root(checked))),
        None => std::str::from_utf8(bytes).ok().map(json::parse_eager),
    }
}

/// A checked text's root, opened.
fn open_root(checked: check::Checked) -> Json {
    let root = checked.ends[0];
    let object = checked.text.starts_with('{');
    let raw = Raw {
        src: Rc::new(Source {
            text: checked.text,
            ends: checked.ends,
        }),
        start: root.start,
        end: root.end,
        object,
        depth: root.depth,
        canonical: root.canonical,
    };
    open(&raw)
}

/// A property name at the cursor: its span (without quotes) and whether it holds an
/// escape; the cursor moves past it.
fn name_span(r: &mut Reader) -> Result<(usize, usize, bool), EvalError> {
    match r.b.get(r.pos) {
        Some(&q @ (b'"' | b'\'')) => {
            let start = r.pos + 1;
            let escaped = string_text(r, q)?.is_none();
            let end = r.pos - 1;
            Ok((start, end, escaped))
        }
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' || *c == b'$' => {
            let start = r.pos;
            while r.pos < r.b.len()
                && (r.b[r.pos].is_ascii_alphanumeric() || matches!(r.b[r.pos], b'_' | b'$'))
            {
                r.pos += 1;
            }
            Ok((start, r.pos, false))
        }
        _ => Err(BAD),
    }
}

/// Reads a string at the cursor (its opening quote): `Some(text)` when it holds no
/// escape (borrowed from the source), `None` when it does (checked, not decoded).
fn string_text<'t>(r: &mut Reader<'t>, quote: u8) -> Result<Option<&'t str>, EvalError> {
    let start = r.pos + 1;
    let mut i = start;
    while i < r.b.len() && r.b[i] != quote && r.b[i] != b'\\' {
        i += 1;
    }
    match r.b.get(i) {
        Some(&c) if c == quote => {
            r.pos = i + 1;
            Ok(Some(&r.text[start..i]))
        }
        Some(_) => {
            // an escape: the decoding reader checks it
            r.string(quote)?;
            Ok(None)
        }
        None => Err(err("Unterminated string (JSON)")),
    }
}

/// A string (or name) at the cursor as text: borrowed without escapes, decoded with.
fn string_value<'t>(r: &mut Reader<'t>, quote: u8) -> Result<Cow<'t, str>, EvalError> {
    let at = r.pos;
    match string_text(r, quote)? {
        Some(s) => Ok(Cow::Borrowed(s)),
        None => {
            r.pos = at;
            Ok(Cow::Owned(r.string(quote)?))
        }
    }
}

/// A name at the cursor, as text.
fn name_value<'t>(r: &mut Reader<'t>) -> Result<Cow<'t, str>, EvalError> {
    match r.b.get(r.pos) {
        Some(&q @ (b'"' | b'\'')) => string_value(r, q),
        _ => {
            let (start, end, _) = name_span(r)?;
            Ok(Cow::Borrowed(&r.text[start..end]))
        }
    }
}

/// Opens an unopened container one level: scalars parsed, nested containers left
/// unopened. The source was checked when it was parsed, so this cannot fail; if it
/// did, the container would open empty.
pub fn open(raw: &Raw) -> Json {
    open_checked(raw).unwrap_or_else(|_| {
        debug_assert!(false, "a checked JSON source failed to open");
        if raw.object {
            Json::new_object()
        } else {
            Json::new_array(Vec::new())
        }
    })
}

fn open_checked(raw: &Raw) -> Result<Json, EvalError> {
    let src = &raw.src;
    let mut r = Reader::new(&src.text);
    r.pos = raw.start as usize + 1;
    let child = |r: &mut Reader| -> Result<Json, EvalError> {
        r.blank()?;
        match r.b.get(r.pos) {
            Some(&c @ (b'{' | b'[')) => {
                let start = r.pos as u32;
                let end = src.end_of(start).ok_or(BAD)?;
                r.pos = end.end as usize;
                Ok(Json::Raw(Raw {
                    src: Rc::clone(src),
                    start,
                    end: end.end,
                    object: c == b'{',
                    depth: end.depth,
                    canonical: end.canonical,
                }))
            }
            Some(&q @ (b'"' | b'\'')) => Ok(Json::Str(string_value(r, q)?.into_owned())),
            _ => r.value(1),
        }
    };
    if raw.object {
        let mut fields: Vec<(String, Json)> = Vec::with_capacity(8);
        loop {
            r.blank()?;
            if r.b.get(r.pos) == Some(&b'}') {
                break;
            }
            let name = name_value(&mut r)?.into_owned();
            r.blank()?;
            r.pos += 1; // ':'
            let v = child(&mut r)?;
            fields.push((name, v));
            r.blank()?;
            if r.b.get(r.pos) == Some(&b',') {
                r.pos += 1;
            }
        }
        Ok(Json::Object(Rc::new(std::cell::RefCell::new(fields))))
    } else {
        let mut items = Vec::with_capacity(8);
        loop {
            r.blank()?;
            if r.b.get(r.pos) == Some(&b']') {
                break;
            }
            items.push(child(&mut r)?);
            r.blank()?;
            if r.b.get(r.pos) == Some(&b',') {
                r.pos += 1;
            }
        }
        Ok(Json::new_array(items))
    }
}

/// An unopened container parsed whole (for comparisons).
pub fn open_all(raw: &Raw) -> Json {
    let text = &raw.src.text[raw.start as usize..raw.end as usize];
    json::parse_eager(text).unwrap_or(Json::Null)
}

/// Prints an unopened container as the tree would print it (compact or indented at
/// `depth`), straight from its text.
pub fn emit(raw: &Raw, indented: bool, depth: usize, out: &mut String) -> Result<(), EvalError> {
    let text = &raw.src.text[raw.start as usize..raw.end as usize];
    if raw.canonical && !indented {
        out.push_str(text);
        return Ok(());
    }
    let mut r = Reader::new(&raw.src.text);
    r.pos = raw.start as usize;
    out.reserve(text.len());
    emit_value(&mut r, &raw.src, indented, depth, out)
}

fn emit_value(
    r: &mut Reader,
    src: &Source,
    indented: bool,
    depth: usize,
    out: &mut String,
) -> Result<(), EvalError> {
    r.blank()?;
    let Some(&c) = r.b.get(r.pos) else {
        return Err(err("Unexpected end of JSON content"));
    };
    match c {
        b'{' | b'[' => {
            // a canonical container inside one that is not: copied whole
            let copied = (!indented)
                .then(|| src.end_of(r.pos as u32))
                .flatten()
                .filter(|e| e.canonical);
            if let Some(e) = copied {
                out.push_str(&r.text[r.pos..e.end as usize]);
                r.pos = e.end as usize;
                return Ok(());
            }
            let (close, object) = if c == b'{' {
                (b'}', true)
            } else {
                (b']', false)
            };
            r.pos += 1;
            out.push(char::from(c));
            let mut n = 0;
            loop {
                r.blank()?;
                if r.b.get(r.pos) == Some(&close) {
                    r.pos += 1;
                    break;
                }
                if n > 0 {
                    out.push(',');
                }
                newline(out, indented, depth + 1);
                if object {
                    // a plain name is copied as it stands, like a plain string value
                    let copied = r.b.get(r.pos) == Some(&b'"') && copy_string(r, out);
                    if !copied {
                        let name = name_value(r)?;
                        push_string(out, &name);
                    }
                    r.blank()?;
                    r.pos += 1; // ':'
                    out.push(':');
                    if indented {
                        out.push(' ');
                    }
                }
                emit_value(r, src, indented, depth + 1, out)?;
                r.blank()?;
                if r.b.get(r.pos) == Some(&b',') {
                    r.pos += 1;
                }
                n += 1;
            }
            if n > 0 {
                newline(out, indented, depth);
            }
            out.push(char::from(close));
        }
        b'"' if copy_string(r, out) => {}
        b'"' | b'\'' => push_string(out, &string_value(r, c)?),
        b'-' | b'0'..=b'9' if copy_number(r, out) => {}
        b'-' | b'0'..=b'9' => match r.number()? {
            Json::Int(i) => {
                use std::fmt::Write as _;
                let _ = write!(out, "{i}");
            }
            Json::Float(f) => push_json_double(out, f),
            _ => return Err(BAD),
        },
        _ => match r.value(depth)? {
            Json::Bool(b) => out.push_str(if b { "true" } else { "false" }),
            Json::Null => out.push_str("null"),
            Json::Float(f) => push_json_double(out, f),
            _ => return Err(BAD),
        },
    }
    Ok(())
}

/// Copies a double-quoted string at the cursor, quotes included, when nothing in it
/// needs an escape (no backslash, no control character, no U+0085 / U+2028 / U+2029
/// lead byte): the common case, one pass and one copy.
fn copy_string(r: &mut Reader, out: &mut String) -> bool {
    let b = r.b;
    let start = r.pos;
    let mut i = start + 1;
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => {
                out.push_str(&r.text[start..=i]);
                r.pos = i + 1;
                return true;
            }
            b'\\' | 0xC2 | 0xE2 => return false,
            c if c < 0x20 => return false,
            _ => i += 1,
        }
    }
    false
}

/// Copies a number at the cursor when its text is already what Newtonsoft prints
/// (`check::number_at`); anything else is converted and printed.
fn copy_number(r: &mut Reader, out: &mut String) -> bool {
    match check::number_at(r.b, r.pos) {
        Some((end, true)) => {
            out.push_str(&r.text[r.pos..end]);
            r.pos = end;
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lazy and eager parsing print the same, for every shape and both formats.
    #[test]
    fn lazy_prints_what_eager_prints() {
        let docs = [
            r#"{"a": 1, "b": [true, null, 1.50, "x\"y", {"c": {}}], 'd': {e: 2,}, "f": [], "g": -0.0001, "h": 1e20, "i": "\u00e9\n"}"#,
            r#"[0, -0, 007.5, 12.25, 0.00012, 0.00001, 123456789012345.6, 1.0, 100, -3.5e2, 99999999999999999999]"#,
            r#"[1, [2, [3, [4]]], {"k": "v"}, [], {}]"#,
            r#"{"dup": 1, "dup": 2, "x": [1]}"#,
            "{\"a\\u0062\": 1}",
            // plain JSON: canonical containers are copied whole, the others re-emitted
            "{ \"a\" : [ 1 , 2.5 , \"x y\" ] ,\n \"b\": {\"c\": \"\\u00e9\\/\", \"d\": [1.0, -0, 1e3]}, \"e\": [{\"f\": \"\u{2028}\"}]}\r\n",
            r#"[{"n":1},{"n":-0.5},[0.0001,0.00001],[123456789012345678,1234567890123456789]]"#,
        ];
        for text in docs {
            let lazy = parse(text).unwrap();
            let eager = json::parse_eager(text).unwrap();
            for indented in [false, true] {
                assert_eq!(
                    lazy.print(indented).unwrap(),
                    eager.print(indented).unwrap(),
                    "{text}"
                );
            }
            assert!(lazy.deep_equals(&eager));
        }
        // a nested container stays unopened until read; reading opens it in place
        let doc = parse(r#"{"items": [{"n": 1}, {"n": 2}], "id": "x"}"#).unwrap();
        let Json::Object(o) = &doc else { panic!() };
        assert!(matches!(o.borrow()[0].1, Json::Raw(_)));
        let items = doc.get("items").unwrap();
        assert!(matches!(o.borrow()[0].1, Json::Array(_)));
        items.at(1).unwrap().set("n", Json::Int(7)).unwrap();
        assert_eq!(
            doc.print(false).unwrap(),
            r#"{"items":[{"n":1},{"n":7}],"id":"x"}"#
        );
        // the copy has no insignificant whitespace; canonical containers are flagged
        let Some(c) = check::check(b"{ \"a\" : [ 1 , 2.5 ], \"b\" : [ 1.0 ] }") else {
            panic!("plain JSON")
        };
        assert_eq!(c.text, r#"{"a":[1,2.5],"b":[1.0]}"#);
        let flags: Vec<_> = c
            .ends
            .iter()
            .map(|e| (e.start, e.end, e.canonical))
            .collect();
        assert_eq!(flags, [(0, 23, false), (5, 12, true), (17, 22, false)]);
        for other in [
            "{'a': 1}",
            "{a: 1}",
            "[1, /* c */ 2]",
            "[01]",
            "[1,]",
            "\"x\"",
            "[\"\u{1}\"]",
        ] {
            assert!(check::check(other.as_bytes()).is_none(), "{other}");
        }
        for bad in ["{", "[1,", "{\"a\": [1, }", "{\"a\" 1}", "[\"x]", "{} x"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let deep = "[".repeat(65) + &"]".repeat(65);
        assert!(parse(&deep).is_err());
    }

    /// A body's bytes are checked as JSON and as UTF-8 in one pass: bytes that are not
    /// UTF-8 are told apart from JSON errors, wherever they are.
    #[test]
    fn body_bytes_are_json_and_utf8_or_told_which_not() {
        let ok = parse_utf8("{\"a\": \"é\", \"b\": [1, {\"c\": null}]}".as_bytes());
        assert_eq!(
            ok.unwrap().unwrap().print(false).unwrap(),
            "{\"a\":\"é\",\"b\":[1,{\"c\":null}]}"
        );
        for bytes in [
            &b"{\"a\": \"\xff\"}"[..],
            b"{\"a\": [\"x\", \"\xc3\"]}",
            b"[1, \"\xed\xa0\x80\"]",
            b"{\"a\": 1 \xff}",
            b"\xef\xbb\xbf\xff[]",
        ] {
            assert!(parse_utf8(bytes).is_none(), "{bytes:?}");
        }
        // UTF-8, not plain JSON: the eager parser's verdict
        assert_eq!(
            parse_utf8(b"{'a': 1}")
                .unwrap()
                .unwrap()
                .print(false)
                .unwrap(),
            "{\"a\":1}"
        );
        assert!(parse_utf8(b"{\"a\": }").unwrap().is_err());
    }
}
