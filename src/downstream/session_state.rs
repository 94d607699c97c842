//! Local state of legacy sessions on this replica: server→client requests waiting for the
//! client's answer, and requests in flight that the client may cancel. Kept in a map with an
//! idle TTL (DESIGN.md §5.4); the sealed session id itself carries everything needed to resume
//! a session elsewhere, but a pending request cannot move between replicas.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::upstream::ServerRequest;

/// Resource subscriptions one session may hold.
pub const MAX_SUBSCRIPTIONS: usize = 1024;

/// One session's local state.
pub struct SessionState {
    pending: Mutex<HashMap<String, ServerRequest>>,
    in_flight: Mutex<HashMap<String, CancellationToken>>,
    /// `logging/setLevel`: the least severe log level the client wants, if it set one.
    log_level: Mutex<Option<String>>,
    /// Client-facing URIs of `resources/subscribe`.
    subscriptions: Mutex<std::collections::HashSet<String>>,
    /// Generation of the current standalone (GET) stream; an older stream stops.
    stream_generation: AtomicU64,
    /// Standalone streams open here (briefly two while a new one replaces the old).
    open_streams: AtomicU64,
    /// Logs of the session's response streams, for `Last-Event-ID` resumption.
    pub streams: super::resume::StreamLogs,
}

impl SessionState {
    /// The state of a new session, keeping its response streams in `streams`.
    pub fn new(streams: super::resume::StreamLogs) -> Self {
        Self {
            pending: Mutex::default(),
            in_flight: Mutex::default(),
            log_level: Mutex::default(),
            subscriptions: Mutex::default(),
            stream_generation: AtomicU64::new(0),
            open_streams: AtomicU64::new(0),
            streams,
        }
    }

    /// Records the level set by `logging/setLevel`.
    pub fn set_log_level(&self, level: String) {
        *lock(&self.log_level) = Some(level);
    }

    /// The level set by `logging/setLevel`, if any.
    pub fn log_level(&self) -> Option<String> {
        lock(&self.log_level).clone()
    }

    /// Whether a subscription to `uri` (client-facing) could be recorded: it already is, or
    /// the session holds fewer than [`MAX_SUBSCRIPTIONS`].
    pub fn can_subscribe(&self, uri: &str) -> bool {
        let subs = lock(&self.subscriptions);
        subs.contains(uri) || subs.len() < MAX_SUBSCRIPTIONS
    }

    /// Records or removes a resource subscription (client-facing URI); a new one beyond
    /// [`MAX_SUBSCRIPTIONS`] is not recorded (`false`).
    pub fn set_subscribed(&self, uri: &str, subscribed: bool) -> bool {
        let mut subs = lock(&self.subscriptions);
        if !subscribed {
            subs.remove(uri);
            return true;
        }
        if subs.len() >= MAX_SUBSCRIPTIONS && !subs.contains(uri) {
            return false;
        }
        subs.insert(uri.to_string());
        true
    }

    /// Whether the client subscribed to this client-facing URI.
    pub fn is_subscribed(&self, uri: &str) -> bool {
        lock(&self.subscriptions).contains(uri)
    }

    /// Starts a new standalone stream generation; returns its number.
    pub fn next_stream(&self) -> u64 {
        self.stream_generation.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Counts a standalone stream open here until the returned guard drops.
    pub fn stream_opened(self: &Arc<Self>) -> OpenStream {
        self.open_streams.fetch_add(1, Ordering::SeqCst);
        OpenStream(Arc::clone(self))
    }

    /// Whether a standalone stream of the session is open here.
    pub fn has_stream(&self) -> bool {
        self.open_streams.load(Ordering::SeqCst) > 0
    }

    /// Whether `generation` is still the current standalone stream.
    pub fn is_current_stream(&self, generation: u64) -> bool {
        self.stream_generation.load(Ordering::SeqCst) == generation
    }

    /// Parks a server→client request under the gateway id the client will answer to.
    pub fn park(&self, gateway_id: String, request: ServerRequest) {
        lock(&self.pending).insert(gateway_id, request);
    }

    /// Takes back the request the client answered.
    pub fn take(&self, gateway_id: &str) -> Option<ServerRequest> {
        lock(&self.pending).remove(gateway_id)
    }

    /// Registers a client request that `notifications/cancelled` may cancel; the guard
    /// unregisters it.
    pub fn track(self: &Arc<Self>, request_id: &Value) -> InFlight {
        let key = request_id.to_string();
        let token = CancellationToken::new();
        lock(&self.in_flight).insert(key.clone(), token.clone());
        InFlight {
            state: Arc::clone(self),
            key,
            token,
        }
    }

    /// Cancels the client request `request_id`, if it is in flight here.
    pub fn cancel(&self, request_id: &Value) -> bool {
        match lock(&self.in_flight).remove(&request_id.to_string()) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }
}

/// A tracked in-flight request; dropping it stops tracking.
pub struct InFlight {
    state: Arc<SessionState>,
    key: String,
    token: CancellationToken,
}

impl InFlight {
    /// Resolves when the client cancels the request.
    pub fn cancelled(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.state.in_flight).remove(&self.key);
    }
}

