//! Legacy-era (2025-03-26 … 2025-11-25) requests: `initialize`, sealed sessions, and requests
//! within a session.
//!
//! Session rules (2025-11-25 Streamable HTTP, "Session Management"): `initialize` mints a session
//! id; any other request without one gets 400; an id that does not open, was deleted, or belongs
//! to another principal gets 404 (the client must start over). `MCP-Protocol-Version`, when sent,
//! must equal the negotiated version (400 otherwise); when absent, it is assumed as the spec
//! allows for 2025-03-26 clients.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::relay::{self, LegacyPeer, Peer};
use super::session::{SessionClaims, now_secs};
use super::wire::{self, Failure};
use super::{Gateway, identity};
use crate::auth::Principal;
use crate::error::GatewayError;
use crate::jsonrpc::{self, Message};
use crate::protocol::{Era, HEADER_PROTOCOL_VERSION, HEADER_SESSION_ID, negotiate_legacy};
use crate::upstream::mcp::gateway_implementation;
use crate::upstream::{CallContext, RequestOrigin};

/// Handles one legacy message.
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
    if let Message::Request { id, method, params } = &message
        && method == "initialize"
    {
        return initialize(gw, principal, id.clone(), params.as_ref())
            .map_err(|e| Failure::new(e, Era::Legacy, Some(id.clone())));
    }
    let id = match &message {
        Message::Request { id, .. } => Some(id.clone()),
        _ => None,
    };
    let claims = session(gw, principal, headers).map_err(|e| Failure::new(e, Era::Legacy, id))?;
    handle_in_session(gw, principal, claims, message, origin).await
}

/// Handles one message of an open legacy session, whichever transport carried it.
///
/// # Errors
/// A [`Failure`] for every rejected request.
pub async fn handle_in_session(
    gw: &Gateway,
    principal: &Arc<Principal>,
    claims: Arc<SessionClaims>,
    message: Message,
    origin: RequestOrigin,
) -> Result<Response, Failure> {
    let state = gw.sessions.get(claims.id);
    let (id, method, params) = match message {
        Message::Request { id, method, params } => (id, method, params),
        Message::Notification { method, params } => {
            if method == "notifications/cancelled"
                && let Some(request_id) = params.as_ref().and_then(|p| p.get("requestId"))
            {
                let found = state.cancel(request_id);
                tracing::debug!(session = %claims.id, %request_id, found, "client cancelled a request");
            }
            return Ok(wire::accepted());
        }
        Message::Response { id, outcome } => {
            match id.as_str().and_then(|gateway_id| state.take(gateway_id)) {
                Some(request) => {
                    if let Err(e) = request.respond(outcome).await {
                        tracing::warn!(error = %e, "could not deliver the client's answer upstream");
                    }
                }
                None => {
                    tracing::debug!(session = %claims.id, %id, "answer to no pending server request")
                }
            }
            return Ok(wire::accepted());
        }
    };
    if method == "logging/setLevel" {
        let level = params
            .as_ref()
            .and_then(|p| p.get("level"))
            .and_then(Value::as_str)
            .filter(|l| relay::severity(l).is_some());
        let Some(level) = level else {
            let e = GatewayError::InvalidParams {
                message: "`level` must be a logging level such as info or error".into(),
                transport: false,
            };
            return Err(Failure::new(e, Era::Legacy, Some(id)));
        };
        // Applied by the gateway to what it relays: upstream connections may be shared.
        state.set_log_level(level.to_string());
        return Ok(wire::json(
            StatusCode::OK,
            &jsonrpc::result_response(id, json!({})),
        ));
    }
    let subscription = subscription(gw, &method, params.as_ref());
    if let Some((true, uri)) = &subscription
        && !state.can_subscribe(uri)
    {
        let e = GatewayError::InvalidParams {
            message: format!(
                "this session holds {} resource subscriptions, the most it may",
                super::session_state::MAX_SUBSCRIPTIONS
            ),
            transport: false,
        };
        return Err(Failure::new(e, Era::Legacy, Some(id)));
    }
    let ctx = CallContext {
        downstream_session: Some(claims.id),
        client_capabilities: claims.capabilities.clone(),
        client_info: claims.client_info.clone(),
        log_level: state.log_level(),
        principal: Some(Arc::clone(principal)),
        origin: origin.with_meta(params.as_ref()),
    };
    let in_flight = state.track(&id);
    let routed = gw
        .router
        .handle(&ctx, &method, params)
        .await
        .map_err(|e| Failure::new(e, Era::Legacy, Some(id.clone())))?;
    // Recorded only once the router let it through (the resource exists and policy allows it).
    if let Some((subscribe, uri)) = subscription {
        state.set_subscribed(&uri, subscribe);
        if let Some(events) = &gw.session_events {
            events.subscription(claims.id, &uri, subscribe);
        }
    }
    let peer = Peer::Legacy(LegacyPeer {
        state,
        session: claims,
        ids: std::sync::Arc::clone(&gw.sessions),
        in_flight,
    });
    Ok(relay::respond(id, routed, peer).await)
}

