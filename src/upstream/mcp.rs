//! Shaping messages for an upstream of a given era: the `_meta` a modern upstream needs, the
//! `initialize` a legacy upstream needs, and reading what each answers about itself.
//!
//! Pure functions; no I/O.

use serde_json::{Map, Value, json};

use crate::protocol::{
    Era, LATEST_LEGACY, LATEST_MODERN, META_CLIENT_CAPABILITIES, META_CLIENT_INFO,
    META_PROTOCOL_VERSION,
};

use super::{CallContext, UpstreamError};

/// What an upstream said about itself when the gateway connected (discover or initialize).
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamInfo {
    /// The era spoken with it.
    pub era: Era,
    /// The protocol revision in use.
    pub protocol_version: String,
    /// Its `ServerCapabilities` object, verbatim.
    pub capabilities: Value,
    /// Its `instructions`, if any.
    pub instructions: Option<String>,
    /// Its `serverInfo` (`Implementation`), if given.
    pub server_info: Option<Value>,
}

/// The gateway's own `Implementation` object, as sent to upstreams and clients.
pub fn gateway_implementation() -> Value {
    json!({"name": "mcpgate", "title": "mcpgate MCP gateway", "version": env!("CARGO_PKG_VERSION")})
}

fn is_protocol_meta_key(key: &str) -> bool {
    key.starts_with("io.modelcontextprotocol/")
}

/// The `_meta` key carrying a W3C `traceparent` (the convention of OpenTelemetry's MCP
/// instrumentation; the HTTP header of the same name is set too for HTTP upstreams).
pub const META_TRACEPARENT: &str = "traceparent";

/// The `traceparent` of shaped `params`, for the HTTP header.
pub fn traceparent(params: Option<&Value>) -> Option<&str> {
    params?.get("_meta")?.get(META_TRACEPARENT)?.as_str()
}

/// Rewrites `params` for an upstream of `era`.
///
/// Modern: the request `_meta` gets this gateway's protocol version, the client capabilities
/// and client info of `ctx`; any protocol keys the downstream sent are replaced. Legacy: the
/// modern protocol keys are removed (they mean nothing in a session) and other `_meta` entries,
/// such as `progressToken`, stay. Both: `_meta.traceparent` names the gateway's span in the
/// caller's trace ([`crate::telemetry::trace_context::current`]) when there is a trace.
pub fn shape_params(era: Era, params: Option<Value>, ctx: &CallContext) -> Option<Value> {
    let mut params = match params {
        Some(Value::Object(map)) => map,
        Some(other) => return Some(other),
        None if era == Era::Legacy => return None,
        None => Map::new(),
    };
    let mut meta = match params.remove("_meta") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    meta.retain(|k, _| !is_protocol_meta_key(k));
    // W3C trace context, under the gateway's span (the client's own value is replaced).
    if let Some(trace) = crate::telemetry::trace_context::current(ctx.origin.trace) {
        meta.insert(META_TRACEPARENT.into(), Value::from(trace.to_string()));
    }
    if era == Era::Modern {
        meta.insert(META_PROTOCOL_VERSION.into(), Value::from(LATEST_MODERN));
        meta.insert(
            META_CLIENT_CAPABILITIES.into(),
            ctx.client_capabilities.clone(),
        );
        meta.insert(
            META_CLIENT_INFO.into(),
            ctx.client_info
                .clone()
                .unwrap_or_else(gateway_implementation),
        );
        if let Some(level) = &ctx.log_level {
            meta.insert(
                crate::protocol::META_LOG_LEVEL.into(),
                Value::from(level.as_str()),
            );
        }
    }
    if !meta.is_empty() {
        params.insert("_meta".into(), Value::Object(meta));
    }
    Some(Value::Object(params))
}

/// The client capabilities the gateway declares on connections it shares between clients
/// (the catalogue plane, stdio processes, modern clients in front of legacy upstreams): every
/// server→client feature it can relay. A request for a feature the calling client did not
/// declare is answered with an error by the gateway, never forwarded.
pub fn relayed_client_capabilities() -> Value {
    json!({"sampling": {}, "elicitation": {"form": {}, "url": {}}, "roots": {}})
}

/// Params of the `server/discover` probe.
pub fn discover_params() -> Value {
    json!({"_meta": {
        META_PROTOCOL_VERSION: LATEST_MODERN,
        META_CLIENT_CAPABILITIES: {},
        META_CLIENT_INFO: gateway_implementation(),
    }})
}

/// Params of the legacy `initialize` request the gateway sends.
pub fn initialize_params(capabilities: &Value) -> Value {
    json!({
        "protocolVersion": LATEST_LEGACY,
        "capabilities": capabilities,
        "clientInfo": gateway_implementation(),
    })
}

