//! `GatewayError` and the one mapping from errors to the wire (DESIGN.md §5.5).
//!
//! Every failure a downstream client can see is a [`GatewayError`]. [`GatewayError::to_wire`] is
//! the single place that decides its HTTP status and JSON-RPC error object; handlers never build
//! error responses by hand. Internal details (upstream addresses, I/O errors) are logged by the
//! caller once and never put in the message a client reads.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::jsonrpc::{code, error_object};
use crate::protocol::Era;
use crate::upstream::UpstreamError;

/// What kind of catalogue entry a name or URI referred to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// A tool (`tools/call`).
    Tool,
    /// A prompt (`prompts/get`).
    Prompt,
    /// A resource or resource template URI (`resources/read`, completion refs).
    Resource,
    /// A task id (`tasks/get`, `tasks/result`, `tasks/cancel`).
    Task,
}

impl TargetKind {
    /// The word used in client-facing messages (`tool`, `prompt`, `resource`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tool => "tool",
            Self::Prompt => "prompt",
            Self::Resource => "resource",
            Self::Task => "task",
        }
    }
}

/// Every error a downstream client can receive.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The body is not JSON (400, -32700).
    #[error("parse error: {detail}")]
    Parse {
        /// The JSON parser's message.
        detail: String,
    },
    /// JSON, but not a valid JSON-RPC request (400, -32600).
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// What is wrong.
        reason: String,
    },
    /// The body is larger than `listen.max_body_bytes` (413, -32600).
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The configured limit, bytes.
        limit: usize,
    },
    /// The method is not served in this era (legacy: 200, modern: 404; -32601).
    #[error("method not found: {method}")]
    MethodNotFound {
        /// The method the client asked for.
        method: String,
    },
    /// Invalid params, including a bad or missing modern `_meta` (400 for the modern `_meta`
    /// checks, else 200; -32602).
    #[error("invalid params: {message}")]
    InvalidParams {
        /// Client-facing description.
        message: String,
        /// Whether this is a transport-level rejection (HTTP 400) rather than a method error.
        transport: bool,
    },
    /// Unknown tool, prompt or resource, or one the caller may not use (200, -32602). The message
    /// is the same in both cases so that policy never reveals what exists.
    #[error("unknown {}: {name}", kind.as_str())]
    UnknownTarget {
        /// Tool, prompt or resource.
        kind: TargetKind,
        /// The name or URI as the client sent it.
        name: String,
    },
    /// A target the policy refuses: answered exactly as [`GatewayError::UnknownTarget`] (its
    /// `unknown`), so that policy never reveals what exists; the decision is kept for the
    /// audit record.
    #[error("denied by policy: {unknown}")]
    Denied {
        /// What the client is told: the unknown-target error.
        unknown: Box<GatewayError>,
        /// The decision (`None` for a URI too ambiguous to decide on).
        decision: Option<Box<crate::router::Decision>>,
    },
    /// The audit queue is full and `audit.when_full` is `fail_closed`: the call is refused
    /// rather than made without its record (503 with `Retry-After: 1`, -32000 with
    /// `data.reason` `audit_unavailable`).
    #[error("the audit log is not keeping up; the call was refused")]
    AuditUnavailable,
    /// A limit that fails closed could not be checked: its shared store (Redis) did not answer
    /// (503 with `Retry-After: 1`, -32000 with `data.reason` `rate_limit_store_unavailable`;
    /// DESIGN.md §5.12).
    #[error("the rate-limit store cannot be reached; the call was refused")]
    RateLimitStoreUnavailable,
    /// A pagination cursor the gateway did not issue, or issued for another list (200, -32602).
    #[error("invalid cursor")]
    InvalidCursor,
    /// Modern: HTTP headers missing, malformed or disagreeing with the body (400, -32020).
    #[error("header mismatch: {detail}")]
    HeaderMismatch {
        /// Which header and how.
        detail: String,
    },
    /// The requested protocol revision is not spoken here (400, -32022).
    #[error("unsupported protocol version {requested:?}")]
    UnsupportedProtocolVersion {
        /// What the client asked for.
        requested: String,
    },
    /// Modern: the request needs a client capability it did not declare (400, -32021,
    /// `data.requiredCapabilities`; 2026-07-28 `MissingRequiredClientCapabilityError`).
    #[error("missing required client capability")]
    MissingClientCapability {
        /// What the client must declare, shaped like `ClientCapabilities`.
        required: Value,
    },
    /// Missing or invalid credentials (401) or too few scopes (403), with the `WWW-Authenticate`
    /// challenge of RFC 6750 §3 and RFC 9728 §5.1; the body is an OAuth error object, not
    /// JSON-RPC.
    #[error(transparent)]
    Unauthorized(#[from] crate::auth::Rejection),
    /// Legacy: a request other than `initialize` without `Mcp-Session-Id` (400, -32600).
    #[error("missing Mcp-Session-Id header")]
    SessionRequired,
    /// Legacy: unknown, forged, expired, deleted or foreign session id (404, no body).
    #[error("unknown or expired session")]
    SessionNotFound,
    /// Legacy: `MCP-Protocol-Version` differs from the negotiated revision (400, -32600).
    #[error("MCP-Protocol-Version {got:?} does not match the negotiated version {negotiated:?}")]
    ProtocolVersionMismatch {
        /// The header value.
        got: String,
        /// The version negotiated at `initialize`.
        negotiated: String,
    },
    /// `Origin` or `Host` not allowed: DNS-rebinding protection (403, -32600 without id).
    #[error("{header} {value:?} is not allowed")]
    ForbiddenOrigin {
        /// `Origin` or `Host`.
        header: &'static str,
        /// The rejected value.
        value: String,
    },
    /// HTTP method not served on this endpoint (405).
    #[error("HTTP method not allowed on the MCP endpoint")]
    HttpMethodNotAllowed,
    /// HTTP+SSE (2024-11-05): the connection takes no more messages now (-32000,
    /// `data.reason`): 503 `stream_not_read` when its event stream is full because the client
    /// does not read it, 429 `messages_in_flight` when too many of its messages are being
    /// answered. Both carry `Retry-After: 1`.
    #[error("the connection takes no more messages now")]
    ConnectionBusy {
        /// Whether the client is not reading its event stream (else: too many in flight).
        stream_not_read: bool,
    },
    /// The client sent a JSON-RPC response where none is expected (modern era; 400, -32600).
    #[error("unexpected JSON-RPC response")]
    UnexpectedResponse,
    /// A rate limit refused the call (429 with `Retry-After`, -32000 with `data.reason`
    /// `rate_limited`, `data.limit` and `data.retry_after_ms`; DESIGN.md §5.10).
    #[error("rate limited by the {} limit", limit.as_str())]
    RateLimited {
        /// The limit that refused (the one with the longest wait).
        limit: crate::limits::LimitKind,
        /// Until the call would be let through.
        retry_after: std::time::Duration,
    },
    /// The owning upstream failed: down, timed out, dead mid-call or answered garbage; or its
    /// controls refused the call: circuit open, bulkhead full (200, -32603 with
    /// `data.upstream`, `data.reason`, and `data.retry_after_ms` for an open circuit).
    #[error("upstream {upstream:?} failed")]
    Upstream {
        /// The upstream id.
        upstream: String,
        /// What went wrong.
        #[source]
        source: UpstreamError,
    },
}

