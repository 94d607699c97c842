//! The verification key set: static keys plus the issuer's JWKS, fetched at start, refetched on
//! a schedule, and refetched when a token names a `kid` the set does not have — at most once per
//! `min_refetch_interval`, with concurrent callers waiting for one fetch (single flight).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use tokio::time::Instant;

use super::keys::{self, VerifyingKey};
use crate::config::JwksConfig;

/// Largest JWKS document accepted, bytes.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Static and fetched keys.
pub struct KeyStore {
    static_keys: Vec<VerifyingKey>,
    fetched: RwLock<Arc<Vec<VerifyingKey>>>,
    jwks: Option<Fetcher>,
}

struct Fetcher {
    config: JwksConfig,
    http: reqwest::Client,
    /// When the last refetch for an unknown `kid` was attempted; held across that fetch, so
    /// callers queue behind it. Scheduled fetches do not count: a key rotated just after one
    /// is still picked up at once.
    last_refetch: tokio::sync::Mutex<Option<Instant>>,
}

/// Why a JWKS could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// Network failure or non-success status.
    #[error("cannot fetch the JWKS: {0}")]
    Fetch(String),
    /// The document is not a usable key set.
    #[error("the JWKS is invalid: {0}")]
    Invalid(String),
}

impl KeyStore {
    /// A store over `static_keys` and, if configured, the JWKS at `jwks` (not fetched yet).
    pub fn new(
        static_keys: Vec<VerifyingKey>,
        jwks: Option<JwksConfig>,
        http: reqwest::Client,
    ) -> Self {
        Self {
            static_keys,
            fetched: RwLock::new(Arc::new(Vec::new())),
            jwks: jwks.map(|config| Fetcher {
                config,
                http,
                last_refetch: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The keys that may verify a token signed with `alg` naming `kid`: those with that `kid`
    /// (when no key has it, the JWKS is refetched first, rate-limited — the issuer may have
    /// rotated), else keys without a `kid` (static PEM keys) of the right family.
    pub async fn candidates(&self, alg: Algorithm, kid: Option<&str>) -> Vec<VerifyingKey> {
        let found = self.matching(alg, kid);
        if !found.is_empty() || kid.is_none() {
            return found;
        }
        if let Some(fetcher) = &self.jwks {
            self.refetch(fetcher).await;
            let found = self.matching(alg, kid);
            if !found.is_empty() {
                return found;
            }
        }
        self.static_keys
            .iter()
            .filter(|k| k.kid.is_none() && k.accepts(alg, None))
            .cloned()
            .collect()
    }

    fn matching(&self, alg: Algorithm, kid: Option<&str>) -> Vec<VerifyingKey> {
        let fetched = Arc::clone(&self.fetched.read().unwrap_or_else(|e| e.into_inner()));
        self.static_keys
            .iter()
            .chain(fetched.iter())
            .filter(|k| k.accepts(alg, kid))
            .cloned()
            .collect()
    }

    /// Fetches the JWKS now (at start and on the schedule). `Ok(false)` without a JWKS.
    ///
    /// # Errors
    /// [`JwksError`] when the fetch fails; the previous keys stay in force.
    pub async fn refresh(&self) -> Result<bool, JwksError> {
        let Some(fetcher) = &self.jwks else {
            return Ok(false);
        };
        let keys = fetcher.fetch().await?;
        tracing::info!(url = %crate::redact::url(&fetcher.config.url), keys = keys.len(), "JWKS loaded");
        *self.fetched.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(true)
    }

    /// A refetch for an unknown `kid`, skipped when the last attempt is more recent than
    /// `min_refetch_interval` (a caller that waited behind another's fetch finds it recent and
    /// uses its keys).
    async fn refetch(&self, fetcher: &Fetcher) {
        let mut last = fetcher.last_refetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < fetcher.config.min_refetch_interval) {
            return;
        }
        *last = Some(Instant::now());
        match fetcher.fetch().await {
            Ok(keys) => {
                tracing::info!(url = %crate::redact::url(&fetcher.config.url), keys = keys.len(), "JWKS refetched for an unknown kid");
                *self.fetched.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
            }
            Err(e) => tracing::warn!(error = %e, "JWKS refetch failed; keeping the previous keys"),
        }
    }

    /// The scheduled refetch period, if a JWKS is configured.
    pub fn refresh_interval(&self) -> Option<Duration> {
        self.jwks.as_ref().map(|f| f.config.refresh_interval)
    }
}

impl Fetcher {
    async fn fetch(&self) -> Result<Vec<VerifyingKey>, JwksError> {
        let response = self
            .http
            .get(self.config.url.clone())
            .header("accept", "application/jwk-set+json, application/json")
            .send()
            .await
            .map_err(|e| JwksError::Fetch(crate::redact::error(&e)))?;
        if !response.status().is_success() {
            return Err(JwksError::Fetch(format!("HTTP {}", response.status())));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| JwksError::Fetch(crate::redact::error(&e)))?;
        if body.len() > MAX_JWKS_BYTES {
            return Err(JwksError::Invalid(format!(
                "larger than {MAX_JWKS_BYTES} bytes"
            )));
        }
        let keys =
            keys::from_jwks_json(&String::from_utf8_lossy(&body)).map_err(JwksError::Invalid)?;
        if keys.is_empty() {
            return Err(JwksError::Invalid("no signature keys".into()));
        }
        Ok(keys)
    }
}
