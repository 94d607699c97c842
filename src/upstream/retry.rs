//! Retries of idempotent requests (DESIGN.md §5.10): lists, `server/discover`, `ping` and
//! `resources/read`, never `tools/call` or anything else that may act. A request is retried
//! when it failed before the upstream could act on it or with a transient status (connect
//! error, connection closed, HTTP 502/503/504), within the call's own deadline, after a
//! jittered exponential backoff, and only while the upstream's retry budget allows: retries
//! stay a bounded share of recent requests, so a sick upstream sees at most that much extra
//! load instead of a retry storm.

use std::sync::Mutex;
use std::time::Duration;

use prometheus::IntCounterVec;
use rand::Rng;
use serde_json::Value;
use tokio::time::Instant;

use super::UpstreamError;
use super::window::Window;
use crate::backoff::Backoff;
use crate::config::RetryConfig;
use crate::telemetry::traffic::TrafficMetrics;

/// The window the budget is measured over.
const BUDGET_WINDOW: Duration = Duration::from_secs(10);
/// Retries allowed in a window whatever the traffic, so a quiet upstream can still be retried.
const MIN_RETRIES: u32 = 3;
/// First backoff ceiling; doubles per attempt.
const BASE_BACKOFF: Duration = Duration::from_millis(50);
/// Largest backoff ceiling.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Whether `method` is safe to send again.
pub fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "server/discover"
            | "ping"
            | "resources/read"
    )
}

/// Whether a failed attempt is worth another.
fn is_transient(error: &UpstreamError) -> bool {
    match error {
        UpstreamError::Unavailable { .. } | UpstreamError::Closed { .. } => true,
        UpstreamError::HttpStatus { status } => matches!(status, 502..=504),
        _ => false,
    }
}

/// One upstream's retry budget: requests and retries over the last ten seconds.
pub struct RetryBudget {
    config: RetryConfig,
    /// Events are requests; marked events are retries.
    window: Mutex<Window>,
    metric: IntCounterVec,
    upstream: String,
}

impl RetryBudget {
    /// The budget of upstream `upstream`.
    pub fn new(config: RetryConfig, metrics: &TrafficMetrics, upstream: &str) -> Self {
        Self {
            config,
            window: Mutex::new(Window::new(BUDGET_WINDOW)),
            metric: metrics.retries.clone(),
            upstream: upstream.to_string(),
        }
    }

    fn record(&self, retry: bool) {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        w.record(Instant::now(), retry);
    }

    /// Takes one retry from the budget, if it has one.
    fn withdraw(&self, method: &str) -> bool {
        let now = Instant::now();
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let (events, retries) = w.totals(now);
        let requests = events.saturating_sub(retries);
        let allowed = (self.config.budget * f64::from(requests)) as u32;
        if retries >= allowed.max(MIN_RETRIES) {
            return false;
        }
        w.record(now, true);
        drop(w);
        self.metric
            .with_label_values(&[self.upstream.as_str(), method])
            .inc();
        true
    }

    /// Runs `attempt` with `params`, and again after a transient failure while `method` is
    /// idempotent, attempts and budget remain, and `deadline` leaves room.
    ///
    /// # Errors
    /// The last attempt's error.
    pub async fn run<T, F, Fut>(
        &self,
        method: &str,
        deadline: Instant,
        mut params: Option<Value>,
        mut attempt: F,
    ) -> Result<T, UpstreamError>
    where
        F: FnMut(Option<Value>) -> Fut,
        Fut: std::future::Future<Output = Result<T, UpstreamError>>,
    {
        self.record(false);
        let idempotent = is_idempotent(method);
        let mut tries = 0;
        let mut backoff = Backoff::new(BASE_BACKOFF, MAX_BACKOFF);
        loop {
            let sent = if idempotent {
                params.clone()
            } else {
                params.take()
            };
            let error = match attempt(sent).await {
                Err(e) if idempotent && is_transient(&e) => e,
                other => return other,
            };
            let pause = full_jitter(backoff.next_delay());
            if tries >= self.config.attempts
                || Instant::now() + pause >= deadline
                || !self.withdraw(method)
            {
                return Err(error);
            }
            tries += 1;
            tokio::time::sleep(pause).await;
        }
    }
}

/// Full jitter: uniform in [0, `ceiling`].
fn full_jitter(ceiling: Duration) -> Duration {
    ceiling.mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn budget(attempts: u32, share: f64) -> RetryBudget {
        let registry = prometheus::Registry::new();
        let metrics = TrafficMetrics::register(&registry).unwrap();
        RetryBudget::new(
            RetryConfig {
                attempts,
                budget: share,
            },
            &metrics,
            "up",
        )
    }

    fn down() -> UpstreamError {
        UpstreamError::Unavailable {
            detail: "connection refused".into(),
        }
    }

    async fn run(
        b: &RetryBudget,
        method: &str,
        fails: u32,
        error: fn() -> UpstreamError,
    ) -> (Result<u32, UpstreamError>, u32) {
        let tries = AtomicU32::new(0);
        let deadline = Instant::now() + Duration::from_secs(30);
        let outcome = b
            .run(method, deadline, None, |_| {
                let n = tries.fetch_add(1, Ordering::SeqCst);
                async move { if n < fails { Err(error()) } else { Ok(n) } }
            })
            .await;
        (outcome, tries.load(Ordering::SeqCst))
    }

    #[tokio::test(start_paused = true)]
    async fn idempotent_requests_are_retried_within_attempts() {
        let b = budget(2, 1.0);
        let (outcome, tries) = run(&b, "tools/list", 2, down).await;
        assert_eq!((outcome.unwrap(), tries), (2, 3));
        let b = budget(2, 1.0);
        let (outcome, tries) = run(&b, "resources/read", 5, down).await;
        assert!(outcome.is_err());
        assert_eq!(tries, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_that_may_act_and_lasting_failures_are_never_retried() {
        let b = budget(2, 1.0);
        assert_eq!(run(&b, "tools/call", 1, down).await.1, 1);
        assert_eq!(run(&b, "prompts/get", 1, down).await.1, 1);
        let timeout = || UpstreamError::Timeout;
        assert_eq!(run(&b, "tools/list", 1, timeout).await.1, 1);
        let not_found = || UpstreamError::HttpStatus { status: 404 };
        assert_eq!(run(&b, "tools/list", 1, not_found).await.1, 1);
        let unavailable = || UpstreamError::HttpStatus { status: 503 };
        assert_eq!(run(&b, "ping", 1, unavailable).await.1, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_caps_retries_to_a_share_of_recent_requests() {
        let b = budget(1, 0.1);
        // 100 requests that succeed: room for 10 retries in the window.
        for _ in 0..100 {
            run(&b, "tools/list", 0, down).await.0.unwrap();
        }
        let mut retried = 0;
        for _ in 0..30 {
            retried += run(&b, "tools/list", 10, down).await.1 - 1;
        }
        // 130 requests → 13 retries allowed.
        assert_eq!(retried, 13);
        // Ten seconds later the window has moved on; the minimum is available again.
        tokio::time::advance(BUDGET_WINDOW).await;
        assert_eq!(run(&b, "tools/list", 10, down).await.1, 2);
    }
}
