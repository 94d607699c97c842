//! The deprecated HTTP+SSE transport of protocol revision 2024-11-05, for old clients:
//! `GET /sse` opens the event stream, whose first event (`endpoint`) names the URL to POST
//! messages to (`/messages?sessionId=…`); every response, server request and notification then
//! arrives on the event stream, and each POST is answered `202 Accepted`.
//!
//! Once `initialize` has run, a connection is an ordinary legacy session: its messages go
//! through [`super::legacy::handle_in_session`], and what that would have answered over
//! Streamable HTTP (a JSON body or an SSE stream) is forwarded onto the connection's stream.
//!
//! Bounds, so that a client that posts without reading cannot make the gateway hold its
//! answers: at most [`MAX_IN_FLIGHT`] messages of a connection are being answered at once (the
//! next POST gets 429), at most [`MAX_QUEUED_BYTES`] wait in its stream ([`super::outbox`];
//! a POST while it is full gets 503), and a client that reads nothing for [`STALL_TIMEOUT`]
//! while answers wait is disconnected.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::Gateway;
use super::authn::Caller;
use super::outbox::Outbox;
use super::session::SessionClaims;
use super::wire::Failure;
use crate::auth::Principal;
use crate::error::GatewayError;
use crate::jsonrpc::{self, Message};
use crate::protocol::Era;

/// The revision this transport was defined in; also accepted in `initialize` here.
const SSE_VERSION: &str = "2024-11-05";

/// Messages of one connection being answered at once; the next POST gets 429.
pub const MAX_IN_FLIGHT: usize = 16;
/// Bytes of answers queued on one connection's stream, not yet taken by the client.
pub const MAX_QUEUED_BYTES: u32 = 8 * 1024 * 1024;
/// How long an answer waits for room before the connection is closed.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// One open `/sse` connection.
pub struct Connection {
    outbox: Outbox,
    /// Permits for messages being answered.
    in_flight: Arc<Semaphore>,
    claims: Mutex<Option<Arc<SessionClaims>>>,
    /// Who opened the connection; only they may post to it.
    principal: Arc<Principal>,
}

