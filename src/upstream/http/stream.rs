//! Reading upstream SSE: a call's response stream, relayed item by item, and the standalone
//! GET stream of a legacy session; announcing list changes and resource updates.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use http::{HeaderMap, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use super::super::call::{CallItem, Respond, ServerRequest};
use super::super::{UpstreamError, UpstreamEvent};
use super::endpoint::{Endpoint, MAX_MESSAGE_BYTES, Opened};
use crate::backoff::Backoff;
use crate::jsonrpc::{self, Message};

/// Answers an upstream's server→client request with a POST in the same session.
pub(super) struct HttpResponder {
    pub(super) endpoint: Arc<Endpoint>,
    pub(super) headers: HeaderMap,
}

impl Respond for HttpResponder {
    fn respond(
        &self,
        message: Value,
    ) -> futures::future::BoxFuture<'static, Result<(), UpstreamError>> {
        let endpoint = Arc::clone(&self.endpoint);
        let headers = self.headers.clone();
        Box::pin(async move { endpoint.post_message(&message, &headers).await })
    }
}

/// Relays an SSE response of request `opened.id` into a call's channel, in arrival order.
pub(super) async fn relay_sse(
    opened: Opened,
    tx: tokio::sync::mpsc::Sender<CallItem>,
    responder: Arc<dyn Respond>,
    responder_endpoint: Arc<Endpoint>,
) {
    let id = opened.id;
    let mut events = super::super::sse_events::events(opened.response, MAX_MESSAGE_BYTES);
    while let Some(event) = events.next().await {
        let item = match event {
            Err(e) => CallItem::Final(Err(UpstreamError::Closed {
                detail: e.to_string().into(),
            })),
            Ok(event) if event.data.trim().is_empty() => continue,
            Ok(event) if event.data.len() > MAX_MESSAGE_BYTES => {
                CallItem::Final(Err(UpstreamError::Protocol {
                    detail: "SSE event too large".into(),
                }))
            }
            Ok(event) => match Message::decode(event.data.as_bytes()) {
                Ok(Message::Response { id: got, outcome }) if got == id => {
                    CallItem::Final(Ok(outcome))
                }
                Ok(message) => match item(message, &responder_endpoint, &responder) {
                    Some(item) => item,
                    None => continue,
                },
                Err(e) => CallItem::Final(Err(UpstreamError::Protocol {
                    detail: format!("bad SSE event: {e}").into(),
                })),
            },
        };
        let last = matches!(item, CallItem::Final(_));
        if tx.send(item).await.is_err() || last {
            return;
        }
    }
    let _ = tx
        .send(CallItem::Final(Err(UpstreamError::Closed {
            detail: "SSE stream ended before the response".into(),
        })))
        .await;
}

/// Relays a JSON answer of request `opened.id` into a call's channel: the messages written
/// before the response (see [`super::endpoint::read_json_answer`]) in order, then the outcome.
pub(super) async fn relay_json(
    opened: Opened,
    tx: tokio::sync::mpsc::Sender<CallItem>,
    responder: Arc<dyn Respond>,
    endpoint: Arc<Endpoint>,
) {
    let Opened {
        id,
        status,
        session_id,
        response,
        ..
    } = opened;
    let outcome = match super::endpoint::read_json_answer(response, &id).await {
        Err(e) => Err(e),
        Ok(found) => {
            for message in found.before {
                if let Some(item) = item(message, &endpoint, &responder)
                    && tx.send(item).await.is_err()
                {
                    return;
                }
            }
            super::endpoint::Posted {
                status,
                session_id,
                answer: found.answer,
            }
            .into_reply()
        }
    };
    let _ = tx.send(CallItem::Final(outcome)).await;
}

/// What a message other than the call's response is for the call: a notification (unless it
/// is a list change or resource update, announced to the gateway instead), or a server
/// request answered through `responder`; `None` for nothing to relay.
fn item(message: Message, endpoint: &Endpoint, responder: &Arc<dyn Respond>) -> Option<CallItem> {
    match message {
        Message::Response { .. } => None,
        Message::Notification { method, params } => {
            if announce(endpoint, &method, params.as_ref(), None) {
                return None;
            }
            Some(CallItem::Notification(jsonrpc::notification(
                &method, params,
            )))
        }
        Message::Request { id, method, params } => Some(CallItem::Request(ServerRequest::new(
            id,
            method,
            params,
            Arc::clone(responder),
        ))),
    }
}

/// Turns an upstream's list-change and resource-update notifications into events for the
/// catalogue and the gateway's own notification streams; `true` when it was one of them (it is
/// then not relayed to the client that happened to be on the stream).
fn announce(
    endpoint: &Endpoint,
    method: &str,
    params: Option<&Value>,
    downstream: Option<Uuid>,
) -> bool {
    let event = if method.ends_with("/list_changed") {
        UpstreamEvent::ListChanged {
            upstream: endpoint.id.clone(),
            method: method.to_string(),
        }
    } else if method == "notifications/resources/updated" {
        match params.and_then(|p| p.get("uri")).and_then(Value::as_str) {
            Some(uri) => UpstreamEvent::ResourceUpdated {
                upstream: endpoint.id.clone(),
                uri: uri.to_string(),
                downstream,
            },
            None => return true,
        }
    } else {
        return false;
    };
    let _ = endpoint.events.send(event);
    true
}

