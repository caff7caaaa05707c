//! Gateway tokens, as Azure API Management's self-hosted gateway uses them:
//! `GatewayKey <gatewayId>&<yyyyMMddHHmm>&<base64 HMAC-SHA256(key, gatewayId + "\n" + expiry)>`.
//! Pure: keys, ids and the current time come in as arguments. Regenerating a key voids
//! every token signed with it; an expired token is refused with its expiry named.
//! Must not touch: storage, HTTP.

use std::fmt;

use base64::Engine;
use ring::hmac;

/// Longest a token may live, as in APIM.
pub const MAX_TOKEN_SECONDS: u64 = 30 * 86_400;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not `GatewayKey id&expiry&signature`.
    Malformed,
    /// Expired at the given time (RFC 3339).
    Expired(String),
    /// The signature does not match either key of the gateway (or the gateway is unknown).
    BadSignature,
    /// Asked for an expiry in the past or more than 30 days ahead.
    BadExpiry,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Malformed => f.write_str(
                "malformed token: expected 'GatewayKey <gatewayId>&<yyyyMMddHHmm>&<signature>'",
            ),
            TokenError::Expired(at) => write!(f, "token expired at {at}"),
            TokenError::BadSignature => {
                f.write_str("token signature is not valid for this gateway (key regenerated?)")
            }
            TokenError::BadExpiry => {
                f.write_str("expiry must be in the future and at most 30 days ahead")
            }
        }
    }
}

/// `yyyyMMddHHmm` in UTC.
pub fn format_expiry(unix: u64) -> String {
    let text =
        crate::telemetry::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix));
    // 2026-12-31T00:00:00.000Z → 202612310000
    format!(
        "{}{}{}{}{}",
        &text[0..4],
        &text[5..7],
        &text[8..10],
        &text[11..13],
        &text[14..16]
    )
}

pub fn parse_expiry(text: &str) -> Option<u64> {
    if text.len() != 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rfc = format!(
        "{}-{}-{}T{}:{}:00Z",
        &text[0..4],
        &text[4..6],
        &text[6..8],
        &text[8..10],
        &text[10..12]
    );
    crate::telemetry::parse_rfc3339(&rfc)
}

fn sign(key: &[u8], gateway_id: &str, expiry: &str) -> String {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    let tag = hmac::sign(&k, format!("{gateway_id}\n{expiry}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

/// A new token (the `value` of APIM's generateToken), rounded down to the minute.
pub fn generate(
    key: &[u8],
    gateway_id: &str,
    expiry_unix: u64,
    now_unix: u64,
) -> Result<String, TokenError> {
    if expiry_unix <= now_unix || expiry_unix > now_unix + MAX_TOKEN_SECONDS {
        return Err(TokenError::BadExpiry);
    }
    let expiry = format_expiry(expiry_unix);
    Ok(format!(
        "GatewayKey {gateway_id}&{expiry}&{}",
        sign(key, gateway_id, &expiry)
    ))
}

/// The parts of a presented token (the `Authorization` header value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented<'a> {
    pub gateway_id: &'a str,
    pub expiry: &'a str,
    pub signature: &'a str,
}

pub fn parse(header: &str) -> Result<Presented<'_>, TokenError> {
    let rest = header
        .strip_prefix("GatewayKey ")
        .ok_or(TokenError::Malformed)?;
    let mut parts = rest.split('&');
    let (Some(gateway_id), Some(expiry), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if gateway_id.is_empty() || parse_expiry(expiry).is_none() || signature.is_empty() {
        return Err(TokenError::Malformed);
    }
    Ok(Presented {
        gateway_id,
        expiry,
        signature,
    })
}

/// Checks a presented token against the gateway's current keys; returns its expiry.
pub fn verify(token: &Presented, keys: &[&[u8]], now_unix: u64) -> Result<u64, TokenError> {
    let expiry = parse_expiry(token.expiry).ok_or(TokenError::Malformed)?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(token.signature)
        .map_err(|_| TokenError::BadSignature)?;
    let message = format!("{}\n{}", token.gateway_id, token.expiry);
    let valid = keys.iter().any(|key| {
        hmac::verify(
            &hmac::Key::new(hmac::HMAC_SHA256, key),
            message.as_bytes(),
            &sig,
        )
        .is_ok()
    });
    if !valid {
        return Err(TokenError::BadSignature);
    }
    if expiry <= now_unix {
        return Err(TokenError::Expired(crate::telemetry::rfc3339(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(expiry),
        )));
    }
    Ok(expiry)
}

/// A fresh random key (64 bytes, base64), for a gateway's primary or secondary key.
pub fn new_key() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 64];
    // SystemRandom only fails if the OS has no randomness source at all.
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_694_400; // 2026-11-26T12:00:00Z

    #[test]
    fn round_trip_expiry_and_regeneration() {
        let key = b"primary-key";
        let token = generate(key, "gw-1", NOW + 86_400, NOW).unwrap();
        assert!(
            token.starts_with("GatewayKey gw-1&202611271200&"),
            "{token}"
        );
        let presented = parse(&token).unwrap();
        assert_eq!(verify(&presented, &[b"other", key], NOW), Ok(NOW + 86_400));
        // a regenerated key voids it
        assert_eq!(
            verify(&presented, &[b"new-primary", b"new-secondary"], NOW),
            Err(TokenError::BadSignature)
        );
        // expired
        assert_eq!(
            verify(&presented, &[key], NOW + 86_400)
                .unwrap_err()
                .to_string(),
            "token expired at 2026-11-27T12:00:00.000Z"
        );
        // another gateway's id with this signature
        let forged = token.replace("gw-1&", "gw-2&");
        assert_eq!(
            verify(&parse(&forged).unwrap(), &[key], NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn bounds_and_garbage() {
        assert_eq!(generate(b"k", "g", NOW, NOW), Err(TokenError::BadExpiry));
        assert_eq!(
            generate(b"k", "g", NOW + MAX_TOKEN_SECONDS + 60, NOW),
            Err(TokenError::BadExpiry)
        );
        for bad in [
            "",
            "Bearer x",
            "GatewayKey g&2026&sig",
            "GatewayKey g&202612310000",
            "GatewayKey &202612310000&s",
            "GatewayKey g&202612310000&s&x",
        ] {
            assert_eq!(parse(bad), Err(TokenError::Malformed), "{bad}");
        }
        assert_eq!(format_expiry(1_798_675_200), "202612310000");
        assert_eq!(parse_expiry("202612310000"), Some(1_798_675_200));
        assert_ne!(new_key(), new_key());
    }
}
