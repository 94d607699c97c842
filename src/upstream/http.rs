//! Streamable HTTP upstreams, both eras.
//!
//! Era: probed once with `server/discover` and cached for the life of the process (2026-07-28
//! `basic/versioning`: the era is a property of the server). Modern: one POST per request with
//! `_meta` and the mirrored headers. Legacy: one upstream session per downstream session
//! (`None` = the gateway's shared session), opened lazily with `initialize`, re-opened once on
//! 404, closed with `DELETE` when the downstream session ends or idles out.
//!
//! A request answered with an SSE stream becomes a [`Call`] fed by a reader task, so progress,
//! log messages and server→client requests reach the client as they arrive. Dropping the call
//! aborts the reader (closing the stream, which is how a modern upstream learns of
//! cancellation) and, for a legacy upstream, also sends `notifications/cancelled`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::Value;
use tokio::sync::OnceCell;
use url::Url;
use uuid::Uuid;

use super::call::{CALL_CHANNEL, Call, CallItem, Respond, ServerRequest};
use super::mcp::{self, UpstreamInfo};
use super::{CallContext, Reply, UpstreamError, UpstreamEvent};
use crate::config::{EraPreference, Secret, UpstreamId};
use crate::jsonrpc::{self, Message};
use crate::protocol::{
    Era, HEADER_METHOD, HEADER_NAME, HEADER_PROTOCOL_VERSION, HEADER_SESSION_ID, LATEST_MODERN,
    encode_header_value,
};

/// Largest upstream message accepted, bytes. A larger answer is a protocol error.
const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// One legacy upstream session.
#[derive(Debug)]
struct LegacySession {
    /// `Mcp-Session-Id` the upstream assigned; `None` for stateless legacy servers.
    id: Option<String>,
    info: UpstreamInfo,
}

type SessionCell = Arc<OnceCell<Arc<LegacySession>>>;

pub(super) struct HttpUpstream {
    id: UpstreamId,
    endpoint: Arc<Endpoint>,
    /// GET streams of legacy upstream sessions (the upstream's unsolicited notifications): the
    /// shared session's always, a downstream session's once it subscribes to a resource.
    listeners:
        std::sync::Mutex<std::collections::HashMap<Option<Uuid>, tokio::task::JoinHandle<()>>>,
    era_pref: EraPreference,
    era: OnceCell<(Era, Option<UpstreamInfo>)>,
    sessions: moka::future::Cache<Option<Uuid>, SessionCell>,
}

/// Where and how to POST; shared with the session-eviction listener and reader tasks.
struct Endpoint {
    id: UpstreamId,
    url: Url,
    headers: HeaderMap,
    client: reqwest::Client,
    next_id: AtomicU64,
    /// Where list changes and resource updates are announced.
    events: tokio::sync::broadcast::Sender<UpstreamEvent>,
}

impl Drop for HttpUpstream {
    fn drop(&mut self) {
        for (_, task) in self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
        {
            task.abort();
        }
    }
}

/// What one POST produced, its body read to the answer.
struct Posted {
    status: StatusCode,
    session_id: Option<String>,
    answer: Option<Reply>,
}

/// What one POST produced before its body was read.
struct Opened {
    id: Value,
    status: StatusCode,
    session_id: Option<String>,
    response: reqwest::Response,
    is_sse: bool,
}

impl Posted {
    fn into_reply(self) -> Result<Reply, UpstreamError> {
        match self.answer {
            Some(answer) => Ok(answer),
            None if !self.status.is_success() => Err(UpstreamError::HttpStatus {
                status: self.status.as_u16(),
            }),
            None => Err(UpstreamError::Protocol {
                detail: format!("HTTP {} without a JSON-RPC response", self.status),
            }),
        }
    }
}

