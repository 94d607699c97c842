//! The traffic-control parts of the configuration file as written (DESIGN.md §5.10): the
//! gateway-wide `limits:` and the parts of an upstream's controls that are sections of their own. Validated in [`super::traffic`].

use serde::Deserialize;

use crate::limits::rate::RawRate;

/// `limits:`
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// All calls through this replica together, e.g. `5000/s`.
    #[serde(default)]
    pub global: Option<RawRate>,
    /// Each caller (issuer + subject, API key, mTLS identity), e.g. `600/m`.
    #[serde(default)]
    pub per_principal: Option<RawRate>,
    /// Where counters live: `memory` (per replica, the default) or `redis` (shared by every
    /// replica: the limits hold cluster-wide).
    #[serde(default)]
    pub store: Option<String>,
    /// The Redis server of `store: redis`.
    #[serde(default)]
    pub redis: Option<RawRedis>,
    /// What the limits from this file do while the store cannot be reached: `fail_open` (the
    /// default: let calls through) or `fail_closed` (refuse them). Limits set in policy files
    /// always fail closed.
    #[serde(default)]
    pub on_store_error: Option<String>,
}

/// `limits.redis:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS; `${ENV}` is expanded
    /// (put the password in the environment). With `sentinels`, the host is the name of the
    /// master the Sentinels monitor (`redis://:password@mymaster/0`): its address comes from
    /// them, the user, password, database and scheme apply to it.
    pub url: String,
    /// Redis Sentinel nodes (`redis://[user:password@]host:26379`, `rediss://` for TLS; the
    /// first one's credentials are used for all): the master is looked up through them, and
    /// again after a connection to it fails or it turns read-only (a failover).
    #[serde(default)]
    pub sentinels: Vec<String>,
    /// Longest wait for one check, e.g. `50ms` (default 100ms); a slower answer counts as a
    /// store error.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Prefix of every key the gateway writes (default `mcpgate`): replicas that share it share
    /// counters.
    #[serde(default)]
    pub key_prefix: Option<String>,
}

/// `circuit_breaker:` of an upstream; every field has a default.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCircuitBreaker {
    /// Failures in a row that open the circuit.
    #[serde(default)]
    pub consecutive_failures: Option<u32>,
    /// Share of failed calls within `window` that opens the circuit, e.g. `50%`.
    #[serde(default)]
    pub failure_rate: Option<String>,
    /// The window `failure_rate` is measured over, e.g. `30s`.
    #[serde(default)]
    pub window: Option<String>,
    /// Calls within `window` before `failure_rate` is considered.
    #[serde(default)]
    pub min_calls: Option<u32>,
    /// How long the circuit stays open before probing, e.g. `30s`.
    #[serde(default)]
    pub open_for: Option<String>,
    /// Probe calls let through while half-open.
    #[serde(default)]
    pub half_open_calls: Option<u32>,
}

/// `retries:` of an upstream.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRetries {
    /// Extra attempts after the first, per request (0 disables retries).
    #[serde(default)]
    pub attempts: Option<u32>,
    /// Retries allowed as a share of recent requests to the upstream, e.g. `20%`.
    #[serde(default)]
    pub budget: Option<String>,
}

/// `health_check:` of an upstream.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    /// Time between checks of a healthy upstream, e.g. `30s`.
    #[serde(default)]
    pub interval: Option<String>,
}

/// One entry of an upstream's `tools:`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawToolTraffic {
    /// All callers together, per matching tool.
    #[serde(default)]
    pub rate_limit: Option<RawRate>,
    /// Whole-call timeout of the tool (instead of the upstream's).
    #[serde(default)]
    pub timeout: Option<String>,
}
