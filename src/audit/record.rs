//! The audit records and their JSON encoding (DESIGN.md §5.11; schema `docs/audit.schema.json`).
//!
//! A record is encoded on the path of what it records, as one JSON object without the chain
//! members; the writer seals it ([`super::chain`]). Never a token, API key, cookie or
//! unredacted argument: the principal is named by its claims, an API key by its name.

use std::net::SocketAddr;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

use crate::auth::Principal;
use crate::protocol::Era;

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The upstream answered with a result.
    Ok,
    /// A `tools/call` result with `isError: true`.
    ToolError,
    /// The policy refused it (answered as an unknown target).
    Denied,
    /// A rate limit refused it.
    RateLimited,
    /// The upstream's circuit breaker is open.
    CircuitOpen,
    /// The upstream's bulkhead is full, or the audit queue (`when_full: fail_closed`).
    Overloaded,
    /// No answer within the timeout.
    Timeout,
    /// The upstream failed, or answered with a JSON-RPC error.
    UpstreamError,
    /// Unknown target or method, invalid params or cursor.
    Invalid,
    /// The client went away or cancelled first.
    Cancelled,
}

impl Outcome {
    /// The snake_case name (the metric label too).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ToolError => "tool_error",
            Self::Denied => "denied",
            Self::RateLimited => "rate_limited",
            Self::CircuitOpen => "circuit_open",
            Self::Overloaded => "overloaded",
            Self::Timeout => "timeout",
            Self::UpstreamError => "upstream_error",
            Self::Invalid => "invalid",
            Self::Cancelled => "cancelled",
        }
    }
}

/// `principal`: who called, never how they proved it.
#[derive(Debug, Serialize)]
pub struct PrincipalFields<'a> {
    /// `sub` claim, `api-key:{name}`, or `anonymous`.
    pub sub: &'a str,
    /// Issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<&'a str>,
    /// OAuth client id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<&'a str>,
    /// The API key's name (never the key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<&'a str>,
    /// The TLS client certificate's identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtls: Option<&'a str>,
    /// Roles from the token.
    pub roles: &'a [String],
    /// Groups from the token or API key.
    pub groups: &'a [String],
}

impl<'a> From<&'a Principal> for PrincipalFields<'a> {
    fn from(p: &'a Principal) -> Self {
        Self {
            sub: &p.subject,
            iss: p.issuer.as_deref(),
            client_id: p.client_id.as_deref(),
            api_key: p.api_key.as_deref(),
            mtls: p.mtls_identity.as_deref(),
            roles: &p.roles,
            groups: &p.groups,
        }
    }
}

/// `decision`: the policy decision on a call.
#[derive(Debug, Serialize)]
pub struct DecisionFields<'a> {
    /// `allow` or `deny`.
    pub effect: &'static str,
    /// `enforce` or `audit` (in audit mode a deny went ahead).
    pub mode: &'static str,
    /// Policy file of the deciding rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<&'a str>,
    /// Its line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Its role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'a str>,
    /// The rule (pattern or annotation condition).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'a str>,
    /// Hash of the policy set.
    pub policy_hash: &'a str,
}

impl<'a> From<&'a crate::router::Decision> for DecisionFields<'a> {
    fn from(d: &'a crate::router::Decision) -> Self {
        let rule = d.verdict.rule.as_ref();
        Self {
            effect: d.verdict.effect.as_str(),
            mode: match d.mode {
                crate::policy::Mode::Enforce => "enforce",
                crate::policy::Mode::Audit => "audit",
            },
            file: rule.map(|r| r.file.as_str()),
            line: rule.map(|r| r.line),
            role: rule.map(|r| r.role.as_str()),
            rule: rule.map(|r| r.rule.as_str()),
            policy_hash: &d.policy_hash,
        }
    }
}

/// The request a record is about: where it came from and its trace.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin<'a> {
    /// The TCP peer.
    pub remote_addr: Option<SocketAddr>,
    /// The W3C trace id, 32 lowercase hex digits.
    pub trace_id: Option<&'a str>,
}

