//! The body conversions of `xml-to-json` and `json-to-xml`: text in, text out, as
//! Azure API Management shapes them. XML is read with roxmltree (no DTD, so no entity
//! expansion), JSON with the expression language's parser (depth 64); both bodies are
//! already bounded by the gateway's body limit, elements nest at most `MAX_XML_DEPTH`
//! levels, and the output is built in one pass.
//!
//! XML to JSON (`direct`): an element with only text is a string, an empty one null;
//! otherwise an object whose attributes (namespace declarations included) are `@name`
//! properties in document order, whose text is `#text`, and whose child elements are
//! properties named as written, repeated names becoming an array (every child an array
//! with `always_array`). `:` in names becomes `$` (`soap$Envelope`), and the XML
//! declaration's pseudo-attributes become top-level properties (`"version": "1.0"`).
//! `javascript-friendly` keeps the same shape without prefixes, namespace declarations
//! or the declaration.
//!
//! JSON to XML: an object with one object property becomes that element, anything else
//! is wrapped in `<Document>`; arrays repeat their property's element, null is
//! `xsi:nil="true"`, booleans print as .NET does (`True`). Properties named by the
//! namespace prefix declare namespaces, the attribute block's properties become
//! attributes, and `p<separator>name` is the qualified name `p:name` when `p` is a
//! declared prefix. Invalid name characters are encoded as XmlConvert does (`_x0020_`).
//! Must not touch: headers, when a conversion applies (the policies decide).

use std::fmt::Write as _;

use roxmltree::{Document, Node, ParsingOptions};

use super::expr::{dotnet_double, parse_json_tree, Json};
use crate::telemetry::push_json_str as push_json_string;

/// Elements deeper than this are refused rather than walked.
pub const MAX_XML_DEPTH: usize = 128;

/// Which JSON shape xml-to-json writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    Direct,
    JavascriptFriendly,
}

/// Why a body was not converted (it goes on as it was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotConverted(pub String);

/// xml-to-json of `text`.
pub fn xml_to_json(text: &str, kind: JsonKind, always_array: bool) -> Result<String, NotConverted> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let opts = ParsingOptions {
        allow_dtd: false,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(text, opts)
        .map_err(|e| NotConverted(format!("the body is not well-formed XML: {e}")))?;
    let w = XmlReader {
        doc: &doc,
        kind,
        always_array,
    };
    let mut out = String::with_capacity(text.len());
    out.push('{');
    let mut first = true;
    if kind == JsonKind::Direct {
        for (name, value) in declaration(text) {
            property(&mut out, &mut first, name);
            push_json_string(&mut out, value);
        }
    }
    let root = doc.root_element();
    property(&mut out, &mut first, &w.name(root.range().start + 1));
    w.element(root, 1, &mut out)?;
    out.push('}');
    Ok(out)
}

/// The pseudo-attributes of an XML declaration at the start of `text`.
fn declaration(text: &str) -> Vec<(&str, &str)> {
    let Some(rest) = text.trim_start().strip_prefix("<?xml") else {
        return Vec::new();
    };
    let Some(end) = rest.find("?>") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut s = &rest[..end];
    while let Some(eq) = s.find('=') {
        let name = s[..eq].trim();
        let after = s[eq + 1..].trim_start();
        let Some(q) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            break;
        };
        let Some(close) = after[1..].find(q) else {
            break;
        };
        found.push((name, &after[1..1 + close]));
        s = &after[close + 2..];
    }
    found
}

/// Starts a property: the comma and the quoted name.
fn property(out: &mut String, first: &mut bool, name: &str) {
    if !std::mem::take(first) {
        out.push(',');
    }
    push_json_string(out, name);
    out.push(':');
}

struct XmlReader<'d, 'i> {
    doc: &'d Document<'i>,
    kind: JsonKind,
    always_array: bool,
}

/// One entry of an element's object: attributes, then children and text grouped by
/// name in the order each name first appears.
enum Member<'d, 'i> {
    Attribute(String, &'d str),
    Group(String, Vec<Part<'d, 'i>>),
}

enum Part<'d, 'i> {
    Element(Node<'d, 'i>),
    Text(String),
}

impl<'d, 'i> XmlReader<'d, 'i> {
    /// The JSON name of the qualified name written at byte `at` of the document.
    fn name(&self, at: usize) -> String {
        let text = self.doc.input_text();
        let rest = text.get(at..).unwrap_or("");
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '/' || c == '>' || c == '=')
            .unwrap_or(rest.len());
        self.json_name(&rest[..end])
    }

