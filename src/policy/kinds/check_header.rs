//! `check-header`: refuses a request whose header is missing or has none of the listed
//! values, with the configured status and message.
//! Must not touch: anything but the request's headers.

use roxmltree::Node;

use super::{policy, Compiled, Kind, INBOUND};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow, Phase};
use crate::policy::parse::{
    flag, header_name_ok, no_attributes, required, setting, text_value, values, Cx, BOOLEAN, R,
};
use crate::policy::{Setting, Step, Text};

pub const KIND: Kind = Kind {
    element: "check-header",
    sections: INBOUND,
    children: true,
    compile,
};

#[derive(Debug, Clone)]
pub struct CheckHeader {
    pub name: Text,
    pub failed_code: Setting<u16>,
    pub failed_message: Text,
    pub ignore_case: Setting<bool>,
    pub values: Vec<Text>,
}

/// `failed-check-httpcode`: an HTTP status a gateway may answer with.
fn answer_status(v: &str) -> Option<u16> {
    v.parse().ok().filter(|c| (200..=599).contains(c))
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
    let name = text_value(cx, n, required(cx, n, "name")?)?;
    if let Text::Lit(l) = &name {
        if !header_name_ok(l) {
            return Err(cx.err(n, format!("<check-header>: '{l}' is not a header name")));
        }
    }
    policy(CheckHeader {
        name,
        failed_code: setting(
            cx,
            n,
            "failed-check-httpcode",
            None,
            answer_status,
            "an HTTP status 200..599",
        )?,
        failed_message: text_value(cx, n, required(cx, n, "failed-check-error-message")?)?,
        ignore_case: setting(cx, n, "ignore-case", Some(false), flag, BOOLEAN)?,
        values: values(cx, n)?,
    })
}

impl Behaviour for CheckHeader {
    fn name(&self) -> &'static str {
        "check-header"
    }
    fn facts(&self) -> Facts {
        let settings = [self.failed_code.text(), self.ignore_case.text()];
        Facts::reading(
            [&self.name, &self.failed_message]
                .into_iter()
                .chain(settings.into_iter().flatten())
                .chain(&self.values),
        )
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        // literals are borrowed: a check without expressions allocates nothing
        let name = or_fail!(call, step, call.text_cow(&self.name));
        let code = or_fail!(call, step, call.setting(&self.failed_code));
        let message = or_fail!(call, step, call.text_cow(&self.failed_message));
        let ignore_case = or_fail!(call, step, call.setting(&self.ignore_case));
        let computed = match self.values.iter().any(|v| matches!(v, Text::Expr(_))) {
            true => Some(or_fail!(call, step, call.texts(&self.values))),
            false => None,
        };
        let refused = match call.header(Phase::Request, &name) {
            None => Some("HeaderNotFound"),
            Some(value) => {
                let listed = |v: &str| {
                    value.split(',').map(str::trim).any(|have| {
                        if ignore_case {
                            have.eq_ignore_ascii_case(v)
                        } else {
                            have == v
                        }
                    })
                };
                let ok = self.values.is_empty()
                    || match &computed {
                        Some(values) => values.iter().any(|v| listed(v)),
                        None => self
                            .values
                            .iter()
                            .any(|v| matches!(v, Text::Lit(l) if listed(l))),
                    };
                (!ok).then_some("HeaderValueNotAllowed")
            }
        };
        if let Some(reason) = refused {
            call.st.answer(code, &message);
            return call.st.fail(step, "check-header", reason, &message);
        }
        Flow::Continue
    }
}
