//! Keeping the catalogue fresh: each upstream has its own group of background tasks — one
//! re-lists it every `refresh_interval` (every `retry_interval` while it fails) and at once when
//! the upstream announces `list_changed` or reconnects, one keeps a `subscriptions/listen` open
//! on a modern upstream, one runs its active health checks. A configuration reload adds and
//! removes groups with the upstreams ([`Tasks::add`], [`Tasks::remove`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::Catalogue;
use crate::config::UpstreamId;
use crate::upstream::{Upstream, UpstreamEvent};

/// The background tasks of every upstream in the catalogue. Dropping it stops them all.
pub struct Tasks {
    catalogue: Arc<Catalogue>,
    groups: Arc<Mutex<HashMap<UpstreamId, Group>>>,
    /// Routes upstream events to the refresh task of the upstream they name.
    dispatcher: tokio::task::JoinHandle<()>,
}

/// One upstream's tasks and the wake-up of its refresh task. Dropping it aborts them.
struct Group {
    refresh: Arc<Notify>,
    _tasks: JoinSet<()>,
}

/// Whether an upstream's refresh task lists it before its first wait.
enum First {
    /// List it now, then wait at the barrier of the first round.
    Round(Arc<tokio::sync::Barrier>),
    /// Already listed (an upstream added by a reload).
    Listed,
}

impl Tasks {
    /// Starts the tasks of every upstream; the first round of listings marks the catalogue
    /// ready.
    pub fn spawn(catalogue: Arc<Catalogue>) -> Self {
        let groups = Arc::new(Mutex::new(HashMap::new()));
        let dispatcher = tokio::spawn(dispatch(
            catalogue.upstreams().subscribe(),
            Arc::clone(&groups),
        ));
        let tasks = Self {
            catalogue: Arc::clone(&catalogue),
            groups,
            dispatcher,
        };
        let members = catalogue.upstreams().all();
        let first_round = Arc::new(tokio::sync::Barrier::new(members.len() + 1));
        for upstream in members.iter() {
            tasks.start(Arc::clone(upstream), First::Round(Arc::clone(&first_round)));
        }
        tokio::spawn(async move {
            first_round.wait().await;
            catalogue.ready.send_replace(true);
        });
        tasks
    }

    /// Starts the tasks of an upstream that a reload added (or rebuilt), already listed by
    /// [`Catalogue::reconfigure`]; the tasks of an upstream of the same id stop.
    pub fn add(&self, upstream: Arc<Upstream>) {
        self.start(upstream, First::Listed);
    }

    /// Stops the tasks of upstream `id`.
    pub fn remove(&self, id: &UpstreamId) {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    fn start(&self, upstream: Arc<Upstream>, first: First) {
        let notify = Arc::new(Notify::new());
        let mut tasks = JoinSet::new();
        tasks.spawn(listen(Arc::clone(&upstream), Arc::clone(&notify)));
        let interval = upstream.controls().traffic.health_interval;
        tasks.spawn(crate::upstream::health::run(
            Arc::clone(&upstream),
            interval,
        ));
        tasks.spawn(refresh(
            Arc::clone(&self.catalogue),
            Arc::clone(&upstream),
            Arc::clone(&notify),
            first,
        ));
        let group = Group {
            refresh: notify,
            _tasks: tasks,
        };
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(upstream.id().clone(), group);
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.dispatcher.abort();
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// Re-lists `upstream` on its schedule and whenever `notify` is woken.
async fn refresh(
    catalogue: Arc<Catalogue>,
    upstream: Arc<Upstream>,
    notify: Arc<Notify>,
    first: First,
) {
    let mut ok = match first {
        First::Round(barrier) => {
            let ok = catalogue.refresh_upstream(&upstream).await;
            barrier.wait().await;
            ok
        }
        First::Listed => catalogue.is_fresh(upstream.id()).unwrap_or(false),
    };
    loop {
        let wait = if ok {
            catalogue.config.refresh_interval
        } else {
            catalogue.config.retry_interval
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = notify.notified() => {}
        }
        ok = catalogue.refresh_upstream(&upstream).await;
    }
}

/// Wakes the refresh task of the upstream an event names (every one when events were lost).
async fn dispatch(
    mut events: tokio::sync::broadcast::Receiver<UpstreamEvent>,
    groups: Arc<Mutex<HashMap<UpstreamId, Group>>>,
) {
    loop {
        let event = events.recv().await;
        let groups = groups.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Ok(
                UpstreamEvent::ListChanged { upstream, .. }
                | UpstreamEvent::Reconnected { upstream },
            ) => {
                if let Some(g) = groups.get(&upstream) {
                    g.refresh.notify_one();
                }
            }
            Ok(UpstreamEvent::ResourceUpdated { .. }) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                groups.values().for_each(|g| g.refresh.notify_one());
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        }
    }
}

/// Keeps a `subscriptions/listen` open on a modern upstream that announces list changes, so its
/// changes reach the catalogue at once (a legacy upstream sends them unasked). Reopened with
/// backoff when it ends, and the upstream re-listed (`refresh`) each time it is reopened: the
/// stream has no replay, so a change made while it was closed is heard of no other way. Stops
/// for an upstream that turns out legacy or announces no changes.
async fn listen(upstream: Arc<crate::upstream::Upstream>, refresh: Arc<Notify>) {
    let mut backoff = crate::backoff::Backoff::new(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(60),
    );
    let mut reopened = false;
    loop {
        match upstream.info().await {
            Ok(info) if info.era != crate::protocol::Era::Modern => return,
            Ok(info) if !announces_list_changes(&info.capabilities) => return,
            Ok(_) => match upstream.listen().await {
                Ok(mut call) => {
                    tracing::debug!(upstream = %upstream.id(), "listening for upstream list changes");
                    if reopened {
                        refresh.notify_one();
                    }
                    reopened = true;
                    backoff.reset();
                    while call.next().await.is_some() {}
                }
                Err(e) => {
                    tracing::debug!(upstream = %upstream.id(), error = %e, "subscriptions/listen failed");
                }
            },
            // Not reachable yet: try again later.
            Err(_) => {}
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

fn announces_list_changes(capabilities: &serde_json::Value) -> bool {
    ["tools", "prompts", "resources"].iter().any(|k| {
        capabilities.pointer(&format!("/{k}/listChanged")) == Some(&serde_json::Value::Bool(true))
    })
}
