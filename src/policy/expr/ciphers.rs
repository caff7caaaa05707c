//! APIM's symmetric encryption extension methods on byte[]: `bytes.Encrypt("Aes", key,
//! iv)` and `bytes.Decrypt("Aes", key, iv)`, AES with a 128, 192 or 256-bit key in CBC
//! mode with PKCS#7 padding (what .NET's `Aes.Create()` does by default). The block
//! cipher is the `aes` crate's; the mode and the padding are here.
//! Must not touch: keys of the gateway (these are the expression's own bytes), syntax.

use aes::cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit};
use aes::{Aes128, Aes192, Aes256};

use super::{err, EvalError};

const BLOCK: usize = 16;

enum Cipher {
    A128(Aes128),
    A192(Aes192),
    A256(Aes256),
}

impl Cipher {
    fn new(alg: &str, key: &[u8], iv: &[u8]) -> Result<Cipher, EvalError> {
        // Rijndael with .NET's default 128-bit block is AES
        let alg = alg.trim();
        let known = ["Aes", "AES", "Rijndael", "RijndaelManaged", "AesManaged"];
        if !known.iter().any(|k| alg.eq_ignore_ascii_case(k)) {
            return Err(err(
                "the algorithm is not supported here (Encrypt/Decrypt take \"Aes\")",
            ));
        }
        if iv.len() != BLOCK {
            return Err(err(
                "Specified initialization vector (IV) does not match the block size for this algorithm.",
            ));
        }
        const BAD_KEY: EvalError = err("Specified key is not a valid size for this algorithm.");
        Ok(match key.len() {
            16 => Cipher::A128(Aes128::new_from_slice(key).map_err(|_| BAD_KEY)?),
            24 => Cipher::A192(Aes192::new_from_slice(key).map_err(|_| BAD_KEY)?),
            32 => Cipher::A256(Aes256::new_from_slice(key).map_err(|_| BAD_KEY)?),
            _ => return Err(BAD_KEY),
        })
    }

    fn encrypt_block(&self, block: &mut [u8]) {
        let b = GenericArray::from_mut_slice(block);
        match self {
            Cipher::A128(c) => c.encrypt_block(b),
            Cipher::A192(c) => c.encrypt_block(b),
            Cipher::A256(c) => c.encrypt_block(b),
        }
    }

    fn decrypt_block(&self, block: &mut [u8]) {
        let b = GenericArray::from_mut_slice(block);
        match self {
            Cipher::A128(c) => c.decrypt_block(b),
            Cipher::A192(c) => c.decrypt_block(b),
            Cipher::A256(c) => c.decrypt_block(b),
        }
    }
}

/// `data.Encrypt(alg, key, iv)`.
pub fn encrypt(alg: &str, data: &[u8], key: &[u8], iv: &[u8]) -> Result<Vec<u8>, EvalError> {
    let cipher = Cipher::new(alg, key, iv)?;
    let pad = BLOCK - data.len() % BLOCK;
    let mut out = Vec::with_capacity(data.len() + pad);
    out.extend_from_slice(data);
    out.resize(data.len() + pad, pad as u8);
    let mut previous = [0u8; BLOCK];
    previous.copy_from_slice(iv);
    for block in out.chunks_exact_mut(BLOCK) {
        for (b, p) in block.iter_mut().zip(previous) {
            *b ^= p;
        }
        cipher.encrypt_block(block);
        previous.copy_from_slice(block);
    }
    Ok(out)
}

/// `data.Decrypt(alg, key, iv)`.
pub fn decrypt(alg: &str, data: &[u8], key: &[u8], iv: &[u8]) -> Result<Vec<u8>, EvalError> {
    let cipher = Cipher::new(alg, key, iv)?;
    const BAD_PADDING: EvalError = err("Padding is invalid and cannot be removed.");
    if data.is_empty() || !data.len().is_multiple_of(BLOCK) {
        return Err(err("The input data is not a complete block."));
    }
    let mut out = data.to_vec();
    let mut previous = [0u8; BLOCK];
    previous.copy_from_slice(iv);
    for block in out.chunks_exact_mut(BLOCK) {
        let mut this = [0u8; BLOCK];
        this.copy_from_slice(block);
        cipher.decrypt_block(block);
        for (b, p) in block.iter_mut().zip(previous) {
            *b ^= p;
        }
        previous = this;
    }
    let pad = usize::from(*out.last().ok_or(BAD_PADDING)?);
    if pad == 0
        || pad > BLOCK
        || out[out.len() - pad..]
            .iter()
            .any(|b| usize::from(*b) != pad)
    {
        return Err(BAD_PADDING);
    }
    out.truncate(out.len() - pad);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    /// NIST SP 800-38A, F.2.1 (CBC-AES128.Encrypt), first two blocks, then PKCS#7's
    /// full padding block; and a round trip with every key size.
    #[test]
    fn cbc_as_nist_and_dotnet_compute_it() {
        let key = hex("2b7e151628aed2a6abf7158809cf4f3c");
        let iv = hex("000102030405060708090a0b0c0d0e0f");
        let plain = hex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51");
        let out = encrypt("Aes", &plain, &key, &iv).unwrap();
        assert_eq!(
            out[..32],
            hex("7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2")[..]
        );
        assert_eq!(out.len(), 48, "a whole block of padding");
        assert_eq!(decrypt("Aes", &out, &key, &iv).unwrap(), plain);
        for n in [16, 24, 32] {
            let k = vec![7u8; n];
            let c = encrypt("Aes", b"hello", &k, &iv).unwrap();
            assert_eq!(c.len(), 16);
            assert_eq!(decrypt("Aes", &c, &k, &iv).unwrap(), b"hello");
        }
        assert!(encrypt("Aes", b"x", &[0; 15], &iv).is_err());
        assert!(encrypt("DES", b"x", &key, &iv).is_err());
        assert!(decrypt("Aes", &[0; 16], &key, &iv).is_err(), "bad padding");
    }
}
