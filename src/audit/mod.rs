//! The audit log (DESIGN.md §5.11): one JSON line per call whatever its outcome, per
//! authentication failure, and per policy set or configuration that takes effect, sealed into
//! a tamper-evident hash chain ([`chain`]) and written by one writer thread to a file or
//! standard output ([`sink`]). Schema and fields: `docs/audit.md`, `docs/audit.schema.json`.
//!
//! Delivery never drops a record silently. Every call reserves its place in the bounded queue
//! before it is forwarded ([`Auditor::slot`]), so the record of a call that went ahead always
//! has room; when the queue is full, `when_full` decides: `block` waits for room (backpressure),
//! `fail_closed` refuses the call with a gateway error. Records of other events wait for room;
//! only an authentication failure under `fail_closed` with the queue full is not recorded, and
//! is counted in `mcpgate_audit_dropped_total` and logged (the request is refused either way).

pub mod arguments;
pub mod chain;
pub mod record;
pub mod sink;
pub mod verify;
mod writer;

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::config::{ArgumentsConfig, AuditConfig, AuditSink, WhenFull};
use crate::telemetry::audit::AuditMetrics;

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    base16ct::lower::encode_string(&Sha256::digest(bytes))
}

/// What the queue carries to the writer.
pub(crate) enum Message {
    /// An encoded record ([`record::encode`]), to seal and write.
    Record(Vec<u8>),
    /// Answered once everything queued before it is written and fsynced.
    Flush(oneshot::Sender<()>),
}

/// Why the audit log could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the audit log: {0}")]
pub struct StartError(#[from] std::io::Error);

/// The call was refused: the audit queue is full (`when_full: fail_closed`), or the writer
/// has stopped.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the audit log is not keeping up")]
pub struct QueueFull;

/// The audit log's handle; cloning shares it. [`Auditor::disabled`] records nothing.
#[derive(Clone)]
pub struct Auditor {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    tx: mpsc::Sender<Message>,
    when_full: WhenFull,
    arguments: ArgumentsConfig,
    metrics: AuditMetrics,
}

impl Auditor {
    /// No audit log.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Opens the sink of `config` (finding where its chain stands) and starts the writer.
    ///
    /// # Errors
    /// [`StartError`] when the audit file cannot be opened or its last record read.
    pub fn start(config: &AuditConfig, metrics: AuditMetrics) -> Result<Self, StartError> {
        let (sink, tail): (Box<dyn sink::Sink>, chain::Tail) = match &config.sink {
            AuditSink::File {
                path,
                max_bytes,
                max_age,
            } => {
                let (sink, tail) = sink::FileSink::open(path, *max_bytes, *max_age)?;
                (Box::new(sink), tail)
            }
            AuditSink::Stdout => (Box::new(sink::Stdout), chain::Tail::START),
        };
        tracing::info!(
            seq = tail.seq + 1,
            "audit log: the chain continues at this seq"
        );
        let chain = chain::Chain::new(config.key.as_ref().map(|k| k.0), tail);
        let (tx, rx) = mpsc::channel(config.queue);
        writer::spawn(rx, sink, chain, metrics.clone())?;
        Ok(Self {
            inner: Some(Arc::new(Inner {
                tx,
                when_full: config.when_full,
                arguments: config.arguments.clone(),
                metrics,
            })),
        })
    }

    /// Whether records are kept.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Which arguments are recorded, when records are kept.
    pub fn arguments(&self) -> Option<&ArgumentsConfig> {
        self.inner.as_ref().map(|i| &i.arguments)
    }

    /// A place in the queue for the record of a call about to go ahead (`None` when records
    /// are not kept). Waits for room under `when_full: block`.
    ///
    /// # Errors
    /// [`QueueFull`] under `when_full: fail_closed` when the queue is full (counted).
    pub async fn slot(&self) -> Result<Option<Slot>, QueueFull> {
        let Some(inner) = &self.inner else {
            return Ok(None);
        };
        let permit = match inner.when_full {
            WhenFull::Block => inner.tx.clone().reserve_owned().await.ok(),
            WhenFull::FailClosed => inner.tx.clone().try_reserve_owned().ok(),
        };
        let Some(permit) = permit else {
            // Full under fail_closed, or the writer is gone (whatever the mode: a call is
            // never made without its record).
            inner.metrics.refused_calls.inc();
            if inner.tx.is_closed() {
                tracing::error!("the audit writer has stopped; calls are refused");
            }
            return Err(QueueFull);
        };
        inner.metrics.queue_depth.inc();
        Ok(Some(Slot {
            permit: Some(permit),
            depth: inner.metrics.queue_depth.clone(),
        }))
    }

    /// Queues the record of an event other than a call (waits for room).
    pub async fn record(&self, record: Vec<u8>) {
        if let Some(inner) = &self.inner {
            inner.metrics.queue_depth.inc();
            if inner.tx.send(Message::Record(record)).await.is_err() {
                inner.metrics.queue_depth.dec();
                inner.metrics.dropped.inc();
                tracing::error!("the audit writer has stopped; a record was not written");
            }
        }
    }

    /// Queues the record of an authentication failure: waits for room under `block`; under
    /// `fail_closed` with the queue full it is counted as dropped and logged instead (the
    /// request is refused whatever happens to its record).
    pub async fn record_auth_failure(&self, record: Vec<u8>) {
        let Some(inner) = &self.inner else { return };
        if inner.when_full == WhenFull::Block {
            return self.record(record).await;
        }
        match inner.tx.try_send(Message::Record(record)) {
            Ok(()) => inner.metrics.queue_depth.inc(),
            Err(mpsc::error::TrySendError::Full(_)) => {
                inner.metrics.dropped.inc();
                tracing::error!("audit queue full: an authentication failure was not recorded");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                inner.metrics.dropped.inc();
                tracing::error!("the audit writer has stopped; a record was not written");
            }
        }
    }

    /// Waits until every record queued so far is written and fsynced.
    pub async fn flush(&self) {
        if let Some(inner) = &self.inner {
            let (done, written) = oneshot::channel();
            if inner.tx.send(Message::Flush(done)).await.is_ok() {
                let _ = written.await;
            }
        }
    }
}

/// A reserved place in the audit queue for one call's record.
pub struct Slot {
    permit: Option<mpsc::OwnedPermit<Message>>,
    depth: prometheus::IntGauge,
}

impl Slot {
    /// Queues the call's record in its place (never waits).
    pub fn send(mut self, record: Vec<u8>) {
        if let Some(permit) = self.permit.take() {
            permit.send(Message::Record(record));
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.permit.is_some() {
            self.depth.dec();
        }
    }
}
