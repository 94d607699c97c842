//! `mcpgate_open_streams{era,kind}`: every SSE response of the client-facing routes is counted
//! while its body lives, whichever handler made it — `response` for a POST answered with a
//! stream, `standalone` for a legacy session's GET stream, `connection` for a 2024-11-05
//! HTTP+SSE connection.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt as _;

use super::Gateway;
use crate::telemetry::Counted;

/// Middleware: counts the SSE response streams open now.
pub async fn count(State(gw): State<Arc<Gateway>>, request: Request, next: Next) -> Response {
    let kind = match (request.method(), request.uri().path()) {
        (&axum::http::Method::POST, _) => "response",
        (_, "/mcp") => "standalone",
        _ => "connection",
    };
    let era = match super::streamable_http::header_era(request.headers()) {
        crate::protocol::Era::Modern if kind == "response" => "modern",
        _ => "legacy",
    };
    let response = next.run(request).await;
    let streaming = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !streaming {
        return response;
    }
    let open = Counted::new(gw.metrics.open_streams.with_label_values(&[era, kind]));
    response.map(|body| {
        // The counter goes down when the body is dropped: the stream ended or the client left.
        axum::body::Body::from_stream(body.into_data_stream().map(move |chunk| {
            let _counted = &open;
            chunk
        }))
    })
}
