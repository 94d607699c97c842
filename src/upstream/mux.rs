//! Upstreams that carry every message over one connection — a stdio child process, or a
//! 2024-11-05 HTTP+SSE event stream with its POST endpoint — multiplexed by id remapping and
//! supervised: a connection generation is opened by a [`Connector`], handshaken (probe
//! `server/discover`, fall back to `initialize`), served, and replaced with exponential backoff
//! when it ends (DESIGN.md §5.2).
//!
//! A dual-era server selects its era per connection (an `initialize` makes a stdio process
//! legacy; 2026-07-28 `basic/versioning`): when the connection is modern, the legacy clients get
//! a companion connection of their own, opened with `initialize` on their first call, so that
//! what they do with the server directly (sampling, elicitation, roots from a tool,
//! subscriptions) works through the gateway too. A server that refuses `initialize` is
//! modern-only: its legacy clients are bridged over the modern connection.
//!
//! Every request gets a fresh gateway id so concurrent callers never collide. When a connection
//! ends, every pending request fails at once with [`UpstreamError::Closed`], and requests fail
//! fast with [`UpstreamError::Unavailable`] until the next generation is ready. Dropping the
//! [`MuxUpstream`] ends the connection.
//!
//! Attribution: responses carry the gateway's id; progress notifications carry a progress token
//! the gateway rewrote to a unique one per request (clients sharing the connection may pick the
//! same token) and restores on the way back. A message tied to a task (a task status
//! notification, or any message whose `_meta` names a related task) goes only to a request in
//! flight about that same task (`tasks/get`, `tasks/result`, ...), which only the task's creator
//! can make: never to whoever else happens to be calling. Any other log message or
//! server→client request has no link: it goes to the one request in flight, or, when several
//! are in flight, it cannot be attributed (DESIGN.md §5.2) — notifications are dropped and
//! requests answered with an error, both logged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};

use super::call::{CALL_CHANNEL, Call, CallItem, Respond, ServerRequest};
use super::mcp::{self, UpstreamInfo};
use super::{CallContext, Reply, UpstreamError, UpstreamEvent};
use crate::backoff::Backoff;
use crate::config::{EraPreference, UpstreamConfig, UpstreamId};
use crate::jsonrpc::{self, Message, code};
use crate::protocol::Era;

/// First restart delay; doubles per failed generation up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// Longest restart delay.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A generation that lived this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// How long a `server/discover` probe may take before the child is treated as legacy.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
enum State {
    Starting,
    Ready(Arc<Conn>),
    Down {
        detail: crate::redact::Detail,
        /// The server answered the handshake with a refusal (not: could not be reached).
        refused: bool,
    },
}

/// A supervised, multiplexed upstream connection.
pub(super) struct MuxUpstream {
    state: watch::Receiver<State>,
    supervisor: tokio::task::JoinHandle<()>,
    /// What it takes to open the legacy companion of a modern connection.
    opener: Opener,
    /// The legacy companion: `Some` once opened, `None` for a modern-only server.
    companion: tokio::sync::OnceCell<Option<Box<MuxUpstream>>>,
}

/// The configuration a connection was opened with, kept to open its companion.
struct Opener {
    cfg: UpstreamConfig,
    connector: Arc<dyn Connector>,
    events: broadcast::Sender<UpstreamEvent>,
}

impl Drop for MuxUpstream {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

/// One connection generation, as a [`Connector`] opened it.
pub(super) struct Generation {
    /// The multiplexer over the connection.
    pub core: Arc<Core>,
    /// The connection's I/O tasks; aborted when the generation ends.
    pub io: IoTasks,
    /// Resolves, with how it ended, when the connection ends (owning it: dropping this future
    /// closes the connection).
    pub ended: futures::future::BoxFuture<'static, String>,
    /// Names the connection in logs (a pid, a URL).
    pub label: String,
}

/// Opens connection generations of one kind.
pub(super) trait Connector: Send + Sync + 'static {
    /// Opens a new connection whose unsolicited notifications are announced on `events`.
    fn connect(
        &self,
        events: broadcast::Sender<UpstreamEvent>,
    ) -> futures::future::BoxFuture<'static, Result<Generation, UpstreamError>>;

    /// Whether the gateway is shutting down and no new connection is to be opened.
    fn stopped(&self) -> bool {
        false
    }
}

