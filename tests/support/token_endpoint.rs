//! A local OAuth token endpoint (RFC 6749 §4.4 client credentials, RFC 8693 token exchange)
//! that authenticates its client with HTTP Basic and records every grant it serves.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine;
use serde_json::json;

pub const CLIENT_ID: &str = "mcpgate";
pub const CLIENT_SECRET: &str = "s3cret";

#[derive(Default)]
pub struct Seen {
    /// Every form received, as key → value.
    pub grants: Mutex<Vec<HashMap<String, String>>>,
    issued: AtomicUsize,
}

pub struct TokenEndpoint {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    _task: tokio::task::JoinHandle<()>,
}

impl TokenEndpoint {
    pub async fn start() -> Self {
        let seen = Arc::new(Seen::default());
        let state = Arc::clone(&seen);
        let app = axum::Router::new().route(
            "/token",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let seen = Arc::clone(&state);
                async move { grant(&seen, &headers, &body) }
            }),
        );
        let (addr, task) = super::serve(app).await;
        Self {
            addr,
            seen,
            _task: task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn grants(&self) -> Vec<HashMap<String, String>> {
        self.seen.grants.lock().unwrap().clone()
    }
}

fn grant(seen: &Seen, headers: &HeaderMap, body: &str) -> axum::response::Response {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    seen.grants.lock().unwrap().push(form.clone());
    let n = seen.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let token = match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => format!("cc-{n}"),
        Some("urn:ietf:params:oauth:grant-type:token-exchange") => {
            let subject = form.get("subject_token").cloned().unwrap_or_default();
            format!("xchg-{n}-{}", subject.len())
        }
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "unsupported_grant_type"})),
            )
                .into_response();
        }
    };
    axum::Json(
        json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600,
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}),
    )
    .into_response()
}
