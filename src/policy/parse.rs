//! Policy XML → `ScopeDoc`: the four sections of one scope's document with every policy
//! compiled (attributes checked against APIM's, defaults applied, expressions parsed) by
//! its module in `super::kinds`, found in the registry `KINDS`. The helpers here
//! (attributes, numbers, booleans, values, expressions) are what those modules share.
//! An element, attribute or expression the gateway does not implement is an error naming
//! its line and column — never skipped. `{{named values}}` are substituted and rawxml
//! expressions re-escaped (see `rawxml`) before the XML parser runs.
//! Must not touch: the request path (this runs once per config apply), sockets.

use std::fmt;
use std::sync::Arc;

use roxmltree::{Document, Node};

use super::expr::{Expr, Ty};
use super::kinds::{Compiled, KINDS};
use super::rawxml::{escape_expressions, substitute_named_values};
use super::{ExistsAction, Item, Scope, ScopeDoc, Section, Setting, Step, Text};

/// A problem in a policy document, at a line and column of that document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {} column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// What compiling a document needs from the rest of the config.
pub struct Context<'a> {
    pub scope: Scope,
    pub named_value: &'a dyn Fn(&str) -> Option<&'a str>,
    /// backend-id → index into the runtime's backends.
    pub backend_id: &'a dyn Fn(&str) -> Option<u32>,
    /// fragment-id → the fragment's XML (`<fragment>…</fragment>`).
    pub fragment: &'a dyn Fn(&str) -> Option<&'a str>,
    /// A literal base-url → index of a backend added for it (or the error text).
    pub add_backend_url: &'a mut dyn FnMut(&str) -> Result<u32, String>,
    /// Whose document this is: "global", "product:{id}", "api:{id}" or
    /// "operation:{api}/{op}". Counter identities (rate limits, quotas, concurrency) are
    /// made from it and from the policy's place in this document, so a counter keeps its
    /// identity across reloads and restarts while its own document does not change, and
    /// edits elsewhere never hand one policy's counts to another.
    pub owner: &'a str,
    /// What the document refers to, collected where the compiler resolves each name.
    pub uses: Uses,
}

/// The names a policy document refers to, as the compiler resolved them (`{{ name }}`
/// trimmed, attributes as XML reads them): the index the management plane uses to know
/// which named values and backends a document needs, and the gateway to know which
/// query parameters carry tokens (redacted in logs).
/// In `Uses::backends`: a backend-id computed per call, so every backend is used.
pub const ANY_BACKEND: &str = "*";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uses {
    pub named_values: std::collections::BTreeSet<String>,
    /// Backend ids; `ANY_BACKEND` when an expression names one.
    pub backends: std::collections::BTreeSet<String>,
    /// Query parameters a policy reads a token from (validate-jwt).
    pub token_query_params: std::collections::BTreeSet<String>,
    /// Policy fragments it includes.
    pub fragments: std::collections::BTreeSet<String>,
    /// OpenID configuration URLs whose keys it checks tokens with (the agent fetches
    /// them).
    pub openid: std::collections::BTreeSet<String>,
    /// Resources the gateway's identity gets tokens for (authentication-managed-
    /// identity with a literal resource).
    pub identities: std::collections::BTreeSet<String>,
    /// Certificates it presents to backends by id (authentication-certificate with a
    /// literal certificate-id).
    pub certificates: std::collections::BTreeSet<String>,
}

pub(crate) type R<T> = Result<T, PolicyError>;

/// The compiler's cursor in one document: where it is and what it may resolve.
pub struct Cx<'c, 'a> {
    doc: &'c Document<'c>,
    pub(crate) ctx: &'c mut Context<'a>,
    pub(crate) section: Section,
    /// Counter-using policies seen so far in this document.
    counters: u32,
}

impl Cx<'_, '_> {
    pub(crate) fn err(&self, node: Node, message: impl Into<String>) -> PolicyError {
        let pos = self.doc.text_pos_at(node.range().start);
        PolicyError {
            line: pos.row,
            column: pos.col,
            message: message.into(),
        }
    }
    /// The stable label of the next counter-using policy: "{owner}#{n}".
    pub(crate) fn counter_label(&mut self) -> String {
        self.counters += 1;
        format!("{}#{}", self.ctx.owner, self.counters)
    }
    pub(crate) fn counter(&mut self) -> u64 {
        counter_id(&self.counter_label())
    }
}