/// An error as the client sees it: HTTP status plus an optional JSON-RPC error object, or for
/// authentication failures a challenge and an OAuth error body.
#[derive(Debug, Clone, PartialEq)]
pub struct WireError {
    /// The HTTP status of the response.
    pub status: StatusCode,
    /// The JSON-RPC `error` member, or `None` for a bodiless response (404 session).
    pub error: Option<Value>,
    /// `WWW-Authenticate` and the OAuth error body (`error`, `error_description`; RFC 6750).
    pub challenge: Option<(String, Value)>,
    /// `Retry-After`, whole seconds (RFC 9110 §10.2.3), for refusals the client may retry.
    pub retry_after: Option<u64>,
}

impl GatewayError {
    /// Maps the error to its HTTP status and JSON-RPC error object for a client of `era`
    /// (DESIGN.md §5.5). This is the only such mapping in the crate.
    pub fn to_wire(&self, era: Era) -> WireError {
        let (status, error) = match self {
            Self::Parse { .. } => (
                StatusCode::BAD_REQUEST,
                Some(error_object(
                    code::PARSE_ERROR,
                    "Parse error: body is not valid JSON",
                    None,
                )),
            ),
            Self::InvalidRequest { reason } => (
                StatusCode::BAD_REQUEST,
                Some(error_object(
                    code::INVALID_REQUEST,
                    format!("Invalid Request: {reason}"),
                    None,
                )),
            ),
            Self::PayloadTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                Some(error_object(code::INVALID_REQUEST, self.to_string(), None)),
            ),
            Self::MethodNotFound { method } => (
                match era {
                    Era::Legacy => StatusCode::OK,
                    Era::Modern => StatusCode::NOT_FOUND,
                },
                Some(error_object(
                    code::METHOD_NOT_FOUND,
                    format!("Method not found: {method}"),
                    None,
                )),
            ),
            Self::InvalidParams { message, transport } => (
                if *transport {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::OK
                },
                Some(error_object(code::INVALID_PARAMS, message.clone(), None)),
            ),
            Self::UnknownTarget { kind, name } => {
                let what = match kind {
                    TargetKind::Tool => "Unknown tool",
                    TargetKind::Prompt => "Unknown prompt",
                    TargetKind::Resource => "Resource not found",
                    TargetKind::Task => "Unknown task",
                };
                (
                    StatusCode::OK,
                    Some(error_object(
                        code::INVALID_PARAMS,
                        format!("{what}: {name}"),
                        None,
                    )),
                )
            }
            Self::Denied { unknown, .. } => return unknown.to_wire(era),
            Self::AuditUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                Some(error_object(
                    code::SERVER_ERROR,
                    "The gateway cannot record calls now; retry shortly",
                    Some(json!({ "reason": "audit_unavailable", "gateway": "mcpgate" })),
                )),
            ),
            Self::RateLimitStoreUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                Some(error_object(
                    code::SERVER_ERROR,
                    "The gateway cannot check its rate limits now; retry shortly",
                    Some(json!({ "reason": "rate_limit_store_unavailable", "gateway": "mcpgate" })),
                )),
            ),
            Self::InvalidCursor => (
                StatusCode::OK,
                Some(error_object(code::INVALID_PARAMS, "Invalid cursor", None)),
            ),
            Self::HeaderMismatch { detail } => (
                StatusCode::BAD_REQUEST,
                Some(error_object(
                    code::HEADER_MISMATCH,
                    format!("Header mismatch: {detail}"),
                    None,
                )),
            ),
            Self::UnsupportedProtocolVersion { requested } => (
                StatusCode::BAD_REQUEST,
                Some(error_object(
                    code::UNSUPPORTED_PROTOCOL_VERSION,
                    "Unsupported protocol version",
                    Some(
                        json!({"requested": requested, "supported": crate::protocol::all_versions()}),
                    ),
                )),
            ),
            Self::MissingClientCapability { required } => (
                match era {
                    Era::Legacy => StatusCode::OK,
                    Era::Modern => StatusCode::BAD_REQUEST,
                },
                Some(error_object(
                    code::MISSING_REQUIRED_CLIENT_CAPABILITY,
                    "Missing required client capability",
                    Some(json!({ "requiredCapabilities": required })),
                )),
            ),
            Self::Unauthorized(rejection) => {
                let status = match rejection.error {
                    crate::auth::AuthError::InsufficientScope { .. } => StatusCode::FORBIDDEN,
                    _ => StatusCode::UNAUTHORIZED,
                };
                let body = json!({
                    "error": rejection.code().unwrap_or("unauthorized"),
                    "error_description": rejection.error.to_string(),
                });
                return WireError {
                    status,
                    error: None,
                    challenge: Some((rejection.challenge.clone(), body)),
                    retry_after: None,
                };
            }
            Self::SessionRequired => (
                StatusCode::BAD_REQUEST,
                Some(error_object(
                    code::INVALID_REQUEST,
                    "Bad Request: Mcp-Session-Id header is required (send initialize first)",
                    None,
                )),
            ),
            Self::SessionNotFound => (StatusCode::NOT_FOUND, None),
            Self::ProtocolVersionMismatch { .. } => (
                StatusCode::BAD_REQUEST,
                Some(error_object(
                    code::INVALID_REQUEST,
                    format!("Bad Request: {self}"),
                    None,
                )),
            ),
            Self::ForbiddenOrigin { .. } => (
                StatusCode::FORBIDDEN,
                Some(error_object(
                    code::INVALID_REQUEST,
                    format!("Forbidden: {self}"),
                    None,
                )),
            ),
            Self::HttpMethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, None),
            Self::ConnectionBusy { stream_not_read } => {
                let (status, reason, message) = if *stream_not_read {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "stream_not_read",
                        "the client is not reading its event stream; read it before posting more",
                    )
                } else {
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        "messages_in_flight",
                        "too many messages of this connection are being answered; wait for their answers",
                    )
                };
                (
                    status,
                    Some(error_object(
                        code::SERVER_ERROR,
                        message,
                        Some(json!({ "reason": reason, "gateway": "mcpgate" })),
                    )),
                )
            }
            Self::UnexpectedResponse => (
                StatusCode::BAD_REQUEST,
                Some(error_object(
                    code::INVALID_REQUEST,
                    "Invalid Request: clients must not send JSON-RPC responses in this protocol version",
                    None,
                )),
            ),
            Self::RateLimited { limit, retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                Some(error_object(
                    code::SERVER_ERROR,
                    format!(
                        "Rate limit exceeded ({}); retry after {} s",
                        limit.as_str(),
                        whole_seconds(*retry_after)
                    ),
                    Some(json!({
                        "reason": "rate_limited",
                        "limit": limit.as_str(),
                        "retry_after_ms": millis(*retry_after),
                        "gateway": "mcpgate",
                    })),
                )),
            ),
            Self::Upstream { upstream, source } => {
                let mut data = json!({
                    "upstream": upstream,
                    "reason": source.reason(),
                    "gateway": "mcpgate",
                });
                if let UpstreamError::CircuitOpen { retry_after } = source {
                    data["retry_after_ms"] = json!(millis(*retry_after));
                }
                (
                    StatusCode::OK,
                    Some(error_object(
                        code::INTERNAL_ERROR,
                        format!("Upstream {upstream:?} {}", source.client_message()),
                        Some(data),
                    )),
                )
            }
        };
        let retry_after = match self {
            Self::ConnectionBusy { .. }
            | Self::AuditUnavailable
            | Self::RateLimitStoreUnavailable => Some(1),
            Self::RateLimited { retry_after, .. } => Some(whole_seconds(*retry_after)),
            _ => None,
        };
        WireError {
            status,
            error,
            challenge: None,
            retry_after,
        }
    }
}

