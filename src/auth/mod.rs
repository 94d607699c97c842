//! Who is calling: the gateway as an OAuth 2.1 resource server (MCP `basic/authorization`).
//!
//! Every request to the MCP endpoints carries `Authorization: Bearer <token>` — a JWT verified
//! against the issuer's keys ([`jwt`], [`jwks`], [`keys`]), or a static API key ([`api_key`]),
//! which may also come in `X-API-Key`. Without credentials the answer is 401 with a challenge
//! pointing at the protected resource metadata ([`metadata`], RFC 9728); with credentials that
//! lack a required scope, 403 `insufficient_scope`. The result is a [`Principal`], which later
//! stages (sessions, policy, audit) read. Without an `auth` section every caller is the
//! anonymous principal, and the gateway says so at start. A client certificate verified by the
//! TLS listener adds its identity to the principal; it does not replace the token.

pub mod api_key;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod metadata;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{HeaderMap, header};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::{AuthConfig, Secret};
use api_key::ApiKeys;
use jwks::KeyStore;
use jwt::JwtVerifier;
use metadata::ResourceMetadata;

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// Subject: the `sub` claim, `api-key:{name}`, or `anonymous`.
    pub subject: String,
    /// Issuer (`iss`), [`api_key::API_KEY_ISSUER`] for API keys, `None` when anonymous.
    pub issuer: Option<String>,
    /// OAuth client id (`client_id` or `azp`), or the API key name.
    pub client_id: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Groups (from the configured claim, or the API key's groups).
    pub groups: Vec<String>,
    /// Roles (from the configured claim).
    pub roles: Vec<String>,
    /// Name of the API key used, if any.
    pub api_key: Option<String>,
    /// Identity of the verified TLS client certificate (first URI or DNS SAN, else the CN).
    pub mtls_identity: Option<String>,
    /// Every verified claim of the token (empty for API keys and anonymous callers).
    pub claims: Arc<Map<String, Value>>,
    /// The bearer token itself, for RFC 8693 token exchange at upstreams configured for it
    /// (JWT callers only; never forwarded as is).
    pub token: Option<Secret>,
}

impl Principal {
    /// The caller when no authentication is configured.
    pub fn anonymous() -> Self {
        Self {
            subject: "anonymous".into(),
            issuer: None,
            client_id: None,
            scopes: Vec::new(),
            groups: Vec::new(),
            roles: Vec::new(),
            api_key: None,
            mtls_identity: None,
            claims: Arc::new(Map::new()),
            token: None,
        }
    }

    /// Hex SHA-256 of issuer, subject and (when the connection presented one) the client
    /// certificate identity: what legacy sessions, HTTP+SSE connections, task ids and MRTR
    /// state are bound to, without putting the identity itself in them. With mTLS and no
    /// `auth`, every caller is anonymous by token but still a principal of its own by
    /// certificate; with both, a session needs the same token subject *and* certificate.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.issuer.as_deref().unwrap_or("").as_bytes());
        h.update([0]);
        h.update(self.subject.as_bytes());
        if let Some(identity) = &self.mtls_identity {
            // Absent, the digest is what it was before certificates took part (sessions of
            // callers without one survive an upgrade).
            h.update(b"\0mtls\0");
            h.update(identity.as_bytes());
        }
        base16ct::lower::encode_string(&h.finalize())
    }
}

/// The identity of a verified TLS client certificate, put on each request by the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// First URI SAN, else first DNS SAN, else the subject CN.
    pub identity: String,
}

/// Why a request was refused at the front door.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No usable credentials (RFC 6750 §3.1: the challenge carries no error code).
    #[error("authentication required ({0})")]
    Missing(&'static str),
    /// Credentials that are not valid (401 `invalid_token`).
    #[error("{0}")]
    InvalidToken(String),
    /// Valid credentials without the scopes this request needs (403 `insufficient_scope`).
    #[error("the request needs scope {:?}", needed.join(" "))]
    InsufficientScope {
        /// The scopes needed.
        needed: Vec<String>,
    },
}

/// A refusal with its `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct Rejection {
    /// What is wrong.
    pub error: AuthError,
    /// The `WWW-Authenticate` value.
    pub challenge: String,
}

impl Rejection {
    /// The OAuth error code (`invalid_token`, `insufficient_scope`), if any.
    pub fn code(&self) -> Option<&'static str> {
        match self.error {
            AuthError::Missing(_) => None,
            AuthError::InvalidToken(_) => Some("invalid_token"),
            AuthError::InsufficientScope { .. } => Some("insufficient_scope"),
        }
    }
}

/// Authenticates requests.
pub struct Authenticator {
    inner: Option<Inner>,
    anonymous: Arc<Principal>,
}

struct Inner {
    jwt: Option<JwtVerifier>,
    keys: Option<Arc<KeyStore>>,
    api_keys: ApiKeys,
    metadata: ResourceMetadata,
    required_scopes: Vec<String>,
    method_scopes: BTreeMap<String, Vec<String>>,
}

/// Why authentication could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// A static key file became unreadable or invalid after validation.
    #[error("{0}")]
    Keys(String),
}

impl Authenticator {
    /// No authentication: every caller is anonymous.
    pub fn disabled() -> Self {
        Self {
            inner: None,
            anonymous: Arc::new(Principal::anonymous()),
        }
    }