impl MuxUpstream {
    /// Whether the supervisor (and the companion's) has returned: no connection is left and
    /// none will be opened.
    pub(super) fn finished(&self) -> bool {
        self.supervisor.is_finished()
            && self
                .companion
                .get()
                .and_then(Option::as_ref)
                .is_none_or(|c| c.finished())
    }

    pub(super) fn spawn(
        cfg: UpstreamConfig,
        connector: Arc<dyn Connector>,
        events: broadcast::Sender<UpstreamEvent>,
    ) -> Self {
        let (tx, rx) = watch::channel(State::Starting);
        let supervisor = tokio::spawn(supervise(
            cfg.clone(),
            Arc::clone(&connector),
            tx,
            events.clone(),
        ));
        Self {
            state: rx,
            supervisor,
            opener: Opener {
                cfg,
                connector,
                events,
            },
            companion: tokio::sync::OnceCell::new(),
        }
    }

    pub(super) async fn call(
        &self,
        ctx: &CallContext,
        method: &str,
        params: Option<Value>,
        deadline: tokio::time::Instant,
    ) -> Result<Call, UpstreamError> {
        let conn = self.ready().await?;
        if conn.info().era == Era::Modern
            && ctx.client_era() == Era::Legacy
            && let Some(companion) = self.companion().await
        {
            return Box::pin(companion.call(ctx, method, params, deadline)).await;
        }
        let params = mcp::shape_params(conn.info().era, params, ctx);
        conn.core.call(method, params, deadline).await
    }

    /// The legacy companion of this (modern) connection, opened with `initialize` on first use;
    /// `None` when the server refuses `initialize` (modern-only), which is remembered.
    async fn companion(&self) -> Option<&MuxUpstream> {
        self.companion
            .get_or_init(|| async {
                let cfg = UpstreamConfig {
                    era: EraPreference::Legacy,
                    ..self.opener.cfg.clone()
                };
                let companion = MuxUpstream::spawn(
                    cfg,
                    Arc::clone(&self.opener.connector),
                    self.opener.events.clone(),
                );
                let mut state = companion.state.clone();
                let refused = state
                    .wait_for(|s| !matches!(s, State::Starting))
                    .await
                    .map(|s| matches!(*s, State::Down { refused: true, .. }))
                    .unwrap_or(true);
                if refused {
                    tracing::info!(upstream = %self.opener.cfg.id,
                        "the modern upstream refuses initialize; bridging its legacy clients");
                    return None;
                }
                tracing::info!(upstream = %self.opener.cfg.id,
                    "the upstream speaks both eras: its legacy clients get a legacy connection");
                Some(Box::new(companion))
            })
            .await
            .as_deref()
    }

    pub(super) async fn info(&self) -> Result<UpstreamInfo, UpstreamError> {
        Ok(self.ready().await?.info().clone())
    }

    /// The current process, waiting while one is starting; fails fast while it is down.
    async fn ready(&self) -> Result<Arc<Conn>, UpstreamError> {
        let mut rx = self.state.clone();
        loop {
            match &*rx.borrow_and_update() {
                State::Ready(conn) => return Ok(Arc::clone(conn)),
                State::Down { detail, .. } => {
                    return Err(UpstreamError::Unavailable {
                        detail: detail.clone(),
                    });
                }
                State::Starting => {}
            }
            if rx.changed().await.is_err() {
                return Err(UpstreamError::Unavailable {
                    detail: "supervisor stopped".into(),
                });
            }
        }
    }
}

/// A ready process generation.
struct Conn {
    core: Arc<Core>,
    info: UpstreamInfo,
}

impl Conn {
    fn info(&self) -> &UpstreamInfo {
        &self.info
    }
}

/// The multiplexer of one connection generation.
pub(super) struct Core {
    lines: mpsc::Sender<String>,
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
}

/// A request waiting for its response.
struct Pending {
    items: mpsc::Sender<CallItem>,
    /// Whether unattributed traffic (log messages, server requests) may be given to it: not
    /// for the gateway's own long-lived `subscriptions/listen`.
    attributable: bool,
    /// The client's progress token, replaced upstream by `mcpgate-{id}`.
    progress_token: Option<Value>,
    /// For a request about a task (`tasks/*`), the upstream's id of the task.
    task: Option<String>,
}

