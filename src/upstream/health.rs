//! Active health checks (DESIGN.md §5.10): each upstream is asked, on a schedule, the cheapest
//! question its era has — `ping` (legacy), `server/discover` (modern) — and is healthy only
//! when it answers with a result: a JSON-RPC error in an HTTP 200 is as unhealthy as a refused
//! connection. A failing upstream is asked again after 1 s, then 2 s, 4 s … up to the
//! interval, so recovery is seen quickly without hammering it. Checks are the gateway's own
//! calls: they pass an open circuit breaker as its probe, and close it when the upstream is
//! back. `/readyz` reports the result per upstream.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::{CallContext, Upstream, mcp};
use crate::backoff::Backoff;
use crate::protocol::Era;

/// The first wait after a failed check; doubles per failure up to the interval.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// What the last check found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// `None` before the first check.
    pub healthy: Option<bool>,
    /// Why the last check failed: an [`super::UpstreamError::reason`], or `jsonrpc_error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Failed checks in a row.
    pub consecutive_failures: u32,
    /// When the last check ended (RFC 3339 in `/readyz`).
    #[serde(skip_serializing_if = "Option::is_none", with = "rfc3339")]
    pub checked_at: Option<SystemTime>,
}

/// One upstream's health, as last checked.
#[derive(Debug, Default)]
pub struct Health(Mutex<Status>);

impl Health {
    /// The last check's result.
    pub fn status(&self) -> Status {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records a check's outcome; whether the upstream was healthy before.
    fn record(&self, outcome: Result<(), &'static str>) -> Option<bool> {
        let mut status = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let was = status.healthy.replace(outcome.is_ok());
        status.reason = outcome.err();
        status.consecutive_failures = match outcome {
            Ok(()) => 0,
            Err(_) => status.consecutive_failures.saturating_add(1),
        };
        status.checked_at = Some(SystemTime::now());
        was
    }
}

/// Checks `upstream` once.
///
/// # Errors
/// Why it is unhealthy: an [`super::UpstreamError::reason`], or `jsonrpc_error`.
pub async fn check(upstream: &Upstream) -> Result<(), &'static str> {
    let info = upstream.info().await.map_err(|e| e.reason())?;
    let (method, params) = match info.era {
        Era::Modern => ("server/discover", Some(mcp::discover_params())),
        Era::Legacy => ("ping", None),
    };
    match upstream
        .request(&CallContext::shared(), method, params)
        .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err("jsonrpc_error"),
        Err(e) => Err(e.reason()),
    }
}

/// Checks `upstream` every `interval` while it is healthy, with backoff while it is not, for
/// as long as it runs.
pub async fn run(upstream: Arc<Upstream>, interval: Duration) {
    let mut backoff = Backoff::new(FIRST_BACKOFF, interval);
    loop {
        let outcome = check(&upstream).await;
        let was = upstream.health().record(outcome);
        match (was, outcome) {
            (Some(false) | None, Ok(())) => {
                tracing::info!(upstream = %upstream.id(), "upstream is healthy");
            }
            (Some(true) | None, Err(reason)) => {
                tracing::warn!(upstream = %upstream.id(), reason, "upstream is unhealthy");
            }
            _ => {}
        }
        let wait = match outcome {
            Ok(()) => {
                backoff.reset();
                interval
            }
            Err(_) => backoff.next_delay(),
        };
        tokio::time::sleep(wait).await;
    }
}

/// `SystemTime` as an RFC 3339 string.
mod rfc3339 {
    use std::time::SystemTime;

    pub fn serialize<S: serde::Serializer>(
        at: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match at {
            Some(t) => s.serialize_str(&humantime::format_rfc3339_seconds(*t).to_string()),
            None => s.serialize_none(),
        }
    }
}
