//! The `/mcp` endpoint (Streamable HTTP): body limit, decoding, era detection, dispatch.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::Value;

use super::authn::{Caller, authorize};
use super::wire::Failure;
use super::{Gateway, legacy, modern};
use crate::auth::Principal;
use crate::error::GatewayError;
use crate::jsonrpc::{DecodeError, Message};
use crate::protocol::{Era, HEADER_PROTOCOL_VERSION, HEADER_SESSION_ID, META_PROTOCOL_VERSION};
use crate::upstream::RequestOrigin;

/// `POST /mcp`: one JSON-RPC message.
pub async fn post(
    State(gw): State<Arc<Gateway>>,
    Extension(principal): Caller,
    Extension(origin): Extension<RequestOrigin>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match handle_post(&gw, &principal, &headers, body, origin).await {
        Ok(response) => response,
        Err(failure) => failure.into_response(),
    }
}

async fn handle_post(
    gw: &Gateway,
    principal: &Arc<Principal>,
    headers: &HeaderMap,
    body: Body,
    origin: RequestOrigin,
) -> Result<Response, Failure> {
    let early_era = header_era(headers);
    let bytes = read_limited(headers, body, gw.max_body_bytes)
        .await
        .map_err(|e| Failure::new(e, early_era, None))?;
    let message = decode(&bytes, early_era)?;
    let era = detect_era(headers, &message)
        .map_err(|e| Failure::new(e, early_era, request_id(&message)))?;
    authorize(gw, principal, &message, origin)
        .await
        .map_err(|e| Failure::new(e, era, request_id(&message)))?;
    match era {
        Era::Modern => modern::handle(gw, principal, headers, message, origin).await,
        Era::Legacy => legacy::handle(gw, principal, headers, message, origin).await,
    }
}

/// `GET /mcp`: with a legacy session, its standalone event stream ([`super::events`]);
/// without one, 405 (the modern era has no GET).
pub async fn get(
    State(gw): State<Arc<Gateway>>,
    Extension(principal): Caller,
    headers: HeaderMap,
) -> Response {
    if headers.get(HEADER_SESSION_ID).is_none() {
        return Failure::new(
            GatewayError::HttpMethodNotAllowed,
            header_era(&headers),
            None,
        )
        .into_response();
    }
    let claims = match legacy::session(&gw, &principal, &headers) {
        Ok(claims) => claims,
        Err(e) => return Failure::new(e, Era::Legacy, None).into_response(),
    };
    // A reconnect after a lost response stream resumes it; anything else is the session's
    // standalone stream.
    if let Some(last) = headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        let (tx, rx) = super::resume::resume_channel();
        if gw.sessions.get(claims.id).streams.resume(last, tx.clone()) {
            return super::relay::sse(rx);
        }
        // Not logged here: another replica's stream, from the shared log.
        if let (Some(mirror), Some((stream, after))) =
            (gw.sessions.mirror(), super::resume::parse_event_id(last))
            && mirror.resume(claims.id, &stream, after, tx).await
        {
            return super::relay::sse(rx);
        }
    }
    super::events::open_session_stream(&gw, &claims, principal)
}

/// `DELETE /mcp`: ends a legacy session; without a session id there is nothing to end (405,
/// as for a modern client).
pub async fn delete(
    State(gw): State<Arc<Gateway>>,
    Extension(principal): Caller,
    headers: HeaderMap,
) -> Response {
    if headers.get(HEADER_SESSION_ID).is_none() {
        return Failure::new(GatewayError::HttpMethodNotAllowed, Era::Modern, None).into_response();
    }
    match legacy::end_session(&gw, &principal, &headers).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => Failure::new(e, Era::Legacy, None).into_response(),
    }
}

