//! An event stream to one client with a byte budget: what the gateway queues for a client that
//! does not read is bounded, and a client that stops reading for too long is disconnected.
//!
//! Used by the 2024-11-05 HTTP+SSE transport, where every answer to every POSTed message goes
//! down one long-lived stream: without a budget, a client that posts but never reads its stream
//! would make the gateway hold every answer in memory. Each queued event takes permits for its
//! size (an event larger than the whole budget takes all of it and goes alone); they are
//! returned when the event is handed to the connection. A sender that finds no room waits at
//! most the stall timeout, then closes the stream.

use std::sync::Arc;
use std::time::Duration;

use axum::response::Response;
use axum::response::sse::Event;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// Why an event was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Closed {
    /// The client went away or the stream was closed.
    #[error("the event stream is closed")]
    Gone,
    /// The client did not read for the stall timeout; the stream is now closed.
    #[error("the client stopped reading its event stream")]
    Stalled,
}

/// The sending side; cloning shares the stream and its budget.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<(Event, OwnedSemaphorePermit)>,
    budget: Arc<Semaphore>,
    max_bytes: u32,
    stall: Duration,
    closed: CancellationToken,
}

/// A new outbox holding at most `max_bytes` of queued events, whose senders wait at most
/// `stall` for room; and the SSE response that delivers it (keep-alives included).
pub fn outbox(max_bytes: u32, stall: Duration) -> (Outbox, Response) {
    // Unbounded in count, bounded in bytes: every item holds budget permits for its size.
    let (tx, rx) = mpsc::unbounded_channel::<(Event, OwnedSemaphorePermit)>();
    let closed = CancellationToken::new();
    let stream = futures::stream::unfold((rx, closed.clone()), |(mut rx, closed)| async move {
        tokio::select! {
            item = rx.recv() => item.map(|(event, permit)| {
                // Handed to the connection: its bytes no longer count as queued.
                drop(permit);
                (event, (rx, closed))
            }),
            () = closed.cancelled() => None,
        }
    });
    let response = super::relay::sse_stream(stream);
    let outbox = Outbox {
        tx,
        budget: Arc::new(Semaphore::new(max_bytes as usize)),
        max_bytes,
        stall,
        closed,
    };
    (outbox, response)
}

impl Outbox {
    /// Queues an event with `data` (one JSON-RPC message) named `name`, waiting for room.
    ///
    /// # Errors
    /// [`Closed::Gone`] when the stream is closed; [`Closed::Stalled`] when no room came
    /// within the stall timeout (the stream is then closed).
    pub async fn send(&self, name: &str, data: String) -> Result<(), Closed> {
        let size = u32::try_from(data.len())
            .unwrap_or(u32::MAX)
            .clamp(1, self.max_bytes);
        let permit = tokio::select! {
            permit = Arc::clone(&self.budget).acquire_many_owned(size) => {
                permit.map_err(|_| Closed::Gone)?
            }
            () = tokio::time::sleep(self.stall) => {
                tracing::warn!(stall = ?self.stall, "a client stopped reading its event stream; closing it");
                self.close();
                return Err(Closed::Stalled);
            }
            () = self.closed.cancelled() => return Err(Closed::Gone),
        };
        let event = Event::default().event(name).data(data);
        self.tx.send((event, permit)).map_err(|_| Closed::Gone)
    }

    /// Whether nothing more fits: the client is not reading what is queued.
    pub fn is_full(&self) -> bool {
        self.budget.available_permits() == 0
    }

    /// Ends the stream (queued events are dropped) and wakes every waiting sender.
    pub fn close(&self) {
        self.closed.cancel();
        self.budget.close();
    }

    /// Resolves when the client has gone away or the stream was closed.
    pub async fn closed(&self) {
        tokio::select! {
            () = self.tx.closed() => {}
            () = self.closed.cancelled() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_client_that_does_not_read_is_bounded_then_cut_off() {
        let (outbox, response) = outbox(1000, Duration::from_secs(30));
        outbox.send("message", "x".repeat(600)).await.unwrap();
        assert!(!outbox.is_full());
        outbox.send("message", "y".repeat(400)).await.unwrap();
        assert!(outbox.is_full(), "1000 bytes queued");
        // No room: the sender waits the stall timeout, then the stream is closed.
        let stalled = outbox.send("message", "z".into()).await;
        assert_eq!(stalled, Err(Closed::Stalled));
        assert_eq!(outbox.send("message", "z".into()).await, Err(Closed::Gone));
        // The response ends instead of holding the client forever.
        let mut body = response.into_body().into_data_stream();
        while body.next().await.is_some() {}
        drop(outbox);
    }

    #[tokio::test]
    async fn reading_makes_room_and_large_events_go_alone() {
        let (outbox, response) = outbox(100, Duration::from_secs(5));
        let mut body = response.into_body();
        let sender = tokio::spawn({
            let outbox = outbox.clone();
            async move {
                for _ in 0..5 {
                    outbox.send("message", "a".repeat(1000)).await.unwrap();
                }
            }
        });
        let mut seen = 0;
        while seen < 5 * 1000 {
            let frame = body.frame().await.unwrap().unwrap();
            if let Ok(data) = frame.into_data() {
                seen += data.iter().filter(|b| **b == b'a').count();
            }
        }
        sender.await.unwrap();
    }
}