    fn json_name(&self, qname: &str) -> String {
        match self.kind {
            JsonKind::Direct => qname.replace(':', "$"),
            JsonKind::JavascriptFriendly => qname.rsplit(':').next().unwrap_or(qname).to_string(),
        }
    }

    fn element(&self, n: Node<'d, 'i>, depth: usize, out: &mut String) -> Result<(), NotConverted> {
        if depth > MAX_XML_DEPTH {
            return Err(NotConverted(format!(
                "the XML nests deeper than {MAX_XML_DEPTH} elements"
            )));
        }
        let members = self.members(n);
        let only_text = members.len() == 1
            && matches!(&members[0], Member::Group(name, parts) if name == "#text" && parts.len() == 1);
        if members.is_empty() {
            out.push_str("null");
            return Ok(());
        }
        if only_text {
            if let Member::Group(_, parts) = &members[0] {
                if let Some(Part::Text(t)) = parts.first() {
                    push_json_string(out, t);
                }
            }
            return Ok(());
        }
        out.push('{');
        let mut first = true;
        for m in members {
            match m {
                Member::Attribute(name, value) => {
                    property(out, &mut first, &name);
                    push_json_string(out, value);
                }
                Member::Group(name, parts) => {
                    property(out, &mut first, &name);
                    let array = parts.len() > 1 || (self.always_array && name != "#text");
                    if array {
                        out.push('[');
                    }
                    for (i, part) in parts.into_iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        match part {
                            Part::Text(t) => push_json_string(out, &t),
                            Part::Element(c) => self.element(c, depth + 1, out)?,
                        }
                    }
                    if array {
                        out.push(']');
                    }
                }
            }
        }
        out.push('}');
        Ok(())
    }

    fn members(&self, n: Node<'d, 'i>) -> Vec<Member<'d, 'i>> {
        let mut members = self.attributes(n);
        let mut groups: Vec<(String, Vec<Part<'d, 'i>>)> = Vec::new();
        let mut add =
            |name: String, part: Part<'d, 'i>| match groups.iter_mut().find(|g| g.0 == name) {
                Some(g) => g.1.push(part),
                None => groups.push((name, vec![part])),
            };
        let mut text = String::new();
        for c in n.children() {
            if c.is_text() {
                text.push_str(c.text().unwrap_or(""));
                continue;
            }
            if !text.trim().is_empty() {
                add("#text".to_string(), Part::Text(std::mem::take(&mut text)));
            }
            text.clear();
            if c.is_element() {
                add(self.name(c.range().start + 1), Part::Element(c));
            }
        }
        if !text.trim().is_empty() {
            add("#text".to_string(), Part::Text(text));
        }
        members.extend(groups.into_iter().map(|(k, v)| Member::Group(k, v)));
        members
    }

    /// The attributes as written, namespace declarations included (direct only), in
    /// document order.
    fn attributes(&self, n: Node<'d, 'i>) -> Vec<Member<'d, 'i>> {
        let text = self.doc.input_text();
        let mut found: Vec<(usize, Member<'d, 'i>)> = n
            .attributes()
            .map(|a| {
                let at = a.range_qname().start;
                let qname = text.get(a.range_qname()).unwrap_or(a.name());
                (
                    at,
                    Member::Attribute(format!("@{}", self.json_name(qname)), a.value()),
                )
            })
            .collect();
        if self.kind == JsonKind::Direct {
            for (at, qname) in declarations(text, n.range().start) {
                let prefix = qname.strip_prefix("xmlns:");
                let uri = n.lookup_namespace_uri(prefix).unwrap_or("");
                found.push((
                    at,
                    Member::Attribute(format!("@{}", qname.replace(':', "$")), uri),
                ));
            }
        }
        found.sort_by_key(|(at, _)| *at);
        found.into_iter().map(|(_, m)| m).collect()
    }
}

