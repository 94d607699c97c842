//! The observability parts of the configuration file as written: `audit:` (DESIGN.md §5.11)
//! and `telemetry:` (logs and OpenTelemetry export). Validated in [`super::telemetry`].

use serde::Deserialize;

use super::raw::RawSize;

/// `audit:`
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// `file` (default) or `stdout`.
    #[serde(default)]
    pub sink: Option<String>,
    /// The active audit file (sink `file`), relative to the configuration file.
    #[serde(default)]
    pub path: Option<String>,
    /// When the active file is rotated.
    #[serde(default)]
    pub rotate: Option<RawRotate>,
    /// File with the 32-byte HMAC-SHA256 chain key (64 hex characters or 32 raw bytes).
    #[serde(default)]
    pub key_file: Option<String>,
    /// Records waiting for the sink, at most (default 10000).
    #[serde(default)]
    pub queue: Option<u64>,
    /// `block` (default) or `fail_closed`.
    #[serde(default)]
    pub when_full: Option<String>,
    /// Which calls' arguments are recorded, and what is redacted in them.
    #[serde(default)]
    pub arguments: Option<RawArguments>,
}

/// `audit.rotate:`
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRotate {
    /// Size at which the active file is rotated, e.g. `100MiB`.
    #[serde(default)]
    pub max_bytes: Option<RawSize>,
    /// Age at which the active file is rotated, e.g. `24h`.
    #[serde(default)]
    pub max_age: Option<String>,
}

/// `audit.arguments:`
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawArguments {
    /// Globs over canonical tool targets (`upstream/tool`) whose arguments are recorded.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Object keys whose values are replaced at any depth (case-insensitive); added to the
    /// built-in list.
    #[serde(default)]
    pub redact_keys: Vec<String>,
    /// Regular expressions; matching parts of string values are replaced.
    #[serde(default)]
    pub redact_values: Vec<String>,
}

/// `telemetry:`
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// `text` (default) or `json`; the `--log-format` flag wins when given.
    #[serde(default)]
    pub log_format: Option<String>,
    /// OpenTelemetry trace export over OTLP/HTTP.
    #[serde(default)]
    pub otlp: Option<RawOtlp>,
}

/// `telemetry.otlp:`
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOtlp {
    /// Collector base URL, e.g. `http://otel-collector:4318` (spans go to `/v1/traces`).
    pub endpoint: String,
    /// `service.name` of the exported spans (default `mcpgate`).
    #[serde(default)]
    pub service_name: Option<String>,
}
