//! Long-lived notification streams: what is not tied to a request.
//!
//! - Legacy: the standalone stream (`GET /mcp` with a session, 2025-11-25 Streamable HTTP
//!   "Listening for Messages from the Server"): every `list_changed`, and
//!   `notifications/resources/updated` for the session's `resources/subscribe` URIs. One stream
//!   per session: opening a new one ends the previous.
//! - Modern: `subscriptions/listen` (2026-07-28): acknowledged first with the subset of the
//!   requested notifications the gateway honours, then only those, each tagged with the
//!   subscription id; on shutdown the stream ends with a `SubscriptionsListenResult`.
//!
//! `list_changed` is sent when the merged catalogue's entries change, and when a new policy set
//! changes what the stream's principal may see; resource URIs are in client-facing form.

use std::collections::HashSet;
use std::sync::Arc;

use axum::response::Response;
use axum::response::sse::Event;
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, mpsc};

use super::Gateway;
use super::session::SessionClaims;
use super::session_events::Delivery;
use super::session_state::SessionState;
use crate::auth::Principal;
use crate::catalogue::{Catalogue, ListKind};
use crate::jsonrpc;
use crate::policy::{Access, Grant};
use crate::protocol::Era;
use crate::upstream::session_requests::Registration;
use crate::upstream::{ServerRequest, UpstreamEvent};

/// Who listens, and what they asked for.
enum Listener {
    /// A legacy session's standalone stream.
    Session {
        id: uuid::Uuid,
        state: Arc<SessionState>,
        generation: u64,
        /// The client's capabilities (for requests relayed on the stream).
        capabilities: Value,
        /// Makes ids for requests relayed to the client.
        ids: Arc<super::session_state::LocalSessions>,
    },
    /// A modern `subscriptions/listen` stream.
    Subscription {
        id: Value,
        kinds: HashSet<ListKind>,
        resources: HashSet<String>,
    },
}

impl Listener {
    fn current(&self) -> bool {
        match self {
            Self::Session {
                state, generation, ..
            } => state.is_current_stream(*generation),
            Self::Subscription { .. } => true,
        }
    }

    fn wants_list(&self, kind: ListKind) -> bool {
        match self {
            Self::Session { .. } => true,
            Self::Subscription { kinds, .. } => kinds.contains(&kind),
        }
    }

    /// Whether an update of `uri`, announced on the upstream session of `from` (`None`: a
    /// shared connection), goes to this listener.
    fn wants_resource(&self, uri: &str, from: Option<uuid::Uuid>) -> bool {
        match self {
            Self::Session { id, state, .. } => {
                from.is_none_or(|from| from == *id) && state.is_subscribed(uri)
            }
            Self::Subscription { resources, .. } => from.is_none() && resources.contains(uri),
        }
    }

    /// Tags a notification with the subscription id (modern).
    fn tag(&self, mut message: Value) -> Value {
        if let Self::Subscription { id, .. } = self {
            let params = message
                .as_object_mut()
                .map(|m| m.entry("params").or_insert_with(|| json!({})));
            if let Some(params) = params.and_then(Value::as_object_mut) {
                let meta = params.entry("_meta").or_insert_with(|| json!({}));
                if let Some(meta) = meta.as_object_mut() {
                    meta.insert(SUBSCRIPTION_ID.into(), id.clone());
                }
            }
        }
        message
    }
}

/// `_meta` key tagging notifications of a `subscriptions/listen` stream.
const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// Opens the standalone stream of a legacy session.
pub fn open_session_stream(
    gw: &Gateway,
    claims: &SessionClaims,
    principal: Arc<Principal>,
) -> Response {
    let state = gw.sessions.get(claims.id);
    let generation = state.next_stream();
    let listener = Listener::Session {
        id: claims.id,
        state,
        generation,
        capabilities: claims.capabilities.clone(),
        ids: Arc::clone(&gw.sessions),
    };
    // Requests the session's upstream sessions send unattached to a call come here.
    let requests = gw
        .router
        .catalogue()
        .upstreams()
        .session_requests()
        .register(claims.id);
    let setup = Setup {
        requests: Some(requests),
        deliveries: gw
            .session_events
            .as_ref()
            .map(|e| (claims.id, e.receiver())),
        ..Setup::default()
    };
    start(gw, listener, principal, setup)
}

/// What a stream starts with besides its listener.
#[derive(Default)]
struct Setup {
    /// Sent first (the acknowledgement of `subscriptions/listen`).
    first: Option<Value>,
    /// Resource subscriptions to release when the stream ends.
    held: Option<super::listen_subscriptions::Held>,
    /// A legacy session's upstream requests, relayed to its client; the registration ends
    /// with the stream.
    requests: Option<(Registration, mpsc::Receiver<ServerRequest>)>,
    /// With a shared store: the session, and notifications for sessions heard from other
    /// replicas.
    deliveries: Option<(uuid::Uuid, broadcast::Receiver<Delivery>)>,
}

