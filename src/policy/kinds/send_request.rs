//! `send-request` and `send-one-way-request`: a request the policy makes itself
//! (mode new or a copy of the call's request; set-url, set-method, set-header,
//! set-body, timeout, ignore-error, response-variable-name). The policy only describes
//! the request (`policy::outgoing::Outgoing`): send-request suspends the call until the
//! loop has its outcome (or, inside `<wait>`, queues it and goes on); a one-way request
//! goes into the loop's bounded outbox and the call goes on at once.
//! Must not touch: sockets, DNS (the loop sends, the agent resolves).

use roxmltree::Node;

use super::set_body::{self, SetBody};
use super::set_header::{apply, Edit, NameRule};
use super::{policy, Compiled, Kind, ALL, WAITING};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow, LastError, Phase};
use crate::policy::expr::EvalError;
use crate::policy::outgoing::{Outgoing, ReplyTo};
use crate::policy::parse::{
    attr, boolean, element_text, elements, no_attributes, only_children, required, setting,
    text_value, Cx, R,
};
use crate::policy::{Section, Setting, Step, Text};

pub const KIND: Kind = Kind {
    element: "send-request",
    // a call waits in inbound, backend and outbound (not yet in on-error)
    sections: WAITING,
    children: true,
    compile: compile_send,
};

pub const ONE_WAY: Kind = Kind {
    element: "send-one-way-request",
    sections: ALL,
    children: true,
    compile: compile_one_way,
};

/// APIM's default timeout of a send-request, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;
/// The longest timeout a policy may ask for.
pub const MAX_TIMEOUT_SECS: u64 = 3600;

#[derive(Debug, Clone)]
pub struct SendRequest {
    /// mode="copy": start from the call's request (method, URL, headers, body).
    pub copy: bool,
    pub url: Option<Text>,
    pub method: Option<Text>,
    pub headers: Vec<Edit>,
    pub body: Option<SetBody>,
    pub timeout_secs: Setting<u64>,
    /// `<authentication-managed-identity>`: the gateway identity's token for the request.
    pub identity: Option<super::managed_identity::ManagedIdentity>,
    /// `authentication-certificate` inside it.
    pub certificate: Option<super::authentication_certificate::AuthenticationCertificate>,
    /// `proxy` inside it.
    pub proxy: Option<super::proxy::Proxy>,
    /// send-request's `response-variable-name` and `ignore-error`; none for one-way.
    pub reply: Option<(String, bool)>,
}

fn timeout(v: &str) -> Option<u64> {
    v.parse()
        .ok()
        .filter(|n| (1..=MAX_TIMEOUT_SECS).contains(n))
}

fn compile_send(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(
        cx,
        n,
        &["mode", "response-variable-name", "timeout", "ignore-error"],
    )?;
    let variable = required(cx, n, "response-variable-name")?.to_string();
    let ignore = boolean(cx, n, "ignore-error", false)?;
    policy(compile(cx, n, Some((variable, ignore)))?)
}

fn compile_one_way(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["mode", "timeout"])?;
    policy(compile(cx, n, None)?)
}

fn compile(cx: &mut Cx, n: Node, reply: Option<(String, bool)>) -> R<SendRequest> {
    let name = n.tag_name().name();
    let copy = match attr(n, "mode").map(str::trim) {
        None | Some("new") => false,
        Some("copy") => true,
        Some(other) => {
            return Err(cx.err(
                n,
                format!("<{name}>: mode \"{other}\": expected new or copy"),
            ))
        }
    };
    only_children(
        cx,
        n,
        &[
            "set-url",
            "set-method",
            "set-header",
            "set-body",
            "authentication-certificate",
            "authentication-managed-identity",
            "proxy",
        ],
    )?;
    let mut s = SendRequest {
        copy,
        url: None,
        method: None,
        headers: Vec::new(),
        body: None,
        timeout_secs: setting(
            cx,
            n,
            "timeout",
            Some(DEFAULT_TIMEOUT_SECS),
            timeout,
            "a number of seconds from 1 to 3600",
        )?,
        identity: None,
        certificate: None,
        proxy: None,
        reply,
    };
    for el in elements(n) {
        match el.tag_name().name() {
            "set-url" => {
                no_attributes(cx, el, &[])?;
                let t = text_value(cx, el, element_text(el).trim())?;
                if let Text::Lit(url) = &t {
                    known_origin(cx, el, url)?;
                }
                s.url = Some(t);
            }
            "set-method" => {
                no_attributes(cx, el, &[])?;
                s.method = Some(text_value(cx, el, element_text(el).trim())?);
            }
            "set-header" => s.headers.push(Edit::compile(cx, el, NameRule::Header)?),
            "set-body" => s.body = Some(set_body::body(cx, el)?),
            "authentication-managed-identity" => {
                s.identity = Some(super::managed_identity::parse(cx, el)?)
            }
            "authentication-certificate" => {
                s.certificate = Some(super::authentication_certificate::parse(cx, el)?)
            }
            "proxy" => s.proxy = Some(super::proxy::parse(cx, el)?),
            other => return Err(cx.err(el, format!("<{name}>: <{other}> is not supported"))),
        }
    }
    if !copy && s.url.is_none() {
        return Err(cx.err(
            n,
            format!("<{name}>: <set-url> is required in mode \"new\""),
        ));
    }
    Ok(s)
}

