//! Tokens the gateway presents to an upstream (never the client's own credentials):
//!
//! - client credentials (RFC 6749 §4.4): the gateway's own token, cached and refreshed before
//!   it expires, dropped when the upstream answers 401;
//! - token exchange (RFC 8693 §2): each caller's token traded at the authorization server for
//!   one meant for this upstream (`resource`, RFC 8707), so the upstream sees who is calling;
//!   cached per caller token until the exchanged token expires.
//!
//! The client authenticates to the token endpoint with HTTP Basic (RFC 6749 §2.3.1).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::UpstreamError;
use crate::config::{Secret, UpstreamOAuthConfig};

/// Lifetime assumed when a token response has no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// A token is renewed this long before it expires (or at 90% of its life, if sooner).
const RENEW_MARGIN: Duration = Duration::from_secs(30);
/// Most exchanged tokens kept.
const EXCHANGE_CACHE: u64 = 10_000;
/// RFC 8693 §3 token type of OAuth access tokens.
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A token and when to stop using it.
#[derive(Clone)]
struct Held {
    token: Secret,
    renew_at: Instant,
}

/// The credentials of one upstream.
pub struct UpstreamCredentials {
    config: UpstreamOAuthConfig,
    http: reqwest::Client,
    own: tokio::sync::Mutex<Option<Held>>,
    exchanged: moka::future::Cache<[u8; 32], Held>,
}

impl UpstreamCredentials {
    /// Credentials for `config`, fetched through `http`.
    pub fn new(config: UpstreamOAuthConfig, http: reqwest::Client) -> Self {
        Self {
            config,
            http,
            own: tokio::sync::Mutex::new(None),
            exchanged: moka::future::Cache::builder()
                .max_capacity(EXCHANGE_CACHE)
                .time_to_live(Duration::from_secs(3600))
                .build(),
        }
    }

    /// Whether calls made for clients carry their exchanged tokens.
    pub fn exchanges_tokens(&self) -> bool {
        self.config.token_exchange
    }

    /// The `Authorization` value of the gateway's own token (client credentials).
    ///
    /// # Errors
    /// [`UpstreamError::Credentials`] when the token endpoint fails.
    pub async fn own(&self) -> Result<String, UpstreamError> {
        Ok(format!("Bearer {}", self.own_token().await?.expose()))
    }

    /// The `Authorization` value for a call made for a client holding `caller_token`: its token
    /// exchanged for one meant for this upstream.
    ///
    /// # Errors
    /// [`UpstreamError::Credentials`] when the exchange fails, or when the caller presented no
    /// token (an API key, or no authentication): the gateway never substitutes its own
    /// identity for a caller's.
    pub async fn for_caller(&self, caller_token: Option<&Secret>) -> Result<String, UpstreamError> {
        let subject = caller_token.ok_or_else(|| UpstreamError::Credentials {
            detail: "this upstream is called with each caller's exchanged token, and the caller presented no token to exchange".into(),
        })?;
        Ok(format!("Bearer {}", self.exchange(subject).await?.expose()))
    }

    /// Forgets the gateway's own token (after the upstream answered 401).
    pub async fn invalidate(&self) {
        *self.own.lock().await = None;
    }

    async fn own_token(&self) -> Result<Secret, UpstreamError> {
        let mut own = self.own.lock().await;
        if let Some(held) = own.as_ref()
            && Instant::now() < held.renew_at
        {
            return Ok(held.token.clone());
        }
        let mut form = vec![("grant_type", "client_credentials".to_string())];
        self.common_params(&mut form);
        let held = self.request(&form).await?;
        let token = held.token.clone();
        *own = Some(held);
        Ok(token)
    }

    async fn exchange(&self, subject: &Secret) -> Result<Secret, UpstreamError> {
        let key: [u8; 32] = Sha256::digest(subject.expose().as_bytes()).into();
        if let Some(held) = self.exchanged.get(&key).await
            && Instant::now() < held.renew_at
        {
            return Ok(held.token);
        }
        let mut form = vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange".to_string(),
            ),
            ("subject_token", subject.expose().to_string()),
            ("subject_token_type", ACCESS_TOKEN_TYPE.to_string()),
            ("requested_token_type", ACCESS_TOKEN_TYPE.to_string()),
        ];
        self.common_params(&mut form);
        let held = self.request(&form).await?;
        self.exchanged.insert(key, held.clone()).await;
        Ok(held.token)
    }

    fn common_params(&self, form: &mut Vec<(&'static str, String)>) {
        form.push(("resource", self.config.resource.clone()));
        if let Some(audience) = &self.config.audience {
            form.push(("audience", audience.clone()));
        }
        if !self.config.scopes.is_empty() {
            form.push(("scope", self.config.scopes.join(" ")));
        }
    }

    async fn request(&self, form: &[(&'static str, String)]) -> Result<Held, UpstreamError> {
        let failed = |detail: String| UpstreamError::Credentials {
            detail: format!("token endpoint {}: {detail}", self.config.token_url).into(),
        };
        let response = self
            .http
            .post(self.config.token_url.clone())
            .basic_auth(
                &self.config.client_id,
                Some(self.config.client_secret.expose()),
            )
            .header("accept", "application/json")
            .form(form)
            .send()
            .await
            .map_err(|e| failed(crate::redact::error(&e)))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| failed(crate::redact::error(&e)))?;
        let body: Value = serde_json::from_slice(&bytes)
            .map_err(|e| failed(format!("HTTP {status}, not JSON: {e}")))?;
        if !status.is_success() {
            let error = body["error"].as_str().unwrap_or("unknown_error");
            return Err(failed(format!("HTTP {status}, error {error:?}")));
        }
        let token = body["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| failed("no access_token in the response".into()))?;
        if let Some(kind) = body["token_type"].as_str()
            && !kind.eq_ignore_ascii_case("bearer")
            && !kind.eq_ignore_ascii_case("N_A")
        {
            return Err(failed(format!("token_type {kind:?} is not Bearer")));
        }
        let lifetime = body["expires_in"]
            .as_u64()
            .map_or(DEFAULT_LIFETIME, Duration::from_secs);
        let early = RENEW_MARGIN.min(lifetime / 10);
        Ok(Held {
            token: Secret::new(token.to_string()),
            renew_at: Instant::now() + lifetime.saturating_sub(early),
        })
    }
}

/// Shared handle.
pub type Credentials = Arc<UpstreamCredentials>;
