//! The HTTP exchange with one upstream endpoint: POSTing requests, notifications and
//! responses, reading a JSON or SSE answer, and `DELETE` of a session.

use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::Value;
use url::Url;

use super::super::credentials::Credentials;
use super::super::{Reply, UpstreamError, UpstreamEvent};
use crate::config::UpstreamId;
use crate::jsonrpc::{self, Message};
use crate::protocol::HEADER_SESSION_ID;

/// Largest upstream message accepted, bytes. A larger answer is a protocol error.
pub(super) const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// Where and how to POST; shared with the session-eviction listener and reader tasks.
pub(super) struct Endpoint {
    pub(super) id: UpstreamId,
    pub(super) url: Url,
    pub(super) headers: HeaderMap,
    pub(super) client: reqwest::Client,
    pub(super) next_id: AtomicU64,
    /// Where list changes and resource updates are announced.
    pub(super) events: tokio::sync::broadcast::Sender<UpstreamEvent>,
    /// OAuth tokens for the upstream: the gateway's own token goes on every request that does
    /// not already carry a caller's exchanged token.
    pub(super) credentials: Option<Credentials>,
    /// Where requests on a downstream session's standalone stream go.
    pub(super) session_requests: std::sync::Arc<super::super::session_requests::SessionRequests>,
}

/// What one POST produced, its body read to the answer.
pub(super) struct Posted {
    pub(super) status: StatusCode,
    pub(super) session_id: Option<String>,
    pub(super) answer: Option<Reply>,
}

/// What one POST produced before its body was read.
pub(super) struct Opened {
    pub(super) id: Value,
    pub(super) status: StatusCode,
    pub(super) session_id: Option<String>,
    pub(super) response: reqwest::Response,
    pub(super) is_sse: bool,
}

impl Posted {
    pub(super) fn into_reply(self) -> Result<Reply, UpstreamError> {
        match self.answer {
            Some(answer) => Ok(answer),
            None if !self.status.is_success() => Err(UpstreamError::HttpStatus {
                status: self.status.as_u16(),
            }),
            None => Err(UpstreamError::Protocol {
                detail: format!("HTTP {} without a JSON-RPC response", self.status).into(),
            }),
        }
    }
}

impl Endpoint {
    /// POSTs one request and reads its answer from a JSON body or an SSE stream (other
    /// messages on the stream are dropped: for the gateway's own requests).
    pub(super) async fn post(
        &self,
        method: &str,
        params: Option<Value>,
        headers: &HeaderMap,
    ) -> Result<Posted, UpstreamError> {
        let Opened {
            id,
            status,
            session_id,
            response,
            is_sse,
        } = self.open(method, params, headers).await?;
        let answer = if is_sse {
            read_sse_answer(response, &id).await?
        } else {
            read_json_answer(response, &id).await?.answer
        };
        Ok(Posted {
            status,
            session_id,
            answer,
        })
    }

    /// POSTs one request; the body is left unread.
    pub(super) async fn open(
        &self,
        method: &str,
        params: Option<Value>,
        headers: &HeaderMap,
    ) -> Result<Opened, UpstreamError> {
        let id = Value::from(self.next_id.fetch_add(1, Ordering::Relaxed));
        let body = jsonrpc::request(id.clone(), method, params);
        let response = self.send(http::Method::POST, headers, Some(&body)).await?;
        let status = response.status();
        let session_id = response
            .headers()
            .get(HEADER_SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let is_sse = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        Ok(Opened {
            id,
            status,
            session_id,
            response,
            is_sse,
        })
    }

    /// POSTs a notification; any 2xx is success.
    pub(super) async fn notify(
        &self,
        method: &str,
        headers: &HeaderMap,
    ) -> Result<(), UpstreamError> {
        self.notify_with(method, None, headers).await
    }

    /// POSTs a notification with params; any 2xx is success.
    pub(super) async fn notify_with(
        &self,
        method: &str,
        params: Option<Value>,
        headers: &HeaderMap,
    ) -> Result<(), UpstreamError> {
        let body = jsonrpc::notification(method, params);
        self.post_message(&body, headers).await
    }

    /// POSTs a notification or response message; any 2xx is success.
    pub(super) async fn post_message(
        &self,
        body: &Value,
        headers: &HeaderMap,
    ) -> Result<(), UpstreamError> {
        let response = self.send(http::Method::POST, headers, Some(body)).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(UpstreamError::HttpStatus {
                status: response.status().as_u16(),
            })
        }
    }

    /// Ends a legacy upstream session; failures are logged, not returned.
    pub(super) async fn delete_session(&self, session_id: &str) {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(session_id) {
            headers.insert(HEADER_SESSION_ID, v);
        }
        match self.send(http::Method::DELETE, &headers, None).await {
            Ok(r) => tracing::debug!(status = r.status().as_u16(), "closed upstream session"),
            Err(e) => tracing::debug!(error = %e, "could not close upstream session"),
        }
    }

