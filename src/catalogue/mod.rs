//! The merged catalogue: tools, prompts, resources and resource templates of every upstream,
//! namespaced, sorted and paged with gateway cursors (DESIGN.md §5.1, §5.2).
//!
//! The catalogue plane keeps the *last good* listing of each upstream and rebuilds one immutable
//! [`Snapshot`] whenever a listing changes; lists are served from the current snapshot without
//! touching an upstream. This is a refresh-ahead store rather than a TTL cache on purpose: a TTL
//! cache would evict an upstream's entries exactly when the upstream is down, and the gateway
//! must keep serving them. Refresh happens on a timer, on `list_changed`, and on reconnect
//! ([`refresh`]).

pub mod cursor;
pub mod merge;
pub mod namespace;
pub mod refresh;
pub mod views;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use serde_json::Value;
use tokio::sync::watch;

use crate::config::{CatalogueConfig, NamespacingConfig, UpstreamId};
use crate::error::GatewayError;
use crate::telemetry::Metrics;
use crate::upstream::{CallContext, Plan, Upstream, UpstreamError, UpstreamInfo, UpstreamSet};
use namespace::Namespacer;
pub use views::ViewKey;

/// Longest chain of pages read from one upstream list; a server that never stops paging is cut
/// off here.
const MAX_UPSTREAM_PAGES: usize = 1000;

/// The four merged lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// `tools/list`
    Tools,
    /// `prompts/list`
    Prompts,
    /// `resources/list`
    Resources,
    /// `resources/templates/list`
    ResourceTemplates,
}

impl ListKind {
    /// Every kind, in index order.
    pub const ALL: [Self; 4] = [
        Self::Tools,
        Self::Prompts,
        Self::Resources,
        Self::ResourceTemplates,
    ];

    /// The list method.
    pub fn method(self) -> &'static str {
        match self {
            Self::Tools => "tools/list",
            Self::Prompts => "prompts/list",
            Self::Resources => "resources/list",
            Self::ResourceTemplates => "resources/templates/list",
        }
    }

    /// The kind listed by a method, if it is a list method.
    pub fn from_method(method: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.method() == method)
    }

    /// The metric label: `tools`, `prompts`, `resources`, `resource_templates`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::Prompts => "prompts",
            Self::Resources => "resources",
            Self::ResourceTemplates => "resource_templates",
        }
    }

    /// The member of the result that holds the entries.
    pub fn result_member(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::Prompts => "prompts",
            Self::Resources => "resources",
            Self::ResourceTemplates => "resourceTemplates",
        }
    }

    /// The `notifications/*/list_changed` method announcing a change of this list (templates
    /// share the resources notification).
    pub fn list_changed(self) -> &'static str {
        match self {
            Self::Tools => "notifications/tools/list_changed",
            Self::Prompts => "notifications/prompts/list_changed",
            Self::Resources | Self::ResourceTemplates => "notifications/resources/list_changed",
        }
    }

    /// The entry field that is namespaced and keys the list.
    pub fn key_field(self) -> &'static str {
        match self {
            Self::Tools | Self::Prompts => "name",
            Self::Resources => "uri",
            Self::ResourceTemplates => "uriTemplate",
        }
    }

    /// The server capability that announces this list.
    fn capability(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::Prompts => "prompts",
            Self::Resources | Self::ResourceTemplates => "resources",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One merged entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The client-facing name or URI (the list key).
    pub key: String,
    /// The owning upstream.
    pub upstream: UpstreamId,
    /// The upstream's own name or URI.
    pub original: String,
    /// Whether the name was shortened to fit the name budget.
    pub aliased: bool,
    /// The entry as served: the upstream's object with its key field rewritten.
    pub value: Value,
    /// `value` serialized, what list pages are made of.
    pub json: String,
    /// Tools: the `x-mcp-header` annotations of its `inputSchema`, read once at merge time.
    pub param_headers: Vec<crate::param_headers::Annotation>,
    /// The canonical policy target, `upstream/name` (DESIGN.md §5.1): the upstream's own name,
    /// or its URI in RFC 3986 normal form ([`crate::uri`]); `None` for a URI too ambiguous to
    /// normalize, which no policy allows. Computed once at merge time.
    pub target: Option<String>,
}