/// A literal URL's origin becomes a host the agent resolves with the config's
/// backends, so the loop knows its address without DNS.
fn known_origin(cx: &mut Cx, el: Node, url: &str) -> R<()> {
    let Some(after) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return Err(cx.err(
            el,
            format!("<set-url>: '{url}' is not an absolute http:// or https:// URL"),
        ));
    };
    let end = url.len() - after.len() + after.find(['/', '?', '#']).unwrap_or(after.len());
    (cx.ctx.add_backend_url)(&url[..end])
        .map(|_| ())
        .map_err(|e| cx.err(el, format!("<set-url>: '{url}': {e}")))
}

/// Headers the sender writes itself (framing and the connection's own).
fn senders_header(name: &str) -> bool {
    crate::http::forward::is_managed_header(name)
        || name.eq_ignore_ascii_case("host")
        || name.eq_ignore_ascii_case("expect")
}

impl SendRequest {
    /// The request for this call.
    fn request(&self, call: &mut Call, section: Section) -> Result<Outgoing, EvalError> {
        let mut headers: Vec<(String, Vec<String>)> = Vec::new();
        let (mut method, mut url, mut body) = (String::from("GET"), String::new(), Vec::new());
        if self.copy {
            let req = call.host.request();
            method = call
                .st
                .req
                .method
                .clone()
                .unwrap_or_else(|| req.method.to_string());
            url = call.host.request_url(call.st);
            for (name, value) in req.headers.to_owned_list() {
                if call.st.req.headers.get(&name).is_some() {
                    continue;
                }
                match headers
                    .iter_mut()
                    .find(|(n, _)| n.eq_ignore_ascii_case(&name))
                {
                    Some((_, values)) => values.push(value),
                    None => headers.push((name, vec![value])),
                }
            }
            for (name, values) in &call.st.req.headers.list {
                if let Some(values) = values {
                    headers.push((name.clone(), values.clone()));
                }
            }
            // in outbound, as APIM says, mode copy does not take the request body
            if call.phase == Phase::Request || section == Section::OnError {
                body = call.st.req.body.clone().unwrap_or_default();
            }
        }
        if let Some(u) = &self.url {
            url = call.text(u)?;
        }
        if let Some(m) = &self.method {
            method = call.text(m)?;
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(EvalError(
                    format!("'{method}' is not an HTTP method").into(),
                ));
            }
            method.make_ascii_uppercase();
        }
        for edit in &self.headers {
            let (name, action, values) = edit.resolve(call, NameRule::Header)?;
            let at = headers
                .iter()
                .position(|(n, _)| n.eq_ignore_ascii_case(&name));
            let current = at.map(|i| headers.remove(i).1);
            if let Some(values) = apply(action, current, values) {
                headers.push((name.into_owned(), values));
            }
        }
        if let Some(b) = &self.body {
            body = b.render(call)?.into_bytes();
        }
        if let Some(identity) = &self.identity {
            match identity.token(call)? {
                Some(token) => {
                    headers.retain(|(n, _)| !n.eq_ignore_ascii_case("authorization"));
                    headers.push(("Authorization".to_string(), vec![format!("Bearer {token}")]));
                }
                None if identity.ignore_error => {}
                None => {
                    return Err(EvalError(
                        "the gateway's identity has no access token for this resource yet".into(),
                    ))
                }
            }
        }
        let timeout_secs = call.setting(&self.timeout_secs)?;
        let headers = headers
            .into_iter()
            .filter(|(name, _)| !senders_header(name))
            .flat_map(|(name, values)| values.into_iter().map(move |v| (name.clone(), v)))
            .collect();
        let client_tls = match &self.certificate {
            Some(c) => Some(c.identity(call)?),
            None => None,
        };
        let proxy = match &self.proxy {
            Some(p) => Some(p.via(call)?),
            None => None,
        };
        Ok(Outgoing {
            method,
            url,
            headers,
            body,
            timeout_secs,
            reply: None,
            client_tls,
            proxy,
        })
    }
}

impl Behaviour for SendRequest {
    fn name(&self) -> &'static str {
        if self.reply.is_some() {
            "send-request"
        } else {
            "send-one-way-request"
        }
    }
    fn facts(&self) -> Facts {
        let texts = self
            .url
            .iter()
            .chain(&self.method)
            .chain(self.headers.iter().flat_map(Edit::texts))
            .chain(self.timeout_secs.text());
        let body = match &self.body {
            Some(b) => b.facts(),
            None => Facts::default(),
        };
        let copy = Facts {
            needs_body: self.copy,
            reads_request: self.copy,
            copies_request: self.copy,
            ..Facts::default()
        };
        Facts {
            sets_body: false,
            suspends: self.reply.is_some(),
            ..Facts::reading(texts) | body | copy
        }
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let mut out = or_fail!(call, step, self.request(call, step.section));
        let Some((variable, ignore_error)) = &self.reply else {
            // fire and forget: a full outbox drops it (and counts the drop)
            call.counters.outbox.push(out);
            return Flow::Continue;
        };
        out.reply = Some(ReplyTo {
            variable: variable.clone(),
            ignore_error: *ignore_error,
            origin: LastError {
                source: "send-request".to_string(),
                scope: step.scope.as_str().to_string(),
                section: step.section.as_str().to_string(),
                policy_id: step.id.as_deref().unwrap_or("").to_string(),
                path: "send-request".to_string(),
                ..LastError::default()
            },
        });
        call.st.outgoing.push(out);
        if call.st.collecting {
            // inside <wait>: the wait suspends once all its requests are out
            return Flow::Continue;
        }
        call.st.wait_any = false;
        Flow::Suspend
    }
}
