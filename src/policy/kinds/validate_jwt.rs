//! `validate-jwt`: takes the token from a header, a query parameter or an expression,
//! checks its signature, lifetime, issuer, audiences and claims (`crate::policy::jwt`),
//! and refuses the call with the configured status when it fails. A verified token is
//! remembered per policy (`Counters::jwt_cached`) until it expires.
//! `validate-azure-ad-token` is the same check with the tenant's OpenID configuration
//! (at `net.azure-ad.authority`), its issuers and the client application ids.
//! Must not touch: the token in any log line.

use std::borrow::Cow;
use std::sync::Arc;

use roxmltree::Node;

use super::{policy, Compiled, Kind, INBOUND};
use crate::policy::call::{Behaviour, Call, Facts, Flow, State};
use crate::policy::expr::jwt_value;
use crate::policy::jwt::{self, TokenSource, ValidateJwt};
use crate::policy::keyring::KeySet;
use crate::policy::parse::{Cx, R};
use crate::policy::request::{decode, query_value};
use crate::policy::{Step, Text};

pub const KIND: Kind = Kind {
    element: "validate-jwt",
    sections: INBOUND,
    children: true,
    compile,
};

pub const AZURE_AD: Kind = Kind {
    element: "validate-azure-ad-token",
    sections: INBOUND,
    children: true,
    compile: compile_azure_ad,
};

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    let v = jwt::parse_policy(n).map_err(|(node, msg)| cx.err(node.unwrap_or(n), msg))?;
    finish(cx, v)
}

fn compile_azure_ad(cx: &mut Cx, n: Node) -> R<Compiled> {
    let v = azure_ad(n).map_err(|(node, msg)| cx.err(node.unwrap_or(n), msg))?;
    finish(cx, v)
}

/// validate-azure-ad-token as a validate-jwt: the tenant's keys and issuers, its
/// client (and backend) application ids.
fn azure_ad<'a, 'i>(n: Node<'a, 'i>) -> Result<ValidateJwt, jwt::PErr<'a, 'i>> {
    const ATTRS: &[&str] = &[
        "tenant-id",
        "header-name",
        "query-parameter-name",
        "token-value",
        "failed-validation-httpcode",
        "failed-validation-error-message",
        "output-token-variable-name",
    ];
    let here = |m: &str| (Some(n), format!("<validate-azure-ad-token>: {m}"));
    if let Some(a) = n.attributes().find(|a| !ATTRS.contains(&a.name())) {
        return Err(here(&format!("attribute '{}' is not supported", a.name())));
    }
    let tenant = n.attribute("tenant-id").map(str::trim).unwrap_or("");
    if tenant.is_empty()
        || !tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    {
        return Err(here("tenant-id must be a tenant id or domain"));
    }
    // the rest is validate-jwt's: the token's place, the status and message, claims
    let mut v = jwt::parse_policy_with(n, &["tenant-id"], true)?;
    v.element = "validate-azure-ad-token";
    v.openid = vec![format!(
        "{}/{tenant}/v2.0/.well-known/openid-configuration",
        jwt::azure_ad_authority()
    )];
    // v1 tokens name the tenant another way
    v.issuers.push(format!("https://sts.windows.net/{tenant}/"));
    for el in n.children().filter(|c| c.is_element()) {
        match el.tag_name().name() {
            "client-application-ids" | "backend-application-ids" => {
                for c in jwt::listed(el, "application-id")? {
                    let id = c.text().unwrap_or("").trim().to_string();
                    if el.has_tag_name("client-application-ids") {
                        v.client_apps.push(id);
                    } else {
                        v.audiences.push(Text::Lit(format!("api://{id}")));
                        v.audiences.push(Text::Lit(id));
                    }
                }
            }
            "audiences" | "required-claims" => {}
            other => {
                return Err((
                    Some(el),
                    format!("<{other}> is not supported in <validate-azure-ad-token>"),
                ))
            }
        }
    }
    if v.client_apps.is_empty() {
        return Err(here(
            "<client-application-ids> must name at least one application-id",
        ));
    }
    Ok(v)
}

fn finish(cx: &mut Cx, mut v: ValidateJwt) -> R<Compiled> {
    if let TokenSource::Query(q) = &v.source {
        cx.ctx.uses.token_query_params.insert(q.clone());
    }
    cx.ctx.uses.openid.extend(v.openid.iter().cloned());
    v.id = cx.counter();
    policy(v)
}