/// The canonical policy target of `original` (the upstream's own name or URI) of `upstream`
/// in list `kind`; see [`Entry::target`].
pub fn canonical_target(kind: ListKind, upstream: &UpstreamId, original: &str) -> Option<String> {
    match kind {
        ListKind::Tools | ListKind::Prompts => Some(format!("{upstream}/{original}")),
        ListKind::Resources | ListKind::ResourceTemplates => crate::uri::normalize(original)
            .ok()
            .map(|uri| format!("{upstream}/{uri}")),
    }
}

/// The last good listing of one upstream.
#[derive(Debug, Clone, Default)]
pub struct UpstreamListing {
    /// What the upstream said about itself.
    pub info: Option<UpstreamInfo>,
    /// Raw entries per [`ListKind`], in upstream order.
    pub lists: [Vec<Value>; 4],
    /// Whether the most recent refresh succeeded.
    pub up: bool,
    /// The most recent refresh error, for `mcpgate catalogue` and logs.
    pub last_error: Option<String>,
}

/// An immutable merged catalogue.
#[derive(Debug)]
pub struct Snapshot {
    lists: [Vec<Arc<Entry>>; 4],
    /// Key → position, for tools, prompts and resources.
    index: [HashMap<String, usize>; 3],
    /// Keys claimed by several upstreams: (kind, key, upstream ids). Served by none.
    pub conflicts: Vec<(ListKind, String, Vec<String>)>,
    /// Every upstream's listing, in configuration order.
    pub upstreams: Vec<(UpstreamId, Arc<UpstreamListing>)>,
    namespacer: Namespacer,
    /// Filtered views of the lists, per class of callers.
    views: views::Views,
}

impl Snapshot {
    /// The entries of one list, sorted by key.
    pub fn entries(&self, kind: ListKind) -> &[Arc<Entry>] {
        &self.lists[kind.index()]
    }

    /// The tool with this client-facing name.
    pub fn tool(&self, key: &str) -> Option<&Arc<Entry>> {
        self.entry(ListKind::Tools, key)
    }

    /// The prompt with this client-facing name.
    pub fn prompt(&self, key: &str) -> Option<&Arc<Entry>> {
        self.entry(ListKind::Prompts, key)
    }

    /// The entry of list `kind` with this client-facing key.
    pub fn entry(&self, kind: ListKind, key: &str) -> Option<&Arc<Entry>> {
        match self.index.get(kind.index()) {
            Some(index) => self.lists[kind.index()].get(*index.get(key)?),
            // Templates are not indexed: the list is sorted by key.
            None => {
                let list = &self.lists[kind.index()];
                list.binary_search_by(|e| e.key.as_str().cmp(key))
                    .ok()
                    .map(|i| &list[i])
            }
        }
    }

    /// The owner and upstream URI of a client-facing resource URI. Prefixed URIs are split;
    /// unprefixed ones belong to the single upstream, or (prefix mode `never`) to the upstream
    /// listing that exact URI or owning the template with the longest matching literal prefix.
    pub fn resolve_uri(&self, wire: &str) -> Option<(UpstreamId, String)> {
        if self.namespacer.is_prefixed() {
            let (up, uri) = self.namespacer.split_uri(wire)?;
            let (id, _) = self.upstreams.iter().find(|(id, _)| id.as_str() == up)?;
            return Some((id.clone(), uri.to_string()));
        }
        if let [(only, _)] = self.upstreams.as_slice() {
            return Some((only.clone(), wire.to_string()));
        }
        if let Some(entry) = self.entry(ListKind::Resources, wire) {
            return Some((entry.upstream.clone(), entry.original.clone()));
        }
        let mut best: Option<(usize, &Entry, bool)> = None;
        for t in self.entries(ListKind::ResourceTemplates) {
            let literal = t.original.split('{').next().unwrap_or_default();
            if literal.is_empty() || !wire.starts_with(literal) {
                continue;
            }
            best = match best {
                Some((len, e, _)) if len > literal.len() => Some((len, e, false)),
                Some((len, e, _)) if len == literal.len() && e.upstream != t.upstream => {
                    Some((len, e, true))
                }
                _ => Some((literal.len(), t, false)),
            };
        }
        match best {
            Some((_, e, false)) => Some((e.upstream.clone(), wire.to_string())),
            _ => None,
        }
    }