    /// Sends one HTTP request with the configured headers, the request's own, and — unless the
    /// request carries a caller's token — the gateway's own token. A 401 to the gateway's own
    /// token drops it and the request is sent once more with a fresh one. The upstream's
    /// `WWW-Authenticate` is never passed on: a 401/403 becomes [`UpstreamError::HttpStatus`].
    pub(super) async fn send(
        &self,
        method: http::Method,
        headers: &HeaderMap,
        body: Option<&Value>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let bytes = match body {
            Some(body) => Some(
                serde_json::to_vec(body).map_err(|e| UpstreamError::Protocol {
                    detail: e.to_string().into(),
                })?,
            ),
            None => None,
        };
        let own = self
            .credentials
            .as_ref()
            .filter(|_| !headers.contains_key(http::header::AUTHORIZATION));
        let mut retried = false;
        loop {
            let mut request = self
                .client
                .request(method.clone(), self.url.clone())
                .headers(self.headers.clone())
                .headers(headers.clone())
                .header(http::header::ACCEPT, "application/json, text/event-stream");
            if let Some(credentials) = own {
                request = request.header(http::header::AUTHORIZATION, credentials.own().await?);
            }
            if let Some(bytes) = &bytes {
                request = request
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(bytes.clone());
            }
            let response = request
                .send()
                .await
                .map_err(|e| UpstreamError::Unavailable {
                    detail: crate::redact::error(&e).into(),
                })?;
            match own {
                Some(credentials) if response.status() == StatusCode::UNAUTHORIZED && !retried => {
                    tracing::warn!(upstream = %self.id, "upstream refused the gateway's token; fetching a new one");
                    credentials.invalidate().await;
                    retried = true;
                }
                _ => return Ok(response),
            }
        }
    }
}

/// What a JSON body held: the messages before the response, and the response.
pub(super) struct JsonAnswer {
    /// Notifications and requests the upstream wrote before the response, in order.
    pub(super) before: Vec<Message>,
    /// The response to the request (or an id-less error); `None` when the body held none.
    pub(super) answer: Option<Reply>,
}

/// Reads a JSON body: one JSON-RPC message, or several separated by whitespace (some servers
/// answer `application/json` with a progress notification, then the response, one per line;
/// a client talking to them directly copes, so the gateway does too). Anything that is not a
/// sequence of JSON-RPC messages is a protocol error; after a failure status it is no answer.
pub(super) async fn read_json_answer(
    mut response: reqwest::Response,
    id: &Value,
) -> Result<JsonAnswer, UpstreamError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| UpstreamError::Closed {
        detail: crate::redact::error(&e).into(),
    })? {
        if body.len() + chunk.len() > MAX_MESSAGE_BYTES {
            return Err(UpstreamError::Protocol {
                detail: format!("response larger than {MAX_MESSAGE_BYTES} bytes").into(),
            });
        }
        body.extend_from_slice(&chunk);
    }
    let success = response.status().is_success();
    let mut found = JsonAnswer {
        before: Vec::new(),
        answer: None,
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(found);
    }
    let messages = match decode_sequence(&body) {
        Ok(messages) => messages,
        Err(_) if !success => return Ok(found),
        Err(detail) => {
            return Err(UpstreamError::Protocol {
                detail: detail.into(),
            });
        }
    };
    for message in messages {
        match message {
            Message::Response { id: got, outcome } if &got == id || got.is_null() => {
                found.answer = Some(outcome);
                return Ok(found);
            }
            Message::Response { id: got, .. } if success => {
                return Err(UpstreamError::Protocol {
                    detail: format!("expected the response to request {id}, got one to {got}")
                        .into(),
                });
            }
            Message::Response { .. } => {}
            other => found.before.push(other),
        }
    }
    Ok(found)
}

/// One JSON-RPC message, or a whitespace-separated sequence of them.
fn decode_sequence(body: &[u8]) -> Result<Vec<Message>, String> {
    if let Ok(one) = Message::decode(body) {
        return Ok(vec![one]);
    }
    let mut messages = Vec::new();
    let values =
        serde_json::Deserializer::from_slice(body).into_iter::<&serde_json::value::RawValue>();
    for value in values {
        let value = value.map_err(|e| format!("not JSON-RPC: {e}"))?;
        let message = Message::decode(value.get().as_bytes()).map_err(|e| e.to_string())?;
        messages.push(message);
    }
    Ok(messages)
}

/// Reads an SSE stream until the response to `id` arrives. Other messages are skipped here; the
/// streaming relay is a separate concern.
async fn read_sse_answer(
    response: reqwest::Response,
    id: &Value,
) -> Result<Option<Reply>, UpstreamError> {
    let mut events = super::super::sse_events::events(response, MAX_MESSAGE_BYTES);
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| UpstreamError::Closed {
            detail: e.to_string().into(),
        })?;
        if event.data.len() > MAX_MESSAGE_BYTES {
            return Err(UpstreamError::Protocol {
                detail: "SSE event too large".into(),
            });
        }
        if event.data.trim().is_empty() {
            continue;
        }
        match Message::decode(event.data.as_bytes()) {
            Ok(Message::Response { id: got, outcome }) if &got == id => return Ok(Some(outcome)),
            Ok(other) => tracing::trace!(message = ?other, "skipping upstream stream message"),
            Err(e) => {
                return Err(UpstreamError::Protocol {
                    detail: format!("bad SSE event: {e}").into(),
                });
            }
        }
    }
    Err(UpstreamError::Closed {
        detail: "SSE stream ended before the response".into(),
    })
}