/// For `resources/subscribe` (`true`) and `resources/unsubscribe` (`false`): the client-facing
/// form of the resource the router will forward, the URI that updates are announced for.
fn subscription(gw: &Gateway, method: &str, params: Option<&Value>) -> Option<(bool, String)> {
    let subscribe = match method {
        "resources/subscribe" => true,
        "resources/unsubscribe" => false,
        _ => return None,
    };
    let uri = params?.get("uri")?.as_str()?;
    let snapshot = gw.router.catalogue().snapshot();
    let (resolved, forward) =
        crate::router::resolve_uri(&snapshot, uri, crate::catalogue::ListKind::Resources).ok()?;
    Some((subscribe, snapshot.wire_uri(&resolved.upstream, &forward)))
}

/// Answers `initialize` and mints the sealed session id.
fn initialize(
    gw: &Gateway,
    principal: &Principal,
    id: Value,
    params: Option<&Value>,
) -> Result<Response, GatewayError> {
    let (claims, result) = open_session(gw, principal, params, negotiate_legacy)?;
    let token = gw.sealer.seal(&claims);
    let mut response = wire::json(StatusCode::OK, &jsonrpc::result_response(id, result));
    let value = HeaderValue::from_str(&token).map_err(|_| GatewayError::InvalidRequest {
        reason: "could not encode the session id".into(),
    })?;
    response.headers_mut().insert(HEADER_SESSION_ID, value);
    Ok(response)
}

/// Validates `initialize` params and opens a session: its claims and the `InitializeResult`.
/// `negotiate` picks the revision to answer with.
///
/// # Errors
/// [`GatewayError::InvalidParams`] for missing or malformed params.
pub fn open_session(
    gw: &Gateway,
    principal: &Principal,
    params: Option<&Value>,
    negotiate: fn(&str) -> &'static str,
) -> Result<(SessionClaims, Value), GatewayError> {
    let invalid = |message: &str| GatewayError::InvalidParams {
        message: message.to_string(),
        transport: false,
    };
    let params = params.ok_or_else(|| invalid("initialize requires params"))?;
    let requested = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("`protocolVersion` must be a string"))?;
    let capabilities = params
        .get("capabilities")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if !capabilities.is_object() {
        return Err(invalid("`capabilities` must be an object"));
    }
    let version = negotiate(requested);
    let claims = SessionClaims {
        id: Uuid::new_v4(),
        version: version.to_string(),
        capabilities,
        client_info: params.get("clientInfo").cloned(),
        principal_digest: principal.digest(),
        issued_at: now_secs(),
    };
    let snapshot = gw.router.catalogue().snapshot();
    let view = identity::View::new(&snapshot, &gw.router.access().grant(principal));
    let mut result = Map::new();
    result.insert("protocolVersion".into(), Value::from(version));
    result.insert("capabilities".into(), view.capabilities(Era::Legacy));
    result.insert("serverInfo".into(), gateway_implementation());
    if let Some(text) = view.instructions() {
        result.insert("instructions".into(), Value::from(text));
    }
    tracing::info!(session = %claims.id, version, "legacy session opened");
    Ok((claims, Value::Object(result)))
}

/// Opens and checks the session of a request.
///
/// # Errors
/// [`GatewayError::SessionRequired`], [`GatewayError::SessionNotFound`] or
/// [`GatewayError::ProtocolVersionMismatch`].
pub fn session(
    gw: &Gateway,
    principal: &Principal,
    headers: &HeaderMap,
) -> Result<Arc<SessionClaims>, GatewayError> {
    let token = headers
        .get(HEADER_SESSION_ID)
        .ok_or(GatewayError::SessionRequired)?
        .to_str()
        .map_err(|_| GatewayError::SessionNotFound)?;
    let claims = gw.sealer.open(token).ok_or(GatewayError::SessionNotFound)?;
    if gw.revoked.contains(&claims.id) || claims.principal_digest != principal.digest() {
        return Err(GatewayError::SessionNotFound);
    }
    if let Some(got) = headers.get(HEADER_PROTOCOL_VERSION) {
        let got = got.to_str().unwrap_or_default();
        if got != claims.version {
            return Err(GatewayError::ProtocolVersionMismatch {
                got: got.to_string(),
                negotiated: claims.version.clone(),
            });
        }
    }
    Ok(claims)
}

/// Ends the session of a `DELETE`: revokes the id and closes its upstream sessions.
///
/// # Errors
/// As [`session`].
pub async fn end_session(
    gw: &Gateway,
    principal: &Principal,
    headers: &HeaderMap,
) -> Result<(), GatewayError> {
    let claims = session(gw, principal, headers)?;
    gw.revoked.revoke(claims.id).await;
    gw.sessions.remove(claims.id);
    gw.router
        .catalogue()
        .upstreams()
        .close_session(claims.id)
        .await;
    tracing::info!(session = %claims.id, "legacy session ended");
    Ok(())
}
