//! The `listen.tls`, `auth` and upstream `oauth` sections exactly as written (serde types with
//! `deny_unknown_fields`); [`super::auth`] validates them.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `listen.tls:`
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain, leaf first.
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// PEM bundle of CAs whose client certificates are accepted (mTLS).
    #[serde(default)]
    pub client_ca_file: Option<String>,
    /// `required` (default when `client_ca_file` is set) or `optional`.
    #[serde(default)]
    pub client_auth: Option<String>,
    /// How often the certificate files are checked for changes, e.g. `30s`.
    #[serde(default)]
    pub reload_interval: Option<String>,
}

/// `auth:`
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Bearer JWT validation.
    #[serde(default)]
    pub jwt: Option<RawJwt>,
    /// Static API keys for machine clients.
    #[serde(default)]
    pub api_keys: Vec<RawApiKey>,
    /// Authorization servers announced in the protected resource metadata (RFC 9728).
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    /// `scopes_supported` of the protected resource metadata.
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// Scopes every request needs.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Extra scopes per JSON-RPC method, e.g. `tools/call: [mcp:tools.call]`.
    #[serde(default)]
    pub method_scopes: BTreeMap<String, Vec<String>>,
}

/// `auth.jwt:`
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    /// Expected `iss`.
    pub issuer: String,
    /// Accepted `aud` values; default: `listen.public_url`.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// JWKS URL of the issuer.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Static verification keys: PEM public keys or certificates, JWK or JWKS JSON files.
    #[serde(default)]
    pub key_files: Vec<String>,
    /// Accepted signature algorithms, e.g. `[RS256, ES256, EdDSA]`.
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`, e.g. `60s`.
    #[serde(default)]
    pub leeway: Option<String>,
    /// Claims every token must carry besides `iss`, `aud` and `exp`; default `[sub]`.
    #[serde(default)]
    pub required_claims: Option<Vec<String>>,
    /// Which claims hold groups, roles, scopes and the client id.
    #[serde(default)]
    pub claims: RawClaimNames,
    /// Period of the scheduled JWKS refetch, e.g. `10m`.
    #[serde(default)]
    pub jwks_refresh_interval: Option<String>,
    /// Least time between two refetches caused by an unknown `kid`, e.g. `30s`.
    #[serde(default)]
    pub jwks_min_refetch_interval: Option<String>,
}

/// `auth.jwt.claims:`
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawClaimNames {
    /// Claim with the caller's groups (default `groups`).
    #[serde(default)]
    pub groups: Option<String>,
    /// Claim with the caller's roles (default `roles`).
    #[serde(default)]
    pub roles: Option<String>,
    /// Claim with the granted scopes (default `scope`, space-separated per RFC 8693 §4.2, or
    /// an array).
    #[serde(default)]
    pub scope: Option<String>,
    /// Claim with the OAuth client id (default `client_id`, RFC 9068 §2.2; `azp` is used when
    /// it is absent).
    #[serde(default)]
    pub client_id: Option<String>,
}

/// One entry of `auth.api_keys:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    /// Name of the key: the principal's subject is `api-key:{name}`.
    pub name: String,
    /// Hex SHA-256 of the key (`printf %s "$KEY" | sha256sum`); the key itself is never stored.
    pub sha256: String,
    /// Scopes the key grants.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Groups the key's principal is in (for policies).
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `upstreams[].http.oauth:` — how the gateway obtains tokens for an upstream.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamOAuth {
    /// The authorization server's token endpoint.
    pub token_url: String,
    /// The gateway's client id at that server.
    pub client_id: String,
    /// Its client secret; may contain `${ENV_VAR}`.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// A file holding the client secret (trailing newline trimmed).
    #[serde(default)]
    pub client_secret_file: Option<String>,
    /// Scopes to request.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// RFC 8707 `resource` to request the token for; default: the upstream's URL.
    #[serde(default)]
    pub resource: Option<String>,
    /// `audience` parameter, for servers that want one.
    #[serde(default)]
    pub audience: Option<String>,
    /// Exchange each caller's token for one for this upstream (RFC 8693) instead of calling
    /// it as the gateway; the gateway's own catalogue requests still use client credentials.
    #[serde(default)]
    pub token_exchange: bool,
}
