//! Requests an upstream sends on the standalone stream of a downstream session's own upstream
//! session (legacy HTTP upstreams): not tied to any call, yet tied to one client — the session's.
//!
//! Servers send a server→client request there when it is not related to a request of the
//! client's (the official Python SDK does for `ctx.session.create_message()` called without a
//! related request id). A client talking to the server directly gets it on its own GET stream;
//! through the gateway it goes to the downstream session's GET stream, when that is open
//! ([`SessionRequests::register`]). Otherwise it is refused, as it would be by a client without
//! a GET stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use uuid::Uuid;

use super::ServerRequest;

/// Requests waiting on one session's stream, at most.
pub const QUEUE: usize = 16;

/// Where each downstream session takes its upstreams' standalone requests.
#[derive(Default)]
pub struct SessionRequests(Mutex<HashMap<Uuid, mpsc::Sender<ServerRequest>>>);

/// A registration; dropping it unregisters the session.
pub struct Registration {
    requests: Arc<SessionRequests>,
    session: Uuid,
    tx: mpsc::Sender<ServerRequest>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = self.requests.lock();
        // Only our own: a newer stream of the session may have replaced it.
        if map
            .get(&self.session)
            .is_some_and(|tx| tx.same_channel(&self.tx))
        {
            map.remove(&self.session);
        }
    }
}

impl SessionRequests {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, mpsc::Sender<ServerRequest>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `session`'s standalone requests from now on (replacing an older stream's
    /// registration) until the returned registration is dropped.
    pub fn register(
        self: &Arc<Self>,
        session: Uuid,
    ) -> (Registration, mpsc::Receiver<ServerRequest>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        self.lock().insert(session, tx.clone());
        let registration = Registration {
            requests: Arc::clone(self),
            session,
            tx,
        };
        (registration, rx)
    }

    /// As [`SessionRequests::deliver`], waiting up to `wait` for the session's stream to open
    /// or make room.
    pub(super) async fn deliver_waiting(
        &self,
        session: Uuid,
        mut request: ServerRequest,
        wait: std::time::Duration,
    ) -> Option<ServerRequest> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            request = self.deliver(session, request)?;
            if tokio::time::Instant::now() >= until {
                return Some(request);
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// Hands `request` to `session`'s stream; gives it back (`Some`) when none takes it (no
    /// stream open, or too many waiting).
    pub(super) fn deliver(&self, session: Uuid, request: ServerRequest) -> Option<ServerRequest> {
        let tx = self.lock().get(&session).cloned();
        match tx {
            Some(tx) => match tx.try_send(request) {
                Ok(()) => None,
                Err(mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r)) => {
                    Some(r)
                }
            },
            None => Some(request),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn request() -> ServerRequest {
        ServerRequest::local("sampling/createMessage".into(), None).0
    }

    #[tokio::test]
    async fn requests_reach_the_open_stream_of_their_session_only() {
        let requests = Arc::new(SessionRequests::default());
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(
            requests.deliver(alice, request()).is_some(),
            "no stream open"
        );
        let (first, mut first_rx) = requests.register(alice);
        assert!(requests.deliver(alice, request()).is_none());
        assert!(first_rx.recv().await.is_some());
        assert!(
            requests.deliver(bob, request()).is_some(),
            "not another session's"
        );
        // A newer stream of the session takes over; the older one ending does not unregister it.
        let (second, mut second_rx) = requests.register(alice);
        drop(first);
        assert!(requests.deliver(alice, request()).is_none());
        assert!(second_rx.recv().await.is_some());
        drop(second);
        assert!(requests.deliver(alice, request()).is_some());
    }
}
