//! `choose`: the steps of the first `<when>` whose condition holds, else those of
//! `<otherwise>`.
//! Must not touch: anything itself; its branches do.

use roxmltree::Node;

use super::{policy, Compiled, Kind, ALL};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow};
use crate::policy::expr::Expr;
use crate::policy::parse::{
    elements, expr_value, nested_steps, no_attributes, only_children, required, Cx, R,
};
use crate::policy::Step;

pub const KIND: Kind = Kind {
    element: "choose",
    sections: ALL,
    children: true,
    compile,
};

#[derive(Debug, Clone)]
pub struct Choose {
    pub whens: Vec<(Expr, Vec<Step>)>,
    pub otherwise: Vec<Step>,
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &[])?;
    only_children(cx, n, &["when", "otherwise"])?;
    let mut whens = Vec::new();
    let mut otherwise = Vec::new();
    let mut seen_otherwise = false;
    for el in elements(n) {
        if el.has_tag_name("when") {
            if seen_otherwise {
                return Err(cx.err(el, "<when> after <otherwise>"));
            }
            no_attributes(cx, el, &["condition"])?;
            let c = expr_value(cx, el, "condition", required(cx, el, "condition")?)?;
            whens.push((c, nested_steps(cx, el)?));
        } else {
            if seen_otherwise {
                return Err(cx.err(el, "<otherwise> appears twice"));
            }
            seen_otherwise = true;
            no_attributes(cx, el, &[])?;
            otherwise = nested_steps(cx, el)?;
        }
    }
    if whens.is_empty() {
        return Err(cx.err(n, "<choose>: at least one <when> is required"));
    }
    policy(Choose { whens, otherwise })
}

impl Choose {
    /// The steps of `<when>` number `i`, or of `<otherwise>` past the last.
    fn branch(&self, i: usize) -> &[Step] {
        self.whens
            .get(i)
            .map_or(&self.otherwise, |(_, steps)| steps)
    }
}

impl Behaviour for Choose {
    fn name(&self) -> &'static str {
        "choose"
    }
    fn facts(&self) -> Facts {
        self.whens
            .iter()
            .fold(Facts::of(&self.otherwise), |f, (c, s)| {
                f | Facts::of(s) | Facts::expr(c)
            })
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        if call.resuming() {
            // back inside the branch a send-request suspended in: no condition runs again
            let branch = call.resumed_branch().unwrap_or(self.whens.len());
            return call.run_branch(branch, self.branch(branch));
        }
        for (i, (condition, steps)) in self.whens.iter().enumerate() {
            if or_fail!(call, step, call.truth(condition)) {
                return call.run_branch(i, steps);
            }
        }
        call.run_branch(self.whens.len(), &self.otherwise)
    }
}
