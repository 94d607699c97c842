//! Resumable legacy response streams (2025-11-25 Streamable HTTP, "Resumability and
//! Redelivery").
//!
//! Every event on a legacy session's response stream gets an id `{stream}/{seq}` and is kept in
//! a bounded log. A client that loses the connection reconnects with `GET` and
//! `Last-Event-ID`: the events after that id are replayed on the new connection, followed by the
//! rest of the stream as it happens. A lost connection is not a cancellation (the spec says it
//! SHOULD NOT be treated as one): the call goes on and its events are logged for a reconnect.
//!
//! Bounds: [`MAX_STREAMS`] logs per session (finished ones are dropped first), [`MAX_EVENTS`]
//! events per log, [`MAX_SESSION_BYTES`] of events per session, and one [`ReplayBudget`] of
//! bytes shared by every session of the replica (`session.replay_buffer_bytes`). To make room a
//! session drops its own oldest events, those of finished streams first; an event that still
//! does not fit (larger than a session may keep, or the replica's budget held by other
//! sessions) is delivered but not logged. A reconnect asking for a dropped event gets what is
//! left after it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::response::sse::Event;
use tokio::sync::mpsc;

/// Response-stream logs kept per session.
pub const MAX_STREAMS: usize = 32;
/// Events kept per stream log.
pub const MAX_EVENTS: usize = 256;
/// Bytes of logged events one session may hold.
pub const MAX_SESSION_BYTES: usize = 4 * 1024 * 1024;
/// What one logged event costs besides its data, bytes (id, queue slot).
const EVENT_OVERHEAD: usize = 64;

/// The bytes of logged events every session of this replica holds together, at most `max`.
/// Cloning the `Arc` shares it.
#[derive(Debug)]
pub struct ReplayBudget {
    used: AtomicUsize,
    max: usize,
}

impl ReplayBudget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            max,
        })
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn try_take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + n <= self.max).then_some(used + n)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

#[derive(Default)]
struct StreamLog {
    events: VecDeque<(u64, String)>,
    next_seq: u64,
    attached: Option<mpsc::Sender<Event>>,
    finished: bool,
    opened: u64,
}

/// Every log of a session, and the bytes they hold.
#[derive(Default)]
struct Logs {
    by_stream: HashMap<String, StreamLog>,
    bytes: usize,
}

impl Logs {
    /// Drops the oldest logged event — of the oldest finished stream if any, else of the oldest
    /// stream — and returns its cost; `None` when nothing is logged.
    fn evict_one(&mut self) -> Option<usize> {
        let victim = self
            .by_stream
            .iter()
            .filter(|(_, l)| !l.events.is_empty())
            .min_by_key(|(_, l)| (!l.finished, l.opened))
            .map(|(k, _)| k.clone())?;
        let log = self.by_stream.get_mut(&victim)?;
        let (_, data) = log.events.pop_front()?;
        let cost = cost(&data);
        self.bytes -= cost;
        Some(cost)
    }

    /// Removes a whole log; returns the bytes it held.
    fn remove(&mut self, stream: &str) -> usize {
        let held: usize = self
            .by_stream
            .remove(stream)
            .map(|l| l.events.iter().map(|(_, d)| cost(d)).sum())
            .unwrap_or(0);
        self.bytes -= held;
        held
    }
}

fn cost(data: &str) -> usize {
    data.len() + EVENT_OVERHEAD
}

/// The stream logs of one session.
pub struct StreamLogs {
    logs: Mutex<Logs>,
    counter: std::sync::atomic::AtomicU64,
    budget: Arc<ReplayBudget>,
    /// With a shared store: the mirror every event is also written to, and the session's id.
    mirror: Option<(Arc<super::replay_mirror::ReplayMirror>, uuid::Uuid)>,
}

fn event(stream: &str, seq: u64, data: &str) -> Event {
    Event::default()
        .event("message")
        .id(format!("{stream}/{seq}"))
        .data(data)
}

impl StreamLogs {
    /// The logs of a new session, drawing on the replica's `budget`.
    pub fn new(budget: Arc<ReplayBudget>) -> Self {
        Self {
            logs: Mutex::new(Logs::default()),
            counter: std::sync::atomic::AtomicU64::new(0),
            budget,
            mirror: None,
        }
    }

