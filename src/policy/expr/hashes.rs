//! System.Security.Cryptography's hashes as expressions use them: `SHA256.Create()`,
//! `new HMACSHA256(key)` and kin, `ComputeHash(bytes)`, `SHA256.HashData(bytes)`,
//! and `BitConverter.ToString` / `Convert.ToHexString` to print a hash. SHA-1/256/384/512
//! and their HMACs come from ring; MD5 (RFC 1321), which ring leaves out, is here for
//! the documents that still key caches with it.
//! Must not touch: keys of the gateway (these are the expression's own bytes), syntax.

use ring::{digest, hmac};

use super::{err, EvalError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    Md5,
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

/// A hash object: an algorithm, and the key when it is an HMAC.
#[derive(Debug)]
pub struct Hasher {
    pub algo: Algo,
    pub key: Option<Vec<u8>>,
}

/// The algorithm a type name stands for (`SHA256`, `HMACSHA256`, `SHA256Managed`…), and
/// whether it is an HMAC.
pub fn algo_of(ty: &str) -> Option<(Algo, bool)> {
    let (hmac, name) = match ty.strip_prefix("HMAC") {
        Some(rest) => (true, rest),
        None => (false, ty),
    };
    let name = name
        .trim_end_matches("CryptoServiceProvider")
        .trim_end_matches("Managed")
        .trim_end_matches("Cng");
    let algo = match name {
        "MD5" => Algo::Md5,
        "SHA1" => Algo::Sha1,
        "SHA256" => Algo::Sha256,
        "SHA384" => Algo::Sha384,
        "SHA512" => Algo::Sha512,
        _ => return None,
    };
    Some((algo, hmac))
}

impl Hasher {
    pub fn compute(&self, data: &[u8]) -> Result<Vec<u8>, EvalError> {
        match (&self.key, self.algo) {
            (None, Algo::Md5) => Ok(md5(data).to_vec()),
            (None, algo) => Ok(digest::digest(digest_of(algo), data).as_ref().to_vec()),
            (Some(key), Algo::Md5) => Ok(hmac_md5(key, data).to_vec()),
            (Some(key), algo) => {
                let k = hmac::Key::new(hmac_of(algo), key);
                Ok(hmac::sign(&k, data).as_ref().to_vec())
            }
        }
    }
}

fn digest_of(a: Algo) -> &'static digest::Algorithm {
    match a {
        Algo::Sha1 | Algo::Md5 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        Algo::Sha256 => &digest::SHA256,
        Algo::Sha384 => &digest::SHA384,
        Algo::Sha512 => &digest::SHA512,
    }
}

fn hmac_of(a: Algo) -> hmac::Algorithm {
    match a {
        Algo::Sha1 | Algo::Md5 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        Algo::Sha256 => hmac::HMAC_SHA256,
        Algo::Sha384 => hmac::HMAC_SHA384,
        Algo::Sha512 => hmac::HMAC_SHA512,
    }
}

/// `BitConverter.ToString(bytes)`: upper-case hex pairs joined by `-`.
pub fn bit_converter(bytes: &[u8]) -> String {
    let pairs: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
    pairs.join("-")
}

/// `Convert.ToHexString(bytes)`: upper-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// `Convert.FromHexString(text)`.
pub fn from_hex(text: &str) -> Result<Vec<u8>, EvalError> {
    let bad = err("The input is not a valid hex string as its length is not a multiple of 2 or it contains a non-hex character");
    if !text.len().is_multiple_of(2) {
        return Err(bad);
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or(bad.clone())
        })
        .collect()
}

/// MD5 (RFC 1321).
fn md5(data: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    // K[i] = floor(abs(sin(i + 1)) * 2^32)
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32)
        .collect();
    let mut h: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    for chunk in msg.chunks(64) {
        let w: Vec<u32> = chunk
            .chunks(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let [mut a, mut b, mut c, mut d] = h;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let rotated = a
                .wrapping_add(f)
                .wrapping_add(k[i])
                .wrapping_add(w[g])
                .rotate_left(S[i]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(rotated);
        }
        h = [
            h[0].wrapping_add(a),
            h[1].wrapping_add(b),
            h[2].wrapping_add(c),
            h[3].wrapping_add(d),
        ];
    }
    let mut out = [0u8; 16];
    for (i, word) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// HMAC-MD5 (RFC 2104).
fn hmac_md5(key: &[u8], data: &[u8]) -> [u8; 16] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..16].copy_from_slice(&md5(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |x: u8| -> Vec<u8> { block.iter().map(|b| b ^ x).collect() };
    let mut inner = pad(0x36);
    inner.extend_from_slice(data);
    let mut outer = pad(0x5c);
    outer.extend_from_slice(&md5(&inner));
    md5(&outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(algo: Algo, key: Option<&[u8]>, data: &[u8]) -> String {
        let h = Hasher {
            algo,
            key: key.map(<[u8]>::to_vec),
        };
        hex(&h.compute(data).unwrap()).to_lowercase()
    }

    #[test]
    fn known_answers() {
        // RFC 1321 and RFC 2104 test vectors; FIPS 180 "abc"
        assert_eq!(
            hash(Algo::Md5, None, b""),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(
            hash(
                Algo::Md5,
                None,
                b"The quick brown fox jumps over the lazy dog"
            ),
            "9e107d9d372bb6826bd81d3542a419d6"
        );
        assert_eq!(
            hash(Algo::Md5, Some(b"Jefe"), b"what do ya want for nothing?"),
            "750c783e6ab0b503eaa86e310a5db738"
        );
        assert_eq!(
            hash(Algo::Sha1, None, b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hash(Algo::Sha256, None, b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hash(Algo::Sha256, Some(b"Jefe"), b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(bit_converter(&[0xab, 0x01]), "AB-01");
        assert_eq!(from_hex("AB01").unwrap(), vec![0xab, 0x01]);
        assert!(from_hex("ABC").is_err());
        assert_eq!(algo_of("HMACSHA512"), Some((Algo::Sha512, true)));
        assert_eq!(algo_of("SHA256Managed"), Some((Algo::Sha256, false)));
    }
}
