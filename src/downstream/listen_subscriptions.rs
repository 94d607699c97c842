//! The resource subscriptions of a modern `subscriptions/listen` stream
//! (`resourceSubscriptions`): resolved, decided by policy, subscribed upstream on the gateway's
//! shared connections ([`crate::upstream::subscriptions`], counted across streams), and
//! released when the stream ends.
//!
//! Bounds: at most [`MAX_RESOURCES`] per stream (the rest are not honoured, which the
//! acknowledgement says), at most [`CONCURRENCY`] upstream requests at once, and all of them
//! within [`SUBSCRIBE_TIME`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use super::Gateway;
use crate::catalogue::ListKind;
use crate::policy::{Grant, Kind};
use crate::protocol::Era;
use crate::upstream::{CallContext, Upstream};

/// Most resources one stream subscribes to.
pub const MAX_RESOURCES: usize = 100;
/// Upstream subscribe requests of one stream in flight at once.
pub const CONCURRENCY: usize = 8;
/// Longest time subscribing a stream's resources takes before it is acknowledged.
pub const SUBSCRIBE_TIME: Duration = Duration::from_secs(10);

/// What a stream subscribed to.
pub struct Subscribed {
    /// The URIs as the client sent them, for the acknowledgement.
    pub honoured: Vec<String>,
    /// Their client-facing form as forwarded, which updates are announced under.
    pub wire: HashSet<String>,
    /// The holds to release when the stream ends.
    pub held: Held,
}

/// Subscriptions held for one stream; [`Held::release`] them when it ends.
#[derive(Default)]
pub struct Held(Vec<(Arc<Upstream>, String)>);

impl Held {
    /// Lets go of every subscription (the upstream hears `resources/unsubscribe` for those no
    /// other stream or session holds).
    pub async fn release(self) {
        futures::stream::iter(self.0)
            .for_each_concurrent(CONCURRENCY, |(upstream, uri)| async move {
                upstream.release(&uri).await;
            })
            .await;
    }
}

/// Subscribes to the resources of `uris` that resolve, that `grant` allows, and whose owner is
/// a legacy upstream supporting subscriptions (within the bounds of the module docs).
pub async fn subscribe(gw: &Gateway, grant: &Grant, uris: &[Value]) -> Subscribed {
    let snapshot = gw.router.catalogue().snapshot();
    let upstreams = gw.router.catalogue().upstreams();
    let mut wanted = Vec::new();
    let mut seen = HashSet::new();
    for uri in uris.iter().filter_map(Value::as_str) {
        if wanted.len() == MAX_RESOURCES {
            break;
        }
        let Ok((resolved, forward)) =
            crate::router::resolve_uri(&snapshot, uri, ListKind::Resources)
        else {
            continue;
        };
        if !grant.allows_target(Kind::Resource, resolved.target.as_deref(), None) {
            continue;
        }
        let Some(upstream) = upstreams.get(resolved.upstream.as_str()) else {
            continue;
        };
        let wire = snapshot.wire_uri(&resolved.upstream, &forward);
        if seen.insert(wire.clone()) {
            wanted.push((uri.to_string(), wire, upstream, forward));
        }
    }
    let results: Arc<std::sync::Mutex<Vec<_>>> = Arc::default();
    let work = futures::stream::iter(wanted).for_each_concurrent(
        CONCURRENCY,
        |(asked, wire, upstream, forward)| {
            let results = Arc::clone(&results);
            async move {
                if subscribe_one(&upstream, &forward).await {
                    let mut results = results.lock().unwrap_or_else(|p| p.into_inner());
                    results.push((asked, wire, upstream, forward));
                }
            }
        },
    );
    if tokio::time::timeout(SUBSCRIBE_TIME, work).await.is_err() {
        tracing::warn!(
            "subscribing a stream's resources took longer than {SUBSCRIBE_TIME:?}; acknowledging those done"
        );
    }
    let done = std::mem::take(&mut *results.lock().unwrap_or_else(|p| p.into_inner()));
    let mut subscribed = Subscribed {
        honoured: Vec::new(),
        wire: HashSet::new(),
        held: Held::default(),
    };
    for (asked, wire, upstream, forward) in done {
        subscribed.honoured.push(asked);
        subscribed.wire.insert(wire);
        subscribed.held.0.push((upstream, forward));
    }
    subscribed
}

/// Subscribes on the shared connection of an upstream that supports it; whether it holds.
async fn subscribe_one(upstream: &Upstream, uri: &str) -> bool {
    let supports = matches!(upstream.info().await, Ok(info) if info.era == Era::Legacy
        && info.capabilities.pointer("/resources/subscribe") == Some(&Value::Bool(true)));
    if !supports {
        return false;
    }
    match upstream.subscribe(&CallContext::shared(), uri).await {
        Ok(Ok(_)) => true,
        Ok(Err(error)) => {
            tracing::warn!(upstream = %upstream.id(), %error, "the upstream refused a subscription");
            false
        }
        Err(e) => {
            tracing::warn!(upstream = %upstream.id(), error = %e, "could not subscribe upstream");
            false
        }
    }
}