impl Core {
    /// A multiplexer whose outgoing messages (one JSON text each) go to `lines`.
    pub(super) fn new(lines: mpsc::Sender<String>) -> Arc<Self> {
        Arc::new(Self {
            lines,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        })
    }

    /// Starts a request; the returned call ends with the response.
    async fn call(
        self: &Arc<Self>,
        method: &str,
        mut params: Option<Value>,
        deadline: tokio::time::Instant,
    ) -> Result<Call, UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let progress_token = params
            .as_mut()
            .and_then(|p| p.get_mut("_meta"))
            .and_then(|m| m.get_mut("progressToken"))
            .map(|token| std::mem::replace(token, Value::from(gateway_token(id))));
        let task = method
            .starts_with("tasks/")
            .then(|| params.as_ref()?.get("taskId")?.as_str().map(str::to_string))
            .flatten();
        let (tx, rx) = mpsc::channel(CALL_CHANNEL);
        self.lock_pending().insert(
            id,
            Pending {
                items: tx,
                progress_token,
                attributable: method != "subscriptions/listen",
                task,
            },
        );
        let weak = Arc::downgrade(self);
        let on_cancel = move || {
            if let Some(core) = weak.upgrade()
                && core.lock_pending().remove(&id).is_some()
            {
                tokio::spawn(async move {
                    let params = json!({"requestId": id, "reason": "cancelled by the client"});
                    let _ = core.notify("notifications/cancelled", Some(params)).await;
                });
            }
        };
        let call = Call::new(rx, deadline, Some(Box::new(on_cancel)));
        let line = jsonrpc::request(Value::from(id), method, params).to_string();
        self.send_line(line).await?;
        Ok(call)
    }

    /// A request of the gateway's own (handshake), waited for to the end.
    async fn request(
        self: &Arc<Self>,
        method: &str,
        params: Option<Value>,
    ) -> Result<Reply, UpstreamError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
        self.call(method, params, deadline).await?.finish().await
    }

    async fn notify(&self, method: &str, params: Option<Value>) -> Result<(), UpstreamError> {
        self.send_line(jsonrpc::notification(method, params).to_string())
            .await
    }

    async fn send_line(&self, line: String) -> Result<(), UpstreamError> {
        self.lines
            .send(line)
            .await
            .map_err(|_| UpstreamError::Closed {
                detail: "the process's stdin is closed".into(),
            })
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fails every pending request (their channels close without a final item).
    pub(super) fn fail_all(&self) {
        self.lock_pending().clear();
    }
}

/// The progress token the gateway puts on upstream request `id`.
fn gateway_token(id: u64) -> String {
    format!("mcpgate-{id}")
}

/// Answers an upstream's server→client request over its connection.
struct MuxResponder {
    core: std::sync::Weak<Core>,
}

impl Respond for MuxResponder {
    fn respond(
        &self,
        message: Value,
    ) -> futures::future::BoxFuture<'static, Result<(), UpstreamError>> {
        let core = self.core.upgrade();
        Box::pin(async move {
            match core {
                Some(core) => core.send_line(message.to_string()).await,
                None => Err(UpstreamError::Closed {
                    detail: "the process exited".into(),
                }),
            }
        })
    }
}

/// Hands an item to a call without blocking the reader: a full channel (a slow client) gets
/// the item from a spawned task, so other calls on the process keep flowing.
fn deliver(items: &mpsc::Sender<CallItem>, item: CallItem) {
    if let Err(mpsc::error::TrySendError::Full(item)) = items.try_send(item) {
        let items = items.clone();
        tokio::spawn(async move {
            let _ = items.send(item).await;
        });
    }
}

