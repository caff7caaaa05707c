//! `set-body`: replaces the request body (inbound, backend) or the response body
//! (outbound, on-error) with a literal, an expression's value, or a Liquid template
//! (`template="liquid"`) rendered over the body, `context` and the template's own
//! variables. The gateway reads a body it replaces or renders from first.
//! Must not touch: headers (the connection frames the new body).

use roxmltree::Node;

use super::{policy, Compiled, Kind, ALL};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow, Phase};
use crate::policy::expr::liquid::{self, Template};
use crate::policy::expr::EvalError;
use crate::policy::parse::{attr, element_text, no_attributes, text_value, Cx, R};
use crate::policy::{Section, Step, Text};

pub const KIND: Kind = Kind {
    element: "set-body",
    sections: ALL,
    // markup inside is the body's text (a SOAP envelope in a Liquid template)
    children: true,
    compile,
};

#[derive(Debug, Clone)]
pub enum SetBody {
    Value(Text),
    Liquid(Template),
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    policy(body(cx, n)?)
}

/// The body's text: the element's text, or, when it holds markup (a SOAP envelope in a
/// Liquid template), its inner XML as written.
pub(crate) fn content<'a>(n: Node<'a, '_>) -> &'a str {
    if !n.children().any(|c| c.is_element()) {
        return element_text(n);
    }
    let source = n.document().input_text();
    let range = n.range();
    let whole = &source[range.clone()];
    let start = whole.find('>').map_or(whole.len(), |i| i + 1);
    let end = whole.rfind("</").unwrap_or(whole.len()).max(start);
    &whole[start..end]
}

/// A `<set-body>` element (also inside return-response): a value or a Liquid template.
pub(crate) fn body(cx: &mut Cx, n: Node) -> R<SetBody> {
    no_attributes(cx, n, &["template", "xsi-nil"])?;
    // xsi-nil says how an XML element marked nil reads in a template: Liquid here reads
    // JSON bodies (and XML as text), so both values are accepted and mean the same
    if let Some(v) = attr(n, "xsi-nil").filter(|v| !matches!(*v, "blank" | "null")) {
        return Err(cx.err(
            n,
            format!("<set-body>: xsi-nil is \"blank\" or \"null\", not \"{v}\""),
        ));
    }
    let content = content(n);
    match attr(n, "template") {
        None | Some("none") => Ok(SetBody::Value(text_value(cx, n, content)?)),
        Some("liquid") => {
            let response = matches!(cx.section, Section::Outbound | Section::OnError);
            let t = liquid::compile(content, response)
                .map_err(|e| cx.err(n, format!("<set-body>: Liquid {e}")))?;
            Ok(SetBody::Liquid(t))
        }
        Some(other) => Err(cx.err(n, format!("<set-body>: template \"{other}\" is not liquid"))),
    }
}

impl SetBody {
    /// The body's text for this call.
    pub(crate) fn render(&self, call: &mut Call) -> Result<String, EvalError> {
        match self {
            SetBody::Value(t) => call.text(t),
            SetBody::Liquid(t) => call.liquid(t),
        }
    }
}

impl Behaviour for SetBody {
    fn name(&self) -> &'static str {
        "set-body"
    }
    fn facts(&self) -> Facts {
        match self {
            SetBody::Value(t) => Facts {
                sets_body: true,
                ..Facts::reading([t])
            },
            SetBody::Liquid(_) => Facts {
                sets_body: true,
                needs_body: true,
                reads_request: true,
                suspends: false,
                copies_request: false,
            },
        }
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let body = or_fail!(call, step, self.render(call)).into_bytes();
        let slot = match call.phase {
            Phase::Request => &mut call.st.req.body,
            Phase::Response => &mut call.st.resp.body,
        };
        // the body it replaces goes back to the thread's spares
        if let Some(old) = slot.replace(body) {
            crate::http::spare::give(old);
        }
        Flow::Continue
    }
}
