//! Keeping the catalogue fresh: one task per upstream re-lists it every `refresh_interval`
//! (every `retry_interval` while it fails) and at once when the upstream announces
//! `list_changed` or reconnects.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::Catalogue;
use crate::upstream::UpstreamEvent;

/// Starts the refresh tasks; the first round marks the catalogue ready. Dropping or aborting
/// the returned set stops them.
pub fn spawn(catalogue: Arc<Catalogue>) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let mut wakers = HashMap::new();
    let mut events = catalogue.upstreams().subscribe();
    let first_round = Arc::new(tokio::sync::Barrier::new(
        catalogue.upstreams().all().len() + 1,
    ));
    for upstream in catalogue.upstreams().all().to_vec() {
        let notify = Arc::new(Notify::new());
        wakers.insert(upstream.id().clone(), Arc::clone(&notify));
        tasks.spawn(listen(Arc::clone(&upstream), Arc::clone(&notify)));
        let catalogue = Arc::clone(&catalogue);
        let first_round = Arc::clone(&first_round);
        tasks.spawn(async move {
            let ok = catalogue.refresh_upstream(&upstream).await;
            first_round.wait().await;
            let mut ok = ok;
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
        });
    }
    {
        let catalogue = Arc::clone(&catalogue);
        tasks.spawn(async move {
            first_round.wait().await;
            catalogue.ready.send_replace(true);
        });
    }
    tasks.spawn(async move {
        loop {
            match events.recv().await {
                Ok(
                    UpstreamEvent::ListChanged { upstream, .. }
                    | UpstreamEvent::Reconnected { upstream },
                ) => {
                    if let Some(n) = wakers.get(&upstream) {
                        n.notify_one();
                    }
                }
                Ok(UpstreamEvent::ResourceUpdated { .. }) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    wakers.values().for_each(|n| n.notify_one());
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    tasks
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
