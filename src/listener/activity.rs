//! What a connection is doing, for the idle timeout: requests in flight (a response counts
//! until its body is sent or dropped) and since when it has been idle; and the connections that
//! have not started a request yet, the first to go when the listener is full ([`Unstarted`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

/// One connection's activity. Cloning the `Arc` shares it.
pub(super) struct Activity {
    in_flight: AtomicUsize,
    /// When the connection last became idle (accepted, or its last response ended), and
    /// whether it has served a request yet.
    idle: std::sync::Mutex<(Instant, bool)>,
    changed: Notify,
    /// Cancelled to close the connection at once (evicted before its first request).
    evicted: tokio_util::sync::CancellationToken,
}

impl Activity {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            idle: std::sync::Mutex::new((Instant::now(), false)),
            changed: Notify::new(),
            evicted: tokio_util::sync::CancellationToken::new(),
        })
    }

    /// Whether the connection has started a request.
    fn started(&self) -> bool {
        self.lock().1
    }

    /// How long ago the connection was accepted, if it has not started a request.
    fn unstarted_for(&self) -> Option<Duration> {
        let (since, started) = *self.lock();
        (!started).then(|| since.elapsed())
    }

    /// Resolves when the connection is evicted.
    pub(super) async fn evicted(&self) {
        self.evicted.cancelled().await;
    }

    /// A request started; the guard ends it.
    pub(super) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.lock().1 = true;
        self.changed.notify_waiters();
        InFlight(Arc::clone(self))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Instant, bool)> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves once the connection has had no request in flight for `idle_timeout`, or, before
    /// its first request, for `first_request_timeout` since it was accepted (a client that
    /// connects and sends nothing, or too little to start a request).
    pub(super) async fn idle_for(&self, first_request_timeout: Duration, idle_timeout: Duration) {
        loop {
            let changed = self.changed.notified();
            if self.in_flight.load(Ordering::Acquire) > 0 {
                changed.await;
                continue;
            }
            let (since, served) = *self.lock();
            let deadline = since
                + if served {
                    idle_timeout
                } else {
                    first_request_timeout
                };
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = changed => {}
            }
        }
    }
}

/// Connections that have not started a request yet, oldest first: when the listener is full, a
/// new connection takes the place of the oldest of them that has had its chance (was accepted
/// long enough ago to have sent a request head). Clients that open connections and trickle (or
/// never send) a request head are therefore the ones that wait or go, never a connection that
/// is serving requests, nor one just accepted.
#[derive(Default)]
pub(super) struct Unstarted(std::sync::Mutex<VecDeque<Weak<Activity>>>);

impl Unstarted {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Weak<Activity>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new connection.
    pub(super) fn push(&self, activity: &Arc<Activity>) {
        let mut queue = self.lock();
        // Keep the queue from filling with connections that started or ended.
        if queue.len() > 64 && queue.len().is_power_of_two() {
            queue.retain(|w| w.upgrade().is_some_and(|a| !a.started()));
        }
        queue.push_back(Arc::downgrade(activity));
    }

    /// Evicts the oldest connection that has not started a request within `grace` of being
    /// accepted; whether there was one.
    pub(super) fn evict_oldest(&self, grace: Duration) -> bool {
        let mut queue = self.lock();
        while let Some(weak) = queue.front() {
            let Some(activity) = weak.upgrade() else {
                queue.pop_front();
                continue;
            };
            match activity.unstarted_for() {
                None => {
                    queue.pop_front();
                }
                // The oldest still has its chance: so have all the others.
                Some(age) if age < grace => return false,
                Some(_) => {
                    queue.pop_front();
                    activity.evicted.cancel();
                    return true;
                }
            }
        }
        false
    }
}

/// A request in flight; dropping it (with the response body) marks the connection idle from
/// then if it was the last.
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.lock().0 = Instant::now();
            self.0.changed.notify_waiters();
        }
    }
}

/// A response body that keeps its request in flight until it is sent or dropped.
pub(super) struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl TrackedBody {
    pub(super) fn new(inner: Body, in_flight: InFlight) -> Self {
        Self {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_last_response_and_not_during_one() {
        let activity = Activity::new();
        let first = Duration::from_secs(1);
        let idle = Duration::from_secs(10);
        // Nothing sent yet: the first-request timeout applies.
        let started = Instant::now();
        activity.idle_for(first, idle).await;
        assert_eq!(started.elapsed(), first);
        // A request in flight is never idle.
        let request = activity.begin();
        let waited = tokio::time::timeout(Duration::from_secs(60), activity.idle_for(first, idle));
        assert!(waited.await.is_err());
        drop(request);
        let ended = Instant::now();
        activity.idle_for(first, idle).await;
        assert_eq!(ended.elapsed(), idle);
    }
}