/// First reconnect delay of a standalone stream; doubles per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Longest reconnect delay of a standalone stream.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A stream that stayed open this long resets the delay.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// How long a request on a client session's standalone stream waits for the client's own
/// stream to open.
const STREAM_WAIT: Duration = Duration::from_secs(2);

/// Reads the standalone GET stream of a legacy upstream session for as long as the session
/// lives: announces list changes and resource updates, answers `ping`, refuses other requests
/// (nothing ties them to a client).
///
/// The GET carries the same credentials as the session's calls: the gateway's own OAuth token
/// ([`Endpoint::send`], renewed once after a 401), or, for a token-exchange upstream and a
/// downstream session, `caller`'s token exchanged afresh for each connection. Reconnects with
/// exponential backoff; stops for good when the upstream refuses the credentials (401, 403) or
/// the caller's token can no longer be exchanged, offers no stream (405), or the session is gone
/// (404, or 400 from servers that answer an unknown session so). The task is aborted when its
/// session ends ([`super::HttpUpstream`]).
pub(super) async fn listen_get(
    endpoint: Arc<Endpoint>,
    headers: HeaderMap,
    downstream: Option<Uuid>,
    caller: Option<crate::config::Secret>,
    mut opened: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    loop {
        let mut request_headers = headers.clone();
        if let (Some(token), Some(credentials)) = (&caller, &endpoint.credentials)
            && credentials.exchanges_tokens()
        {
            match credentials.for_caller(Some(token)).await.and_then(|v| {
                http::HeaderValue::from_str(&v).map_err(|_| UpstreamError::Credentials {
                    detail: "the exchanged token is not a valid header value".into(),
                })
            }) {
                Ok(value) => {
                    request_headers.insert(http::header::AUTHORIZATION, value);
                }
                Err(e) => {
                    tracing::warn!(upstream = %endpoint.id, error = %e, "no credentials for the standalone stream; not listening");
                    return;
                }
            }
        }
        match endpoint
            .send(http::Method::GET, &request_headers, None)
            .await
        {
            Ok(r) if matches!(r.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                tracing::warn!(upstream = %endpoint.id, status = r.status().as_u16(),
                    "the upstream refused the standalone stream's credentials; not listening");
                return;
            }
            Ok(r)
                if r.status() == StatusCode::METHOD_NOT_ALLOWED
                    || super::session_refused(r.status()) =>
            {
                tracing::debug!(upstream = %endpoint.id, status = r.status().as_u16(), "upstream offers no standalone stream");
                return;
            }
            Ok(r) if r.status().is_success() => {
                if let Some(opened) = opened.take() {
                    let _ = opened.send(());
                }
                let opened = tokio::time::Instant::now();
                let mut events = super::super::sse_events::events(r, MAX_MESSAGE_BYTES);
                while let Some(Ok(event)) = events.next().await {
                    on_standalone_message(&endpoint, &request_headers, downstream, &event.data)
                        .await;
                }
                if opened.elapsed() >= STABLE_AFTER {
                    backoff.reset();
                }
            }
            Ok(r) => {
                tracing::debug!(upstream = %endpoint.id, status = r.status().as_u16(), "standalone stream refused")
            }
            Err(e) => {
                tracing::debug!(upstream = %endpoint.id, error = %e, "standalone stream failed")
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// One message of a standalone stream: notifications announced, `ping` answered; another
/// request goes to the downstream session whose upstream session it is, when that session's
/// own standalone stream takes it ([`super::super::session_requests`]), else it is refused.
async fn on_standalone_message(
    endpoint: &Arc<Endpoint>,
    headers: &HeaderMap,
    downstream: Option<Uuid>,
    data: &str,
) {
    match Message::decode(data.as_bytes()) {
        Ok(Message::Notification { method, params }) => {
            announce(endpoint, &method, params.as_ref(), downstream);
        }
        Ok(Message::Request { id, method, .. }) if method == "ping" => {
            let reply = jsonrpc::result_response(id, serde_json::json!({}));
            let _ = endpoint.post_message(&reply, headers).await;
        }
        Ok(Message::Request { id, method, params }) => {
            let responder: Arc<dyn Respond> = Arc::new(HttpResponder {
                endpoint: Arc::clone(endpoint),
                headers: headers.clone(),
            });
            let request = ServerRequest::new(id, method, params, responder);
            let refused = match downstream {
                // The client may be opening its stream just now (right after `initialize`).
                Some(session) => {
                    endpoint
                        .session_requests
                        .deliver_waiting(session, request, STREAM_WAIT)
                        .await
                }
                None => Some(request),
            };
            if let Some(request) = refused {
                let why = format!(
                    "{} on the standalone stream reached no client able to take it",
                    request.method
                );
                request
                    .reject(crate::jsonrpc::code::METHOD_NOT_FOUND, &why)
                    .await;
            }
        }
        _ => {}
    }
}
