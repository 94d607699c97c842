//! The client-facing side: Streamable HTTP at `/mcp`, serving both eras on one endpoint.
//!
//! A POST is decoded once ([`crate::jsonrpc::Message`]), its era detected from the request
//! itself (modern `_meta` or a modern `MCP-Protocol-Version` → modern; otherwise legacy), then
//! handled by [`modern`] or [`legacy`]. Every failure leaves through [`wire::Failure`], the one
//! error boundary.

pub mod authn;
pub mod events;
pub mod handoff;
mod identity;
pub mod legacy;
pub mod legacy_sse;
pub mod listen_subscriptions;
pub mod modern;
pub mod mrtr;
pub mod origin;
pub mod outbox;
pub mod relay;
pub mod replay_mirror;
pub mod resume;
pub mod revocations;
pub mod seal;
pub mod session;
pub mod session_events;
pub mod session_state;
pub mod shared_stream;
mod stream_metrics;
pub mod streamable_http;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use crate::auth::Authenticator;
use crate::router::Router;
use crate::telemetry::Metrics;
use origin::OriginPolicy;
use session::SessionSealer;

/// Everything the client-facing handlers share. Built once by the composition root.
pub struct Gateway {
    /// Routes requests to the catalogue and upstreams.
    pub router: Router,
    /// Seals and opens legacy session ids.
    pub sealer: SessionSealer,
    /// Sessions ended with `DELETE`, kept until their tokens would have expired (shared by
    /// every replica with `limits.store: redis`).
    pub revoked: Arc<revocations::Revocations>,
    /// Local state of legacy sessions (parked server requests, cancellable requests).
    pub sessions: Arc<session_state::LocalSessions>,
    /// Open HTTP+SSE (2024-11-05) connections.
    pub sse_connections: legacy_sse::Connections,
    /// With a shared store: resource updates for sessions whose stream is on another replica.
    pub session_events: Option<Arc<session_events::SessionEvents>>,
    /// Modern calls parked while their client answers an upstream's request (MRTR).
    pub continuations: Arc<mrtr::Continuations>,
    /// `Origin`/`Host` checks.
    pub origin: OriginPolicy,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Cancelled when the gateway shuts down: long-lived streams end.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// `ttlMs` on modern list results.
    pub client_ttl: Duration,
    /// Metric handles.
    pub metrics: Metrics,
    /// Authenticates callers.
    pub auth: Arc<Authenticator>,
}

/// The client-facing routes: `/mcp` (Streamable HTTP: POST, GET, DELETE), and `/sse` with
/// `/messages` (the 2024-11-05 HTTP+SSE transport), all behind [`origin::enforce`] and then
/// [`authn::authenticate`]; the protected resource metadata (RFC 9728) is public.
pub fn routes(gateway: Arc<Gateway>) -> axum::Router {
    use axum::routing::{get, post};
    let mcp = axum::Router::new()
        .route(
            "/mcp",
            post(streamable_http::post)
                .get(streamable_http::get)
                .delete(streamable_http::delete),
        )
        .route("/sse", get(legacy_sse::open))
        .route("/messages", post(legacy_sse::message))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&gateway),
            stream_metrics::count,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&gateway),
            authn::authenticate,
        ))
        // Outermost: Origin and Host are checked before anything else (DNS rebinding).
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&gateway),
            origin::enforce,
        ));
    let mut public = axum::Router::new();
    if let Some(metadata) = gateway.auth.metadata() {
        for path in metadata.paths() {
            public = public.route(path, get(authn::resource_metadata));
        }
    }
    mcp.merge(public)
        .with_state(gateway)
        .layer(axum::middleware::map_request(host_from_authority))
}

/// HTTP/2 carries the host in the `:authority` pseudo-header, which hyper puts in the URI, not
/// in `Host`; copies it there so the `Host` checks ([`origin`]) see it in both versions.
async fn host_from_authority(mut request: axum::extract::Request) -> axum::extract::Request {
    if !request.headers().contains_key(axum::http::header::HOST)
        && let Some(value) = request
            .uri()
            .authority()
            .and_then(|a| axum::http::HeaderValue::from_str(a.as_str()).ok())
    {
        request
            .headers_mut()
            .insert(axum::http::header::HOST, value);
    }
    request
}
