//! Legacy sessions ended with `DELETE`: their ids stay refused until they would have expired.
//!
//! Every replica answers from its own memory, so the check costs no round trip. With a shared
//! store (`limits.store: redis`, DESIGN.md §5.12) a `DELETE` on one replica is honoured by all:
//! the id goes into a Redis sorted set (scored by when it may be forgotten) and is published on
//! a channel every replica listens to; a replica that starts, or whose subscription was cut,
//! reads the whole set again before it listens, so a revocation is never missed for long —
//! at most for the time a replica is cut off from Redis, which is logged. A `DELETE` while Redis
//! cannot be written ends the session on its replica at once and everywhere once Redis is back:
//! on every reconnect a replica stores again what it knows that the set lacks (a Redis that
//! restarted empty is refilled) and announces what it revoked while cut off.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use uuid::Uuid;

use crate::backoff::keep_listening;
use crate::config::RedisConfig;

/// How long a store write may take before the revocation is kept local only (logged).
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Revoked legacy session ids.
pub struct Revocations {
    /// Revoked ids and when they may be forgotten (seconds since the Unix epoch).
    local: moka::sync::Cache<Uuid, u64>,
    shared: Option<Shared>,
    lifetime: Duration,
    /// Revoked here while the store could not be written: announced once it can.
    unshared: std::sync::Mutex<std::collections::HashSet<Uuid>>,
}

/// The Redis side: a sorted set of ids and the channel announcing each.
struct Shared {
    store: crate::redis_client::Store,
    connection: crate::redis_client::Connection,
    set: String,
    channel: String,
}

impl Revocations {
    /// Revocations kept in this process only: sessions live at most `lifetime`, and at most
    /// `capacity` revocations are remembered (the oldest are forgotten first).
    pub fn local(lifetime: Duration, capacity: u64) -> Self {
        Self {
            local: moka::sync::Cache::builder()
                .time_to_live(lifetime)
                .max_capacity(capacity)
                .build(),
            shared: None,
            lifetime,
            unshared: std::sync::Mutex::default(),
        }
    }

    /// Revocations shared through Redis (connected lazily; see the module documentation).
    /// Call [`Revocations::follow`] in the background to hear of other replicas'.
    ///
    /// # Errors
    /// When the Redis URL cannot be used.
    pub fn shared(
        lifetime: Duration,
        capacity: u64,
        redis: &RedisConfig,
    ) -> Result<Self, redis::RedisError> {
        let store = crate::redis_client::Store::open(redis)?;
        let connection = store.connection(Duration::from_secs(2), WRITE_TIMEOUT)?;
        Ok(Self {
            shared: Some(Shared {
                store,
                connection,
                set: format!("{}:revoked", redis.key_prefix),
                channel: format!("{}:revocations", redis.key_prefix),
            }),
            ..Self::local(lifetime, capacity)
        })
    }

    /// Whether `id` was revoked (on any replica this one has heard from).
    pub fn contains(&self, id: &Uuid) -> bool {
        self.local.contains_key(id)
    }

    /// Revokes `id` here and, with a shared store, on every replica.
    pub async fn revoke(&self, id: Uuid) {
        let forget_at = unix_seconds(SystemTime::now() + self.lifetime);
        self.local.insert(id, forget_at);
        let Some(shared) = &self.shared else {
            return;
        };
        let mut connection = shared.connection.clone();
        let write = async {
            let mut pipe = redis::pipe();
            pipe.atomic()
                .zadd(&shared.set, id.to_string(), forget_at)
                .ignore()
                .publish(&shared.channel, id.to_string())
                .ignore();
            pipe.query_async::<()>(&mut connection).await
        };
        let why = match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error.to_string(),
            Err(_) => "no answer in time".to_string(),
        };
        tracing::error!(session = %id, why, "the session is ended on this replica only until the shared store is back (then on every replica)");
        self.lock_unshared().insert(id);
    }

    fn lock_unshared(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<Uuid>> {
        self.unshared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps this replica's memory in step with the shared set until the future is dropped:
    /// reads the whole set, then applies each published revocation; starts over (with
    /// backoff) whenever the subscription ends. Returns at once without a shared store.
    pub async fn follow(self: Arc<Self>) {
        let Some(shared) = &self.shared else {
            return;
        };
        keep_listening(
            || async {
                self.listen(shared).await?;
                Ok::<_, redis::RedisError>(ControlFlow::Continue(()))
            },
            "cannot follow the shared session revocations; retrying (a DELETE on another replica is not seen here meanwhile)",
        )
        .await;
    }

    /// One subscription: subscribe, load the set, then apply messages until it ends.
    async fn listen(&self, shared: &Shared) -> redis::RedisResult<()> {
        use futures::StreamExt;
        let mut pubsub = shared.store.pubsub().await?;
        // Subscribed first: nothing published while the set is read is missed.
        pubsub.subscribe(&shared.channel).await?;
        let mut connection = shared.connection.clone();
        let now = unix_seconds(SystemTime::now());
        let _: () = connection.zrembyscore(&shared.set, "-inf", now).await?;
        let stored: Vec<(String, u64)> = connection
            .zrangebyscore_withscores(&shared.set, now, "+inf")
            .await?;
        let mut known = std::collections::HashSet::with_capacity(stored.len());
        for (id, forget_at) in &stored {
            if let Ok(id) = Uuid::parse_str(id) {
                self.local.insert(id, *forget_at);
                known.insert(id);
            }
        }
        // What this replica knows and the store does not (it lost data, or writes failed):
        // stored again; those revoked here while it failed are announced too.
        let missing: Vec<(u64, String)> = self
            .local
            .iter()
            .filter(|(id, forget_at)| *forget_at > now && !known.contains(id))
            .map(|(id, forget_at)| (forget_at, id.to_string()))
            .collect();
        let unshared: Vec<Uuid> = self.lock_unshared().drain().collect();
        let mut pipe = redis::pipe();
        for chunk in missing.chunks(1000) {
            pipe.zadd_multiple(&shared.set, chunk).ignore();
        }
        for id in &unshared {
            pipe.publish(&shared.channel, id.to_string()).ignore();
        }
        if !pipe.is_empty()
            && let Err(error) = pipe.query_async::<()>(&mut connection).await
        {
            self.lock_unshared().extend(unshared);
            return Err(error);
        }
        tracing::info!(
            revoked = stored.len(),
            restored = missing.len(),
            announced = unshared.len(),
            "following the shared session revocations"
        );
        let mut messages = pubsub.into_on_message();
        while let Some(message) = messages.next().await {
            if let Some(id) = message
                .get_payload::<String>()
                .ok()
                .and_then(|p| Uuid::parse_str(&p).ok())
            {
                // The message names the id only: kept for a whole lifetime from now.
                let forget_at = unix_seconds(SystemTime::now() + self.lifetime);
                self.local.insert(id, forget_at);
            }
        }
        tracing::warn!("the shared session revocation channel closed; following it again");
        Ok(())
    }
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
