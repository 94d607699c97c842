//! Traffic control after validation (DESIGN.md §5.10): `limits:` and each upstream's rate
//! limit, bulkhead, circuit breaker, retries and per-tool settings.

use std::num::NonZeroU32;
use std::time::Duration;

use globset::GlobMatcher;

use super::raw::{RawCircuitBreaker, RawLimits, RawRedis, RawRetries, RawUpstream};
use super::validate::{Issues, duration, positive};
use crate::limits::rate::{Rate, RawRate};

/// `limits:` after validation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitsConfig {
    /// All calls through this replica (or, with Redis, every replica) together.
    pub global: Option<Rate>,
    /// Each principal.
    pub per_principal: Option<Rate>,
    /// Where the counters live.
    pub store: LimitStore,
    /// What limits from the configuration file do while the store cannot be reached.
    pub on_store_error: OnStoreError,
}

/// Where rate-limit counters live (DESIGN.md §5.12).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum LimitStore {
    /// In this process: each replica counts the calls it serves.
    #[default]
    Memory,
    /// In Redis: every replica sharing the key prefix counts together.
    Redis(RedisConfig),
}

/// `limits.redis:` after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` URL, possibly with a password (never logged).
    pub url: super::Secret,
    /// Longest wait for one check (default 100 ms).
    pub timeout: Duration,
    /// Prefix of every key (default `mcpgate`).
    pub key_prefix: String,
    /// Redis Sentinel nodes (URLs, possibly with passwords): when given, `url`'s host names
    /// the master they monitor.
    pub sentinels: Vec<super::Secret>,
}

/// What a limit does while its store cannot be reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnStoreError {
    /// Let the call through (counted).
    #[default]
    FailOpen,
    /// Refuse the call (counted).
    FailClosed,
}

/// One upstream's traffic controls after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamTraffic {
    /// How far progress notifications may extend a call's timeout, measured from its start.
    pub max_timeout: Duration,
    /// All callers together, on this upstream.
    pub rate_limit: Option<Rate>,
    /// Calls in flight at once (bulkhead).
    pub max_concurrency: Option<NonZeroU32>,
    /// The circuit breaker, if configured.
    pub circuit_breaker: Option<BreakerConfig>,
    /// Retries of idempotent requests.
    pub retries: RetryConfig,
    /// Per-tool settings in file order; the first matching entry applies.
    pub tools: Vec<ToolTraffic>,
    /// Time between health checks of a healthy upstream (default 30 s).
    pub health_interval: Duration,
}

impl UpstreamTraffic {
    /// No controls beyond the defaults (no limits, no breaker, default retries).
    pub fn unlimited(timeout: Duration) -> Self {
        Self {
            max_timeout: default_max_timeout(timeout),
            rate_limit: None,
            max_concurrency: None,
            circuit_breaker: None,
            retries: RetryConfig::default(),
            tools: Vec::new(),
            health_interval: Duration::from_secs(30),
        }
    }

    /// The upstream's own tool `name` and the first `tools:` entry it matches, if any: matched
    /// once per call, for its rate limit and its timeout.
    pub fn tool<'n>(&self, name: &'n str) -> Option<ToolMatch<'n>> {
        let entry = self.tools.iter().position(|t| t.matcher.is_match(name))?;
        Some(ToolMatch { name, entry })
    }

    /// The timeout `tool`'s entry sets, if it sets one.
    pub fn tool_timeout(&self, tool: Option<ToolMatch<'_>>) -> Option<Duration> {
        self.tools.get(tool?.entry)?.timeout
    }
}

/// A tool of an upstream (its own name) and the index of the `tools:` entry it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolMatch<'n> {
    /// The upstream's own tool name.
    pub name: &'n str,
    /// Index into [`UpstreamTraffic::tools`].
    pub entry: usize,
}

/// An upstream's `tools:` entry.
#[derive(Debug, Clone)]
pub struct ToolTraffic {
    /// The glob as written.
    pub pattern: String,
    /// The compiled glob ([`crate::glob`]).
    pub matcher: GlobMatcher,
    /// All callers together, per matching tool.
    pub rate_limit: Option<Rate>,
    /// Whole-call timeout instead of the upstream's.
    pub timeout: Option<Duration>,
}

/// Entries are equal when written the same (`matcher` is compiled from `pattern`).
impl PartialEq for ToolTraffic {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
            && self.rate_limit == other.rate_limit
            && self.timeout == other.timeout
    }
}