/// A counter's identity: a 64-bit hash of its stable label.
pub(crate) fn counter_id(label: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = crate::route::Fnv::default();
    h.write(label.as_bytes());
    h.finish()
}

/// Compiles one scope's policy document.
pub fn parse(text: &str, ctx: &mut Context) -> R<ScopeDoc> {
    let text = prepare(text, ctx)?;
    let doc = xml(&text)?;
    sections(&doc, ctx)
}

/// The XML tree of a prepared text, or where it is not well-formed.
fn xml(text: &str) -> R<Document<'_>> {
    Document::parse(text).map_err(|e| {
        let pos = e.pos();
        PolicyError {
            line: pos.row,
            column: pos.col,
            message: format!("not well-formed XML: {e}"),
        }
    })
}

/// A document's text ready for the XML parser: named values substituted (and recorded
/// as used), expressions escaped.
fn prepare(text: &str, ctx: &mut Context) -> R<String> {
    let named = std::cell::RefCell::new(std::mem::take(&mut ctx.uses.named_values));
    let substituted = substitute_named_values(text, |n| {
        named.borrow_mut().insert(n.to_string());
        (ctx.named_value)(n)
    });
    ctx.uses.named_values = named.into_inner();
    let text = substituted.map_err(|name| PolicyError {
        line: 1,
        column: 1,
        message: format!("named value '{{{{{name}}}}}' is not defined in namedValues"),
    })?;
    escape_expressions(&text).map_err(|(offset, message)| {
        let line = text[..offset].matches('\n').count() as u32 + 1;
        let column = (offset - text[..offset].rfind('\n').map_or(0, |p| p + 1)) as u32 + 1;
        PolicyError {
            line,
            column,
            message,
        }
    })
}

/// The sections of a parsed `<policies>` document.
fn sections(doc: &Document, ctx: &mut Context) -> R<ScopeDoc> {
    let root = doc.root_element();
    let mut cx = Cx {
        doc,
        ctx,
        section: Section::Inbound,
        counters: 0,
    };
    if !root.has_tag_name("policies") {
        return Err(cx.err(root, "the document element must be <policies>"));
    }
    no_attributes(&cx, root, &[])?;
    let mut out = ScopeDoc::default();
    for child in elements(root) {
        let (slot, section) = match child.tag_name().name() {
            "inbound" => (&mut out.inbound, Section::Inbound),
            "backend" => (&mut out.backend, Section::Backend),
            "outbound" => (&mut out.outbound, Section::Outbound),
            "on-error" => (&mut out.on_error, Section::OnError),
            other => {
                return Err(cx.err(
                    child,
                    format!(
                    "<{other}> is not a section (expected inbound, backend, outbound, on-error)"
                ),
                ))
            }
        };
        if slot.is_some() {
            return Err(cx.err(
                child,
                format!("section <{}> appears twice", section.as_str()),
            ));
        }
        no_attributes(&cx, child, &[])?;
        cx.section = section;
        let mut items = Vec::new();
        for el in elements(child) {
            if el.has_tag_name("base") {
                if cx.ctx.scope == Scope::Global {
                    return Err(cx.err(el, "<base /> has no parent at global scope"));
                }
                if items.iter().any(|x| matches!(x, Item::Base)) {
                    return Err(cx.err(el, "<base /> appears twice in one section"));
                }
                no_attributes(&cx, el, &[])?;
                items.push(Item::Base);
            } else if section == Section::Backend
                && crate::policy::kinds::include_fragment::forwards(&cx, el)
            {
                // a fragment that forwards the request gives the section its items
                items.extend(crate::policy::kinds::include_fragment::backend_items(
                    &mut cx, el,
                )?);
            } else {
                items.push(item(&mut cx, el)?);
            }
        }
        *slot = Some(items);
    }
    Ok(out)
}

pub(crate) fn elements<'a, 'i>(n: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children().filter(|c| c.is_element())
}

