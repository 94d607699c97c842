//! Sealed legacy session ids (DESIGN.md §5.4).
//!
//! The `Mcp-Session-Id` a legacy client receives is the session's state itself, encrypted and
//! authenticated with ChaCha20-Poly1305 under the gateway's session key: negotiated version,
//! client capabilities and info, a digest of the principal, and the issue time. Any replica with
//! the same key resumes the session without shared storage; a forged, altered or foreign token
//! fails to open and the request gets 404. The token is URL-safe base64 of
//! `nonce (12 bytes) ‖ ciphertext ‖ tag`, which is visible ASCII as the spec requires.
//!
//! Ending a session (`DELETE`) records its id in a local revocation list kept until the token
//! could have expired anyway; replicas do not share that list.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::seal::Sealer;

/// Associated data binding tokens to this purpose and format version.
const AAD: &[u8] = b"mcpgate/session/v1";

/// What a sealed session id carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// Session id (random), the key of local state and upstream sessions.
    #[serde(rename = "sid")]
    pub id: Uuid,
    /// Negotiated protocol revision.
    #[serde(rename = "ver")]
    pub version: String,
    /// The client's `ClientCapabilities` from `initialize`.
    #[serde(rename = "caps")]
    pub capabilities: Value,
    /// The client's `clientInfo` from `initialize`.
    #[serde(rename = "info", default, skip_serializing_if = "Option::is_none")]
    pub client_info: Option<Value>,
    /// Hex SHA-256 digest of the principal the session belongs to.
    #[serde(rename = "pd")]
    pub principal_digest: String,
    /// Issue time, seconds since the Unix epoch.
    #[serde(rename = "iat")]
    pub issued_at: u64,
}

/// Most recently used session ids kept opened ([`SessionSealer::open`]): about 1 KiB each.
const OPENED_CAPACITY: u64 = 16 * 1024;
/// How long an opened session id stays cached without use.
const OPENED_IDLE: Duration = Duration::from_secs(300);

/// Seals and opens session ids. Clones share the cache of opened ids.
#[derive(Clone)]
pub struct SessionSealer {
    sealer: Sealer,
    max_lifetime: Duration,
    /// Session ids opened recently → their claims: a legacy client sends its id with every
    /// request, and decrypting it costs microseconds where a lookup costs a few hundred
    /// nanoseconds. Only ids that opened are ever inserted, keyed by the exact token, so a
    /// hit is what decrypting would give; expiry is still checked on every use.
    opened: moka::sync::Cache<Box<str>, Arc<SessionClaims>>,
}

impl SessionSealer {
    /// A session sealer over `sealer` whose ids live at most `max_lifetime`.
    pub fn new(sealer: Sealer, max_lifetime: Duration) -> Self {
        Self {
            sealer,
            max_lifetime,
            opened: moka::sync::Cache::builder()
                .max_capacity(OPENED_CAPACITY)
                .time_to_idle(OPENED_IDLE)
                .build(),
        }
    }

    /// Seals claims into a session id.
    pub fn seal(&self, claims: &SessionClaims) -> String {
        self.sealer.seal(AAD, claims)
    }

    /// Opens a session id; `None` when it is malformed, forged, altered or expired. Revocation
    /// is the caller's to check (the revocation list is per gateway).
    pub fn open(&self, token: &str) -> Option<Arc<SessionClaims>> {
        let claims = match self.opened.get(token) {
            Some(claims) => claims,
            None => {
                let claims = Arc::new(self.sealer.open::<SessionClaims>(AAD, token)?);
                self.opened.insert(token.into(), Arc::clone(&claims));
                claims
            }
        };
        let age = now_secs().saturating_sub(claims.issued_at);
        (age <= self.max_lifetime.as_secs()).then_some(claims)
    }

    /// The longest life of a session id.
    pub fn max_lifetime(&self) -> Duration {
        self.max_lifetime
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims() -> SessionClaims {
        SessionClaims {
            id: Uuid::new_v4(),
            version: "2025-11-25".into(),
            capabilities: json!({"roots": {}}),
            client_info: Some(json!({"name": "c", "version": "1"})),
            principal_digest: "abc".into(),
            issued_at: now_secs(),
        }
    }

    #[test]
    fn round_trips_and_is_ascii() {
        let s = SessionSealer::new(Sealer::new(None), Duration::from_secs(60));
        let c = claims();
        let token = s.seal(&c);
        assert!(token.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        assert_eq!(s.open(&token).as_deref(), Some(&c));
        assert_eq!(s.open(&token).as_deref(), Some(&c), "again, from the cache");
    }

    #[test]
    fn rejects_forged_altered_foreign_and_expired() {
        let key = [7u8; 32];
        let s = SessionSealer::new(Sealer::new(Some(key)), Duration::from_secs(60));
        let token = s.seal(&claims());
        let mut altered = token.clone().into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert!(s.open(std::str::from_utf8(&altered).unwrap()).is_none());
        assert!(s.open("forged-session-id").is_none());
        assert!(s.open("").is_none());
        let other = SessionSealer::new(Sealer::new(Some([8u8; 32])), Duration::from_secs(60));
        assert!(other.open(&token).is_none(), "another key must not open it");
        let replica = SessionSealer::new(Sealer::new(Some(key)), Duration::from_secs(60));
        assert!(
            replica.open(&token).is_some(),
            "a replica with the key resumes it"
        );
        let mut old = claims();
        old.issued_at -= 120;
        assert!(s.open(&s.seal(&old)).is_none(), "expired");
    }

    #[test]
    fn a_cached_id_still_expires() {
        let s = SessionSealer::new(Sealer::new(None), Duration::from_secs(60));
        let mut c = claims();
        c.issued_at -= 59;
        let token = s.seal(&c);
        assert!(s.open(&token).is_some(), "opened and cached");
        std::thread::sleep(Duration::from_millis(2100));
        assert!(s.open(&token).is_none(), "past its lifetime, cached or not");
    }
}
