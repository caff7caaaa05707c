//! PKCS#12 (`.pfx`) as APIM's authentication-certificate `body` carries it: the
//! certificate chain and its private key out of a PFX protected the way current tools
//! write it (PBES2: PBKDF2 with HMAC-SHA-1/256/384/512 and AES-128/192/256-CBC, which
//! OpenSSL 3 and current Windows use). The legacy ciphers (3DES, RC2) are refused with
//! the reason; the integrity MAC is not checked (a wrong password fails the
//! decryption instead). DER only.
//! Must not touch: the password or the key in any message.

use ring::pbkdf2;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::x509::{Der, CONTEXT_0 as EXPLICIT_0, INTEGER, OCTET_STRING, OID, SEQUENCE};

/// `encryptedContent [0] IMPLICIT OCTET STRING`.
const IMPLICIT_0: u8 = 0x80;

const DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
const ENCRYPTED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x06];
const KEY_BAG: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x01,
];
const SHROUDED_KEY_BAG: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x02,
];
const CERT_BAG: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x03,
];
const X509_CERTIFICATE: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x16, 0x01];
const PBES2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d];
const PBKDF2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0c];
/// hmacWithSHA1 … SHA512: 1.2.840.113549.2.7, .9, .10, .11.
const HMAC_PREFIX: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02];
/// aes128-CBC, aes192-CBC, aes256-CBC: 2.16.840.1.101.3.4.1.2, .22, .42.
const AES_PREFIX: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01];
/// The legacy PKCS#12 ciphers (pbeWithSHAAnd…): 1.2.840.113549.1.12.1.*.
const LEGACY_PREFIX: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01];

/// The chain (leaf first, as the PFX lists it) and the key of a PFX.
pub struct Pfx {
    pub certificates: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// The most PBKDF2 rounds read (OpenSSL writes 2,048, Windows 2,000 to 10,000): the
/// derivation runs on the event loop, once per body.
const MAX_ROUNDS: u32 = 10_000;

/// Why a PFX cannot be read (never quoting the password or the key).
pub type Problem = &'static str;

const MALFORMED: Problem = "not a PKCS#12 (PFX) file this gateway reads (DER)";

fn der(r: Result<&[u8], crate::x509::NotACertificate>) -> Result<&[u8], Problem> {
    r.map_err(|_| MALFORMED)
}

/// Reads `bytes` with `password`.
pub fn read(bytes: &[u8], password: &str) -> Result<Pfx, Problem> {
    let mut pfx = Der::new(der(Der::new(bytes).expect(SEQUENCE, ""))?);
    der(pfx.expect(INTEGER, ""))?;
    let auth_safe = content_data(der(pfx.expect(SEQUENCE, ""))?)?;
    let mut safes = Der::new(der(Der::new(auth_safe).expect(SEQUENCE, ""))?);
    let mut certificates = Vec::new();
    let mut key = None;
    while !safes.is_empty() {
        let info = der(safes.expect(SEQUENCE, ""))?;
        let mut c = Der::new(info);
        let kind = der(c.expect(OID, ""))?;
        let contents = if kind == DATA {
            content_data(info)?.to_vec()
        } else if kind == ENCRYPTED_DATA {
            let mut outer = Der::new(der(c.expect(EXPLICIT_0, ""))?);
            let mut encrypted = Der::new(der(outer.expect(SEQUENCE, ""))?);
            der(encrypted.expect(INTEGER, ""))?;
            let mut content = Der::new(der(encrypted.expect(SEQUENCE, ""))?);
            der(content.expect(OID, ""))?;
            let algorithm = der(content.expect(SEQUENCE, ""))?;
            let ciphertext = der(content.expect(IMPLICIT_0, ""))?;
            decrypt(algorithm, ciphertext, password)?
        } else {
            continue;
        };
        bags(&contents, password, &mut certificates, &mut key)?;
    }
    let key = key.ok_or("the PFX holds no private key")?;
    if certificates.is_empty() {
        return Err("the PFX holds no certificate");
    }
    Ok(Pfx { certificates, key })
}

/// The OCTET STRING inside a `data` ContentInfo.
fn content_data(info: &[u8]) -> Result<&[u8], Problem> {
    let mut c = Der::new(info);
    if der(c.expect(OID, ""))? != DATA {
        return Err(MALFORMED);
    }
    der(Der::new(der(c.expect(EXPLICIT_0, ""))?).expect(OCTET_STRING, ""))
}

/// The SafeBags of a SafeContents: certificates and the key.
fn bags(
    contents: &[u8],
    password: &str,
    certificates: &mut Vec<CertificateDer<'static>>,
    key: &mut Option<PrivateKeyDer<'static>>,
) -> Result<(), Problem> {
    let mut bags = Der::new(der(Der::new(contents).expect(SEQUENCE, ""))?);
    while !bags.is_empty() {
        let mut bag = Der::new(der(bags.expect(SEQUENCE, ""))?);
        let id = der(bag.expect(OID, ""))?;
        let value = der(bag.expect(EXPLICIT_0, ""))?;
        if id == CERT_BAG {
            let mut cert = Der::new(der(Der::new(value).expect(SEQUENCE, ""))?);
            if der(cert.expect(OID, ""))? == X509_CERTIFICATE {
                let bytes =
                    der(Der::new(der(cert.expect(EXPLICIT_0, ""))?).expect(OCTET_STRING, ""))?;
                certificates.push(CertificateDer::from(bytes.to_vec()));
            }
        } else if id == KEY_BAG {
            *key = Some(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                value.to_vec(),
            )));
        } else if id == SHROUDED_KEY_BAG {
            let mut info = Der::new(der(Der::new(value).expect(SEQUENCE, ""))?);
            let algorithm = der(info.expect(SEQUENCE, ""))?;
            let ciphertext = der(info.expect(OCTET_STRING, ""))?;
            let pkcs8 = decrypt(algorithm, ciphertext, password)?;
            *key = Some(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8)));
        }
    }
    Ok(())
}

