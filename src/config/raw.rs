//! The configuration file exactly as written: serde types with `deny_unknown_fields`.
//!
//! Nothing here is validated beyond YAML syntax and field names; [`super::validate`] turns a
//! [`RawConfig`] into a [`super::Config`] and reports every problem at once with its key path.
//! Durations are strings such as `30s` or `500ms` (humantime); sizes are integers (bytes) or
//! strings such as `4MiB`.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::Deserialize;

pub use super::raw_auth::{RawAuth, RawTls, RawUpstreamOAuth};
pub use super::raw_traffic::{
    RawCircuitBreaker, RawHealthCheck, RawLimits, RawRedis, RawRetries, RawToolTraffic,
};
use crate::limits::rate::RawRate;

/// The root of `mcpgate.yaml` (DESIGN.md §5.6).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The client-facing listener.
    pub listen: RawListen,
    /// The operations listener (`/healthz`, `/readyz`, `/metrics`).
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    /// Legacy session sealing and lifetimes.
    #[serde(default)]
    pub session: RawSession,
    /// The MCP servers behind the gateway.
    pub upstreams: Vec<RawUpstream>,
    /// How upstream names become client-facing names.
    #[serde(default)]
    pub namespacing: RawNamespacing,
    /// Catalogue refresh and paging.
    #[serde(default)]
    pub catalogue: RawCatalogue,
    /// Client authentication (OAuth 2.1 resource server, API keys).
    #[serde(default)]
    pub auth: Option<RawAuth>,
    /// RBAC policy files.
    #[serde(default)]
    pub policies: Option<RawPolicies>,
    /// Gateway-wide rate limits.
    #[serde(default)]
    pub limits: RawLimits,
    /// The audit log.
    #[serde(default)]
    pub audit: Option<super::raw_telemetry::RawAudit>,
    /// Logs and trace export.
    #[serde(default)]
    pub telemetry: super::raw_telemetry::RawTelemetry,
    /// Graceful shutdown on SIGTERM.
    #[serde(default)]
    pub shutdown: RawShutdown,
}

/// `shutdown:`
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawShutdown {
    /// How long `/readyz` reports `draining` while everything still serves, e.g. `5s`.
    #[serde(default)]
    pub drain_delay: Option<String>,
    /// How long calls and streams in flight may take to finish once listeners stop, e.g. `30s`.
    #[serde(default)]
    pub grace: Option<String>,
}

/// `policies:`
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPolicies {
    /// Directory of policy files, relative to the configuration file.
    pub dir: String,
    /// `enforce` (default) or `audit`.
    #[serde(default)]
    pub mode: Option<String>,
}

/// `listen:`
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    /// `host:port`, e.g. `0.0.0.0:8443`; port 0 picks a free port.
    pub addr: String,
    /// The canonical public URL of the MCP endpoint, e.g. `https://mcp.example.com/mcp`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Largest accepted request body: bytes, or a string such as `4MiB`.
    #[serde(default)]
    pub max_body_bytes: Option<RawSize>,
    /// Origins browsers may call from, e.g. `https://app.example.com`.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Extra `Host` header values accepted besides the listener's own names.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// TLS termination.
    #[serde(default)]
    pub tls: Option<RawTls>,
    /// Serve plain HTTP on a non-loopback address (behind a TLS-terminating proxy, or dev).
    #[serde(default)]
    pub plain_http: bool,
    /// Longest time for a TLS handshake and for a request head, e.g. `10s`.
    #[serde(default)]
    pub header_read_timeout: Option<String>,
    /// A connection without a request in flight this long is closed, e.g. `60s`.
    #[serde(default)]
    pub idle_timeout: Option<String>,
    /// Most connections open at once (keep it below the process's file descriptor limit).
    #[serde(default)]
    pub max_connections: Option<u32>,
}

/// A size: an integer count of bytes or a string with a unit (`512KiB`, `4MiB`).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum RawSize {
    /// Bytes.
    Bytes(u64),
    /// A human size string.
    Text(String),
}

/// `admin:`
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// `host:port` of the operations listener.
    pub addr: String,
}