impl HttpUpstream {
    pub(super) fn new(
        id: UpstreamId,
        url: Url,
        headers: Vec<(HeaderName, Secret)>,
        era_pref: EraPreference,
        client: reqwest::Client,
        session_idle: Duration,
        events: tokio::sync::broadcast::Sender<UpstreamEvent>,
    ) -> Self {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            if let Ok(mut v) = HeaderValue::from_str(value.expose()) {
                v.set_sensitive(true);
                map.append(name, v);
            }
        }
        let endpoint = Arc::new(Endpoint {
            id: id.clone(),
            url,
            headers: map,
            client,
            next_id: AtomicU64::new(1),
            events,
        });
        let closer = Arc::clone(&endpoint);
        let sessions = moka::future::Cache::builder()
            .time_to_idle(session_idle)
            .eviction_listener(move |_key, cell: SessionCell, cause| {
                use moka::notification::RemovalCause;
                if !matches!(cause, RemovalCause::Expired | RemovalCause::Explicit) {
                    return;
                }
                let session_id = cell.get().and_then(|s| s.id.clone());
                if let (Some(session_id), Ok(rt)) =
                    (session_id, tokio::runtime::Handle::try_current())
                {
                    let endpoint = Arc::clone(&closer);
                    rt.spawn(async move { endpoint.delete_session(&session_id).await });
                }
            })
            .build();
        Self {
            id,
            endpoint,
            listeners: std::sync::Mutex::new(std::collections::HashMap::new()),
            era_pref,
            era: OnceCell::new(),
            sessions,
        }
    }

    pub(super) async fn info(&self) -> Result<UpstreamInfo, UpstreamError> {
        match self.era().await? {
            (Era::Modern, Some(info)) => Ok(info.clone()),
            _ => Ok(self.session(None, &Value::Null).await?.info.clone()),
        }
    }

    /// Starts one request; see [`Call`].
    pub(super) async fn call(
        &self,
        ctx: &CallContext,
        method: &str,
        params: Option<Value>,
        param_headers: &[(String, String)],
        deadline: tokio::time::Instant,
    ) -> Result<Call, UpstreamError> {
        let (era, _) = self.era().await?;
        match era {
            Era::Modern => {
                let params = mcp::shape_params(Era::Modern, params, ctx);
                let name = params.as_ref().and_then(mirrored_name(method));
                let mut headers = modern_headers(method, name.as_deref());
                add_param_headers(&mut headers, param_headers);
                let opened = self.endpoint.open(method, params, &headers).await?;
                Ok(self.stream(opened, headers, deadline, false))
            }
            Era::Legacy => {
                let params = mcp::shape_params(Era::Legacy, params, ctx);
                let key = ctx.downstream_session;
                let mut retried = false;
                loop {
                    let session = self.session(key, &ctx.client_capabilities).await?;
                    if method == "resources/subscribe" {
                        self.ensure_listening(key, &session);
                    }
                    let headers = legacy_headers(&session);
                    let opened = self.endpoint.open(method, params.clone(), &headers).await?;
                    if opened.status == StatusCode::NOT_FOUND && session.id.is_some() && !retried {
                        tracing::info!(upstream = %self.id, "upstream session expired; re-initialising");
                        // Replacing (not invalidating) the entry skips the DELETE: it is gone.
                        self.sessions.insert(key, Arc::new(OnceCell::new())).await;
                        retried = true;
                        continue;
                    }
                    return Ok(self.stream(opened, headers, deadline, true));
                }
            }
        }
    }

    /// Turns an opened POST into a [`Call`]: an SSE body is relayed item by item by a reader
    /// task; a JSON body is the final item.
    fn stream(
        &self,
        opened: Opened,
        headers: HeaderMap,
        deadline: tokio::time::Instant,
        legacy: bool,
    ) -> Call {
        if !opened.is_sse {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let endpoint = Arc::clone(&self.endpoint);
            let reader = tokio::spawn(async move {
                let Opened {
                    id,
                    status,
                    session_id,
                    response,
                    ..
                } = opened;
                let answer = read_json_answer(response, &id).await;
                let outcome = answer.and_then(|answer| {
                    Posted {
                        status,
                        session_id,
                        answer,
                    }
                    .into_reply()
                });
                drop(endpoint);
                let _ = tx.send(CallItem::Final(outcome)).await;
            });
            return Call::new(rx, deadline, Some(Box::new(move || reader.abort())));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(CALL_CHANNEL);
        let responder: Arc<dyn Respond> = Arc::new(HttpResponder {
            endpoint: Arc::clone(&self.endpoint),
            headers: headers.clone(),
        });
        let request_id = opened.id.clone();
        let reader = tokio::spawn(relay_sse(opened, tx, responder, Arc::clone(&self.endpoint)));
        let endpoint = Arc::clone(&self.endpoint);
        let on_cancel = move || {
            reader.abort();
            if legacy {
                // Legacy upstreams learn of cancellation only by notification.
                tokio::spawn(async move {
                    let params = serde_json::json!({"requestId": request_id, "reason": "cancelled by the client"});
                    let _ = endpoint
                        .notify_with("notifications/cancelled", Some(params), &headers)
                        .await;
                });
            }
        };
        Call::new(rx, deadline, Some(Box::new(on_cancel)))
    }

    pub(super) async fn close_session(&self, downstream: Uuid) {
        let listener = self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&Some(downstream));
        if let Some(task) = listener {
            task.abort();
        }
        self.sessions.invalidate(&Some(downstream)).await;
    }

    /// The era, probing on first use. Failures to reach the upstream are not cached.
    async fn era(&self) -> Result<&(Era, Option<UpstreamInfo>), UpstreamError> {
        self.era
            .get_or_try_init(|| async {
                match self.era_pref {
                    EraPreference::Legacy => Ok((Era::Legacy, None)),
                    EraPreference::Modern => {
                        let info = self
                            .probe()
                            .await?
                            .ok_or_else(|| UpstreamError::Handshake {
                                detail: "configured as modern, but server/discover failed".into(),
                            })?;
                        Ok((Era::Modern, Some(info)))
                    }
                    EraPreference::Auto => Ok(match self.probe().await? {
                        Some(info) => (Era::Modern, Some(info)),
                        None => (Era::Legacy, None),
                    }),
                }
            })
            .await
    }

    /// Sends `server/discover`: `Some(info)` for a modern upstream, `None` for a legacy one.
    async fn probe(&self) -> Result<Option<UpstreamInfo>, UpstreamError> {
        let headers = modern_headers("server/discover", None);
        let posted = self
            .endpoint
            .post("server/discover", Some(mcp::discover_params()), &headers)
            .await?;
        let era = match &posted.answer {
            Some(Ok(result)) => mcp::parse_discover(result),
            Some(Err(error)) if mcp::is_incompatible_modern(error) => {
                return Err(UpstreamError::Handshake {
                    detail: format!("modern-only upstream shares no protocol version: {error}"),
                });
            }
            _ => None,
        };
        tracing::info!(
            upstream = %self.id,
            era = if era.is_some() { "modern" } else { "legacy" },
            status = posted.status.as_u16(),
            "probed upstream era"
        );
        Ok(era)
    }

    /// The legacy session for `key`, opened on first use.
    /// `capabilities` are declared in `initialize`: the downstream client's own for its
    /// session, what the gateway can relay for the shared one.
    async fn session(
        &self,
        key: Option<Uuid>,
        capabilities: &Value,
    ) -> Result<Arc<LegacySession>, UpstreamError> {
        let cell = self
            .sessions
            .get_with(key, async { Arc::new(OnceCell::new()) })
            .await;
        let capabilities = if key.is_some() {
            capabilities.clone()
        } else {
            mcp::relayed_client_capabilities()
        };
        cell.get_or_try_init(|| async {
            let session = Arc::new(self.initialize(&capabilities).await?);
            if key.is_none() {
                self.listen(key, &session);
            }
            Ok(session)
        })
        .await
        .cloned()
    }

    /// (Re)starts the GET stream of the upstream session held for `key`.
    fn listen(&self, key: Option<Uuid>, session: &LegacySession) {
        let task = tokio::spawn(listen_get(
            Arc::clone(&self.endpoint),
            legacy_headers(session),
            key,
        ));
        let previous = self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, task);
        if let Some(previous) = previous {
            previous.abort();
        }
    }

    /// Starts the GET stream of a downstream session's upstream session if it has none.
    fn ensure_listening(&self, key: Option<Uuid>, session: &LegacySession) {
        let running = self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .is_some_and(|t| !t.is_finished());
        if !running {
            self.listen(key, session);
        }
    }

    async fn initialize(&self, capabilities: &Value) -> Result<LegacySession, UpstreamError> {
        let posted = self
            .endpoint
            .post(
                "initialize",
                Some(mcp::initialize_params(capabilities)),
                &HeaderMap::new(),
            )
            .await?;
        let session_id = posted.session_id.clone();
        let result = match posted.into_reply()? {
            Ok(result) => result,
            Err(error) => {
                return Err(UpstreamError::Handshake {
                    detail: format!("initialize was rejected: {error}"),
                });
            }
        };
        let info = mcp::parse_initialize(&result)?;
        let session = LegacySession {
            id: session_id,
            info,
        };
        let headers = legacy_headers(&session);
        self.endpoint
            .notify("notifications/initialized", &headers)
            .await?;
        tracing::info!(upstream = %self.id, version = %session.info.protocol_version, "opened legacy upstream session");
        Ok(session)
    }
}

