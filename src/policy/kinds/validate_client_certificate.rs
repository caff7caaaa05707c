//! `validate-client-certificate`: the certificate the TLS client presented on the HTTPS
//! listener (a host name with `negotiateClientCertificate`) against the rules of the
//! element's attributes (trust: a chain to the config's `caCertificates`; not-before
//! and not-after against the clock) and the claims of at least one `<identity>`
//! (thumbprint, serial-number, common-name, subject, dns-name, issuer-subject,
//! issuer-thumbprint, issuer-certificate-id), as APIM documents. A refusal answers 401
//! and goes through on-error (Source validate-client-certificate), unless ignore-error.
//! Revocation (validate-revocation) has no online list to ask on an air-gapped host:
//! it is accepted and not checked.
//! Must not touch: the TLS handshake (the listener only asks for the certificate).

use roxmltree::Node;

use super::{policy, Compiled, Kind, INBOUND};
use crate::policy::call::{Behaviour, Call, Facts, Flow};
use crate::policy::parse::{attr, boolean, elements, no_attributes, only_children, Cx, R};
use crate::policy::Step;
use crate::x509::Presented;

pub const KIND: Kind = Kind {
    element: "validate-client-certificate",
    sections: INBOUND,
    children: true,
    compile,
};

/// Most `<identity>` elements, as APIM allows.
const MAX_IDENTITIES: usize = 10;

const IDENTITY_CLAIMS: &[&str] = &[
    "thumbprint",
    "serial-number",
    "common-name",
    "subject",
    "dns-name",
    "issuer-subject",
    "issuer-thumbprint",
    "issuer-certificate-id",
];

/// One `<identity>`: every claim it names must hold.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    thumbprint: Option<String>,
    serial_number: Option<String>,
    common_name: Option<String>,
    subject: Option<String>,
    dns_name: Option<String>,
    issuer_subject: Option<String>,
    issuer_thumbprint: Option<String>,
    issuer_certificate_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ValidateClientCertificate {
    validate_trust: bool,
    validate_not_before: bool,
    validate_not_after: bool,
    ignore_error: bool,
    identities: Vec<Identity>,
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(
        cx,
        n,
        &[
            "validate-revocation",
            "validate-trust",
            "validate-not-before",
            "validate-not-after",
            "ignore-error",
        ],
    )?;
    boolean(cx, n, "validate-revocation", true)?;
    only_children(cx, n, &["identities"])?;
    let mut identities = Vec::new();
    for list in elements(n) {
        only_children(cx, list, &["identity"])?;
        for el in elements(list) {
            no_attributes(cx, el, IDENTITY_CLAIMS)?;
            let claim = |name: &str| attr(el, name).map(|v| v.trim().to_string());
            let identity = Identity {
                thumbprint: claim("thumbprint"),
                serial_number: claim("serial-number"),
                common_name: claim("common-name"),
                subject: claim("subject"),
                dns_name: claim("dns-name"),
                issuer_subject: claim("issuer-subject"),
                issuer_thumbprint: claim("issuer-thumbprint"),
                issuer_certificate_id: claim("issuer-certificate-id"),
            };
            if IDENTITY_CLAIMS.iter().all(|c| attr(el, c).is_none()) {
                return Err(cx.err(el, "<identity> needs at least one claim (thumbprint, serial-number, common-name, subject, dns-name, issuer-subject, issuer-thumbprint or issuer-certificate-id)"));
            }
            identities.push(identity);
        }
    }
    if identities.len() > MAX_IDENTITIES {
        return Err(cx.err(
            n,
            format!("<validate-client-certificate> takes at most {MAX_IDENTITIES} identities"),
        ));
    }
    policy(ValidateClientCertificate {
        validate_trust: boolean(cx, n, "validate-trust", true)?,
        validate_not_before: boolean(cx, n, "validate-not-before", true)?,
        validate_not_after: boolean(cx, n, "validate-not-after", true)?,
        ignore_error: boolean(cx, n, "ignore-error", false)?,
        identities,
    })
}

/// Hex as written in a policy (any case, spaces and colons allowed) against ours.
fn same_hex(written: &str, ours: &str) -> bool {
    let mut w = written.chars().filter(|c| !matches!(c, ' ' | ':'));
    let mut o = ours.chars();
    loop {
        match (w.next(), o.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(&b) => {}
            _ => return false,
        }
    }
}

