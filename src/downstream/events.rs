//! The legacy standalone event stream (`GET /mcp` with a session, 2025-11-25 Streamable HTTP
//! "Listening for Messages from the Server"): what is not tied to a request —
//! `notifications/{tools,prompts,resources}/list_changed` when the merged catalogue changes,
//! and `notifications/resources/updated` for resources the session subscribed to, with URIs in
//! client-facing form. One stream per session: opening a new one ends the previous.

use std::sync::Arc;

use axum::response::Response;
use axum::response::sse::Event;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::Gateway;
use super::session::SessionClaims;
use super::session_state::SessionState;
use crate::catalogue::{Catalogue, ListKind};
use crate::jsonrpc;
use crate::upstream::UpstreamEvent;

/// Opens the standalone stream of a session.
pub fn open(gw: &Gateway, claims: &SessionClaims) -> Response {
    let state = gw.sessions.get(claims.id);
    let generation = state.next_stream();
    let catalogue = Arc::clone(gw.router.catalogue());
    let changes = catalogue.subscribe();
    let upstream_events = catalogue.upstreams().subscribe();
    let (tx, rx) = mpsc::channel::<Event>(64);
    let shutdown = gw.shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = pump(state, generation, catalogue, changes, upstream_events, tx) => {}
            () = shutdown.cancelled() => {}
        }
    });
    super::relay::sse(rx)
}

async fn pump(
    state: Arc<SessionState>,
    generation: u64,
    catalogue: Arc<Catalogue>,
    mut changes: broadcast::Receiver<Vec<ListKind>>,
    mut upstream_events: broadcast::Receiver<UpstreamEvent>,
    tx: mpsc::Sender<Event>,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        let messages: Vec<Value> = tokio::select! {
            () = tx.closed() => return,
            _ = tick.tick() => {
                if !state.is_current_stream(generation) {
                    return;
                }
                continue;
            }
            change = changes.recv() => match change {
                Ok(kinds) => list_changed(&kinds),
                Err(broadcast::error::RecvError::Lagged(_)) => list_changed(&ListKind::ALL),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            event = upstream_events.recv() => match event {
                Ok(UpstreamEvent::ResourceUpdated { upstream, uri }) => {
                    let wire = catalogue.snapshot().wire_uri(&upstream, &uri);
                    if state.is_subscribed(&wire) {
                        vec![jsonrpc::notification("notifications/resources/updated", Some(json!({"uri": wire})))]
                    } else {
                        continue;
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if !state.is_current_stream(generation) {
            return;
        }
        for message in messages {
            let event = Event::default().event("message").data(message.to_string());
            if tx.send(event).await.is_err() {
                return;
            }
        }
    }
}

/// One `list_changed` notification per affected list (templates share the resources one).
fn list_changed(kinds: &[ListKind]) -> Vec<Value> {
    let mut methods: Vec<&str> = kinds.iter().map(|k| k.list_changed()).collect();
    methods.dedup();
    methods
        .into_iter()
        .map(|m| jsonrpc::notification(m, None))
        .collect()
}
