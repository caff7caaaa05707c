//! X.509 certificates read from their DER bytes: the fields policies show and match
//! (`context.Request.Certificate`, `validate-client-certificate`), in the formats .NET's
//! X509Certificate2 gives them, since APIM documents are written against those: Subject
//! and Issuer as distinguished names with the last RDN first ("CN=a, O=b, C=c"),
//! SerialNumber and Thumbprint (SHA-1 of the DER) as upper-case hex, NotBefore/NotAfter,
//! and the DNS names of the subject alternative names. A small DER reader over the
//! certificate's own bytes; anything it cannot read is an `Err` with the reason.
//! Must not touch: trust decisions (chains and signatures are rustls/webpki's, see
//! `config::tls`), I/O.

use std::fmt::Write as _;

/// A certificate's fields, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub der: Vec<u8>,
    pub subject: String,
    pub issuer: String,
    /// The serial number's bytes as upper-case hex (as .NET's SerialNumber).
    pub serial_number: String,
    /// SHA-1 of the DER, upper-case hex (as .NET's Thumbprint).
    pub thumbprint: String,
    /// Seconds since the epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// The subject's common name (the last CN), if it has one.
    pub common_name: Option<String>,
    /// dNSName entries of the subject alternative names.
    pub dns_names: Vec<String>,
    /// X.509 version (1, 2 or 3).
    pub version: u8,
}

/// The certificate a TLS client presented on a connection, with the rest of its chain
/// and what the gateway's CA certificates said of it last (per trust generation, so a
/// connection's requests check the chain once).
#[derive(Debug)]
pub struct Presented {
    pub cert: Certificate,
    pub intermediates: Vec<Vec<u8>>,
    trusted: std::sync::Mutex<Option<(u64, bool)>>,
}

impl Presented {
    /// From the chain the client sent, leaf first.
    pub fn new<'c>(
        mut chain: impl Iterator<Item = &'c [u8]>,
    ) -> Result<Presented, NotACertificate> {
        let leaf = chain.next().ok_or(NotACertificate("no certificate"))?;
        Ok(Presented {
            cert: parse(leaf)?,
            intermediates: chain.map(<[u8]>::to_vec).collect(),
            trusted: std::sync::Mutex::new(None),
        })
    }

    /// Whether the chain is trusted under trust `generation`: `check` runs once per
    /// generation.
    pub fn trusted(&self, generation: u64, check: impl FnOnce(&[u8], &[Vec<u8>]) -> bool) -> bool {
        let Ok(mut memo) = self.trusted.lock() else {
            return check(&self.cert.der, &self.intermediates);
        };
        match *memo {
            Some((g, verdict)) if g == generation => verdict,
            _ => {
                let verdict = check(&self.cert.der, &self.intermediates);
                *memo = Some((generation, verdict));
                verdict
            }
        }
    }
}

/// Why bytes are not a certificate this reader understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotACertificate(pub &'static str);

impl std::fmt::Display for NotACertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not an X.509 certificate: {}", self.0)
    }
}

pub(crate) const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
pub(crate) const OCTET_STRING: u8 = 0x04;
const BOOLEAN: u8 = 0x01;
/// `[0] EXPLICIT` (version) and `[3] EXPLICIT` (extensions).
pub(crate) const CONTEXT_0: u8 = 0xa0;
const CONTEXT_3: u8 = 0xa3;
/// dNSName in GeneralName: `[2] IMPLICIT IA5String`.
const DNS_NAME: u8 = 0x82;
/// 2.5.29.17, subjectAltName.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// A DER cursor over one constructed value's contents (also PKCS#12's, `config::pkcs12`).
pub(crate) struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Der<'a> {
        Der { rest: bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next value: its tag and contents.
    pub(crate) fn next(&mut self) -> Result<(u8, &'a [u8]), NotACertificate> {
        let bad = NotACertificate("truncated or malformed DER");
        let (&tag, after) = self.rest.split_first().ok_or(bad.clone())?;
        let (&first, mut after) = after.split_first().ok_or(bad.clone())?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || after.len() < n {
                return Err(bad);
            }
            let mut len = 0usize;
            for &b in &after[..n] {
                len = (len << 8) | usize::from(b);
            }
            after = &after[n..];
            len
        };
        if after.len() < len {
            return Err(bad);
        }
        let (contents, rest) = after.split_at(len);
        self.rest = rest;
        Ok((tag, contents))
    }

    /// The next value, which must have `tag`.
    pub(crate) fn expect(
        &mut self,
        tag: u8,
        what: &'static str,
    ) -> Result<&'a [u8], NotACertificate> {
        match self.next()? {
            (t, contents) if t == tag => Ok(contents),
            _ => Err(NotACertificate(what)),
        }
    }
}

