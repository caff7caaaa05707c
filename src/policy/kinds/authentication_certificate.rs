//! `authentication-certificate`: the client certificate the gateway presents to an
//! `https://` backend (and inside `send-request`, to that request's server), named by
//! `certificate-id` or `thumbprint` among the config's `certificates` (expressions
//! allowed), or given whole by `body` (an expression: APIM's PKCS#12 bytes with their
//! `password`, `config::pkcs12`; or PEM text holding the certificate chain and its
//! private key). The connection to the
//! backend then comes from a pool of its own, so calls that present different
//! certificates never share one.
//! Must not touch: the key (never in a log line or an error).

use roxmltree::Node;

use super::{policy, Compiled, Kind, INBOUND};
use crate::policy::call::{Behaviour, Call, ClientTls, Facts, Flow};
use crate::policy::expr::{EvalError, Val};
use crate::policy::parse::{attr, no_attributes, text_value, Cx, R};
use crate::policy::{Step, Text};

pub const KIND: Kind = Kind {
    element: "authentication-certificate",
    sections: INBOUND,
    children: false,
    compile,
};

/// Which certificate: one of the config's, or one an expression gives.
#[derive(Debug, Clone)]
pub enum CertificateChoice {
    Id(Text),
    Thumbprint(Text),
    /// A PFX (bytes) with its password, or PEM: the chain and its private key.
    Body {
        body: Text,
        password: Option<Text>,
    },
}

/// What a certificate choice names, as the host looks it up.
#[derive(Debug, Clone, Copy)]
pub enum Named<'a> {
    Id(&'a str),
    Thumbprint(&'a str),
    Pem(&'a [u8]),
    /// PKCS#12 and its password.
    Pfx(&'a [u8], &'a str),
}

#[derive(Debug, Clone)]
pub struct AuthenticationCertificate {
    pub choice: CertificateChoice,
}

/// Compiles the element (also inside send-request).
pub(crate) fn parse(cx: &mut Cx, n: Node) -> R<AuthenticationCertificate> {
    no_attributes(cx, n, &["thumbprint", "certificate-id", "body", "password"])?;
    let given: Vec<&str> = ["thumbprint", "certificate-id", "body"]
        .into_iter()
        .filter(|a| attr(n, a).is_some())
        .collect();
    if given.len() != 1 {
        return Err(cx.err(
            n,
            "<authentication-certificate> takes exactly one of thumbprint, certificate-id and body",
        ));
    }
    let value = |cx: &mut Cx, name: &str| text_value(cx, n, attr(n, name).unwrap_or("").trim());
    let choice = match given[0] {
        "thumbprint" => CertificateChoice::Thumbprint(value(cx, "thumbprint")?),
        "certificate-id" => {
            let id = value(cx, "certificate-id")?;
            if let Text::Lit(id) = &id {
                cx.ctx.uses.certificates.insert(id.clone());
            }
            CertificateChoice::Id(id)
        }
        _ => CertificateChoice::Body {
            body: value(cx, "body")?,
            password: match attr(n, "password") {
                Some(p) => Some(text_value(cx, n, p)?),
                None => None,
            },
        },
    };
    Ok(AuthenticationCertificate { choice })
}

/// What a body holds: PKCS#12 (DER starts with a SEQUENCE) or PEM.
fn pfx_or_pem<'b>(bytes: &'b [u8], password: &'b str) -> Named<'b> {
    match bytes.first() {
        Some(0x30) => Named::Pfx(bytes, password),
        _ => Named::Pem(bytes),
    }
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    policy(parse(cx, n)?)
}

impl AuthenticationCertificate {
    /// The TLS identity for this call, or why there is none.
    pub(crate) fn identity(&self, call: &mut Call) -> Result<ClientTls, EvalError> {
        let found = match &self.choice {
            CertificateChoice::Id(t) => {
                let id = call.text(t)?;
                call.host.client_identity(Named::Id(&id))
            }
            CertificateChoice::Thumbprint(t) => {
                let thumbprint = call.text(t)?;
                call.host.client_identity(Named::Thumbprint(&thumbprint))
            }
            CertificateChoice::Body { body, password } => {
                let bytes: Vec<u8> = match body {
                    Text::Lit(l) => l.clone().into_bytes(),
                    Text::Expr(e) => match call.value(e)? {
                        Val::Bytes(b) => b.to_vec(),
                        other => other.to_text().into_owned().into_bytes(),
                    },
                };
                let password = match password {
                    Some(p) => call.text(p)?,
                    None => String::new(),
                };
                // built once per body (a PFX's key derivation is not for every call)
                let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
                digest.update(&bytes);
                digest.update(&[0]);
                digest.update(password.as_bytes());
                let mut key = [0u8; 32];
                key.copy_from_slice(digest.finish().as_ref());
                if let Some(known) = call.counters.given_identities.get(&key) {
                    return Ok(known);
                }
                let built = call.host.client_identity(pfx_or_pem(&bytes, &password));
                if let Ok(identity) = &built {
                    call.counters.given_identities.put(key, identity.clone());
                }
                built
            }
        };
        found.map_err(|why| EvalError(why.into()))
    }
}

impl Behaviour for AuthenticationCertificate {
    fn name(&self) -> &'static str {
        KIND.element
    }
    fn facts(&self) -> Facts {
        match &self.choice {
            CertificateChoice::Id(t) | CertificateChoice::Thumbprint(t) => Facts::reading([t]),
            CertificateChoice::Body { body, password } => {
                Facts::reading([Some(body), password.as_ref()].into_iter().flatten())
            }
        }
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        match self.identity(call) {
            Ok(identity) => {
                call.st.req.client_tls = Some(identity);
                Flow::Continue
            }
            Err(e) => {
                call.st.answer(500, "Internal server error");
                call.st
                    .fail(step, KIND.element, "CertificateNotFound", &e.0)
            }
        }
    }
}
