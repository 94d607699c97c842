//! `audit:` and `telemetry:` after validation (DESIGN.md §5.8, §5.11).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::GlobMatcher;
use regex::Regex;
use url::Url;

use super::raw_telemetry::{RawArguments, RawAudit, RawTelemetry};
use super::validate::{Issues, byte_size, duration, positive, read_key};

/// Records waiting for the sink by default.
const DEFAULT_QUEUE: u64 = 10_000;
/// Size at which the active audit file is rotated by default (100 MiB).
const DEFAULT_MAX_BYTES: u64 = 100 * 1024 * 1024;
/// Age at which the active audit file is rotated by default.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Object keys redacted in recorded arguments whatever the configuration adds, compared
/// case-insensitively with `-` and `_` ignored ([`normalize_key`]).
pub const BUILTIN_REDACT_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "accesstoken",
    "refreshtoken",
    "idtoken",
    "apikey",
    "authorization",
    "cookie",
    "setcookie",
    "clientsecret",
    "privatekey",
    "credentials",
];

/// Value patterns redacted in recorded arguments whatever the configuration adds: JWTs
/// (RFC 7519 compact form) and HTTP bearer credentials (RFC 6750 §2.1).
pub const BUILTIN_REDACT_VALUES: &[&str] = &[
    r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*",
    r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+",
];

/// An object key as redaction compares it: lowercase, without `-` and `_`.
pub fn normalize_key(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// `audit:` after validation.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Where records go.
    pub sink: AuditSink,
    /// The HMAC-SHA256 chain key; plain SHA-256 without one.
    pub key: Option<AuditKey>,
    /// Records waiting for the sink, at most (calls in flight hold a place each).
    pub queue: usize,
    /// What a call does when the queue is full.
    pub when_full: WhenFull,
    /// Which arguments are recorded and what is redacted in them.
    pub arguments: ArgumentsConfig,
}

/// Where audit records go.
#[derive(Debug, Clone)]
pub enum AuditSink {
    /// An append-only file, rotated by size and age; the chain continues across files.
    File {
        /// The active file.
        path: PathBuf,
        /// Size at which it is rotated, bytes.
        max_bytes: u64,
        /// Age at which it is rotated.
        max_age: Duration,
    },
    /// Standard output, one record per line (for a log collector).
    Stdout,
}

/// What a call does when the audit queue is full (DESIGN.md §5.11); a record is never dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait for room (backpressure on the caller).
    Block,
    /// Refuse the call with a gateway error.
    FailClosed,
}

/// The 32-byte HMAC key of the audit chain. Never printed.
#[derive(Clone)]
pub struct AuditKey(pub [u8; 32]);

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey(***)")
    }
}

/// `audit.arguments:` after validation.
#[derive(Debug, Clone, Default)]
pub struct ArgumentsConfig {
    /// Canonical tool targets (`upstream/tool`) whose arguments are recorded.
    pub tools: Vec<GlobMatcher>,
    /// Keys redacted at any depth, normalized ([`normalize_key`]), built-in ones included.
    pub redact_keys: Vec<String>,
    /// Patterns redacted in string values, built-in ones included.
    pub redact_values: Vec<Regex>,
}

impl ArgumentsConfig {
    /// Whether the arguments of a call to `target` (`upstream/tool`) are recorded.
    pub fn records(&self, target: &str) -> bool {
        self.tools.iter().any(|t| t.is_match(target))
    }
}

/// `telemetry:` after validation.
#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// JSON log lines instead of text (`log_format: json`).
    pub json_logs: bool,
    /// OpenTelemetry export, when configured.
    pub otlp: Option<OtlpConfig>,
}

/// `telemetry.otlp:` after validation.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// The collector's OTLP/HTTP traces URL (`…/v1/traces`).
    pub traces_url: Url,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

