//! Modern-era (2026-07-28) requests: stateless, validated per request.
//!
//! Validation follows the Streamable HTTP "Server Validation" rules: `_meta` must carry the
//! protocol version and client capabilities (400, -32602); `MCP-Protocol-Version`, `Mcp-Method`
//! and, for the methods that name a target ([`crate::protocol::name_field`]), `Mcp-Name` must be
//! present and equal to the body (400, -32020); the version must be one the gateway speaks
//! (400, -32022). The tasks extension's methods need the extension in the request's client
//! capabilities (400, -32021).
//! Results get `resultType`, and list results `ttlMs` and `cacheScope` (SEP-2549 caching hints).

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::handoff::Retry;
use super::mrtr::{Binding, Continuations, Resumed};
use super::relay::{self, ModernPeer, Peer};
use super::wire::{self, Failure};
use super::{Gateway, identity};
use crate::auth::Principal;
use crate::catalogue::ListKind;
use crate::error::GatewayError;
use crate::jsonrpc::{self, Message};
use crate::protocol::{
    EXTENSION_TASKS, Era, HEADER_METHOD, HEADER_NAME, HEADER_PROTOCOL_VERSION,
    META_CLIENT_CAPABILITIES, META_CLIENT_INFO, META_LOG_LEVEL, META_PROTOCOL_VERSION,
    META_SERVER_INFO, MODERN_VERSIONS, decode_header_value, is_modern_method, is_task_method,
};
use crate::upstream::mcp::gateway_implementation;
use crate::upstream::{CallContext, RequestOrigin};

