//! `wait`: runs its children (send-request, cache-lookup-value, choose) so that their
//! requests go out together, then suspends the call until all of them (`for="all"`,
//! the default) or the first (`for="any"`) have an outcome.
//! Must not touch: the requests themselves (send-request describes them, the loop
//! sends them).

use roxmltree::Node;

use super::{policy, Compiled, Kind, WAITING};
use crate::policy::call::{Behaviour, Call, Facts, Flow};
use crate::policy::parse::{attr, elements, nested_steps, no_attributes, Cx, R};
use crate::policy::Step;

pub const KIND: Kind = Kind {
    element: "wait",
    sections: WAITING,
    children: true,
    compile,
};

#[derive(Debug, Clone)]
pub struct Wait {
    pub any: bool,
    pub steps: Vec<Step>,
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["for"])?;
    let any = match attr(n, "for").map(str::trim) {
        None | Some("all") => false,
        Some("any") => true,
        Some(other) => {
            return Err(cx.err(n, format!("<wait>: for \"{other}\": expected all or any")))
        }
    };
    for el in elements(n) {
        let name = el.tag_name().name();
        if !matches!(name, "send-request" | "cache-lookup-value" | "choose") {
            return Err(cx.err(
                el,
                format!("<wait>: <{name}> is not allowed here (send-request, cache-lookup-value and choose are)"),
            ));
        }
    }
    policy(Wait {
        any,
        steps: nested_steps(cx, n)?,
    })
}

impl Behaviour for Wait {
    fn name(&self) -> &'static str {
        "wait"
    }
    fn facts(&self) -> Facts {
        Facts::of(&self.steps)
    }
    fn run(&self, _step: &Step, call: &mut Call) -> Flow {
        call.st.collecting = true;
        let flow = call.run(&self.steps);
        call.st.collecting = false;
        if flow != Flow::Continue {
            call.st.outgoing.clear();
            return flow;
        }
        if call.st.outgoing.is_empty() {
            return Flow::Continue;
        }
        call.st.wait_any = self.any;
        Flow::Suspend
    }
}
