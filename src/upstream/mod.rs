//! The MCP client side: one [`Upstream`] per configured server, over Streamable HTTP or stdio,
//! in either era.
//!
//! An upstream answers [`Upstream::request`] with the JSON-RPC outcome (result or error object)
//! of one request, or an [`UpstreamError`] when it could not produce one. Era detection (probe
//! `server/discover`, fall back to `initialize`, cache the answer), legacy sessions and the stdio
//! child process live behind that one call (DESIGN.md §5.2). Names and URIs are not rewritten
//! here: this module speaks the upstream's own names; the router translates.

pub mod breaker;
pub mod call;
pub mod controls;
pub mod credentials;
pub mod health;
mod http;
pub mod mcp;
mod mux;
pub mod retry;
pub mod session_requests;
mod set;
mod sse;
mod sse_events;
mod stdio;
pub mod subscriptions;
mod window;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::config::{UpstreamConfig, UpstreamId, UpstreamTransport};
use crate::redact::Detail;

pub use call::{Call, CallItem, ServerRequest};
pub use http::{SharedSessions, UpstreamSessions};
pub use mcp::UpstreamInfo;
pub use set::{Plan, UpstreamSet};

/// Why an upstream produced no JSON-RPC answer. Classified for the client by
/// [`UpstreamError::reason`]; details are for logs only, and redacted when made (no URL in
/// them keeps its userinfo or query: [`crate::redact`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// Could not connect, or the child process could not be started or is restarting.
    #[error("unavailable: {detail}")]
    Unavailable {
        /// The underlying error, for logs.
        detail: Detail,
    },
    /// No final response within the upstream's timeout.
    #[error("timed out")]
    Timeout,
    /// The connection or process ended before the response arrived.
    #[error("connection closed before the response: {detail}")]
    Closed {
        /// What ended, for logs.
        detail: Detail,
    },
    /// An HTTP status without a JSON-RPC answer.
    #[error("HTTP status {status}")]
    HttpStatus {
        /// The status code.
        status: u16,
    },
    /// The upstream answered something that is not MCP.
    #[error("protocol error: {detail}")]
    Protocol {
        /// What was wrong, for logs.
        detail: Detail,
    },
    /// No token could be obtained for the upstream (token endpoint failed, or a token exchange
    /// without a caller token).
    #[error("credentials: {detail}")]
    Credentials {
        /// What went wrong, for logs.
        detail: Detail,
    },
    /// `server/discover` / `initialize` failed or named no common revision.
    #[error("handshake failed: {detail}")]
    Handshake {
        /// What was wrong, for logs.
        detail: Detail,
    },
    /// The upstream's circuit breaker is open: it kept failing, and calls are refused until
    /// the next probe ([`breaker`]).
    #[error("circuit open")]
    CircuitOpen {
        /// Until the next call may be let through.
        retry_after: Duration,
    },
    /// `max_concurrency` calls are in flight at the upstream (the bulkhead is full).
    #[error("too many calls in flight")]
    Overloaded,
}

impl UpstreamError {
    /// A stable machine-readable reason for `error.data.reason` and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unavailable { .. } => "unavailable",
            Self::Timeout => "timeout",
            Self::Closed { .. } => "disconnected",
            Self::HttpStatus { .. } => "http_status",
            Self::Protocol { .. } => "protocol_error",
            Self::Handshake { .. } => "handshake_failed",
            Self::Credentials { .. } => "upstream_credentials",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::Overloaded => "overloaded",
        }
    }

    /// What the outcome says about the upstream's health (DESIGN.md §5.10): connect errors,
    /// timeouts, HTTP 5xx, protocol garbage, a connection or child process gone are failures;
    /// the gateway's own refusals and credential trouble say nothing about it.
    pub fn verdict(&self) -> breaker::Verdict {
        match self {
            Self::Unavailable { .. }
            | Self::Timeout
            | Self::Closed { .. }
            | Self::Protocol { .. }
            | Self::Handshake { .. } => breaker::Verdict::Failure,
            Self::HttpStatus { status } if *status >= 500 => breaker::Verdict::Failure,
            Self::HttpStatus { .. }
            | Self::Credentials { .. }
            | Self::CircuitOpen { .. }
            | Self::Overloaded => breaker::Verdict::Neutral,
        }
    }

    /// The client-facing sentence: says what happened without internal detail.
    pub fn client_message(&self) -> String {
        match self {
            Self::Unavailable { .. } => "is unavailable".into(),
            Self::Timeout => "did not answer in time".into(),
            Self::Closed { .. } => "closed the connection before answering".into(),
            Self::HttpStatus { status } => format!("answered with HTTP status {status}"),
            Self::Protocol { .. } => "sent an invalid MCP response".into(),
            Self::Handshake { .. } => "could not negotiate a protocol version".into(),
            Self::Credentials { .. } => "could not be authenticated to".into(),
            Self::CircuitOpen { .. } => {
                "is failing; calls to it are refused until it recovers".into()
            }
            Self::Overloaded => "has too many calls in flight; try again shortly".into(),
        }
    }
}