pub(crate) fn no_attributes(cx: &Cx, n: Node, allowed: &[&str]) -> R<()> {
    for a in n.attributes() {
        if a.name() != "id" && !allowed.contains(&a.name()) {
            return Err(cx.err(
                n,
                format!(
                    "<{}>: attribute '{}' is not supported",
                    n.tag_name().name(),
                    a.name()
                ),
            ));
        }
    }
    Ok(())
}

pub(crate) fn only_children(cx: &Cx, n: Node, allowed: &[&str]) -> R<()> {
    for c in elements(n) {
        if !allowed.contains(&c.tag_name().name()) {
            return Err(cx.err(
                c,
                format!(
                    "<{}> is not supported inside <{}>",
                    c.tag_name().name(),
                    n.tag_name().name()
                ),
            ));
        }
    }
    Ok(())
}

/// Parses `@(...)`/`@{...}` or takes the text as a literal.
pub(crate) fn text_value(cx: &Cx, n: Node, raw: &str) -> R<Text> {
    let t = raw.trim();
    if let Some(inner) = t.strip_prefix("@(").and_then(|r| r.strip_suffix(')')) {
        return Expr::parse(inner, false)
            .map(Text::Expr)
            .map_err(|e| cx.err(n, format!("<{}>: {e}", n.tag_name().name())));
    }
    if let Some(inner) = t.strip_prefix("@{").and_then(|r| r.strip_suffix('}')) {
        return Expr::parse(inner, true)
            .map(Text::Expr)
            .map_err(|e| cx.err(n, format!("<{}>: {e}", n.tag_name().name())));
    }
    Ok(Text::Lit(raw.to_string()))
}

pub(crate) fn expr_value(cx: &Cx, n: Node, attr: &str, raw: &str) -> R<Expr> {
    match text_value(cx, n, raw)? {
        Text::Expr(e) => {
            if matches!(e.ty(), Ty::Str | Ty::Int) {
                return Err(cx.err(
                    n,
                    format!(
                        "<{}>: '{attr}' must be a bool expression",
                        n.tag_name().name()
                    ),
                ));
            }
            Ok(e)
        }
        Text::Lit(l) => match l.trim() {
            "true" | "True" => Expr::parse("true", false),
            "false" | "False" => Expr::parse("false", false),
            _ => {
                return Err(cx.err(
                    n,
                    format!(
                        "<{}>: '{attr}' must be an expression @(...)",
                        n.tag_name().name()
                    ),
                ))
            }
        }
        .map_err(|e| cx.err(n, e.to_string())),
    }
}

pub(crate) fn attr<'a>(n: Node<'a, '_>, name: &str) -> Option<&'a str> {
    n.attribute(name)
}

pub(crate) fn required<'a>(cx: &Cx, n: Node<'a, '_>, name: &str) -> R<&'a str> {
    n.attribute(name).ok_or_else(|| {
        cx.err(
            n,
            format!("<{}>: attribute '{name}' is required", n.tag_name().name()),
        )
    })
}

pub(crate) fn number(cx: &Cx, n: Node, name: &str, default: Option<u64>) -> R<u64> {
    match n.attribute(name) {
        Some(v) => v.trim().parse::<u64>().map_err(|_| {
            cx.err(
                n,
                format!(
                    "<{}>: attribute '{name}' must be a non-negative integer (expressions are not supported here)",
                    n.tag_name().name()
                ),
            )
        }),
        None => default.ok_or_else(|| {
            cx.err(
                n,
                format!("<{}>: attribute '{name}' is required", n.tag_name().name()),
            )
        }),
    }
}

pub(crate) fn boolean(cx: &Cx, n: Node, name: &str, default: bool) -> R<bool> {
    match n.attribute(name).map(str::trim) {
        None => Ok(default),
        Some("true") | Some("True") => Ok(true),
        Some("false") | Some("False") => Ok(false),
        Some(_) => Err(cx.err(
            n,
            format!(
                "<{}>: attribute '{name}' must be true or false",
                n.tag_name().name()
            ),
        )),
    }
}

