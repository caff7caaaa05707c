//! `cors`: answers preflight requests and adds the Access-Control-* headers to allowed
//! cross-origin calls.
//! Must not touch: the body of a call that is not a preflight.

use roxmltree::Node;

use super::{policy, Compiled, Kind, INBOUND};
use crate::http::forward::HeaderEdits;
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow, ResponseEdits};
use crate::policy::expr::EvalError;
use crate::policy::parse::{
    element_text, elements, flag, no_attributes, only_children, setting, text_value, whole, Cx,
    BOOLEAN, R, WHOLE,
};
use crate::policy::request::RequestView;
use crate::policy::{Setting, Step, Text};

pub const KIND: Kind = Kind {
    element: "cors",
    sections: INBOUND,
    children: true,
    compile,
};

#[derive(Debug, Clone)]
pub struct Cors {
    pub allow_credentials: Setting<bool>,
    pub terminate_unmatched: Setting<bool>,
    /// Empty with `any_origin` = `*`.
    pub origins: Vec<String>,
    pub any_origin: bool,
    /// Literals or expressions (APIM allows them here); `*` is any method.
    pub methods: Vec<Text>,
    pub headers: Vec<String>,
    pub any_header: bool,
    pub expose: Vec<String>,
    pub max_age: Option<Setting<u64>>,
}

/// What the expressions of a cors policy gave for one call.
struct Terms {
    allow_credentials: bool,
    terminate_unmatched: bool,
    methods: Vec<String>,
    any_method: bool,
    max_age: Option<u64>,
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
        allow_credentials: setting(cx, n, "allow-credentials", Some(false), flag, BOOLEAN)?,
        terminate_unmatched: setting(
            cx,
            n,
            "terminate-unmatched-request",
            Some(true),
            flag,
            BOOLEAN,
        )?,
        origins: Vec::new(),
        any_origin: false,
        methods: Vec::new(),
        headers: Vec::new(),
        any_header: false,
        expose: Vec::new(),
        max_age: None,
    };
    for el in elements(n) {
        if el.has_tag_name("allowed-methods") {
            no_attributes(cx, el, &["preflight-result-max-age"])?;
            only_children(cx, el, &["method"])?;
            if el.attribute("preflight-result-max-age").is_some() {
                let age = setting(cx, el, "preflight-result-max-age", None, whole, WHOLE)?;
                c.max_age = Some(age);
            }
            for m in elements(el) {
                c.methods.push(text_value(cx, m, element_text(m).trim())?);
            }
            continue;
        }
        let (child, list, any) = match el.tag_name().name() {
            "allowed-origins" => ("origin", &mut c.origins, &mut c.any_origin),
            "allowed-headers" => ("header", &mut c.headers, &mut c.any_header),
            _ => ("header", &mut c.expose, &mut false),
        };
        no_attributes(cx, el, &[])?;
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
    if c.any_origin && matches!(c.allow_credentials, Setting::Fixed(true)) {
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
        let settings = [
            self.allow_credentials.text(),
            self.terminate_unmatched.text(),
        ];
        let age = self.max_age.as_ref().and_then(Setting::text);
        let texts = settings
            .into_iter()
            .flatten()
            .chain(age)
            .chain(&self.methods);
        Facts {
            reads_request: true,
            ..Facts::reading(texts)
        }
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        if call.host.request().headers.get("origin").is_none() {
            return Flow::Continue;
        }
        let terms = or_fail!(call, step, self.terms(call));
        let req = call.host.request();
        let Some(origin) = req.headers.get("origin") else {
            return Flow::Continue;
        };
        let origin_ok =
            self.any_origin || self.origins.iter().any(|o| o.eq_ignore_ascii_case(&origin));
        let preflight =
            req.method == "OPTIONS" && req.headers.get("access-control-request-method").is_some();
        if preflight {
            return self.preflight(req, &origin, origin_ok, &terms, &mut call.st.resp);
        }
        if origin_ok {
            let h = &mut call.st.resp.headers;
            self.allow(&origin, &terms, h);
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
    /// The values of its expressions for this call.
    fn terms(&self, call: &mut Call) -> Result<Terms, EvalError> {
        let methods: Vec<String> = call
            .texts(&self.methods)?
            .into_iter()
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect();
        let max_age = match &self.max_age {
            Some(a) => Some(call.setting(a)?),
            None => None,
        };
        Ok(Terms {
            allow_credentials: call.setting(&self.allow_credentials)?,
            terminate_unmatched: call.setting(&self.terminate_unmatched)?,
            any_method: methods.iter().any(|m| m == "*"),
            methods,
            max_age,
        })
    }

    /// The answer to a preflight request (or none, when unmatched and not terminated).
    fn preflight(
        &self,
        req: &RequestView,
        origin: &str,
        origin_ok: bool,
        terms: &Terms,
        resp: &mut ResponseEdits,
    ) -> Flow {
        let method = req
            .headers
            .get("access-control-request-method")
            .unwrap_or_default();
        // without <allowed-methods>, GET and POST
        let method_ok = terms.any_method
            || terms.methods.is_empty() && (method == "GET" || method == "POST")
            || terms
                .methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(&method));
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
        if !matched && !terms.terminate_unmatched {
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
        self.allow(origin, terms, h);
        let methods = if terms.any_method {
            method.into_owned()
        } else if terms.methods.is_empty() {
            "GET,POST".into()
        } else {
            terms.methods.join(",")
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
        if let Some(age) = terms.max_age {
            h.set("Access-Control-Max-Age", Some(vec![age.to_string()]));
        }
        if !self.any_origin {
            h.set("Vary", Some(vec!["Origin".into()]));
        }
        Flow::Respond
    }

    /// Access-Control-Allow-Origin (and -Credentials) for an allowed origin.
    fn allow(&self, origin: &str, terms: &Terms, h: &mut HeaderEdits) {
        let value = if self.any_origin {
            "*".to_string()
        } else {
            origin.to_string()
        };
        h.set("Access-Control-Allow-Origin", Some(vec![value]));
        if terms.allow_credentials && !self.any_origin {
            h.set(
                "Access-Control-Allow-Credentials",
                Some(vec!["true".into()]),
            );
        }
    }
}
