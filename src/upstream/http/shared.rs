//! Legacy upstream sessions shared by every replica (`limits.store: redis`, DESIGN.md §5.12).
//!
//! A legacy Streamable HTTP server keeps state per `Mcp-Session-Id` (tasks, subscriptions,
//! whatever its tools remember), so a client session must talk to it in one upstream session
//! whichever replica serves the call. The replica that opens the upstream session for a client
//! session records it under `{prefix}:upstream-session:{upstream}:{client session}` as
//! `{Mcp-Session-Id}\n{initialize result}`; the other replicas adopt it instead of sending
//! `initialize` themselves. The record expires after `session.idle_timeout` unused (every
//! replica using it renews it, at most once per quarter of that).
//!
//! Ending: the client's `DELETE` removes the record and the upstream session. A replica whose
//! copy idles out closes the upstream session only when the record is gone or names another
//! session (nobody renewed it: the session is idle everywhere); otherwise it leaves it to the
//! replicas still using it. A session the upstream refused (404) is dropped from the record
//! before a new one is opened, so replicas never adopt a session known dead.
//!
//! Without the store, or while it cannot be reached, each replica opens its own upstream
//! session per client session, as a single replica does.

use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use crate::config::{RedisConfig, UpstreamId};
use crate::redis_writes::WriteQueue;

/// Largest record shared (`initialize` results are small; a larger one stays per replica).
const MAX_RECORD_BYTES: usize = 64 * 1024;

/// Stores the record unless one exists; returns the existing record, or nil when stored.
/// KEYS[1] the record, ARGV[1] the new record, ARGV[2] its lifetime (ms).
const CLAIM: &str = r"
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// Deletes the record if it names session ARGV[1] (ARGV[1] is `{session id}\n`).
const RELEASE: &str = r"
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, #ARGV[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// Why a shared-store operation on upstream sessions failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum SharedError {
    /// Redis refused or the connection failed.
    #[error("shared store: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer within `limits.redis.timeout`.
    #[error("shared store did not answer within {0:?}")]
    Timeout(Duration),
}

/// An upstream session another replica opened: what adopting it takes.
#[derive(Debug)]
pub(super) struct Record {
    /// Its `Mcp-Session-Id`.
    pub(super) session_id: String,
    /// The upstream's `InitializeResult`.
    pub(super) initialize: Value,
}

impl Record {
    fn encode(session_id: &str, initialize: &Value) -> String {
        format!("{session_id}\n{initialize}")
    }

    fn decode(stored: &str) -> Option<Self> {
        let (session_id, initialize) = stored.split_once('\n')?;
        Some(Self {
            session_id: session_id.to_string(),
            initialize: serde_json::from_str(initialize).ok()?,
        })
    }
}

/// The records of upstream sessions in the shared store.
pub struct SharedSessions {
    connection: crate::redis_client::Connection,
    writes: WriteQueue,
    claim: redis::Script,
    release: redis::Script,
    prefix: String,
    timeout: Duration,
    ttl: Duration,
}

impl SharedSessions {
    /// Records in the Redis of `redis` (connected lazily), expiring after `idle_timeout`
    /// unused.
    ///
    /// # Errors
    /// When the Redis URL cannot be used.
    pub fn new(redis: &RedisConfig, idle_timeout: Duration) -> Result<Self, redis::RedisError> {
        Ok(Self {
            connection: crate::redis_client::Store::open(redis)?
                .connection(redis.timeout, redis.timeout)?,
            writes: WriteQueue::start(redis, "upstream sessions")?,
            claim: redis::Script::new(CLAIM),
            release: redis::Script::new(RELEASE),
            prefix: format!("{}:upstream-session", redis.key_prefix),
            timeout: redis.timeout,
            ttl: idle_timeout.max(Duration::from_secs(1)),
        })
    }

    fn key(&self, upstream: &UpstreamId, downstream: Uuid) -> String {
        format!("{}:{upstream}:{downstream}", self.prefix)
    }

