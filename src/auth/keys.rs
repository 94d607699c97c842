//! Verification keys: parsed from JWKS documents (RFC 7517 §5) and static key files.
//!
//! A key is kept with its `kid` and, when the JWK names one, its `alg`; a token's header must
//! agree with both. Keys that cannot verify signatures (encryption keys, symmetric `oct` keys,
//! unknown key types) are skipped, never an error for the rest of the set: one odd key in an
//! identity provider's JWKS must not lock everyone out.

use std::path::Path;

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// One public key a token signature can be checked against.
#[derive(Clone)]
pub struct VerifyingKey {
    /// `kid`, if the key has one (PEM files have none).
    pub kid: Option<String>,
    /// The one algorithm the key is for, when its JWK says (`alg`).
    pub alg: Option<Algorithm>,
    /// The key.
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("family", &self.key.family())
            .finish()
    }
}

impl VerifyingKey {
    /// Whether this key may verify a token signed with `alg` (and `kid`, when the token names
    /// one): same key family, same `alg` if the key pins one, same `kid`.
    pub fn accepts(&self, alg: Algorithm, kid: Option<&str>) -> bool {
        self.key.family() == alg.family()
            && self.alg.is_none_or(|a| a == alg)
            && kid.is_none_or(|k| self.kid.as_deref() == Some(k))
    }
}

/// The signature keys of a JWKS document (`{"keys": [...]}`) or of a single JWK.
///
/// # Errors
/// A message when the text is not JSON, or neither a JWKS nor a JWK.
pub fn from_jwks_json(text: &str) -> Result<Vec<VerifyingKey>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let entries = match value.get("keys") {
        Some(Value::Array(keys)) => keys.clone(),
        Some(_) => return Err("`keys` must be an array".into()),
        None if value.get("kty").is_some() => vec![value],
        None => return Err("neither a JWKS (`keys`) nor a JWK (`kty`)".into()),
    };
    Ok(entries.into_iter().filter_map(from_jwk_value).collect())
}

fn from_jwk_value(value: Value) -> Option<VerifyingKey> {
    let kid = value.get("kid").and_then(Value::as_str).map(str::to_string);
    let jwk: Jwk = match serde_json::from_value(value) {
        Ok(jwk) => jwk,
        Err(e) => {
            tracing::warn!(?kid, error = %e, "skipping a JWK that cannot be read");
            return None;
        }
    };
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) || matches!(
        jwk.algorithm,
        AlgorithmParameters::OctetKey(_) | AlgorithmParameters::Other(_)
    ) {
        tracing::debug!(?kid, "skipping a JWK that is not a public signature key");
        return None;
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => match a.to_string().parse::<Algorithm>() {
            Ok(alg) => Some(alg),
            Err(_) => {
                tracing::debug!(?kid, alg = %a, "skipping a JWK for a non-signature algorithm");
                return None;
            }
        },
    };
    match DecodingKey::from_jwk(&jwk) {
        Ok(key) => Some(VerifyingKey { kid, alg, key }),
        Err(e) => {
            tracing::warn!(?kid, error = %e, "skipping a JWK that is not a valid key");
            None
        }
    }
}

/// Keys from a file: a PEM public key or certificate (RSA, EC or Ed25519), or JWK / JWKS JSON.
///
/// # Errors
/// A message when the file cannot be read or holds no usable signature key.
pub fn load_file(path: &Path) -> Result<Vec<VerifyingKey>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let keys = if bytes.trim_ascii_start().starts_with(b"{") {
        from_jwks_json(&String::from_utf8_lossy(&bytes))?
    } else {
        let key = DecodingKey::from_rsa_pem(&bytes)
            .or_else(|_| DecodingKey::from_ec_pem(&bytes))
            .or_else(|_| DecodingKey::from_ed_pem(&bytes))
            .map_err(|e| {
                format!(
                    "{} is not a PEM public key or certificate (RSA, EC, Ed25519): {e}",
                    path.display()
                )
            })?;
        vec![VerifyingKey {
            kid: None,
            alg: None,
            key,
        }]
    };
    if keys.is_empty() {
        return Err(format!("{} holds no signature key", path.display()));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwks_keeps_signature_keys_and_skips_the_rest() {
        let jwks = r#"{"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "ec1", "alg": "ES256",
             "x": "NV6MPwydFpgZaxMSaDvRCQYAnZescY0riH12Z6z20b8", "y": "MPVINWeAwNOO6G96vXcJYBoMqiEG33xT2UooMTllXUY"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc",
             "x": "NV6MPwydFpgZaxMSaDvRCQYAnZescY0riH12Z6z20b8", "y": "MPVINWeAwNOO6G96vXcJYBoMqiEG33xT2UooMTllXUY"},
            {"kty": "FUTURE", "kid": "odd"}
        ]}"#;
        let keys = from_jwks_json(jwks).unwrap();
        assert_eq!(keys.len(), 1);
        let k = &keys[0];
        assert!(k.accepts(Algorithm::ES256, Some("ec1")));
        assert!(k.accepts(Algorithm::ES256, None));
        assert!(!k.accepts(Algorithm::ES256, Some("other")));
        assert!(
            !k.accepts(Algorithm::ES384, Some("ec1")),
            "the JWK pins ES256"
        );
        assert!(!k.accepts(Algorithm::RS256, Some("ec1")));
        assert!(!k.accepts(Algorithm::HS256, Some("ec1")));
    }

    #[test]
    fn rejects_what_is_not_a_key_set() {
        assert!(from_jwks_json("[]").is_err());
        assert!(from_jwks_json(r#"{"keys": 1}"#).is_err());
        assert!(from_jwks_json("nope").is_err());
    }
}
