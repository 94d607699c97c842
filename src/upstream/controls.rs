//! What stands between a call and one upstream (DESIGN.md §5.10): the bulkhead
//! (`max_concurrency`), the circuit breaker ([`super::breaker`]), the whole-call timeout of the
//! upstream or of the tool, and the retry budget of idempotent requests ([`super::retry`]).
//!
//! A client's call takes a [`Lease`] ([`Controls::bulkhead`] then [`Controls::breaker`]) and
//! settles it with its outcome when it ends; dropping the lease unsettled (the client went away)
//! frees its slot and tells the breaker nothing.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::breaker::{Breaker, Ticket, Verdict};
use super::retry::RetryBudget;
use super::{Reply, UpstreamError};
use crate::config::{ToolMatch, UpstreamTraffic};
use crate::telemetry::traffic::TrafficMetrics;

/// One upstream's controls.
pub struct Controls {
    /// The configuration they enforce.
    pub traffic: UpstreamTraffic,
    timeout: Duration,
    breaker: Option<Arc<Breaker>>,
    bulkhead: Option<Arc<Semaphore>>,
    pub(super) retries: RetryBudget,
    inflight: IntGauge,
    bulkhead_rejected: IntCounter,
    timeouts: IntCounter,
}

/// A bulkhead slot, held while the call is in flight.
pub struct Slot {
    _permit: Option<OwnedSemaphorePermit>,
    inflight: IntGauge,
}

/// Leave for one call: its bulkhead slot and its breaker ticket.
pub struct Lease {
    _slot: Option<Slot>,
    ticket: Ticket,
    timeouts: IntCounter,
}

impl Controls {
    /// The controls of upstream `id` with whole-call `timeout`.
    pub fn new(
        id: &str,
        timeout: Duration,
        traffic: UpstreamTraffic,
        metrics: &TrafficMetrics,
    ) -> Self {
        Self {
            breaker: traffic
                .circuit_breaker
                .clone()
                .map(|c| Arc::new(Breaker::new(c, metrics.breaker(id)))),
            bulkhead: traffic
                .max_concurrency
                .map(|n| Arc::new(Semaphore::new(n.get() as usize))),
            retries: RetryBudget::new(traffic.retries.clone(), metrics, id),
            inflight: metrics.upstream_inflight.with_label_values(&[id]),
            bulkhead_rejected: metrics.bulkhead_rejected.with_label_values(&[id]),
            timeouts: metrics.timeouts.with_label_values(&[id]),
            timeout,
            traffic,
        }
    }

    /// The whole-call timeout of a call, of `tool` when given: its `tools:` entry's, else the
    /// upstream's.
    pub fn timeout(&self, tool: Option<ToolMatch<'_>>) -> Duration {
        self.traffic.tool_timeout(tool).unwrap_or(self.timeout)
    }

    /// The bulkhead: a slot for one more call in flight.
    ///
    /// # Errors
    /// [`UpstreamError::Overloaded`] when `max_concurrency` calls are in flight; the call is
    /// refused at once, never queued.
    pub fn bulkhead(&self) -> Result<Slot, UpstreamError> {
        let permit = match &self.bulkhead {
            None => None,
            Some(s) => match Arc::clone(s).try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    self.bulkhead_rejected.inc();
                    return Err(UpstreamError::Overloaded);
                }
            },
        };
        self.inflight.inc();
        Ok(Slot {
            _permit: permit,
            inflight: self.inflight.clone(),
        })
    }

    /// The breaker: leave for a call holding bulkhead `slot`, `own` for the gateway's own
    /// calls (never refused; they probe an open circuit).
    ///
    /// # Errors
    /// [`UpstreamError::CircuitOpen`] with the time until the next probe.
    pub fn breaker(&self, own: bool, slot: Option<Slot>) -> Result<Lease, UpstreamError> {
        let ticket = match &self.breaker {
            None => Ticket::unwatched(),
            Some(b) => b
                .admit(own)
                .map_err(|retry_after| UpstreamError::CircuitOpen { retry_after })?,
        };
        Ok(Lease {
            _slot: slot,
            ticket,
            timeouts: self.timeouts.clone(),
        })
    }

    /// Client calls in flight now.
    pub fn inflight(&self) -> i64 {
        self.inflight.get()
    }

    /// The breaker's state, if the upstream has one.
    pub fn circuit(&self) -> Option<super::breaker::State> {
        self.breaker.as_ref().map(|b| b.state())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.inflight.dec();
    }
}

impl Lease {
    /// Ends the call with `outcome`: tells the breaker and counts a timeout.
    pub fn settle(self, outcome: Result<&Reply, &UpstreamError>) {
        let verdict = match outcome {
            Ok(_) => Verdict::Success,
            Err(e) => {
                if matches!(e, UpstreamError::Timeout) {
                    self.timeouts.inc();
                }
                e.verdict()
            }
        };
        self.ticket.settle(verdict);
    }
}
