//! Client-facing task ids, bound to the principal that created the task.
//!
//! A task id is `{upstream}+{tag}.{taskId}`: the owning upstream (for routing), a tag, and the
//! upstream's own id. The tag is the first 8 bytes (hex) of HMAC-SHA256 over the creator's
//! principal digest, the upstream and the id, under a key derived from the session key (so every
//! replica sharing that key accepts it). An id presented by another principal fails the tag
//! check and is answered as unknown. Upstream connections may be shared between clients (stdio,
//! HTTP+SSE, modern clients), so an upstream's own `tasks/list` may hold other callers' tasks:
//! the merged list keeps only tasks this replica saw created by the caller.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::UpstreamId;

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
        }
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
        self.owners
            .entry((upstream.clone(), task_id.to_string()))
            .or_insert_with(|| owner.to_string());
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

    /// Whether this replica saw `owner` create `task_id` of `upstream`.
    pub fn owned_by(&self, upstream: &UpstreamId, task_id: &str, owner: &str) -> bool {
        self.owners
            .get(&(upstream.clone(), task_id.to_string()))
            .is_some_and(|o| o == owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_open_only_for_their_owner() {
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
        assert!(ids.owned_by(&up, "t.1+x", "alice"));
        assert!(!ids.owned_by(&up, "t.1+x", "bob"));
        // Minting the id for someone else later never changes the recorded owner.
        let _ = ids.wire(&up, "t.1+x", "bob");
        assert!(ids.owned_by(&up, "t.1+x", "alice"));
        assert!(!ids.owned_by(&up, "t.1+x", "bob"));
        let replica = TaskIds::new(Some([7; 32]));
        assert!(
            replica.open(&wire, "alice", find).is_some(),
            "same key, same ids"
        );
        assert!(TaskIds::new(None).open(&wire, "alice", find).is_none());
    }
}