async fn supervise(
    cfg: UpstreamConfig,
    connector: Arc<dyn Connector>,
    state: watch::Sender<State>,
    events: broadcast::Sender<UpstreamEvent>,
) {
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    for generation in 0u64.. {
        state.send_replace(State::Starting);
        let started = tokio::time::Instant::now();
        // The first generation is listed by the catalogue's own first round; later ones announce
        // themselves so their (possibly changed) catalogue is fetched at once.
        let announce = (generation > 0).then_some(&events);
        let outcome = run_generation(&cfg, connector.as_ref(), &state, announce, &events).await;
        let refused = matches!(outcome, Err(UpstreamError::Handshake { .. }));
        let detail = crate::redact::Detail::from(match outcome {
            Ok(exit) => exit,
            Err(e) => e.to_string(),
        });
        if started.elapsed() >= STABLE_AFTER {
            backoff.reset();
        }
        if connector.stopped() {
            tracing::info!(upstream = %cfg.id, detail = %detail, "upstream connection closed for shutdown");
            state.send_replace(State::Down {
                detail,
                refused: false,
            });
            return;
        }
        let wait = backoff.next_delay();
        tracing::warn!(upstream = %cfg.id, detail = %detail, retry_in = ?wait, "upstream connection is down");
        state.send_replace(State::Down { detail, refused });
        tokio::time::sleep(wait).await;
    }
}

/// Runs one connection generation to its end; returns how it ended.
async fn run_generation(
    cfg: &UpstreamConfig,
    connector: &dyn Connector,
    state: &watch::Sender<State>,
    announce: Option<&broadcast::Sender<UpstreamEvent>>,
    events: &broadcast::Sender<UpstreamEvent>,
) -> Result<String, UpstreamError> {
    let Generation {
        core,
        io,
        mut ended,
        label,
    } = connector.connect(events.clone()).await?;
    let handshake = tokio::time::timeout(cfg.timeout, handshake(&core, cfg.era));
    let info = tokio::select! {
        info = handshake => info.unwrap_or(Err(UpstreamError::Timeout))?,
        how = &mut ended => return Ok(format!("ended during the handshake ({how})")),
    };
    tracing::info!(upstream = %cfg.id, era = info.era.as_str(), version = %info.protocol_version, connection = %label, "upstream ready");
    state.send_replace(State::Ready(Arc::new(Conn {
        core: Arc::clone(&core),
        info,
    })));
    if let Some(events) = announce {
        let _ = events.send(UpstreamEvent::Reconnected {
            upstream: cfg.id.clone(),
        });
    }
    let how = ended.await;
    state.send_replace(State::Starting);
    core.fail_all();
    io.abort();
    Ok(how)
}

/// Handles for the I/O tasks of one generation; aborting ends them.
pub(super) struct IoTasks(pub(super) Vec<tokio::task::JoinHandle<()>>);