/// A standalone stream counted as open ([`SessionState::stream_opened`]) until dropped.
pub struct OpenStream(Arc<SessionState>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every session's local state, dropped after `idle` without use; at most `max` sessions (the
/// least recently used dropped first).
pub struct LocalSessions {
    map: moka::sync::Cache<Uuid, Arc<SessionState>>,
    next_id: AtomicU64,
    replay: Arc<super::resume::ReplayBudget>,
    /// With a shared store: where response-stream logs are mirrored for other replicas.
    mirror: Option<Arc<super::replay_mirror::ReplayMirror>>,
}

impl LocalSessions {
    /// An empty map whose entries expire after `idle` without access, holding at most `max`,
    /// whose response-stream logs hold at most `replay_bytes` together.
    pub fn new(idle: Duration, max: u64, replay_bytes: usize) -> Self {
        Self {
            map: moka::sync::Cache::builder()
                .time_to_idle(idle)
                .max_capacity(max)
                .build(),
            next_id: AtomicU64::new(1),
            replay: super::resume::ReplayBudget::new(replay_bytes),
            mirror: None,
        }
    }

    /// Mirrors every session's response-stream logs to `mirror`, so that any replica can
    /// resume them.
    pub fn with_mirror(mut self, mirror: Arc<super::replay_mirror::ReplayMirror>) -> Self {
        self.mirror = Some(mirror);
        self
    }

    /// The shared mirror of the response-stream logs, if any.
    pub fn mirror(&self) -> Option<&Arc<super::replay_mirror::ReplayMirror>> {
        self.mirror.as_ref()
    }

    /// Sessions with state here now.
    pub fn len(&self) -> u64 {
        self.map.run_pending_tasks();
        self.map.entry_count()
    }

    /// Whether no session has state here.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The state of session `id`, created on first use.
    pub fn get(&self, id: Uuid) -> Arc<SessionState> {
        self.map.get_with(id, || {
            let budget = Arc::clone(&self.replay);
            let streams = match &self.mirror {
                Some(mirror) => super::resume::StreamLogs::mirrored(budget, Arc::clone(mirror), id),
                None => super::resume::StreamLogs::new(budget),
            };
            Arc::new(SessionState::new(streams))
        })
    }

    /// The state of session `id` if it has any here (without creating it).
    pub fn peek(&self, id: Uuid) -> Option<Arc<SessionState>> {
        self.map.get(&id)
    }

    /// The sessions subscribed here to client-facing `uri` (only `downstream`, when the update
    /// came on that session's own upstream session) whose standalone stream is not here.
    pub fn streamless_subscribers(&self, uri: &str, downstream: Option<Uuid>) -> Vec<Uuid> {
        let wanted = |state: &SessionState| state.is_subscribed(uri) && !state.has_stream();
        match downstream {
            Some(id) => self
                .peek(id)
                .filter(|state| wanted(state))
                .map(|_| vec![id])
                .unwrap_or_default(),
            None => self
                .map
                .iter()
                .filter(|(_, state)| wanted(state))
                .map(|(id, _)| *id)
                .collect(),
        }
    }

    /// Bytes the sessions' response-stream logs hold together.
    pub fn replay_bytes(&self) -> usize {
        self.replay.used()
    }

    /// Forgets session `id` (its parked requests are answered with errors as they drop).
    pub fn remove(&self, id: Uuid) {
        self.map.invalidate(&id);
    }

    /// A fresh id for a server→client request relayed to a client: unique on this replica,
    /// and a string, so it can never collide with the client's own numeric ids.
    pub fn next_request_id(&self) -> String {
        format!("mcpgate-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}
