//! Policy XML → `ScopeDoc`: the four sections of one scope's document with every policy
//! compiled (attributes checked against APIM's, defaults applied, expressions parsed).
//! An element, attribute or expression the gateway does not implement is an error naming
//! its line and column — never skipped. `{{named values}}` are substituted and rawxml
//! expressions re-escaped (see `rawxml`) before the XML parser runs.
//! Must not touch: the request path (this runs once per config apply), sockets.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use roxmltree::{Document, Node};

use super::expr::{Expr, Ty};
use super::jwt;
use super::rawxml::{escape_expressions, substitute_named_values};
use super::{
    CheckHeader, Cors, ExistsAction, Forward, Item, Limit, LimitHeaders, Policy, Quota, RateLimit,
    RateLimitByKey, Retry, ReturnResponse, Scope, ScopeDoc, Section, Step, Text,
};

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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uses {
    pub named_values: std::collections::BTreeSet<String>,
    pub backends: std::collections::BTreeSet<String>,
    /// Query parameters a policy reads a token from (validate-jwt).
    pub token_query_params: std::collections::BTreeSet<String>,
}

type R<T> = Result<T, PolicyError>;

struct Cx<'c, 'a> {
    doc: &'c Document<'c>,
    ctx: &'c mut Context<'a>,
    section: Section,
    /// Counter-using policies seen so far in this document.
    counters: u32,
}

impl Cx<'_, '_> {
    fn err(&self, node: Node, message: impl Into<String>) -> PolicyError {
        let pos = self.doc.text_pos_at(node.range().start);
        PolicyError {
            line: pos.row,
            column: pos.col,
            message: message.into(),
        }
    }
    /// The stable label of the next counter-using policy: "{owner}#{n}".
    fn counter_label(&mut self) -> String {
        self.counters += 1;
        format!("{}#{}", self.ctx.owner, self.counters)
    }
    fn counter(&mut self) -> u64 {
        counter_id(&self.counter_label())
    }
}

/// A counter's identity: a 64-bit hash of its stable label.
fn counter_id(label: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = crate::route::Fnv::default();
    h.write(label.as_bytes());
    h.finish()
}

/// Compiles one scope's policy document.
pub fn parse(text: &str, ctx: &mut Context) -> R<ScopeDoc> {
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
    let text = escape_expressions(&text).map_err(|(offset, message)| {
        let line = text[..offset].matches('\n').count() as u32 + 1;
        let column = (offset - text[..offset].rfind('\n').map_or(0, |p| p + 1)) as u32 + 1;
        PolicyError {
            line,
            column,
            message,
        }
    })?;
    let doc = Document::parse(&text).map_err(|e| {
        let pos = e.pos();
        PolicyError {
            line: pos.row,
            column: pos.col,
            message: format!("not well-formed XML: {e}"),
        }
    })?;
    let root = doc.root_element();
    let mut cx = Cx {
        doc: &doc,
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
            } else {
                items.push(item(&mut cx, el)?);
            }
        }
        *slot = Some(items);
    }
    Ok(out)
}

fn elements<'a, 'i>(n: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children().filter(|c| c.is_element())
}

