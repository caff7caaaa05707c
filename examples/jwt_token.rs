//! Benchmark helper (bench/policies.sh): prints the RSA public key (n, e, base64url) of a
//! PKCS#1 DER private key and an RS256 token signed with it (aud "bench", exp in an
//! hour), then the time of one RS256 verification by the gateway's validate-jwt code.
//! Usage: jwt_token KEY.der

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, RsaKeyPair};

fn main() {
    let path = std::env::args().nth(1).expect("usage: jwt_token KEY.der");
    let key = RsaKeyPair::from_der(&std::fs::read(path).expect("read key")).expect("RSA key");
    let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(key.public());
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600;
    let msg = format!(
        "{}.{}",
        b64(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64(format!(r#"{{"aud":"bench","exp":{exp},"sub":"bench"}}"#).as_bytes())
    );
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(
        &signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        msg.as_bytes(),
        &mut sig,
    )
    .expect("sign");
    let token = format!("{msg}.{}", b64(&sig));
    println!("{} {} {token}", b64(&c.n), b64(&c.e));
    // one verification, timed through the gateway's own code path
    let doc = format!(
        r#"<validate-jwt header-name="Authorization"><issuer-signing-keys><key n="{}" e="{}" /></issuer-signing-keys></validate-jwt>"#,
        b64(&c.n),
        b64(&c.e)
    );
    let xml = roxmltree::Document::parse(&doc).expect("xml");
    let v = edgegate::policy::jwt::parse_policy(xml.root_element()).expect("policy");
    let n = 2000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        v.verify(&token).expect("valid");
    }
    eprintln!(
        "one RS256 verification (2048-bit key): {:.1} us (mean of {n})",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}
