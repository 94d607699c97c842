//! Writes to the shared store (`limits.store: redis`, DESIGN.md §5.12) that the request path
//! must not wait for: a bounded queue and one writer task that sends what has queued up as one
//! pipeline. A write that finds the queue full ([`QUEUE`] writes or [`QUEUE_BYTES`]) is dropped
//! and logged (what it shares then stays on this replica); a store that fails is logged once,
//! and its recovery once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::RedisConfig;

/// Writes waiting for the writer at most.
pub const QUEUE: usize = 16_384;
/// Bytes of writes waiting for the writer at most (as their callers count them).
pub const QUEUE_BYTES: usize = 64 * 1024 * 1024;
/// Writes sent in one pipeline at most.
const BATCH: usize = 512;
/// How long connecting, or one pipeline, may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A queue of fire-and-forget writes; each item is a group of commands sent together.
#[derive(Clone)]
pub struct WriteQueue {
    tx: mpsc::Sender<(Vec<redis::Cmd>, usize)>,
    queued: Arc<AtomicUsize>,
    what: &'static str,
}

impl WriteQueue {
    /// Starts the writer of `what` (what is shared, for the logs) to the Redis of `redis`
    /// (connected lazily, reconnecting by itself).
    ///
    /// # Errors
    /// When the Redis URL cannot be used.
    pub fn start(redis: &RedisConfig, what: &'static str) -> Result<Self, redis::RedisError> {
        let connection = crate::redis_client::Store::open(redis)?.connection(TIMEOUT, TIMEOUT)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let queued = Arc::new(AtomicUsize::new(0));
        tokio::spawn(write(rx, connection, Arc::clone(&queued), what));
        Ok(Self { tx, queued, what })
    }

    /// Queues `commands` carrying about `bytes` of data (without waiting); drops them, logged,
    /// when the queue is full.
    pub fn push(&self, commands: Vec<redis::Cmd>, bytes: usize) {
        let fits = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q + bytes <= QUEUE_BYTES).then_some(q + bytes)
            })
            .is_ok();
        let sent = fits && self.tx.try_send((commands, bytes)).is_ok();
        if fits && !sent {
            self.queued.fetch_sub(bytes, Ordering::AcqRel);
        }
        if !sent {
            tracing::warn!(
                what = self.what,
                "the shared store is not keeping up; a write was kept on this replica only"
            );
        }
    }
}

/// The writer: pipelines queued writes until every queue handle is gone.
async fn write(
    mut rx: mpsc::Receiver<(Vec<redis::Cmd>, usize)>,
    mut connection: crate::redis_client::Connection,
    queued: Arc<AtomicUsize>,
    what: &'static str,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut failing = false;
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut pipe = redis::pipe();
        let mut bytes = 0;
        for (commands, size) in batch.drain(..) {
            bytes += size;
            for command in commands {
                pipe.add_command(command).ignore();
            }
        }
        // The pipeline holds the data now; its size is no longer the queue's.
        queued.fetch_sub(bytes, Ordering::AcqRel);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[tokio::test]
    async fn the_queue_is_bounded_in_bytes_and_gives_them_back() {
        // Nothing listens on port 1: writes fail, which the queue survives.
        let config = RedisConfig {
            url: Secret::new("redis://127.0.0.1:1".into()),
            timeout: Duration::from_millis(100),
            key_prefix: "test".into(),
            sentinels: Vec::new(),
        };
        let queue = WriteQueue::start(&config, "test writes").unwrap();
        queue.push(vec![redis::cmd("PING")], QUEUE_BYTES + 1);
        assert_eq!(queue.queued.load(Ordering::Acquire), 0, "too big: dropped");
        for _ in 0..3 {
            queue.push(vec![redis::cmd("PING")], QUEUE_BYTES / 2);
        }
        assert!(queue.queued.load(Ordering::Acquire) <= QUEUE_BYTES);
        for _ in 0..100 {
            if queue.queued.load(Ordering::Acquire) == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the writer never took the queued writes");
    }
}