/// Distinguished names compared as .NET shows them, without regard to case or the
/// spaces after separators.
fn same_name(written: &str, ours: &str) -> bool {
    let norm = |s: &str| -> String {
        s.split(',')
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(",")
            .to_ascii_lowercase()
    };
    norm(written) == norm(ours)
}

impl Identity {
    fn matches(&self, p: &Presented, call: &Call) -> bool {
        let c = &p.cert;
        let issuer_ca = |pick: &dyn Fn(&crate::x509::Certificate) -> bool| {
            call.host
                .ca_certificates()
                .iter()
                .any(|(_, ca)| same_name(&ca.subject, &c.issuer) && pick(ca))
        };
        self.thumbprint
            .as_ref()
            .is_none_or(|t| same_hex(t, &c.thumbprint))
            && self.serial_number.as_ref().is_none_or(|s| {
                same_hex(
                    s.trim_start_matches('0'),
                    c.serial_number.trim_start_matches('0'),
                )
            })
            && self.common_name.as_ref().is_none_or(|n| {
                c.common_name
                    .as_ref()
                    .is_some_and(|cn| cn.eq_ignore_ascii_case(n))
            })
            && self
                .subject
                .as_ref()
                .is_none_or(|s| same_name(s, &c.subject))
            && self
                .dns_name
                .as_ref()
                .is_none_or(|d| c.dns_names.iter().any(|n| n.eq_ignore_ascii_case(d)))
            && self
                .issuer_subject
                .as_ref()
                .is_none_or(|s| same_name(s, &c.issuer))
            && self
                .issuer_thumbprint
                .as_ref()
                .is_none_or(|t| issuer_ca(&|ca| same_hex(t, &ca.thumbprint)))
            && self.issuer_certificate_id.as_ref().is_none_or(|id| {
                call.host
                    .ca_certificates()
                    .iter()
                    .any(|(ca_id, ca)| ca_id == id && same_name(&ca.subject, &c.issuer))
            })
    }
}

impl ValidateClientCertificate {
    /// Why the certificate fails, if it does: (LastError.Reason, message).
    fn problem(&self, call: &Call) -> Option<(&'static str, &'static str)> {
        let Some(p) = call.host.request().certificate else {
            return Some((
                "ClientCertificateNotPresent",
                "Client certificate not present.",
            ));
        };
        let now = i64::try_from(call.now_ms / 1000).unwrap_or(i64::MAX);
        if self.validate_not_before && p.cert.not_before > now {
            return Some((
                "ClientCertificateNotYetValid",
                "Client certificate is not yet valid.",
            ));
        }
        if self.validate_not_after && p.cert.not_after < now {
            return Some((
                "ClientCertificateExpired",
                "Client certificate has expired.",
            ));
        }
        if self.validate_trust && !call.host.certificate_trusted(p) {
            return Some((
                "ClientCertificateNotTrusted",
                "Client certificate does not chain to a trusted CA certificate.",
            ));
        }
        if !self.identities.is_empty() && !self.identities.iter().any(|i| i.matches(p, call)) {
            return Some((
                "ClientCertificateIdentityMismatch",
                "Client certificate matches none of the identities.",
            ));
        }
        None
    }
}

impl Behaviour for ValidateClientCertificate {
    fn name(&self) -> &'static str {
        KIND.element
    }
    fn facts(&self) -> Facts {
        Facts {
            reads_request: true,
            ..Facts::default()
        }
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let Some((reason, message)) = self.problem(call) else {
            return Flow::Continue;
        };
        if self.ignore_error {
            return Flow::Continue;
        }
        call.st.answer(401, "Invalid client certificate.");
        call.st.fail(step, KIND.element, reason, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_names_compare_as_written() {
        assert!(same_hex("b2:94:52", "B29452"));
        assert!(same_hex("B2 94 52", "B29452"));
        assert!(!same_hex("B294", "B29452"));
        assert!(same_name(
            "cn=client.example,O=Contoso",
            "CN=client.example, O=Contoso"
        ));
        assert!(!same_name("CN=other", "CN=client.example"));
    }
}
