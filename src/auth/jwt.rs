//! Bearer JWT validation (RFC 7519, RFC 9068 access tokens; MCP `basic/authorization` "Token
//! Validation"): the header's `alg` must be on the configured allow-list (asymmetric only) and
//! match a key of the same family (and `kid`, and the key's own `alg`); then the signature,
//! `iss`, `aud` (the gateway's resource URI, RFC 8707), `exp` and `nbf` with leeway, and the
//! configured required claims. A verified token is cached under its SHA-256 until it expires,
//! so the hot path does not check the same signature twice.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::Principal;
use super::jwks::KeyStore;
use crate::config::{ClaimNames, JwtConfig};

/// Most verified tokens kept.
const CACHE_CAPACITY: u64 = 100_000;

/// Why a token was refused; the message is safe to show the client (`error_description`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(pub String);

/// A verified token in the cache: its principal and when it stops being valid.
#[derive(Clone)]
struct Verified {
    principal: Arc<Principal>,
    /// `exp` plus leeway, Unix seconds.
    valid_until: u64,
}

/// Verifies bearer JWTs against one issuer's keys.
pub struct JwtVerifier {
    config: JwtConfig,
    keys: Arc<KeyStore>,
    cache: moka::sync::Cache<[u8; 32], Verified>,
}

struct UntilExpiry;

impl moka::Expiry<[u8; 32], Verified> for UntilExpiry {
    #[allow(clippy::disallowed_types)] // moka's trait signature
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Verified,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(
            value.valid_until.saturating_sub(unix_now()),
        ))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl JwtVerifier {
    /// A verifier for `config` over `keys`.
    pub fn new(config: JwtConfig, keys: Arc<KeyStore>) -> Self {
        Self {
            config,
            keys,
            cache: moka::sync::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .expire_after(UntilExpiry)
                .build(),
        }
    }

    /// The principal a bearer token stands for.
    ///
    /// # Errors
    /// [`TokenError`] naming what is wrong: malformed, algorithm not allowed, no key for its
    /// `kid` (after a JWKS refetch), bad signature, expired, not yet valid, wrong issuer or
    /// audience, a required claim missing.
    pub async fn verify(&self, token: &str) -> Result<Arc<Principal>, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.cache.get(&digest)
            && unix_now() < hit.valid_until
        {
            return Ok(hit.principal);
        }
        let verified = self.verify_uncached(token).await?;
        let principal = Arc::clone(&verified.principal);
        self.cache.insert(digest, verified);
        Ok(principal)
    }

    async fn verify_uncached(&self, token: &str) -> Result<Verified, TokenError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| TokenError("the token is not a well-formed JWT".into()))?;
        if !self.config.algorithms.contains(&header.alg) {
            return Err(TokenError(format!(
                "signature algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let candidates = self
            .keys
            .candidates(header.alg, header.kid.as_deref())
            .await;
        if candidates.is_empty() {
            return Err(TokenError(match header.kid {
                Some(kid) => format!("no key with kid {kid:?} is known for this issuer"),
                None => "no key of the issuer can verify this token".into(),
            }));
        }
        let validation = self.validation(header.alg);
        let mut last = TokenError("invalid signature".into());
        for key in &candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => return self.accept(data.claims, token),
                // Another key of the same family may be the right one (keys without kid).
                Err(e) if *e.kind() == ErrorKind::InvalidSignature => {}
                Err(e) => {
                    last = describe(e.kind());
                    break;
                }
            }
        }
        Err(last)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.algorithms = vec![alg];
        v.leeway = self.config.leeway.as_secs();
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_issuer(&[self.config.issuer.as_str()]);
        v.set_audience(&self.config.audiences);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v
    }

    fn accept(&self, claims: Map<String, Value>, token: &str) -> Result<Verified, TokenError> {
        if let Some(missing) = self
            .config
            .required_claims
            .iter()
            .find(|c| claims.get(c.as_str()).is_none_or(Value::is_null))
        {
            return Err(TokenError(format!("required claim {missing:?} is missing")));
        }
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let mut principal = principal_from_claims(claims, &self.config.claims);
        if principal.subject.is_empty() {
            // Without `sub` (allowed only when `required_claims` leaves it out) the caller is
            // its OAuth client; a token naming neither would share one identity with every
            // other such token, and is refused.
            principal.subject = match &principal.client_id {
                Some(client) if !client.is_empty() => format!("client:{client}"),
                _ => {
                    return Err(TokenError(
                        "the token names no subject (`sub`) nor client (`client_id`, `azp`)".into(),
                    ));
                }
            };
        }
        principal.token = Some(crate::config::Secret::new(token.to_string()));
        Ok(Verified {
            principal: Arc::new(principal),
            valid_until: exp.saturating_add(self.config.leeway.as_secs()),
        })
    }
}

fn describe(kind: &ErrorKind) -> TokenError {
    TokenError(match kind {
        ErrorKind::ExpiredSignature => "the token has expired".to_string(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidIssuer => "the token was issued by another issuer".into(),
        ErrorKind::InvalidAudience => "the token is not meant for this resource (aud)".into(),
        ErrorKind::InvalidSignature => "invalid signature".into(),
        ErrorKind::InvalidAlgorithm => "the token's algorithm does not match its key".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("required claim {c:?} is missing"),
        _ => "the token is not a well-formed JWT".into(),
    })
}

/// Reads a principal out of verified claims (also used by `mcpgate policy explain` for the
/// claims a security engineer supplies).
pub fn principal_from_claims(claims: Map<String, Value>, names: &ClaimNames) -> Principal {
    let text = |key: &str| claims.get(key).and_then(Value::as_str).map(str::to_string);
    let list = |key: &str| -> Vec<String> {
        match claims.get(key) {
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut scopes = list(&names.scope);
    if scopes.is_empty() && names.scope == "scope" {
        // Some issuers use `scp` (an array) instead of RFC 8693's `scope`.
        scopes = list("scp");
    }
    Principal {
        subject: text("sub").unwrap_or_default(),
        issuer: text("iss"),
        client_id: text(&names.client_id).or_else(|| text("azp")),
        scopes,
        groups: list(&names.groups),
        roles: list(&names.roles),
        api_key: None,
        mtls_identity: None,
        claims: Arc::new(claims),
        token: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn principals_read_the_configured_claims() {
        let claims = json!({"sub": "alice", "iss": "https://idp", "azp": "cli", "scope": "a b",
            "grp": ["sre", "dev"], "roles": "admin"});
        let names = ClaimNames {
            groups: "grp".into(),
            ..ClaimNames::default()
        };
        let Value::Object(map) = claims else {
            unreachable!()
        };
        let p = principal_from_claims(map, &names);
        assert_eq!(p.subject, "alice");
        assert_eq!(p.client_id.as_deref(), Some("cli"));
        assert_eq!(p.scopes, ["a", "b"]);
        assert_eq!(p.groups, ["sre", "dev"]);
        assert_eq!(p.roles, ["admin"]);
    }
}