/// The outcome of one JSON-RPC request: `Ok(result)` or `Err(error object)`, both verbatim.
pub type Reply = Result<Value, Value>;

/// Who a call is made for. Legacy HTTP upstreams keep one upstream session per downstream
/// session; everything else is shared.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The downstream legacy session, or `None` for the gateway's shared connection (catalogue
    /// plane, modern clients).
    pub downstream_session: Option<Uuid>,
    /// Client capabilities to declare to a modern upstream.
    pub client_capabilities: Value,
    /// Client implementation info to declare to a modern upstream (the gateway's when `None`).
    pub client_info: Option<Value>,
    /// The log level the client asked for, passed to a modern upstream as `_meta` `logLevel`.
    pub log_level: Option<String>,
    /// The client the call is made for; `None` for the gateway's own calls (catalogue plane).
    /// Decides policy and the upstream credentials of token-exchange upstreams.
    pub principal: Option<Arc<crate::auth::Principal>>,
    /// Where the client's request came from and its trace (empty for the gateway's own calls).
    pub origin: RequestOrigin,
}

/// Where a client's request came from: the TCP peer and the W3C trace it belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestOrigin {
    /// The client's address (the TCP peer; a proxy's when one is in front).
    pub remote_addr: Option<std::net::SocketAddr>,
    /// The client's `traceparent`, if it sent a valid one.
    pub trace: Option<crate::telemetry::trace_context::TraceParent>,
}

impl RequestOrigin {
    /// This origin with the trace of `params._meta.traceparent`, when it holds a valid one
    /// (it names the request more precisely than an HTTP header a proxy may have set).
    pub fn with_meta(self, params: Option<&Value>) -> Self {
        let meta = params
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get("traceparent"))
            .and_then(Value::as_str)
            .and_then(crate::telemetry::trace_context::TraceParent::parse);
        Self {
            trace: meta.or(self.trace),
            ..self
        }
    }
}

impl CallContext {
    /// The era of the client the call is made for: legacy for a legacy session (which has a
    /// downstream session), modern for a modern client and for the gateway's own calls.
    pub fn client_era(&self) -> crate::protocol::Era {
        if self.downstream_session.is_some() {
            crate::protocol::Era::Legacy
        } else {
            crate::protocol::Era::Modern
        }
    }

    /// The gateway's own shared context (catalogue plane).
    pub fn shared() -> Self {
        Self {
            downstream_session: None,
            client_capabilities: json!({}),
            client_info: None,
            log_level: None,
            principal: None,
            origin: RequestOrigin::default(),
        }
    }
}

/// Something an upstream did that other parts of the gateway react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamEvent {
    /// The upstream announced `notifications/{tools,prompts,resources}/list_changed`.
    ListChanged {
        /// Which upstream.
        upstream: UpstreamId,
        /// The notification's method (which list changed).
        method: String,
    },
    /// The upstream announced `notifications/resources/updated` for one of its resources.
    ResourceUpdated {
        /// Which upstream.
        upstream: UpstreamId,
        /// The upstream's own URI of the resource.
        uri: String,
        /// The downstream session whose own upstream session announced it; `None` when it
        /// came on a shared connection.
        downstream: Option<Uuid>,
    },
    /// The upstream (re)connected: a new stdio process finished its handshake.
    Reconnected {
        /// Which upstream.
        upstream: UpstreamId,
    },
}

/// One configured upstream MCP server.
pub struct Upstream {
    id: UpstreamId,
    link: Link,
    /// Bulkhead, breaker, timeouts, retry budget.
    controls: controls::Controls,
    /// The last active health check.
    health: health::Health,
    /// Resource subscriptions held on the shared connection, counted ([`subscriptions`]).
    shared_subscriptions: subscriptions::Counts,
    /// The configuration it was built from (a reload compares it).
    config: UpstreamConfig,
    /// Stops this upstream's stdio process (shared with the set's, for shutdown).
    children: stdio::Children,
}

enum Link {
    Http(Box<http::HttpUpstream>),
    /// stdio, or the 2024-11-05 HTTP+SSE transport: one multiplexed connection.
    Mux(Box<mux::MuxUpstream>),
}

impl Link {
    /// Whether no connection task is left running (HTTP upstreams hold none).
    fn finished(&self) -> bool {
        match self {
            Self::Http(_) => true,
            Self::Mux(m) => m.finished(),
        }
    }
}

