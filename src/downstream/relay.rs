//! Answering a routed request over HTTP: a JSON body when the answer is all there is, an SSE
//! stream when the upstream sends more first (progress, log messages, server→client requests).
//! Items are relayed in arrival order, never buffered; the stream carries keep-alive comments
//! and `X-Accel-Buffering: no`. A client that closes the stream, or (legacy) cancels with
//! `notifications/cancelled`, cancels the upstream request.
//!
//! Server→client traffic is bridged between eras here:
//! - legacy client: an upstream's request is relayed with a gateway id (after a capability
//!   check); a modern upstream's `input_required` result is turned into real requests to the
//!   client, and the upstream request is retried with the answers (2026-07-28 MRTR);
//! - modern client: a legacy upstream's request parks the call and answers with an
//!   `InputRequiredResult` ([`super::mrtr`]); a modern upstream's `input_required` passes through.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::mrtr::{Binding, Continuations};
use super::session_state::{InFlight, LocalSessions, SessionState};
use super::wire::{self, Failure};
use crate::error::GatewayError;
use crate::jsonrpc::{self, code};
use crate::protocol::Era;
use crate::router::{Routed, RoutedCall, Step};
use crate::upstream::{Reply, ServerRequest};

/// Interval of SSE keep-alive comments on a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long a legacy client has to answer a request the gateway puts to it for a modern
/// upstream's `inputRequests`.
const ASK_TIMEOUT: Duration = Duration::from_secs(300);
/// Most `input_required` rounds bridged for one legacy request.
const MAX_INPUT_ROUNDS: usize = 8;
/// How long after one request of a legacy upstream the next is awaited, to ask a modern client
/// for requests the upstream makes concurrently in one `InputRequiredResult`.
const GATHER_WINDOW: Duration = Duration::from_millis(25);
/// Most requests of a legacy upstream asked in one `InputRequiredResult`.
const MAX_GATHERED: usize = 8;

/// What the client's era needs from the relay.
pub enum Peer {
    /// A legacy session.
    Legacy(LegacyPeer),
    /// A modern client.
    Modern(ModernPeer),
}

/// A legacy session's view of the relay.
pub struct LegacyPeer {
    /// The session's local state (parked server requests).
    pub state: Arc<SessionState>,
    /// The session (its client's declared capabilities).
    pub session: Arc<super::session::SessionClaims>,
    /// Makes ids for requests relayed to the client.
    pub ids: Arc<LocalSessions>,
    /// Cancellation by `notifications/cancelled`.
    pub in_flight: InFlight,
}

/// A modern request's view of the relay.
pub struct ModernPeer {
    /// Decorates a final result for the method.
    pub decorate: Box<dyn Fn(&mut Value) + Send + Sync>,
    /// `io.modelcontextprotocol/logLevel` of the request, if any.
    pub log_level: Option<String>,
    /// The client's declared capabilities.
    pub capabilities: Value,
    /// Where calls wait for the client's input.
    pub continuations: Arc<Continuations>,
    /// Principal digest, method and target, to bind request state to.
    pub principal: String,
    /// The request method.
    pub method: String,
    /// The request's name or URI.
    pub target: String,
}

impl Peer {
    fn era(&self) -> Era {
        match self {
            Self::Legacy(_) => Era::Legacy,
            Self::Modern(_) => Era::Modern,
        }
    }
}

/// What to do with one step.
enum Action {
    /// Send this message and keep going.
    Send(Value),
    /// Nothing to send.
    Skip,
    /// Send this message; it is the last.
    Finish(Value),
    /// Park the call for MRTR; the message (an `InputRequiredResult` response) is the last.
    Park(ServerRequest),
    /// Ask the legacy client the modern upstream's `inputRequests`, then retry.
    AskAndRetry(Value),
}