impl Endpoint {
    /// POSTs one request and reads its answer from a JSON body or an SSE stream (other
    /// messages on the stream are dropped: for the gateway's own requests).
    async fn post(
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
            read_json_answer(response, &id).await?
        };
        Ok(Posted {
            status,
            session_id,
            answer,
        })
    }

    /// POSTs one request; the body is left unread.
    async fn open(
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
    async fn notify(&self, method: &str, headers: &HeaderMap) -> Result<(), UpstreamError> {
        self.notify_with(method, None, headers).await
    }

    /// POSTs a notification with params; any 2xx is success.
    async fn notify_with(
        &self,
        method: &str,
        params: Option<Value>,
        headers: &HeaderMap,
    ) -> Result<(), UpstreamError> {
        let body = jsonrpc::notification(method, params);
        self.post_message(&body, headers).await
    }

    /// POSTs a notification or response message; any 2xx is success.
    async fn post_message(&self, body: &Value, headers: &HeaderMap) -> Result<(), UpstreamError> {
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
    async fn delete_session(&self, session_id: &str) {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(session_id) {
            headers.insert(HEADER_SESSION_ID, v);
        }
        match self.send(http::Method::DELETE, &headers, None).await {
            Ok(r) => tracing::debug!(status = r.status().as_u16(), "closed upstream session"),
            Err(e) => tracing::debug!(error = %e, "could not close upstream session"),
        }
    }

    async fn send(
        &self,
        method: http::Method,
        headers: &HeaderMap,
        body: Option<&Value>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let mut request = self
            .client
            .request(method, self.url.clone())
            .headers(self.headers.clone())
            .headers(headers.clone())
            .header(http::header::ACCEPT, "application/json, text/event-stream");
        if let Some(body) = body {
            let bytes = serde_json::to_vec(body).map_err(|e| UpstreamError::Protocol {
                detail: e.to_string(),
            })?;
            request = request
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(bytes);
        }
        request
            .send()
            .await
            .map_err(|e| UpstreamError::Unavailable {
                detail: error_chain(&e),
            })
    }
}

/// Reads a JSON body; `Some` when it is the JSON-RPC response to `id` (or an id-less error).
async fn read_json_answer(
    mut response: reqwest::Response,
    id: &Value,
) -> Result<Option<Reply>, UpstreamError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| UpstreamError::Closed {
        detail: error_chain(&e),
    })? {
        if body.len() + chunk.len() > MAX_MESSAGE_BYTES {
            return Err(UpstreamError::Protocol {
                detail: format!("response larger than {MAX_MESSAGE_BYTES} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match Message::decode(&body) {
        Ok(Message::Response { id: got, outcome }) if &got == id || got.is_null() => {
            Ok(Some(outcome))
        }
        Ok(_) | Err(_) if !response.status().is_success() => Ok(None),
        Ok(other) => Err(UpstreamError::Protocol {
            detail: format!("expected the response to request {id}, got {other:?}"),
        }),
        Err(e) => Err(UpstreamError::Protocol {
            detail: e.to_string(),
        }),
    }
}

/// Reads an SSE stream until the response to `id` arrives. Other messages are skipped here; the
/// streaming relay is a separate concern.
async fn read_sse_answer(
    response: reqwest::Response,
    id: &Value,
) -> Result<Option<Reply>, UpstreamError> {
    use eventsource_stream::Eventsource as _;
    let mut events = response.bytes_stream().eventsource();
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| UpstreamError::Closed {
            detail: e.to_string(),
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
                    detail: format!("bad SSE event: {e}"),
                });
            }
        }
    }
    Err(UpstreamError::Closed {
        detail: "SSE stream ended before the response".into(),
    })
}

