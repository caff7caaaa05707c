//! `set-method`: a new method for the backend request.
//! Must not touch: headers, the body, the path.

use roxmltree::Node;

use super::{policy, Compiled, Kind, REQUEST};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow};
use crate::policy::parse::{element_text, no_attributes, text_value, Cx, R};
use crate::policy::{Step, Text};

pub const KIND: Kind = Kind {
    element: "set-method",
    sections: REQUEST,
    children: false,
    compile,
};

#[derive(Debug, Clone)]
pub struct SetMethod(pub Text);

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &[])?;
    let t = text_value(cx, n, element_text(n).trim())?;
    if let Text::Lit(m) = &t {
        if !is_method(m) {
            return Err(cx.err(
                n,
                "<set-method>: expected an upper-case method such as POST",
            ));
        }
    }
    policy(SetMethod(t))
}

fn is_method(m: &str) -> bool {
    !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase())
}

impl Behaviour for SetMethod {
    fn name(&self) -> &'static str {
        "set-method"
    }
    fn facts(&self) -> Facts {
        Facts::reading([&self.0])
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let m = or_fail!(call, step, call.text(&self.0));
        if !is_method(&m) {
            call.st.answer(500, "Internal server error");
            return call.st.fail(
                step,
                "set-method",
                "ExpressionValueEvaluationFailure",
                "set-method needs an upper-case method.",
            );
        }
        call.st.req.method = Some(m);
        Flow::Continue
    }
}