/// Answers request `id` with what the router made of it.
pub async fn respond(id: Value, routed: Routed, peer: Peer) -> Response {
    let mut call = match routed {
        Routed::Page(page) => return page_json(&id, page, &peer),
        Routed::Reply(reply) => return final_json(&id, Ok(reply), &peer),
        Routed::Call(call) => *call,
    };
    let first = match &peer {
        Peer::Legacy(l) => tokio::select! {
            step = call.next() => step,
            () = l.in_flight.cancelled() => return wire::accepted(),
        },
        Peer::Modern(_) => call.next().await,
    };
    let Some(first) = first else {
        return final_json(&id, Err(closed(&call)), &peer);
    };
    match decide(&id, first, &peer).await {
        Action::Finish(message) => {
            let status = message.get("error").map_or(StatusCode::OK, |e| {
                crate::error::relayed_error_status(peer.era(), e)
            });
            wire::json(status, &message)
        }
        Action::Park(request) => match &peer {
            Peer::Modern(m) => {
                let result = park(call, request, m).await;
                wire::json(StatusCode::OK, &jsonrpc::result_response(id, result))
            }
            Peer::Legacy(_) => final_json(&id, Err(closed(&call)), &peer),
        },
        Action::Skip => stream(id, call, peer, None),
        Action::Send(message) => stream(id, call, peer, Some(Action::Send(message))),
        ask @ Action::AskAndRetry(_) => stream(id, call, peer, Some(ask)),
    }
}

/// Continues a parked modern call on a new request (the MRTR retry).
pub async fn resume(id: Value, call: RoutedCall, peer: Peer) -> Response {
    respond(id, Routed::Call(Box::new(call)), peer).await
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
        Ok(Err(error)) => {
            let status = crate::error::relayed_error_status(peer.era(), &error);
            wire::json(status, &jsonrpc::error_response(Some(id.clone()), error))
        }
        Ok(reply) => wire::json(StatusCode::OK, &final_message(id, reply, peer)),
        Err(e) => Failure::new(e, peer.era(), Some(id.clone())).into_response(),
    }
}

