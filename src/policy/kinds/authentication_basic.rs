//! `authentication-basic`: the backend request's Authorization header from a user name
//! and password (encoded once, at compile time).
//! Must not touch: any other header; the credentials never reach a log line.

use roxmltree::Node;

use super::{policy, Compiled, Kind, INBOUND};
use crate::policy::call::{Behaviour, Call, Facts, Flow};
use crate::policy::parse::{no_attributes, required, Cx, R};
use crate::policy::Step;

pub const KIND: Kind = Kind {
    element: "authentication-basic",
    sections: INBOUND,
    children: false,
    compile,
};

#[derive(Clone)]
pub struct AuthenticationBasic {
    /// "Basic base64(user:password)".
    pub header: String,
}

impl std::fmt::Debug for AuthenticationBasic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthenticationBasic { header: \"Basic ***\" }")
    }
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    use base64::Engine;
    no_attributes(cx, n, &["username", "password"])?;
    let user = required(cx, n, "username")?;
    let pass = required(cx, n, "password")?;
    let cred = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    policy(AuthenticationBasic {
        header: format!("Basic {cred}"),
    })
}

impl Behaviour for AuthenticationBasic {
    fn name(&self) -> &'static str {
        "authentication-basic"
    }
    fn facts(&self) -> Facts {
        Facts::default()
    }
    fn run(&self, _step: &Step, call: &mut Call) -> Flow {
        call.st
            .req
            .headers
            .set("Authorization", Some(vec![self.header.clone()]));
        Flow::Continue
    }
}