fn no_attributes(cx: &Cx, n: Node, allowed: &[&str]) -> R<()> {
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

fn only_children(cx: &Cx, n: Node, allowed: &[&str]) -> R<()> {
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
fn text_value(cx: &Cx, n: Node, raw: &str) -> R<Text> {
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

fn expr_value(cx: &Cx, n: Node, attr: &str, raw: &str) -> R<Expr> {
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

fn attr<'a>(n: Node<'a, '_>, name: &str) -> Option<&'a str> {
    n.attribute(name)
}

fn required<'a>(cx: &Cx, n: Node<'a, '_>, name: &str) -> R<&'a str> {
    n.attribute(name).ok_or_else(|| {
        cx.err(
            n,
            format!("<{}>: attribute '{name}' is required", n.tag_name().name()),
        )
    })
}

fn number(cx: &Cx, n: Node, name: &str, default: Option<u64>) -> R<u64> {
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

fn boolean(cx: &Cx, n: Node, name: &str, default: bool) -> R<bool> {
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

fn element_text<'a>(n: Node<'a, '_>) -> &'a str {
    n.text().unwrap_or("")
}

fn exists_action(cx: &Cx, n: Node) -> R<ExistsAction> {
    Ok(match attr(n, "exists-action").unwrap_or("override") {
        "override" => ExistsAction::Override,
        "skip" => ExistsAction::Skip,
        "append" => ExistsAction::Append,
        "delete" => ExistsAction::Delete,
        other => {
            return Err(cx.err(
                n,
                format!(
                    "<{}>: exists-action '{other}' is not one of override, skip, append, delete",
                    n.tag_name().name()
                ),
            ))
        }
    })
}

fn values(cx: &Cx, n: Node) -> R<Vec<Text>> {
    only_children(cx, n, &["value"])?;
    elements(n)
        .map(|v| text_value(cx, v, element_text(v)))
        .collect()
}

fn header_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn step(cx: &Cx, n: Node, policy: Policy) -> Item {
    Item::Step(Step {
        policy: Arc::new(policy),
        scope: cx.ctx.scope,
        section: cx.section,
        id: n.attribute("id").map(Arc::from),
    })
}

fn nested_steps(cx: &mut Cx, n: Node) -> R<Vec<Step>> {
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

fn section_allows(cx: &Cx, n: Node, sections: &[Section]) -> R<()> {
    if sections.contains(&cx.section) {
        Ok(())
    } else {
        let names: Vec<&str> = sections.iter().map(|s| s.as_str()).collect();
        Err(cx.err(
            n,
            format!(
                "<{}> is not allowed in <{}> (allowed in: {})",
                n.tag_name().name(),
                cx.section.as_str(),
                names.join(", ")
            ),
        ))
    }
}

const ALL: &[Section] = &[
    Section::Inbound,
    Section::Backend,
    Section::Outbound,
    Section::OnError,
];
const IN: &[Section] = &[Section::Inbound];

fn limit_headers(n: Node) -> LimitHeaders {
    let s = |k: &str| n.attribute(k).map(str::to_string);
    LimitHeaders {
        retry_after_header: s("retry-after-header-name"),
        retry_after_variable: s("retry-after-variable-name"),
        remaining_header: s("remaining-calls-header-name"),
        remaining_variable: s("remaining-calls-variable-name"),
        total_header: s("total-calls-header-name"),
    }
}

/// The header and variable names a rate limit may report through (`limit_headers`).
const LIMIT_HEADERS: &[&str] = &[
    "retry-after-header-name",
    "retry-after-variable-name",
    "remaining-calls-header-name",
    "remaining-calls-variable-name",
    "total-calls-header-name",
];

/// A rate-limit / quota element and its `<api>` / `<operation>` levels.
fn limit(cx: &mut Cx, n: Node, quota: bool) -> R<Limit> {
    let kinds: &[&str] = if quota {
        &["name", "id", "calls", "bandwidth", "renewal-period"]
    } else {
        &["name", "id", "calls", "renewal-period"]
    };
    let label: Arc<str> = match attr(n, "id") {
        Some(id) => Arc::from(format!("{}:{id}", cx.ctx.owner)),
        None => Arc::from(cx.counter_label()),
    };
    let mut top = level(cx, n, String::new(), label)?;
    only_children(cx, n, &["api"])?;
    for api in elements(n) {
        no_attributes(cx, api, kinds)?;
        only_children(cx, api, &["operation"])?;
        let mut a = named_level(cx, api, &top.label)?;
        for op in elements(api) {
            no_attributes(cx, op, kinds)?;
            let o = named_level(cx, op, &a.label)?;
            a.nested.push(o);
        }
        top.nested.push(a);
    }
    Ok(top)
}

fn named_level(cx: &mut Cx, n: Node, parent: &str) -> R<Limit> {
    let tag = n.tag_name().name();
    let name = attr(n, "id")
        .or(attr(n, "name"))
        .ok_or_else(|| cx.err(n, format!("<{tag}>: attribute 'name' or 'id' is required")))?;
    level(
        cx,
        n,
        name.to_string(),
        Arc::from(format!("{parent}/{tag}:{name}")),
    )
}

fn level(cx: &mut Cx, n: Node, name: String, label: Arc<str>) -> R<Limit> {
    let period_secs = number(cx, n, "renewal-period", None)?;
    if period_secs == 0 {
        return Err(cx.err(
            n,
            format!(
                "<{}>: renewal-period must be at least 1",
                n.tag_name().name()
            ),
        ));
    }
    Ok(Limit {
        name,
        calls: number(cx, n, "calls", Some(0))?,
        bandwidth_kb: number(cx, n, "bandwidth", Some(0))?,
        period_secs,
        counter: counter_id(&label),
        label,
        nested: Vec::new(),
    })
}

fn forward(cx: &mut Cx, n: Node) -> R<Forward> {
    no_attributes(
        cx,
        n,
        &[
            "timeout",
            "buffer-request-body",
            "follow-redirects",
            "buffer-response",
            "fail-on-error-status-code",
        ],
    )?;
    only_children(cx, n, &[])?;
    if boolean(cx, n, "follow-redirects", false)? {
        return Err(cx.err(
            n,
            "<forward-request>: follow-redirects=\"true\" is not supported",
        ));
    }
    if boolean(cx, n, "fail-on-error-status-code", false)? {
        return Err(cx.err(
            n,
            "<forward-request>: fail-on-error-status-code=\"true\" is not supported",
        ));
    }
    let timeout_secs = match attr(n, "timeout") {
        None => None,
        Some(_) => Some(number(cx, n, "timeout", None)?),
    };
    if timeout_secs == Some(0) {
        return Err(cx.err(n, "<forward-request>: timeout must be at least 1 second"));
    }
    Ok(Forward {
        timeout_secs,
        buffer_request_body: boolean(cx, n, "buffer-request-body", false)?,
        retry: None,
        concurrency: None,
    })
}

/// A backend-section wrapper (retry, limit-concurrency) whose only content is
/// forward-request (possibly wrapped again).
fn wrapped_forward(cx: &mut Cx, n: Node) -> R<Option<Forward>> {
    let kids: Vec<Node> = elements(n).collect();
    if cx.section != Section::Backend || kids.len() != 1 {
        return Ok(None);
    }
    let k = kids[0];
    match k.tag_name().name() {
        "forward-request" => forward(cx, k).map(Some),
        "retry" | "limit-concurrency" => match item(cx, k)? {
            Item::Forward(f) => Ok(Some(f)),
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

fn item(cx: &mut Cx, n: Node) -> R<Item> {
    let name = n.tag_name().name();
    if n.tag_name().namespace().is_some() {
        return Err(cx.err(
            n,
            format!("<{name}>: namespaced elements are not supported"),
        ));
    }
    let policy = match name {
        "check-header" => {
            section_allows(cx, n, IN)?;
            no_attributes(
                cx,
                n,
                &[
                    "name",
                    "failed-check-httpcode",
                    "failed-check-error-message",
                    "ignore-case",
                ],
            )?;
            let header = required(cx, n, "name")?;
            let code = number(cx, n, "failed-check-httpcode", None)?;
            if !(200..=599).contains(&code) {
                return Err(cx.err(n, "<check-header>: failed-check-httpcode must be 200..599"));
            }
            let vals = values(cx, n)?
                .into_iter()
                .map(|t| match t {
                    Text::Lit(s) => Ok(s),
                    Text::Expr(_) => Err(cx.err(n, "<check-header>: values must be literals")),
                })
                .collect::<R<Vec<String>>>()?;
            Policy::CheckHeader(CheckHeader {
                name: header.to_string(),
                failed_code: code as u16,
                failed_message: required(cx, n, "failed-check-error-message")?.to_string(),
                ignore_case: boolean(cx, n, "ignore-case", false)?,
                values: vals,
            })
        }
        "ip-filter" => {
            section_allows(cx, n, IN)?;
            no_attributes(cx, n, &["action"])?;
            only_children(cx, n, &["address", "address-range"])?;
            let allow = match required(cx, n, "action")? {
                "allow" => true,
                "forbid" => false,
                other => {
                    return Err(cx.err(
                        n,
                        format!("<ip-filter>: action '{other}' is not allow or forbid"),
                    ))
                }
            };
            let mut addresses = Vec::new();
            let mut ranges = Vec::new();
            for el in elements(n) {
                let ip = |s: &str| -> R<IpAddr> {
                    s.trim()
                        .parse()
                        .map_err(|_| cx.err(el, format!("'{s}' is not an IP address")))
                };
                if el.has_tag_name("address") {
                    no_attributes(cx, el, &[])?;
                    addresses.push(ip(element_text(el))?);
                } else {
                    no_attributes(cx, el, &["from", "to"])?;
                    let from = ip(required(cx, el, "from")?)?;
                    let to = ip(required(cx, el, "to")?)?;
                    if from.is_ipv4() != to.is_ipv4() || from > to {
                        return Err(cx.err(
                            el,
                            "<address-range>: 'from' must not exceed 'to' (same family)",
                        ));
                    }
                    ranges.push((from, to));
                }
            }
            Policy::IpFilter {
                allow,
                addresses,
                ranges,
            }
        }
        "set-header" | "set-query-parameter" => {
            section_allows(cx, n, ALL)?;
            no_attributes(cx, n, &["name", "exists-action"])?;
            let key = required(cx, n, "name")?;
            if name == "set-header" && !header_name_ok(key) {
                return Err(cx.err(
                    n,
                    format!("<set-header>: '{key}' is not a valid header name"),
                ));
            }
            if name == "set-query-parameter"
                && cx.section != Section::Inbound
                && cx.section != Section::Backend
            {
                return Err(cx.err(
                    n,
                    "<set-query-parameter> is only allowed in inbound and backend",
                ));
            }
            let action = exists_action(cx, n)?;
            let vals = values(cx, n)?;
            if vals.is_empty() && action != ExistsAction::Delete {
                return Err(cx.err(n, format!("<{name}>: at least one <value> is required")));
            }
            let key = key.to_string();
            if name == "set-header" {
                Policy::SetHeader {
                    name: key,
                    action,
                    values: vals,
                }
            } else {
                Policy::SetQueryParameter {
                    name: key,
                    action,
                    values: vals,
                }
            }
        }
        "rewrite-uri" => {
            section_allows(cx, n, &[Section::Inbound])?;
            no_attributes(cx, n, &["template", "copy-unmatched-params"])?;
            let t = required(cx, n, "template")?;
            let template = text_value(cx, n, t)?;
            if let Text::Lit(l) = &template {
                if !l.starts_with('/') {
                    return Err(cx.err(n, "<rewrite-uri>: template must start with '/'"));
                }
            }
            Policy::RewriteUri {
                template,
                copy_unmatched: boolean(cx, n, "copy-unmatched-params", true)?,
            }
        }
        "set-backend-service" => {
            section_allows(cx, n, &[Section::Inbound, Section::Backend])?;
            no_attributes(cx, n, &["base-url", "backend-id"])?;
            match (attr(n, "base-url"), attr(n, "backend-id")) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(cx.err(
                        n,
                        "<set-backend-service>: exactly one of base-url and backend-id is required",
                    ))
                }
                (None, Some(id)) => {
                    cx.ctx.uses.backends.insert(id.to_string());
                    let idx = (cx.ctx.backend_id)(id).ok_or_else(|| {
                        cx.err(
                            n,
                            format!("<set-backend-service>: backend-id '{id}' is not in backends"),
                        )
                    })?;
                    Policy::SetBackendService {
                        backend: Some(idx),
                        url: None,
                    }
                }
                (Some(url), None) => match text_value(cx, n, url)? {
                    Text::Lit(u) => {
                        let idx = (cx.ctx.add_backend_url)(&u).map_err(|e| {
                            cx.err(n, format!("<set-backend-service>: base-url: {e}"))
                        })?;
                        Policy::SetBackendService {
                            backend: Some(idx),
                            url: None,
                        }
                    }
                    e => Policy::SetBackendService {
                        backend: None,
                        url: Some(e),
                    },
                },
            }
        }
        "set-method" => {
            section_allows(cx, n, &[Section::Inbound, Section::Backend])?;
            no_attributes(cx, n, &[])?;
            let t = text_value(cx, n, element_text(n).trim())?;
            if let Text::Lit(m) = &t {
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(cx.err(
                        n,
                        "<set-method>: expected an upper-case method such as POST",
                    ));
                }
            }
            Policy::SetMethod(t)
        }
        "set-status" => {
            section_allows(cx, n, ALL)?;
            no_attributes(cx, n, &["code", "reason"])?;
            let (code, reason) = status_attrs(cx, n)?;
            Policy::SetStatus { code, reason }
        }
        "set-variable" => {
            section_allows(cx, n, ALL)?;
            no_attributes(cx, n, &["name", "value"])?;
            Policy::SetVariable {
                name: required(cx, n, "name")?.to_string(),
                value: text_value(cx, n, required(cx, n, "value")?)?,
            }
        }
        "set-body" => {
            section_allows(cx, n, ALL)?;
            no_attributes(cx, n, &["template", "xsi-nil"])?;
            if attr(n, "template").is_some() {
                return Err(cx.err(n, "<set-body>: template=\"liquid\" is not supported"));
            }
            if attr(n, "xsi-nil").is_some() {
                return Err(cx.err(n, "<set-body>: xsi-nil is not supported"));
            }
            only_children(cx, n, &[])?;
            Policy::SetBody(text_value(cx, n, element_text(n))?)
        }
        "find-and-replace" => {
            section_allows(cx, n, ALL)?;
            no_attributes(cx, n, &["from", "to"])?;
            let from = text_value(cx, n, required(cx, n, "from")?)?;
            if matches!(&from, Text::Lit(f) if f.is_empty()) {
                return Err(cx.err(n, "<find-and-replace>: 'from' must not be empty"));
            }
            Policy::FindAndReplace {
                from,
                to: text_value(cx, n, required(cx, n, "to")?)?,
            }
        }
        "choose" => {
            section_allows(cx, n, ALL)?;
            no_attributes(cx, n, &[])?;
            only_children(cx, n, &["when", "otherwise"])?;
            let mut whens = Vec::new();
            let mut otherwise = Vec::new();
            let mut seen_otherwise = false;
            for el in elements(n) {
                if el.has_tag_name("when") {
                    if seen_otherwise {
                        return Err(cx.err(el, "<when> after <otherwise>"));
                    }
                    no_attributes(cx, el, &["condition"])?;
                    let c = expr_value(cx, el, "condition", required(cx, el, "condition")?)?;
                    whens.push((c, nested_steps(cx, el)?));
                } else {
                    if seen_otherwise {
                        return Err(cx.err(el, "<otherwise> appears twice"));
                    }
                    seen_otherwise = true;
                    no_attributes(cx, el, &[])?;
                    otherwise = nested_steps(cx, el)?;
                }
            }
            if whens.is_empty() {
                return Err(cx.err(n, "<choose>: at least one <when> is required"));
            }
            Policy::Choose { whens, otherwise }
        }
        "return-response" => {
            section_allows(cx, n, ALL)?;
            no_attributes(cx, n, &["response-variable-name"])?;
            if attr(n, "response-variable-name").is_some() {
                return Err(cx.err(
                    n,
                    "<return-response>: response-variable-name is not supported",
                ));
            }
            only_children(cx, n, &["set-status", "set-header", "set-body"])?;
            let mut r = ReturnResponse {
                status: None,
                headers: Vec::new(),
                body: None,
            };
            for el in elements(n) {
                match el.tag_name().name() {
                    "set-status" => {
                        no_attributes(cx, el, &["code", "reason"])?;
                        r.status = Some(status_attrs(cx, el)?);
                    }
                    "set-header" => {
                        no_attributes(cx, el, &["name", "exists-action"])?;
                        let h = required(cx, el, "name")?;
                        if !header_name_ok(h) {
                            return Err(cx.err(
                                el,
                                format!("<set-header>: '{h}' is not a valid header name"),
                            ));
                        }
                        r.headers
                            .push((h.to_string(), exists_action(cx, el)?, values(cx, el)?));
                    }
                    _ => {
                        no_attributes(cx, el, &[])?;
                        r.body = Some(text_value(cx, el, element_text(el))?);
                    }
                }
            }
            Policy::ReturnResponse(r)
        }
        "mock-response" => {
            section_allows(
                cx,
                n,
                &[
                    Section::Inbound,
                    Section::Backend,
                    Section::Outbound,
                    Section::OnError,
                ],
            )?;
            no_attributes(cx, n, &["status-code", "content-type"])?;
            let status = match attr(n, "status-code") {
                None => None,
                Some(_) => {
                    let c = number(cx, n, "status-code", None)?;
                    if !(100..=599).contains(&c) {
                        return Err(cx.err(n, "<mock-response>: status-code must be 100..599"));
                    }
                    Some(c as u16)
                }
            };
            Policy::MockResponse {
                status,
                content_type: attr(n, "content-type").map(str::to_string),
            }
        }
        "cors" => {
            section_allows(cx, n, IN)?;
            no_attributes(cx, n, &["allow-credentials", "terminate-unmatched-request"])?;
            only_children(
                cx,
                n,
                &[
                    "allowed-origins",
                    "allowed-methods",
                    "allowed-headers",
                    "expose-headers",
                ],
            )?;
            let mut c = Cors {
                allow_credentials: boolean(cx, n, "allow-credentials", false)?,
                terminate_unmatched: boolean(cx, n, "terminate-unmatched-request", true)?,
                origins: Vec::new(),
                any_origin: false,
                methods: Vec::new(),
                any_method: false,
                headers: Vec::new(),
                any_header: false,
                expose: Vec::new(),
                max_age: None,
            };
            for el in elements(n) {
                let (child, list, any) = match el.tag_name().name() {
                    "allowed-origins" => ("origin", &mut c.origins, &mut c.any_origin),
                    "allowed-methods" => ("method", &mut c.methods, &mut c.any_method),
                    "allowed-headers" => ("header", &mut c.headers, &mut c.any_header),
                    _ => ("header", &mut c.expose, &mut false),
                };
                if el.has_tag_name("allowed-methods") {
                    no_attributes(cx, el, &["preflight-result-max-age"])?;
                    if attr(el, "preflight-result-max-age").is_some() {
                        c.max_age = Some(number(cx, el, "preflight-result-max-age", None)?);
                    }
                } else {
                    no_attributes(cx, el, &[])?;
                }
                only_children(cx, el, &[child])?;
                for v in elements(el) {
                    let t = element_text(v).trim();
                    if t == "*" {
                        *any = true;
                    } else if !t.is_empty() {
                        list.push(t.to_string());
                    }
                }
            }
            if c.origins.is_empty() && !c.any_origin {
                return Err(cx.err(n, "<cors>: <allowed-origins> needs at least one <origin>"));
            }
            if c.any_origin && c.allow_credentials {
                return Err(cx.err(
                    n,
                    "<cors>: allow-credentials=\"true\" cannot be used with origin '*'",
                ));
            }
            Policy::Cors(Box::new(c))
        }
        "rate-limit" => {
            section_allows(cx, n, IN)?;
            no_attributes(
                cx,
                n,
                &[&["calls", "renewal-period"][..], LIMIT_HEADERS].concat(),
            )?;
            number(cx, n, "calls", None)?;
            Policy::RateLimit(RateLimit {
                limit: limit(cx, n, false)?,
                headers: limit_headers(n),
            })
        }
        "rate-limit-by-key" => {
            section_allows(cx, n, IN)?;
            let own = [
                "calls",
                "renewal-period",
                "counter-key",
                "increment-condition",
                "increment-count",
            ];
            no_attributes(cx, n, &[&own[..], LIMIT_HEADERS].concat())?;
            only_children(cx, n, &[])?;
            let period_secs = number(cx, n, "renewal-period", None)?;
            if period_secs == 0 {
                return Err(cx.err(n, "<rate-limit-by-key>: renewal-period must be at least 1"));
            }
            Policy::RateLimitByKey(RateLimitByKey {
                counter: cx.counter(),
                calls: number(cx, n, "calls", None)?,
                period_secs,
                key: text_value(cx, n, required(cx, n, "counter-key")?)?,
                increment_condition: attr(n, "increment-condition")
                    .map(|c| expr_value(cx, n, "increment-condition", c))
                    .transpose()?,
                increment_count: number(cx, n, "increment-count", Some(1))?,
                headers: limit_headers(n),
            })
        }
        "quota" | "quota-by-key" => {
            section_allows(cx, n, IN)?;
            let by_key = name == "quota-by-key";
            if by_key {
                no_attributes(
                    cx,
                    n,
                    &[
                        "calls",
                        "bandwidth",
                        "renewal-period",
                        "counter-key",
                        "increment-condition",
                        "first-period-start",
                    ],
                )?;
                only_children(cx, n, &[])?;
            } else {
                no_attributes(cx, n, &["calls", "bandwidth", "renewal-period"])?;
            }
            let calls = number(cx, n, "calls", Some(0))?;
            let bandwidth_kb = number(cx, n, "bandwidth", Some(0))?;
            if calls == 0 && bandwidth_kb == 0 && (by_key || elements(n).next().is_none()) {
                return Err(cx.err(n, format!("<{name}>: calls or bandwidth is required")));
            }
            let first_period_start = match attr(n, "first-period-start") {
                None => 0,
                Some(s) => crate::telemetry::parse_rfc3339(s.trim()).ok_or_else(|| {
                    cx.err(
                        n,
                        "<quota-by-key>: first-period-start must be an RFC 3339 time",
                    )
                })?,
            };
            Policy::Quota(Quota {
                limit: limit(cx, n, true)?,
                key: if by_key {
                    Some(text_value(cx, n, required(cx, n, "counter-key")?)?)
                } else {
                    None
                },
                increment_condition: attr(n, "increment-condition")
                    .map(|c| expr_value(cx, n, "increment-condition", c))
                    .transpose()?,
                first_period_start,
            })
        }
        "validate-jwt" => {
            section_allows(cx, n, IN)?;
            let mut v =
                jwt::parse_policy(n).map_err(|(node, msg)| cx.err(node.unwrap_or(n), msg))?;
            if let jwt::TokenSource::Query(q) = &v.source {
                cx.ctx.uses.token_query_params.insert(q.clone());
            }
            v.id = cx.counter();
            Policy::ValidateJwt(Box::new(v))
        }
        "authentication-basic" => {
            section_allows(cx, n, IN)?;
            no_attributes(cx, n, &["username", "password"])?;
            only_children(cx, n, &[])?;
            use base64::Engine;
            let user = required(cx, n, "username")?;
            let pass = required(cx, n, "password")?;
            let cred = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            Policy::AuthenticationBasic {
                header: format!("Basic {cred}"),
            }
        }
        "forward-request" => {
            section_allows(cx, n, &[Section::Backend])?;
            return forward(cx, n).map(Item::Forward);
        }
        "retry" => {
            section_allows(cx, n, &[Section::Backend])?;
            no_attributes(
                cx,
                n,
                &[
                    "condition",
                    "count",
                    "interval",
                    "max-interval",
                    "delta",
                    "first-fast-retry",
                ],
            )?;
            let condition = expr_value(cx, n, "condition", required(cx, n, "condition")?)?;
            let count = number(cx, n, "count", None)?;
            if count == 0 || count > 50 {
                return Err(cx.err(n, "<retry>: count must be 1..50"));
            }
            let r = Retry {
                condition,
                count: count as u32,
                interval_secs: number(cx, n, "interval", None)?,
                max_interval_secs: number(cx, n, "max-interval", Some(0))?,
                delta_secs: number(cx, n, "delta", Some(0))?,
                first_fast_retry: boolean(cx, n, "first-fast-retry", false)?,
            };
            let Some(mut f) = wrapped_forward(cx, n)? else {
                return Err(cx.err(
                    n,
                    "<retry>: supported around a single <forward-request /> in <backend>",
                ));
            };
            if f.retry.is_some() {
                return Err(cx.err(n, "<retry>: nested retry is not supported"));
            }
            f.retry = Some(r);
            return Ok(Item::Forward(f));
        }
        "limit-concurrency" => {
            section_allows(
                cx,
                n,
                &[Section::Inbound, Section::Backend, Section::Outbound],
            )?;
            no_attributes(cx, n, &["key", "max-count"])?;
            let key = text_value(cx, n, required(cx, n, "key")?)?;
            let max = number(cx, n, "max-count", None)?;
            if max == 0 || max > u32::MAX as u64 {
                return Err(cx.err(n, "<limit-concurrency>: max-count must be at least 1"));
            }
            let counter = cx.counter();
            if let Some(mut f) = wrapped_forward(cx, n)? {
                if f.concurrency.is_some() {
                    return Err(cx.err(
                        n,
                        "<limit-concurrency>: nested limit-concurrency is not supported",
                    ));
                }
                f.concurrency = Some((key, max as u32, counter));
                return Ok(Item::Forward(f));
            }
            if cx.section == Section::Backend {
                return Err(cx.err(n, "<limit-concurrency> in <backend> is supported around a single <forward-request />"));
            }
            Policy::LimitConcurrency {
                counter,
                key,
                max: max as u32,
                steps: nested_steps(cx, n)?,
            }
        }
        "base" => return Err(cx.err(n, "<base /> must be a direct child of a section")),
        other => {
            return Err(cx.err(
                n,
                format!(
                "policy <{other}> is not supported by edgegate (see README \"Policy conformance\")"
            ),
            ))
        }
    };
    match &policy {
        Policy::Choose { .. }
        | Policy::ReturnResponse(_)
        | Policy::Cors(_)
        | Policy::IpFilter { .. }
        | Policy::CheckHeader(_)
        | Policy::ValidateJwt(_)
        | Policy::SetHeader { .. }
        | Policy::SetQueryParameter { .. }
        | Policy::LimitConcurrency { .. }
        | Policy::RateLimit(_)
        | Policy::Quota(_) => {}
        _ => only_children(cx, n, &[])?,
    }
    Ok(step(cx, n, policy))
}

fn status_attrs(cx: &Cx, n: Node) -> R<(Text, Text)> {
    let code = text_value(cx, n, required(cx, n, "code")?)?;
    if let Text::Lit(c) = &code {
        match c.trim().parse::<u16>() {
            Ok(v) if (100..=599).contains(&v) => {}
            _ => {
                return Err(cx.err(
                    n,
                    format!("<{}>: code must be 100..599", n.tag_name().name()),
                ))
            }
        }
    }
    let reason = text_value(cx, n, attr(n, "reason").unwrap_or(""))?;
    Ok((code, reason))
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
        let mut add = |_: &str| Ok(1);
        let mut ctx = Context {
            scope: Scope::Api,
            named_value: &named,
            backend_id: &backend,
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

    #[test]
    fn sections_hold_their_policies() {
        let (doc, _) = compile(
            r#"<policies><inbound><base /><set-header name="x" exists-action="override"><value>1</value></set-header></inbound><backend><forward-request timeout="5" /></backend><outbound /><on-error><base /></on-error></policies>"#,
        );
        let doc = doc.unwrap();
        assert_eq!(doc.inbound.as_ref().map(Vec::len), Some(2));
        assert!(
            matches!(doc.backend.as_deref(), Some([Item::Forward(f)]) if f.timeout_secs == Some(5))
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
                    Item::Step(s) => match &*s.policy {
                        Policy::SetHeader { name, .. } => Some(name.clone()),
                        _ => None,
                    },
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