/// `circuit_breaker:` after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Failures in a row that open the circuit (default 5).
    pub consecutive_failures: NonZeroU32,
    /// Share of failed calls in `window` that opens the circuit, in (0, 1] (default 0.5).
    pub failure_rate: f64,
    /// The window of `failure_rate` (default 30 s).
    pub window: Duration,
    /// Calls in `window` before `failure_rate` counts (default 20).
    pub min_calls: u32,
    /// How long the circuit stays open (default 30 s).
    pub open_for: Duration,
    /// Probe calls let through while half-open (default 1).
    pub half_open_calls: NonZeroU32,
}

/// `retries:` after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    /// Extra attempts after the first (default 2; 0 disables retries).
    pub attempts: u32,
    /// Retries allowed as a share of recent requests, in [0, 1] (default 0.2).
    pub budget: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 2,
            budget: 0.2,
        }
    }
}

/// Progress may extend a call to ten times its timeout, and at least 5 minutes.
fn default_max_timeout(timeout: Duration) -> Duration {
    (timeout * 10).max(Duration::from_secs(300))
}

/// Validates `limits:`.
pub(super) fn limits(
    raw: &RawLimits,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Issues,
) -> LimitsConfig {
    let store = match (raw.store.as_deref(), &raw.redis) {
        (None | Some("memory"), None) => LimitStore::Memory,
        (None | Some("memory"), Some(_)) => {
            issues.push("limits.redis", "is only used with store: redis");
            LimitStore::Memory
        }
        (Some("redis"), None) => {
            issues.push("limits.redis", "store: redis needs redis: { url: ... }");
            LimitStore::Memory
        }
        (Some("redis"), Some(r)) => {
            redis(r, env, issues).map_or(LimitStore::Memory, LimitStore::Redis)
        }
        (Some(other), _) => {
            issues.push(
                "limits.store",
                format!("{other:?} is not one of memory, redis"),
            );
            LimitStore::Memory
        }
    };
    let on_store_error = match raw.on_store_error.as_deref() {
        None | Some("fail_open") => OnStoreError::FailOpen,
        Some("fail_closed") => OnStoreError::FailClosed,
        Some(other) => {
            issues.push(
                "limits.on_store_error",
                format!("{other:?} is not one of fail_open, fail_closed"),
            );
            OnStoreError::FailOpen
        }
    };
    LimitsConfig {
        global: rate(raw.global.as_ref(), "limits.global", issues),
        per_principal: rate(raw.per_principal.as_ref(), "limits.per_principal", issues),
        store,
        on_store_error,
    }
}

/// Validates `limits.redis`.
fn redis(
    raw: &RawRedis,
    env: &dyn Fn(&str) -> Option<String>,
    issues: &mut Issues,
) -> Option<RedisConfig> {
    let url = issues.check("limits.redis.url", super::expand_env(&raw.url, env))?;
    let parsed = issues.check(
        "limits.redis.url",
        url::Url::parse(&url).map_err(|e| format!("not a URL: {e}")),
    )?;
    if !matches!(parsed.scheme(), "redis" | "rediss") {
        issues.push(
            "limits.redis.url",
            "must start with redis:// or rediss:// (TLS)",
        );
        return None;
    }
    let timeout = issues.check(
        "limits.redis.timeout",
        duration(raw.timeout.as_deref(), Duration::from_millis(100)).and_then(|t| {
            if t.is_zero() {
                Err("must be more than 0".to_string())
            } else {
                Ok(t)
            }
        }),
    )?;
    let key_prefix = raw.key_prefix.clone().unwrap_or_else(|| "mcpgate".into());
    if key_prefix.is_empty() || key_prefix.contains(['{', '}']) {
        issues.push(
            "limits.redis.key_prefix",
            "must be non-empty and hold no { or }",
        );
        return None;
    }
    let mut sentinels = Vec::with_capacity(raw.sentinels.len());
    for (i, node) in raw.sentinels.iter().enumerate() {
        let path = format!("limits.redis.sentinels[{i}]");
        let node = issues.check(&path, super::expand_env(node, env))?;
        let scheme_ok = url::Url::parse(&node)
            .is_ok_and(|u| matches!(u.scheme(), "redis" | "rediss") && u.host().is_some());
        if !scheme_ok {
            issues.push(
                &path,
                "must be redis://host:port or rediss://host:port (TLS)",
            );
            return None;
        }
        sentinels.push(super::Secret::new(node));
    }
    if !sentinels.is_empty() && parsed.host_str().is_none_or(str::is_empty) {
        issues.push(
            "limits.redis.url",
            "with sentinels, the host must name the master (redis://:password@mymaster/0)",
        );
        return None;
    }
    Some(RedisConfig {
        url: super::Secret::new(url),
        timeout,
        key_prefix,
        sentinels,
    })
}

