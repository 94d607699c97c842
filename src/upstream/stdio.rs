//! stdio upstreams: one long-lived child process per upstream, multiplexed by id remapping,
//! restarted with exponential backoff when it dies (DESIGN.md §5.2).
//!
//! A supervisor task owns the child. Each process generation probes its era (`server/discover`,
//! falling back to `initialize`), then serves requests; every request gets a fresh gateway id so
//! concurrent callers never collide. When the process exits, every pending request fails at once
//! with [`UpstreamError::Closed`] and requests fail fast with [`UpstreamError::Unavailable`] until
//! the next generation is ready. Dropping the [`StdioUpstream`] kills the child.
//!
//! Attribution: responses carry the gateway's id; progress notifications carry a progress
//! token the gateway rewrote to a unique one per request (clients sharing the process may pick
//! the same token) and restores on the way back. A log message or a server→client request has no
//! such link: it goes to the one request in flight, or, when several are in flight, it cannot be
//! attributed (DESIGN.md §5.2) — notifications are dropped and requests answered with an error,
//! both logged.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::codec::{FramedRead, LinesCodec};

use super::call::{CALL_CHANNEL, Call, CallItem, Respond, ServerRequest};
use super::mcp::{self, UpstreamInfo};
use super::{CallContext, Reply, UpstreamError, UpstreamEvent};
use crate::config::{EraPreference, UpstreamConfig, UpstreamId, UpstreamTransport};
use crate::jsonrpc::{self, Message, code};
use crate::protocol::Era;

/// Longest line (one JSON-RPC message) read from a child, bytes.
const MAX_LINE_BYTES: usize = 32 * 1024 * 1024;
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
    Down { detail: String },
}

pub(super) struct StdioUpstream {
    state: watch::Receiver<State>,
    supervisor: tokio::task::JoinHandle<()>,
}

