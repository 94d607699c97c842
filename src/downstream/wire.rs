//! The one error boundary of the client-facing side: a [`Failure`] becomes an HTTP response
//! with the status and JSON-RPC error that [`GatewayError::to_wire`] chooses, and the full error
//! is logged here, once.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::GatewayError;
use crate::jsonrpc;
use crate::protocol::Era;

/// A request that failed: the error, the era to answer in, and the request id if known.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub error: GatewayError,
    /// The era of the client, which decides some status codes.
    pub era: Era,
    /// The JSON-RPC id of the request, when it could be read.
    pub id: Option<Value>,
}

impl Failure {
    /// A failure answered in `era` for the request with `id`.
    pub fn new(error: GatewayError, era: Era, id: Option<Value>) -> Self {
        Self { error, era, id }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let wire = self.error.to_wire(self.era);
        if self.error.is_fault() {
            tracing::error!(error = ?self.error, "request failed");
        } else {
            tracing::debug!(error = %self.error, status = wire.status.as_u16(), "request rejected");
        }
        let mut response = match (wire.error, wire.challenge) {
            (Some(error), _) => json(wire.status, &jsonrpc::error_response(self.id, error)),
            (None, Some((challenge, body))) => {
                let mut r = json(wire.status, &body);
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                r
            }
            (None, None) => wire.status.into_response(),
        };
        if let Some(seconds) = wire.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if wire.status == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
        }
        response
    }
}

/// A JSON response with `Content-Type: application/json`.
pub fn json(status: StatusCode, body: &Value) -> Response {
    json_bytes(status, serde_json::to_vec(body).unwrap_or_default())
}

/// A JSON response of already serialized `bytes`.
pub fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `202 Accepted` with no body: the answer to a notification or a client response.
pub fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}
