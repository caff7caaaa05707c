//! `authentication-basic`: the backend request's Authorization header from a user name
//! and password (encoded once at compile time when both are literals, else per call).
//! Must not touch: any other header; the credentials never reach a log line.

use roxmltree::Node;

use super::{policy, Compiled, Kind, INBOUND};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow};
use crate::policy::parse::{no_attributes, required, text_value, Cx, R};
use crate::policy::{Step, Text};

pub const KIND: Kind = Kind {
    element: "authentication-basic",
    sections: INBOUND,
    children: false,
    compile,
};

/// The Authorization header it sets: encoded once when both parts are literals,
/// otherwise per call from the expressions' values.
#[derive(Clone)]
pub enum AuthenticationBasic {
    /// "Basic base64(user:password)".
    Encoded(String),
    Computed {
        username: Text,
        password: Text,
    },
}

impl std::fmt::Debug for AuthenticationBasic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthenticationBasic { header: \"Basic ***\" }")
    }
}

fn encoded(username: &str, password: &str) -> String {
    use base64::Engine;
    let cred = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    format!("Basic {cred}")
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["username", "password"])?;
    let username = text_value(cx, n, required(cx, n, "username")?)?;
    let password = text_value(cx, n, required(cx, n, "password")?)?;
    policy(match (&username, &password) {
        (Text::Lit(u), Text::Lit(p)) => AuthenticationBasic::Encoded(encoded(u, p)),
        _ => AuthenticationBasic::Computed { username, password },
    })
}

impl Behaviour for AuthenticationBasic {
    fn name(&self) -> &'static str {
        "authentication-basic"
    }
    fn facts(&self) -> Facts {
        match self {
            AuthenticationBasic::Encoded(_) => Facts::default(),
            AuthenticationBasic::Computed { username, password } => {
                Facts::reading([username, password])
            }
        }
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let header = match self {
            AuthenticationBasic::Encoded(h) => h.clone(),
            AuthenticationBasic::Computed { username, password } => {
                let u = or_fail!(call, step, call.text(username));
                let p = or_fail!(call, step, call.text(password));
                encoded(&u, &p)
            }
        };
        call.st.req.headers.set("Authorization", Some(vec![header]));
        Flow::Continue
    }
}