/// The namespace declarations (`xmlns`, `xmlns:p`) of the start tag at byte `start`,
/// with their byte offsets.
pub(crate) fn declarations(text: &str, start: usize) -> Vec<(usize, &str)> {
    let b = text.as_bytes();
    let mut i = start + 1;
    while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'/' && b[i] != b'>' {
        i += 1;
    }
    let mut found = Vec::new();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() || b[i] == b'/' || b[i] == b'>' {
            return found;
        }
        let name_start = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let qname = &text[name_start..i];
        while i < b.len() && b[i] != b'"' && b[i] != b'\'' {
            i += 1;
        }
        let Some(&quote) = b.get(i) else {
            return found;
        };
        i += 1;
        while i < b.len() && b[i] != quote {
            i += 1;
        }
        i += 1;
        if qname == "xmlns" || qname.starts_with("xmlns:") {
            found.push((name_start, qname));
        }
    }
}

/// How json-to-xml names and places things.
#[derive(Debug, Clone)]
pub struct XmlOptions {
    /// Dates in ISO 8601 form are written in XML Schema form.
    pub parse_date: bool,
    /// The character in a property name between a namespace prefix and the local name.
    pub separator: char,
    /// Properties named by it (alone or followed by the separator) declare namespaces.
    pub namespace_prefix: String,
    /// The property whose object's properties become attributes.
    pub attribute_block: Option<String>,
}

const XSI_NIL: &str = " xsi:nil=\"true\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"";

/// json-to-xml of `text`.
pub fn json_to_xml(text: &str, opts: &XmlOptions) -> Result<String, NotConverted> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root = parse_json_tree(text)
        .map_err(|e| NotConverted(format!("the body is not JSON: {}", e.0)))?;
    let mut w = XmlWriter {
        opts,
        out: String::with_capacity(text.len() + 64),
        prefixes: Vec::new(),
    };
    let single = match &root {
        Json::Object(props) => {
            let props = props.borrow();
            match props.as_slice() {
                [(name, value @ Json::Object(_))]
                    if Some(name) != opts.attribute_block.as_ref() =>
                {
                    Some((name.clone(), value.clone()))
                }
                _ => None,
            }
        }
        _ => None,
    };
    match single {
        Some((name, value)) => w.element(&name, &value)?,
        None => match &root {
            Json::Array(items) => {
                let items = items.borrow();
                w.out.push_str("<Document>");
                for item in items.iter() {
                    w.element("Item", item)?;
                }
                w.out.push_str("</Document>");
            }
            other => w.element("Document", other)?,
        },
    }
    Ok(w.out)
}

struct XmlWriter<'o> {
    opts: &'o XmlOptions,
    out: String,
    /// The namespace prefixes declared by the elements being written (a stack).
    prefixes: Vec<String>,
}

impl XmlWriter<'_> {
    /// `<name …>value</name>`; an array repeats the element for each item.
    fn element(&mut self, name: &str, value: &Json) -> Result<(), NotConverted> {
        match value {
            Json::Array(items) => {
                let items = items.borrow();
                if items.is_empty() {
                    let tag = self.qualified(name);
                    let _ = write!(self.out, "<{tag} />");
                }
                for item in items.iter() {
                    self.element(name, item)?;
                }
                Ok(())
            }
            Json::Object(props) => {
                let props = props.borrow();
                let declared = self.prefixes.len();
                // Namespace declarations first, so the element's own name can use them.
                let mut declarations = String::new();
                for (k, v) in props.iter() {
                    if let Some(prefix) = self.declaration(k) {
                        let uri = scalar(v, false).unwrap_or_default();
                        match prefix {
                            "" => declarations.push_str(" xmlns=\""),
                            p => {
                                let _ = write!(declarations, " xmlns:{}=\"", encode_name(p));
                                self.prefixes.push(p.to_string());
                            }
                        }
                        escape(&mut declarations, &uri, true);
                        declarations.push('"');
                    }
                }
                let tag = self.qualified(name);
                let _ = write!(self.out, "<{tag}{declarations}");
                let mut children = Vec::new();
                for (k, v) in props.iter() {
                    if self.declaration(k).is_some() {
                        continue;
                    }
                    match (&self.opts.attribute_block, v) {
                        (Some(block), Json::Object(attrs)) if block == k => {
                            for (an, av) in attrs.borrow().iter() {
                                let an = self.qualified(an);
                                let av = scalar(av, self.opts.parse_date).unwrap_or_default();
                                let _ = write!(self.out, " {an}=\"");
                                escape(&mut self.out, &av, true);
                                self.out.push('"');
                            }
                        }
                        _ => children.push((k, v)),
                    }
                }
                if children.is_empty() {
                    self.out.push_str(" />");
                } else {
                    self.out.push('>');
                    for (k, v) in children {
                        self.element(k, v)?;
                    }
                    let _ = write!(self.out, "</{tag}>");
                }
                self.prefixes.truncate(declared);
                Ok(())
            }
            Json::Null => {
                let tag = self.qualified(name);
                let _ = write!(self.out, "<{tag}{XSI_NIL} />");
                Ok(())
            }
            Json::Raw(_) => Err(NotConverted("unexpected unopened JSON".into())),
            leaf => {
                let tag = self.qualified(name);
                let text = scalar(leaf, self.opts.parse_date).unwrap_or_default();
                let _ = write!(self.out, "<{tag}>");
                escape(&mut self.out, &text, false);
                let _ = write!(self.out, "</{tag}>");
                Ok(())
            }
        }
    }

    /// The prefix a property declares (`""` for the default namespace), if it is a
    /// namespace declaration.
    fn declaration<'k>(&self, name: &'k str) -> Option<&'k str> {
        let prefix = &self.opts.namespace_prefix;
        if prefix.is_empty() {
            return None;
        }
        let rest = name.strip_prefix(prefix.as_str())?;
        if rest.is_empty() {
            return Some("");
        }
        rest.strip_prefix(self.opts.separator)
            .filter(|p| !p.is_empty())
    }

    /// The XML name of a property: `p:local` when it starts with a declared prefix and
    /// the separator, else the whole name encoded.
    fn qualified(&self, name: &str) -> String {
        if let Some((p, local)) = name.split_once(self.opts.separator) {
            if !local.is_empty() && self.prefixes.iter().any(|d| d == p) {
                return format!("{}:{}", encode_name(p), encode_name(local));
            }
        }
        encode_name(name)
    }
}

