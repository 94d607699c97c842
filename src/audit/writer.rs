//! The one writer of the audit log: a thread of its own drains the queue in batches (resting
//! [`LINGER`] between them, so that under load records gather instead of waking it one by one),
//! seals each record into the chain and writes the batch with one call; what was written is made durable
//! (fsync) at least once a second, on every flush request and at the end. A failed write is
//! retried, whole, until it succeeds: the queue fills meanwhile and `when_full` applies — a
//! record is never dropped.

use std::time::Duration;

use tokio::sync::mpsc;

use super::Message;
use super::chain::Chain;
use super::sink::Sink;
use crate::backoff::Backoff;
use crate::telemetry::audit::AuditMetrics;

/// Most records sealed and written in one batch.
const BATCH: usize = 512;
/// Longest time written records wait for their fsync.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// After writing a batch, the writer rests this long before it takes the next: records queued
/// meanwhile wait for it instead of each waking the writer thread (a wake-up costs more CPU
/// than writing a record under load). Bounds how long a record sits in memory before it is
/// written, not its durability (fsync is once a second anyway); a flush request waits at most
/// this much longer.
const LINGER: Duration = Duration::from_millis(2);

/// Starts the writer thread; it ends when every sender is gone, after a last fsync.
///
/// # Errors
/// When the thread or its runtime cannot be started.
pub fn spawn(
    rx: mpsc::Receiver<Message>,
    sink: Box<dyn Sink>,
    chain: Chain,
    metrics: AuditMetrics,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    std::thread::Builder::new()
        .name("mcpgate-audit".into())
        .spawn(move || runtime.block_on(run(rx, sink, chain, metrics)))
}

async fn run(
    mut rx: mpsc::Receiver<Message>,
    mut sink: Box<dyn Sink>,
    mut chain: Chain,
    metrics: AuditMetrics,
) {
    let mut messages = Vec::with_capacity(BATCH);
    let mut batch = Vec::with_capacity(64 * 1024);
    let mut unsynced = false;
    loop {
        let received = tokio::select! {
            n = rx.recv_many(&mut messages, BATCH) => n,
            () = tokio::time::sleep(SYNC_EVERY), if unsynced => {
                unsynced = !sync(sink.as_mut(), &metrics);
                continue;
            }
        };
        if received == 0 {
            break;
        }
        batch.clear();
        let first_seq = chain.tail().seq + 1;
        let mut records = 0u64;
        let mut flushes = Vec::new();
        for message in messages.drain(..) {
            match message {
                Message::Record(record) => {
                    chain.seal(&record, &mut batch);
                    records += 1;
                }
                Message::Flush(done) => flushes.push(done),
            }
        }
        if records > 0 {
            write(sink.as_mut(), &batch, first_seq, &metrics).await;
            metrics.records.inc_by(records);
            metrics
                .queue_depth
                .sub(i64::try_from(records).unwrap_or(i64::MAX));
            unsynced = true;
        }
        if flushes.is_empty() && received < BATCH {
            tokio::time::sleep(LINGER).await;
        }
        if !flushes.is_empty() {
            unsynced = !sync(sink.as_mut(), &metrics);
            for done in flushes {
                let _ = done.send(());
            }
        }
    }
    sync(sink.as_mut(), &metrics);
}

/// Writes `batch`, retrying with backoff until it is written.
async fn write(sink: &mut dyn Sink, batch: &[u8], first_seq: u64, metrics: &AuditMetrics) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    while let Err(e) = sink.write(batch, first_seq) {
        metrics.write_errors.inc();
        let wait = backoff.next_delay();
        tracing::error!(error = %e, retry_in = ?wait, "cannot write audit records; calls wait (or are refused) until they are written");
        tokio::time::sleep(wait).await;
    }
}

/// Syncs the sink; `true` when done.
fn sync(sink: &mut dyn Sink, metrics: &AuditMetrics) -> bool {
    match sink.sync() {
        Ok(()) => true,
        Err(e) => {
            metrics.write_errors.inc();
            tracing::error!(error = %e, "cannot fsync the audit log");
            false
        }
    }
}
