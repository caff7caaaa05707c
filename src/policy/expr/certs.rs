//! X509Certificate2 as expressions see it: `context.Request.Certificate` (null when the
//! TLS client presented none) with Subject, Issuer, Thumbprint, SerialNumber, NotBefore,
//! NotAfter, Version, RawData, SubjectName.Name / IssuerName.Name, FriendlyName and
//! Verify(): whether its chain leads to one of the gateway's CA certificates
//! (`caCertificates`) and every certificate in it is valid now (.NET asks the machine's
//! store; a self-hosted edgegate has only what its config trusts).
//! Must not touch: how the certificate was read or judged (`crate::x509`, the pipeline).

use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;

use super::datetime::{Instant, Kind};
use super::eval::Machine;
use super::members::{not_a_member, M};
use super::value::Val;
use super::{EvalError, Node};
use crate::x509::Presented;

/// A client certificate and what the gateway's CA certificates say of it.
#[derive(Debug)]
pub struct Cert {
    pub presented: Arc<Presented>,
    pub verified: bool,
}

fn date(secs: i64) -> Result<Val<'static>, EvalError> {
    Ok(Val::Date(Instant::from_unix_ms(
        secs.saturating_mul(1000),
        Kind::Utc,
    )?))
}

fn text(s: &str) -> Val<'static> {
    Val::Str(Cow::Owned(s.to_string()))
}

/// A member of a certificate.
pub(super) fn member<'e>(
    m: &mut Machine<'e>,
    c: &Rc<Cert>,
    member: M,
    args: &'e [Node],
) -> Result<Val<'e>, EvalError> {
    let cert = &c.presented.cert;
    Ok(match member {
        M::Subject => text(&cert.subject),
        M::Issuer => text(&cert.issuer),
        M::Thumbprint => text(&cert.thumbprint),
        M::SerialNumber => text(&cert.serial_number),
        M::NotBefore => date(cert.not_before)?,
        M::NotAfter => date(cert.not_after)?,
        M::Version => Val::Int(i64::from(cert.version)),
        M::FriendlyName => Val::Str(Cow::Borrowed("")),
        M::HasPrivateKey => Val::Bool(false),
        M::RawData => {
            m.charge(cert.der.len())?;
            Val::Bytes(Rc::new(cert.der.clone()))
        }
        M::SubjectName => Val::record(vec![("Name", text(&cert.subject))]),
        M::IssuerName => Val::record(vec![("Name", text(&cert.issuer))]),
        M::Verify if args.is_empty() => Val::Bool(c.verified),
        M::ToString if args.is_empty() => m.text(to_string(c))?,
        _ => return Err(not_a_member("X509Certificate2", member)),
    })
}

/// .NET's X509Certificate.ToString(): the main fields under bracketed titles.
fn to_string(c: &Cert) -> String {
    let cert = &c.presented.cert;
    let day = |secs: i64| {
        Instant::from_unix_ms(secs.saturating_mul(1000), Kind::Utc)
            .ok()
            .and_then(|i| super::datetime::format(&i, Some("M/d/yyyy h:mm:ss tt")).ok())
            .unwrap_or_default()
    };
    format!(
        "[Subject]\r\n  {}\r\n\r\n[Issuer]\r\n  {}\r\n\r\n[Serial Number]\r\n  {}\r\n\r\n[Not Before]\r\n  {}\r\n\r\n[Not After]\r\n  {}\r\n\r\n[Thumbprint]\r\n  {}\r\n",
        cert.subject,
        cert.issuer,
        cert.serial_number,
        day(cert.not_before),
        day(cert.not_after),
        cert.thumbprint
    )
}
