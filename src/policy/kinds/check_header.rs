//! `check-header`: refuses a request whose header is missing or has none of the listed
//! values, with the configured status and message.
//! Must not touch: anything but the request's headers.

use std::borrow::Cow;

use roxmltree::Node;

use super::{policy, Compiled, Kind, INBOUND};
use crate::policy::call::{Behaviour, Call, Facts, Flow};
use crate::policy::parse::{boolean, no_attributes, number, required, values, Cx, R};
use crate::policy::{Step, Text};

pub const KIND: Kind = Kind {
    element: "check-header",
    sections: INBOUND,
    children: true,
    compile,
};

#[derive(Debug, Clone)]
pub struct CheckHeader {
    pub name: String,
    pub failed_code: u16,
    pub failed_message: String,
    pub ignore_case: bool,
    pub values: Vec<String>,
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(
        cx,
        n,
        &[
            "name",
            "failed-check-httpcode",
            "failed-check-error-message",
            "ignore-case",
        ],
    )?;
    let header = required(cx, n, "name")?;
    let code = number(cx, n, "failed-check-httpcode", None)?;
    if !(200..=599).contains(&code) {
        return Err(cx.err(n, "<check-header>: failed-check-httpcode must be 200..599"));
    }
    let vals = values(cx, n)?
        .into_iter()
        .map(|t| match t {
            Text::Lit(s) => Ok(s),
            Text::Expr(_) => Err(cx.err(n, "<check-header>: values must be literals")),
        })
        .collect::<R<Vec<String>>>()?;
    policy(CheckHeader {
        name: header.to_string(),
        failed_code: code as u16,
        failed_message: required(cx, n, "failed-check-error-message")?.to_string(),
        ignore_case: boolean(cx, n, "ignore-case", false)?,
        values: vals,
    })
}

impl Behaviour for CheckHeader {
    fn name(&self) -> &'static str {
        "check-header"
    }
    fn facts(&self) -> Facts {
        Facts::default()
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let st = &mut *call.st;
        let value = match st.req.headers.get(&self.name) {
            Some(Some(v)) => Some(Cow::Owned(v.join(", "))),
            Some(None) => None,
            None => call.host.request().headers.get(&self.name),
        };
        let Some(value) = value else {
            st.answer(self.failed_code, &self.failed_message);
            return st.fail(step, "check-header", "HeaderNotFound", &self.failed_message);
        };
        let ok = self.values.is_empty()
            || self.values.iter().any(|v| {
                value.split(',').map(str::trim).any(|have| {
                    if self.ignore_case {
                        have.eq_ignore_ascii_case(v)
                    } else {
                        have == v
                    }
                })
            });
        if !ok {
            st.answer(self.failed_code, &self.failed_message);
            return st.fail(
                step,
                "check-header",
                "HeaderValueNotAllowed",
                &self.failed_message,
            );
        }
        Flow::Continue
    }
}