impl ValidateJwt {
    /// The token as presented (before the scheme is taken off), if any.
    fn presented(&self, step: &Step, call: &mut Call) -> Result<Option<String>, Flow> {
        let req = call.host.request();
        Ok(match &self.source {
            TokenSource::Header(h) => match call.st.req.headers.get(h) {
                Some(Some(vals)) => vals.first().cloned(),
                Some(None) => None,
                None => req.headers.get(h).map(Cow::into_owned),
            },
            TokenSource::Query(q) => query_value(req.query, q).map(|t| decode(t).into_owned()),
            TokenSource::Value(t) => match call.text(t) {
                Ok(s) => (!s.is_empty()).then_some(s),
                Err(e) => return Err(call.st.eval_failed(step, e)),
            },
        })
    }

    /// Asks the agent to fetch the OpenID configurations again (at most once every ten seconds
    /// each), logging why.
    fn ask_for_keys(&self, call: &mut Call, why: &str) {
        for url in &self.openid {
            if call.counters.keys.want_refresh(url, call.now_ms) {
                log::warn!("validate-jwt: the signing keys of {url} {why}; fetching them again");
            }
        }
    }

    fn refuse(&self, step: &Step, st: &mut State, reason: &str, detail: &str) -> Flow {
        let default = if reason == "TokenNotPresent" {
            "JWT not present."
        } else {
            "Invalid JWT."
        };
        let msg = self.failed_message.as_deref().unwrap_or(default);
        st.answer(self.failed_code, msg);
        st.fail(step, self.element, reason, detail)
    }
}

impl Behaviour for ValidateJwt {
    fn name(&self) -> &'static str {
        self.element
    }
    fn facts(&self) -> Facts {
        Facts {
            reads_request: true,
            ..Facts::default()
        }
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let presented = match self.presented(step, call) {
            Ok(p) => p,
            Err(flow) => return flow,
        };
        let Some(raw) = presented.filter(|r| !r.trim().is_empty()) else {
            return self.refuse(step, call.st, "TokenNotPresent", "JWT not present.");
        };
        let token = match (&self.source, &self.require_scheme) {
            (TokenSource::Header(_), Some(scheme)) => match raw.split_once(' ') {
                Some((s, t)) if s.eq_ignore_ascii_case(scheme) => t.trim().to_string(),
                _ => {
                    return self.refuse(
                        step,
                        call.st,
                        "TokenSchemeNotAllowed",
                        "The authorization scheme is not allowed.",
                    )
                }
            },
            (TokenSource::Header(h), None) if h.eq_ignore_ascii_case("authorization") => {
                match raw.split_once(' ') {
                    Some((s, t)) if s.eq_ignore_ascii_case("bearer") => t.trim().to_string(),
                    _ => raw.trim().to_string(),
                }
            }
            _ => raw.trim().to_string(),
        };
        let cached = if self.computes_audiences() {
            None
        } else {
            call.counters.jwt_cached(self.id, &token)
        };
        let life = match cached {
            Some(l) => l,
            None => {
                let fetched: Vec<Arc<KeySet>> = self
                    .openid
                    .iter()
                    .filter_map(|url| call.counters.keys.get(url).cloned())
                    .collect();
                if fetched.is_empty() && self.keys.is_empty() {
                    self.ask_for_keys(call, "have not been fetched yet");
                    return self.refuse(
                        step,
                        call.st,
                        "TokenSignatureKeyNotFound",
                        "The signing keys of the OpenID configuration have not been fetched yet.",
                    );
                }
                let sets: Vec<&KeySet> = fetched.iter().map(|s| &**s).collect();
                let audiences = match call.texts(&self.audiences) {
                    Ok(a) => a,
                    Err(e) => return call.st.eval_failed(step, e),
                };
                match self.verify_with(&token, &sets, &audiences) {
                    Ok(l) => {
                        if !self.computes_audiences() {
                            call.counters.jwt_remember(self.id, &token, l, call.now_ms);
                        }
                        l
                    }
                    Err(e) => {
                        if e.reason == "TokenSignatureKeyNotFound" {
                            // a key the provider may have rotated in since the last fetch
                            self.ask_for_keys(call, "have no key the token names");
                        }
                        return self.refuse(step, call.st, e.reason, &e.message);
                    }
                }
            }
        };
        if let Err(e) = self.check_lifetime(life, call.now_ms / 1000) {
            return self.refuse(step, call.st, e.reason, &e.message);
        }
        if let Some(var) = &self.output_variable {
            call.st.set_var(var, jwt_value(&token));
        }
        Flow::Continue
    }
}
