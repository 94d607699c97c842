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
use crate::audit::record::{self, AuthFailureRecord, Origin, PrincipalFields};
use crate::auth::{PeerCertificate, Principal};
use crate::error::GatewayError;
use crate::jsonrpc::Message;
use crate::listener::RemoteAddr;
use crate::telemetry::trace_context::TraceParent;
use crate::upstream::RequestOrigin;

/// Middleware: notes where the request comes from ([`RequestOrigin`], on its extensions) and
/// authenticates it or answers 401/403; a refusal is counted and audited.
pub async fn authenticate(
    State(gw): State<Arc<Gateway>>,
    mut request: Request,
    next: Next,
) -> Response {
    let origin = RequestOrigin {
        remote_addr: request.extensions().get::<RemoteAddr>().map(|r| r.0),
        trace: request
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(TraceParent::parse),
    };
    request.extensions_mut().insert(origin);
    let peer = request.extensions().get::<PeerCertificate>().cloned();
    match gw.auth.authenticate(request.headers(), peer.as_ref()).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(rejection) => {
            let reason = rejection.code().unwrap_or("missing_credentials");
            let era = super::streamable_http::header_era(request.headers());
            let failure = Failure::new(GatewayError::Unauthorized(rejection), era, None);
            let status = failure.error.to_wire(era).status;
            refused(&gw, reason, status, None, None, origin).await;
            failure.into_response()
        }
    }
}

/// Checks the scopes the method of `message` needs (`auth.method_scopes`); a refusal is
/// counted and audited.
///
/// # Errors
/// [`GatewayError::Unauthorized`] (403) naming the missing scopes.
pub async fn authorize(
    gw: &Gateway,
    principal: &Principal,
    message: &Message,
    origin: RequestOrigin,
) -> Result<(), GatewayError> {
    let (Message::Request { method, .. } | Message::Notification { method, .. }) = message else {
        return Ok(());
    };
    let Err(rejection) = gw.auth.authorize_method(principal, method) else {
        return Ok(());
    };
    let e = GatewayError::Unauthorized(rejection);
    refused(
        gw,
        "insufficient_scope",
        e.to_wire(crate::protocol::Era::Legacy).status,
        Some(principal),
        Some(method),
        origin,
    )
    .await;
    Err(e)
}

/// Counts an authentication failure and writes its audit record (never the credentials).
async fn refused(
    gw: &Gateway,
    reason: &str,
    status: StatusCode,
    principal: Option<&Principal>,
    method: Option<&str>,
    origin: RequestOrigin,
) {
    gw.metrics
        .auth_rejections
        .with_label_values(&[reason])
        .inc();
    let auditor = gw.router.auditor();
    if !auditor.enabled() {
        return;
    }
    let body = AuthFailureRecord {
        reason,
        http_status: status.as_u16(),
        principal: principal.map(PrincipalFields::from),
        method,
    };
    let trace_id = origin.trace.map(|t| t.trace_id_hex());
    let at = Origin {
        remote_addr: origin.remote_addr,
        trace_id: trace_id.as_deref(),
    };
    auditor
        .record_auth_failure(record::encode("auth_failure", &body, at))
        .await;
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
