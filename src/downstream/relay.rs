//! Answering a routed request over HTTP: a JSON body when the answer is all there is, an SSE
//! stream when the upstream sends more first (progress, log messages, server→client requests).
//! Items are relayed in arrival order, never buffered; the stream carries keep-alive comments
//! and `X-Accel-Buffering: no`. A client that closes the stream, or (legacy) cancels with
//! `notifications/cancelled`, cancels the upstream request.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::mpsc;

use super::session_state::{InFlight, SessionState};
use super::wire::{self, Failure};
use crate::error::GatewayError;
use crate::jsonrpc::{self, code};
use crate::protocol::Era;
use crate::router::{Routed, RoutedCall, Step};
use crate::upstream::{Reply, ServerRequest};

/// Interval of SSE keep-alive comments on a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What the client's era needs from the relay.
pub enum Peer {
    /// A legacy session: server requests are relayed if the client declared the capability.
    Legacy {
        /// The session's local state.
        state: Arc<SessionState>,
        /// The client's declared capabilities.
        capabilities: Value,
        /// Makes ids for relayed server requests.
        ids: Arc<super::session_state::LocalSessions>,
        /// Cancellation by `notifications/cancelled`.
        in_flight: InFlight,
    },
    /// A modern client: results are decorated, log messages filtered by the requested level.
    Modern {
        /// Decorates a final result for the method.
        decorate: Box<dyn Fn(&mut Value) + Send + Sync>,
        /// `io.modelcontextprotocol/logLevel` of the request, if any.
        log_level: Option<String>,
    },
}

impl Peer {
    fn era(&self) -> Era {
        match self {
            Self::Legacy { .. } => Era::Legacy,
            Self::Modern { .. } => Era::Modern,
        }
    }
}

/// Answers request `id` with what the router made of it.
pub async fn respond(id: Value, routed: Routed, mut peer: Peer) -> Response {
    let mut call = match routed {
        Routed::Reply(reply) => return final_json(&id, Ok(reply), &peer),
        Routed::Call(call) => call,
    };
    let first = match &peer {
        Peer::Legacy { in_flight, .. } => tokio::select! {
            step = call.next() => step,
            () = in_flight.cancelled() => return wire::accepted(),
        },
        Peer::Modern { .. } => call.next().await,
    };
    match first {
        Some(Step::Done(outcome)) => final_json(&id, outcome, &peer),
        Some(step) => {
            let (tx, rx) = mpsc::channel::<Event>(64);
            tokio::spawn(async move {
                if forward(&id, step, &tx, &mut peer).await {
                    relay(id, call, tx, peer).await;
                }
            });
            sse(rx)
        }
        None => final_json(&id, Err(closed(&call)), &peer),
    }
}

fn closed(call: &RoutedCall) -> GatewayError {
    GatewayError::Upstream {
        upstream: call.upstream().to_string(),
        source: crate::upstream::UpstreamError::Closed {
            detail: "no answer".into(),
        },
    }
}

/// The final answer as a JSON body (status per the error mapping).
fn final_json(id: &Value, outcome: Result<Reply, GatewayError>, peer: &Peer) -> Response {
    match outcome {
        Ok(reply) => wire::json(StatusCode::OK, &final_message(id, reply, peer)),
        Err(e) => Failure::new(e, peer.era(), Some(id.clone())).into_response(),
    }
}

fn final_message(id: &Value, reply: Reply, peer: &Peer) -> Value {
    match reply {
        Ok(mut result) => {
            if let Peer::Modern { decorate, .. } = peer {
                decorate(&mut result);
            }
            jsonrpc::result_response(id.clone(), result)
        }
        Err(error) => jsonrpc::error_response(Some(id.clone()), error),
    }
}

/// Relays the rest of a call onto an SSE stream; stops, cancelling the call, when the client
/// goes away or cancels.
async fn relay(id: Value, mut call: RoutedCall, tx: mpsc::Sender<Event>, mut peer: Peer) {
    loop {
        let step = match &peer {
            Peer::Legacy { in_flight, .. } => tokio::select! {
                step = call.next() => step,
                () = in_flight.cancelled() => return,
                () = tx.closed() => return,
            },
            Peer::Modern { .. } => tokio::select! {
                step = call.next() => step,
                () = tx.closed() => return,
            },
        };
        let Some(step) = step else { return };
        let done = matches!(step, Step::Done(_));
        if !forward(&id, step, &tx, &mut peer).await || done {
            return;
        }
    }
}

