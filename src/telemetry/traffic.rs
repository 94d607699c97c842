//! Metrics of per-call traffic control (DESIGN.md §5.10): rate limits, circuit breakers,
//! bulkheads, timeouts, retries. Labels: `limit` from [`crate::limits::LimitKind`], `upstream`
//! ids from the configuration, `to` from the three breaker states, `method` from the fixed set
//! of retryable methods.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::upstream::breaker::{BreakerMetrics, State};

/// Traffic-control metric handles; cloning shares the same series.
#[derive(Clone)]
pub struct TrafficMetrics {
    /// `mcpgate_rate_limited_total{limit}`: calls refused by a rate limit, by the limit named.
    pub rate_limited: IntCounterVec,
    /// `mcpgate_circuit_state{upstream}`: 0 closed, 1 half-open, 2 open.
    pub circuit_state: IntGaugeVec,
    /// `mcpgate_circuit_transitions_total{upstream,to}`: breaker state changes.
    pub circuit_transitions: IntCounterVec,
    /// `mcpgate_upstream_inflight{upstream}`: client calls in flight at the upstream.
    pub upstream_inflight: IntGaugeVec,
    /// `mcpgate_bulkhead_rejected_total{upstream}`: calls refused by `max_concurrency`.
    pub bulkhead_rejected: IntCounterVec,
    /// `mcpgate_timeouts_total{upstream}`: calls that ran out of time (and were cancelled).
    pub timeouts: IntCounterVec,
    /// `mcpgate_retries_total{upstream,method}`: retries of idempotent requests.
    pub retries: IntCounterVec,
    /// `mcpgate_rate_limit_store_errors_total{outcome}`: calls whose limits could not be
    /// checked because the shared store did not answer, by what happened to the call
    /// (`admitted`, `refused`).
    pub limit_store_errors: IntCounterVec,
}

impl TrafficMetrics {
    /// Creates the metrics and registers them in `registry`.
    ///
    /// # Errors
    /// When a name is already registered there.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<_> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<_> {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(Self {
            rate_limited: counter(
                "mcpgate_rate_limited_total",
                "Calls refused by a rate limit, by the limit that refused",
                &["limit"],
            )?,
            circuit_state: gauge(
                "mcpgate_circuit_state",
                "Circuit breaker state: 0 closed, 1 half-open, 2 open",
                &["upstream"],
            )?,
            circuit_transitions: counter(
                "mcpgate_circuit_transitions_total",
                "Circuit breaker state changes, by the state entered",
                &["upstream", "to"],
            )?,
            upstream_inflight: gauge(
                "mcpgate_upstream_inflight",
                "Client calls in flight at the upstream",
                &["upstream"],
            )?,
            bulkhead_rejected: counter(
                "mcpgate_bulkhead_rejected_total",
                "Calls refused because the upstream's max_concurrency was reached",
                &["upstream"],
            )?,
            timeouts: counter(
                "mcpgate_timeouts_total",
                "Calls that ran out of time and were cancelled at the upstream",
                &["upstream"],
            )?,
            retries: counter(
                "mcpgate_retries_total",
                "Retries of idempotent requests, by method",
                &["upstream", "method"],
            )?,
            limit_store_errors: {
                let c = counter(
                    "mcpgate_rate_limit_store_errors_total",
                    "Calls whose rate limits could not be checked because the shared store did not answer, by outcome",
                    &["outcome"],
                )?;
                for outcome in ["admitted", "refused"] {
                    c.with_label_values(&[outcome]);
                }
                c
            },
        })
    }

    /// Removes the series of an upstream that a configuration reload removed (its gauges
    /// would otherwise report a state that no longer exists). Its `retries` series, labelled
    /// by method as well, stay until the process restarts.
    pub fn forget(&self, upstream: &str) {
        let _ = self.circuit_state.remove_label_values(&[upstream]);
        for s in [State::Closed, State::HalfOpen, State::Open] {
            let _ = self
                .circuit_transitions
                .remove_label_values(&[upstream, s.as_str()]);
        }
        let _ = self.upstream_inflight.remove_label_values(&[upstream]);
        let _ = self.bulkhead_rejected.remove_label_values(&[upstream]);
        let _ = self.timeouts.remove_label_values(&[upstream]);
    }

    /// The breaker metric handles of `upstream`.
    pub fn breaker(&self, upstream: &str) -> BreakerMetrics {
        let to = |s: State| {
            self.circuit_transitions
                .with_label_values(&[upstream, s.as_str()])
        };
        BreakerMetrics {
            state: self.circuit_state.with_label_values(&[upstream]),
            transitions: [to(State::Closed), to(State::HalfOpen), to(State::Open)],
        }
    }
}
