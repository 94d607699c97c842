//! JWT verification, cold (signature checked) against cached (the verified-token cache), for
//! RS256 and ES256 tokens: `cargo bench --bench jwt`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcpgate::auth::jwks::KeyStore;
use mcpgate::auth::jwt::JwtVerifier;
use mcpgate::auth::keys;
use mcpgate::config::{ClaimNames, JwtConfig};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::json;

const ISSUER: &str = "https://idp.bench/";
const AUDIENCE: &str = "https://mcp.bench/mcp";

/// A token signed by a fresh key of `alg`, and the JWKS that verifies it.
fn token_and_jwks(alg: Algorithm) -> (String, String) {
    let mut rng = rand::thread_rng();
    let (encoding, jwk) = match alg {
        Algorithm::RS256 => {
            let key = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
            let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
            let jwk = json!({"kty": "RSA", "kid": "k", "alg": "RS256",
                "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be())});
            (EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(), jwk)
        }
        _ => {
            use p256::pkcs8::EncodePrivateKey as _;
            let key = p256::SecretKey::random(&mut rng);
            let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
            let mut jwk: serde_json::Value =
                serde_json::from_str(&key.public_key().to_jwk_string()).unwrap();
            jwk["kid"] = json!("k");
            (EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(), jwk)
        }
    };
    let mut header = Header::new(alg);
    header.kid = Some("k".into());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "bench", "exp": exp,
        "scope": "mcp tools.call", "groups": ["sre", "dev"]});
    let token = jsonwebtoken::encode(&header, &claims, &encoding).unwrap();
    (token, json!({"keys": [jwk]}).to_string())
}

fn verifier(jwks: &str, alg: Algorithm) -> JwtVerifier {
    let config = JwtConfig {
        issuer: ISSUER.into(),
        audiences: vec![AUDIENCE.into()],
        jwks: None,
        key_files: vec![],
        algorithms: vec![alg],
        leeway: Duration::from_secs(60),
        required_claims: vec![],
        claims: ClaimNames::default(),
    };
    let store = KeyStore::new(
        keys::from_jwks_json(jwks).unwrap(),
        None,
        reqwest::Client::new(),
    );
    JwtVerifier::new(config, Arc::new(store))
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("jwt_verify");
    for (name, alg) in [("RS256", Algorithm::RS256), ("ES256", Algorithm::ES256)] {
        let (token, jwks) = token_and_jwks(alg);
        group.bench_function(format!("{name}/cold"), |b| {
            b.to_async(&runtime).iter_batched(
                || verifier(&jwks, alg),
                |v| {
                    let token = token.clone();
                    // The verifier is returned so that dropping it is not timed.
                    async move {
                        v.verify(&token).await.unwrap();
                        v
                    }
                },
                BatchSize::SmallInput,
            );
        });
        let warm = verifier(&jwks, alg);
        runtime.block_on(warm.verify(&token)).unwrap();
        group.bench_function(format!("{name}/cached"), |b| {
            b.to_async(&runtime)
                .iter(|| async { warm.verify(&token).await.unwrap() });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
