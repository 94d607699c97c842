//! Client-facing task ids, bound to the principal that created the task.
//!
//! A task id is `{upstream}+{tag}.{taskId}`: the owning upstream (for routing), a tag, and the
//! upstream's own id. The tag is the first 8 bytes (hex) of HMAC-SHA256 over the creator's
//! principal digest, the upstream and the id, under a key derived from the session key (so every
//! replica sharing that key accepts it). An id presented by another principal fails the tag
//! check and is answered as unknown. Upstream connections may be shared between clients (stdio,
//! HTTP+SSE, modern clients), so an upstream's own `tasks/list` may hold other callers' tasks:
//! the merged list keeps only tasks whose creator was recorded as the caller. The record is this
//! replica's memory and, with a shared store (`limits.store: redis`, DESIGN.md §5.12), also
//! Redis (`{prefix}:task-owner:{upstream}:{taskId}`, first writer wins, kept as long as in
//! memory): a task created through one replica is listed through any. Records are written in
//! the background ([`crate::redis_writes`]); a list looks up the tasks it does not know in one
//! round trip and lists them only if the store names the caller (unreachable store: not listed).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{RedisConfig, UpstreamId};
use crate::redis_writes::WriteQueue;

/// Hex characters of the tag.
const TAG_HEX: usize = 16;
/// Most task owners remembered for listing.
pub const OWNERS: u64 = 100_000;
/// How long a task's owner is remembered for listing.
const OWNER_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Mints and checks client-facing task ids.
pub struct TaskIds {
    key: [u8; 32],
    owners: moka::sync::Cache<(UpstreamId, String), String>,
    shared: Option<SharedOwners>,
}

/// The task owner records in the shared store.
struct SharedOwners {
    writes: WriteQueue,
    connection: crate::redis_client::Connection,
    prefix: String,
    timeout: std::time::Duration,
}

impl SharedOwners {
    fn key(&self, upstream: &UpstreamId, task_id: &str) -> String {
        format!("{}:{upstream}:{task_id}", self.prefix)
    }
}

impl TaskIds {
    /// Task ids keyed from `session_key` (a per-process random key when `None`).
    pub fn new(session_key: Option<[u8; 32]>) -> Self {
        let key = match session_key {
            Some(k) => {
                let mut h = Sha256::new();
                h.update(b"mcpgate task ids\0");
                h.update(k);
                h.finalize().into()
            }
            None => rand::random(),
        };
        Self {
            key,
            owners: moka::sync::Cache::builder()
                .max_capacity(OWNERS)
                .time_to_live(OWNER_TTL)
                .build(),
            shared: None,
        }
    }

    /// Also records task owners in the Redis of `redis`, and looks up there the owners of
    /// tasks this replica did not see created.
    ///
    /// # Errors
    /// When the Redis URL cannot be used.
    pub fn with_store(mut self, redis: &RedisConfig) -> Result<Self, redis::RedisError> {
        self.shared = Some(SharedOwners {
            writes: WriteQueue::start(redis, "task owners")?,
            connection: crate::redis_client::Store::open(redis)?
                .connection(redis.timeout, redis.timeout)?,
            prefix: format!("{}:task-owner", redis.key_prefix),
            timeout: redis.timeout,
        });
        Ok(self)
    }