/// Validates the traffic controls of upstream `at` (`upstreams[i]`), whose whole-call timeout
/// is `timeout`.
pub(super) fn upstream(
    raw: &RawUpstream,
    at: &str,
    timeout: Duration,
    issues: &mut Issues,
) -> UpstreamTraffic {
    let mut out = UpstreamTraffic::unlimited(timeout);
    if let Some(t) = issues.check(
        &format!("{at}.max_timeout"),
        duration(raw.max_timeout.as_deref(), out.max_timeout),
    ) {
        out.max_timeout = t;
    }
    out.rate_limit = rate(raw.rate_limit.as_ref(), &format!("{at}.rate_limit"), issues);
    out.max_concurrency = match raw.max_concurrency {
        None => None,
        Some(n) => {
            let n = NonZeroU32::new(n);
            if n.is_none() {
                issues.push(format!("{at}.max_concurrency"), "must be at least 1");
            }
            n
        }
    };
    out.circuit_breaker = raw
        .circuit_breaker
        .as_ref()
        .and_then(|b| breaker(b, &format!("{at}.circuit_breaker"), issues));
    if let Some(r) = &raw.retries {
        out.retries = retries(r, &format!("{at}.retries"), issues);
    }
    if let Some(h) = &raw.health_check
        && let Some(interval) = issues.check(
            &format!("{at}.health_check.interval"),
            duration(h.interval.as_deref(), out.health_interval).and_then(positive),
        )
    {
        out.health_interval = interval;
    }
    let mut longest = timeout;
    for (pattern, tool) in &raw.tools {
        let path = format!("{at}.tools[{pattern:?}]");
        let matcher = issues.check(
            &path,
            crate::glob::compile(pattern).map(|g| g.compile_matcher()),
        );
        let rate_limit = rate(
            tool.rate_limit.as_ref(),
            &format!("{path}.rate_limit"),
            issues,
        );
        let timeout = match &tool.timeout {
            None => None,
            Some(t) => issues.check(
                &format!("{path}.timeout"),
                duration(Some(t), timeout).and_then(positive),
            ),
        };
        longest = longest.max(timeout.unwrap_or_default());
        if let Some(matcher) = matcher {
            out.tools.push(ToolTraffic {
                pattern: pattern.clone(),
                matcher,
                rate_limit,
                timeout,
            });
        }
    }
    if out.max_timeout < longest {
        issues.push(
            format!("{at}.max_timeout"),
            format!(
                "{} is shorter than a timeout it should extend ({})",
                humantime::format_duration(out.max_timeout),
                humantime::format_duration(longest)
            ),
        );
    }
    out
}

fn breaker(raw: &RawCircuitBreaker, at: &str, issues: &mut Issues) -> Option<BreakerConfig> {
    let count = |value: Option<u32>, default: u32, key: &str, issues: &mut Issues| {
        let n = NonZeroU32::new(value.unwrap_or(default));
        if n.is_none() {
            issues.push(format!("{at}.{key}"), "must be at least 1");
        }
        n
    };
    let consecutive_failures = count(raw.consecutive_failures, 5, "consecutive_failures", issues);
    let half_open_calls = count(raw.half_open_calls, 1, "half_open_calls", issues);
    let failure_rate = issues.check(
        &format!("{at}.failure_rate"),
        share(raw.failure_rate.as_deref(), 0.5).and_then(|r| {
            if r > 0.0 {
                Ok(r)
            } else {
                Err("must be above 0%".into())
            }
        }),
    );
    let window = issues.check(
        &format!("{at}.window"),
        duration(raw.window.as_deref(), Duration::from_secs(30)).and_then(positive),
    );
    let open_for = issues.check(
        &format!("{at}.open_for"),
        duration(raw.open_for.as_deref(), Duration::from_secs(30)).and_then(positive),
    );
    Some(BreakerConfig {
        consecutive_failures: consecutive_failures?,
        failure_rate: failure_rate?,
        window: window?,
        min_calls: raw.min_calls.unwrap_or(20),
        open_for: open_for?,
        half_open_calls: half_open_calls?,
    })
}

