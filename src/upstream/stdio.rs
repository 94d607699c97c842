//! stdio upstreams: one long-lived child process per upstream, multiplexed by id remapping,
//! restarted with exponential backoff when it dies (DESIGN.md §5.2).
//!
//! A supervisor task owns the child. Each process generation probes its era (`server/discover`,
//! falling back to `initialize`), then serves requests; every request gets a fresh gateway id so
//! concurrent callers never collide. When the process exits, every pending request fails at once
//! with [`UpstreamError::Closed`] and requests fail fast with [`UpstreamError::Unavailable`] until
//! the next generation is ready. Dropping the [`StdioUpstream`] kills the child.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::codec::{FramedRead, LinesCodec};

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

    pub(super) async fn request(
        &self,
        ctx: &CallContext,
        method: &str,
        params: Option<Value>,
    ) -> Result<Reply, UpstreamError> {
        let conn = self.ready().await?;
        let params = mcp::shape_params(conn.info().era, params, ctx);
        conn.core.request(method, params).await
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
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    next_id: AtomicU64,
}

impl Core {
    async fn request(&self, method: &str, params: Option<Value>) -> Result<Reply, UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock_pending().insert(id, tx);
        let guard = PendingGuard { core: self, id };
        let line = jsonrpc::request(Value::from(id), method, params).to_string();
        self.send_line(line).await?;
        let outcome = rx.await.map_err(|_| UpstreamError::Closed {
            detail: "the process exited".into(),
        });
        drop(guard);
        outcome
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

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Reply>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fails every pending request (their senders are dropped).
    fn fail_all(&self) {
        self.lock_pending().clear();
    }
}

/// Removes a pending entry when the waiting request is dropped (timeout, cancellation).
struct PendingGuard<'a> {
    core: &'a Core,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.core.lock_pending().remove(&self.id);
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
    core: &Core,
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
                Some(tx) => {
                    let _ = tx.send(outcome);
                }
                None => {
                    tracing::debug!(upstream = %id, id = %rid, "response to no pending request")
                }
            }
        }
        Ok(Message::Request {
            id: rid, method, ..
        }) => {
            // Server→client requests: only `ping` is answered until the relay exists.
            let reply = if method == "ping" {
                jsonrpc::result_response(rid, json!({}))
            } else {
                jsonrpc::error_response(
                    Some(rid),
                    jsonrpc::error_object(
                        code::METHOD_NOT_FOUND,
                        format!("{method} is not relayed by this gateway"),
                        None,
                    ),
                )
            };
            let _ = core.send_line(reply.to_string()).await;
        }
        Ok(Message::Notification { method, .. }) => {
            if method.ends_with("/list_changed") {
                let _ = events.send(UpstreamEvent::ListChanged {
                    upstream: id.clone(),
                });
            }
        }
        Err(e) => {
            tracing::warn!(upstream = %id, error = %e, "ignoring a line that is not JSON-RPC")
        }
    }
}

/// Negotiates the era of a fresh process.
async fn handshake(core: &Core, pref: EraPreference) -> Result<UpstreamInfo, UpstreamError> {
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
        .request("initialize", Some(mcp::initialize_params(&json!({}))))
        .await?
        .map_err(|error| UpstreamError::Handshake {
            detail: format!("initialize was rejected: {error}"),
        })?;
    let info = mcp::parse_initialize(&result)?;
    core.notify("notifications/initialized", None).await?;
    debug_assert_eq!(info.era, Era::Legacy);
    Ok(info)
}