/// Decrypts with a PBES2 AlgorithmIdentifier (its contents: the OID, the params).
fn decrypt(algorithm: &[u8], ciphertext: &[u8], password: &str) -> Result<Vec<u8>, Problem> {
    let mut a = Der::new(algorithm);
    let oid = der(a.expect(OID, ""))?;
    if oid.starts_with(LEGACY_PREFIX) {
        return Err("the PFX is encrypted with a legacy cipher (3DES or RC2): export it again with AES (OpenSSL 3's default, or -keypbe AES-256-CBC -certpbe AES-256-CBC)");
    }
    if oid != PBES2 {
        return Err("the PFX is encrypted with an unknown scheme (PBES2 with AES is read)");
    }
    let mut params = Der::new(der(a.expect(SEQUENCE, ""))?);
    let mut kdf = Der::new(der(params.expect(SEQUENCE, ""))?);
    if der(kdf.expect(OID, ""))? != PBKDF2 {
        return Err("the PFX derives its key other than with PBKDF2");
    }
    let mut kdf_params = Der::new(der(kdf.expect(SEQUENCE, ""))?);
    let salt = der(kdf_params.expect(OCTET_STRING, ""))?;
    let rounds = der(kdf_params.expect(INTEGER, ""))?
        .iter()
        .try_fold(0u32, |n, b| n.checked_mul(256)?.checked_add(u32::from(*b)))
        .and_then(std::num::NonZeroU32::new)
        .ok_or(MALFORMED)?;
    if rounds.get() > MAX_ROUNDS {
        return Err("the PFX asks for more than 10,000 PBKDF2 rounds");
    }
    if kdf_params.peek_tag() == Some(INTEGER) {
        der(kdf_params.expect(INTEGER, ""))?;
    }
    let prf = match kdf_params.peek_tag() {
        Some(SEQUENCE) => {
            let mut p = Der::new(der(kdf_params.expect(SEQUENCE, ""))?);
            match der(p.expect(OID, ""))?.strip_prefix(HMAC_PREFIX) {
                Some([7]) => pbkdf2::PBKDF2_HMAC_SHA1,
                Some([9]) => pbkdf2::PBKDF2_HMAC_SHA256,
                Some([10]) => pbkdf2::PBKDF2_HMAC_SHA384,
                Some([11]) => pbkdf2::PBKDF2_HMAC_SHA512,
                _ => return Err("the PFX uses an unknown PBKDF2 hash"),
            }
        }
        _ => pbkdf2::PBKDF2_HMAC_SHA1,
    };
    let mut scheme = Der::new(der(params.expect(SEQUENCE, ""))?);
    let key_len = match der(scheme.expect(OID, ""))?.strip_prefix(AES_PREFIX) {
        Some([2]) => 16,
        Some([22]) => 24,
        Some([42]) => 32,
        _ => return Err("the PFX is encrypted with a cipher other than AES-CBC"),
    };
    let iv = der(scheme.expect(OCTET_STRING, ""))?;
    let mut key = vec![0u8; key_len];
    pbkdf2::derive(prf, rounds, salt, password.as_bytes(), &mut key);
    crate::policy::expr::ciphers::decrypt("Aes", ciphertext, &key, iv)
        .map_err(|_| "the PFX does not open with this password")
}