    fn tag(&self, owner: &str, upstream: &UpstreamId, task_id: &str) -> String {
        // HMAC accepts keys of any length; this cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return String::new();
        };
        for part in [
            owner.as_bytes(),
            upstream.as_str().as_bytes(),
            task_id.as_bytes(),
        ] {
            mac.update(part);
            mac.update(&[0]);
        }
        base16ct::lower::encode_string(&mac.finalize().into_bytes()[..TAG_HEX / 2])
    }

    /// The client-facing id of `task_id` of `upstream`, minted for `owner` (a principal
    /// digest; empty for the gateway itself). The first principal an id is minted for is
    /// remembered as the task's owner for listing, and is never replaced.
    pub fn wire(&self, upstream: &UpstreamId, task_id: &str, owner: &str) -> String {
        let recorded = self
            .owners
            .entry((upstream.clone(), task_id.to_string()))
            .or_insert_with(|| owner.to_string());
        if recorded.is_fresh()
            && let Some(shared) = &self.shared
        {
            let mut set = redis::cmd("SET");
            set.arg(shared.key(upstream, task_id))
                .arg(owner)
                .arg("NX")
                .arg("EX")
                .arg(OWNER_TTL.as_secs());
            shared.writes.push(vec![set], owner.len() + task_id.len());
        }
        format!(
            "{upstream}+{}.{task_id}",
            self.tag(owner, upstream, task_id)
        )
    }

    /// The upstream and upstream id of a client-facing id, if it names `upstream_of` an
    /// upstream and was minted for `owner`.
    pub fn open<'a>(
        &self,
        wire: &'a str,
        owner: &str,
        upstream_of: impl Fn(&str) -> Option<UpstreamId>,
    ) -> Option<(UpstreamId, &'a str)> {
        let (upstream, rest) = wire.split_once('+')?;
        let upstream = upstream_of(upstream)?;
        let (tag, task_id) = rest.split_at_checked(TAG_HEX)?;
        let task_id = task_id.strip_prefix('.')?;
        let expected = self.tag(owner, &upstream, task_id);
        bool::from(expected.as_bytes().ct_eq(tag.as_bytes())).then_some((upstream, task_id))
    }

    /// For each of `tasks` (upstream, upstream task id), whether it was recorded as created by
    /// `owner`: here, or else (with a shared store, one `MGET` for all the tasks not known
    /// here) in the store, whose answers are then remembered here. A task the store cannot be
    /// asked about counts as not `owner`'s (logged).
    pub async fn owned(&self, tasks: &[(&UpstreamId, &str)], owner: &str) -> Vec<bool> {
        let known: Vec<Option<String>> = tasks
            .iter()
            .map(|(up, id)| self.owners.get(&((*up).clone(), (*id).to_string())))
            .collect();
        let mut owned: Vec<bool> = known.iter().map(|o| o.as_deref() == Some(owner)).collect();
        let Some(shared) = &self.shared else {
            return owned;
        };
        let unknown: Vec<usize> = (0..tasks.len()).filter(|&i| known[i].is_none()).collect();
        if unknown.is_empty() {
            return owned;
        }
        let mut mget = redis::cmd("MGET");
        for &i in &unknown {
            mget.arg(shared.key(tasks[i].0, tasks[i].1));
        }
        let mut connection = shared.connection.clone();
        let found = tokio::time::timeout(
            shared.timeout,
            mget.query_async::<Vec<Option<String>>>(&mut connection),
        )
        .await;
        match found {
            Ok(Ok(found)) => {
                for (&i, recorded) in unknown.iter().zip(found) {
                    if let Some(recorded) = recorded {
                        owned[i] = recorded == owner;
                        self.owners
                            .insert((tasks[i].0.clone(), tasks[i].1.to_string()), recorded);
                    }
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, tasks = unknown.len(), "cannot look up task owners in the shared store; tasks created through other replicas are not listed");
            }
            Err(_) => {
                tracing::warn!(
                    tasks = unknown.len(),
                    "the shared store did not answer a task owner lookup in time; tasks created through other replicas are not listed"
                );
            }
        }
        owned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ids_open_only_for_their_owner() {
        let ids = TaskIds::new(Some([7; 32]));
        let up = UpstreamId::parse("jobs").unwrap();
        let find = |name: &str| (name == "jobs").then(|| up.clone());
        let wire = ids.wire(&up, "t.1+x", "alice");
        assert!(
            wire.starts_with("jobs+") && wire.ends_with(".t.1+x"),
            "{wire}"
        );
        assert_eq!(ids.open(&wire, "alice", find), Some((up.clone(), "t.1+x")));
        assert_eq!(ids.open(&wire, "bob", find), None);
        assert_eq!(ids.open("jobs+t.1+x", "alice", find), None, "untagged");
        assert_eq!(ids.open("other+0000000000000000.t", "alice", find), None);
        let task = [(&up, "t.1+x")];
        assert_eq!(ids.owned(&task, "alice").await, [true]);
        assert_eq!(ids.owned(&task, "bob").await, [false]);
        assert_eq!(ids.owned(&[(&up, "never")], "alice").await, [false]);
        // Minting the id for someone else later never changes the recorded owner.
        let _ = ids.wire(&up, "t.1+x", "bob");
        assert_eq!(ids.owned(&task, "alice").await, [true]);
        assert_eq!(ids.owned(&task, "bob").await, [false]);
        let replica = TaskIds::new(Some([7; 32]));
        assert!(
            replica.open(&wire, "alice", find).is_some(),
            "same key, same ids"
        );
        assert!(TaskIds::new(None).open(&wire, "alice", find).is_none());
    }
}