/// An attribute that may be an expression and must otherwise be one of a set of values
/// (`parse` says which); `default` when it is absent, or an error naming it required.
pub(crate) fn setting<T>(
    cx: &Cx,
    n: Node,
    name: &str,
    default: Option<T>,
    parse: fn(&str) -> Option<T>,
    expected: &'static str,
) -> R<Setting<T>> {
    let Some(raw) = n.attribute(name) else {
        return default.map(Setting::Fixed).ok_or_else(|| {
            cx.err(
                n,
                format!("<{}>: attribute '{name}' is required", n.tag_name().name()),
            )
        });
    };
    setting_of(cx, n, &format!("attribute '{name}'"), raw, parse, expected)
}

/// A setting from `raw`, the text of `what` (an attribute, or an element's content).
pub(crate) fn setting_of<T>(
    cx: &Cx,
    n: Node,
    what: &str,
    raw: &str,
    parse: fn(&str) -> Option<T>,
    expected: &'static str,
) -> R<Setting<T>> {
    match text_value(cx, n, raw)? {
        Text::Lit(l) => parse(l.trim()).map(Setting::Fixed).ok_or_else(|| {
            cx.err(
                n,
                format!(
                    "<{}>: {what} must be {expected}, not '{l}'",
                    n.tag_name().name()
                ),
            )
        }),
        text => Ok(Setting::Computed(Box::new(crate::policy::Computed {
            text,
            parse,
            expected,
        }))),
    }
}

/// `setting`'s check for a count: a non-negative integer.
pub(crate) const WHOLE: &str = "a non-negative integer";
pub(crate) const POSITIVE: &str = "a positive integer (seconds)";
pub(crate) const BOOLEAN: &str = "true or false";

/// `setting`'s check for a boolean attribute.
pub(crate) fn flag(v: &str) -> Option<bool> {
    match v {
        "true" | "True" => Some(true),
        "false" | "False" => Some(false),
        _ => None,
    }
}

pub(crate) fn whole(v: &str) -> Option<u64> {
    v.parse().ok()
}

/// `setting`'s check for a period: a positive integer.
pub(crate) fn positive(v: &str) -> Option<u64> {
    v.parse().ok().filter(|n| *n > 0)
}

pub(crate) fn element_text<'a>(n: Node<'a, '_>) -> &'a str {
    n.text().unwrap_or("")
}

pub(crate) fn exists_action(cx: &Cx, n: Node) -> R<Setting<ExistsAction>> {
    let parse = |v: &str| match v {
        "override" => Some(ExistsAction::Override),
        "skip" => Some(ExistsAction::Skip),
        "append" => Some(ExistsAction::Append),
        "delete" => Some(ExistsAction::Delete),
        _ => None,
    };
    setting(
        cx,
        n,
        "exists-action",
        Some(ExistsAction::Override),
        parse,
        "override, skip, append or delete",
    )
}

pub(crate) fn values(cx: &Cx, n: Node) -> R<Vec<Text>> {
    only_children(cx, n, &["value"])?;
    elements(n)
        .map(|v| text_value(cx, v, element_text(v)))
        .collect()
}

pub(crate) fn header_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The largest policy fragment APIM accepts.
pub const FRAGMENT_MAX: usize = 32 * 1024;

/// Compiles fragment `id` where `<include-fragment>` (`n`) stands: its policies in the
/// including document's section, with its names, backends and counters. An error inside
/// the fragment is reported at the include with the fragment's own line and column.
pub(crate) fn fragment_steps(cx: &mut Cx, n: Node, id: &str) -> R<Vec<Step>> {
    let items = fragment_items(cx, n, id, false)?;
    Ok(items
        .into_iter()
        .filter_map(|i| match i {
            Item::Step(s) => Some(s),
            _ => None,
        })
        .collect())
}

