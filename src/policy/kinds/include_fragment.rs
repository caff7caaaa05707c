//! `include-fragment`: a policy fragment's policies, compiled where the include stands
//! (same section, names, backends and counters) and run in order, as APIM inserts the
//! fragment as-is. The fragment is the config document's `fragments` entry.
//! Must not touch: the fragment's text after compilation, other documents.

use roxmltree::Node;

use super::{policy, Compiled, Kind, ALL};
use crate::policy::call::{Behaviour, Call, Facts, Flow};
use crate::policy::parse::{fragment_items, fragment_steps, no_attributes, required, Cx, R};
use crate::policy::{Item, Step};

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

/// Whether `<include-fragment>` `n` includes a fragment that holds forward-request.
pub(crate) fn forwards(cx: &Cx, n: Node) -> bool {
    n.has_tag_name("include-fragment")
        && n.attribute("fragment-id")
            .and_then(|id| (cx.ctx.fragment)(id.trim()))
            .is_some_and(|text| text.contains("forward-request"))
}

/// A fragment included directly in `<backend>` that forwards the request: its
/// policies become the section's items, forward-request (or the retry around it)
/// among them.
pub(crate) fn backend_items(cx: &mut Cx, n: Node) -> R<Vec<Item>> {
    no_attributes(cx, n, &["fragment-id"])?;
    let id = required(cx, n, "fragment-id")?.trim().to_string();
    fragment_items(cx, n, &id, true)
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
