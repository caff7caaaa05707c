//! `include-fragment`: a policy fragment's policies, compiled where the include stands
//! (same section, names, backends and counters) and run in order, as APIM inserts the
//! fragment as-is. The fragment is the config document's `fragments` entry.
//! Must not touch: the fragment's text after compilation, other documents.

use roxmltree::Node;

use super::{policy, Compiled, Kind, ALL};
use crate::policy::call::{Behaviour, Call, Facts, Flow};
use crate::policy::parse::{fragment_steps, no_attributes, required, Cx, R};
use crate::policy::Step;

pub const KIND: Kind = Kind {
    element: "include-fragment",
    sections: ALL,
    children: false,
    compile,
};

#[derive(Debug, Clone)]
pub struct IncludeFragment {
    pub id: String,
    pub steps: Vec<Step>,
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["fragment-id"])?;
    let id = required(cx, n, "fragment-id")?.trim().to_string();
    if id.starts_with('@') {
        return Err(cx.err(
            n,
            "<include-fragment>: fragment-id is a name, not an expression",
        ));
    }
    let steps = fragment_steps(cx, n, &id)?;
    policy(IncludeFragment { id, steps })
}

impl Behaviour for IncludeFragment {
    fn name(&self) -> &'static str {
        "include-fragment"
    }
    fn facts(&self) -> Facts {
        Facts::of(&self.steps)
    }
    fn run(&self, _step: &Step, call: &mut Call) -> Flow {
        call.run(&self.steps)
    }
}