/// `session:`
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    /// File holding the 32-byte session sealing key (64 hex characters or 32 raw bytes). Every
    /// replica behind one load balancer needs the same key. Random per process when absent.
    #[serde(default)]
    pub key_file: Option<String>,
    /// Idle time after which local session state is dropped, e.g. `30m`.
    #[serde(default)]
    pub idle_timeout: Option<String>,
    /// Longest life of a session id from `initialize`, e.g. `24h`.
    #[serde(default)]
    pub max_lifetime: Option<String>,
    /// Most sessions with local state on this replica (default 100000).
    #[serde(default)]
    pub max_sessions: Option<u64>,
    /// Bytes of response-stream events kept for replay by all sessions together, e.g. `64MiB`.
    #[serde(default)]
    pub replay_buffer_bytes: Option<RawSize>,
}

/// One entry of `upstreams:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// Upstream id, `^[a-z0-9][a-z0-9-]{0,31}$`.
    pub id: String,
    /// Streamable HTTP upstream.
    #[serde(default)]
    pub http: Option<RawHttpUpstream>,
    /// stdio upstream (a child process).
    #[serde(default)]
    pub stdio: Option<RawStdioUpstream>,
    /// Upstream on the deprecated HTTP+SSE transport (2024-11-05): `url` is its SSE endpoint.
    #[serde(default)]
    pub sse: Option<RawHttpUpstream>,
    /// Whole-call timeout, e.g. `30s`.
    #[serde(default)]
    pub timeout: Option<String>,
    /// `auto` (probe modern, fall back to `initialize`), `modern` or `legacy`.
    #[serde(default)]
    pub era: Option<String>,
    /// Longest a call may run when progress notifications keep extending it, e.g. `5m`.
    #[serde(default)]
    pub max_timeout: Option<String>,
    /// All callers together, on this upstream, e.g. `50/s`.
    #[serde(default)]
    pub rate_limit: Option<RawRate>,
    /// Calls in flight at once (bulkhead); the next one is rejected at once.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Fail fast while the upstream keeps failing; absent: no breaker.
    #[serde(default)]
    pub circuit_breaker: Option<RawCircuitBreaker>,
    /// Retries of idempotent requests (lists, `server/discover`, `ping`, `resources/read`).
    #[serde(default)]
    pub retries: Option<RawRetries>,
    /// Active health checks.
    #[serde(default)]
    pub health_check: Option<RawHealthCheck>,
    /// Per tool, by the upstream's own tool name (globs allowed); the first matching entry in
    /// file order applies.
    #[serde(default)]
    pub tools: IndexMap<String, RawToolTraffic>,
}

/// `http:` of an upstream.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHttpUpstream {
    /// The upstream's MCP endpoint URL.
    pub url: String,
    /// Static headers; values may contain `${ENV_VAR}`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers whose values are read from files (trailing newline trimmed).
    #[serde(default)]
    pub header_files: BTreeMap<String, String>,
    /// OAuth tokens for the upstream (client credentials, optionally token exchange).
    #[serde(default)]
    pub oauth: Option<RawUpstreamOAuth>,
}

/// `stdio:` of an upstream.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStdioUpstream {
    /// Program to run (looked up on `PATH`).
    pub command: String,
    /// Arguments; may contain `${ENV_VAR}`.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment; values may contain `${ENV_VAR}`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory, relative to the config file.
    #[serde(default)]
    pub cwd: Option<String>,
}

/// `namespacing:`
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawNamespacing {
    /// Separator between upstream id and tool/prompt name; default `__`.
    #[serde(default)]
    pub separator: Option<String>,
    /// `conditional` (default), `always` or `never`.
    #[serde(default)]
    pub prefix: Option<String>,
}

/// `catalogue:`
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCatalogue {
    /// How often each upstream's lists are fetched again, e.g. `5m`.
    #[serde(default)]
    pub refresh_interval: Option<String>,
    /// Retry interval for an upstream whose listing failed, e.g. `5s`.
    #[serde(default)]
    pub retry_interval: Option<String>,
    /// Entries per page of a merged list.
    #[serde(default)]
    pub page_size: Option<u32>,
    /// `ttlMs` advertised on modern list results, e.g. `60s`.
    #[serde(default)]
    pub client_ttl: Option<String>,
}
