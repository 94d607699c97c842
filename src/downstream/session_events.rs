//! Resource updates for a legacy session whose standalone stream is on another replica
//! (`limits.store: redis`, DESIGN.md §5.12).
//!
//! A `resources/subscribe` reaches the upstream from the replica that received it, so the
//! upstream's `notifications/resources/updated` arrive there; the session's standalone stream
//! (`GET /mcp`) may be open on any replica. Through one Redis pub/sub channel,
//! `{prefix}:session-events`:
//! - a replica that hears an upstream update for a session subscribed through it, while that
//!   session has no stream open here, publishes the notification for the session; the replica
//!   holding the session's stream delivers it ([`SessionEvents::receiver`]);
//! - every accepted `resources/subscribe` and `resources/unsubscribe` is published, so that a
//!   replica holding the session's subscriptions applies an unsubscribe received elsewhere.
//!
//! Pub/sub delivers to replicas listening at the time: an update published while the stream's
//! replica is cut off from Redis is lost to that stream (as it would be to a client between
//! two streams); a cut-off replica logs it and listens again.

use std::ops::ControlFlow;
use std::sync::{Arc, Weak};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use uuid::Uuid;

use super::Gateway;
use super::session_state::LocalSessions;
use crate::backoff::keep_listening;
use crate::config::RedisConfig;
use crate::jsonrpc;
use crate::redis_writes::WriteQueue;
use crate::upstream::UpstreamEvent;

/// Notifications waiting for this replica's streams at most; a stream that falls further
/// behind misses the oldest (logged).
const LOCAL_QUEUE: usize = 1024;

/// A message on the channel.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Note {
    /// Deliver `message` on `session`'s standalone stream.
    Notify { session: Uuid, message: Value },
    /// `session` subscribed to, or unsubscribed from, client-facing `uri`.
    Subscription {
        session: Uuid,
        uri: String,
        subscribed: bool,
    },
}

/// A notification for a session's standalone stream, heard from another replica.
pub type Delivery = Arc<(Uuid, Value)>;

/// The session events channel.
pub struct SessionEvents {
    writes: WriteQueue,
    store: crate::redis_client::Store,
    channel: String,
    local: broadcast::Sender<Delivery>,
}

impl SessionEvents {
    /// The channel in the Redis of `redis` (connected lazily). Run [`SessionEvents::follow`]
    /// and [`SessionEvents::forward_updates`] in the background.
    ///
    /// # Errors
    /// When the Redis URL cannot be used.
    pub fn new(redis: &RedisConfig) -> Result<Arc<Self>, redis::RedisError> {
        Ok(Arc::new(Self {
            writes: WriteQueue::start(redis, "session events")?,
            store: crate::redis_client::Store::open(redis)?,
            channel: format!("{}:session-events", redis.key_prefix),
            local: broadcast::channel(LOCAL_QUEUE).0,
        }))
    }

    fn publish(&self, note: &Note) {
        let payload = serde_json::to_string(note).unwrap_or_default();
        let bytes = payload.len();
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(&self.channel).arg(payload);
        self.writes.push(vec![publish], bytes);
    }

    /// Tells every replica that `session` subscribed to (`true`) or unsubscribed from
    /// client-facing `uri`.
    pub fn subscription(&self, session: Uuid, uri: &str, subscribed: bool) {
        self.publish(&Note::Subscription {
            session,
            uri: uri.to_string(),
            subscribed,
        });
    }

    /// Notifications for sessions whose streams are here, heard from other replicas.
    pub fn receiver(&self) -> broadcast::Receiver<Delivery> {
        self.local.subscribe()
    }

    /// Listens on the channel until the future is dropped (again, with backoff, whenever the
    /// subscription ends): applies subscription changes to `sessions` this replica holds, and
    /// hands notifications to the local streams.
    pub async fn follow(self: Arc<Self>, sessions: Arc<LocalSessions>) {
        keep_listening(
            || async {
                let mut pubsub = self.store.pubsub().await?;
                pubsub.subscribe(&self.channel).await?;
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    match serde_json::from_slice::<Note>(message.get_payload_bytes()) {
                        Ok(Note::Notify { session, message }) => {
                            let _ = self.local.send(Arc::new((session, message)));
                        }
                        Ok(Note::Subscription {
                            session,
                            uri,
                            subscribed,
                        }) => {
                            if let Some(state) = sessions.peek(session) {
                                state.set_subscribed(&uri, subscribed);
                            }
                        }
                        Err(_) => tracing::warn!("ignored a malformed session event"),
                    }
                }
                tracing::warn!("the session events channel closed; listening again");
                Ok::<_, redis::RedisError>(ControlFlow::Continue(()))
            },
            "cannot hear session events; retrying (resource updates for sessions whose stream is on another replica are missed meanwhile)",
        )
        .await;
    }

    /// Publishes the upstream resource updates this replica hears for sessions subscribed
    /// through it whose standalone stream is not here, until the gateway is gone.
    pub async fn forward_updates(self: Arc<Self>, gateway: Weak<Gateway>) {
        let Some(mut events) = gateway
            .upgrade()
            .map(|gw| gw.router.catalogue().upstreams().subscribe())
        else {
            return;
        };
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "resource updates for other replicas' streams were missed"
                    );
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let UpstreamEvent::ResourceUpdated {
                upstream,
                uri,
                downstream,
            } = event
            else {
                continue;
            };
            let Some(gw) = gateway.upgrade() else {
                return;
            };
            let wire = gw.router.catalogue().snapshot().wire_uri(&upstream, &uri);
            let message = jsonrpc::notification(
                "notifications/resources/updated",
                Some(json!({"uri": wire})),
            );
            for session in gw.sessions.streamless_subscribers(&wire, downstream) {
                self.publish(&Note::Notify {
                    session,
                    message: message.clone(),
                });
            }
        }
    }
}