    /// The client-facing form of an upstream URI.
    pub fn wire_uri(&self, upstream: &UpstreamId, uri: &str) -> String {
        self.namespacer.uri(upstream, uri)
    }

    /// One page of a merged list, of the entries `visible` keeps: `{"<member>": [...],
    /// "nextCursor"?: "..."}`. Cursors name the last key served, so filtering per caller keeps
    /// them stable. Every entry from the cursor on is tested; a caller whose visibility is a
    /// [`ViewKey`] uses [`Snapshot::page_for`] instead.
    ///
    /// # Errors
    /// [`GatewayError::InvalidCursor`] for a cursor this gateway did not issue for `kind`.
    pub fn page(
        &self,
        kind: ListKind,
        cursor: Option<&str>,
        page_size: usize,
        visible: &dyn Fn(&Entry) -> bool,
    ) -> Result<Page, GatewayError> {
        let entries = self.entries(kind);
        let start = match after(kind, cursor)? {
            None => 0,
            Some(after) => entries.partition_point(|e| e.key.as_str() <= after.as_str()),
        };
        let shown = entries[start..].iter().filter(|e| visible(e));
        Ok(Page::of(kind, page_size, shown))
    }

    /// As [`Snapshot::page`], for callers of class `view` (`None`: every entry is shown): the
    /// entries `visible` keeps are found once per snapshot and class ([`views`]) and the page is
    /// cut from them, so a filtered list costs about what an unfiltered one does.
    ///
    /// # Errors
    /// [`GatewayError::InvalidCursor`] for a cursor this gateway did not issue for `kind`.
    pub fn page_for(
        &self,
        kind: ListKind,
        cursor: Option<&str>,
        page_size: usize,
        view: Option<ViewKey>,
        visible: &dyn Fn(&Entry) -> bool,
    ) -> Result<Page, GatewayError> {
        let Some(key) = view else {
            return self.page(kind, cursor, page_size, &|_| true);
        };
        let entries = self.entries(kind);
        let positions = self.views.get(kind, key, entries, visible);
        let after = after(kind, cursor)?;
        let start = match &after {
            None => 0,
            Some(after) => positions.partition_point(|&i| {
                entries
                    .get(i as usize)
                    .is_some_and(|e| e.key.as_str() <= after.as_str())
            }),
        };
        let shown = positions[start..]
            .iter()
            .filter_map(|&i| entries.get(i as usize));
        Ok(Page::of(kind, page_size, shown))
    }
}

/// The key a list cursor names, `None` without a cursor.
fn after(kind: ListKind, cursor: Option<&str>) -> Result<Option<String>, GatewayError> {
    cursor
        .map(|c| cursor::decode(kind, c).map_err(|_| GatewayError::InvalidCursor))
        .transpose()
}

/// One page of a merged list, serialized from the entries' own bytes: the result object
/// (`{"tools":[…],"nextCursor":…}`) still open, so that a transport can add members of its
/// own ([`Page::close_with`]).
#[derive(Debug, Clone)]
pub struct Page {
    open: Vec<u8>,
}

