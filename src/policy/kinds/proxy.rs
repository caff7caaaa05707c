//! `proxy`: the backend request (in inbound), or a send-request's request (inside it),
//! goes through an HTTP proxy (`url`, `http://host:port`; APIM speaks only HTTP to the
//! proxy), with Basic `Proxy-Authorization` from `username` and `password`
//! (expressions allowed). An `http://` target is asked for in absolute form; an
//! `https://` one through a CONNECT tunnel, the TLS running end to end. The proxy's
//! host is resolved by the agent with the config, never on the loop.
//! Must not touch: the credentials in any log line.

use roxmltree::Node;

use super::{policy, Compiled, Kind, INBOUND};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow, ProxyVia};
use crate::policy::expr::EvalError;
use crate::policy::parse::{attr, no_attributes, required, text_value, Cx, R};
use crate::policy::{Step, Text};

pub const KIND: Kind = Kind {
    element: "proxy",
    sections: INBOUND,
    children: false,
    compile,
};

#[derive(Clone)]
pub struct Proxy {
    /// `http://host:port`.
    pub url: String,
    pub credentials: Option<(Text, Text)>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Proxy {{ url: {:?} }}", self.url)
    }
}

/// Compiles the element (also inside send-request).
pub(crate) fn parse(cx: &mut Cx, n: Node) -> R<Proxy> {
    no_attributes(cx, n, &["url", "username", "password"])?;
    let url = required(cx, n, "url")?
        .trim()
        .trim_end_matches('/')
        .to_string();
    let valid = url
        .strip_prefix("http://")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains(['/', '?', '#', '@']));
    if !valid {
        return Err(cx.err(
            n,
            format!(
                "<proxy>: url '{url}': expected http://host:port (a proxy is spoken to over HTTP)"
            ),
        ));
    }
    (cx.ctx.add_backend_url)(&url).map_err(|e| cx.err(n, format!("<proxy>: url '{url}': {e}")))?;
    let credentials = match (attr(n, "username"), attr(n, "password")) {
        (None, None) => None,
        (Some(u), Some(p)) => Some((text_value(cx, n, u)?, text_value(cx, n, p)?)),
        _ => return Err(cx.err(n, "<proxy>: username and password go together")),
    };
    Ok(Proxy { url, credentials })
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    policy(parse(cx, n)?)
}

impl Proxy {
    /// The proxy for this call, with its credentials as a header value.
    pub(crate) fn via(&self, call: &mut Call) -> Result<ProxyVia, EvalError> {
        let authorization = match &self.credentials {
            None => None,
            Some((user, password)) => {
                use base64::Engine;
                let pair = format!("{}:{}", call.text(user)?, call.text(password)?);
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
        };
        Ok(ProxyVia {
            url: self.url.clone(),
            authorization,
        })
    }
}

impl Behaviour for Proxy {
    fn name(&self) -> &'static str {
        KIND.element
    }
    fn facts(&self) -> Facts {
        match &self.credentials {
            Some((u, p)) => Facts::reading([u, p]),
            None => Facts::default(),
        }
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let via = or_fail!(call, step, self.via(call));
        call.st.req.proxy = Some(via);
        Flow::Continue
    }
}