impl Upstream {
    /// Creates the client for one upstream. stdio children start at once, in the background.
    /// Must be called inside a tokio runtime.
    pub fn new(
        cfg: &UpstreamConfig,
        http_client: reqwest::Client,
        sessions: &UpstreamSessions,
        events: broadcast::Sender<UpstreamEvent>,
        session_requests: Arc<session_requests::SessionRequests>,
        metrics: &crate::telemetry::traffic::TrafficMetrics,
        children: &stdio::Children,
    ) -> Self {
        let children = children.for_upstream();
        let link = match &cfg.transport {
            UpstreamTransport::Http {
                url,
                headers,
                oauth,
            } => {
                let credentials = oauth.as_deref().map(|o| {
                    Arc::new(credentials::UpstreamCredentials::new(
                        o.clone(),
                        http_client.clone(),
                    ))
                });
                Link::Http(Box::new(http::HttpUpstream::new(
                    cfg.id.clone(),
                    http::Target {
                        url: url.clone(),
                        headers: headers.clone(),
                        credentials,
                    },
                    cfg.era,
                    http_client,
                    sessions,
                    events,
                    session_requests,
                )))
            }
            UpstreamTransport::Sse { url, headers } => {
                let connector = sse::SseConnector {
                    id: cfg.id.clone(),
                    url: url.clone(),
                    headers: header_map(headers),
                    client: http_client,
                };
                Link::Mux(Box::new(mux::MuxUpstream::spawn(
                    cfg.clone(),
                    Arc::new(connector),
                    events,
                )))
            }
            UpstreamTransport::Stdio {
                command,
                args,
                env,
                cwd,
            } => {
                let connector = stdio::StdioConnector {
                    id: cfg.id.clone(),
                    command: command.clone(),
                    args: args.clone(),
                    env: env.clone(),
                    cwd: cwd.clone(),
                    children: children.clone(),
                };
                Link::Mux(Box::new(mux::MuxUpstream::spawn(
                    cfg.clone(),
                    Arc::new(connector),
                    events,
                )))
            }
        };
        Self {
            id: cfg.id.clone(),
            controls: controls::Controls::new(
                cfg.id.as_str(),
                cfg.timeout,
                cfg.traffic.clone(),
                metrics,
            ),
            health: health::Health::default(),
            link,
            shared_subscriptions: subscriptions::Counts::default(),
            config: cfg.clone(),
            children,
        }
    }