impl Page {
    /// The first `page_size` entries of `shown` (the entries after the cursor that the caller
    /// sees), with `nextCursor` naming the last one when more follow.
    fn of<'a>(
        kind: ListKind,
        page_size: usize,
        mut shown: impl Iterator<Item = &'a Arc<Entry>>,
    ) -> Self {
        let page: Vec<&Arc<Entry>> = shown.by_ref().take(page_size).collect();
        let more = shown.next().is_some();
        let size: usize = page.iter().map(|e| e.json.len() + 1).sum();
        let mut open = Vec::with_capacity(size + 64);
        open.extend_from_slice(b"{\"");
        open.extend_from_slice(kind.result_member().as_bytes());
        open.extend_from_slice(b"\":[");
        for (i, entry) in page.iter().enumerate() {
            if i > 0 {
                open.push(b',');
            }
            open.extend_from_slice(entry.json.as_bytes());
        }
        open.push(b']');
        if more && let Some(last) = page.last() {
            open.extend_from_slice(b",\"nextCursor\":");
            let cursor = Value::from(cursor::encode(kind, &last.key));
            open.extend_from_slice(cursor.to_string().as_bytes());
        }
        Self { open }
    }

    /// The result object with the members of `extra` (an object) added.
    pub fn close_with(mut self, extra: &Value) -> Vec<u8> {
        if let Some(members) = extra.as_object() {
            for (key, value) in members {
                self.open.push(b',');
                self.open
                    .extend_from_slice(Value::from(key.as_str()).to_string().as_bytes());
                self.open.push(b':');
                self.open.extend_from_slice(value.to_string().as_bytes());
            }
        }
        self.open.push(b'}');
        self.open
    }

    /// The result object as a value (tests, tools).
    pub fn to_value(&self) -> Value {
        let mut bytes = self.open.clone();
        bytes.push(b'}');
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }
}

/// The listings of a reload's fresh upstreams ([`Catalogue::list_fresh`]).
pub struct Listed(Vec<(UpstreamId, UpstreamListing)>);

/// What snapshots are merged from: the naming in force and each upstream's last good listing,
/// in configuration order.
struct Plane {
    namespacer: Namespacer,
    listings: Vec<(UpstreamId, Arc<UpstreamListing>)>,
}

/// The catalogue: the current snapshot plus what is needed to refresh it.
pub struct Catalogue {
    upstreams: Arc<UpstreamSet>,
    /// Settings for refresh and paging.
    pub config: CatalogueConfig,
    plane: Mutex<Plane>,
    current: RwLock<Arc<Snapshot>>,
    ready: watch::Sender<bool>,
    changes: tokio::sync::broadcast::Sender<Vec<ListKind>>,
    metrics: Metrics,
}

impl Catalogue {
    /// An empty catalogue over `upstreams`; call [`refresh::Tasks::spawn`] or
    /// [`Catalogue::refresh_all`] to fill it.
    pub fn new(
        upstreams: Arc<UpstreamSet>,
        namespacing: &NamespacingConfig,
        config: CatalogueConfig,
        metrics: Metrics,
    ) -> Self {
        let members = upstreams.all();
        let namespacer = Namespacer::new(namespacing, members.len());
        let listings: Vec<_> = members
            .iter()
            .map(|u| (u.id().clone(), Arc::new(UpstreamListing::default())))
            .collect();
        let snapshot = merge::merge(&namespacer, &listings);
        Self {
            upstreams,
            config,
            plane: Mutex::new(Plane {
                namespacer,
                listings,
            }),
            current: RwLock::new(Arc::new(snapshot)),
            ready: watch::channel(false).0,
            changes: tokio::sync::broadcast::channel(64).0,
            metrics,
        }
    }

    /// The current snapshot (cheap: one `Arc` clone).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The upstreams behind the catalogue.
    pub fn upstreams(&self) -> &Arc<UpstreamSet> {
        &self.upstreams
    }

