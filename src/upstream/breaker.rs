//! The circuit breaker of one upstream (DESIGN.md §5.10).
//!
//! ```text
//!   closed ──(N failures in a row, or failure rate ≥ R over the window with ≥ M calls)──▶ open
//!   open ──(open_for elapsed)──▶ half-open: up to K probe calls let through
//!   half-open ──(a probe succeeds)──▶ closed        half-open ──(a probe fails)──▶ open
//! ```
//!
//! While open, clients' calls fail fast with the time until the next probe. The gateway's own
//! calls (the catalogue plane's refresh) are never refused: they are the probe that closes the
//! circuit when the upstream is back, or re-opens it for another `open_for` when it is not.
//! What counts as a failure is decided by the caller ([`Verdict`]): connect errors, timeouts,
//! HTTP 5xx, protocol garbage, a stdio child exiting — never a tool's `isError` or a JSON-RPC
//! error, which are answers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use tokio::time::Instant;

use super::window::Window;
use crate::config::BreakerConfig;

/// How a call ended, as the breaker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The upstream answered (a result or a JSON-RPC error).
    Success,
    /// The upstream could not answer: down, timed out, 5xx, garbage, process gone.
    Failure,
    /// Nothing learnt about the upstream (the client went away, a credential problem).
    Neutral,
}

/// The three states, with the values of `mcpgate_circuit_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Calls flow (0).
    Closed = 0,
    /// Probes flow (1).
    HalfOpen = 1,
    /// Calls are refused (2).
    Open = 2,
}

impl State {
    /// The name used in metrics and `/readyz`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half_open",
            Self::Open => "open",
        }
    }
}

/// Metric handles of one breaker, labels resolved once.
#[derive(Clone)]
pub struct BreakerMetrics {
    /// `mcpgate_circuit_state{upstream}`.
    pub state: IntGauge,
    /// `mcpgate_circuit_transitions_total{upstream,to}`, by [`State`] value.
    pub transitions: [IntCounter; 3],
}

/// One upstream's breaker.
pub struct Breaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
    metrics: BreakerMetrics,
}

struct Inner {
    phase: Phase,
    consecutive_failures: u32,
    window: Window,
    /// Half-open spells so far.
    epochs: u64,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed,
    Open {
        until: Instant,
    },
    /// `epoch` tells this half-open spell from earlier ones, whose probes must not free
    /// slots of this one.
    HalfOpen {
        probes: u32,
        epoch: u64,
    },
}

impl Phase {
    fn state(self) -> State {
        match self {
            Self::Closed => State::Closed,
            Self::Open { .. } => State::Open,
            Self::HalfOpen { .. } => State::HalfOpen,
        }
    }
}

/// Leave to make a call; settle it with how it ended. Dropped unsettled, it counts as
/// [`Verdict::Neutral`].
pub struct Ticket {
    breaker: Option<Arc<Breaker>>,
    probe: bool,
    /// The half-open spell whose probe slot this ticket holds.
    slot: Option<u64>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig, metrics: BreakerMetrics) -> Self {
        metrics.state.set(State::Closed as i64);
        Self {
            inner: Mutex::new(Inner {
                phase: Phase::Closed,
                consecutive_failures: 0,
                window: Window::new(config.window),
                epochs: 0,
            }),
            config,
            metrics,
        }
    }

    /// The state now (an open circuit whose time is up reads half-open).
    pub fn state(&self) -> State {
        let inner = self.lock();
        match inner.phase {
            Phase::Open { until } if Instant::now() >= until => State::HalfOpen,
            phase => phase.state(),
        }
    }

    /// Leave for a client's call, or for the gateway's own (`own`: never refused, and a probe
    /// while the circuit is not closed).
    ///
    /// # Errors
    /// How long until a call may be let through, while open or while half-open with every
    /// probe slot taken.
    pub fn admit(self: &Arc<Self>, own: bool) -> Result<Ticket, Duration> {
        let now = Instant::now();
        let mut inner = self.lock();
        if let Phase::Open { until } = inner.phase
            && now >= until
        {
            inner.epochs += 1;
            let epoch = inner.epochs;
            self.enter(&mut inner, Phase::HalfOpen { probes: 0, epoch });
        }
        let (probe, slot) = match &mut inner.phase {
            Phase::Closed => (false, None),
            Phase::Open { .. } if own => (true, None),
            Phase::Open { until } => return Err(*until - now),
            Phase::HalfOpen { probes, epoch } if *probes < self.config.half_open_calls.get() => {
                *probes += 1;
                (true, Some(*epoch))
            }
            Phase::HalfOpen { .. } if own => (true, None),
            // The probes in flight decide soon; a second is an honest guess.
            Phase::HalfOpen { .. } => return Err(Duration::from_secs(1)),
        };
        Ok(Ticket {
            breaker: Some(Arc::clone(self)),
            probe,
            slot,
        })
    }

    fn settle(&self, probe: bool, slot: Option<u64>, verdict: Verdict) {
        let now = Instant::now();
        let mut inner = self.lock();
        if let Phase::HalfOpen { probes, epoch } = &mut inner.phase
            && slot == Some(*epoch)
        {
            *probes = probes.saturating_sub(1);
        }
        match verdict {
            Verdict::Neutral => {}
            Verdict::Success => {
                inner.consecutive_failures = 0;
                inner.window.record(now, false);
                if probe && !matches!(inner.phase, Phase::Closed) {
                    inner.window = Window::new(self.config.window);
                    self.enter(&mut inner, Phase::Closed);
                }
            }
            Verdict::Failure => {
                inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
                inner.window.record(now, true);
                let trip = match inner.phase {
                    Phase::Closed => {
                        let (calls, failures) = inner.window.totals(now);
                        inner.consecutive_failures >= self.config.consecutive_failures.get()
                            || (calls >= self.config.min_calls.max(1)
                                && f64::from(failures)
                                    >= self.config.failure_rate * f64::from(calls))
                    }
                    // A failed probe re-opens at once.
                    Phase::HalfOpen { .. } | Phase::Open { .. } => probe,
                };
                if trip {
                    let until = now + self.config.open_for;
                    self.enter(&mut inner, Phase::Open { until });
                }
            }
        }
    }

    fn enter(&self, inner: &mut Inner, phase: Phase) {
        let (from, to) = (inner.phase.state(), phase.state());
        inner.phase = phase;
        if from != to {
            if to == State::Closed {
                inner.consecutive_failures = 0;
            }
            self.metrics.state.set(to as i64);
            self.metrics.transitions[to as usize].inc();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Ticket {
    /// Leave that no breaker watches (an upstream without one).
    pub fn unwatched() -> Self {
        Self {
            breaker: None,
            probe: false,
            slot: None,
        }
    }

    /// Records how the call ended.
    pub fn settle(mut self, verdict: Verdict) {
        if let Some(b) = self.breaker.take() {
            b.settle(self.probe, self.slot, verdict);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(b) = self.breaker.take() {
            b.settle(self.probe, self.slot, Verdict::Neutral);
        }
    }
}

#[cfg(test)]
mod tests;