/// `event: call`.
#[derive(Debug, Serialize)]
pub struct CallRecord<'a> {
    /// Who called (`None` only for calls the gateway makes itself, which are not recorded).
    pub principal: Option<PrincipalFields<'a>>,
    /// Digest of the legacy session (16 hex digits of its SHA-256).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The client's era.
    pub era: Era,
    /// The JSON-RPC method.
    pub method: &'a str,
    /// Canonical target, `upstream/name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<&'a str>,
    /// The client-facing name or URI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    /// The owning upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<&'a str>,
    /// The policy decision, when policies decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionFields<'a>>,
    /// How it ended.
    pub outcome: Outcome,
    /// The JSON-RPC error code answered, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    /// Time from the request to its end, milliseconds (microsecond precision).
    pub latency_ms: f64,
    /// Lowercase hex SHA-256 of the arguments as compact JSON, for methods with arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args_sha256: Option<&'a str>,
    /// The arguments, redacted, for tools opted in with `audit.arguments.tools`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<&'a Value>,
}

/// `event: auth_failure`.
#[derive(Debug, Serialize)]
pub struct AuthFailureRecord<'a> {
    /// `missing_credentials`, `invalid_token`, `insufficient_scope`, …
    pub reason: &'a str,
    /// The HTTP status answered (401 or 403).
    pub http_status: u16,
    /// The caller, when it was authenticated but lacks scopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<PrincipalFields<'a>>,
    /// The JSON-RPC method, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'a str>,
}

/// `event: policy_loaded`.
#[derive(Debug, Serialize)]
pub struct PolicyLoadedRecord<'a> {
    /// Hash of the policy set now in force.
    pub policy_hash: &'a str,
    /// `enforce` or `audit`.
    pub mode: &'static str,
    /// The policy directory.
    pub dir: &'a str,
    /// Names of its roles.
    pub roles: Vec<&'a str>,
}

/// `event: config_loaded`.
#[derive(Debug, Serialize)]
pub struct ConfigLoadedRecord<'a> {
    /// The configuration file.
    pub config_path: &'a str,
    /// SHA-256 of its text.
    pub config_sha256: &'a str,
    /// Ids of the configured upstreams.
    pub upstreams: Vec<&'a str>,
    /// The gateway's version.
    pub version: &'static str,
}

/// The members every record has, then the event's own.
#[derive(Serialize)]
struct Envelope<'a, T> {
    ts: String,
    id: uuid::Uuid,
    event: &'static str,
    #[serde(flatten)]
    body: &'a T,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote_addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
}

/// A fresh random (version 4, RFC 9562 §5.4) record id, from the thread's CSPRNG rather than
/// `Uuid::new_v4`'s system call per id: ids need to be unique, and a record is made per call.
fn record_id() -> uuid::Uuid {
    use rand::RngCore as _;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// Encodes one record of kind `event` (`call`, `auth_failure`, `policy_loaded`,
/// `config_loaded`): `ts` now (RFC 3339, UTC, milliseconds), a fresh `id`, the event's members,
/// then `remote_addr` and `trace_id` from `origin`.
pub fn encode<T: Serialize>(event: &'static str, body: &T, origin: Origin<'_>) -> Vec<u8> {
    let envelope = Envelope {
        ts: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        id: record_id(),
        event,
        body,
        remote_addr: origin.remote_addr,
        trace_id: origin.trace_id,
    };
    // Serializing these types cannot fail: string keys, no maps with non-string keys.
    serde_json::to_vec(&envelope).unwrap_or_else(|_| b"{}".to_vec())
}

/// The `session` member of a legacy session id: 16 hex digits of its SHA-256 (the id is a
/// bearer credential and is never recorded).
pub fn session_digest(id: &uuid::Uuid) -> String {
    let full = super::sha256_hex(id.as_bytes());
    full[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::record_id;

    #[test]
    fn record_ids_are_distinct_version_4_uuids() {
        let ids: std::collections::HashSet<_> = (0..10_000).map(|_| record_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            assert_eq!(id.get_version(), Some(uuid::Version::Random));
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        }
    }
}
