//! `jsonp`: when the call carries the callback query parameter (`?cb=render`), the
//! response body is wrapped as `render(<body>);` and served as JavaScript; without it,
//! the body goes out as it is. Only a JavaScript name (letters, digits, `_`, `$`, dots)
//! is accepted as the callback, so the parameter cannot inject script.
//! Must not touch: the request, the status.

use roxmltree::Node;

use super::{policy, Compiled, Kind, OUTBOUND};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow};
use crate::policy::parse::{no_attributes, required, text_value, Cx, R};
use crate::policy::request::{decode, query_value};
use crate::policy::{Step, Text};

pub const KIND: Kind = Kind {
    element: "jsonp",
    sections: OUTBOUND,
    children: false,
    compile,
};

#[derive(Debug, Clone)]
pub struct Jsonp {
    /// The query parameter that names the callback.
    pub parameter: Text,
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["callback-parameter-name"])?;
    policy(Jsonp {
        parameter: text_value(cx, n, required(cx, n, "callback-parameter-name")?)?,
    })
}

/// A callback APIM would call: a dotted JavaScript name, at most 128 characters.
fn is_callback(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.split('.').all(|part| {
            part.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        })
}

impl Behaviour for Jsonp {
    fn name(&self) -> &'static str {
        "jsonp"
    }
    fn facts(&self) -> Facts {
        Facts {
            needs_body: true,
            reads_request: true,
            ..Facts::reading([&self.parameter])
        }
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let parameter = or_fail!(call, step, call.text(&self.parameter));
        let callback =
            query_value(call.host.request().query, &parameter).map(|v| decode(v).into_owned());
        let Some(callback) = callback.filter(|c| is_callback(c)) else {
            return Flow::Continue;
        };
        let body = call.st.resp.body.take().unwrap_or_default();
        let mut out = Vec::with_capacity(body.len() + callback.len() + 3);
        out.extend_from_slice(callback.as_bytes());
        out.push(b'(');
        out.extend_from_slice(&body);
        out.extend_from_slice(b");");
        call.st.resp.body = Some(out);
        call.st.resp.headers.set(
            "Content-Type",
            Some(vec!["application/javascript; charset=utf-8".into()]),
        );
        Flow::Continue
    }
}