    /// An authenticator for `config`; JWKS requests go through `http`. The JWKS is not fetched
    /// yet: refresh the [`Authenticator::key_store`].
    ///
    /// # Errors
    /// [`AuthSetupError`] when a static key file cannot be loaded.
    pub fn new(config: &AuthConfig, http: reqwest::Client) -> Result<Self, AuthSetupError> {
        let (jwt, keys) = match &config.jwt {
            Some(jwt) => {
                let mut static_keys = Vec::new();
                for path in &jwt.key_files {
                    static_keys.extend(keys::load_file(path).map_err(AuthSetupError::Keys)?);
                }
                let store = Arc::new(KeyStore::new(static_keys, jwt.jwks.clone(), http));
                (
                    Some(JwtVerifier::new(jwt.clone(), Arc::clone(&store))),
                    Some(store),
                )
            }
            None => (None, None),
        };
        Ok(Self {
            inner: Some(Inner {
                jwt,
                keys,
                api_keys: ApiKeys::new(&config.api_keys),
                metadata: ResourceMetadata::new(config),
                required_scopes: config.required_scopes.clone(),
                method_scopes: config.method_scopes.clone(),
            }),
            anonymous: Arc::new(Principal::anonymous()),
        })
    }

    /// The protected resource metadata, when authentication is on.
    pub fn metadata(&self) -> Option<&ResourceMetadata> {
        self.inner.as_ref().map(|i| &i.metadata)
    }

    /// The JWKS key store, when one is configured (for the scheduled refresh).
    pub fn key_store(&self) -> Option<Arc<KeyStore>> {
        self.inner.as_ref().and_then(|i| i.keys.clone())
    }

    /// The principal of a request with `headers`, over a connection with client certificate
    /// `peer`, after the scopes every request needs are checked.
    ///
    /// # Errors
    /// A [`Rejection`]: missing or invalid credentials (401), missing scopes (403).
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<&PeerCertificate>,
    ) -> Result<Arc<Principal>, Rejection> {
        let Some(inner) = &self.inner else {
            return Ok(with_peer(Arc::clone(&self.anonymous), peer));
        };
        let principal = inner.identify(headers).await?;
        inner.require(&principal, &inner.required_scopes)?;
        Ok(with_peer(principal, peer))
    }

    /// Checks the extra scopes `method` needs (`auth.method_scopes`).
    ///
    /// # Errors
    /// A 403 [`Rejection`] naming the missing scopes.
    pub fn authorize_method(&self, principal: &Principal, method: &str) -> Result<(), Rejection> {
        match &self.inner {
            Some(inner) => match inner.method_scopes.get(method) {
                Some(needed) => inner.require(principal, needed),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }
}

impl Inner {
    async fn identify(&self, headers: &HeaderMap) -> Result<Arc<Principal>, Rejection> {
        let mut authorization = headers.get_all(header::AUTHORIZATION).iter();
        let (first, second) = (authorization.next(), authorization.next());
        if second.is_some() {
            return Err(self.invalid("more than one Authorization header".into()));
        }
        let api_key_header = headers.get("x-api-key");
        let token = match (first, api_key_header) {
            (Some(value), _) => {
                let text = value
                    .to_str()
                    .map_err(|_| self.invalid("the Authorization header is not ASCII".into()))?;
                match text.split_once(' ') {
                    Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
                    _ => return Err(self.missing("use the Bearer authorization scheme")),
                }
            }
            (None, Some(key)) if !self.api_keys.is_empty() => {
                let key = key.to_str().unwrap_or_default();
                return self
                    .api_keys
                    .find(key)
                    .ok_or_else(|| self.invalid("unknown API key".into()));
            }
            (None, _) => return Err(self.missing("no credentials")),
        };
        if token.is_empty() {
            return Err(self.invalid("empty bearer token".into()));
        }
        let looks_like_jwt = token.bytes().filter(|b| *b == b'.').count() == 2;
        match (&self.jwt, looks_like_jwt) {
            (Some(jwt), true) => jwt.verify(token).await.map_err(|e| self.invalid(e.0)),
            _ if !self.api_keys.is_empty() => self
                .api_keys
                .find(token)
                .ok_or_else(|| self.invalid("unknown API key".into())),
            _ => Err(self.invalid("the token is not a well-formed JWT".into())),
        }
    }

    fn require(&self, principal: &Principal, needed: &[String]) -> Result<(), Rejection> {
        if needed.iter().all(|s| principal.scopes.contains(s)) {
            return Ok(());
        }
        let error = AuthError::InsufficientScope {
            needed: needed.to_vec(),
        };
        let description = error.to_string();
        Err(Rejection {
            challenge: self
                .metadata
                .challenge(Some(("insufficient_scope", &description)), needed),
            error,
        })
    }

    fn missing(&self, why: &'static str) -> Rejection {
        Rejection {
            error: AuthError::Missing(why),
            challenge: self.metadata.challenge(None, &self.required_scopes),
        }
    }

    fn invalid(&self, why: String) -> Rejection {
        Rejection {
            challenge: self
                .metadata
                .challenge(Some(("invalid_token", &why)), &self.required_scopes),
            error: AuthError::InvalidToken(why),
        }
    }
}

fn with_peer(principal: Arc<Principal>, peer: Option<&PeerCertificate>) -> Arc<Principal> {
    match peer {
        None => principal,
        Some(peer) => Arc::new(Principal {
            mtls_identity: Some(peer.identity.clone()),
            ..(*principal).clone()
        }),
    }
}
