//! stdio upstreams: a child process speaking newline-delimited JSON-RPC on stdin/stdout, one
//! per upstream, multiplexed and restarted by [`super::mux`]. Its stderr goes to the log.

use std::process::Stdio;
use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, mpsc};
use tokio_util::codec::{FramedRead, LinesCodec};

use super::mux::{Connector, Core, Generation, IoTasks, dispatch};
use super::{UpstreamError, UpstreamEvent};
use crate::config::{Secret, UpstreamId};

/// Longest line (one JSON-RPC message) read from a child, bytes.
const MAX_LINE_BYTES: usize = 32 * 1024 * 1024;

/// Starts child processes of one configured command.
pub(super) struct StdioConnector {
    pub(super) id: UpstreamId,
    pub(super) command: String,
    pub(super) args: Vec<String>,
    pub(super) env: Vec<(String, Secret)>,
    pub(super) cwd: Option<std::path::PathBuf>,
}

impl Connector for StdioConnector {
    fn connect(
        &self,
        events: broadcast::Sender<UpstreamEvent>,
    ) -> BoxFuture<'static, Result<Generation, UpstreamError>> {
        let spawned = self.spawn_child();
        let id = self.id.clone();
        Box::pin(async move {
            let mut child = spawned?;
            let label = format!("pid {}", child.id().unwrap_or_default());
            let (core, io) = attach(&id, &mut child, events)?;
            let ended = Box::pin(async move {
                match child.wait().await {
                    Ok(status) => format!("the process exited ({status})"),
                    Err(e) => format!("waiting for the process failed: {e}"),
                }
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
/// multiplexer, and a task that logs stderr.
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
    let core = Core::new(lines_tx);
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