impl Drop for StdioUpstream {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

impl StdioUpstream {
    pub(super) fn spawn(cfg: UpstreamConfig, events: broadcast::Sender<UpstreamEvent>) -> Self {
        let (tx, rx) = watch::channel(State::Starting);
        let supervisor = tokio::spawn(supervise(cfg, tx, events));
        Self {
            state: rx,
            supervisor,
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
        let params = mcp::shape_params(conn.info().era, params, ctx);
        conn.core.call(method, params, deadline).await
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
                State::Down { detail } => {
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

/// The I/O half of one process generation.
struct Core {
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
}

impl Core {
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
        let (tx, rx) = mpsc::channel(CALL_CHANNEL);
        self.lock_pending().insert(
            id,
            Pending {
                items: tx,
                progress_token,
                attributable: method != "subscriptions/listen",
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
    fn fail_all(&self) {
        self.lock_pending().clear();
    }
}

/// The progress token the gateway puts on upstream request `id`.
fn gateway_token(id: u64) -> String {
    format!("mcpgate-{id}")
}

/// Answers a child's server→client request on its stdin.
struct StdioResponder {
    core: std::sync::Weak<Core>,
}

impl Respond for StdioResponder {
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
    state: watch::Sender<State>,
    events: broadcast::Sender<UpstreamEvent>,
) {
    let mut backoff = MIN_BACKOFF;
    for generation in 0u64.. {
        state.send_replace(State::Starting);
        let started = tokio::time::Instant::now();
        // The first generation is listed by the catalogue's own first round; later ones announce
        // themselves so their (possibly changed) catalogue is fetched at once.
        let announce = (generation > 0).then_some(&events);
        let outcome = run_generation(&cfg, &state, announce, &events).await;
        let detail = match outcome {
            Ok(exit) => exit,
            Err(e) => e.to_string(),
        };
        tracing::warn!(upstream = %cfg.id, detail = %detail, retry_in = ?backoff, "stdio upstream is down");
        state.send_replace(State::Down { detail });
        if started.elapsed() >= STABLE_AFTER {
            backoff = MIN_BACKOFF;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Runs one process generation to its end; returns how it ended.
async fn run_generation(
    cfg: &UpstreamConfig,
    state: &watch::Sender<State>,
    announce: Option<&broadcast::Sender<UpstreamEvent>>,
    events: &broadcast::Sender<UpstreamEvent>,
) -> Result<String, UpstreamError> {
    let mut child = spawn_child(cfg)?;
    let (core, io) = attach(&cfg.id, &mut child, events.clone())?;
    let handshake = tokio::time::timeout(cfg.timeout, handshake(&core, cfg.era));
    let info = tokio::select! {
        info = handshake => info.unwrap_or(Err(UpstreamError::Timeout))?,
        status = child.wait() => {
            return Ok(format!("exited during the handshake ({})", describe_exit(status)));
        }
    };
    tracing::info!(upstream = %cfg.id, era = info.era.as_str(), version = %info.protocol_version, pid = child.id(), "stdio upstream ready");
    state.send_replace(State::Ready(Arc::new(Conn {
        core: Arc::clone(&core),
        info,
    })));
    if let Some(events) = announce {
        let _ = events.send(UpstreamEvent::Reconnected {
            upstream: cfg.id.clone(),
        });
    }
    let status = child.wait().await;
    state.send_replace(State::Starting);
    core.fail_all();
    io.abort();
    Ok(format!("exited ({})", describe_exit(status)))
}

fn describe_exit(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("wait failed: {e}"),
    }
}

fn spawn_child(cfg: &UpstreamConfig) -> Result<Child, UpstreamError> {
    let UpstreamTransport::Stdio {
        command,
        args,
        env,
        cwd,
    } = &cfg.transport
    else {
        return Err(UpstreamError::Unavailable {
            detail: "not a stdio upstream".into(),
        });
    };
    let mut cmd = Command::new(command);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v.expose());
    }
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    cmd.spawn().map_err(|e| UpstreamError::Unavailable {
        detail: format!("cannot start {command:?}: {e}"),
    })
}

/// Handles for the I/O tasks of one generation; aborting ends them.
struct IoTasks(Vec<tokio::task::JoinHandle<()>>);

impl IoTasks {
    fn abort(&self) {
        self.0.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

impl Drop for IoTasks {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Wires the child's pipes: a writer task, a reader task that routes responses to waiters, and a
/// task that logs stderr.
fn attach(
    id: &UpstreamId,
    child: &mut Child,
    events: broadcast::Sender<UpstreamEvent>,
) -> Result<(Arc<Core>, IoTasks), UpstreamError> {
    let missing = || UpstreamError::Unavailable {
        detail: "child pipes unavailable".into(),
    };
    let mut stdin = child.stdin.take().ok_or_else(missing)?;
    let stdout = child.stdout.take().ok_or_else(missing)?;
    let stderr = child.stderr.take().ok_or_else(missing)?;
    let (lines_tx, mut lines_rx) = mpsc::channel::<String>(256);
    let core = Arc::new(Core {
        lines: lines_tx,
        pending: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
    });
    let writer = tokio::spawn(async move {
        while let Some(mut line) = lines_rx.recv().await {
            line.push('\n');
            if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
                break;
            }
        }
    });
    let reader = {
        let core = Arc::clone(&core);
        let id = id.clone();
        tokio::spawn(async move {
            let mut lines =
                FramedRead::new(stdout, LinesCodec::new_with_max_length(MAX_LINE_BYTES));
            while let Some(line) = lines.next().await {
                match line {
                    Ok(line) => dispatch(&id, &core, &events, &line).await,
                    Err(e) => {
                        tracing::warn!(upstream = %id, error = %e, "unreadable output from stdio upstream");
                        break;
                    }
                }
            }
            core.fail_all();
        })
    };
    let logger = {
        let id = id.clone();
        tokio::spawn(async move {
            let mut lines = FramedRead::new(stderr, LinesCodec::new_with_max_length(64 * 1024));
            while let Some(Ok(line)) = lines.next().await {
                tracing::debug!(upstream = %id, "stderr: {line}");
            }
        })
    };
    Ok((core, IoTasks(vec![writer, reader, logger])))
}

/// Routes one line from the child.
async fn dispatch(
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
            let target = only_pending(core);
            let responder: Arc<dyn Respond> = Arc::new(StdioResponder {
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
            let target = match token {
                Some(n) => {
                    let pending = core.lock_pending();
                    pending.get(&n).map(|p| {
                        if let (Some(params), Some(original)) = (params.as_mut(), &p.progress_token)
                        {
                            params["progressToken"] = original.clone();
                        }
                        p.items.clone()
                    })
                }
                None => only_pending(core),
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
                    detail: format!("modern-only upstream shares no protocol version: {error}"),
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
            detail: format!("initialize was rejected: {error}"),
        })?;
    let info = mcp::parse_initialize(&result)?;
    core.notify("notifications/initialized", None).await?;
    debug_assert_eq!(info.era, Era::Legacy);
    Ok(info)
}