/// A leaf as XML text: booleans as .NET prints them, numbers as JSON.NET reads them.
fn scalar(v: &Json, parse_date: bool) -> Option<String> {
    Some(match v {
        Json::Null => String::new(),
        Json::Bool(true) => "True".into(),
        Json::Bool(false) => "False".into(),
        Json::Int(i) => i.to_string(),
        Json::Float(f) => dotnet_double(*f),
        Json::Str(s) if parse_date => schema_date(s).unwrap_or_else(|| s.clone()),
        Json::Str(s) => s.clone(),
        Json::Array(_) | Json::Object(_) | Json::Raw(_) => return None,
    })
}

/// An ISO 8601 date-time (`yyyy-MM-ddTHH:mm:ss[.f…][Z|±hh:mm]`, as JSON.NET detects
/// dates) in XML Schema form: the fraction without trailing zeros, the zone as written.
fn schema_date(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let shape = b.len() >= 19
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !shape {
        return None;
    }
    let mut i = 19;
    let mut fraction = "";
    if b.get(i) == Some(&b'.') {
        let end = i + 1 + b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if end == i + 1 || end - i - 1 > 7 {
            return None;
        }
        fraction = s[i + 1..end].trim_end_matches('0');
        i = end;
    }
    let zone = &s[i..];
    let zone_ok = zone.is_empty()
        || zone == "Z"
        || (zone.len() == 6
            && matches!(zone.as_bytes()[0], b'+' | b'-')
            && zone.as_bytes()[3] == b':'
            && zone[1..3]
                .bytes()
                .chain(zone[4..6].bytes())
                .all(|c| c.is_ascii_digit()));
    let (month, day) = (s[5..7].parse::<u32>().ok()?, s[8..10].parse::<u32>().ok()?);
    let (hour, minute, second) = (
        s[11..13].parse::<u32>().ok()?,
        s[14..16].parse::<u32>().ok()?,
        s[17..19].parse::<u32>().ok()?,
    );
    if !zone_ok
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut out = s[..19].to_string();
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    out.push_str(zone);
    Some(out)
}

/// A name as `XmlConvert.EncodeName` writes it: every character not allowed at its
/// place becomes `_xHHHH_`.
fn encode_name(name: &str) -> String {
    if name.is_empty() {
        return "_".into();
    }
    let mut out = String::with_capacity(name.len());
    for (i, c) in name.chars().enumerate() {
        let ok = if i == 0 { name_start(c) } else { name_char(c) };
        if ok {
            out.push(c);
        } else if (c as u32) > 0xffff {
            let _ = write!(out, "_x{:08X}_", c as u32);
        } else {
            let _ = write!(out, "_x{:04X}_", c as u32);
        }
    }
    out
}