/// Headers of a modern request (2026-07-28 Streamable HTTP, "Request Metadata").
fn modern_headers(method: &str, name: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        HEADER_PROTOCOL_VERSION,
        HeaderValue::from_static(LATEST_MODERN),
    );
    if let Ok(v) = HeaderValue::from_str(&encode_header_value(method)) {
        headers.insert(HEADER_METHOD, v);
    }
    if let Some(v) = name.and_then(|n| HeaderValue::from_str(&encode_header_value(n)).ok()) {
        headers.insert(HEADER_NAME, v);
    }
    headers
}

/// Headers of a request inside a legacy session.
fn legacy_headers(session: &LegacySession) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(v) = session
        .id
        .as_deref()
        .and_then(|id| HeaderValue::from_str(id).ok())
    {
        headers.insert(HEADER_SESSION_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(&session.info.protocol_version) {
        headers.insert(HEADER_PROTOCOL_VERSION, v);
    }
    headers
}

/// For methods whose `Mcp-Name` header mirrors `params.name` or `params.uri`, the extractor.
fn mirrored_name(method: &str) -> impl Fn(&Value) -> Option<String> + '_ {
    move |params| {
        let key = match method {
            "tools/call" | "prompts/get" => "name",
            "resources/read" => "uri",
            _ => return None,
        };
        params.get(key).and_then(Value::as_str).map(str::to_string)
    }
}

/// An error with its sources, for logs.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Answers an upstream's server→client request with a POST in the same session.
struct HttpResponder {
    endpoint: Arc<Endpoint>,
    headers: HeaderMap,
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
async fn relay_sse(
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

/// Adds `Mcp-Param-{name}` headers.
fn add_param_headers(headers: &mut HeaderMap, param_headers: &[(String, String)]) {
    for (name, value) in param_headers {
        let header =
            HeaderName::from_bytes(format!("{}{name}", crate::param_headers::PREFIX).as_bytes());
        let value = HeaderValue::from_str(&encode_header_value(value));
        if let (Ok(header), Ok(value)) = (header, value) {
            headers.insert(header, value);
        }
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
async fn listen_get(endpoint: Arc<Endpoint>, headers: HeaderMap, downstream: Option<Uuid>) {
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
