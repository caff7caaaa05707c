//! `rewrite-uri`: a new path (and query) for the backend from a template whose
//! `{name}` placeholders take the operation's template parameters or query values;
//! unmatched query parameters are kept unless `copy-unmatched-params="false"`.
//! Must not touch: headers, the body.

use roxmltree::Node;

use super::{policy, Compiled, Kind, INBOUND};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow, Host, State};
use crate::policy::parse::{boolean, no_attributes, required, text_value, Cx, R};
use crate::policy::request::{encode, parse_query, query_value};
use crate::policy::{Step, Text};

pub const KIND: Kind = Kind {
    element: "rewrite-uri",
    sections: INBOUND,
    children: false,
    compile,
};

#[derive(Debug, Clone)]
pub struct RewriteUri {
    pub template: Text,
    pub copy_unmatched: bool,
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["template", "copy-unmatched-params"])?;
    let t = required(cx, n, "template")?;
    let template = text_value(cx, n, t)?;
    // a relative template (`subscriptions/{id}/…`, as in Microsoft's Data Factory
    // sample) is a path under the backend's base URL, like one starting with '/'
    if let Text::Lit(l) = &template {
        if l.contains("://") {
            return Err(cx.err(
                n,
                "<rewrite-uri>: template is a path and query; set-backend-service changes the host",
            ));
        }
    }
    policy(RewriteUri {
        template,
        copy_unmatched: boolean(cx, n, "copy-unmatched-params", true)?,
    })
}

/// `text` with each `{name}` replaced by its value; the names used go to `used`.
fn fill(text: &str, used: &mut Vec<String>, host: &dyn Host, st: &State) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &rest[open + 1..open + close];
        let value = host
            .template_param(name)
            .map(|v| v.to_string())
            .or_else(|| match st.req.query.as_ref() {
                Some(q) => q.iter().find(|(k, _)| k == name).map(|(_, v)| encode(v)),
                None => query_value(host.request().query, name).map(str::to_string),
            })
            .unwrap_or_default();
        used.push(name.to_string());
        out.push_str(&value);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

impl Behaviour for RewriteUri {
    fn name(&self) -> &'static str {
        "rewrite-uri"
    }
    fn facts(&self) -> Facts {
        Facts::reading([&self.template])
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let t = or_fail!(call, step, call.text(&self.template));
        let (path_t, query_t) = match t.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (t, None),
        };
        let mut used = Vec::new();
        let new_path = fill(&path_t, &mut used, call.host, call.st);
        let mut query: Vec<(String, String)> = match &query_t {
            Some(q) => {
                let filled = fill(q, &mut used, call.host, call.st);
                parse_query(Some(filled.as_str()))
            }
            None => Vec::new(),
        };
        if self.copy_unmatched {
            let original = call
                .st
                .req
                .query
                .clone()
                .unwrap_or_else(|| parse_query(call.host.request().query));
            for (k, v) in original {
                let matched = used.contains(&k) || call.host.template_query_key(&k);
                if !matched && !query.iter().any(|(qk, _)| *qk == k) {
                    query.push((k, v));
                }
            }
        }
        call.st.req.rest = Some(if new_path.starts_with('/') {
            new_path
        } else {
            format!("/{new_path}")
        });
        call.st.req.query = Some(query);
        Flow::Continue
    }
}
