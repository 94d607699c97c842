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
    use eventsource_stream::Eventsource as _;
    let id = opened.id;
    let mut events = opened.response.bytes_stream().eventsource();
    while let Some(event) = events.next().await {
        let item = match event {
            Err(e) => CallItem::Final(Err(UpstreamError::Closed {
                detail: e.to_string(),
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
                Ok(Message::Response { .. }) => continue,
                Ok(Message::Notification { method, params }) => {
                    if announce(&responder_endpoint, &method, params.as_ref(), None) {
                        continue;
                    }
                    CallItem::Notification(jsonrpc::notification(&method, params))
                }
                Ok(Message::Request { id, method, params }) => CallItem::Request(
                    ServerRequest::new(id, method, params, Arc::clone(&responder)),
                ),
                Err(e) => CallItem::Final(Err(UpstreamError::Protocol {
                    detail: format!("bad SSE event: {e}"),
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

/// Reads the standalone GET stream of a legacy upstream session for as long as the session
/// lives: announces list changes and resource updates, answers `ping`, refuses other requests
/// (nothing ties them to a client). Reconnects with backoff; stops when the upstream offers no
/// stream (405) or the session is gone (404).
pub(super) async fn listen_get(
    endpoint: Arc<Endpoint>,
    headers: HeaderMap,
    downstream: Option<Uuid>,
) {
    use eventsource_stream::Eventsource as _;
    let mut backoff = Duration::from_millis(500);
    loop {
        let request = endpoint
            .client
            .get(endpoint.url.clone())
            .headers(endpoint.headers.clone())
            .headers(headers.clone())
            .header(http::header::ACCEPT, "text/event-stream");
        match request.send().await {
            Ok(r)
                if r.status() == StatusCode::METHOD_NOT_ALLOWED
                    || r.status() == StatusCode::NOT_FOUND =>
            {
                tracing::debug!(upstream = %endpoint.id, status = r.status().as_u16(), "upstream offers no standalone stream");
                return;
            }
            Ok(r) if r.status().is_success() => {
                backoff = Duration::from_millis(500);
                let mut events = r.bytes_stream().eventsource();
                while let Some(Ok(event)) = events.next().await {
                    match Message::decode(event.data.as_bytes()) {
                        Ok(Message::Notification { method, params }) => {
                            announce(&endpoint, &method, params.as_ref(), downstream);
                        }
                        Ok(Message::Request { id, method, .. }) => {
                            let reply = if method == "ping" {
                                jsonrpc::result_response(id, serde_json::json!({}))
                            } else {
                                jsonrpc::error_response(
                                    Some(id),
                                    jsonrpc::error_object(
                                        crate::jsonrpc::code::METHOD_NOT_FOUND,
                                        format!(
                                            "{method} on the standalone stream cannot be attributed to a client"
                                        ),
                                        None,
                                    ),
                                )
                            };
                            let _ = endpoint.post_message(&reply, &headers).await;
                        }
                        _ => {}
                    }
                }
            }
            Ok(r) => {
                tracing::debug!(upstream = %endpoint.id, status = r.status().as_u16(), "standalone stream refused")
            }
            Err(e) => {
                tracing::debug!(upstream = %endpoint.id, error = %e, "standalone stream failed")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
