//! Writes to the shared store (`limits.store: redis`, DESIGN.md §5.12) that the request path
//! must not wait for: a bounded queue and one writer task that sends what has queued up as one
//! pipeline. A write that finds the queue full is dropped and logged (what it shares then stays
//! on this replica); a store that fails is logged once, and its recovery once.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::RedisConfig;

/// Writes waiting for the writer at most.
const QUEUE: usize = 16_384;
/// Writes sent in one pipeline at most.
const BATCH: usize = 512;
/// How long connecting, or one pipeline, may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A queue of fire-and-forget writes; each item is a group of commands sent together.
#[derive(Clone)]
pub struct WriteQueue {
    tx: mpsc::Sender<Vec<redis::Cmd>>,
    what: &'static str,
}

impl WriteQueue {
    /// Starts the writer of `what` (what is shared, for the logs) to the Redis of `redis`
    /// (connected lazily, reconnecting by itself).
    ///
    /// # Errors
    /// When the Redis URL cannot be used.
    pub fn start(redis: &RedisConfig, what: &'static str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(redis.url.expose())?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        let connection = redis::aio::ConnectionManager::new_lazy_with_config(client, config)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write(rx, connection, what));
        Ok(Self { tx, what })
    }

    /// Queues `commands` (without waiting); drops them, logged, when the queue is full.
    pub fn push(&self, commands: Vec<redis::Cmd>) {
        if self.tx.try_send(commands).is_err() {
            tracing::warn!(
                what = self.what,
                "the shared store is not keeping up; a write was kept on this replica only"
            );
        }
    }
}

/// The writer: pipelines queued writes until every queue handle is gone.
async fn write(
    mut rx: mpsc::Receiver<Vec<redis::Cmd>>,
    mut connection: redis::aio::ConnectionManager,
    what: &'static str,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut failing = false;
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for command in batch.drain(..).flatten() {
            pipe.add_command(command).ignore();
        }
        match pipe.query_async::<()>(&mut connection).await {
            Ok(()) if failing => {
                tracing::info!(what, "the shared store takes writes again");
                failing = false;
            }
            Ok(()) => {}
            Err(error) if !failing => {
                tracing::error!(%error, what, "cannot write to the shared store; this replica keeps what it shares to itself meanwhile");
                failing = true;
            }
            Err(_) => {}
        }
    }
}
