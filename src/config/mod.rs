//! Configuration: one YAML file, read as [`RawConfig`] and validated into [`Config`].
//!
//! Loading reports every problem at once, each with its key path (`upstreams[1].http.url`), so an
//! operator fixes a file in one pass. After loading, invalid states cannot be represented: ids are
//! checked, durations and URLs parsed, secrets resolved from `${ENV}` or files and wrapped in
//! [`Secret`]. Relative paths are resolved against the directory of the config file.
//!
//! Not here: policy files (the policy module) and the meaning of each setting at run time.

mod auth;
mod raw;
mod raw_auth;
mod raw_telemetry;
mod raw_traffic;
mod secret;
mod telemetry;
mod traffic;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

pub use auth::{
    ApiKeyConfig, AuthConfig, ClaimNames, ClientAuth, JwksConfig, JwtConfig, TlsConfig,
    UpstreamOAuthConfig,
};
pub use raw::RawConfig;
pub use secret::{Secret, expand_env};
pub use telemetry::{
    ArgumentsConfig, AuditConfig, AuditKey, AuditSink, OtlpConfig, TelemetryConfig, WhenFull,
    normalize_key,
};
pub use traffic::{
    BreakerConfig, LimitStore, LimitsConfig, OnStoreError, RedisConfig, RetryConfig, ToolMatch,
    ToolTraffic, UpstreamTraffic,
};

/// A validated upstream id: `^[a-z0-9][a-z0-9-]{0,31}$` (DESIGN.md §5.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UpstreamId(String);

impl UpstreamId {
    /// Checks and wraps an id.
    ///
    /// # Errors
    /// A message saying which rule the id breaks.
    pub fn parse(id: &str) -> Result<Self, String> {
        let mut chars = id.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if first_ok && rest_ok && id.len() <= 32 {
            Ok(Self(id.to_string()))
        } else {
            Err(format!(
                "upstream id {id:?} must match ^[a-z0-9][a-z0-9-]{{0,31}}$ (lowercase letters, digits, '-')"
            ))
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UpstreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Client-facing listener.
    pub listen: ListenConfig,
    /// Operations listener, if configured.
    pub admin: Option<AdminConfig>,
    /// Legacy session settings.
    pub session: SessionConfig,
    /// Upstreams in configuration order.
    pub upstreams: Vec<UpstreamConfig>,
    /// Naming of merged entries.
    pub namespacing: NamespacingConfig,
    /// Catalogue refresh and paging.
    pub catalogue: CatalogueConfig,
    /// Client authentication; `None`: every caller is anonymous.
    pub auth: Option<AuthConfig>,
    /// RBAC policies; `None`: every authenticated caller may use everything.
    pub policies: Option<PolicyConfig>,
    /// Gateway-wide rate limits.
    pub limits: LimitsConfig,
    /// The audit log; `None`: no audit records.
    pub audit: Option<AuditConfig>,
    /// Logs and trace export.
    pub telemetry: TelemetryConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// Where the configuration came from, for the `config_loaded` audit record.
    pub source: ConfigSource,
}

/// The JSON Schema (draft 2020-12) of `mcpgate.yaml`, derived from the types the file is parsed
/// into, so it cannot drift from what the gateway accepts: every key, its type and its doc
/// comment as description; unknown keys are not allowed. It checks the file's shape only —
/// addresses, durations, rates, URLs and cross-references are checked by [`Config::load`]
/// (`mcpgate validate`). Printed by `mcpgate config schema`; kept in `docs/mcpgate.schema.json`
/// for editors (`# yaml-language-server: $schema=...`).
pub fn json_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(raw::RawConfig).to_value();
    if let Some(object) = schema.as_object_mut() {
        object.insert("title".into(), "mcpgate.yaml".into());
    }
    schema
}

/// Reads a 32-byte key file (64 hex characters, or exactly 32 raw bytes): the session key and
/// the audit chain key.
///
/// # Errors
/// A message naming the file and what is wrong with it.
pub fn read_key_file(path: &Path) -> Result<[u8; 32], String> {
    validate::read_key(path)
}

/// The file a configuration was read from and the SHA-256 of its text.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The file, as given.
    pub path: PathBuf,
    /// Lowercase hex SHA-256 of the file's text.
    pub sha256: String,
    /// The file's top-level sections as written (before `${ENV}` expansion and validation),
    /// to tell which sections a reload changes.
    pub sections: serde_json::Map<String, serde_json::Value>,
}