    /// Resolves once the first refresh of every upstream has finished (successfully or not).
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Whether the first refresh round has finished.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Refreshes every upstream concurrently, then marks the catalogue ready.
    pub async fn refresh_all(&self) {
        let all = self.upstreams.all();
        futures::future::join_all(all.iter().map(|u| self.refresh_upstream(u))).await;
        self.ready.send_replace(true);
    }

    /// Re-lists one upstream. On failure its last good entries stay and the error is recorded,
    /// logged and counted. Returns whether the refresh succeeded.
    /// A listing of an upstream that a configuration reload has meanwhile replaced or removed
    /// is dropped (it would overwrite its successor's).
    pub async fn refresh_upstream(&self, upstream: &Upstream) -> bool {
        let id = upstream.id().clone();
        let fetched = fetch_listing(upstream).await;
        let in_force = self
            .upstreams
            .get(id.as_str())
            .is_some_and(|current| std::ptr::eq(Arc::as_ptr(&current), upstream));
        if !in_force {
            tracing::debug!(upstream = %id, "listing of a replaced upstream dropped");
            return fetched.is_ok();
        }
        let (listing, ok) = self.outcome(&id, fetched);
        self.store(id, listing);
        ok
    }

    /// The listing to keep for upstream `id` after a fetch: the fetched one, or on failure
    /// the last good entries marked down (the failure logged and counted); and whether the
    /// fetch succeeded.
    fn outcome(
        &self,
        id: &UpstreamId,
        fetched: Result<UpstreamListing, UpstreamError>,
    ) -> (UpstreamListing, bool) {
        let ok = fetched.is_ok();
        let listing = match fetched {
            Ok(listing) => listing,
            Err(e) => {
                tracing::warn!(upstream = %id, error = %e, "catalogue refresh failed; serving the last good entries");
                self.metrics
                    .catalogue_refresh_failures
                    .with_label_values(&[id.as_str()])
                    .inc();
                let previous = self.listing(id).unwrap_or_default();
                UpstreamListing {
                    up: false,
                    last_error: Some(e.to_string()),
                    ..(*previous).clone()
                }
            }
        };
        self.metrics
            .upstream_up
            .with_label_values(&[id.as_str()])
            .set(i64::from(ok));
        (listing, ok)
    }

    /// Lists the fresh upstreams of `plan` (a configuration reload), concurrently, each
    /// within its timeout; one that fails keeps the entries its predecessor of the same id
    /// had, marked stale, and is retried by its refresh task. Nothing is in force until
    /// [`Catalogue::reconfigure`].
    pub async fn list_fresh(&self, plan: &Plan) -> Listed {
        let fetched = futures::future::join_all(plan.fresh.iter().map(|u| async {
            let listing = match tokio::time::timeout(u.timeout(), fetch_listing(u)).await {
                Ok(listing) => listing,
                Err(_) => Err(UpstreamError::Timeout),
            };
            (u.id().clone(), self.outcome(u.id(), listing).0)
        }))
        .await;
        Listed(fetched)
    }

    /// Puts the upstreams of `plan`, with the `fresh` listings, and the naming of
    /// `namespacing` in force in the merged lists: one snapshot replaces the current one and
    /// subscribers hear of every list whose entries changed. Unchanged upstreams keep their
    /// listings; removed ones take their entries and series with them.
    pub fn reconfigure(&self, namespacing: &NamespacingConfig, plan: &Plan, fresh: Listed) {
        let Listed(mut fetched) = fresh;
        let mut plane = self.plane.lock().unwrap_or_else(|p| p.into_inner());
        let listings = plan
            .next
            .iter()
            .map(|u| {
                let id = u.id().clone();
                let listing = match fetched.iter().position(|(f, _)| *f == id) {
                    Some(at) => Arc::new(std::mem::take(&mut fetched[at].1)),
                    None => plane
                        .listings
                        .iter()
                        .find(|(i, _)| *i == id)
                        .map(|(_, l)| Arc::clone(l))
                        .unwrap_or_default(),
                };
                (id, listing)
            })
            .collect();
        for (gone, _) in plane
            .listings
            .iter()
            .filter(|(id, _)| !plan.next.iter().any(|u| u.id() == id))
        {
            self.forget_series(gone);
        }
        *plane = Plane {
            namespacer: Namespacer::new(namespacing, plan.next.len()),
            listings,
        };
        self.publish(plane, "configuration reload");
    }

