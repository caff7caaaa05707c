//! `set-backend-service`: sends the request to a configured backend (`backend-id`), a
//! literal base URL (compiled into a backend), or a URL computed per request, which must
//! name an IP address or a configured backend (the loop resolves no names).
//! Must not touch: headers, the body.

use roxmltree::Node;

use super::{policy, Compiled, Kind, REQUEST};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow, Target};
use crate::policy::parse::{attr, no_attributes, text_value, Cx, ANY_BACKEND, R};
use crate::policy::{Step, Text};

pub const KIND: Kind = Kind {
    element: "set-backend-service",
    sections: REQUEST,
    children: false,
    compile,
};

#[derive(Debug, Clone)]
pub enum SetBackendService {
    /// Index into `Runtime::backends` (backend-id or a literal base-url).
    Backend(u32),
    /// An expression giving a URL.
    Url(Text),
    /// An expression giving a backend id.
    BackendId(Text),
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["base-url", "backend-id"])?;
    match (attr(n, "base-url"), attr(n, "backend-id")) {
        (Some(_), Some(_)) | (None, None) => Err(cx.err(
            n,
            "<set-backend-service>: exactly one of base-url and backend-id is required",
        )),
        (None, Some(id)) if id.trim_start().starts_with('@') => {
            // any backend may be named: a gateway gets them all
            cx.ctx.uses.backends.insert(ANY_BACKEND.to_string());
            policy(SetBackendService::BackendId(text_value(cx, n, id)?))
        }
        (None, Some(id)) => {
            cx.ctx.uses.backends.insert(id.to_string());
            let idx = (cx.ctx.backend_id)(id).ok_or_else(|| {
                cx.err(
                    n,
                    format!("<set-backend-service>: backend-id '{id}' is not in backends"),
                )
            })?;
            policy(SetBackendService::Backend(idx))
        }
        (Some(url), None) => match text_value(cx, n, url)? {
            Text::Lit(u) => {
                let idx = (cx.ctx.add_backend_url)(&u)
                    .map_err(|e| cx.err(n, format!("<set-backend-service>: base-url: {e}")))?;
                policy(SetBackendService::Backend(idx))
            }
            e => policy(SetBackendService::Url(e)),
        },
    }
}

impl Behaviour for SetBackendService {
    fn name(&self) -> &'static str {
        "set-backend-service"
    }
    fn facts(&self) -> Facts {
        match self {
            SetBackendService::Url(t) | SetBackendService::BackendId(t) => Facts::reading([t]),
            SetBackendService::Backend(_) => Facts::default(),
        }
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let url = match self {
            SetBackendService::Backend(i) => {
                call.st.req.target = Some(Target::Backend(*i));
                return Flow::Continue;
            }
            SetBackendService::Url(url) => or_fail!(call, step, call.text(url)),
            SetBackendService::BackendId(id) => {
                let id = or_fail!(call, step, call.text(id));
                let Some(t) = call.host.backend_named(id.trim()) else {
                    call.st.answer(500, "Internal server error");
                    let message = format!("Backend '{id}' is not defined in backends.");
                    return call
                        .st
                        .fail(step, "set-backend-service", "BackendNotFound", &message);
                };
                call.st.req.target = Some(t);
                return Flow::Continue;
            }
        };
        match call.host.target_of(&url) {
            Some(t) => {
                call.st.req.target = Some(t);
                Flow::Continue
            }
            None => {
                call.st.answer(500, "Internal server error");
                call.st.fail(
                    step,
                    "set-backend-service",
                    "BackendUrlNotResolvable",
                    "The base-url must be http:// with an IP address or the URL of a configured backend.",
                )
            }
        }
    }
}
