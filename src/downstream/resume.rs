//! Resumable legacy response streams (2025-11-25 Streamable HTTP, "Resumability and
//! Redelivery").
//!
//! Every event on a legacy session's response stream gets an id `{stream}/{seq}` and is kept in
//! a bounded log. A client that loses the connection reconnects with `GET` and
//! `Last-Event-ID`: the events after that id are replayed on the new connection, followed by the
//! rest of the stream as it happens. A lost connection is not a cancellation (the spec says it
//! SHOULD NOT be treated as one): the call goes on and its events are logged for a reconnect.
//! Bounds: [`MAX_STREAMS`] logs per session (finished ones are dropped first) and
//! [`MAX_EVENTS`] events per log (the oldest are dropped; a reconnect asking for one of them
//! gets what is left).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use axum::response::sse::Event;
use tokio::sync::mpsc;

/// Response-stream logs kept per session.
pub const MAX_STREAMS: usize = 32;
/// Events kept per stream log.
pub const MAX_EVENTS: usize = 256;

#[derive(Default)]
struct StreamLog {
    events: VecDeque<(u64, String)>,
    next_seq: u64,
    attached: Option<mpsc::Sender<Event>>,
    finished: bool,
    opened: u64,
}

/// The stream logs of one session.
#[derive(Default)]
pub struct StreamLogs {
    logs: Mutex<HashMap<String, StreamLog>>,
    counter: std::sync::atomic::AtomicU64,
}

fn event(stream: &str, seq: u64, data: &str) -> Event {
    Event::default()
        .event("message")
        .id(format!("{stream}/{seq}"))
        .data(data)
}

impl StreamLogs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, StreamLog>> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a log for a new response stream attached to `tx`; returns its id.
    pub fn open(&self, tx: mpsc::Sender<Event>) -> String {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("s{n}");
        let mut logs = self.lock();
        if logs.len() >= MAX_STREAMS {
            // Drop the oldest finished log, else the oldest.
            let victim = logs
                .iter()
                .filter(|(_, l)| l.finished)
                .min_by_key(|(_, l)| l.opened)
                .or_else(|| logs.iter().min_by_key(|(_, l)| l.opened))
                .map(|(k, _)| k.clone());
            if let Some(victim) = victim {
                logs.remove(&victim);
            }
        }
        logs.insert(
            id.clone(),
            StreamLog {
                attached: Some(tx),
                opened: n,
                ..StreamLog::default()
            },
        );
        id
    }

    /// Logs `data` on `stream` and sends it to the attached client, if any. A client that went
    /// away is detached; the event stays in the log.
    pub async fn emit(&self, stream: &str, data: String) {
        let (attached, seq) = {
            let mut logs = self.lock();
            let Some(log) = logs.get_mut(stream) else {
                return;
            };
            let seq = log.next_seq;
            log.next_seq += 1;
            log.events.push_back((seq, data.clone()));
            if log.events.len() > MAX_EVENTS {
                log.events.pop_front();
            }
            (log.attached.clone(), seq)
        };
        if let Some(tx) = attached
            && tx.send(event(stream, seq, &data)).await.is_err()
            && let Some(log) = self.lock().get_mut(stream)
        {
            log.attached = None;
        }
    }

    /// Marks `stream` finished: its attached client's stream ends.
    pub fn finish(&self, stream: &str) {
        if let Some(log) = self.lock().get_mut(stream) {
            log.finished = true;
            log.attached = None;
        }
    }

    /// Resumes after `last_event_id` (`{stream}/{seq}`): replays the logged events after it
    /// into `tx` and, if the stream is still running, attaches `tx` for the rest. `false` when
    /// the id names no log of this session.
    pub fn resume(&self, last_event_id: &str, tx: mpsc::Sender<Event>) -> bool {
        let Some((stream, seq)) = last_event_id
            .rsplit_once('/')
            .and_then(|(s, n)| n.parse::<u64>().ok().map(|n| (s.to_string(), n)))
        else {
            return false;
        };
        let mut logs = self.lock();
        let Some(log) = logs.get_mut(&stream) else {
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
}

/// A channel large enough to take a whole replay at once.
pub fn resume_channel() -> (mpsc::Sender<Event>, mpsc::Receiver<Event>) {
    mpsc::channel(MAX_EVENTS + 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replays_after_the_last_event_and_follows_a_running_stream() {
        let logs = StreamLogs::default();
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
}