    /// Removes the per-upstream series of an upstream that left the configuration.
    fn forget_series(&self, id: &UpstreamId) {
        let _ = self.metrics.upstream_up.remove_label_values(&[id.as_str()]);
        for kind in ListKind::ALL {
            let _ = self
                .metrics
                .catalogue_entries
                .remove_label_values(&[id.as_str(), kind.label()]);
        }
    }

    /// Whether the most recent refresh of upstream `id` succeeded (`None`: not configured).
    pub fn is_fresh(&self, id: &UpstreamId) -> Option<bool> {
        self.listing(id).map(|l| l.up)
    }

    fn listing(&self, id: &UpstreamId) -> Option<Arc<UpstreamListing>> {
        let plane = self.plane.lock().unwrap_or_else(|p| p.into_inner());
        plane
            .listings
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, l)| Arc::clone(l))
    }

    fn store(&self, id: UpstreamId, listing: UpstreamListing) {
        let mut plane = self.plane.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = plane.listings.iter_mut().find(|(i, _)| *i == id) {
            slot.1 = Arc::new(listing);
        }
        self.publish(plane, id.as_str());
    }

    /// Merges `plane` into the current snapshot and tells subscribers which lists changed
    /// (after the first round); `cause` names what changed, for the log.
    fn publish(&self, plane: std::sync::MutexGuard<'_, Plane>, cause: &str) {
        let snapshot = Arc::new(merge::merge(&plane.namespacer, &plane.listings));
        let previous = std::mem::replace(
            &mut *self.current.write().unwrap_or_else(|p| p.into_inner()),
            Arc::clone(&snapshot),
        );
        drop(plane);
        self.count_entries(&snapshot);
        let changed: Vec<ListKind> = ListKind::ALL
            .into_iter()
            .filter(|k| previous.entries(*k) != snapshot.entries(*k))
            .collect();
        if !changed.is_empty() && self.is_ready() {
            tracing::info!(%cause, kinds = ?changed, "merged catalogue changed");
            let _ = self.changes.send(changed);
        }
    }

    /// Sets `mcpgate_catalogue_entries` and `mcpgate_catalogue_conflicts` from `snapshot`.
    fn count_entries(&self, snapshot: &Snapshot) {
        for kind in ListKind::ALL {
            let mut counts: HashMap<&str, i64> = HashMap::new();
            for entry in snapshot.entries(kind) {
                *counts.entry(entry.upstream.as_str()).or_default() += 1;
            }
            for (id, _) in &snapshot.upstreams {
                let n = counts.get(id.as_str()).copied().unwrap_or(0);
                self.metrics
                    .catalogue_entries
                    .with_label_values(&[id.as_str(), kind.label()])
                    .set(n);
            }
        }
        self.metrics
            .catalogue_conflicts
            .set(i64::try_from(snapshot.conflicts.len()).unwrap_or(i64::MAX));
    }

    /// Subscribes to changes of the merged lists: each message names the lists whose entries
    /// changed (after the first refresh round).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Vec<ListKind>> {
        self.changes.subscribe()
    }
}

/// Lists every page of every list the upstream announces in its capabilities.
async fn fetch_listing(upstream: &Upstream) -> Result<UpstreamListing, UpstreamError> {
    let info = upstream.info().await?;
    let mut lists: [Vec<Value>; 4] = Default::default();
    for kind in ListKind::ALL {
        if info.capabilities.get(kind.capability()).is_some() {
            lists[kind.index()] = fetch_all_pages(upstream, kind).await?;
        }
    }
    Ok(UpstreamListing {
        info: Some(info),
        lists,
        up: true,
        last_error: None,
    })
}

