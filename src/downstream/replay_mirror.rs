//! Legacy response-stream logs shared through Redis (`limits.store: redis`, DESIGN.md §5.12),
//! so that a client whose connection was lost can resume with `Last-Event-ID` on any replica.
//!
//! The replica running the call keeps its local log ([`super::resume`]) and also appends every
//! event to a Redis stream per response stream, `{prefix}:replay:{session}:{stream}`, with the
//! event's sequence number as the entry id (`{seq}-1`), capped at [`super::resume::MAX_EVENTS`]
//! entries, and an end mark when the response is complete; the key expires after the session's
//! idle timeout. Appends go through a [`WriteQueue`], so delivering an event never waits for
//! Redis; an append that finds the queue full is dropped (that event can then not be replayed
//! elsewhere) and logged.
//!
//! A replica asked to resume a stream it has no log of reads the entries after the client's
//! last id and then follows the Redis stream ([`super::shared_stream`]) until
//! the end mark, the client leaving, the sending replica being gone (checked whenever the stream
//! is quiet for [`shared_stream::BLOCK`], through [`Handoff::is_alive`]), or no event for the
//! idle timeout. Stream ids carry the sending replica's tag, so two replicas never name streams
//! of one session alike and a follower knows whom to ask after.

use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::Event;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::handoff::Handoff;
use redis::streams::StreamId;

use super::shared_stream::{self, Follower};
use crate::config::RedisConfig;
use crate::redis_writes::WriteQueue;

/// How long a resume waits for a stream that is not (yet) in the store.
const FIRST_WAIT: Duration = Duration::from_secs(1);

/// The Redis side of the response-stream logs of every session of this replica.
pub struct ReplayMirror {
    writes: WriteQueue,
    store: crate::redis_client::Store,
    prefix: String,
    /// This replica's tag and the other replicas' presence.
    replicas: Arc<Handoff>,
    /// Entries' lifetime, and how long a follower waits without news.
    idle: Duration,
}

impl ReplayMirror {
    /// A mirror in the Redis of `redis`, whose entries live `idle` (the session idle timeout),
    /// naming streams with the tag of `replicas` and asking it whether a sender is alive;
    /// starts its writer task.
    ///
    /// # Errors
    /// When the Redis URL cannot be used.
    pub fn start(
        redis: &RedisConfig,
        idle: Duration,
        replicas: Arc<Handoff>,
    ) -> Result<Arc<Self>, redis::RedisError> {
        let store = crate::redis_client::Store::open(redis)?;
        Ok(Arc::new(Self {
            writes: WriteQueue::start(redis, "response-stream logs")?,
            store,
            prefix: format!("{}:replay", redis.key_prefix),
            replicas,
            idle,
        }))
    }

    /// The id of response stream number `n` of a session opened on this replica.
    pub fn stream_id(&self, n: u64) -> String {
        format!("s{}-{n}", self.replicas.tag())
    }

    fn key(&self, session: Uuid, stream: &str) -> String {
        format!("{}:{session}:{stream}", self.prefix)
    }

    /// Appends event `seq` of `stream` (without waiting).
    pub fn append(&self, session: Uuid, stream: &str, seq: u64, data: &str) {
        self.put(session, stream, seq, ("d", data.as_bytes()));
    }

    /// Marks `stream` complete after event `next_seq - 1` (without waiting).
    pub fn end(&self, session: Uuid, stream: &str, next_seq: u64) {
        self.put(session, stream, next_seq, ("end", b""));
    }

    fn put(&self, session: Uuid, stream: &str, seq: u64, field: (&str, &[u8])) {
        let key = self.key(session, stream);
        let id = format!("{seq}-1");
        let max_len = Some(super::resume::MAX_EVENTS);
        let commands = shared_stream::append(&key, &id, max_len, &[field], self.idle);
        self.writes.push(commands, field.1.len() + key.len());
    }

    /// Resumes `stream` of `session` after event `after` from the shared log into `tx`:
    /// `false` when the log holds no such stream or cannot be reached. The events follow in
    /// the background until the stream's end, the client leaving, or the idle timeout without
    /// news.
    pub async fn resume(
        self: &Arc<Self>,
        session: Uuid,
        stream: &str,
        after: u64,
        tx: mpsc::Sender<Event>,
    ) -> bool {
        let key = self.key(session, stream);
        let follower = Follower::connect(&self.store, key, format!("{after}-1")).await;
        let Ok(mut follower) = follower else {
            tracing::warn!(%session, "cannot reach the shared replay log to resume a stream");
            return false;
        };
        // The sender appends in the background: what the client saw last may be a moment
        // ahead of the store. A stream that neither exists nor begins within FIRST_WAIT is
        // not one (and costs a guessing client no more than that).
        let first = match follower.next_within(FIRST_WAIT).await {
            Ok(first) if !first.is_empty() => first,
            Ok(_) if follower.exists().await.unwrap_or(false) => Vec::new(),
            Ok(_) | Err(_) => return false,
        };
        let this = Arc::clone(self);
        let stream = stream.to_string();
        tokio::spawn(async move {
            if let Err(error) = this.follow(follower, first, &stream, &tx).await {
                tracing::warn!(%error, "following a shared replay log failed; the resumed stream ends");
            }
        });
        true
    }

    /// Sends the entries the follower reads of `stream` until the end mark, the client
    /// leaving, the sending replica being gone, or the idle timeout without news.
    async fn follow(
        &self,
        mut follower: Follower,
        first: Vec<StreamId>,
        stream: &str,
        tx: &mpsc::Sender<Event>,
    ) -> redis::RedisResult<()> {
        let sender = stream
            .strip_prefix('s')
            .and_then(|s| s.rsplit_once('-'))
            .map(|(tag, _)| tag.to_string())
            .unwrap_or_default();
        let mut quiet = Duration::ZERO;
        let mut entries = first;
        loop {
            if entries.is_empty() {
                entries = follower.next().await?;
            }
            if entries.is_empty() {
                quiet += shared_stream::BLOCK;
                if tx.is_closed() || quiet >= self.idle || !self.replicas.is_alive(&sender).await {
                    return Ok(());
                }
                continue;
            }
            quiet = Duration::ZERO;
            for entry in std::mem::take(&mut entries) {
                if entry.map.contains_key("end") {
                    return Ok(());
                }
                let seq = entry
                    .id
                    .split_once('-')
                    .and_then(|(s, _)| s.parse::<u64>().ok())
                    .unwrap_or_default();
                let data: String = entry.get("d").unwrap_or_default();
                let event = Event::default()
                    .event("message")
                    .id(format!("{stream}/{seq}"))
                    .data(data);
                if tx.send(event).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}