/// A list page as the JSON-RPC response body, written around the page's own bytes; a modern
/// client's result gets the members its era adds (the same `decorate` as every result).
fn page_json(id: &Value, page: crate::catalogue::Page, peer: &Peer) -> Response {
    let mut extra = Value::Object(Map::new());
    if let Peer::Modern(m) = peer {
        (m.decorate)(&mut extra);
    }
    let result = page.close_with(&extra);
    let mut body = Vec::with_capacity(result.len() + 48);
    body.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    body.extend_from_slice(id.to_string().as_bytes());
    body.extend_from_slice(br#","result":"#);
    body.extend_from_slice(&result);
    body.push(b'}');
    wire::json_bytes(StatusCode::OK, body)
}

fn final_message(id: &Value, reply: Reply, peer: &Peer) -> Value {
    match reply {
        Ok(mut result) => {
            if let Peer::Modern(m) = peer {
                (m.decorate)(&mut result);
            }
            jsonrpc::result_response(id.clone(), result)
        }
        Err(error) => jsonrpc::error_response(Some(id.clone()), error),
    }
}

/// A legacy upstream's request a modern client can be asked through MRTR; one it cannot is
/// refused here (`None`).
async fn admissible(request: ServerRequest, m: &ModernPeer) -> Option<ServerRequest> {
    let why = if Continuations::supports(&m.method) {
        client_can_answer(&request.method, request.params.as_ref(), &m.capabilities).err()
    } else {
        Some("this request cannot ask the client for input".to_string())
    };
    match why {
        None => Some(request),
        Some(why) => {
            request.reject(code::METHOD_NOT_FOUND, &why).await;
            None
        }
    }
}

/// Parks the call for MRTR with `first` and every other request the upstream sends with it (it
/// asks concurrently: they arrive back to back, within [`GATHER_WINDOW`] of each other, at most
/// [`MAX_GATHERED`]); returns the `InputRequiredResult` asking them all at once. A step that is
/// not a request ends the gathering and is kept for when the call resumes.
async fn park(mut call: RoutedCall, first: ServerRequest, m: &ModernPeer) -> Value {
    let mut requests = vec![first];
    while requests.len() < MAX_GATHERED {
        match tokio::time::timeout(GATHER_WINDOW, call.next()).await {
            Ok(Some(Step::Request(request))) => {
                if let Some(request) = admissible(request, m).await {
                    requests.push(request);
                }
            }
            Ok(Some(other)) => {
                call.push_back(other);
                break;
            }
            Ok(None) | Err(_) => break,
        }
    }
    let binding = Binding {
        principal: &m.principal,
        method: &m.method,
        target: &m.target,
    };
    m.continuations.park(call, requests, &binding)
}

/// Starts an SSE response and relays the call onto it from a task. A legacy stream is logged
/// for resumption ([`super::resume`]); a modern one is direct.
fn stream(id: Value, call: RoutedCall, peer: Peer, first: Option<Action>) -> Response {
    let (tx, rx) = mpsc::channel::<Event>(64);
    let sink = match &peer {
        Peer::Legacy(l) => Sink::Logged {
            stream: l.state.streams.open(tx),
            state: Arc::clone(&l.state),
        },
        Peer::Modern(_) => Sink::Direct(tx),
    };
    tokio::spawn(async move {
        relay(id, call, &sink, peer, first).await;
        sink.finish();
    });
    sse(rx)
}

/// Where a relayed stream goes.
enum Sink {
    /// Straight to the client; a closed stream means the client is gone (modern: cancel).
    Direct(mpsc::Sender<Event>),
    /// Through the session's stream log: a lost connection is not a cancellation (legacy).
    Logged {
        state: Arc<SessionState>,
        stream: String,
    },
}

impl Sink {
    /// Sends one message; `false` when a direct client is gone.
    async fn send(&self, message: &Value) -> bool {
        match self {
            Self::Direct(tx) => tx
                .send(Event::default().event("message").data(message.to_string()))
                .await
                .is_ok(),
            Self::Logged { state, stream } => {
                state.streams.emit(stream, message.to_string()).await;
                true
            }
        }
    }

    /// Resolves when a direct client goes away; never for a logged stream.
    async fn closed(&self) {
        match self {
            Self::Direct(tx) => tx.closed().await,
            Self::Logged { .. } => std::future::pending().await,
        }
    }

    fn finish(&self) {
        if let Self::Logged { state, stream } = self {
            state.streams.finish(stream);
        }
    }
}

/// Relays a call onto an SSE stream; stops, cancelling the call, when the client goes away or
/// cancels.
async fn relay(
    id: Value,
    mut call: RoutedCall,
    tx: &Sink,
    peer: Peer,
    mut pending: Option<Action>,
) {
    let mut rounds = 0;
    loop {
        let action = match pending.take() {
            Some(action) => action,
            None => {
                let step = match &peer {
                    Peer::Legacy(l) => tokio::select! {
                        step = call.next() => step,
                        () = l.in_flight.cancelled() => return,
                        () = tx.closed() => return,
                    },
                    Peer::Modern(_) => tokio::select! {
                        step = call.next() => step,
                        () = tx.closed() => return,
                    },
                };
                let Some(step) = step else { return };
                decide(&id, step, &peer).await
            }
        };
        match action {
            Action::Skip => {}
            Action::Send(message) => {
                if !tx.send(&message).await {
                    return;
                }
            }
            Action::Finish(message) => {
                tx.send(&message).await;
                return;
            }
            Action::Park(request) => {
                if let Peer::Modern(m) = &peer {
                    let result = park(call, request, m).await;
                    tx.send(&jsonrpc::result_response(id, result)).await;
                }
                return;
            }
            Action::AskAndRetry(result) => {
                let Peer::Legacy(l) = &peer else { return };
                rounds += 1;
                let answers = if rounds > MAX_INPUT_ROUNDS {
                    Err("the upstream asked for input too many times".to_string())
                } else {
                    ask_client(&result, l, tx).await
                };
                let retried = match answers {
                    Ok(responses) => {
                        call.retry(responses, result.get("requestState").cloned())
                            .await
                    }
                    Err(why) => {
                        let error = jsonrpc::error_object(code::INTERNAL_ERROR, why, None);
                        tx.send(&jsonrpc::error_response(Some(id), error)).await;
                        return;
                    }
                };
                match retried {
                    Ok(next) => call = next,
                    Err(e) => {
                        tx.send(&error_message(&id, &e, peer.era())).await;
                        return;
                    }
                }
            }
        }
    }
}

fn error_message(id: &Value, e: &GatewayError, era: Era) -> Value {
    let error = e
        .to_wire(era)
        .error
        .unwrap_or_else(|| jsonrpc::error_object(code::INTERNAL_ERROR, e.to_string(), None));
    jsonrpc::error_response(Some(id.clone()), error)
}

/// What one step means for this client.
async fn decide(id: &Value, step: Step, peer: &Peer) -> Action {
    match step {
        Step::Notification(n) if wanted(&n, peer) => Action::Send(n),
        Step::Notification(_) => Action::Skip,
        Step::Request(request) => match peer {
            Peer::Legacy(l) => match relay_request(request, l).await {
                Some(message) => Action::Send(message),
                None => Action::Skip,
            },
            Peer::Modern(m) => match admissible(request, m).await {
                Some(request) => Action::Park(request),
                None => Action::Skip,
            },
        },
        Step::Done(Ok(Ok(result)))
            if is_input_required(&result) && matches!(peer, Peer::Legacy(_)) =>
        {
            Action::AskAndRetry(result)
        }
        Step::Done(Ok(reply)) => Action::Finish(final_message(id, reply, peer)),
        Step::Done(Err(e)) => Action::Finish(error_message(id, &e, peer.era())),
    }
}

fn is_input_required(result: &Value) -> bool {
    result.get("resultType").and_then(Value::as_str) == Some("input_required")
}

/// Puts a modern upstream's `inputRequests` to a legacy client as real requests and collects
/// the answers as `inputResponses`.
async fn ask_client(result: &Value, l: &LegacyPeer, tx: &Sink) -> Result<Value, String> {
    let mut responses = Map::new();
    let requests = result
        .get("inputRequests")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (key, input) in requests {
        let method = input["method"].as_str().unwrap_or_default().to_string();
        let params = input.get("params").cloned();
        client_can_answer(&method, params.as_ref(), &l.session.capabilities)?;
        let (request, answer) = ServerRequest::local(method.clone(), params.clone());
        let gateway_id = l.ids.next_request_id();
        l.state.park(gateway_id.clone(), request);
        let message = jsonrpc::request(Value::from(gateway_id.clone()), &method, params);
        if !tx.send(&message).await {
            l.state.take(&gateway_id);
            return Err("the client went away".into());
        }
        let reply = tokio::select! {
            reply = answer => reply.map_err(|_| "the client did not answer".to_string())?,
            () = l.in_flight.cancelled() => return Err("the client cancelled the request".into()),
            () = tokio::time::sleep(ASK_TIMEOUT) => {
                l.state.take(&gateway_id);
                return Err("the client did not answer in time".into());
            }
        };
        match reply.get("result") {
            Some(result) => {
                responses.insert(key, result.clone());
            }
            None => {
                return Err(format!(
                    "the client refused the upstream's {method} request"
                ));
            }
        }
    }
    Ok(Value::Object(responses))
}

/// Whether a notification goes to this client: log messages only at or above the level the
/// client asked for — per request for a modern client (none if it asked for none, 2026-07-28
/// `RequestMetaObject`), per session with `logging/setLevel` for a legacy one.
fn wanted(notification: &Value, peer: &Peer) -> bool {
    if notification["method"] != "notifications/message" {
        return true;
    }
    let asked = match peer {
        // Legacy: everything until the client sets a level with logging/setLevel.
        Peer::Legacy(l) => match l.state.log_level() {
            Some(level) => level,
            None => return true,
        },
        Peer::Modern(m) => match &m.log_level {
            Some(level) => level.clone(),
            None => return false,
        },
    };
    let Some(wanted) = severity(&asked) else {
        return false;
    };
    notification["params"]["level"]
        .as_str()
        .and_then(severity)
        .is_some_and(|level| level >= wanted)
}

/// RFC 5424 severities as MCP names them, least severe first.
pub fn severity(level: &str) -> Option<u8> {
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

/// A legacy upstream's request for a legacy client: relayed with a gateway id if the client
/// can take it, else answered with an error here.
async fn relay_request(request: ServerRequest, l: &LegacyPeer) -> Option<Value> {
    request_for_session(request, &l.state, &l.session.capabilities, &l.ids).await
}

/// An upstream's request for the client of a legacy session (with `capabilities`): the message
/// to send it, under a gateway id the client answers to (the request waits in `state`), when
/// the client declared what the request needs; else the request is refused here (`None`).
pub async fn request_for_session(
    request: ServerRequest,
    state: &SessionState,
    capabilities: &Value,
    ids: &LocalSessions,
) -> Option<Value> {
    if let Err(why) = client_can_answer(&request.method, request.params.as_ref(), capabilities) {
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

/// Checks that the client declared the capability a server request needs (servers must not
/// send requests for capabilities the client did not declare).
fn client_can_answer(
    method: &str,
    params: Option<&Value>,
    capabilities: &Value,
) -> Result<(), String> {
    let needed = match method {
        "ping" => return Ok(()),
        "sampling/createMessage" => "sampling",
        "roots/list" => "roots",
        "elicitation/create" => "elicitation",
        other => return Err(format!("{other} is not relayed to clients")),
    };
    let ok = match capabilities.get(needed) {
        None => false,
        Some(declared) if needed == "elicitation" => {
            let url_mode =
                params.and_then(|p| p.get("mode")).and_then(Value::as_str) == Some("url");
            // An empty elicitation capability means form mode only.
            !url_mode || declared.get("url").is_some()
        }
        Some(_) => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the client did not declare the {needed} capability"
        ))
    }
}

/// An SSE response fed by `rx`, with keep-alives and `X-Accel-Buffering: no`.
pub fn sse(rx: mpsc::Receiver<Event>) -> Response {
    sse_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (event, rx))
    }))
}

