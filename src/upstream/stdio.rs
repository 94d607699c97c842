//! stdio upstreams: a child process speaking newline-delimited JSON-RPC on stdin/stdout, one
//! per upstream, multiplexed and restarted by [`super::mux`]. Its stderr goes to the log,
//! drained whatever it holds. A process whose stdout cannot be read (closed, a line over
//! [`MAX_LINE_BYTES`], a line that is not UTF-8) is killed and replaced; calls in flight on it
//! fail with a gateway error.

use std::process::Stdio;
use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::codec::{FramedRead, LinesCodec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::mux::{Connector, Core, Generation, IoTasks, dispatch};
use super::{UpstreamError, UpstreamEvent};
use crate::config::{Secret, UpstreamId};

/// Longest line (one JSON-RPC message) read from a child, bytes.
const MAX_LINE_BYTES: usize = 32 * 1024 * 1024;

/// How long a child has to exit after SIGTERM (shutdown, or its upstream removed) before it is
/// killed.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The stdio children of an upstream set, for shutdown: [`Children::stop`] sends each SIGTERM,
/// kills those still running [`STOP_GRACE`] later, and starts no new one. Clones share.
#[derive(Clone, Default)]
pub struct Children {
    stopping: CancellationToken,
    running: TaskTracker,
}

impl Children {
    /// Stops every child (SIGTERM, then SIGKILL after [`STOP_GRACE`]) and waits until all
    /// have exited.
    pub async fn stop(&self) {
        self.stopping.cancel();
        self.running.close();
        let bound = STOP_GRACE + std::time::Duration::from_secs(1);
        if tokio::time::timeout(bound, self.running.wait())
            .await
            .is_err()
        {
            tracing::warn!("stdio upstream processes were still running at shutdown");
        }
    }

    /// Whether stopping has begun (for the whole set, or for this upstream).
    pub fn stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// The children of one upstream: stopped with the whole set, or alone by
    /// [`Children::cancel`] (the upstream was removed by a configuration reload).
    pub fn for_upstream(&self) -> Self {
        Self {
            stopping: self.stopping.child_token(),
            running: self.running.clone(),
        }
    }

    /// Stops this upstream's process (SIGTERM, then SIGKILL after [`STOP_GRACE`]) without
    /// waiting, and starts no new one.
    pub fn cancel(&self) {
        self.stopping.cancel();
    }
}

/// Starts child processes of one configured command.
pub(super) struct StdioConnector {
    pub(super) id: UpstreamId,
    pub(super) command: String,
    pub(super) args: Vec<String>,
    pub(super) env: Vec<(String, Secret)>,
    pub(super) cwd: Option<std::path::PathBuf>,
    pub(super) children: Children,
}

impl Connector for StdioConnector {
    fn stopped(&self) -> bool {
        self.children.stopping()
    }

    fn connect(
        &self,
        events: broadcast::Sender<UpstreamEvent>,
    ) -> BoxFuture<'static, Result<Generation, UpstreamError>> {
        let spawned = if self.children.stopping() {
            Err(UpstreamError::Unavailable {
                detail: "the gateway is shutting down".into(),
            })
        } else {
            self.spawn_child()
        };
        let id = self.id.clone();
        let stopping = self.children.stopping.clone();
        // Held by the generation while its process may run: stop() waits for every one.
        let alive = self.children.running.token();
        Box::pin(async move {
            let mut child = spawned?;
            let label = format!("pid {}", child.id().unwrap_or_default());
            let (core, io, reader_ended) = attach(&id, &mut child, events)?;
            // The generation ends when the process exits or its stdout can no longer be read
            // (closed, an oversized or non-UTF-8 line): a process whose answers cannot be
            // read is killed, and the supervisor starts a new one.
            let ended = Box::pin(async move {
                let how = tokio::select! {
                    status = child.wait() => match status {
                        Ok(status) => format!("the process exited ({status})"),
                        Err(e) => format!("waiting for the process failed: {e}"),
                    },
                    why = reader_ended => {
                        let why = why.unwrap_or_else(|_| "the stdout reader stopped".into());
                        let _ = child.start_kill();
                        let _ = child.wait().await;
                        format!("{why}; the process was killed")
                    }
                    () = stopping.cancelled() => terminate(&mut child).await,
                };
                drop(alive);
                how
            });
            Ok(Generation {
                core,
                io,
                ended,
                label,
            })
        })
    }
}

/// Asks `child` to exit (SIGTERM), kills it if it has not within [`STOP_GRACE`]; says how
/// it ended.
async fn terminate(child: &mut Child) -> String {
    let pid = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        // The child is not reaped before wait() returns, so the pid is still its own.
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(status) => format!(
            "stopped at shutdown ({})",
            status.map_or_else(|e| e.to_string(), |s| s.to_string())
        ),
        Err(_) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            format!("killed at shutdown: still running {STOP_GRACE:?} after SIGTERM")
        }
    }
}