/// XML 1.0's NameStartChar, without ':' (a name's prefix is placed by the writer).
fn name_start(c: char) -> bool {
    matches!(c as u32,
        0x41..=0x5A | 0x5F | 0x61..=0x7A | 0xC0..=0xD6 | 0xD8..=0xF6 | 0xF8..=0x2FF
        | 0x370..=0x37D | 0x37F..=0x1FFF | 0x200C..=0x200D | 0x2070..=0x218F
        | 0x2C00..=0x2FEF | 0x3001..=0xD7FF | 0xF900..=0xFDCF | 0xFDF0..=0xFFFD
        | 0x10000..=0xEFFFF)
}

/// XML 1.0's NameChar, without ':'.
fn name_char(c: char) -> bool {
    name_start(c)
        || matches!(c as u32, 0x2D | 0x2E | 0x30..=0x39 | 0xB7 | 0x300..=0x36F | 0x203F..=0x2040)
}

/// Escapes text (and in attributes the quote) for XML; characters XML 1.0 cannot
/// carry become U+FFFD.
pub(crate) fn escape(out: &mut String, s: &str, attribute: bool) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\n' if attribute => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            '\t' if attribute => out.push_str("&#x9;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t') => out.push('\u{fffd}'),
            '\u{fffe}' | '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xml(text: &str) -> String {
        xml_to_json(text, JsonKind::Direct, false).expect("converts")
    }

    fn opts() -> XmlOptions {
        XmlOptions {
            parse_date: true,
            separator: '_',
            namespace_prefix: "xmlns".into(),
            attribute_block: None,
        }
    }

    #[test]
    fn xml_to_json_direct_keeps_the_documents_structure() {
        // The shape APIM gives a SOAP envelope: the declaration at the top, prefixes
        // with '$', namespace declarations as attributes.
        let soap = "<?xml version=\"1.0\"?>\n<soap:Envelope xmlns=\"http://example.com/\" \
            xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">\n  <soap:Body>\n    \
            <GetOrders>\n      <Customer>1234567</Customer>\n    </GetOrders>\n  </soap:Body>\n</soap:Envelope>";
        assert_eq!(
            xml(soap),
            r#"{"version":"1.0","soap$Envelope":{"@xmlns":"http://example.com/","@xmlns$soap":"http://schemas.xmlsoap.org/soap/envelope/","soap$Body":{"GetOrders":{"Customer":"1234567"}}}}"#
        );
        // Repeated elements become an array, attributes and text share an object,
        // empty elements are null, entities and CDATA are text.
        assert_eq!(
            xml(r#"<r><i id="1">a &amp; b</i><i/><note><![CDATA[<x>]]></note><e></e></r>"#),
            r##"{"r":{"i":[{"@id":"1","#text":"a & b"},null],"note":"<x>","e":null}}"##
        );
        // Document order of attributes and declarations; mixed text as an array.
        assert_eq!(
            xml(r#"<a b="1" xmlns:p="u" p:c="2">x<y/>z</a>"#),
            r##"{"a":{"@b":"1","@xmlns$p":"u","@p$c":"2","#text":["x","z"],"y":null}}"##
        );
        assert_eq!(
            xml_to_json("<r><i>1</i></r>", JsonKind::Direct, true).unwrap(),
            r#"{"r":{"i":["1"]}}"#
        );
    }

    #[test]
    fn xml_to_json_javascript_friendly_drops_namespaces() {
        let soap = "<?xml version=\"1.0\" encoding=\"utf-8\"?><s:Envelope xmlns:s=\"urn:s\"><s:Body a:x=\"1\" xmlns:a=\"urn:a\"><V>2</V></s:Body></s:Envelope>";
        assert_eq!(
            xml_to_json(soap, JsonKind::JavascriptFriendly, false).unwrap(),
            r#"{"Envelope":{"Body":{"@x":"1","V":"2"}}}"#
        );
    }

    #[test]
    fn xml_that_cannot_be_converted_is_refused() {
        for bad in [
            "",
            "not xml",
            "<a>",
            "<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>",
        ] {
            assert!(xml_to_json(bad, JsonKind::Direct, false).is_err(), "{bad}");
        }
        let deep = format!(
            "{}{}",
            "<a>".repeat(MAX_XML_DEPTH + 1),
            "</a>".repeat(MAX_XML_DEPTH + 1)
        );
        assert!(xml_to_json(&deep, JsonKind::Direct, false).is_err());
        let ok = format!(
            "{}{}",
            "<a>".repeat(MAX_XML_DEPTH),
            "</a>".repeat(MAX_XML_DEPTH)
        );
        assert!(xml_to_json(&ok, JsonKind::Direct, false).is_ok());
    }

    #[test]
    fn json_to_xml_as_apim_writes_it() {
        let person = r#"{"firstName":"John","isAlive":true,"age":25,"height":1.5,
            "address":{"city":"New York"},"phones":[{"n":"1"},{"n":"2"}],"children":[],"spouse":null,"empty":{}}"#;
        assert_eq!(
            json_to_xml(person, &opts()).unwrap(),
            "<Document><firstName>John</firstName><isAlive>True</isAlive><age>25</age><height>1.5</height>\
             <address><city>New York</city></address><phones><n>1</n></phones><phones><n>2</n></phones>\
             <children /><spouse xsi:nil=\"true\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" /><empty /></Document>"
        );
        // Microsoft's example: one root property, namespaces, an attribute block.
        let soap = r##"{"soapenv:Envelope":{"xmlns:soapenv":"http://schemas.xmlsoap.org/soap/envelope/",
            "xmlns:v1":"http://localdomain.com/core/v1","soapenv:Header":{},
            "soapenv:Body":{"v1:QueryList":{"#attrs":{"queryName":"test"},"v1:QueryItem":{"name":"dummy text"}}}}}"##;
        let o = XmlOptions {
            parse_date: false,
            separator: ':',
            namespace_prefix: "xmlns".into(),
            attribute_block: Some("#attrs".into()),
        };
        assert_eq!(
            json_to_xml(soap, &o).unwrap(),
            "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:v1=\"http://localdomain.com/core/v1\">\
             <soapenv:Header /><soapenv:Body><v1:QueryList queryName=\"test\"><v1:QueryItem><name>dummy text</name></v1:QueryItem>\
             </v1:QueryList></soapenv:Body></soapenv:Envelope>"
        );
    }

    #[test]
    fn json_to_xml_names_escapes_and_dates() {
        // An undeclared prefix stays part of the name; bad characters are encoded.
        assert_eq!(
            json_to_xml(r#"{"first_name":"a<b&c","my key":"x","1st":"y"}"#, &opts()).unwrap(),
            "<Document><first_name>a&lt;b&amp;c</first_name><my_x0020_key>x</my_x0020_key><_x0031_st>y</_x0031_st></Document>"
        );
        assert_eq!(
            json_to_xml(r#"{"t":"2024-01-15T10:00:00.5000000Z","u":"2024-01-15T10:00:00.000+02:00","v":"2024-01-15"}"#, &opts()).unwrap(),
            "<Document><t>2024-01-15T10:00:00.5Z</t><u>2024-01-15T10:00:00+02:00</u><v>2024-01-15</v></Document>"
        );
        let keep = XmlOptions {
            parse_date: false,
            ..opts()
        };
        assert_eq!(
            json_to_xml(r#"{"t":"2024-01-15T10:00:00.500Z"}"#, &keep).unwrap(),
            "<Document><t>2024-01-15T10:00:00.500Z</t></Document>"
        );
        assert_eq!(
            json_to_xml("[1,\"a\"]", &opts()).unwrap(),
            "<Document><Item>1</Item><Item>a</Item></Document>"
        );
        assert_eq!(
            json_to_xml("\"x\"", &opts()).unwrap(),
            "<Document>x</Document>"
        );
        assert!(json_to_xml("{\"a\":", &opts()).is_err());
        // Letters XML names do not take are encoded too (found by fuzzing: 'º').
        assert_eq!(
            json_to_xml(r#"{"sº":{"ª":"1","é":"2"}}"#, &opts()).unwrap(),
            "<s_x00BA_><_x00AA_>1</_x00AA_><é>2</é></s_x00BA_>"
        );
        // A default namespace declared with the prefix alone.
        assert_eq!(
            json_to_xml(r#"{"r":{"xmlns":"urn:x","a":"1"}}"#, &opts()).unwrap(),
            "<r xmlns=\"urn:x\"><a>1</a></r>"
        );
    }
}