/// Sends one step to the client; `false` when the client is gone.
async fn forward(id: &Value, step: Step, tx: &mpsc::Sender<Event>, peer: &mut Peer) -> bool {
    let message = match step {
        Step::Notification(n) => {
            if !wanted(&n, peer) {
                return true;
            }
            n
        }
        Step::Request(request) => match relay_request(request, peer).await {
            Some(message) => message,
            None => return true,
        },
        Step::Done(Ok(reply)) => final_message(id, reply, peer),
        Step::Done(Err(e)) => {
            let wire = e.to_wire(peer.era());
            let error = wire.error.unwrap_or_else(|| {
                jsonrpc::error_object(code::INTERNAL_ERROR, e.to_string(), None)
            });
            jsonrpc::error_response(Some(id.clone()), error)
        }
    };
    tx.send(Event::default().event("message").data(message.to_string()))
        .await
        .is_ok()
}

/// Whether a notification goes to this client: a modern client gets log messages only at or
/// above the level it asked for, and none if it asked for none (2026-07-28 `RequestMetaObject`).
fn wanted(notification: &Value, peer: &Peer) -> bool {
    let Peer::Modern { log_level, .. } = peer else {
        return true;
    };
    if notification["method"] != "notifications/message" {
        return true;
    }
    let Some(wanted) = log_level.as_deref().and_then(severity) else {
        return false;
    };
    notification["params"]["level"]
        .as_str()
        .and_then(severity)
        .is_some_and(|level| level >= wanted)
}

/// RFC 5424 severities as MCP names them, least severe first.
fn severity(level: &str) -> Option<u8> {
    [
        "debug",
        "info",
        "notice",
        "warning",
        "error",
        "critical",
        "alert",
        "emergency",
    ]
    .iter()
    .position(|l| *l == level)
    .and_then(|p| u8::try_from(p).ok())
}

/// A server→client request: relayed with a gateway id if the client can take it, else
/// answered with an error here. Returns the message for the client.
async fn relay_request(request: ServerRequest, peer: &Peer) -> Option<Value> {
    match peer {
        Peer::Legacy {
            state,
            capabilities,
            ids,
            ..
        } => {
            if let Err(why) = client_can_answer(&request, capabilities) {
                request.reject(code::METHOD_NOT_FOUND, &why).await;
                return None;
            }
            let gateway_id = ids.next_request_id();
            let message = jsonrpc::request(
                Value::from(gateway_id.clone()),
                &request.method,
                request.params.clone(),
            );
            state.park(gateway_id, request);
            Some(message)
        }
        Peer::Modern { .. } => {
            request
                .reject(
                    code::METHOD_NOT_FOUND,
                    "the client cannot be asked: this gateway does not bridge server requests to 2026-07-28 clients yet",
                )
                .await;
            None
        }
    }
}

/// Checks that the client declared the capability a server request needs (2025-11-25
/// `client/*`: servers must not send requests for undeclared capabilities).
fn client_can_answer(request: &ServerRequest, capabilities: &Value) -> Result<(), String> {
    let needed = match request.method.as_str() {
        "ping" => return Ok(()),
        "sampling/createMessage" => "sampling",
        "roots/list" => "roots",
        "elicitation/create" => "elicitation",
        other => return Err(format!("{other} is not relayed to clients")),
    };
    let declared = capabilities.get(needed);
    let ok = match (needed, declared) {
        (_, None) => false,
        ("elicitation", Some(e)) => {
            let url_mode = request
                .params
                .as_ref()
                .and_then(|p| p.get("mode"))
                .and_then(Value::as_str)
                == Some("url");
            // An empty elicitation capability means form mode only.
            !url_mode || e.get("url").is_some()
        }
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the client did not declare the {needed} capability"
        ))
    }
}

fn sse(rx: mpsc::Receiver<Event>) -> Response {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|event| (Ok::<_, Infallible>(event), rx))
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    let headers = response.headers_mut();
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    response
}