impl StdioConnector {
    fn spawn_child(&self) -> Result<Child, UpstreamError> {
        let mut cmd = Command::new(&self.command);
        cmd.args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v.expose());
        }
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        cmd.spawn().map_err(|e| UpstreamError::Unavailable {
            detail: format!("cannot start {:?}: {e}", self.command).into(),
        })
    }
}

/// Wires the child's pipes: a writer task, a reader task that routes messages through the
/// multiplexer and reports on the returned channel why it stopped, and a task that drains
/// stderr into the log.
fn attach(
    id: &UpstreamId,
    child: &mut Child,
    events: broadcast::Sender<UpstreamEvent>,
) -> Result<(Arc<Core>, IoTasks, oneshot::Receiver<String>), UpstreamError> {
    let missing = || UpstreamError::Unavailable {
        detail: "child pipes unavailable".into(),
    };
    let mut stdin = child.stdin.take().ok_or_else(missing)?;
    let stdout = child.stdout.take().ok_or_else(missing)?;
    let stderr = child.stderr.take().ok_or_else(missing)?;
    let (lines_tx, mut lines_rx) = mpsc::channel::<String>(256);
    let core = Core::new(lines_tx);
    let writer = tokio::spawn(async move {
        while let Some(mut line) = lines_rx.recv().await {
            line.push('\n');
            if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
                break;
            }
        }
    });
    let (ended_tx, ended_rx) = oneshot::channel();
    let reader = {
        let core = Arc::clone(&core);
        let id = id.clone();
        tokio::spawn(async move {
            let mut lines =
                FramedRead::new(stdout, LinesCodec::new_with_max_length(MAX_LINE_BYTES));
            let why = loop {
                match lines.next().await {
                    Some(Ok(line)) => dispatch(&id, &core, &events, &line).await,
                    Some(Err(e)) => {
                        tracing::warn!(upstream = %id, error = %e, "unreadable output from stdio upstream; restarting it");
                        break format!("unreadable output: {e}");
                    }
                    None => break "the process closed its stdout".to_string(),
                }
            };
            core.fail_all();
            let _ = ended_tx.send(why);
        })
    };
    let logger = tokio::spawn(drain_stderr(id.clone(), stderr));
    Ok((core, IoTasks(vec![writer, reader, logger]), ended_rx))
}

/// Longest stderr line logged, bytes; the rest of a longer line is counted, not kept.
const MAX_STDERR_LINE: usize = 64 * 1024;

/// Reads the child's stderr to its end whatever it holds, so the child never blocks on a full
/// pipe: lines are decoded lossily (invalid UTF-8 becomes U+FFFD) and logged, a line longer
/// than [`MAX_STDERR_LINE`] truncated (with the number of bytes left out).
async fn drain_stderr(id: UpstreamId, stderr: impl AsyncRead + Unpin) {
    let mut reader = BufReader::with_capacity(MAX_STDERR_LINE, stderr);
    let mut line: Vec<u8> = Vec::new();
    let mut left_out = 0usize;
    let log = |line: &[u8], left_out: usize| {
        let text = String::from_utf8_lossy(line);
        if left_out > 0 {
            tracing::debug!(upstream = %id, "stderr: {text}… ({left_out} more bytes left out)");
        } else {
            tracing::debug!(upstream = %id, "stderr: {text}");
        }
    };
    loop {
        let buf = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(buf) => buf,
        };
        let newline = buf.iter().position(|b| *b == b'\n');
        let chunk = &buf[..newline.unwrap_or(buf.len())];
        let take = chunk.len().min(MAX_STDERR_LINE - line.len());
        line.extend_from_slice(&chunk[..take]);
        left_out += chunk.len() - take;
        let consumed = chunk.len() + usize::from(newline.is_some());
        reader.consume(consumed);
        if newline.is_some() {
            log(&line, left_out);
            line.clear();
            left_out = 0;
        }
    }
    if !line.is_empty() || left_out > 0 {
        log(&line, left_out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stderr_is_drained_whatever_it_holds() {
        let mut input = Vec::new();
        input.extend_from_slice(b"plain\n");
        input.extend(std::iter::repeat_n(0xffu8, 3 * MAX_STDERR_LINE));
        input.extend_from_slice(b"\nafter\n");
        input.extend(std::iter::repeat_n(b'x', 10));
        let reader = std::io::Cursor::new(input);
        let id = UpstreamId::parse("t").unwrap();
        // Returns (reads to the end) on input a line reader would have stopped at.
        tokio::time::timeout(std::time::Duration::from_secs(5), drain_stderr(id, reader))
            .await
            .expect("drained to the end");
    }
}