/// An SSE response of `events`, with keep-alives and `X-Accel-Buffering: no`.
pub fn sse_stream(events: impl futures::Stream<Item = Event> + Send + 'static) -> Response {
    use futures::StreamExt as _;
    let stream = events.map(Ok::<_, Infallible>);
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn capability_checks() {
        let caps = json!({"elicitation": {}, "roots": {}});
        assert!(client_can_answer("roots/list", None, &caps).is_ok());
        assert!(client_can_answer("sampling/createMessage", None, &caps).is_err());
        assert!(
            client_can_answer("elicitation/create", Some(&json!({"mode": "form"})), &caps).is_ok()
        );
        assert!(
            client_can_answer("elicitation/create", Some(&json!({"mode": "url"})), &caps).is_err()
        );
        let url = json!({"elicitation": {"url": {}}});
        assert!(
            client_can_answer("elicitation/create", Some(&json!({"mode": "url"})), &url).is_ok()
        );
        assert!(client_can_answer("tasks/get", None, &caps).is_err());
    }

    #[test]
    fn log_levels_filter_modern_messages() {
        let peer = |level: Option<&str>| {
            Peer::Modern(ModernPeer {
                decorate: Box::new(|_| {}),
                log_level: level.map(str::to_string),
                capabilities: json!({}),
                continuations: Arc::new(Continuations::new(
                    super::super::seal::Sealer::new(None),
                    Duration::from_secs(1),
                )),
                principal: String::new(),
                method: "tools/call".into(),
                target: "t".into(),
            })
        };
        let msg = |level: &str| json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": level, "data": "x"}});
        assert!(
            !wanted(&msg("error"), &peer(None)),
            "no level asked, no log messages"
        );
        assert!(wanted(&msg("error"), &peer(Some("warning"))));
        assert!(!wanted(&msg("info"), &peer(Some("warning"))));
        let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {}});
        assert!(wanted(&progress, &peer(None)));
    }
}