async fn fetch_all_pages(upstream: &Upstream, kind: ListKind) -> Result<Vec<Value>, UpstreamError> {
    let ctx = CallContext::shared();
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..MAX_UPSTREAM_PAGES {
        let params = cursor.as_ref().map(|c| serde_json::json!({ "cursor": c }));
        let result = upstream
            .request(&ctx, kind.method(), params)
            .await?
            .map_err(|error| UpstreamError::Protocol {
                detail: format!("{} failed: {error}", kind.method()).into(),
            })?;
        match result.get(kind.result_member()).and_then(Value::as_array) {
            Some(page) => entries.extend(page.iter().cloned()),
            None => {
                return Err(UpstreamError::Protocol {
                    detail: format!(
                        "{} result has no `{}` array",
                        kind.method(),
                        kind.result_member()
                    )
                    .into(),
                });
            }
        }
        match result.get("nextCursor").and_then(Value::as_str) {
            Some(next) if seen.insert(next.to_string()) => cursor = Some(next.to_string()),
            Some(_) => {
                return Err(UpstreamError::Protocol {
                    detail: format!("{} repeated a cursor", kind.method()).into(),
                });
            }
            None => return Ok(entries),
        }
    }
    Err(UpstreamError::Protocol {
        detail: format!(
            "{} returned more than {MAX_UPSTREAM_PAGES} pages",
            kind.method()
        )
        .into(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::config::PrefixMode;

    fn snapshot(names: &BTreeSet<String>) -> Snapshot {
        let ns = Namespacer::new(
            &NamespacingConfig {
                separator: "__".into(),
                prefix: PrefixMode::Conditional,
            },
            1,
        );
        let listing = UpstreamListing {
            lists: [
                names.iter().map(|n| json!({ "name": n })).collect(),
                vec![],
                vec![],
                vec![],
            ],
            ..UpstreamListing::default()
        };
        let id = UpstreamId::parse("only").unwrap();
        merge::merge(&ns, &[(id, Arc::new(listing))])
    }

    fn page_names(page: &Value) -> Vec<String> {
        page["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    }

    proptest! {
        /// Following cursors yields every entry once, in order.
        #[test]
        fn pages_cover_the_list_exactly(
            names in proptest::collection::btree_set("[a-z]{1,6}", 0..60),
            size in 1usize..10,
        ) {
            let snap = snapshot(&names);
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let page = snap.page(ListKind::Tools, cursor.as_deref(), size, &|_| true).unwrap().to_value();
                let got = page_names(&page);
                prop_assert!(got.len() <= size);
                seen.extend(got);
                match page.get("nextCursor").and_then(Value::as_str) {
                    Some(c) => cursor = Some(c.to_string()),
                    None => break,
                }
            }
            prop_assert_eq!(seen, names.into_iter().collect::<Vec<_>>());
        }

        /// A cursor issued before a change continues correctly after it: entries present in
        /// both catalogues and after the cursor are neither skipped nor repeated.
        #[test]
        fn cursors_survive_changes(
            before in proptest::collection::btree_set("[a-z]{1,4}", 2..40),
            added in proptest::collection::btree_set("[a-z]{1,4}", 0..20),
            size in 1usize..8,
        ) {
            let first = snapshot(&before).page(ListKind::Tools, None, size, &|_| true).unwrap().to_value();
            let Some(cursor) = first.get("nextCursor").and_then(Value::as_str) else {
                return Ok(());
            };
            let last = page_names(&first).pop().unwrap();
            let after: BTreeSet<String> = before.union(&added).cloned().collect();
            let next = snapshot(&after).page(ListKind::Tools, Some(cursor), usize::MAX, &|_| true).unwrap().to_value();
            let expected: Vec<String> = after.into_iter().filter(|n| *n > last).collect();
            prop_assert_eq!(page_names(&next), expected);
        }
    }

    /// A view key over a one-role policy set (its decisions are not what the views test: the
    /// `visible` closures are).
    fn view_key(held: Vec<usize>) -> ViewKey {
        let yaml = "roles:\n  - name: r\n    subjects: [{ claim: sub, any_of: [x] }]\n    allow:\n      tools: [\"only/*\"]\n";
        let set =
            crate::policy::compile::compile(&[("p.yaml".into(), yaml.into())], &["only".into()])
                .unwrap();
        ViewKey {
            set: Arc::new(set),
            held,
            mode: crate::policy::Mode::Enforce,
        }
    }

    /// Every page of a list read through cursors.
    fn read_all(read: &dyn Fn(Option<&str>) -> Value) -> Vec<Vec<String>> {
        let mut pages = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = read(cursor.as_deref());
            pages.push(page_names(&page));
            match page.get("nextCursor").and_then(Value::as_str) {
                Some(c) => cursor = Some(c.to_string()),
                None => return pages,
            }
        }
    }

    proptest! {
        /// A cached view serves exactly the pages (entries, order, cursors) that filtering
        /// every entry on each request serves.
        #[test]
        fn cached_views_page_like_filtering(
            names in proptest::collection::btree_set("[a-z]{1,5}", 0..60),
            shown in proptest::collection::btree_set(proptest::char::range('a', 'z'), 0..26),
            size in 1usize..10,
        ) {
            let snap = snapshot(&names);
            let visible = |e: &Entry| e.key.chars().next().is_some_and(|c| shown.contains(&c));
            let key = view_key(vec![0]);
            let filtered = read_all(&|c| snap.page(ListKind::Tools, c, size, &visible).unwrap().to_value());
            let viewed = read_all(&|c| {
                snap.page_for(ListKind::Tools, c, size, Some(key.clone()), &visible).unwrap().to_value()
            });
            prop_assert_eq!(viewed, filtered);
        }
    }

    #[test]
    fn a_view_is_computed_once_per_class_of_callers() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let snap = snapshot(&["a".to_string(), "b".to_string(), "c".to_string()].into());
        let tests = AtomicUsize::new(0);
        let only_b = |e: &Entry| {
            tests.fetch_add(1, Ordering::Relaxed);
            e.key == "b"
        };
        let key = view_key(vec![0]);
        for _ in 0..3 {
            let page = snap
                .page_for(ListKind::Tools, None, 10, Some(key.clone()), &only_b)
                .unwrap();
            assert_eq!(page_names(&page.to_value()), ["b"]);
        }
        assert_eq!(
            tests.load(Ordering::Relaxed),
            3,
            "three entries tested once"
        );
        // Other roles held, or another policy set with the same content: another class.
        let others = [
            view_key(vec![]),
            ViewKey {
                held: vec![0],
                ..view_key(vec![0])
            },
        ];
        for other in others {
            let all = snap
                .page_for(ListKind::Tools, None, 10, Some(other), &|_| true)
                .unwrap();
            assert_eq!(page_names(&all.to_value()), ["a", "b", "c"]);
        }
        // No key: nothing is filtered.
        let all = snap
            .page_for(ListKind::Tools, None, 10, None, &only_b)
            .unwrap();
        assert_eq!(page_names(&all.to_value()), ["a", "b", "c"]);
        // A foreign cursor is refused on the cached path too.
        let err = snap
            .page_for(ListKind::Tools, Some("bogus"), 10, Some(key), &only_b)
            .unwrap_err();
        assert!(matches!(err, GatewayError::InvalidCursor));
    }

    #[test]
    fn a_foreign_cursor_is_rejected() {
        let snap = snapshot(&["a".to_string()].into());
        let err = snap
            .page(ListKind::Tools, Some("bogus"), 10, &|_| true)
            .unwrap_err();
        assert!(matches!(err, GatewayError::InvalidCursor));
    }
}