/// The most an oversized body is read (and discarded) before answering 413, bytes. Draining lets
/// the client finish sending and read the 413 instead of seeing a reset connection; beyond this
/// the connection is simply closed.
const MAX_DRAIN_BYTES: u64 = 64 * 1024 * 1024;
/// The longest time spent draining an oversized body.
const MAX_DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads the body up to `limit` bytes.
///
/// # Errors
/// [`GatewayError::PayloadTooLarge`] when the body (or its `Content-Length`) exceeds `limit`;
/// [`GatewayError::InvalidRequest`] when the body cannot be read.
pub(super) async fn read_limited(
    headers: &HeaderMap,
    mut body: Body,
    limit: usize,
) -> Result<bytes::Bytes, GatewayError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || GatewayError::PayloadTooLarge { limit };
    if declared.is_some_and(|n| n > MAX_DRAIN_BYTES) {
        return Err(too_large());
    }
    let mut buf = bytes::BytesMut::new();
    let mut total: u64 = 0;
    let mut discarding = declared.is_some_and(|n| n > limit as u64);
    let drain_deadline = tokio::time::Instant::now() + MAX_DRAIN_TIME;
    loop {
        let next = if discarding {
            tokio::time::timeout_at(drain_deadline, body.frame())
                .await
                .map_err(|_| too_large())?
        } else {
            body.frame().await
        };
        let Some(frame) = next else { break };
        let frame = frame.map_err(|e| GatewayError::InvalidRequest {
            reason: format!("could not read the body: {e}"),
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len() as u64;
        if total > MAX_DRAIN_BYTES {
            return Err(too_large());
        }
        if total > limit as u64 {
            discarding = true;
            buf = bytes::BytesMut::new();
        }
        if !discarding {
            buf.extend_from_slice(&data);
        }
    }
    if discarding {
        return Err(too_large());
    }
    Ok(buf.freeze())
}

/// Decodes one JSON-RPC message; a failure carries the request id when one could be read.
///
/// # Errors
/// -32700 for bytes that are not JSON, -32600 for JSON that is not one JSON-RPC message.
#[allow(clippy::result_large_err)] // the error path is cold; Failure is what every handler returns
pub(super) fn decode(bytes: &[u8], era: Era) -> Result<Message, Failure> {
    Message::decode(bytes).map_err(|e| {
        let (error, id) = match e {
            DecodeError::NotJson(detail) => (GatewayError::Parse { detail }, None),
            DecodeError::NotJsonRpc { reason, id } => (
                GatewayError::InvalidRequest {
                    reason: reason.to_string(),
                },
                id,
            ),
        };
        Failure::new(error, era, id)
    })
}

/// The era a header alone suggests (for errors before the body is decoded).
pub(super) fn header_era(headers: &HeaderMap) -> Era {
    headers
        .get(HEADER_PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok())
        .and_then(Era::of_version)
        .unwrap_or(Era::Legacy)
}

fn request_id(message: &Message) -> Option<Value> {
    match message {
        Message::Request { id, .. } => Some(id.clone()),
        _ => None,
    }
}

/// Decides the era of one request (2026-07-28 `basic/versioning`, "A dual-era server selects its
/// behavior from how the client opens"): modern when the body carries the modern `_meta`
/// version, or the `MCP-Protocol-Version` header names a modern revision, or the method is
/// `server/discover`; legacy otherwise.
///
/// # Errors
/// [`GatewayError::UnsupportedProtocolVersion`] when the header names a revision of neither era
/// and there is no session to judge it against.
pub fn detect_era(headers: &HeaderMap, message: &Message) -> Result<Era, GatewayError> {
    let params = match message {
        Message::Request { params, .. } | Message::Notification { params, .. } => params.as_ref(),
        Message::Response { .. } => None,
    };
    let has_modern_meta = params
        .and_then(|p| p.get("_meta"))
        .is_some_and(|m| m.get(META_PROTOCOL_VERSION).is_some());
    if has_modern_meta {
        return Ok(Era::Modern);
    }
    if let Some(version) = headers
        .get(HEADER_PROTOCOL_VERSION)
        .map(|v| v.to_str().unwrap_or_default())
    {
        match Era::of_version(version) {
            Some(era) => return Ok(era),
            None if headers.contains_key(HEADER_SESSION_ID) => return Ok(Era::Legacy),
            None if message.method() == Some("initialize") => return Ok(Era::Legacy),
            None => {
                return Err(GatewayError::UnsupportedProtocolVersion {
                    requested: version.to_string(),
                });
            }
        }
    }
    if message.method() == Some("server/discover") {
        return Ok(Era::Modern);
    }
    Ok(Era::Legacy)
}
