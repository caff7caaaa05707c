//! APIM's "rawxml" form: policy documents as people copy them from the portal and the
//! docs hold C# expressions (`@(...)`, `@{...}`) with unescaped `"`, `<`, `>` and `&&`,
//! which is not XML. Before the XML parser sees a document, every expression is found
//! by bracket matching (string literals respected) and re-escaped, so the parser hands
//! back the exact expression text. An expression that was already escaped (the portal's
//! "xml" form) is unescaped first, so both forms give the same text. Also substitutes
//! `{{named-value}}` references. Line numbers are preserved (only characters within a
//! line change), so parser positions still point at the right line.
//! Must not touch: expression meaning (see `expr`), policy semantics.

/// Re-escapes every `@(...)`/`@{...}` so that `text` becomes well-formed XML.
/// `Err((byte offset, message))` for an expression that is never closed.
pub fn escape_expressions(text: &str) -> Result<String, (usize, String)> {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 64);
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        // (byte-wise: `i` may sit inside a multi-byte character)
        if b[i..].starts_with(b"<!--") {
            i = find(&b[i..], b"-->").map_or(b.len(), |e| i + e + 3);
            continue;
        }
        if b[i..].starts_with(b"<![CDATA[") {
            i = find(&b[i..], b"]]>").map_or(b.len(), |e| i + e + 3);
            continue;
        }
        // a bare `&` (Microsoft's rewrite-uri example writes `{a}&{b}?x=1&y=2` in an
        // attribute) is the character, as APIM takes it; entity references stay
        if b[i] == b'&' && !entity_at(&b[i..]) {
            out.push_str(&text[copied..i]);
            out.push_str("&amp;");
            i += 1;
            copied = i;
            continue;
        }
        if b[i] == b'@' && matches!(b.get(i + 1), Some(b'(') | Some(b'{')) {
            let end = match_close(text, i + 1)?;
            let raw = &text[i + 2..end];
            let inner = unescape(raw);
            out.push_str(&text[copied..i + 2]);
            // inside a tag, the expression is an attribute value
            let in_attribute = out
                .rfind(['<', '>'])
                .is_some_and(|p| out.as_bytes()[p] == b'<');
            escape_into(&inner, &mut out, in_attribute);
            out.push(b[end] as char);
            i = end + 1;
            copied = i;
            continue;
        }
        i += 1;
    }
    out.push_str(&text[copied..]);
    Ok(out)
}