/// Answers `subscriptions/listen` request `id` with `params.notifications` as the filter.
pub async fn listen(
    gw: &Gateway,
    id: Value,
    filter: &Map<String, Value>,
    principal: Arc<Principal>,
) -> Response {
    let catalogue = gw.router.catalogue();
    let grant = gw.router.access().grant(&principal);
    let snapshot = catalogue.snapshot();
    let caps = super::identity::View::new(&snapshot, &grant).capabilities(Era::Modern);
    let mut honoured = Map::new();
    let mut kinds = HashSet::new();
    for (flag, kind, capability) in [
        ("toolsListChanged", ListKind::Tools, "tools"),
        ("promptsListChanged", ListKind::Prompts, "prompts"),
        ("resourcesListChanged", ListKind::Resources, "resources"),
    ] {
        if filter.get(flag) == Some(&Value::Bool(true)) && caps.get(capability).is_some() {
            honoured.insert(flag.into(), Value::Bool(true));
            kinds.insert(kind);
            if kind == ListKind::Resources {
                kinds.insert(ListKind::ResourceTemplates);
            }
        }
    }
    let mut resources = HashSet::new();
    let mut held = None;
    if let Some(uris) = filter
        .get("resourceSubscriptions")
        .and_then(Value::as_array)
    {
        let subscribed = super::listen_subscriptions::subscribe(gw, &grant, uris).await;
        honoured.insert(
            "resourceSubscriptions".into(),
            Value::from(subscribed.honoured),
        );
        resources = subscribed.wire;
        held = Some(subscribed.held);
    }
    let ack = jsonrpc::notification(
        "notifications/subscriptions/acknowledged",
        Some(json!({"notifications": honoured, "_meta": {SUBSCRIPTION_ID: id}})),
    );
    let listener = Listener::Subscription {
        id,
        kinds,
        resources,
    };
    let setup = Setup {
        first: Some(ack),
        held,
        ..Setup::default()
    };
    start(gw, listener, principal, setup)
}

/// Runs a stream for `listener` (see [`Setup`]).
fn start(gw: &Gateway, listener: Listener, principal: Arc<Principal>, setup: Setup) -> Response {
    let Setup {
        first,
        held,
        requests,
        deliveries,
    } = setup;
    let catalogue = Arc::clone(gw.router.catalogue());
    let changes = catalogue.subscribe();
    let upstream_events = catalogue.upstreams().subscribe();
    let policy = PolicyWatch::new(Arc::clone(gw.router.access()), principal);
    let (tx, rx) = mpsc::channel::<Event>(64);
    let shutdown = gw.shutdown.clone();
    tokio::spawn(async move {
        let opened = match first {
            Some(first) => send(&tx, &first).await,
            None => true,
        };
        let (_registration, mut requests) = match requests {
            Some((registration, rx)) => (Some(registration), Some(rx)),
            None => (None, None),
        };
        // Other replicas publish a session's resource updates only while it has no stream here.
        let _open = match &listener {
            Listener::Session { state, .. } => Some(state.stream_opened()),
            Listener::Subscription { .. } => None,
        };
        if opened {
            let sources = Sources {
                catalogue,
                changes,
                upstream_events,
                policy,
                requests: requests.as_mut(),
                deliveries,
            };
            tokio::select! {
                () = pump(&listener, sources, &tx) => {}
                () = shutdown.cancelled() => {
                    if let Listener::Subscription { id, .. } = &listener {
                        let result = json!({"resultType": "complete", "_meta": {SUBSCRIPTION_ID: id}});
                        send(&tx, &jsonrpc::result_response(id.clone(), result)).await;
                    }
                }
            }
        }
        if let Some(held) = held {
            held.release().await;
        }
    });
    super::relay::sse(rx)
}

async fn send(tx: &mpsc::Sender<Event>, message: &Value) -> bool {
    tx.send(Event::default().event("message").data(message.to_string()))
        .await
        .is_ok()
}

/// What a stream's messages come from.
struct Sources<'a> {
    catalogue: Arc<Catalogue>,
    changes: broadcast::Receiver<Vec<ListKind>>,
    upstream_events: broadcast::Receiver<UpstreamEvent>,
    policy: PolicyWatch,
    requests: Option<&'a mut mpsc::Receiver<ServerRequest>>,
    deliveries: Option<(uuid::Uuid, broadcast::Receiver<Delivery>)>,
}

/// The next notification from another replica for the stream's session; pending forever
/// without a shared store.
async fn next_delivery(
    deliveries: &mut Option<(uuid::Uuid, broadcast::Receiver<Delivery>)>,
) -> Value {
    let Some((id, rx)) = deliveries else {
        return std::future::pending().await;
    };
    loop {
        match rx.recv().await {
            Ok(delivery) if delivery.0 == *id => return delivery.1.clone(),
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, session = %id, "notifications from other replicas were missed");
            }
            Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
        }
    }
}

