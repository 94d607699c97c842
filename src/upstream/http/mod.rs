//! Streamable HTTP upstreams, both eras.
//!
//! Era: probed once with `server/discover` and cached for the life of the process (2026-07-28
//! `basic/versioning`: the era is a property of the server). Modern: one POST per request with
//! `_meta` and the mirrored headers. Legacy: one upstream session per downstream session
//! (`None` = the gateway's shared session), opened lazily with `initialize`, re-opened once on
//! 404, closed with `DELETE` when the downstream session ends or idles out.
//!
//! A request answered with an SSE stream becomes a [`Call`] fed by a reader task, so progress,
//! log messages and server→client requests reach the client as they arrive. Dropping the call
//! aborts the reader (closing the stream, which is how a modern upstream learns of
//! cancellation) and, for a legacy upstream, also sends `notifications/cancelled`.

mod endpoint;
mod shared;
mod stream;

pub use shared::SharedSessions;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::Value;
use tokio::sync::OnceCell;
use url::Url;
use uuid::Uuid;

use super::call::{CALL_CHANNEL, Call, Respond};
use super::credentials::Credentials;
use super::mcp::{self, UpstreamInfo};
use super::{CallContext, UpstreamError, UpstreamEvent};
use crate::config::{EraPreference, Secret, UpstreamId};
use crate::protocol::{
    Era, HEADER_METHOD, HEADER_NAME, HEADER_PROTOCOL_VERSION, HEADER_SESSION_ID, LATEST_MODERN,
    encode_header_value,
};
use endpoint::{Endpoint, Opened};
use stream::{HttpResponder, listen_get, relay_json, relay_sse};

/// One legacy upstream session.
#[derive(Debug)]
struct LegacySession {
    /// `Mcp-Session-Id` the upstream assigned; `None` for stateless legacy servers.
    id: Option<String>,
    info: UpstreamInfo,
    /// When this replica last renewed the session's shared record.
    renewed: std::sync::Mutex<tokio::time::Instant>,
}