/// The offset of the bracket closing the one at `open`, skipping string literals
/// (`"..."` with escapes, `'c'`, and `&quot;...&quot;` in the escaped form) and
/// comments (`// …` to the end of the line, `/* … */`), whose brackets need not balance.
fn match_close(text: &str, open: usize) -> Result<usize, (usize, String)> {
    let b = text.as_bytes();
    let mut stack: Vec<u8> = vec![if b[open] == b'(' { b')' } else { b'}' }];
    let mut i = open + 1;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i + 1 < b.len() && b[i + 1] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = find(&b[i + 2..], b"*/").map_or(b.len(), |e| i + 2 + e + 1);
            }
            b'&' if b[i..].starts_with(b"&quot;") => {
                i += 6;
                while i < b.len() && !b[i..].starts_with(b"&quot;") {
                    i += 1;
                }
                i += 5;
            }
            b'(' => stack.push(b')'),
            b'{' => stack.push(b'}'),
            b'[' => stack.push(b']'),
            c @ (b')' | b'}' | b']') => {
                if stack.pop() != Some(c) {
                    return Err((i, format!("unbalanced '{}' in expression", c as char)));
                }
                if stack.is_empty() {
                    return Ok(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err((open - 1, "expression is never closed".into()))
}

/// Whether `b` starts with an XML entity or character reference (`&amp;`, `&#10;`,
/// `&#x1F;`).
fn entity_at(b: &[u8]) -> bool {
    let Some(end) = b.iter().take(12).position(|&c| c == b';') else {
        return false;
    };
    let name = &b[1..end];
    match name {
        [b'#', b'x' | b'X', hex @ ..] => !hex.is_empty() && hex.iter().all(u8::is_ascii_hexdigit),
        [b'#', dec @ ..] => !dec.is_empty() && dec.iter().all(u8::is_ascii_digit),
        [first, rest @ ..] => {
            (first.is_ascii_alphabetic() || *first == b'_')
                && rest
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
        }
        [] => false,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        let mut matched = false;
        for (ent, ch) in [
            ("&quot;", '"'),
            ("&apos;", '\''),
            ("&lt;", '<'),
            ("&gt;", '>'),
            ("&amp;", '&'),
        ] {
            if rest.starts_with(ent) {
                out.push(ch);
                rest = &rest[ent.len()..];
                matched = true;
                break;
            }
        }
        if !matched {
            out.push('&');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Escapes an expression's text for XML. In an attribute a line break also gets a
/// character reference before it: XML turns a literal one into a space, which would end
/// no `//` comment, while the reference survives (the literal one stays, so the lines of
/// the document do not move).
fn escape_into(s: &str, out: &mut String, in_attribute: bool) {
    for c in s.chars() {
        match c {
            '\n' if in_attribute => out.push_str("&#10;\n"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
    }
}

/// Replaces `{{name}}` with named values. `Err(name)` for an unknown name. The content
/// of a `<set-body template="liquid">` is left alone: there `{{ }}` is Liquid's.
pub fn substitute_named_values<'v>(
    text: &str,
    lookup: impl Fn(&str) -> Option<&'v str>,
) -> Result<String, String> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((start, end)) = liquid_template(rest) {
        out.push_str(&substitute_span(&rest[..start], &lookup)?);
        out.push_str(&rest[start..end]);
        rest = &rest[end..];
    }
    out.push_str(&substitute_span(rest, &lookup)?);
    Ok(out)
}

/// Where the first Liquid template's content is in `text` (after its `<set-body …>`
/// tag, up to its `</set-body>`).
fn liquid_template(text: &str) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(i) = text[from..].find("<set-body") {
        let open = from + i;
        let tag_end = text[open..].find('>')? + open;
        let tag = &text[open..tag_end];
        if tag.contains("template=\"liquid\"") || tag.contains("template='liquid'") {
            if tag.ends_with('/') {
                return None;
            }
            let close = text[tag_end..].find("</set-body")? + tag_end;
            return Some((tag_end + 1, close));
        }
        from = tag_end;
    }
    None
}

fn substitute_span<'v>(
    text: &str,
    lookup: &impl Fn(&str) -> Option<&'v str>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = after[..end].trim();
        match lookup(name) {
            Some(v) => out.push_str(v),
            None => return Err(name.to_string()),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_escaped_forms_give_the_same_document() {
        let raw = r#"<set-header name="x" exists-action="override"><value>@(context.Request.Headers.GetValueOrDefault("a","") == "<b>" && true)</value></set-header>"#;
        let escaped = r#"<set-header name="x" exists-action="override"><value>@(context.Request.Headers.GetValueOrDefault(&quot;a&quot;,&quot;&quot;) == &quot;&lt;b&gt;&quot; &amp;&amp; true)</value></set-header>"#;
        let a = escape_expressions(raw).unwrap();
        let b = escape_expressions(escaped).unwrap();
        assert_eq!(a, b);
        let doc = roxmltree::Document::parse(&a).unwrap();
        let value = doc.descendants().find(|n| n.has_tag_name("value")).unwrap();
        assert_eq!(
            value.text().unwrap(),
            r#"@(context.Request.Headers.GetValueOrDefault("a","") == "<b>" && true)"#
        );
    }

    #[test]
    fn attribute_expressions_with_quotes_and_blocks() {
        let raw = r#"<when condition="@(context.Request.Method == "GET")" /><set-body>@{ var s = "}"; return s; }</set-body>"#;
        let x = escape_expressions(raw).unwrap();
        let wrapped = format!("<r>{x}</r>");
        let doc = roxmltree::Document::parse(&wrapped).unwrap();
        let when = doc.descendants().find(|n| n.has_tag_name("when")).unwrap();
        assert_eq!(
            when.attribute("condition"),
            Some(r#"@(context.Request.Method == "GET")"#)
        );
        let body = doc
            .descendants()
            .find(|n| n.has_tag_name("set-body"))
            .unwrap();
        assert_eq!(body.text(), Some(r#"@{ var s = "}"; return s; }"#));
        assert_eq!(
            escape_expressions("<a>@(1 + (2</a>").unwrap_err().1,
            "expression is never closed"
        );
        assert_eq!(escape_expressions("<!-- @( -->").unwrap(), "<!-- @( -->");
        // found by fuzzing: scanning must not slice inside a multi-byte character
        assert!(escape_expressions("ү<!--ү").is_ok());
        assert!(escape_expressions("@(\"ү\" + &quot;ү)").is_err());
    }

    #[test]
    fn named_values() {
        let v = |n: &str| (n == "token").then_some("s3cret");
        assert_eq!(
            substitute_named_values("<v>Bearer {{token}}</v>", v).unwrap(),
            "<v>Bearer s3cret</v>"
        );
        assert_eq!(
            substitute_named_values("{{ nope }}", v).unwrap_err(),
            "nope"
        );
    }
}