pub(super) fn audit(raw: &RawAudit, base: &Path, issues: &mut Issues) -> Option<AuditConfig> {
    let sink = match raw.sink.as_deref() {
        None | Some("file") => match &raw.path {
            None => {
                issues.push("audit.path", "required for the file sink");
                None
            }
            Some(path) => {
                let rotate = raw.rotate.as_ref();
                let max_bytes = match rotate.and_then(|r| r.max_bytes.as_ref()) {
                    None => Some(DEFAULT_MAX_BYTES),
                    Some(size) => issues
                        .check("audit.rotate.max_bytes", byte_size(size))
                        .map(|b| b as u64),
                };
                let max_age = issues.check(
                    "audit.rotate.max_age",
                    duration(rotate.and_then(|r| r.max_age.as_deref()), DEFAULT_MAX_AGE)
                        .and_then(positive),
                );
                Some(AuditSink::File {
                    path: base.join(path),
                    max_bytes: max_bytes?,
                    max_age: max_age?,
                })
            }
        },
        Some("stdout") => {
            if raw.path.is_some() || raw.rotate.is_some() {
                issues.push("audit", "`path` and `rotate` apply to the file sink only");
            }
            Some(AuditSink::Stdout)
        }
        Some(other) => {
            issues.push(
                "audit.sink",
                format!("{other:?} is not one of file, stdout"),
            );
            None
        }
    };
    let key = match &raw.key_file {
        None => Some(None),
        Some(file) => issues
            .check("audit.key_file", read_key(&base.join(file)))
            .map(|k| Some(AuditKey(k))),
    };
    let queue = match raw.queue.unwrap_or(DEFAULT_QUEUE) {
        0 => {
            issues.push("audit.queue", "must be at least 1");
            None
        }
        n => usize::try_from(n).ok(),
    };
    let when_full = issues.check(
        "audit.when_full",
        match raw.when_full.as_deref() {
            None | Some("block") => Ok(WhenFull::Block),
            Some("fail_closed") => Ok(WhenFull::FailClosed),
            Some(other) => Err(format!("{other:?} is not one of block, fail_closed")),
        },
    );
    let arguments = arguments(raw.arguments.as_ref(), issues);
    Some(AuditConfig {
        sink: sink?,
        key: key?,
        queue: queue?,
        when_full: when_full?,
        arguments: arguments?,
    })
}

fn arguments(raw: Option<&RawArguments>, issues: &mut Issues) -> Option<ArgumentsConfig> {
    let empty = RawArguments::default();
    let raw = raw.unwrap_or(&empty);
    let mut ok = true;
    let mut tools = Vec::new();
    for (i, pattern) in raw.tools.iter().enumerate() {
        match crate::glob::compile(pattern) {
            Ok(glob) => tools.push(glob.compile_matcher()),
            Err(e) => {
                issues.push(format!("audit.arguments.tools[{i}]"), e);
                ok = false;
            }
        }
    }
    let mut redact_keys: Vec<String> = BUILTIN_REDACT_KEYS.iter().map(|k| k.to_string()).collect();
    redact_keys.extend(raw.redact_keys.iter().map(|k| normalize_key(k)));
    redact_keys.sort();
    redact_keys.dedup();
    let mut redact_values = Vec::new();
    let builtin = BUILTIN_REDACT_VALUES.iter().map(|p| (None, *p));
    let configured = raw
        .redact_values
        .iter()
        .enumerate()
        .map(|(i, p)| (Some(i), p.as_str()));
    for (at, pattern) in builtin.chain(configured) {
        match Regex::new(pattern) {
            Ok(re) => redact_values.push(re),
            Err(e) => {
                let at = at.map_or("audit.arguments".into(), |i| {
                    format!("audit.arguments.redact_values[{i}]")
                });
                issues.push(at, format!("{pattern:?} is not a regular expression: {e}"));
                ok = false;
            }
        }
    }
    ok.then_some(ArgumentsConfig {
        tools,
        redact_keys,
        redact_values,
    })
}

pub(super) fn telemetry(raw: &RawTelemetry, issues: &mut Issues) -> Option<TelemetryConfig> {
    let json_logs = issues.check(
        "telemetry.log_format",
        match raw.log_format.as_deref() {
            None | Some("text") => Ok(false),
            Some("json") => Ok(true),
            Some(other) => Err(format!("{other:?} is not one of text, json")),
        },
    );
    let otlp = match &raw.otlp {
        None => Some(None),
        Some(o) => issues
            .check(
                "telemetry.otlp.endpoint",
                super::validate::http_url(&o.endpoint).and_then(traces_url),
            )
            .map(|traces_url| {
                Some(OtlpConfig {
                    traces_url,
                    service_name: o.service_name.clone().unwrap_or_else(|| "mcpgate".into()),
                })
            }),
    };
    Some(TelemetryConfig {
        json_logs: json_logs?,
        otlp: otlp?,
    })
}

/// The OTLP/HTTP traces URL of a collector base URL (OTLP exporter spec: `{endpoint}/v1/traces`
/// unless the URL already names the signal's path).
fn traces_url(base: Url) -> Result<Url, String> {
    if base.path().ends_with("/v1/traces") {
        return Ok(base);
    }
    let joined = format!("{}/v1/traces", base.as_str().trim_end_matches('/'));
    Url::parse(&joined).map_err(|e| e.to_string())
}