    /// The configuration the upstream was built from.
    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// Stops the upstream for good (it was removed from the configuration): a stdio process
    /// gets SIGTERM, SIGKILL 5 s later, and is not restarted; returns once
    /// its connections have ended (or a second after that bound). Requests made afterwards
    /// fail as unavailable.
    pub async fn stop(&self) {
        self.children.cancel();
        let bound = stdio::STOP_GRACE + Duration::from_secs(1);
        let ended = async {
            while !self.link.finished() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        if tokio::time::timeout(bound, ended).await.is_err() {
            tracing::warn!(upstream = %self.id, "the removed upstream's process was still running");
        }
    }

    /// The upstream id.
    pub fn id(&self) -> &UpstreamId {
        &self.id
    }

    /// Whole-call timeout (`upstreams[].timeout`).
    pub fn timeout(&self) -> Duration {
        self.controls.timeout(None)
    }

    /// What the last active health check found ([`health`]).
    pub fn health(&self) -> &health::Health {
        &self.health
    }

    /// Bulkhead, breaker, timeouts and retry budget of this upstream.
    pub fn controls(&self) -> &controls::Controls {
        &self.controls
    }

    /// Sends one request and waits for its outcome, at most the upstream's `timeout` (which
    /// includes connecting, any handshake and retries). Server→client requests are rejected
    /// and notifications dropped. For the gateway's own requests (`ctx` without a principal:
    /// the catalogue plane), which pass an open circuit as its probe, and for a client's
    /// fan-out requests (`tasks/list`), which an open circuit refuses. Idempotent methods are
    /// retried ([`retry`]).
    ///
    /// `params` are in the upstream's own names; `_meta` is shaped for the upstream's era.
    ///
    /// # Errors
    /// [`UpstreamError`] when no JSON-RPC outcome arrived.
    pub async fn request(
        &self,
        ctx: &CallContext,
        method: &str,
        params: Option<Value>,
    ) -> Result<Reply, UpstreamError> {
        let lease = self.controls.breaker(ctx.principal.is_none(), None)?;
        let limits = self.limits(self.controls.timeout(None));
        let outcome = self
            .controls
            .retries
            .run(method, limits.deadline, params, |params| async {
                self.start(ctx, method, params, &[], limits)
                    .await?
                    .finish()
                    .await
            })
            .await;
        lease.settle(outcome.as_ref());
        outcome
    }

    /// Starts one request and returns it as a [`Call`]: everything the upstream sends for it,
    /// in order, then the outcome. The whole call, connecting, handshake and retries of an
    /// idempotent method included, is bounded by `timeout`; each progress notification the
    /// upstream sends extends it to `timeout` from then, up to the upstream's `max_timeout`
    /// from the start. `param_headers` are `Mcp-Param-{name}` values for a modern HTTP
    /// upstream (see [`crate::param_headers::header_values`]); other transports ignore them, as
    /// the spec allows. Bulkhead and breaker are the caller's ([`controls`]).
    ///
    /// # Errors
    /// [`UpstreamError`] when the request could not be sent.
    pub async fn call(
        &self,
        ctx: &CallContext,
        method: &str,
        params: Option<Value>,
        param_headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<Call, UpstreamError> {
        let limits = self.limits(timeout);
        let idempotent = retry::is_idempotent(method);
        self.controls
            .retries
            .run(method, limits.deadline, params, |params| async move {
                let mut call = self
                    .start(ctx, method, params, param_headers, limits)
                    .await?;
                if idempotent {
                    // A 5xx arrives as the call's only item: seen here, it can be retried.
                    call.fail_early().await?;
                }
                Ok(call)
            })
            .await
    }

    /// The time bounds of a call with whole-call `timeout` starting now.
    fn limits(&self, timeout: Duration) -> TimeLimits {
        let now = tokio::time::Instant::now();
        TimeLimits {
            deadline: now + timeout,
            timeout,
            longest: now + self.controls.traffic.max_timeout,
        }
    }

    /// One attempt of [`Upstream::call`], within `limits`.
    async fn start(
        &self,
        ctx: &CallContext,
        method: &str,
        params: Option<Value>,
        param_headers: &[(String, String)],
        limits: TimeLimits,
    ) -> Result<Call, UpstreamError> {
        let deadline = limits.deadline;
        let start = async {
            match &self.link {
                Link::Http(h) => h.call(ctx, method, params, param_headers, deadline).await,
                Link::Mux(s) => s.call(ctx, method, params, deadline).await,
            }
        };
        let call = tokio::time::timeout_at(deadline, start)
            .await
            .unwrap_or(Err(UpstreamError::Timeout))?;
        Ok(call.extended_by_progress(limits.timeout, limits.longest))
    }

    /// Opens a long-lived `subscriptions/listen` on a modern upstream for its list changes; the
    /// notifications it brings are announced as [`UpstreamEvent`]s by the transport. The call
    /// has no deadline: it ends when the upstream or the gateway ends it.
    ///
    /// # Errors
    /// [`UpstreamError`] when the request could not be sent.
    pub async fn listen(&self) -> Result<Call, UpstreamError> {
        let params = json!({"notifications": {
            "toolsListChanged": true, "promptsListChanged": true, "resourcesListChanged": true}});
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10 * 365 * 24 * 3600);
        let ctx = CallContext::shared();
        let start = async {
            match &self.link {
                Link::Http(h) => {
                    h.call(&ctx, "subscriptions/listen", Some(params), &[], deadline)
                        .await
                }
                Link::Mux(s) => {
                    s.call(&ctx, "subscriptions/listen", Some(params), deadline)
                        .await
                }
            }
        };
        tokio::time::timeout(self.timeout(), start)
            .await
            .unwrap_or(Err(UpstreamError::Timeout))
    }

    /// What the upstream said about itself, connecting first if needed.
    ///
    /// # Errors
    /// [`UpstreamError`] when it cannot be reached or the handshake fails.
    pub async fn info(&self) -> Result<UpstreamInfo, UpstreamError> {
        let call = async {
            match &self.link {
                Link::Http(h) => h.info().await,
                Link::Mux(s) => s.info().await,
            }
        };
        tokio::time::timeout(self.timeout(), call)
            .await
            .unwrap_or(Err(UpstreamError::Timeout))
    }

    /// Ends the upstream session held for a downstream session (legacy HTTP: `DELETE`).
    pub async fn close_session(&self, downstream: Uuid) {
        if let Link::Http(h) = &self.link {
            h.close_session(downstream).await;
        }
    }
}

/// The time bounds of one call: its deadline (`timeout` from its start, retries included), and
/// how far progress notifications may move it (`timeout` from each, up to `longest`).
#[derive(Debug, Clone, Copy)]
struct TimeLimits {
    deadline: tokio::time::Instant,
    timeout: Duration,
    longest: tokio::time::Instant,
}

/// Configured static headers as a header map, values marked sensitive (never logged).
fn header_map(headers: &[(::http::HeaderName, crate::config::Secret)]) -> ::http::HeaderMap {
    let mut map = ::http::HeaderMap::new();
    for (name, value) in headers {
        if let Ok(mut v) = ::http::HeaderValue::from_str(value.expose()) {
            v.set_sensitive(true);
            map.append(name.clone(), v);
        }
    }
    map
}
