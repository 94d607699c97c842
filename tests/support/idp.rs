//! A test identity provider: real RSA, EC P-256 and Ed25519 keys generated in the test, tokens
//! signed with them, and a JWKS endpoint on 127.0.0.1 whose key set can be rotated and whose
//! fetches are counted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

pub const ISSUER: &str = "https://idp.test/";
pub const RESOURCE: &str = "https://mcp.test/mcp";

/// A signing key and its public JWK.
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Value,
    /// SPKI PEM of the public key.
    pub public_pem: String,
}

impl TestKey {
    pub fn rsa(kid: &str) -> Self {
        let key = rsa_key().clone();
        Self::from_rsa(kid, &key)
    }

    /// A second, distinct RSA key (for rotation and wrong-signature tests).
    pub fn other_rsa(kid: &str) -> Self {
        static OTHER: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
        let key = OTHER.get_or_init(|| {
            rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("RSA key")
        });
        Self::from_rsa(kid, key)
    }

    fn from_rsa(kid: &str, key: &rsa::RsaPrivateKey) -> Self {
        let pem = key.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8");
        let public = key.to_public_key();
        Self {
            kid: kid.into(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).expect("RSA PEM"),
            jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be())}),
            public_pem: public.to_public_key_pem(LineEnding::LF).expect("SPKI"),
        }
    }

    pub fn ec(kid: &str) -> Self {
        use p256::pkcs8::EncodePrivateKey as _;
        let key = p256::SecretKey::random(&mut rand::thread_rng());
        let pem = key.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8");
        let mut jwk: Value = serde_json::from_str(&key.public_key().to_jwk_string()).unwrap();
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!("ES256");
        Self {
            kid: kid.into(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_pem(pem.as_bytes()).expect("EC PEM"),
            jwk,
            public_pem: String::new(),
        }
    }

    pub fn ed25519(kid: &str) -> Self {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let key = ed25519_dalek::SigningKey::generate(&mut rand::thread_rng());
        let pem = key.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8");
        Self {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_pem(pem.as_bytes()).expect("Ed25519 PEM"),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA",
                "x": URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes())}),
            public_pem: String::new(),
        }
    }

    /// A token with `claims`, signed by this key, naming its `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }
}

fn rsa_key() -> &'static rsa::RsaPrivateKey {
    static KEY: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("RSA key"))
}

/// Unix time now, seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Valid claims for subject `sub`, good for ten minutes.
pub fn claims(sub: &str) -> Value {
    json!({"iss": ISSUER, "aud": RESOURCE, "sub": sub, "exp": now() + 600, "iat": now(),
        "scope": "mcp", "client_id": "test-client"})
}

/// The JWKS endpoint.
pub struct Jwks {
    pub addr: SocketAddr,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

impl Jwks {
    /// Serves the public JWKs of `keys` at `http://{addr}/jwks`.
    pub async fn start(keys: &[&TestKey]) -> Self {
        let keys = Arc::new(Mutex::new(
            keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>(),
        ));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (k, f) = (Arc::clone(&keys), Arc::clone(&fetches));
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                f.fetch_add(1, Ordering::SeqCst);
                let body = json!({"keys": k.lock().unwrap().clone()});
                async move { axum::Json(body) }
            }),
        );
        let (addr, task) = super::serve(app).await;
        Self {
            addr,
            keys,
            fetches,
            _task: task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    /// Replaces the published key set (the issuer rotated its keys).
    pub fn publish(&self, keys: &[&TestKey]) {
        *self.keys.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    /// How many times the key set was fetched.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}
