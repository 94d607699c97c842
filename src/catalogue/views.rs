//! Filtered views of one snapshot: which entries of a list a class of callers may see, decided
//! once per snapshot and class instead of once per entry per `*/list` request.
//!
//! A class of callers is a [`ViewKey`]: the policy set in force, the roles held and the mode —
//! everything [`crate::policy::Grant::lists`] decides on. Callers with the same roles share a
//! view. Views live in their snapshot: a new snapshot (any listing change) starts with none, so
//! a view can never outlive the entries it indexes.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::{Entry, ListKind};
use crate::policy::{Mode, PolicySet};

/// Most bytes of entry positions the views of one snapshot hold (about 1,000 views of a
/// 1,000-entry list); the least recently used are dropped beyond it and recomputed on demand.
const MAX_VIEW_BYTES: u64 = 4 * 1024 * 1024;

/// The class of callers a view is for. Two keys are equal only for the same policy set object
/// (compared by identity; the key holds it, so its address cannot be reused while the key
/// lives), the same held roles and the same mode.
#[derive(Debug, Clone)]
pub struct ViewKey {
    /// The policy set in force.
    pub set: Arc<PolicySet>,
    /// Indices of the roles held in `set.roles`, in policy order.
    pub held: Vec<usize>,
    /// Enforce or audit.
    pub mode: Mode,
}

impl PartialEq for ViewKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.set, &other.set) && self.held == other.held && self.mode == other.mode
    }
}

impl Eq for ViewKey {}

impl Hash for ViewKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.set).hash(state);
        self.held.hash(state);
        self.mode.hash(state);
    }
}

/// The views of one snapshot, bounded by [`MAX_VIEW_BYTES`].
pub(super) struct Views {
    cache: moka::sync::Cache<(ListKind, ViewKey), Arc<[u32]>>,
}

impl std::fmt::Debug for Views {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Views")
            .field("count", &self.cache.entry_count())
            .finish()
    }
}

impl Views {
    pub(super) fn new() -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(MAX_VIEW_BYTES)
                .weigher(|_, positions: &Arc<[u32]>| {
                    u32::try_from(positions.len().saturating_mul(4).saturating_add(64))
                        .unwrap_or(u32::MAX)
                })
                .build(),
        }
    }

    /// The ascending positions in `entries` (the list of `kind`) of the entries `visible`
    /// keeps, computed at most once per key while it is cached.
    pub(super) fn get(
        &self,
        kind: ListKind,
        key: ViewKey,
        entries: &[Arc<Entry>],
        visible: &dyn Fn(&Entry) -> bool,
    ) -> Arc<[u32]> {
        self.cache.get_with((kind, key), || {
            entries
                .iter()
                .enumerate()
                .filter(|(_, e)| visible(e))
                // A list is far below 2^32 entries (each is a JSON object from an upstream).
                .filter_map(|(i, _)| u32::try_from(i).ok())
                .collect()
        })
    }
}