/// Reads a `DiscoverResult`: `Some(info)` when it names a modern revision the gateway speaks.
pub fn parse_discover(result: &Value) -> Option<UpstreamInfo> {
    let versions = result.get("supportedVersions")?.as_array()?;
    let server_info = result
        .get("_meta")
        .and_then(|m| m.get(crate::protocol::META_SERVER_INFO));
    versions
        .iter()
        .any(|v| v.as_str() == Some(LATEST_MODERN))
        .then(|| UpstreamInfo::from_result(Era::Modern, LATEST_MODERN, result, server_info))
}

impl UpstreamInfo {
    /// Reads capabilities and instructions, which discover and initialize results share.
    fn from_result(era: Era, version: &str, result: &Value, server_info: Option<&Value>) -> Self {
        Self {
            era,
            protocol_version: version.to_string(),
            capabilities: result.get("capabilities").cloned().unwrap_or(json!({})),
            instructions: result
                .get("instructions")
                .and_then(Value::as_str)
                .map(str::to_string),
            server_info: server_info.cloned(),
        }
    }
}

/// Whether an error answer to the `server/discover` probe comes from a modern-only upstream that
/// shares no revision with the gateway: an `UnsupportedProtocolVersionError` whose `supported`
/// list names no legacy revision. Any other error means "legacy: fall back to `initialize`"
/// (2026-07-28 `basic/versioning`, "Backward Compatibility").
pub fn is_incompatible_modern(error: &Value) -> bool {
    let code = error.get("code").and_then(Value::as_i64);
    let supported = error
        .get("data")
        .and_then(|d| d.get("supported"))
        .and_then(Value::as_array);
    code == Some(crate::jsonrpc::code::UNSUPPORTED_PROTOCOL_VERSION)
        && supported.is_some_and(|list| {
            !list
                .iter()
                .any(|v| v.as_str().and_then(Era::of_version) == Some(Era::Legacy))
        })
}

/// Reads an `InitializeResult`.
///
/// # Errors
/// [`UpstreamError::Handshake`] when the result lacks `protocolVersion` or names a revision the
/// gateway does not speak.
pub fn parse_initialize(result: &Value) -> Result<UpstreamInfo, UpstreamError> {
    let version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| UpstreamError::Handshake {
            detail: "initialize result has no protocolVersion".into(),
        })?;
    if !crate::protocol::LEGACY_VERSIONS.contains(&version) && version != "2024-11-05" {
        return Err(UpstreamError::Handshake {
            detail: format!("upstream chose unsupported protocol version {version:?}").into(),
        });
    }
    Ok(UpstreamInfo::from_result(
        Era::Legacy,
        version,
        result,
        result.get("serverInfo"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modern_meta_replaces_downstream_protocol_keys_and_keeps_others() {
        let ctx = CallContext::shared();
        let params =
            json!({"name": "t", "_meta": {"progressToken": 5, META_PROTOCOL_VERSION: "x"}});
        let out = shape_params(Era::Modern, Some(params), &ctx).unwrap();
        assert_eq!(out["_meta"]["progressToken"], 5);
        assert_eq!(out["_meta"][META_PROTOCOL_VERSION], LATEST_MODERN);
        assert_eq!(out["_meta"][META_CLIENT_CAPABILITIES], json!({}));
        assert_eq!(out["name"], "t");
    }

    #[test]
    fn legacy_strips_protocol_keys_and_empty_meta() {
        let ctx = CallContext::shared();
        let params = json!({"name": "t", "_meta": {META_PROTOCOL_VERSION: "2026-07-28"}});
        let out = shape_params(Era::Legacy, Some(params), &ctx).unwrap();
        assert_eq!(out, json!({"name": "t"}));
        assert_eq!(shape_params(Era::Legacy, None, &ctx), None);
    }

    #[test]
    fn reads_discover_and_initialize() {
        let d = json!({"supportedVersions": ["2026-07-28", "2025-11-25"], "capabilities": {"tools": {}},
                       "resultType": "complete", "ttlMs": 0, "cacheScope": "public"});
        assert_eq!(parse_discover(&d).unwrap().era, Era::Modern);
        assert!(parse_discover(&json!({"supportedVersions": ["2025-11-25"]})).is_none());
        let i = json!({"protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {"name": "x", "version": "1"}});
        assert_eq!(parse_initialize(&i).unwrap().protocol_version, "2025-06-18");
        assert!(parse_initialize(&json!({"protocolVersion": "1999-01-01"})).is_err());
    }
}
