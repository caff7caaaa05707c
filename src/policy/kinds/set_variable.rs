//! `set-variable`: a value in `context.Variables` (a literal string, or an expression's
//! typed value).
//! Must not touch: the request or response.

use roxmltree::Node;

use super::{policy, Compiled, Kind, ALL};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow};
use crate::policy::parse::{no_attributes, required, text_value, Cx, R};
use crate::policy::{Step, Text};

pub const KIND: Kind = Kind {
    element: "set-variable",
    sections: ALL,
    children: false,
    compile,
};

#[derive(Debug, Clone)]
pub struct SetVariable {
    pub name: String,
    pub value: Text,
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["name", "value"])?;
    policy(SetVariable {
        name: required(cx, n, "name")?.to_string(),
        value: text_value(cx, n, required(cx, n, "value")?)?,
    })
}

impl Behaviour for SetVariable {
    fn name(&self) -> &'static str {
        "set-variable"
    }
    fn facts(&self) -> Facts {
        Facts::reading([&self.value])
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let v = or_fail!(call, step, call.typed(&self.value));
        call.st.set_var(&self.name, v);
        Flow::Continue
    }
}