    fn ttl_millis(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// How often a replica using a session renews its record at most.
    pub(super) fn renew_every(&self) -> Duration {
        self.ttl / 4
    }

    async fn bounded<T>(
        &self,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, SharedError> {
        Ok(tokio::time::timeout(self.timeout, op)
            .await
            .map_err(|_| SharedError::Timeout(self.timeout))??)
    }

    /// The session recorded for `downstream` at `upstream`, if any (a malformed record counts
    /// as none).
    pub(super) async fn lookup(
        &self,
        upstream: &UpstreamId,
        downstream: Uuid,
    ) -> Result<Option<Record>, SharedError> {
        let mut connection = self.connection.clone();
        let mut get = redis::cmd("GET");
        get.arg(self.key(upstream, downstream));
        let stored: Option<String> = self.bounded(get.query_async(&mut connection)).await?;
        Ok(stored.as_deref().and_then(Record::decode))
    }

    /// Records the session this replica opened; `Ok(Some(other))` when another replica
    /// recorded one first (use that one), `Ok(None)` when this one is recorded now or is too
    /// large to share.
    pub(super) async fn claim(
        &self,
        upstream: &UpstreamId,
        downstream: Uuid,
        session_id: &str,
        initialize: &Value,
    ) -> Result<Option<Record>, SharedError> {
        let record = Record::encode(session_id, initialize);
        if record.len() > MAX_RECORD_BYTES {
            tracing::warn!(%upstream, bytes = record.len(), "the upstream's initialize result is too large to share; this replica keeps its own upstream session");
            return Ok(None);
        }
        let mut connection = self.connection.clone();
        let mut invocation = self.claim.prepare_invoke();
        invocation
            .key(self.key(upstream, downstream))
            .arg(record)
            .arg(self.ttl_millis());
        let existing: Option<String> = self
            .bounded(invocation.invoke_async(&mut connection))
            .await?;
        Ok(existing.as_deref().and_then(Record::decode))
    }

    /// Removes the record of `downstream` at `upstream` if it names `session_id`.
    pub(super) async fn release(
        &self,
        upstream: &UpstreamId,
        downstream: Uuid,
        session_id: &str,
    ) -> Result<(), SharedError> {
        let mut connection = self.connection.clone();
        let mut invocation = self.release.prepare_invoke();
        invocation
            .key(self.key(upstream, downstream))
            .arg(format!("{session_id}\n"));
        let _: i64 = self
            .bounded(invocation.invoke_async(&mut connection))
            .await?;
        Ok(())
    }

    /// Whether the record of `downstream` at `upstream` still names `session_id` (another
    /// replica renewed it within the idle timeout).
    pub(super) async fn in_use(
        &self,
        upstream: &UpstreamId,
        downstream: Uuid,
        session_id: &str,
    ) -> Result<bool, SharedError> {
        Ok(self
            .lookup(upstream, downstream)
            .await?
            .is_some_and(|r| r.session_id == session_id))
    }

    /// Whether this replica, dropping its copy of upstream session `session_id`, is to close
    /// it upstream: always when the client ended its session (`ended`; the record goes too);
    /// after idling out here, only when no other replica renewed the record since. When the
    /// store cannot be reached, a session that idled out here is left open (the upstream's own
    /// idle timeout ends it) rather than closed under replicas that may still use it.
    pub(super) async fn closes_here(
        &self,
        upstream: &UpstreamId,
        downstream: Uuid,
        session_id: &str,
        ended: bool,
    ) -> bool {
        let outcome = if ended {
            self.release(upstream, downstream, session_id)
                .await
                .map(|()| true)
        } else {
            self.in_use(upstream, downstream, session_id)
                .await
                .map(|used| !used)
        };
        outcome.unwrap_or_else(|error| {
            tracing::warn!(%upstream, %error, ended, "cannot reach the shared store; the upstream session is left to end by itself");
            ended
        })
    }

    /// Renews the record of `downstream` at `upstream` (in the background).
    pub(super) fn renew(&self, upstream: &UpstreamId, downstream: Uuid) {
        let mut expire = redis::cmd("PEXPIRE");
        expire
            .arg(self.key(upstream, downstream))
            .arg(self.ttl_millis());
        self.writes.push(vec![expire], 64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_a_malformed_one_is_none() {
        let init = serde_json::json!({"protocolVersion": "2025-06-18", "instructions": "a\nb"});
        let decoded = Record::decode(&Record::encode("s-1", &init)).unwrap();
        assert_eq!(decoded.session_id, "s-1");
        assert_eq!(decoded.initialize, init);
        assert!(Record::decode("no newline").is_none());
        assert!(Record::decode("s-1\nnot json").is_none());
    }
}