/// Open connections of this replica (the transport is inherently stateful).
#[derive(Default)]
pub struct Connections {
    map: Mutex<HashMap<Uuid, Arc<Connection>>>,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<Connection>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `GET /sse`: opens a connection.
pub async fn open(State(gw): State<Arc<Gateway>>, Extension(principal): Caller) -> Response {
    let id = Uuid::new_v4();
    let (outbox, response) = super::outbox::outbox(MAX_QUEUED_BYTES, STALL_TIMEOUT);
    if outbox
        .send("endpoint", format!("/messages?sessionId={id}"))
        .await
        .is_err()
    {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let connection = Arc::new(Connection {
        outbox: outbox.clone(),
        in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        claims: Mutex::new(None),
        principal,
    });
    gw.sse_connections.lock().insert(id, connection);
    // Forget the connection when its client goes away, it is cut off, or the gateway shuts
    // down.
    let cleanup = Arc::clone(&gw);
    tokio::spawn(async move {
        tokio::select! {
            () = outbox.closed() => {}
            () = cleanup.shutdown.cancelled() => {}
        }
        outbox.close();
        let removed = cleanup.sse_connections.lock().remove(&id);
        if let Some(claims) =
            removed.and_then(|c| c.claims.lock().unwrap_or_else(|p| p.into_inner()).take())
        {
            cleanup.sessions.remove(claims.id);
            cleanup
                .router
                .catalogue()
                .upstreams()
                .close_session(claims.id)
                .await;
        }
    });
    tracing::info!(connection = %id, "HTTP+SSE (2024-11-05) connection opened");
    response
}

/// The query of `POST /messages`.
#[derive(serde::Deserialize)]
pub struct MessageQuery {
    #[serde(rename = "sessionId")]
    session_id: Uuid,
}

/// `POST /messages?sessionId=…`: one message of a connection; answered on its stream.
pub async fn message(
    State(gw): State<Arc<Gateway>>,
    Extension(principal): Caller,
    Extension(origin): Extension<crate::upstream::RequestOrigin>,
    Query(query): Query<MessageQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // A connection belongs to the principal that opened it: anyone else is told it does not
    // exist, like a legacy session presented with another principal's token.
    let Some(connection) = gw
        .sse_connections
        .lock()
        .get(&query.session_id)
        .filter(|c| c.principal.digest() == principal.digest())
        .cloned()
    else {
        return Failure::new(GatewayError::SessionNotFound, Era::Legacy, None).into_response();
    };
    let bytes = match super::streamable_http::read_limited(&headers, body, gw.max_body_bytes).await
    {
        Ok(bytes) => bytes,
        Err(e) => return Failure::new(e, Era::Legacy, None).into_response(),
    };
    let message = match super::streamable_http::decode(&bytes, Era::Legacy) {
        Ok(m) => m,
        Err(failure) => return failure.into_response(),
    };
    if let Err(e) = super::authn::authorize(&gw, &principal, &message, origin).await {
        return Failure::new(e, Era::Legacy, None).into_response();
    }
    // Backpressure on requests: the client must read its stream, and let answers come, before
    // it asks more. Its notifications and its answers to the upstreams' requests always go
    // through (they are what lets waiting calls finish).
    let permit = match &message {
        Message::Request { id, .. } => {
            let busy = |stream_not_read| {
                let busy = GatewayError::ConnectionBusy { stream_not_read };
                Failure::new(busy, Era::Legacy, Some(id.clone())).into_response()
            };
            if connection.outbox.is_full() {
                return busy(true);
            }
            match Arc::clone(&connection.in_flight).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => return busy(false),
            }
        }
        _ => None,
    };
    tokio::spawn(async move {
        let response = process(&gw, &principal, &connection, message, origin).await;
        forward(response, &connection.outbox).await;
        drop(permit);
    });
    StatusCode::ACCEPTED.into_response()
}

/// Handles one message as the legacy Streamable HTTP endpoint would.
async fn process(
    gw: &Gateway,
    principal: &Arc<Principal>,
    connection: &Connection,
    message: Message,
    origin: crate::upstream::RequestOrigin,
) -> Response {
    if let Message::Request { id, method, params } = &message
        && method == "initialize"
    {
        return match super::legacy::open_session(gw, principal, params.as_ref(), negotiate) {
            Ok((claims, result)) => {
                *connection.claims.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Arc::new(claims));
                super::wire::json(
                    StatusCode::OK,
                    &jsonrpc::result_response(id.clone(), result),
                )
            }
            Err(e) => Failure::new(e, Era::Legacy, Some(id.clone())).into_response(),
        };
    }
    let claims = connection
        .claims
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let Some(claims) = claims else {
        let id = match &message {
            Message::Request { id, .. } => Some(id.clone()),
            _ => None,
        };
        return Failure::new(GatewayError::SessionRequired, Era::Legacy, id).into_response();
    };
    match super::legacy::handle_in_session(gw, principal, claims, message, origin).await {
        Ok(response) => response,
        Err(failure) => failure.into_response(),
    }
}

/// This transport's version negotiation: the Streamable HTTP revisions plus 2024-11-05.
fn negotiate(requested: &str) -> &'static str {
    if requested == SSE_VERSION {
        SSE_VERSION
    } else {
        crate::protocol::negotiate_legacy(requested)
    }
}

/// Forwards what the Streamable HTTP handling produced (JSON body or SSE) onto the
/// connection's stream; stops (dropping the rest) when the stream is closed.
async fn forward(response: Response, outbox: &Outbox) {
    let is_sse = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let body = response.into_body();
    if is_sse {
        use eventsource_stream::Eventsource as _;
        let mut stream = body.into_data_stream().eventsource();
        while let Some(Ok(event)) = stream.next().await {
            if event.data.trim().is_empty() {
                continue;
            }
            if outbox.send("message", event.data).await.is_err() {
                return;
            }
        }
        return;
    }
    let Ok(collected) = body.collect().await else {
        return;
    };
    let bytes = collected.to_bytes();
    if let Ok(message) = serde_json::from_slice::<Value>(&bytes) {
        let _ = outbox.send("message", message.to_string()).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn accepts_its_own_revision() {
        assert_eq!(super::negotiate("2024-11-05"), "2024-11-05");
        assert_eq!(super::negotiate("2025-06-18"), "2025-06-18");
        assert!(crate::protocol::LEGACY_VERSIONS.contains(&super::negotiate("1999-01-01")));
    }
}