impl IoTasks {
    pub(super) fn abort(&self) {
        self.0.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

impl Drop for IoTasks {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Routes one incoming message (JSON text) of a connection.
pub(super) async fn dispatch(
    id: &UpstreamId,
    core: &Arc<Core>,
    events: &broadcast::Sender<UpstreamEvent>,
    line: &str,
) {
    if line.trim().is_empty() {
        return;
    }
    match Message::decode(line.as_bytes()) {
        Ok(Message::Response { id: rid, outcome }) => {
            let waiter = rid.as_u64().and_then(|n| core.lock_pending().remove(&n));
            match waiter {
                Some(pending) => deliver(&pending.items, CallItem::Final(Ok(outcome))),
                None => {
                    tracing::debug!(upstream = %id, id = %rid, "response to no pending request")
                }
            }
        }
        Ok(Message::Request {
            id: rid,
            method,
            params,
        }) => {
            if method == "ping" {
                let _ = core
                    .send_line(jsonrpc::result_response(rid, json!({})).to_string())
                    .await;
                return;
            }
            let target = match related_task(params.as_ref()) {
                Some(task) => about_task(core, task),
                None => only_pending(core),
            };
            let responder: Arc<dyn Respond> = Arc::new(MuxResponder {
                core: Arc::downgrade(core),
            });
            let request = ServerRequest::new(rid, method, params, responder);
            match target {
                Some(items) => deliver(&items, CallItem::Request(request)),
                None => {
                    tracing::warn!(upstream = %id, method = %request.method,
                        "server request with several calls in flight cannot be attributed; rejected");
                    request
                        .reject(
                            code::INTERNAL_ERROR,
                            "the gateway cannot attribute this request to a client",
                        )
                        .await;
                }
            }
        }
        Ok(Message::Notification { method, mut params }) => {
            if method.ends_with("/list_changed") {
                let _ = events.send(UpstreamEvent::ListChanged {
                    upstream: id.clone(),
                    method,
                });
                return;
            }
            if method == "notifications/resources/updated" {
                if let Some(uri) = params
                    .as_ref()
                    .and_then(|p| p.get("uri"))
                    .and_then(Value::as_str)
                {
                    let _ = events.send(UpstreamEvent::ResourceUpdated {
                        upstream: id.clone(),
                        uri: uri.to_string(),
                        downstream: None,
                    });
                }
                return;
            }
            let token = params
                .as_ref()
                .and_then(|p| p.get("progressToken"))
                .and_then(Value::as_str)
                .and_then(|t| t.strip_prefix("mcpgate-"))
                .and_then(|n| n.parse::<u64>().ok());
            let task = if crate::router::tasks::is_status_notification(&method) {
                params
                    .as_ref()
                    .and_then(|p| p.get("taskId"))
                    .and_then(Value::as_str)
            } else {
                related_task(params.as_ref())
            };
            let target = match (token, task) {
                (_, Some(task)) => about_task(core, task),
                (Some(n), None) => {
                    let pending = core.lock_pending();
                    pending.get(&n).map(|p| {
                        if let (Some(params), Some(original)) = (params.as_mut(), &p.progress_token)
                        {
                            params["progressToken"] = original.clone();
                        }
                        p.items.clone()
                    })
                }
                (None, None) => only_pending(core),
            };
            match target {
                Some(items) => {
                    if items
                        .try_send(CallItem::Notification(jsonrpc::notification(
                            &method, params,
                        )))
                        .is_err()
                    {
                        tracing::debug!(upstream = %id, %method, "dropping a notification for a busy call");
                    }
                }
                None => {
                    tracing::debug!(upstream = %id, %method, "notification not attributable to one call; dropped")
                }
            }
        }
        Err(e) => {
            tracing::warn!(upstream = %id, error = %e, "ignoring a line that is not JSON-RPC")
        }
    }
}

/// The task a message's `_meta` names (`io.modelcontextprotocol/related-task`), if any.
fn related_task(params: Option<&Value>) -> Option<&str> {
    params?
        .get("_meta")?
        .get("io.modelcontextprotocol/related-task")?
        .get("taskId")?
        .as_str()
}

/// The call channel of a request in flight about `task`, if any.
fn about_task(core: &Core, task: &str) -> Option<mpsc::Sender<CallItem>> {
    core.lock_pending()
        .values()
        .find(|p| p.task.as_deref() == Some(task))
        .map(|p| p.items.clone())
}

/// The call channel of the only request in flight, if exactly one is.
fn only_pending(core: &Core) -> Option<mpsc::Sender<CallItem>> {
    let pending = core.lock_pending();
    let mut attributable = pending.values().filter(|p| p.attributable);
    match (attributable.next(), attributable.next()) {
        (Some(only), None) => Some(only.items.clone()),
        _ => None,
    }
}

/// Negotiates the era of a fresh process.
async fn handshake(core: &Arc<Core>, pref: EraPreference) -> Result<UpstreamInfo, UpstreamError> {
    if pref != EraPreference::Legacy {
        let probe = tokio::time::timeout(
            PROBE_TIMEOUT,
            core.request("server/discover", Some(mcp::discover_params())),
        )
        .await;
        match probe {
            Ok(Ok(Ok(result))) => {
                if let Some(info) = mcp::parse_discover(&result) {
                    return Ok(info);
                }
            }
            Ok(Ok(Err(error))) if mcp::is_incompatible_modern(&error) => {
                return Err(UpstreamError::Handshake {
                    detail: format!("modern-only upstream shares no protocol version: {error}")
                        .into(),
                });
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(Err(_))) | Err(_) => {}
        }
        if pref == EraPreference::Modern {
            return Err(UpstreamError::Handshake {
                detail: "configured as modern, but server/discover failed".into(),
            });
        }
    }
    let result = core
        .request(
            "initialize",
            Some(mcp::initialize_params(&mcp::relayed_client_capabilities())),
        )
        .await?
        .map_err(|error| UpstreamError::Handshake {
            detail: format!("initialize was rejected: {error}").into(),
        })?;
    let info = mcp::parse_initialize(&result)?;
    core.notify("notifications/initialized", None).await?;
    debug_assert_eq!(info.era, Era::Legacy);
    Ok(info)
}