    /// The logs of session `id`, also written to the shared `mirror` so that any replica can
    /// resume them ([`super::replay_mirror`]).
    pub fn mirrored(
        budget: Arc<ReplayBudget>,
        mirror: Arc<super::replay_mirror::ReplayMirror>,
        id: uuid::Uuid,
    ) -> Self {
        let mut logs = Self::new(budget);
        logs.mirror = Some((mirror, id));
        logs
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Logs> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a log for a new response stream attached to `tx`; returns its id.
    pub fn open(&self, tx: mpsc::Sender<Event>) -> String {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = match &self.mirror {
            Some((mirror, _)) => mirror.stream_id(n),
            None => format!("s{n}"),
        };
        let mut logs = self.lock();
        if logs.by_stream.len() >= MAX_STREAMS {
            // Drop the oldest finished log, else the oldest.
            let victim = logs
                .by_stream
                .iter()
                .min_by_key(|(_, l)| (!l.finished, l.opened))
                .map(|(k, _)| k.clone());
            if let Some(victim) = victim {
                let freed = logs.remove(&victim);
                self.budget.give_back(freed);
            }
        }
        logs.by_stream.insert(
            id.clone(),
            StreamLog {
                attached: Some(tx),
                opened: n,
                ..StreamLog::default()
            },
        );
        id
    }

    /// Logs `data` on `stream` (within the bounds of the module docs) and sends it to the
    /// attached client, if any. A client that went away is detached; the event stays in the log.
    pub async fn emit(&self, stream: &str, data: String) {
        let (attached, seq, kept) = {
            let mut logs = self.lock();
            let Some(log) = logs.by_stream.get_mut(stream) else {
                return;
            };
            let seq = log.next_seq;
            log.next_seq += 1;
            let attached = log.attached.clone();
            let kept = self.log(&mut logs, stream, seq, &data);
            (attached, seq, kept)
        };
        // Only what the local log keeps is shared: the store holds no more than the replicas.
        if kept && let Some((mirror, session)) = &self.mirror {
            mirror.append(*session, stream, seq, &data);
        }
        if let Some(tx) = attached
            && tx.send(event(stream, seq, &data)).await.is_err()
            && let Some(log) = self.lock().by_stream.get_mut(stream)
        {
            log.attached = None;
        }
    }

    /// Keeps event `seq` of `stream` if room can be made for it; whether it was kept.
    fn log(&self, logs: &mut Logs, stream: &str, seq: u64, data: &str) -> bool {
        let size = cost(data);
        if size > MAX_SESSION_BYTES {
            return false;
        }
        while logs.bytes + size > MAX_SESSION_BYTES {
            match logs.evict_one() {
                Some(freed) => self.budget.give_back(freed),
                None => return false,
            }
        }
        while !self.budget.try_take(size) {
            match logs.evict_one() {
                Some(freed) => self.budget.give_back(freed),
                None => return false,
            }
        }
        let Some(log) = logs.by_stream.get_mut(stream) else {
            self.budget.give_back(size);
            return false;
        };
        log.events.push_back((seq, data.to_string()));
        let dropped = if log.events.len() > MAX_EVENTS {
            log.events.pop_front().map(|(_, d)| cost(&d))
        } else {
            None
        };
        logs.bytes += size;
        if let Some(dropped) = dropped {
            logs.bytes -= dropped;
            self.budget.give_back(dropped);
        }
        true
    }

    /// Marks `stream` finished: its attached client's stream ends.
    pub fn finish(&self, stream: &str) {
        if let Some(log) = self.lock().by_stream.get_mut(stream) {
            log.finished = true;
            log.attached = None;
            if let Some((mirror, session)) = &self.mirror {
                mirror.end(*session, stream, log.next_seq);
            }
        }
    }

    /// Resumes after `last_event_id` (`{stream}/{seq}`): replays the logged events after it
    /// into `tx` and, if the stream is still running, attaches `tx` for the rest. `false` when
    /// the id names no log of this session.
    pub fn resume(&self, last_event_id: &str, tx: mpsc::Sender<Event>) -> bool {
        let Some((stream, seq)) = parse_event_id(last_event_id) else {
            return false;
        };
        let mut logs = self.lock();
        let Some(log) = logs.by_stream.get_mut(&stream) else {
            return false;
        };
        let replay: Vec<Event> = log
            .events
            .iter()
            .filter(|(n, _)| *n > seq)
            .map(|(n, data)| event(&stream, *n, data))
            .collect();
        // Queued under the lock, so nothing emitted meanwhile can overtake the replay; the
        // channel must hold `MAX_EVENTS` (see [`resume_channel`]).
        for e in replay {
            if tx.try_send(e).is_err() {
                break;
            }
        }
        if !log.finished {
            log.attached = Some(tx);
        }
        true
    }

    /// Bytes this session's logs hold.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

impl Drop for StreamLogs {
    fn drop(&mut self) {
        let held = self.lock().bytes;
        self.budget.give_back(held);
    }
}

/// The stream and sequence number of an event id `{stream}/{seq}`.
pub fn parse_event_id(id: &str) -> Option<(String, u64)> {
    id.rsplit_once('/')
        .and_then(|(s, n)| n.parse::<u64>().ok().map(|n| (s.to_string(), n)))
}

/// A channel large enough to take a whole replay at once.
pub fn resume_channel() -> (mpsc::Sender<Event>, mpsc::Receiver<Event>) {
    mpsc::channel(MAX_EVENTS + 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logs(budget: usize) -> (StreamLogs, Arc<ReplayBudget>) {
        let budget = ReplayBudget::new(budget);
        (StreamLogs::new(Arc::clone(&budget)), budget)
    }

    #[tokio::test]
    async fn replays_after_the_last_event_and_follows_a_running_stream() {
        let (logs, _) = logs(1 << 20);
        let (tx, rx) = mpsc::channel(16);
        let stream = logs.open(tx);
        logs.emit(&stream, "a".into()).await;
        drop(rx); // the client goes away
        logs.emit(&stream, "b".into()).await;
        logs.emit(&stream, "c".into()).await;
        let (tx2, mut rx2) = mpsc::channel(16);
        assert!(logs.resume(&format!("{stream}/0"), tx2));
        logs.emit(&stream, "d".into()).await;
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(rx2.recv().await.is_some());
        }
        assert_eq!(got, [true, true, true], "b and c replayed, d followed");
        logs.finish(&stream);
        assert!(!logs.resume("nope/1", mpsc::channel(1).0));
    }

    #[tokio::test]
    async fn sessions_stay_within_their_bytes_and_the_replicas() {
        let (a, budget) = logs(3 * 1024 * 1024);
        let b = StreamLogs::new(Arc::clone(&budget));
        let big = "x".repeat(512 * 1024);
        let sa = a.open(mpsc::channel(1).0);
        for _ in 0..20 {
            a.emit(&sa, big.clone()).await;
        }
        assert!(a.bytes() <= 3 * 1024 * 1024, "{}", a.bytes());
        assert_eq!(budget.used(), a.bytes(), "every byte accounted");
        // The replica's budget is taken: b logs nothing, but its events are still delivered.
        let (tx, mut rx) = mpsc::channel(4);
        let sb = b.open(tx);
        b.emit(&sb, big.clone()).await;
        assert!(rx.recv().await.is_some());
        assert_eq!(b.bytes(), 0);
        assert!(budget.used() <= 3 * 1024 * 1024);
        // A session over its own cap drops its oldest events first.
        let (c, budget) = logs(64 * 1024 * 1024);
        let sc = c.open(mpsc::channel(1).0);
        for _ in 0..20 {
            c.emit(&sc, big.clone()).await;
        }
        assert!(c.bytes() <= MAX_SESSION_BYTES);
        let (tx, mut rx) = resume_channel();
        assert!(c.resume(&format!("{sc}/0"), tx));
        let mut replayed = 0;
        while rx.try_recv().is_ok() {
            replayed += 1;
        }
        assert_eq!(
            replayed,
            MAX_SESSION_BYTES / cost(&big),
            "the newest events are kept"
        );
        drop(c);
        assert_eq!(budget.used(), 0, "a dropped session gives its bytes back");
        drop((a, b));
    }
}