/// Handles one modern message.
///
/// # Errors
/// A [`Failure`] for every rejected request; see the module docs.
pub async fn handle(
    gw: &Gateway,
    principal: &Arc<Principal>,
    headers: &HeaderMap,
    message: Message,
    origin: RequestOrigin,
) -> Result<Response, Failure> {
    let (id, method, params) = match message {
        Message::Request { id, method, params } => (id, method, params),
        // No client notifications are defined over modern Streamable HTTP; accept and ignore.
        Message::Notification { .. } => return Ok(wire::accepted()),
        Message::Response { .. } => {
            return Err(Failure::new(
                GatewayError::UnexpectedResponse,
                Era::Modern,
                None,
            ));
        }
    };
    let fail = |e| Failure::new(e, Era::Modern, Some(id.clone()));
    let mut ctx = validate(headers, &method, params.as_ref()).map_err(fail)?;
    ctx.origin = origin.with_meta(params.as_ref());
    ctx.principal = Some(Arc::clone(principal));
    if method == "tools/call" {
        check_param_headers(gw, principal, headers, params.as_ref()).map_err(fail)?;
    }
    if !is_modern_method(&method) {
        return Err(fail(GatewayError::MethodNotFound { method }));
    }
    if is_task_method(&method)
        && !identity::declares_extension(&ctx.client_capabilities, EXTENSION_TASKS)
    {
        return Err(fail(GatewayError::MissingClientCapability {
            required: json!({ "extensions": { EXTENSION_TASKS: {} } }),
        }));
    }
    if method == "subscriptions/listen" {
        let filter = params
            .as_ref()
            .and_then(|p| p.get("notifications"))
            .and_then(Value::as_object)
            .ok_or_else(|| {
                fail(GatewayError::InvalidParams {
                    message: "`notifications` must be an object (a SubscriptionFilter)".into(),
                    transport: false,
                })
            })?;
        return Ok(super::events::listen(gw, id.clone(), filter, Arc::clone(principal)).await);
    }
    if method == "server/discover" {
        let mut result = discover(gw, principal);
        decorate(ttl_ms(gw), &method, &mut result);
        return Ok(wire::json(
            StatusCode::OK,
            &jsonrpc::result_response(id, result),
        ));
    }
    let target = params
        .as_ref()
        .zip(crate::protocol::name_field(&method))
        .and_then(|(p, field)| p.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let peer = modern_peer(
        gw,
        params.as_ref(),
        ctx.client_capabilities.clone(),
        principal.digest(),
        method.clone(),
        target,
    );
    if Continuations::supports(&method)
        && let Some(p) = params.as_ref()
    {
        let binding = Binding {
            principal: &peer.principal,
            method: &peer.method,
            target: &peer.target,
        };
        match gw.continuations.resume(p, &binding).await.map_err(fail)? {
            Some(Resumed::Here(call)) => {
                return Ok(relay::resume(id, *call, Peer::Modern(peer)).await);
            }
            Some(Resumed::Elsewhere {
                handoff,
                owner,
                cid,
            }) => {
                let retry = Retry {
                    cid,
                    id: id.clone(),
                    params: p.clone(),
                    capabilities: peer.capabilities,
                    principal: peer.principal,
                    method: peer.method,
                    target: peer.target,
                };
                return handoff.forward(&owner, retry).await.map_err(fail);
            }
            None => {}
        }
    }
    let routed = gw
        .router
        .handle(&ctx, &method, params)
        .await
        .map_err(fail)?;
    Ok(relay::respond(id, routed, Peer::Modern(peer)).await)
}

/// The relay's view of a modern request with `params`, from a client declaring
/// `capabilities`, bound to principal digest `principal`, `method` and `target`.
fn modern_peer(
    gw: &Gateway,
    params: Option<&Value>,
    capabilities: Value,
    principal: String,
    method: String,
    target: String,
) -> ModernPeer {
    let log_level = params
        .and_then(|p| p["_meta"].get(META_LOG_LEVEL))
        .and_then(Value::as_str)
        .map(str::to_string);
    let ttl = ttl_ms(gw);
    ModernPeer {
        decorate: Box::new({
            let method = method.clone();
            move |result| decorate(ttl, &method, result)
        }),
        log_level,
        capabilities,
        continuations: Arc::clone(&gw.continuations),
        principal,
        method,
        target,
    }
}

/// Answers, on the replica where its call is parked, an MRTR retry that reached another
/// replica ([`super::handoff`]), as [`handle`] would have had the retry come here.
pub async fn answer_handed_off(gw: &Gateway, retry: Retry) -> Response {
    let Retry {
        cid,
        id,
        params,
        capabilities,
        principal,
        method,
        target,
    } = retry;
    match gw.continuations.take(cid, &params).await {
        Ok(call) => {
            let peer = modern_peer(gw, Some(&params), capabilities, principal, method, target);
            relay::resume(id, call, Peer::Modern(peer)).await
        }
        Err(error) => Failure::new(error, Era::Modern, Some(id)).into_response(),
    }
}

/// Checks `_meta` and the mirrored headers; returns the call context they describe.
fn validate(
    headers: &HeaderMap,
    method: &str,
    params: Option<&Value>,
) -> Result<CallContext, GatewayError> {
    let bad_meta = |message: String| GatewayError::InvalidParams {
        message,
        transport: true,
    };
    let meta = params
        .and_then(|p| p.get("_meta"))
        .and_then(Value::as_object)
        .ok_or_else(|| {
            bad_meta("params._meta is required in protocol version 2026-07-28".into())
        })?;
    let version = meta
        .get(META_PROTOCOL_VERSION)
        .and_then(Value::as_str)
        .ok_or_else(|| {
            bad_meta(format!(
                "params._meta[\"{META_PROTOCOL_VERSION}\"] must be a string"
            ))
        })?;
    let header = |name: &str| -> Result<String, GatewayError> {
        let value = headers
            .get(name)
            .ok_or_else(|| GatewayError::HeaderMismatch {
                detail: format!("required header {name} is missing"),
            })?;
        let text = value.to_str().map_err(|_| GatewayError::HeaderMismatch {
            detail: format!("{name} contains invalid characters"),
        })?;
        decode_header_value(text).map_err(|e| GatewayError::HeaderMismatch {
            detail: format!("{name}: {e}"),
        })
    };
    let header_version = header(HEADER_PROTOCOL_VERSION)?;
    if header_version != version {
        return Err(GatewayError::HeaderMismatch {
            detail: format!(
                "MCP-Protocol-Version header {header_version:?} does not match body value {version:?}"
            ),
        });
    }
    if !MODERN_VERSIONS.contains(&version) {
        return Err(GatewayError::UnsupportedProtocolVersion {
            requested: version.to_string(),
        });
    }
    let header_method = header(HEADER_METHOD)?;
    if header_method != method {
        return Err(GatewayError::HeaderMismatch {
            detail: format!(
                "Mcp-Method header {header_method:?} does not match body value {method:?}"
            ),
        });
    }
    if let Some(field) = crate::protocol::name_field(method) {
        let body_name = params
            .and_then(|p| p.get(field))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let header_name = header(HEADER_NAME)?;
        if header_name != body_name {
            return Err(GatewayError::HeaderMismatch {
                detail: format!(
                    "Mcp-Name header {header_name:?} does not match body value {body_name:?}"
                ),
            });
        }
    }
    let capabilities = meta
        .get(META_CLIENT_CAPABILITIES)
        .filter(|c| c.is_object())
        .ok_or_else(|| {
            bad_meta(format!(
                "params._meta[\"{META_CLIENT_CAPABILITIES}\"] must be an object"
            ))
        })?;
    Ok(CallContext {
        downstream_session: None,
        client_capabilities: capabilities.clone(),
        client_info: meta.get(META_CLIENT_INFO).cloned(),
        log_level: meta
            .get(META_LOG_LEVEL)
            .and_then(Value::as_str)
            .map(str::to_string),
        principal: None,
        origin: RequestOrigin::default(),
    })
}

/// Checks the `Mcp-Param-*` headers of a `tools/call` against the listed tool's annotations.
/// An unknown tool, or one the caller may not call, is left for the router to reject as
/// unknown: a header mismatch must not tell a caller that a denied tool exists.
fn check_param_headers(
    gw: &Gateway,
    principal: &Principal,
    headers: &HeaderMap,
    params: Option<&Value>,
) -> Result<(), GatewayError> {
    let Some(params) = params else { return Ok(()) };
    let snapshot = gw.router.catalogue().snapshot();
    let Some(tool) = params
        .get("name")
        .and_then(Value::as_str)
        .and_then(|n| snapshot.tool(n))
    else {
        return Ok(());
    };
    let arguments = params.get("arguments").unwrap_or(&Value::Null);
    let Err(detail) = crate::param_headers::check(headers, &tool.param_headers, arguments) else {
        return Ok(());
    };
    // Decided only on a mismatch: the common case costs no policy decision.
    let allowed = gw.router.access().grant(principal).allows_target(
        crate::policy::Kind::Tool,
        tool.target.as_deref(),
        Some(&tool.value),
    );
    if allowed {
        Err(GatewayError::HeaderMismatch { detail })
    } else {
        Ok(())
    }
}

/// The `DiscoverResult`, describing what `principal` can see.
fn discover(gw: &Gateway, principal: &Principal) -> Value {
    let snapshot = gw.router.catalogue().snapshot();
    let view = identity::View::new(&snapshot, &gw.router.access().grant(principal));
    let mut result = Map::new();
    result.insert(
        "supportedVersions".into(),
        json!(crate::protocol::all_versions()),
    );
    result.insert("capabilities".into(), view.capabilities(Era::Modern));
    if let Some(text) = view.instructions() {
        result.insert("instructions".into(), Value::from(text));
    }
    result.insert("ttlMs".into(), json!(ttl_ms(gw)));
    result.insert("cacheScope".into(), json!("public"));
    Value::Object(result)
}

fn ttl_ms(gw: &Gateway) -> u64 {
    u64::try_from(gw.client_ttl.as_millis()).unwrap_or(u64::MAX)
}

/// Adds what a 2026-07-28 result needs: `resultType` (default `complete`), the gateway's
/// `serverInfo` in `_meta` on results it produced itself, and the caching hints of
/// `CacheableResult`. Merged lists are the gateway's own: their hints are `ttlMs` from the
/// configuration and `private` (entries will be filtered per principal). A relayed
/// `resources/read` keeps a modern upstream's hints; a legacy upstream gave none, so it gets
/// `ttlMs: 0` and `private`, the values that promise nothing.
fn decorate(ttl_ms: u64, method: &str, result: &mut Value) {
    let Some(obj) = result.as_object_mut() else {
        return;
    };
    obj.entry("resultType").or_insert_with(|| json!("complete"));
    let is_list = ListKind::from_method(method).is_some();
    if is_list || method == "server/discover" {
        let meta = obj.entry("_meta").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert(META_SERVER_INFO.into(), gateway_implementation());
        }
    }
    if is_list {
        obj.insert("ttlMs".into(), json!(ttl_ms));
        obj.insert("cacheScope".into(), json!("private"));
    } else if method == "resources/read" {
        obj.entry("ttlMs").or_insert_with(|| json!(0));
        obj.entry("cacheScope").or_insert_with(|| json!("private"));
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn params(name: &str) -> Value {
        json!({"name": name, "_meta": {META_PROTOCOL_VERSION: "2026-07-28", META_CLIENT_CAPABILITIES: {}}})
    }

    fn code(e: GatewayError) -> i64 {
        e.to_wire(Era::Modern).error.unwrap()["code"]
            .as_i64()
            .unwrap()
    }

    #[test]
    fn accepts_consistent_headers() {
        let h = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "t"),
        ]);
        assert!(validate(&h, "tools/call", Some(&params("t"))).is_ok());
        let encoded = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?dA==?="),
        ]);
        assert!(validate(&encoded, "tools/call", Some(&params("t"))).is_ok());
    }

    #[test]
    fn rejects_each_inconsistency_with_its_code() {
        let ok = [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "t"),
        ];
        let no_meta =
            validate(&headers(&ok), "tools/call", Some(&json!({"name": "t"}))).unwrap_err();
        assert_eq!(code(no_meta), -32602);
        let other_name = validate(&headers(&ok), "tools/call", Some(&params("u"))).unwrap_err();
        assert_eq!(code(other_name), -32020);
        let missing_method =
            validate(&headers(&ok[..1]), "tools/call", Some(&params("t"))).unwrap_err();
        assert_eq!(code(missing_method), -32020);
        let wrong_version = headers(&[
            ("mcp-protocol-version", "2025-06-18"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "t"),
        ]);
        assert_eq!(
            code(validate(&wrong_version, "tools/call", Some(&params("t"))).unwrap_err()),
            -32020
        );
        let future = headers(&[
            ("mcp-protocol-version", "2099-01-01"),
            ("mcp-method", "tools/list"),
        ]);
        let p =
            json!({"_meta": {META_PROTOCOL_VERSION: "2099-01-01", META_CLIENT_CAPABILITIES: {}}});
        assert_eq!(
            code(validate(&future, "tools/list", Some(&p)).unwrap_err()),
            -32022
        );
        let no_caps = json!({"_meta": {META_PROTOCOL_VERSION: "2026-07-28"}});
        let h = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ]);
        assert_eq!(
            code(validate(&h, "tools/list", Some(&no_caps)).unwrap_err()),
            -32602
        );
    }
}