fn retries(raw: &RawRetries, at: &str, issues: &mut Issues) -> RetryConfig {
    let default = RetryConfig::default();
    let budget = issues
        .check(
            &format!("{at}.budget"),
            share(raw.budget.as_deref(), default.budget),
        )
        .unwrap_or(default.budget);
    RetryConfig {
        attempts: raw.attempts.unwrap_or(default.attempts),
        budget,
    }
}

fn rate(raw: Option<&RawRate>, path: &str, issues: &mut Issues) -> Option<Rate> {
    issues.check(path, Rate::parse(raw?))
}

/// `50%` → 0.5; at most 100%.
fn share(text: Option<&str>, default: f64) -> Result<f64, String> {
    let Some(text) = text else {
        return Ok(default);
    };
    let bad = || format!("{text:?} is not a percentage such as 50%");
    let number = text.trim().strip_suffix('%').ok_or_else(bad)?;
    let percent: f64 = number.trim().parse().map_err(|_| bad())?;
    if !(0.0..=100.0).contains(&percent) {
        return Err(format!("{text:?} is not between 0% and 100%"));
    }
    Ok(percent / 100.0)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};

    fn issues(yaml: &str) -> Vec<(String, String)> {
        match Config::from_yaml(yaml, Path::new("t.yaml"), Path::new("."), &|_| None) {
            Err(ConfigError::Invalid { issues }) => {
                issues.into_iter().map(|i| (i.path, i.message)).collect()
            }
            other => panic!("expected issues, got {other:?}"),
        }
    }

    #[test]
    fn the_redis_store_is_validated_with_its_key_paths() {
        let found = issues(
            r#"
listen: { addr: "127.0.0.1:0" }
limits:
  store: redis
  redis: { url: "http://127.0.0.1:6379", timeout: 0s }
  on_store_error: maybe
upstreams:
  - { id: a, http: { url: "http://127.0.0.1:9/mcp" } }
"#,
        );
        let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["limits.redis.url", "limits.on_store_error"],
            "{found:?}"
        );
        assert!(found[0].1.contains("redis:// or rediss://"));
        let found = issues(
            "listen: { addr: \"127.0.0.1:0\" }\nlimits: { store: redis, redis: { url: \"redis://${NOPE}@r:6379\", timeout: 0s } }\nupstreams:\n  - { id: a, http: { url: \"http://127.0.0.1:9/mcp\" } }\n",
        );
        assert_eq!(found[0].0, "limits.redis.url", "{found:?}");
        let found = issues(
            "listen: { addr: \"127.0.0.1:0\" }\nlimits: { store: memcached, redis: { url: \"redis://r\" } }\nupstreams:\n  - { id: a, http: { url: \"http://127.0.0.1:9/mcp\" } }\n",
        );
        assert!(
            found
                .iter()
                .any(|(p, m)| p == "limits.store" && m.contains("memory, redis")),
            "{found:?}"
        );
        let (ok, redis) = with_secret_password(
            "listen: { addr: \"127.0.0.1:0\" }\nlimits: { store: redis, redis: { url: \"rediss://:${PW}@r:6380/1\" }, on_store_error: fail_closed }\nupstreams:\n  - { id: a, http: { url: \"http://127.0.0.1:9/mcp\" } }\n",
        );
        assert_eq!(redis.url.expose(), "rediss://:s3cret@r:6380/1");
        assert_eq!(redis.timeout, std::time::Duration::from_millis(100));
        assert_eq!(redis.key_prefix, "mcpgate");
        assert!(
            !format!("{ok:?}").contains("s3cret"),
            "the password is never printed"
        );
        assert_eq!(
            ok.limits.on_store_error,
            crate::config::OnStoreError::FailClosed
        );
    }

    /// `yaml` parsed with `PW=s3cret` in the environment, and its Redis store.
    fn with_secret_password(yaml: &str) -> (Config, crate::config::RedisConfig) {
        let ok = Config::from_yaml(yaml, Path::new("t.yaml"), Path::new("."), &|name| {
            (name == "PW").then(|| "s3cret".to_string())
        })
        .unwrap();
        let crate::config::LimitStore::Redis(redis) = &ok.limits.store else {
            panic!("redis store expected");
        };
        let redis = redis.clone();
        (ok, redis)
    }

    #[test]
    fn sentinel_nodes_are_validated_and_kept_secret() {
        let yaml = |nodes: &str| {
            format!(
                "listen: {{ addr: \"127.0.0.1:0\" }}\nlimits: {{ store: redis, redis: {{ url: \"redis://:${{PW}}@mymaster/0\", sentinels: {nodes} }} }}\nupstreams:\n  - {{ id: a, http: {{ url: \"http://127.0.0.1:9/mcp\" }} }}\n"
            )
        };
        let found = issues(&yaml(r#"["redis://s0:26379", "s1:26379"]"#).replace("${PW}", "pw"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "limits.redis.sentinels[1]");
        let (ok, redis) =
            with_secret_password(&yaml(r#"["redis://:${PW}@s0:26379", "rediss://s1:26380"]"#));
        let nodes: Vec<&str> = redis.sentinels.iter().map(|s| s.expose()).collect();
        assert_eq!(nodes, ["redis://:s3cret@s0:26379", "rediss://s1:26380"]);
        assert!(!format!("{ok:?}").contains("s3cret"));
    }

    #[test]
    fn every_traffic_setting_is_validated_with_its_key_path() {
        let found = issues(
            r#"
listen: { addr: "127.0.0.1:0" }
limits: { global: 10/d, per_principal: { rate: 5/s, burst: 0 }, store: redis }
upstreams:
  - id: a
    http: { url: "http://127.0.0.1:9/mcp" }
    timeout: 0s
    rate_limit: lots
    max_concurrency: 0
    circuit_breaker: { consecutive_failures: 0, failure_rate: 150%, window: 0s, half_open_calls: 0 }
    retries: { budget: half }
    health_check: { interval: 0s }
  - id: b
    http: { url: "http://127.0.0.1:9/mcp" }
    timeout: 10s
    max_timeout: 1m
    circuit_breaker: { failure_rate: 0% }
    tools:
      "create_[": { rate_limit: 1/s }
      "slow_*": { timeout: 2m, rate_limit: "1/fortnight" }
"#,
        );
        let at = |path: &str| {
            found
                .iter()
                .find(|(p, _)| p == path)
                .map(|(_, m)| m.as_str())
                .unwrap_or_else(|| panic!("no issue at {path} in {found:?}"))
        };
        assert!(at("limits.global").contains("\"10/d\" is not a rate"));
        assert_eq!(at("limits.per_principal"), "burst must be at least 1");
        assert!(at("limits.redis").contains("store: redis needs redis"));
        assert_eq!(at("upstreams[0].timeout"), "must be longer than zero");
        assert!(at("upstreams[0].rate_limit").contains("\"lots\""));
        assert_eq!(at("upstreams[0].max_concurrency"), "must be at least 1");
        for key in ["consecutive_failures", "half_open_calls"] {
            assert_eq!(
                at(&format!("upstreams[0].circuit_breaker.{key}")),
                "must be at least 1"
            );
        }
        assert!(at("upstreams[0].circuit_breaker.failure_rate").contains("between 0% and 100%"));
        assert_eq!(
            at("upstreams[0].circuit_breaker.window"),
            "must be longer than zero"
        );
        assert!(at("upstreams[0].retries.budget").contains("not a percentage"));
        assert_eq!(
            at("upstreams[0].health_check.interval"),
            "must be longer than zero"
        );
        assert_eq!(
            at("upstreams[1].circuit_breaker.failure_rate"),
            "must be above 0%"
        );
        assert!(at("upstreams[1].tools[\"create_[\"]").contains("invalid glob"));
        assert!(at("upstreams[1].tools[\"slow_*\"].rate_limit").contains("1/fortnight"));
        assert!(
            at("upstreams[1].max_timeout").contains("shorter than a timeout it should extend (2m)")
        );
    }

    #[test]
    fn defaults_leave_calls_unlimited_and_the_breaker_off() {
        let cfg = Config::from_yaml(
            "listen: { addr: \"127.0.0.1:0\" }\nupstreams:\n  - { id: a, http: { url: \"http://127.0.0.1:9/mcp\" }, timeout: 1m }\n",
            Path::new("t.yaml"),
            Path::new("."),
            &|_| None,
        )
        .unwrap();
        let t = &cfg.upstreams[0].traffic;
        assert_eq!(t.max_timeout, std::time::Duration::from_secs(600));
        assert!(t.rate_limit.is_none() && t.max_concurrency.is_none());
        assert!(t.circuit_breaker.is_none());
        assert_eq!((t.retries.attempts, t.retries.budget), (2, 0.2));
        assert!(cfg.limits.global.is_none() && cfg.limits.per_principal.is_none());
    }
}
