//! Metrics of the audit log (DESIGN.md §5.8, §5.11).

use prometheus::{IntCounter, IntGauge, Opts, Registry};

/// Audit metric handles; cloning shares the same series.
#[derive(Clone)]
pub struct AuditMetrics {
    /// `mcpgate_audit_records_total`: records written to the sink.
    pub records: IntCounter,
    /// `mcpgate_audit_queue_depth`: records queued and places reserved by calls in flight.
    pub queue_depth: IntGauge,
    /// `mcpgate_audit_dropped_total`: records not written (only authentication failures
    /// under `when_full: fail_closed` with the queue full).
    pub dropped: IntCounter,
    /// `mcpgate_audit_refused_calls_total`: calls refused because the queue was full
    /// (`when_full: fail_closed`).
    pub refused_calls: IntCounter,
    /// `mcpgate_audit_write_errors_total`: failed writes and fsyncs (each retried).
    pub write_errors: IntCounter,
}

impl AuditMetrics {
    /// Creates the metrics and registers them in `registry`.
    ///
    /// # Errors
    /// When a name is already registered there.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str| -> prometheus::Result<_> {
            let c = IntCounter::with_opts(Opts::new(name, help))?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let queue_depth = IntGauge::with_opts(Opts::new(
            "mcpgate_audit_queue_depth",
            "Audit records queued, and places reserved by calls in flight",
        ))?;
        registry.register(Box::new(queue_depth.clone()))?;
        Ok(Self {
            records: counter(
                "mcpgate_audit_records_total",
                "Audit records written to the sink",
            )?,
            queue_depth,
            dropped: counter(
                "mcpgate_audit_dropped_total",
                "Audit records not written: authentication failures with the queue full under fail_closed",
            )?,
            refused_calls: counter(
                "mcpgate_audit_refused_calls_total",
                "Calls refused because the audit queue was full (when_full: fail_closed)",
            )?,
            write_errors: counter(
                "mcpgate_audit_write_errors_total",
                "Failed audit writes and fsyncs, each retried",
            )?,
        })
    }
}