impl LegacySession {
    fn new(id: Option<String>, info: UpstreamInfo) -> Self {
        Self {
            id,
            info,
            renewed: std::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Whether the shared record is due for renewal (at most once per `every`); marks it
    /// renewed when it is.
    fn renewal_due(&self, every: Duration) -> bool {
        let mut renewed = self.renewed.lock().unwrap_or_else(|p| p.into_inner());
        let now = tokio::time::Instant::now();
        let due = now.duration_since(*renewed) >= every;
        if due {
            *renewed = now;
        }
        due
    }
}

type SessionCell = Arc<OnceCell<Arc<LegacySession>>>;

/// How the legacy upstream sessions of client sessions are held.
#[derive(Clone)]
pub struct UpstreamSessions {
    /// How long one lasts unused and how many are held (`session.idle_timeout`,
    /// `session.max_sessions`).
    pub config: crate::config::SessionConfig,
    /// Where each client session's upstream session is shared with the other replicas
    /// (`limits.store: redis`); `None`: every replica opens its own.
    pub shared: Option<Arc<SharedSessions>>,
}

/// GET streams of legacy upstream sessions (the upstream's unsolicited notifications), by
/// downstream session: the shared session's always, a downstream session's once it subscribes
/// to a resource. A listener ends with its session (ended, idled out or evicted).
#[derive(Default)]
struct Listeners(
    std::sync::Mutex<std::collections::HashMap<Option<Uuid>, tokio::task::JoinHandle<()>>>,
);

impl Listeners {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<Option<Uuid>, tokio::task::JoinHandle<()>>,
    > {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the listener of `key`, if any.
    fn stop(&self, key: Option<Uuid>) {
        if let Some(task) = self.lock().remove(&key) {
            task.abort();
        }
    }
}

pub(super) struct HttpUpstream {
    id: UpstreamId,
    endpoint: Arc<Endpoint>,
    listeners: Arc<Listeners>,
    era_pref: EraPreference,
    era: OnceCell<(Era, Option<UpstreamInfo>)>,
    /// For a modern upstream: whether it also serves legacy sessions (answers `initialize`, as
    /// dual-era servers do), learnt from the first legacy client's session.
    serves_legacy: std::sync::OnceLock<bool>,
    sessions: moka::future::Cache<Option<Uuid>, SessionCell>,
    /// Where client sessions' upstream sessions are shared with the other replicas, if anywhere.
    shared: Option<Arc<SharedSessions>>,
    /// Runs the session cache's housekeeping, so idle sessions end (DELETE upstream, listener
    /// stopped) even when no request comes.
    housekeeping: tokio::task::JoinHandle<()>,
}

impl Drop for HttpUpstream {
    fn drop(&mut self) {
        self.housekeeping.abort();
        for (_, task) in self.listeners.lock().drain() {
            task.abort();
        }
    }
}

/// Where an HTTP upstream is and how the gateway authenticates to it.
pub(super) struct Target {
    /// The MCP endpoint.
    pub(super) url: Url,
    /// Static headers.
    pub(super) headers: Vec<(HeaderName, Secret)>,
    /// OAuth tokens, if configured.
    pub(super) credentials: Option<Credentials>,
}

impl HttpUpstream {
    /// An upstream at `target`. Legacy upstream sessions (one per downstream session) end
    /// after `sessions.config.idle_timeout` unused; at most `sessions.config.max_sessions` are
    /// held, the least recently used ending first. With `sessions.shared`, a downstream
    /// session's upstream session is the same on every replica ([`shared`]).
    pub(super) fn new(
        id: UpstreamId,
        target: Target,
        era_pref: EraPreference,
        client: reqwest::Client,
        sessions: &UpstreamSessions,
        events: tokio::sync::broadcast::Sender<UpstreamEvent>,
        session_requests: Arc<super::session_requests::SessionRequests>,
    ) -> Self {
        let (limits, shared) = (&sessions.config, sessions.shared.clone());
        let endpoint = Arc::new(Endpoint {
            id: id.clone(),
            url: target.url,
            headers: super::header_map(&target.headers),
            client,
            next_id: AtomicU64::new(1),
            events,
            credentials: target.credentials,
            session_requests,
        });
        let closer = Arc::clone(&endpoint);
        let listeners = Arc::new(Listeners::default());
        let stopper = Arc::clone(&listeners);
        let (upstream, store) = (id.clone(), shared.clone());
        let sessions = moka::future::Cache::builder()
            .time_to_idle(limits.idle_timeout)
            .max_capacity(limits.max_sessions)
            .eviction_listener(move |key: Arc<Option<Uuid>>, cell: SessionCell, cause| {
                use moka::notification::RemovalCause;
                // Replaced: re-initialised after a 404, the old session is gone upstream (its
                // listener sees the 404 and stops; the caller starts the new one's).
                if cause == RemovalCause::Replaced {
                    return;
                }
                stopper.stop(*key);
                let session_id = cell.get().and_then(|s| s.id.clone());
                if let (Some(session_id), Ok(rt)) =
                    (session_id, tokio::runtime::Handle::try_current())
                {
                    let endpoint = Arc::clone(&closer);
                    let shared = store.clone().zip(*key);
                    let upstream = upstream.clone();
                    // The client ended its session: the upstream session ends everywhere.
                    let ended = cause == RemovalCause::Explicit;
                    rt.spawn(async move {
                        if let Some((shared, downstream)) = shared
                            && !shared
                                .closes_here(&upstream, downstream, &session_id, ended)
                                .await
                        {
                            return;
                        }
                        endpoint.delete_session(&session_id).await;
                    });
                }
            })
            .build();
        let housekeeping = {
            let sessions = sessions.clone();
            let period = (limits.idle_timeout / 4)
                .clamp(Duration::from_millis(100), Duration::from_secs(30));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                loop {
                    tick.tick().await;
                    sessions.run_pending_tasks().await;
                }
            })
        };
        Self {
            id,
            endpoint,
            listeners,
            era_pref,
            era: OnceCell::new(),
            serves_legacy: std::sync::OnceLock::new(),
            sessions,
            shared,
            housekeeping,
        }
    }

    pub(super) async fn info(&self) -> Result<UpstreamInfo, UpstreamError> {
        match self.era().await? {
            (Era::Modern, Some(info)) => Ok(info.clone()),
            _ => Ok(self
                .session(None, &Value::Null, None, None)
                .await?
                .info
                .clone()),
        }
    }

    /// Starts one request; see [`Call`].
    pub(super) async fn call(
        &self,
        ctx: &CallContext,
        method: &str,
        params: Option<Value>,
        param_headers: &[(String, String)],
        deadline: tokio::time::Instant,
    ) -> Result<Call, UpstreamError> {
        let (era, _) = self.era().await?;
        let caller = self.caller_authorization(ctx).await?;
        // A legacy client's session gets a legacy upstream session from a dual-era upstream
        // too: server→client requests and subscriptions work as they do talking to it directly.
        let speak_legacy = *era == Era::Legacy
            || (ctx.client_era() == Era::Legacy && self.serves_legacy.get() != Some(&false));
        if speak_legacy {
            match self
                .call_legacy(ctx, method, params.clone(), &caller, deadline)
                .await
            {
                Err(e) if *era == Era::Modern && refuses_initialize(&e) => {
                    tracing::info!(upstream = %self.id, error = %e,
                        "the modern upstream does not serve legacy sessions; bridging its legacy clients");
                    let _ = self.serves_legacy.set(false);
                }
                Ok(call) => {
                    if *era == Era::Modern {
                        let _ = self.serves_legacy.set(true);
                    }
                    return Ok(call);
                }
                Err(e) => return Err(e),
            }
        }
        let params = mcp::shape_params(Era::Modern, params, ctx);
        let name = params.as_ref().and_then(mirrored_name(method));
        let mut headers = modern_headers(method, name.as_deref());
        add_param_headers(&mut headers, param_headers);
        add_traceparent(&mut headers, params.as_ref());
        headers.extend(caller);
        let opened = self.endpoint.open(method, params, &headers).await?;
        Ok(self.stream(opened, headers, deadline, false))
    }

    /// Starts one request in the legacy upstream session of `ctx`'s downstream session (the
    /// gateway's own for `None`), opening it first if needed.
    async fn call_legacy(
        &self,
        ctx: &CallContext,
        method: &str,
        params: Option<Value>,
        caller: &Option<(HeaderName, HeaderValue)>,
        deadline: tokio::time::Instant,
    ) -> Result<Call, UpstreamError> {
        let params = mcp::shape_params(Era::Legacy, params, ctx);
        let key = ctx.downstream_session;
        let caller_token = ctx.principal.as_ref().and_then(|p| p.token.clone());
        let mut retried = false;
        let mut relisten = false;
        loop {
            let session = self
                .session(
                    key,
                    &ctx.client_capabilities,
                    caller.clone(),
                    caller_token.clone(),
                )
                .await?;
            self.renew(key, &session);
            // A subscription needs the session's notifications; so does a session
            // re-initialised while it had a listener.
            if method == "resources/subscribe" || relisten {
                self.ensure_listening(key, &session, caller_token.clone());
            }
            let mut headers = legacy_headers(&session);
            add_traceparent(&mut headers, params.as_ref());
            headers.extend(caller.clone());
            let opened = self.endpoint.open(method, params.clone(), &headers).await?;
            if let Some(old) = &session.id
                && session_refused(opened.status)
                && !retried
            {
                tracing::info!(upstream = %self.id, status = opened.status.as_u16(),
                    "upstream session refused; re-initialising");
                relisten = self.forget_session(key, old, opened.status).await;
                retried = true;
                continue;
            }
            return Ok(self.stream(opened, headers, deadline, true));
        }
    }

    /// Drops the upstream session `old` of `key`, which the upstream refused (the request was
    /// not processed), so the next request initialises a new one. Its listener is stopped;
    /// returns whether there was one (the new session needs one too). After a 404 the session
    /// is gone upstream; after a 400 it may not be, and is deleted.
    async fn forget_session(&self, key: Option<Uuid>, old: &str, status: StatusCode) -> bool {
        let listened = self.listeners.lock().contains_key(&key);
        self.listeners.stop(key);
        // No replica is to adopt it any more (awaited: this replica's next step looks it up).
        if let (Some(shared), Some(downstream)) = (&self.shared, key)
            && let Err(error) = shared.release(&self.id, downstream, old).await
        {
            tracing::warn!(upstream = %self.id, %error, "could not drop a refused upstream session from the shared store");
        }
        // Replacing (not invalidating) the entry skips the eviction's DELETE and listener stop.
        self.sessions.insert(key, Arc::new(OnceCell::new())).await;
        if status != StatusCode::NOT_FOUND {
            let (endpoint, old) = (Arc::clone(&self.endpoint), old.to_string());
            tokio::spawn(async move { endpoint.delete_session(&old).await });
        }
        listened
    }

    /// Turns an opened POST into a [`Call`] fed by a reader task: an SSE body item by item, a
    /// JSON body (one message, or several) once read.
    fn stream(
        &self,
        opened: Opened,
        headers: HeaderMap,
        deadline: tokio::time::Instant,
        legacy: bool,
    ) -> Call {
        let (tx, rx) = tokio::sync::mpsc::channel(CALL_CHANNEL);
        let responder: Arc<dyn Respond> = Arc::new(HttpResponder {
            endpoint: Arc::clone(&self.endpoint),
            headers: headers.clone(),
        });
        let request_id = opened.id.clone();
        let endpoint = Arc::clone(&self.endpoint);
        let reader = if opened.is_sse {
            tokio::spawn(relay_sse(opened, tx, responder, endpoint))
        } else {
            tokio::spawn(relay_json(opened, tx, responder, endpoint))
        };
        let endpoint = Arc::clone(&self.endpoint);
        let on_cancel = move || {
            reader.abort();
            if legacy {
                // Legacy upstreams learn of cancellation only by notification.
                tokio::spawn(async move {
                    let params = serde_json::json!({"requestId": request_id, "reason": "cancelled by the client"});
                    let _ = endpoint
                        .notify_with("notifications/cancelled", Some(params), &headers)
                        .await;
                });
            }
        };
        Call::new(rx, deadline, Some(Box::new(on_cancel)))
    }

    pub(super) async fn close_session(&self, downstream: Uuid) {
        self.listeners.stop(Some(downstream));
        self.sessions.invalidate(&Some(downstream)).await;
    }

    /// The era, probing on first use. Failures to reach the upstream are not cached.
    async fn era(&self) -> Result<&(Era, Option<UpstreamInfo>), UpstreamError> {
        self.era
            .get_or_try_init(|| async {
                match self.era_pref {
                    EraPreference::Legacy => Ok((Era::Legacy, None)),
                    EraPreference::Modern => {
                        let info = self
                            .probe()
                            .await?
                            .ok_or_else(|| UpstreamError::Handshake {
                                detail: "configured as modern, but server/discover failed".into(),
                            })?;
                        Ok((Era::Modern, Some(info)))
                    }
                    EraPreference::Auto => Ok(match self.probe().await? {
                        Some(info) => (Era::Modern, Some(info)),
                        None => (Era::Legacy, None),
                    }),
                }
            })
            .await
    }

    /// Sends `server/discover`: `Some(info)` for a modern upstream, `None` for a legacy one.
    async fn probe(&self) -> Result<Option<UpstreamInfo>, UpstreamError> {
        let headers = modern_headers("server/discover", None);
        let posted = self
            .endpoint
            .post("server/discover", Some(mcp::discover_params()), &headers)
            .await?;
        let era = match &posted.answer {
            Some(Ok(result)) => mcp::parse_discover(result),
            Some(Err(error)) if mcp::is_incompatible_modern(error) => {
                return Err(UpstreamError::Handshake {
                    detail: format!("modern-only upstream shares no protocol version: {error}")
                        .into(),
                });
            }
            _ => None,
        };
        tracing::info!(
            upstream = %self.id,
            era = if era.is_some() { "modern" } else { "legacy" },
            status = posted.status.as_u16(),
            "probed upstream era"
        );
        Ok(era)
    }

    /// The legacy session for `key`, opened on first use.
    /// `capabilities` are declared in `initialize`: the downstream client's own for its
    /// session, what the gateway can relay for the shared one.
    /// The `Authorization` header of a call made for a client of a token-exchange upstream:
    /// the client's token exchanged for this upstream. `None` otherwise (the endpoint then
    /// adds the gateway's own token, if any).
    async fn caller_authorization(
        &self,
        ctx: &CallContext,
    ) -> Result<Option<(HeaderName, HeaderValue)>, UpstreamError> {
        let (Some(credentials), Some(principal)) = (&self.endpoint.credentials, &ctx.principal)
        else {
            return Ok(None);
        };
        if !credentials.exchanges_tokens() {
            return Ok(None);
        }
        let value = credentials.for_caller(principal.token.as_ref()).await?;
        let value = HeaderValue::from_str(&value).map_err(|_| UpstreamError::Credentials {
            detail: "the exchanged token is not a valid header value".into(),
        })?;
        Ok(Some((http::header::AUTHORIZATION, value)))
    }

    /// The upstream session held for `key`, opened (with `caller`'s authorization, if any)
    /// on first use.
    async fn session(
        &self,
        key: Option<Uuid>,
        capabilities: &Value,
        caller: Option<(HeaderName, HeaderValue)>,
        caller_token: Option<Secret>,
    ) -> Result<Arc<LegacySession>, UpstreamError> {
        let cell = self
            .sessions
            .get_with(key, async { Arc::new(OnceCell::new()) })
            .await;
        let capabilities = if key.is_some() {
            capabilities.clone()
        } else {
            mcp::relayed_client_capabilities()
        };
        cell.get_or_try_init(|| async {
            let (session, adopted) = self.open_session(key, &capabilities, caller).await?;
            let session = Arc::new(session);
            // The gateway's own session listens for list changes; a client's session, when the
            // client can answer server requests, for those the upstream sends unattached to a
            // call (as a client talking to the upstream directly would).
            let answers = ["sampling", "elicitation", "roots"]
                .iter()
                .any(|c| capabilities.get(c).is_some());
            if key.is_none() {
                self.listen(key, &session, None);
            } else if answers {
                // Open before the session's first call: a request the upstream sends on it
                // meanwhile would be lost.
                // An adopted session's stream may be held by the replica that opened it (a
                // server may allow one): this one takes over when that one lets go.
                let opened = self.listen(key, &session, caller_token);
                if !adopted {
                    let _ = tokio::time::timeout(STREAM_OPEN_WAIT, opened).await;
                }
            }
            Ok(session)
        })
        .await
        .cloned()
    }

    /// A new upstream session for `key`: the one another replica recorded for the same
    /// downstream session, adopted (`true`), or one opened now with `initialize` (`false`),
    /// recorded for the other replicas. The shared store failing leaves this replica with a
    /// session of its own.
    async fn open_session(
        &self,
        key: Option<Uuid>,
        capabilities: &Value,
        caller: Option<(HeaderName, HeaderValue)>,
    ) -> Result<(LegacySession, bool), UpstreamError> {
        let shared = self.shared.as_deref().zip(key);
        if let Some((shared, downstream)) = shared {
            match shared.lookup(&self.id, downstream).await {
                Ok(Some(record)) => {
                    if let Some(session) = self.adopt(record) {
                        return Ok((session, true));
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(upstream = %self.id, %error, "cannot look up the shared upstream session; this replica opens its own");
                }
            }
        }
        let mut headers = HeaderMap::new();
        headers.extend(caller);
        let (session, result) = self.initialize(capabilities, headers).await?;
        let (Some((shared, downstream)), Some(id)) = (shared, &session.id) else {
            return Ok((session, false));
        };
        match shared.claim(&self.id, downstream, id, &result).await {
            Ok(None) => {}
            // Another replica opened one at the same time: use that, close this one.
            Ok(Some(record)) => {
                if let Some(adopted) = self.adopt(record) {
                    let (endpoint, ours) = (Arc::clone(&self.endpoint), id.clone());
                    tokio::spawn(async move { endpoint.delete_session(&ours).await });
                    return Ok((adopted, true));
                }
            }
            Err(error) => {
                tracing::warn!(upstream = %self.id, %error, "cannot share the upstream session; other replicas open their own");
            }
        }
        Ok((session, false))
    }

    /// The session of a record another replica made; `None` when its `initialize` result is
    /// unusable (logged; this replica then opens its own).
    fn adopt(&self, record: shared::Record) -> Option<LegacySession> {
        match mcp::parse_initialize(&record.initialize) {
            Ok(info) => {
                tracing::debug!(upstream = %self.id, "adopted the upstream session another replica opened");
                Some(LegacySession::new(Some(record.session_id), info))
            }
            Err(error) => {
                tracing::warn!(upstream = %self.id, %error, "ignored an unusable shared upstream session");
                None
            }
        }
    }

    /// Renews the shared record of the session `key` uses, when due.
    fn renew(&self, key: Option<Uuid>, session: &LegacySession) {
        if let (Some(shared), Some(downstream), Some(_)) = (&self.shared, key, &session.id)
            && session.renewal_due(shared.renew_every())
        {
            shared.renew(&self.id, downstream);
        }
    }

    /// (Re)starts the GET stream of the upstream session held for `key`, authenticated as the
    /// session's calls are (`caller`: the downstream client's token, for token exchange).
    /// Resolves (`Ok`) once the stream is open; `Err` when it will not open.
    fn listen(
        &self,
        key: Option<Uuid>,
        session: &LegacySession,
        caller: Option<Secret>,
    ) -> tokio::sync::oneshot::Receiver<()> {
        let (opened, is_open) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(listen_get(
            Arc::clone(&self.endpoint),
            legacy_headers(session),
            key,
            caller,
            Some(opened),
        ));
        if let Some(previous) = self.listeners.lock().insert(key, task) {
            previous.abort();
        }
        is_open
    }

    /// Starts the GET stream of the upstream session held for `key` if none runs for it.
    fn ensure_listening(&self, key: Option<Uuid>, session: &LegacySession, caller: Option<Secret>) {
        let running = self
            .listeners
            .lock()
            .get(&key)
            .is_some_and(|t| !t.is_finished());
        if !running {
            drop(self.listen(key, session, caller));
        }
    }

    /// Opens a legacy session: the session and the upstream's `InitializeResult`.
    async fn initialize(
        &self,
        capabilities: &Value,
        auth: HeaderMap,
    ) -> Result<(LegacySession, Value), UpstreamError> {
        let posted = self
            .endpoint
            .post(
                "initialize",
                Some(mcp::initialize_params(capabilities)),
                &auth,
            )
            .await?;
        let session_id = posted.session_id.clone();
        let result = match posted.into_reply()? {
            Ok(result) => result,
            Err(error) => {
                return Err(UpstreamError::Handshake {
                    detail: format!("initialize was rejected: {error}").into(),
                });
            }
        };
        let info = mcp::parse_initialize(&result)?;
        let session = LegacySession::new(session_id, info);
        let headers = legacy_headers(&session);
        self.endpoint
            .notify("notifications/initialized", &headers)
            .await?;
        tracing::info!(upstream = %self.id, version = %session.info.protocol_version, "opened legacy upstream session");
        Ok((session, result))
    }
}

/// How long a client's new upstream session waits for its standalone stream to open.
const STREAM_OPEN_WAIT: Duration = Duration::from_secs(2);

/// Whether opening a legacy session failed because the upstream refuses `initialize` (a
/// modern-only server), rather than because it could not be reached.
fn refuses_initialize(e: &UpstreamError) -> bool {
    match e {
        UpstreamError::Handshake { .. } => true,
        UpstreamError::HttpStatus { status } => {
            (400..500).contains(status) && !matches!(status, 401 | 403)
        }
        _ => false,
    }
}

/// Headers of a modern request (2026-07-28 Streamable HTTP, "Request Metadata").
fn modern_headers(method: &str, name: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        HEADER_PROTOCOL_VERSION,
        HeaderValue::from_static(LATEST_MODERN),
    );
    if let Ok(v) = HeaderValue::from_str(&encode_header_value(method)) {
        headers.insert(HEADER_METHOD, v);
    }
    if let Some(v) = name.and_then(|n| HeaderValue::from_str(&encode_header_value(n)).ok()) {
        headers.insert(HEADER_NAME, v);
    }
    headers
}

/// Headers of a request inside a legacy session.
fn legacy_headers(session: &LegacySession) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(v) = session
        .id
        .as_deref()
        .and_then(|id| HeaderValue::from_str(id).ok())
    {
        headers.insert(HEADER_SESSION_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(&session.info.protocol_version) {
        headers.insert(HEADER_PROTOCOL_VERSION, v);
    }
    headers
}

/// For methods whose `Mcp-Name` header mirrors a body field ([`crate::protocol::name_field`]),
/// the extractor.
fn mirrored_name(method: &str) -> impl Fn(&Value) -> Option<String> + '_ {
    move |params| {
        let key = crate::protocol::name_field(method)?;
        params.get(key).and_then(Value::as_str).map(str::to_string)
    }
}

/// Adds the W3C `traceparent` header the shaped params carry in `_meta`.
fn add_traceparent(headers: &mut HeaderMap, params: Option<&Value>) {
    if let Some(v) = mcp::traceparent(params).and_then(|t| HeaderValue::from_str(t).ok()) {
        headers.insert(HeaderName::from_static("traceparent"), v);
    }
}

/// Adds `Mcp-Param-{name}` headers.
fn add_param_headers(headers: &mut HeaderMap, param_headers: &[(String, String)]) {
    for (name, value) in param_headers {
        let header =
            HeaderName::from_bytes(format!("{}{name}", crate::param_headers::PREFIX).as_bytes());
        let value = HeaderValue::from_str(&encode_header_value(value));
        if let (Ok(header), Ok(value)) = (header, value) {
            headers.insert(header, value);
        }
    }
}

/// Whether a session request's status says the session is unknown to the upstream: 404, as
/// the spec prescribes (Streamable HTTP, session management), or 400, as servers built on the
/// TypeScript SDK's examples answer an unknown `Mcp-Session-Id` ("No valid session ID
/// provided"). Either way the request was refused before it was processed, so sending it
/// again in a new session is safe.
fn session_refused(status: StatusCode) -> bool {
    matches!(status, StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST)
}
