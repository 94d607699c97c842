//! The deprecated HTTP+SSE transport of protocol revision 2024-11-05, for old clients:
//! `GET /sse` opens the event stream, whose first event (`endpoint`) names the URL to POST
//! messages to (`/messages?sessionId=…`); every response, server request and notification then
//! arrives on the event stream, and each POST is answered `202 Accepted`.
//!
//! Once `initialize` has run, a connection is an ordinary legacy session: its messages go
//! through [`super::legacy::handle_in_session`], and what that would have answered over
//! Streamable HTTP (a JSON body or an SSE stream) is forwarded onto the connection's stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::Gateway;
use super::authn::Caller;
use super::session::SessionClaims;
use super::wire::Failure;
use crate::auth::Principal;
use crate::error::GatewayError;
use crate::jsonrpc::{self, Message};
use crate::protocol::Era;

/// The revision this transport was defined in; also accepted in `initialize` here.
const SSE_VERSION: &str = "2024-11-05";

/// One open `/sse` connection.
pub struct Connection {
    events: mpsc::Sender<Event>,
    claims: Mutex<Option<SessionClaims>>,
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
    let (tx, rx) = mpsc::channel::<Event>(64);
    let endpoint = Event::default()
        .event("endpoint")
        .data(format!("/messages?sessionId={id}"));
    if tx.send(endpoint).await.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let connection = Arc::new(Connection {
        events: tx.clone(),
        claims: Mutex::new(None),
        principal,
    });
    gw.sse_connections.lock().insert(id, connection);
    // Forget the connection when its client goes away or the gateway shuts down.
    let cleanup = Arc::clone(&gw);
    tokio::spawn(async move {
        tokio::select! {
            () = tx.closed() => {}
            () = cleanup.shutdown.cancelled() => {}
        }
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
    super::relay::sse(rx)
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
    if let Err(e) = super::authn::authorize(&gw, &principal, &message) {
        return Failure::new(e, Era::Legacy, None).into_response();
    }
    tokio::spawn(async move {
        let response = process(&gw, &principal, &connection, message).await;
        forward(response, &connection.events).await;
    });
    StatusCode::ACCEPTED.into_response()
}

/// Handles one message as the legacy Streamable HTTP endpoint would.
async fn process(
    gw: &Gateway,
    principal: &Arc<Principal>,
    connection: &Connection,
    message: Message,
) -> Response {
    if let Message::Request { id, method, params } = &message
        && method == "initialize"
    {
        return match super::legacy::open_session(gw, principal, params.as_ref(), negotiate) {
            Ok((claims, result)) => {
                *connection.claims.lock().unwrap_or_else(|p| p.into_inner()) = Some(claims);
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
    match super::legacy::handle_in_session(gw, principal, claims, message).await {
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

/// Forwards what the Streamable HTTP handling produced (JSON body or SSE) onto the connection.
async fn forward(response: Response, events: &mpsc::Sender<Event>) {
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
            if events
                .send(Event::default().event("message").data(event.data))
                .await
                .is_err()
            {
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
        let _ = events
            .send(Event::default().event("message").data(message.to_string()))
            .await;
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
