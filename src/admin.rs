//! The operations listener: `/healthz` (the process is up), `/readyz` (the first catalogue
//! round is done; each upstream's state), `/metrics` (Prometheus text).
//!
//! `/readyz` answers 503 `starting` until every upstream has been listed once, then 200 until
//! shutdown begins, then 503 `draining` (so that load balancers stop sending new clients while
//! calls in flight finish): one upstream down is reported, not a reason to take the replica out
//! of its load balancer (the others still serve, and its last good entries stay listed).
//! Body:
//!
//! ```json
//! {"status": "ready",
//!  "upstreams": {"tickets": {"health": {"healthy": true, "consecutive_failures": 0,
//!                                       "checked_at": "2026-12-01T10:00:00Z"},
//!                            "circuit": "closed", "catalogue": "fresh", "inflight": 3}}}
//! ```
//!
//! `circuit` is absent for an upstream without a breaker; `catalogue` is `stale` while the
//! last refresh failed and the last good entries are served.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};

use crate::catalogue::Catalogue;
use crate::telemetry::Metrics;

/// The routes of the operations listener; `draining` is set when shutdown begins.
pub fn routes(
    catalogue: Arc<Catalogue>,
    metrics: Metrics,
    draining: Arc<AtomicBool>,
) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let (ready, body) = readiness(&catalogue, draining.load(Ordering::SeqCst));
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                async move { (status, axum::Json(body)).into_response() }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let body = metrics.render();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        body,
                    )
                }
            }),
        )
}

/// Whether the gateway is ready, and the `/readyz` body: `starting` until the first catalogue
/// round is done, `draining` once shutdown has begun, else `ready`.
pub fn readiness(catalogue: &Catalogue, draining: bool) -> (bool, Value) {
    let ready = catalogue.is_ready() && !draining;
    let upstreams: Map<String, Value> = catalogue
        .upstreams()
        .all()
        .iter()
        .map(|u| {
            let mut state = json!({
                "health": u.health().status(),
                "catalogue": match catalogue.is_fresh(u.id()) {
                    Some(true) => "fresh",
                    _ => "stale",
                },
                "inflight": u.controls().inflight(),
            });
            if let Some(circuit) = u.controls().circuit() {
                state["circuit"] = json!(circuit.as_str());
            }
            (u.id().to_string(), state)
        })
        .collect();
    let status = if draining {
        "draining"
    } else if ready {
        "ready"
    } else {
        "starting"
    };
    (ready, json!({"status": status, "upstreams": upstreams}))
}
