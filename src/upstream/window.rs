//! Events and the marked share of them (failures, retries) over a rolling window: ten buckets
//! that age out one by one, so the counts cover between 90% and 100% of the window.

use std::time::Duration;

use tokio::time::Instant;

const BUCKETS: usize = 10;

/// Rolling counts over one window.
#[derive(Debug)]
pub(super) struct Window {
    bucket: Duration,
    origin: Instant,
    /// (bucket number, events, marked events); `u64::MAX` for a bucket never used.
    buckets: [(u64, u32, u32); BUCKETS],
}

impl Window {
    /// Empty counts over `window`.
    pub(super) fn new(window: Duration) -> Self {
        Self {
            bucket: (window / BUCKETS as u32).max(Duration::from_millis(1)),
            origin: Instant::now(),
            buckets: [(u64::MAX, 0, 0); BUCKETS],
        }
    }

    fn number(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(elapsed / self.bucket.as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// Counts one event at `now`, `marked` or not.
    pub(super) fn record(&mut self, now: Instant, marked: bool) {
        let n = self.number(now);
        let slot = &mut self.buckets[(n % BUCKETS as u64) as usize];
        if slot.0 != n {
            *slot = (n, 0, 0);
        }
        slot.1 = slot.1.saturating_add(1);
        slot.2 = slot.2.saturating_add(u32::from(marked));
    }

    /// (events, marked events) still inside the window at `now`.
    pub(super) fn totals(&self, now: Instant) -> (u32, u32) {
        let n = self.number(now);
        self.buckets
            .iter()
            .filter(|(b, _, _)| *b != u64::MAX && n.saturating_sub(*b) < BUCKETS as u64)
            .fold((0, 0), |(c, m), (_, events, marked)| {
                (c.saturating_add(*events), m.saturating_add(*marked))
            })
    }
}