/// Reads a certificate's DER.
pub fn parse(der: &[u8]) -> Result<Certificate, NotACertificate> {
    let mut outer = Der::new(der);
    let cert = outer.expect(SEQUENCE, "no certificate sequence")?;
    let mut cert = Der::new(cert);
    let mut tbs = Der::new(cert.expect(SEQUENCE, "no tbsCertificate")?);
    let mut version = 1;
    if tbs.peek_tag() == Some(CONTEXT_0) {
        let (_, v) = tbs.next()?;
        let v = Der::new(v).expect(INTEGER, "bad version")?;
        version = v.last().map_or(1, |v| v.saturating_add(1));
    }
    let serial = tbs.expect(INTEGER, "no serial number")?;
    tbs.expect(SEQUENCE, "no signature algorithm")?;
    let issuer = tbs.expect(SEQUENCE, "no issuer")?;
    let mut validity = Der::new(tbs.expect(SEQUENCE, "no validity")?);
    let not_before = time(validity.next()?)?;
    let not_after = time(validity.next()?)?;
    let subject = tbs.expect(SEQUENCE, "no subject")?;
    tbs.expect(SEQUENCE, "no subject public key")?;
    let mut dns_names = Vec::new();
    while !tbs.is_empty() {
        let (tag, contents) = tbs.next()?;
        if tag == CONTEXT_3 {
            dns_names = alt_dns_names(contents)?;
        }
    }
    let (subject_text, common_name) = distinguished_name(subject)?;
    let (issuer_text, _) = distinguished_name(issuer)?;
    Ok(Certificate {
        der: der.to_vec(),
        subject: subject_text,
        issuer: issuer_text,
        serial_number: upper_hex(serial),
        thumbprint: thumbprint(der),
        not_before,
        not_after,
        common_name,
        dns_names,
        version,
    })
}

/// A certificate's thumbprint as .NET shows it: SHA-1 of its DER, upper-case hex.
pub fn thumbprint(der: &[u8]) -> String {
    upper_hex(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der).as_ref())
}

/// Upper-case hex of bytes, as .NET shows thumbprints and serial numbers.
pub fn upper_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time((tag, text): (u8, &[u8])) -> Result<i64, NotACertificate> {
    let bad = NotACertificate("bad validity time");
    let digits = |r: std::ops::Range<usize>| -> Result<i64, NotACertificate> {
        let part = text.get(r).ok_or(bad.clone())?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(bad.clone());
        }
        Ok(part.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let (year, at) = match tag {
        UTC_TIME => {
            let yy = digits(0..2)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, 2)
        }
        GENERALIZED_TIME => (digits(0..4)?, 4),
        _ => return Err(bad),
    };
    if text.len() != at + 11 || text.last() != Some(&b'Z') {
        return Err(bad);
    }
    let (month, day) = (digits(at..at + 2)?, digits(at + 2..at + 4)?);
    let (hour, minute, second) = (
        digits(at + 4..at + 6)?,
        digits(at + 6..at + 8)?,
        digits(at + 8..at + 10)?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return Err(bad);
    }
    let days = crate::telemetry::days_from_civil(year, month, day);
    Ok(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// The short names .NET uses for attribute types, by OID.
fn attribute_name(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x04] => "SN",
        [0x55, 0x04, 0x05] => "SERIALNUMBER",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "S",
        [0x55, 0x04, 0x09] => "STREET",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x55, 0x04, 0x0c] => "T",
        [0x55, 0x04, 0x2a] => "G",
        [0x55, 0x04, 0x2b] => "I",
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "E",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        _ => return None,
    })
}

/// Dotted form of an OID an attribute has no short name for ("OID.1.2.3=…", as .NET).
fn dotted(oid: &[u8]) -> String {
    let mut out = String::new();
    let mut value: u64 = 0;
    for (i, &b) in oid.iter().enumerate() {
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 != 0 {
            continue;
        }
        if out.is_empty() && i < oid.len() {
            let first = (value / 40).min(2);
            let _ = write!(out, "{first}.{}", value - first * 40);
        } else {
            let _ = write!(out, ".{value}");
        }
        value = 0;
    }
    out
}

/// A Name as .NET's X500DistinguishedName.Name shows it (RDNs last first, ", "
/// between them, " + " inside a multi-valued RDN, values quoted when they hold a
/// separator), and its last CN.
fn distinguished_name(name: &[u8]) -> Result<(String, Option<String>), NotACertificate> {
    let mut rdns = Vec::new();
    let mut common_name = None;
    let mut seq = Der::new(name);
    while !seq.is_empty() {
        let mut set = Der::new(seq.expect(SET, "bad name")?);
        let mut parts = Vec::new();
        while !set.is_empty() {
            let mut pair = Der::new(set.expect(SEQUENCE, "bad name attribute")?);
            let oid = pair.expect(OID, "bad name attribute type")?;
            let (_, value) = pair.next()?;
            let value = String::from_utf8_lossy(value).into_owned();
            let key =
                attribute_name(oid).map_or_else(|| format!("OID.{}", dotted(oid)), String::from);
            if key == "CN" {
                common_name = Some(value.clone());
            }
            parts.push(format!("{key}={}", quoted(&value)));
        }
        rdns.push(parts.join(" + "));
    }
    rdns.reverse();
    Ok((rdns.join(", "), common_name))
}

