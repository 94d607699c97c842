//! The front door of the client-facing routes: every request is authenticated before a handler
//! sees it ([`authenticate`]), its [`Principal`] put on the request, and each JSON-RPC method is
//! checked against the scopes it needs ([`authorize`]). Refusals leave through the one error
//! boundary ([`Failure`]) as 401/403 with a `WWW-Authenticate` challenge.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Gateway;
use super::wire::Failure;
use crate::auth::{PeerCertificate, Principal};
use crate::error::GatewayError;
use crate::jsonrpc::Message;

/// Middleware: authenticates the request or answers 401/403.
pub async fn authenticate(
    State(gw): State<Arc<Gateway>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request.extensions().get::<PeerCertificate>().cloned();
    match gw.auth.authenticate(request.headers(), peer.as_ref()).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(rejection) => {
            gw.metrics
                .auth_rejections
                .with_label_values(&[rejection.code().unwrap_or("missing_credentials")])
                .inc();
            let era = super::streamable_http::header_era(request.headers());
            Failure::new(GatewayError::Unauthorized(rejection), era, None).into_response()
        }
    }
}

/// Checks the scopes the method of `message` needs (`auth.method_scopes`).
///
/// # Errors
/// [`GatewayError::Unauthorized`] (403) naming the missing scopes.
pub fn authorize(
    gw: &Gateway,
    principal: &Principal,
    message: &Message,
) -> Result<(), GatewayError> {
    let (Message::Request { method, .. } | Message::Notification { method, .. }) = message else {
        return Ok(());
    };
    gw.auth
        .authorize_method(principal, method)
        .map_err(|rejection| {
            gw.metrics
                .auth_rejections
                .with_label_values(&["insufficient_scope"])
                .inc();
            GatewayError::Unauthorized(rejection)
        })
}

/// `GET` of the protected resource metadata (RFC 9728 §3.2), or 404 without authentication.
pub async fn resource_metadata(State(gw): State<Arc<Gateway>>) -> Response {
    match gw.auth.metadata() {
        Some(m) => {
            let mut r = super::wire::json(StatusCode::OK, m.document());
            r.headers_mut().insert(
                axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
                axum::http::HeaderValue::from_static("*"),
            );
            r
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The request's principal, put there by [`authenticate`].
pub type Caller = axum::Extension<Arc<Principal>>;
