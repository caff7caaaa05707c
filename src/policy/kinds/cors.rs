//! `cors`: answers preflight requests and adds the Access-Control-* headers to allowed
//! cross-origin calls.
//! Must not touch: the body of a call that is not a preflight.

use roxmltree::Node;

use super::{policy, Compiled, Kind, INBOUND};
use crate::http::forward::HeaderEdits;
use crate::policy::call::{Behaviour, Call, Facts, Flow, ResponseEdits};
use crate::policy::parse::{
    attr, boolean, element_text, elements, no_attributes, number, only_children, Cx, R,
};
use crate::policy::request::RequestView;
use crate::policy::Step;

pub const KIND: Kind = Kind {
    element: "cors",
    sections: INBOUND,
    children: true,
    compile,
};

#[derive(Debug, Clone)]
pub struct Cors {
    pub allow_credentials: bool,
    pub terminate_unmatched: bool,
    /// Empty with `any_origin` = `*`.
    pub origins: Vec<String>,
    pub any_origin: bool,
    pub methods: Vec<String>,
    pub any_method: bool,
    pub headers: Vec<String>,
    pub any_header: bool,
    pub expose: Vec<String>,
    pub max_age: Option<u64>,
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
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
    policy(c)
}

impl Behaviour for Cors {
    fn name(&self) -> &'static str {
        "cors"
    }
    fn facts(&self) -> Facts {
        Facts {
            reads_request: true,
            ..Facts::default()
        }
    }
    fn run(&self, _step: &Step, call: &mut Call) -> Flow {
        let req = call.host.request();
        let Some(origin) = req.headers.get("origin") else {
            return Flow::Continue;
        };
        let origin_ok =
            self.any_origin || self.origins.iter().any(|o| o.eq_ignore_ascii_case(&origin));
        let preflight =
            req.method == "OPTIONS" && req.headers.get("access-control-request-method").is_some();
        if preflight {
            return self.preflight(req, &origin, origin_ok, &mut call.st.resp);
        }
        if origin_ok {
            let h = &mut call.st.resp.headers;
            self.allow(&origin, h);
            if !self.expose.is_empty() {
                h.set(
                    "Access-Control-Expose-Headers",
                    Some(vec![self.expose.join(",")]),
                );
            }
            if !self.any_origin {
                h.set("Vary", Some(vec!["Origin".into()]));
            }
        }
        Flow::Continue
    }
}

impl Cors {
    /// The answer to a preflight request (or none, when unmatched and not terminated).
    fn preflight(
        &self,
        req: &RequestView,
        origin: &str,
        origin_ok: bool,
        resp: &mut ResponseEdits,
    ) -> Flow {
        let method = req
            .headers
            .get("access-control-request-method")
            .unwrap_or_default();
        let method_ok = self.any_method
            || self.methods.is_empty() && method == "GET"
            || self.methods.iter().any(|m| m.eq_ignore_ascii_case(&method));
        let wanted = req
            .headers
            .get("access-control-request-headers")
            .unwrap_or_default();
        let headers_ok = self.any_header
            || wanted
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .all(|h| self.headers.iter().any(|a| a.eq_ignore_ascii_case(h)));
        let matched = origin_ok && method_ok && headers_ok;
        if !matched && !self.terminate_unmatched {
            return Flow::Continue;
        }
        *resp = ResponseEdits {
            status: Some(200),
            body: Some(Vec::new()),
            ..ResponseEdits::default()
        };
        if !matched {
            return Flow::Respond;
        }
        let h = &mut resp.headers;
        self.allow(origin, h);
        let methods = if self.any_method {
            method.into_owned()
        } else if self.methods.is_empty() {
            "GET".into()
        } else {
            self.methods.join(",")
        };
        h.set("Access-Control-Allow-Methods", Some(vec![methods]));
        if !wanted.is_empty() {
            let headers = if self.any_header {
                wanted.into_owned()
            } else {
                self.headers.join(",")
            };
            h.set("Access-Control-Allow-Headers", Some(vec![headers]));
        }
        if let Some(age) = self.max_age {
            h.set("Access-Control-Max-Age", Some(vec![age.to_string()]));
        }
        if !self.any_origin {
            h.set("Vary", Some(vec!["Origin".into()]));
        }
        Flow::Respond
    }

    /// Access-Control-Allow-Origin (and -Credentials) for an allowed origin.
    fn allow(&self, origin: &str, h: &mut HeaderEdits) {
        let value = if self.any_origin {
            "*".to_string()
        } else {
            origin.to_string()
        };
        h.set("Access-Control-Allow-Origin", Some(vec![value]));
        if self.allow_credentials {
            h.set(
                "Access-Control-Allow-Credentials",
                Some(vec!["true".into()]),
            );
        }
    }
}