impl ConfigSource {
    /// The top-level sections whose text differs between `self` and `other`, in name order,
    /// ignoring those in `except`.
    pub fn changed_sections(&self, other: &Self, except: &[&str]) -> Vec<String> {
        let names: std::collections::BTreeSet<&String> =
            self.sections.keys().chain(other.sections.keys()).collect();
        names
            .into_iter()
            .filter(|n| !except.contains(&n.as_str()))
            .filter(|n| self.sections.get(*n) != other.sections.get(*n))
            .cloned()
            .collect()
    }
}

/// `listen:` after validation.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// Socket address to bind.
    pub addr: SocketAddr,
    /// Canonical public URL of the MCP endpoint.
    pub public_url: Option<Url>,
    /// Largest accepted request body, bytes (default 4 MiB).
    pub max_body_bytes: usize,
    /// Allowed `Origin` values, normalised to `scheme://host[:port]`.
    pub allowed_origins: Vec<String>,
    /// Extra allowed `Host` values (lowercase, with or without port).
    pub allowed_hosts: Vec<String>,
    /// TLS termination; `None`: plain HTTP (loopback, or `plain_http: true`).
    pub tls: Option<TlsConfig>,
    /// Connection and time bounds of the listener (see [`crate::listener::Limits`]): header
    /// read timeout (default 10 s), idle timeout (default 60 s), most connections (default
    /// 10,000).
    pub limits: crate::listener::Limits,
}

/// `admin:` after validation.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Socket address of `/healthz`, `/readyz`, `/metrics`.
    pub addr: SocketAddr,
}

/// `session:` after validation.
#[derive(Clone)]
pub struct SessionConfig {
    /// 32-byte sealing key; `None` means a random key per process.
    pub key: Option<[u8; 32]>,
    /// Idle time after which local session state is dropped (default 30 min).
    pub idle_timeout: Duration,
    /// Longest life of a session id (default 24 h).
    pub max_lifetime: Duration,
    /// Most legacy sessions with local state on this replica (default 100,000): their parked
    /// requests, subscriptions and stream logs, and per upstream the legacy upstream sessions
    /// opened for them. Beyond it the least recently used session's state is dropped (its
    /// upstream sessions closed); its id stays valid.
    pub max_sessions: u64,
    /// Bytes of response-stream events kept for `Last-Event-ID` replay by every session of
    /// this replica together (default 64 MiB; each session at most 4 MiB).
    pub replay_buffer_bytes: usize,
}

impl fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionConfig")
            .field("key", &self.key.map(|_| "***"))
            .field("idle_timeout", &self.idle_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("max_sessions", &self.max_sessions)
            .field("replay_buffer_bytes", &self.replay_buffer_bytes)
            .finish()
    }
}

/// Which era to speak to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EraPreference {
    /// Probe modern (`server/discover`), fall back to `initialize`; cache the answer.
    Auto,
    /// Modern only.
    Modern,
    /// Legacy only.
    Legacy,
}

/// One upstream after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// The id, also the namespace prefix.
    pub id: UpstreamId,
    /// How to reach it.
    pub transport: UpstreamTransport,
    /// Whole-call timeout, from request sent to final response (default 30 s).
    pub timeout: Duration,
    /// Era selection.
    pub era: EraPreference,
    /// Rate limit, bulkhead, circuit breaker, retries, per-tool settings.
    pub traffic: UpstreamTraffic,
}

