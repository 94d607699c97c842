//! Exponential backoff, the one schedule of every retry loop in the gateway (stdio restarts,
//! upstream standalone streams and `subscriptions/listen`, health checks of a failing upstream,
//! retries of idempotent requests, Redis subscriptions): `min`, doubling after each failure, never above `max`.

use std::ops::ControlFlow;
use std::time::Duration;

/// A backoff schedule and where it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A schedule starting at `min` (at most `max`), doubling up to `max`.
    pub const fn new(min: Duration, max: Duration) -> Self {
        let min = if min.as_nanos() > max.as_nanos() {
            max
        } else {
            min
        };
        Self {
            min,
            max,
            next: min,
        }
    }

    /// The wait before the next attempt; the one after it is twice as long, up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    /// Back to `min` (after a success, or an attempt that lasted).
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Runs `listen` again and again (a subscription that lasts until its connection ends),
/// waiting between attempts by a 200 ms–10 s schedule reset by every attempt that succeeded,
/// until an attempt says [`ControlFlow::Break`]. The first failure of a run of failures is
/// logged as an error with `failing` (what goes unheard meanwhile), later ones are not.
pub async fn keep_listening<F, Fut, E>(mut listen: F, failing: &str)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<ControlFlow<()>, E>>,
    E: std::fmt::Display,
{
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut cut_off = false;
    loop {
        match listen().await {
            Ok(ControlFlow::Break(())) => return,
            Ok(ControlFlow::Continue(())) => {
                backoff.reset();
                cut_off = false;
            }
            Err(error) => {
                if !cut_off {
                    tracing::error!(%error, "{failing}");
                }
                cut_off = true;
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(250), ms(1000));
        let seen: Vec<_> = (0..4).map(|_| b.next_delay()).collect();
        assert_eq!(seen, [ms(250), ms(500), ms(1000), ms(1000)]);
        b.reset();
        assert_eq!(b.next_delay(), ms(250));
        // A minimum above the cap is the cap.
        assert_eq!(Backoff::new(ms(1000), ms(200)).next_delay(), ms(200));
    }
}