/// A fragment's policies as the items of the section that includes it; with
/// `forward`, one of them may be forward-request (or a retry around it), as when a
/// fragment is included directly in `<backend>`.
pub(crate) fn fragment_items(cx: &mut Cx, n: Node, id: &str, forward: bool) -> R<Vec<Item>> {
    let Some(text) = (cx.ctx.fragment)(id) else {
        return Err(cx.err(
            n,
            format!("<include-fragment>: fragment '{id}' is not defined in fragments"),
        ));
    };
    cx.ctx.uses.fragments.insert(id.to_string());
    let at = |e: PolicyError| {
        format!(
            "<include-fragment>: fragment '{id}' line {} column {}: {}",
            e.line, e.column, e.message
        )
    };
    let prepared = match prepare(text, cx.ctx) {
        Ok(p) => p,
        Err(e) => return Err(cx.err(n, at(e))),
    };
    let doc = match fragment_document(&prepared) {
        Ok(d) => d,
        Err(e) => return Err(cx.err(n, at(e))),
    };
    let mut inner = Cx {
        doc: &doc,
        ctx: &mut *cx.ctx,
        section: cx.section,
        counters: cx.counters,
    };
    let mut steps = Vec::new();
    let mut failed = None;
    for el in elements(doc.root_element()) {
        let step = match el.tag_name().name() {
            "include-fragment" => {
                Err(inner.err(el, "a policy fragment can't include another fragment"))
            }
            "base" => Err(inner.err(el, "<base /> is not allowed in a policy fragment")),
            "inbound" | "backend" | "outbound" | "on-error" => {
                Err(inner.err(el, "a policy fragment holds policies, not sections"))
            }
            _ => match item(&mut inner, el) {
                Ok(Item::Forward(f)) if forward => Ok(Item::Forward(f)),
                Ok(Item::Step(s)) => Ok(Item::Step(s)),
                Ok(_) => Err(inner.err(
                    el,
                    "forward-request is supported in a policy fragment included directly in <backend>",
                )),
                Err(e) => Err(e),
            },
        };
        match step {
            Ok(s) => steps.push(s),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    cx.counters = inner.counters;
    match failed {
        Some(e) => Err(cx.err(n, at(e))),
        None => Ok(steps),
    }
}

/// A fragment's XML (after `prepare`): `<fragment>` with policies, at most 32 KiB.
fn fragment_document(text: &str) -> R<Document<'_>> {
    if text.len() > FRAGMENT_MAX {
        return Err(PolicyError {
            line: 1,
            column: 1,
            message: "a policy fragment is at most 32 KiB".into(),
        });
    }
    let doc = xml(text)?;
    let root = doc.root_element();
    if !root.has_tag_name("fragment") {
        let pos = doc.text_pos_at(root.range().start);
        return Err(PolicyError {
            line: pos.row,
            column: pos.col,
            message: "the document element of a policy fragment must be <fragment>".into(),
        });
    }
    Ok(doc)
}

/// Checks a fragment on its own (well-formed, `<fragment>`, at most 32 KiB): what a
/// document can know of a fragment no policy includes yet.
pub fn check_fragment(text: &str) -> Result<(), PolicyError> {
    let text = escape_expressions(text).map_err(|(_, message)| PolicyError {
        line: 1,
        column: 1,
        message,
    })?;
    fragment_document(&text).map(|_| ())
}

pub(crate) fn nested_steps(cx: &mut Cx, n: Node) -> R<Vec<Step>> {
    let mut out = Vec::new();
    for el in elements(n) {
        match item(cx, el)? {
            Item::Step(s) => out.push(s),
            Item::Base => return Err(cx.err(el, "<base /> must be a direct child of a section")),
            Item::Forward(_) => {
                return Err(cx.err(
                    el,
                    "forward-request is supported directly in <backend> (or wrapped in retry / limit-concurrency), not here",
                ))
            }
        }
    }
    Ok(out)
}

/// Compiles one policy element through the registry (`super::kinds::KINDS`).
pub(crate) fn item(cx: &mut Cx, n: Node) -> R<Item> {
    let name = n.tag_name().name();
    if n.tag_name().namespace().is_some() {
        return Err(cx.err(
            n,
            format!("<{name}>: namespaced elements are not supported"),
        ));
    }
    if name == "base" {
        return Err(cx.err(n, "<base /> must be a direct child of a section"));
    }
    let Some(kind) = KINDS.iter().find(|k| k.element == name) else {
        let why = match super::refusals::reason(name) {
            Some(r) => format!(": {r}"),
            None => String::new(),
        };
        return Err(cx.err(
            n,
            format!(
                "policy <{name}> is not supported by edgegate{why} (see README \"Policy conformance\")"
            ),
        ));
    };
    if !kind.sections.contains(&cx.section) {
        let names: Vec<&str> = kind.sections.iter().map(|s| s.as_str()).collect();
        return Err(cx.err(
            n,
            format!(
                "<{name}> is not allowed in <{}> (allowed in: {})",
                cx.section.as_str(),
                names.join(", ")
            ),
        ));
    }
    if !kind.children {
        only_children(cx, n, &[])?;
    }
    Ok(match (kind.compile)(cx, n)? {
        Compiled::Forward(f) => Item::Forward(f),
        Compiled::Policy(policy) => Item::Step(Step {
            policy,
            scope: cx.ctx.scope,
            section: cx.section,
            id: n.attribute("id").map(Arc::from),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiles `text` at API scope with named values `nv` = "value" and `target` = "b1",
    /// and backend `b1`: the document or the error, and what it used.
    fn compile(text: &str) -> (Result<ScopeDoc, PolicyError>, Uses) {
        let named = |n: &str| match n {
            "nv" => Some("value"),
            "target" => Some("b1"),
            _ => None,
        };
        let backend = |id: &str| (id == "b1").then_some(0);
        let fragment = |id: &str| match id {
            "audit" => Some(
                r#"<fragment><set-header name="X-Audit" exists-action="override"><value>{{nv}}</value></set-header><rate-limit calls="5" renewal-period="60" /></fragment>"#,
            ),
            "nested" => Some("<fragment><include-fragment fragment-id=\"audit\" /></fragment>"),
            "broken" => Some("<fragment>\n  <set-header /></fragment>"),
            _ => None,
        };
        let mut add = |_: &str| Ok(1);
        let mut ctx = Context {
            scope: Scope::Api,
            named_value: &named,
            backend_id: &backend,
            fragment: &fragment,
            add_backend_url: &mut add,
            owner: "api:t",
            uses: Uses::default(),
        };
        let doc = parse(text, &mut ctx);
        (doc, ctx.uses)
    }

    fn error(text: &str) -> String {
        match compile(text).0 {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    /// A fragment compiles where it is included (with that document's named values and
    /// counters); an error inside it names the fragment and its own line.
    #[test]
    fn fragments_compile_where_included() {
        let (doc, uses) = compile(
            r#"<policies><inbound><include-fragment fragment-id="audit" /></inbound></policies>"#,
        );
        let doc = doc.unwrap();
        assert_eq!(doc.inbound.map(|i| i.len()), Some(1));
        assert!(uses.fragments.contains("audit") && uses.named_values.contains("nv"));
        for (text, want) in [
            (r#"<policies><inbound><include-fragment fragment-id="nope" /></inbound></policies>"#, "line 1 column 20: <include-fragment>: fragment 'nope' is not defined in fragments"),
            (r#"<policies><inbound><include-fragment fragment-id="nested" /></inbound></policies>"#, "line 1 column 20: <include-fragment>: fragment 'nested' line 1 column 11: a policy fragment can't include another fragment"),
            (r#"<policies><inbound><include-fragment fragment-id="broken" /></inbound></policies>"#, "line 1 column 20: <include-fragment>: fragment 'broken' line 2 column 3: <set-header>: attribute 'name' is required"),
            (r#"<policies><outbound><include-fragment fragment-id="audit" /></outbound></policies>"#, "line 1 column 21: <include-fragment>: fragment 'audit' line 1 column 96: <rate-limit> is not allowed in <outbound> (allowed in: inbound)"),
        ] {
            assert_eq!(error(text), want, "{text}");
        }
        assert!(check_fragment("<policies />").is_err());
        assert!(check_fragment(&format!(
            "<fragment>{}</fragment>",
            " ".repeat(FRAGMENT_MAX)
        ))
        .is_err());
        assert!(check_fragment(
            "<fragment><set-header name=\"a\"><value>@(\"<x>\")</value></set-header></fragment>"
        )
        .is_ok());
    }

    #[test]
    fn sections_hold_their_policies() {
        let (doc, _) = compile(
            r#"<policies><inbound><base /><set-header name="x" exists-action="override"><value>1</value></set-header></inbound><backend><forward-request timeout="5" /></backend><outbound /><on-error><base /></on-error></policies>"#,
        );
        let doc = doc.unwrap();
        assert_eq!(doc.inbound.as_ref().map(Vec::len), Some(2));
        assert!(
            matches!(doc.backend.as_deref(), Some([Item::Forward(f)]) if matches!(f.timeout_secs, Some(crate::policy::Setting::Fixed(5))))
        );
        assert_eq!(doc.outbound.as_ref().map(Vec::len), Some(0));
        assert!(matches!(doc.on_error.as_deref(), Some([Item::Base])));
    }

    /// Every refusal names its line and column and what is wrong; nothing is skipped.
    #[test]
    fn refusals_say_where_and_why() {
        for (text, want) in [
            ("<policy />", "the document element must be <policies>"),
            (
                "<policies><middle /></policies>",
                "<middle> is not a section",
            ),
            (
                "<policies><inbound>\n  <no-such-policy /></inbound></policies>",
                "line 2",
            ),
            (
                r#"<policies><outbound><set-backend-service backend-id="b1" /></outbound></policies>"#,
                "set-backend-service",
            ),
            (
                r#"<policies><inbound><set-header exists-action="override"><value>1</value></set-header></inbound></policies>"#,
                "name",
            ),
            (
                r#"<policies><inbound><set-backend-service backend-id="nope" /></inbound></policies>"#,
                "backend-id 'nope' is not in backends",
            ),
            (
                "<policies><inbound>{{missing}}</inbound></policies>",
                "named value '{{missing}}' is not defined in namedValues",
            ),
            ("<policies><inbound>", "not well-formed XML"),
        ] {
            let e = error(text);
            assert!(e.contains(want), "{text}: {e}");
            assert!(e.starts_with("line "), "{text}: {e}");
        }
    }

    /// What a document uses, as the compiler resolved it: trimmed named values, a
    /// backend named directly or through a named value, token query parameters.
    #[test]
    fn uses_are_collected_where_names_are_resolved() {
        let (doc, uses) = compile(
            r#"<policies><inbound><set-header name="x" exists-action="override"><value>{{ nv }}</value></set-header><set-backend-service backend-id = "{{target}}" /><validate-jwt query-parameter-name="jwt"><issuer-signing-keys><key>c2VjcmV0LXNpZ25pbmcta2V5LTMyLWJ5dGVzLWxvbmchIQ==</key></issuer-signing-keys></validate-jwt></inbound></policies>"#,
        );
        assert!(doc.is_ok(), "{:?}", doc.err().map(|e| e.to_string()));
        let names: Vec<&str> = uses.named_values.iter().map(String::as_str).collect();
        assert_eq!(names, ["nv", "target"]);
        let backends: Vec<&str> = uses.backends.iter().map(String::as_str).collect();
        assert_eq!(backends, ["b1"]);
        let params: Vec<&str> = uses.token_query_params.iter().map(String::as_str).collect();
        assert_eq!(params, ["jwt"]);
    }

    /// `<base />` puts the parent's section there; leaving it out drops the parent's.
    #[test]
    fn base_inlines_the_parent_and_leaving_it_out_drops_it() {
        let parent = compile(
            r#"<policies><inbound><set-header name="p" exists-action="override"><value>1</value></set-header></inbound><outbound><set-header name="po" exists-action="override"><value>1</value></set-header></outbound></policies>"#,
        )
        .0
        .unwrap();
        let child = compile(
            r#"<policies><inbound><set-header name="c" exists-action="override"><value>1</value></set-header><base /></inbound><outbound /></policies>"#,
        )
        .0
        .unwrap();
        let merged = crate::policy::merge(&parent, &child);
        let names = |items: &Option<Vec<Item>>| -> Vec<String> {
            items
                .iter()
                .flatten()
                .filter_map(|i| match i {
                    Item::Step(s) => s
                        .policy_as::<crate::policy::kinds::set_header::SetHeader>()
                        .map(|h| match &h.0.name {
                            Text::Lit(l) => l.clone(),
                            Text::Expr(_) => "expression".to_string(),
                        }),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(names(&merged.inbound), ["c", "p"], "child first, then base");
        assert!(
            names(&merged.outbound).is_empty(),
            "no <base />: the parent's is dropped"
        );
    }
}