/// How an upstream is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamTransport {
    /// Streamable HTTP.
    Http {
        /// MCP endpoint URL.
        url: Url,
        /// Static headers sent with every request.
        headers: Vec<(http::HeaderName, Secret)>,
        /// OAuth tokens for the upstream, if configured.
        oauth: Option<Box<UpstreamOAuthConfig>>,
    },
    /// The deprecated HTTP+SSE transport (2024-11-05).
    Sse {
        /// The SSE endpoint URL (`GET`), e.g. `http://127.0.0.1:3001/sse`.
        url: Url,
        /// Static headers sent with every request.
        headers: Vec<(http::HeaderName, Secret)>,
    },
    /// A child process speaking newline-delimited JSON-RPC on stdin/stdout.
    Stdio {
        /// Program.
        command: String,
        /// Arguments.
        args: Vec<String>,
        /// Extra environment.
        env: Vec<(String, Secret)>,
        /// Working directory.
        cwd: Option<PathBuf>,
    },
}

/// Prefix mode (DESIGN.md §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixMode {
    /// Prefix unless there is exactly one upstream.
    Conditional,
    /// Always prefix.
    Always,
    /// Never prefix; a name offered by two upstreams is reported and served by neither.
    Never,
}

/// `namespacing:` after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespacingConfig {
    /// Separator between upstream id and name (default `__`), drawn from `[A-Za-z0-9_-]`.
    pub separator: String,
    /// Prefix mode.
    pub prefix: PrefixMode,
}

/// `catalogue:` after validation.
#[derive(Debug, Clone)]
pub struct CatalogueConfig {
    /// Period of the background re-listing of each upstream (default 5 min).
    pub refresh_interval: Duration,
    /// Retry period for an upstream whose listing failed (default 5 s).
    pub retry_interval: Duration,
    /// Entries per page of a merged list (default 100).
    pub page_size: usize,
    /// `ttlMs` on modern list results (default 60 s).
    pub client_ttl: Duration,
}

/// `shutdown:` after validation: what SIGTERM (or Ctrl-C) sets off. First `/readyz` answers 503
/// `draining` for `drain_delay` while everything still serves, so that load balancers take the
/// replica out; then the listeners stop accepting, legacy GET streams end, and calls in flight
/// get `grace` to finish before their connections are dropped; then the audit queue is written
/// and fsynced. A second signal exits at once.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownConfig {
    /// Default 5 s; `0s` skips the drain.
    pub drain_delay: Duration,
    /// Default 30 s.
    pub grace: Duration,
}

/// `policies:` after validation.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// The policy directory (every `*.yaml` in it).
    pub dir: PathBuf,
    /// Enforce or audit.
    pub mode: PolicyMode,
}

/// How policy decisions are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    /// Decisions are applied (default).
    Enforce,
    /// Decisions are made and logged; everything is allowed (for rollout).
    Audit,
}

/// A problem found in a configuration file, with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path, e.g. `upstreams[0].http.url`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid YAML, or a key that does not exist, or a value of the wrong type.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the key path and line.
        message: String,
    },
    /// Parsed, but some values are invalid; every issue is listed.
    #[error("{} invalid setting(s):\n{}", issues.len(), issues.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// All problems found.
        issues: Vec<ConfigIssue>,
    },
}

impl Config {
    /// Reads and validates a configuration file, expanding `${ENV}` from the process environment.
    ///
    /// # Errors
    /// [`ConfigError::Read`], [`ConfigError::Syntax`] or [`ConfigError::Invalid`] with every issue.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_yaml(&text, path, base, &|name| std::env::var(name).ok())
    }

    /// Parses and validates YAML text. `origin` names the source in messages; relative paths
    /// are resolved against `base`; `env` looks up `${NAME}` references.
    ///
    /// # Errors
    /// As [`Config::load`], minus [`ConfigError::Read`].
    pub fn from_yaml(
        text: &str,
        origin: &Path,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let raw: RawConfig =
            serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Syntax {
                path: origin.to_path_buf(),
                message: format!("{}: {}", e.path(), e.inner()),
            })?;
        let mut config =
            validate::validate(raw, base, env).map_err(|issues| ConfigError::Invalid { issues })?;
        config.source = ConfigSource {
            path: origin.to_path_buf(),
            sha256: crate::audit::sha256_hex(text.as_bytes()),
            sections: serde_yaml_ng::from_str(text).unwrap_or_default(),
        };
        Ok(config)
    }
}