impl GatewayError {
    /// Whether the error is the gateway's or an upstream's fault, worth an error in the log
    /// (a refusal that protects the gateway from a client is not).
    pub fn is_fault(&self) -> bool {
        !matches!(self, Self::ConnectionBusy { .. })
            && self.to_wire(Era::Legacy).status.is_server_error()
    }
}

/// `Retry-After` seconds for a wait: rounded up, at least 1 (RFC 9110 §10.2.3 has no fractions,
/// and 0 would invite an immediate retry that is refused again).
fn whole_seconds(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// A wait in whole milliseconds, rounded up.
fn millis(wait: std::time::Duration) -> u64 {
    u64::try_from(wait.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// The HTTP status of an upstream's own JSON-RPC error relayed to a client of `era`. Legacy:
/// always 200. Modern: the statuses 2026-07-28 Streamable HTTP prescribes for the error — 400
/// for `HeaderMismatch`, `MissingRequiredClientCapability` and `UnsupportedProtocolVersion`,
/// 404 for `Method not found` — else 200. The error object itself passes through unchanged.
pub fn relayed_error_status(era: Era, error: &Value) -> StatusCode {
    if era == Era::Legacy {
        return StatusCode::OK;
    }
    match error.get("code").and_then(Value::as_i64) {
        Some(
            code::HEADER_MISMATCH
            | code::MISSING_REQUIRED_CLIENT_CAPABILITY
            | code::UNSUPPORTED_PROTOCOL_VERSION,
        ) => StatusCode::BAD_REQUEST,
        Some(code::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(e: &GatewayError, era: Era) -> (u16, Option<i64>) {
        let w = e.to_wire(era);
        (
            w.status.as_u16(),
            w.error.and_then(|e| e.get("code").and_then(Value::as_i64)),
        )
    }

    #[test]
    fn relayed_errors_keep_their_modern_status() {
        let missing = json!({"code": -32021, "message": "m", "data": {"requiredCapabilities": {}}});
        assert_eq!(
            relayed_error_status(Era::Modern, &missing),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(relayed_error_status(Era::Legacy, &missing), StatusCode::OK);
        let tool = json!({"code": -32602, "message": "Unknown tool"});
        assert_eq!(relayed_error_status(Era::Modern, &tool), StatusCode::OK);
    }

    #[test]
    fn maps_the_design_table() {
        let parse = GatewayError::Parse { detail: "x".into() };
        assert_eq!(code_of(&parse, Era::Legacy), (400, Some(-32700)));
        let nf = GatewayError::MethodNotFound { method: "x".into() };
        assert_eq!(code_of(&nf, Era::Legacy), (200, Some(-32601)));
        assert_eq!(code_of(&nf, Era::Modern), (404, Some(-32601)));
        let unknown = GatewayError::UnknownTarget {
            kind: TargetKind::Tool,
            name: "t".into(),
        };
        assert_eq!(code_of(&unknown, Era::Modern), (200, Some(-32602)));
        let hm = GatewayError::HeaderMismatch { detail: "d".into() };
        assert_eq!(code_of(&hm, Era::Modern), (400, Some(-32020)));
        let uv = GatewayError::UnsupportedProtocolVersion {
            requested: "1".into(),
        };
        let w = uv.to_wire(Era::Modern);
        assert_eq!(w.status, StatusCode::BAD_REQUEST);
        assert_eq!(w.error.as_ref().unwrap()["data"]["requested"], "1");
        assert_eq!(
            code_of(&GatewayError::SessionNotFound, Era::Legacy),
            (404, None)
        );
        let too_big = GatewayError::PayloadTooLarge { limit: 10 };
        assert_eq!(code_of(&too_big, Era::Legacy), (413, Some(-32600)));
        let up = GatewayError::Upstream {
            upstream: "time".into(),
            source: UpstreamError::Timeout,
        };
        let w = up.to_wire(Era::Legacy);
        assert_eq!(w.status, StatusCode::OK);
        assert_eq!(w.error.as_ref().unwrap()["data"]["reason"], "timeout");
    }
}