/// The next upstream request for the stream's client; pending forever without any.
async fn next_request(requests: &mut Option<&mut mpsc::Receiver<ServerRequest>>) -> ServerRequest {
    match requests {
        Some(rx) => match rx.recv().await {
            Some(request) => request,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

async fn pump(listener: &Listener, sources: Sources<'_>, tx: &mpsc::Sender<Event>) {
    let Sources {
        catalogue,
        mut changes,
        mut upstream_events,
        mut policy,
        mut requests,
        mut deliveries,
    } = sources;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        let messages: Vec<Value> = tokio::select! {
            request = next_request(&mut requests) => match listener {
                Listener::Session { state, capabilities, ids, .. } => {
                    super::relay::request_for_session(request, state, capabilities, ids)
                        .await
                        .into_iter()
                        .collect()
                }
                Listener::Subscription { .. } => continue,
            },
            message = next_delivery(&mut deliveries) => {
                vec![message]
            }
            () = tx.closed() => return,
            _ = tick.tick() => {
                if !listener.current() {
                    return;
                }
                continue;
            }
            change = changes.recv() => match change {
                Ok(kinds) => list_changed(listener, &kinds),
                Err(broadcast::error::RecvError::Lagged(_)) => list_changed(listener, &ListKind::ALL),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            kinds = policy.changed(&catalogue) => match kinds {
                Some(kinds) if kinds.is_empty() => continue,
                Some(kinds) => list_changed(listener, &kinds),
                None => return,
            },
            event = upstream_events.recv() => match event {
                // Passed on at once, as the client would hear it from the upstream directly;
                // the refreshed merged list announces itself again once it is in.
                Ok(UpstreamEvent::ListChanged { upstream, method }) => {
                    let kind = ListKind::ALL.into_iter().find(|k| k.list_changed() == method);
                    match kind {
                        Some(kind) if policy.sees(&catalogue, &upstream) => {
                            list_changed(listener, &[kind])
                        }
                        _ => continue,
                    }
                }
                Ok(UpstreamEvent::ResourceUpdated { upstream, uri, downstream }) => {
                    let wire = catalogue.snapshot().wire_uri(&upstream, &uri);
                    if !listener.wants_resource(&wire, downstream) {
                        continue;
                    }
                    vec![jsonrpc::notification("notifications/resources/updated", Some(json!({"uri": wire})))]
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if !listener.current() {
            return;
        }
        for message in messages {
            if !send(tx, &listener.tag(message)).await {
                return;
            }
        }
    }
}

/// What a stream's principal may see, followed across policy reloads.
struct PolicyWatch {
    access: Arc<Access>,
    principal: Arc<Principal>,
    grant: Grant,
    updates: Option<broadcast::Receiver<Arc<crate::policy::PolicySet>>>,
}

impl PolicyWatch {
    fn new(access: Arc<Access>, principal: Arc<Principal>) -> Self {
        Self {
            grant: access.grant(&principal),
            updates: access.subscribe(),
            access,
            principal,
        }
    }

    /// Whether the principal sees anything of `upstream` in the current catalogue.
    fn sees(&self, catalogue: &Catalogue, upstream: &crate::config::UpstreamId) -> bool {
        let snapshot = catalogue.snapshot();
        super::identity::sees(&snapshot, &self.grant, upstream)
    }

    /// Waits for a new policy set; the lists whose visible entries it changed for this
    /// principal. Pending forever without policies; `None` when the gateway is going away.
    async fn changed(&mut self, catalogue: &Catalogue) -> Option<Vec<ListKind>> {
        let Some(updates) = self.updates.as_mut() else {
            return std::future::pending().await;
        };
        match updates.recv().await {
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return None,
        }
        let next = self.access.grant(&self.principal);
        let snapshot = catalogue.snapshot();
        let visible = |grant: &Grant, kind: ListKind| -> Vec<String> {
            snapshot
                .entries(kind)
                .iter()
                .filter(|e| grant.lists(kind, e))
                .map(|e| e.key.clone())
                .collect()
        };
        let kinds = ListKind::ALL
            .into_iter()
            .filter(|k| visible(&self.grant, *k) != visible(&next, *k))
            .collect();
        self.grant = next;
        Some(kinds)
    }
}

/// One `list_changed` notification per affected list the listener wants (templates share the
/// resources notification).
fn list_changed(listener: &Listener, kinds: &[ListKind]) -> Vec<Value> {
    let mut methods: Vec<&str> = kinds
        .iter()
        .filter(|k| listener.wants_list(**k))
        .map(|k| k.list_changed())
        .collect();
    methods.dedup();
    methods
        .into_iter()
        .map(|m| jsonrpc::notification(m, None))
        .collect()
}