/// A value quoted as .NET quotes it when it holds a separator or edge spaces.
fn quoted(value: &str) -> String {
    let special = value
        .chars()
        .any(|c| matches!(c, ',' | '+' | '=' | '"' | '\n' | '<' | '>' | '#' | ';'))
        || value.starts_with(' ')
        || value.ends_with(' ');
    if special {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// The dNSName entries of a subjectAltName extension among `[3]`'s extensions.
fn alt_dns_names(explicit: &[u8]) -> Result<Vec<String>, NotACertificate> {
    let mut names = Vec::new();
    let mut extensions = Der::new(Der::new(explicit).expect(SEQUENCE, "bad extensions")?);
    while !extensions.is_empty() {
        let mut ext = Der::new(extensions.expect(SEQUENCE, "bad extension")?);
        let oid = ext.expect(OID, "bad extension id")?;
        if ext.peek_tag() == Some(BOOLEAN) {
            ext.next()?;
        }
        let value = ext.expect(OCTET_STRING, "bad extension value")?;
        if oid != SUBJECT_ALT_NAME {
            continue;
        }
        let mut general = Der::new(Der::new(value).expect(SEQUENCE, "bad subjectAltName")?);
        while !general.is_empty() {
            let (tag, contents) = general.next()?;
            if tag == DNS_NAME {
                names.push(String::from_utf8_lossy(contents).into_owned());
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client certificate made with openssl (P-256, issued by "CN=Test CA, O=Contoso,
    /// Ltd, C=US"); the expected values are what openssl printed for it.
    const CLIENT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIICATCCAaegAwIBAgIDChssMAoGCCqGSM49BAMCMDYxCzAJBgNVBAYTAlVTMRUw
EwYDVQQKDAxDb250b3NvLCBMdGQxEDAOBgNVBAMMB1Rlc3QgQ0EwHhcNMjYxMjA3
MTczOTI2WhcNMjcxMjA3MTczOTI2WjBTMQswCQYDVQQGEwJVUzELMAkGA1UECAwC
V0ExEDAOBgNVBAoMB0NvbnRvc28xDDAKBgNVBAsMA0FQSTEXMBUGA1UEAwwOY2xp
ZW50LmV4YW1wbGUwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQ4JT2j8xA1Q6t0
IT9aD1aFxbmDJ2ioD5oJHTyKX4lzPy242sRV93EmQlsnOHs1g7mnevtllBhEibxD
NQMXV/2qo4GGMIGDMCwGA1UdEQQlMCOCDmNsaWVudC5leGFtcGxlggthbHQuZXhh
bXBsZYcEfwAAATATBgNVHSUEDDAKBggrBgEFBQcDAjAdBgNVHQ4EFgQU+0RyyAvg
gg4/ylt2XTYpUPNonn4wHwYDVR0jBBgwFoAUHecgYbS77yTrdN7qXpj+cwB9o/Yw
CgYIKoZIzj0EAwIDSAAwRQIgIHcF3QEup0+S/VlskSuOJoSL3FvIMrc8U35BFJYp
QXYCIQCwxyWIxoUyq0EMwUkbCXAi8rac57tz56GyPHXKIqykwg==
-----END CERTIFICATE-----
";

    #[test]
    fn reads_what_openssl_wrote() {
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(CLIENT_PEM.as_bytes()).unwrap();
        let c = parse(&der).unwrap();
        assert_eq!(
            c.subject,
            "CN=client.example, OU=API, O=Contoso, S=WA, C=US"
        );
        assert_eq!(c.issuer, "CN=Test CA, O=\"Contoso, Ltd\", C=US");
        assert_eq!(c.serial_number, "0A1B2C");
        assert_eq!(c.thumbprint, "B29452315D249D386A58C66FC0969EE4FD42C405");
        assert_eq!((c.not_before, c.not_after), (1_796_665_166, 1_828_201_166));
        assert_eq!(c.common_name.as_deref(), Some("client.example"));
        assert_eq!(c.dns_names, ["client.example", "alt.example"]);
        assert_eq!(c.version, 3);
        // every cut of it is an error, never a panic
        for n in 0..der.len() {
            assert!(parse(&der[..n]).is_err(), "{n}");
        }
    }

    #[test]
    fn reads_times_in_both_forms() {
        assert_eq!(time((UTC_TIME, b"700101000000Z")), Ok(0));
        assert_eq!(time((UTC_TIME, b"491231235959Z")), Ok(2_524_607_999));
        assert_eq!(
            time((GENERALIZED_TIME, b"20500101000000Z")),
            Ok(2_524_608_000)
        );
        assert!(time((UTC_TIME, b"7001010000Z")).is_err());
        assert!(time((UTC_TIME, b"701301000000Z")).is_err());
    }

    #[test]
    fn names_oids_dotted() {
        // 1.2.840.113549 and 2.5.4.97
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]),
            "1.2.840.113549"
        );
        assert_eq!(dotted(&[0x55, 0x04, 0x61]), "2.5.4.97");
    }

    #[test]
    fn quotes_values_with_separators() {
        assert_eq!(quoted("Contoso, Ltd"), "\"Contoso, Ltd\"");
        assert_eq!(quoted("plain"), "plain");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x03\x02\x01",
        ] {
            assert!(parse(bytes).is_err());
        }
    }
}
