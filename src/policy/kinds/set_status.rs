//! `set-status`: the response's status code and reason phrase.
//! Must not touch: headers, the body.

use roxmltree::Node;

use super::{policy, Compiled, Kind, ALL};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow};
use crate::policy::parse::{attr, no_attributes, required, text_value, Cx, R};
use crate::policy::{Step, Text};

pub const KIND: Kind = Kind {
    element: "set-status",
    sections: ALL,
    children: false,
    compile,
};

#[derive(Debug, Clone)]
pub struct SetStatus {
    pub code: Text,
    pub reason: Text,
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["code", "reason"])?;
    let (code, reason) = status_attributes(cx, n)?;
    policy(SetStatus { code, reason })
}

/// `code` (a literal must be 100..599) and `reason` of set-status, also inside
/// return-response.
pub fn status_attributes(cx: &Cx, n: Node) -> R<(Text, Text)> {
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

impl Behaviour for SetStatus {
    fn name(&self) -> &'static str {
        "set-status"
    }
    fn facts(&self) -> Facts {
        Facts::reading([&self.code, &self.reason])
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let c = or_fail!(call, step, call.text(&self.code));
        let r = or_fail!(call, step, call.text(&self.reason));
        match c.trim().parse::<u16>() {
            Ok(c) if (100..=599).contains(&c) => {
                call.st.resp.status = Some(c);
                call.st.resp.reason = Some(r);
                Flow::Continue
            }
            _ => {
                call.st.answer(500, "Internal server error");
                call.st.fail(
                    step,
                    "set-status",
                    "ExpressionValueEvaluationFailure",
                    "set-status code is not 100..599.",
                )
            }
        }
    }
}
