//! The composition root: builds the whole stack once, binds the listeners, shuts down cleanly.
//!
//! Read top to bottom, [`start`] is the life of a request in reverse: metrics, upstreams, the
//! catalogue and its refresh tasks, the router, the client-facing gateway state, the HTTP layers,
//! then the listeners.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::audit::Auditor;
use crate::auth::Authenticator;
use crate::catalogue::{self, Catalogue};
use crate::config::Config;
use crate::downstream::origin::OriginPolicy;
use crate::downstream::seal::Sealer;
use crate::downstream::session::SessionSealer;
use crate::downstream::{self, Gateway};
use crate::limits::RateLimits;
use crate::listener::Limits;
use crate::policy::Access;
use crate::router::Router;
use crate::telemetry::Metrics;
use crate::tls::TlsSetup;
use crate::upstream::UpstreamSet;

/// How long the operations listener's last scrapes and probes may take at the end of shutdown.
const ADMIN_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// How long shutdown waits for the audit log to write and fsync its queue (a sink that cannot
/// be written would otherwise hold the process forever).
const AUDIT_FLUSH_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a modern call waits for its client's MRTR retry.
const MRTR_STATE_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind its address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The outbound HTTP client could not be built.
    #[error("cannot build the upstream HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    /// The TLS certificate, key or client CA could not be loaded.
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The policy set is invalid.
    #[error("invalid policy set:\n{}", issues.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n"))]
    Policy {
        /// Every problem, with file and line.
        issues: Vec<crate::policy::PolicyIssue>,
    },
    /// Authentication could not be set up.
    #[error("cannot set up authentication: {0}")]
    Auth(#[from] crate::auth::AuthSetupError),
    /// The audit log could not be opened.
    #[error(transparent)]
    Audit(#[from] crate::audit::StartError),
    /// The shared store's (Redis) URL cannot be used.
    #[error("cannot set up the shared store: {0}")]
    LimitStore(#[source] redis::RedisError),
}

/// A running gateway. Dropping it without [`Running::shutdown`] stops nothing gracefully.
pub struct Running {
    /// Where the MCP endpoint listens.
    pub mcp_addr: SocketAddr,
    /// The endpoint's URL on this machine: `http://` or, with TLS, `https://{mcp_addr}/mcp`.
    pub mcp_url: String,
    /// Where the operations endpoint listens, if configured.
    pub admin_addr: Option<SocketAddr>,
    /// The catalogue, for inspection.
    pub catalogue: Arc<Catalogue>,
    streams: tokio_util::sync::CancellationToken,
    /// The MCP listener.
    mcp: Servers,
    /// The operations listener: it serves `/readyz` and `/metrics` until the very end.
    admin: Servers,
    /// Set when shutdown begins: `/readyz` answers 503 `draining`.
    draining: Arc<std::sync::atomic::AtomicBool>,
    settings: crate::config::ShutdownConfig,
    background: JoinSet<()>,
    auditor: Auditor,
    live: Arc<crate::reload::Live>,
    reloads: tokio::sync::mpsc::Sender<()>,
}

/// Asks a running gateway to reload its configuration file (SIGHUP); requests made while one
/// is pending are merged into it.
#[derive(Clone)]
pub struct Reloader(tokio::sync::mpsc::Sender<()>);

impl Reloader {
    /// Requests a reload, without waiting for it.
    pub fn request(&self) {
        let _ = self.0.try_send(());
    }
}

impl Running {
    /// Reloads the configuration file now ([`crate::reload`]) and says how it went.
    pub async fn reload(&self) -> crate::policy::reload::Outcome {
        self.live.reload().await
    }

    /// A handle that requests reloads (for a SIGHUP handler).
    pub fn reloader(&self) -> Reloader {
        Reloader(self.reloads.clone())
    }

    /// Shuts down gracefully ([`crate::config::ShutdownConfig`]): `/readyz` answers 503
    /// `draining` for the drain delay while everything still serves; then the MCP listener
    /// stops accepting, legacy GET streams end, and requests in flight get the grace period,
    /// after which their connections are dropped; then every audit record is written and
    /// fsynced; then the operations listener stops; then stdio upstream processes get SIGTERM
    /// (SIGKILL 5 s later); then the background tasks stop.
    pub async fn shutdown(mut self) {
        let crate::config::ShutdownConfig { drain_delay, grace } = self.settings;
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if !drain_delay.is_zero() {
            tracing::info!(
                ?drain_delay,
                "draining: /readyz answers 503 while calls are still served"
            );
            tokio::time::sleep(drain_delay).await;
        }
        tracing::info!(
            ?grace,
            "no longer accepting connections; waiting for requests in flight"
        );
        self.streams.cancel();
        if !self.mcp.close(grace).await {
            tracing::warn!(?grace, "requests still in flight at shutdown were dropped");
        }
        if tokio::time::timeout(AUDIT_FLUSH_GRACE, self.auditor.flush())
            .await
            .is_err()
        {
            tracing::error!(grace = ?AUDIT_FLUSH_GRACE, "audit records could not be written before exit (see mcpgate_audit_write_errors_total)");
        }
        self.admin.close(ADMIN_CLOSE_GRACE).await;
        self.catalogue.upstreams().stop_children().await;
        self.background.shutdown().await;
    }
}

/// Builds the gateway for `config`, waits for the first catalogue round (each upstream bounded
/// by its timeout), and starts serving.
///
/// # Errors
/// [`StartError`] when a listener cannot bind or the HTTP client cannot be built.
pub async fn start(config: Config) -> Result<Running, StartError> {
    warn_about_exposure(&config);
    // Metrics: one registry owned by this gateway.
    let metrics = Metrics::new();
    // Audit: where the chain stands is read now; a log that cannot be opened stops the start.
    let auditor = match &config.audit {
        Some(audit) => Auditor::start(audit, metrics.audit.clone())?,
        None => Auditor::disabled(),
    };
    auditor.record(config_loaded(&config)).await;
    // The shared store, if any: rate limits, ended sessions, response-stream logs, MRTR
    // retries, task owners, resource updates and upstream sessions are shared through it.
    let redis = match &config.limits.store {
        crate::config::LimitStore::Redis(redis) => Some(redis),
        crate::config::LimitStore::Memory => None,
    };
    let shared_sessions = redis
        .map(|redis| {
            crate::upstream::SharedSessions::new(redis, config.session.idle_timeout).map(Arc::new)
        })
        .transpose()
        .map_err(StartError::LimitStore)?;
    // Upstreams: HTTP clients and stdio children (children start now).
    let upstreams = Arc::new(UpstreamSet::new(
        &config.upstreams,
        &config.session,
        shared_sessions,
        &metrics.traffic,
    )?);
    // Catalogue plane: merged lists, refreshed in the background.
    let catalogue = Arc::new(Catalogue::new(
        upstreams,
        &config.namespacing,
        config.catalogue.clone(),
        metrics.clone(),
    ));
    // Per upstream: refresh, list-change listening, active health checks.
    let tasks = Arc::new(catalogue::refresh::Tasks::spawn(Arc::clone(&catalogue)));
    let mut background = JoinSet::new();
    // Front door: the issuer's keys are fetched before the first request is served.
    let auth = Arc::new(authenticator(&config, &mut background).await?);
    let access = access(&config, &catalogue, &metrics, &auditor, &mut background)?;
    if let Some(record) = policy_loaded(&access) {
        auditor.record(record).await;
    }
    catalogue.wait_ready().await;
    lint_policies(&access, &catalogue);
    // Call plane and client-facing state. One key seals session ids and MRTR request state.
    let sealer = Sealer::new(config.session.key);
    // Rate limits: counters per replica, idle keys swept in the background.
    let limits = Arc::new(
        RateLimits::new(&config.limits, &config.upstreams)
            .with_store(&config.limits)
            .map_err(StartError::LimitStore)?,
    );
    if redis.is_some() {
        tracing::info!(
            "shared store: rate limits, ended sessions, response-stream logs (Last-Event-ID), MRTR retries, task owners, resource updates and upstream sessions are shared by every replica through Redis"
        );
    } else {
        tracing::info!(
            "no shared store: this replica works alone — its rate limits count only the calls it serves, and a session ended here stays usable on other replicas (limits.store: redis shares them)"
        );
    }
    background.spawn(crate::limits::sweep(Arc::clone(&limits)));
    // Configuration reload: file changes and SIGHUP (through `Running::reloader`).
    let live = Arc::new(crate::reload::Live {
        started: config.source.clone(),
        in_force: tokio::sync::Mutex::new(config.clone()),
        catalogue: Arc::clone(&catalogue),
        tasks,
        limits: Arc::clone(&limits),
        access: Arc::clone(&access),
        auditor: auditor.clone(),
        metrics: metrics.clone(),
    });
    let (reloads, reload_requests) = tokio::sync::mpsc::channel(1);
    background.spawn(crate::reload::watch(Arc::clone(&live), reload_requests));
    // Ended sessions, response-stream logs and MRTR retries: shared by every replica when the
    // limits are.
    let revoked = Arc::new(match redis {
        Some(redis) => crate::downstream::revocations::Revocations::shared(
            config.session.max_lifetime,
            config.session.max_sessions,
            redis,
        )
        .map_err(StartError::LimitStore)?,
        None => crate::downstream::revocations::Revocations::local(
            config.session.max_lifetime,
            config.session.max_sessions,
        ),
    });
    background.spawn(Arc::clone(&revoked).follow());
    let mut sessions = crate::downstream::session_state::LocalSessions::new(
        config.session.idle_timeout,
        config.session.max_sessions,
        config.session.replay_buffer_bytes,
    );
    let mut continuations =
        crate::downstream::mrtr::Continuations::new(sealer.clone(), MRTR_STATE_TTL);
    // Task ids open on every replica with the session key; their owners are shared for listing.
    let mut task_ids = crate::router::task_ids::TaskIds::new(config.session.key);
    let mut session_events = None;
    if let Some(redis) = redis {
        session_events = Some(
            crate::downstream::session_events::SessionEvents::new(redis)
                .map_err(StartError::LimitStore)?,
        );
        task_ids = task_ids.with_store(redis).map_err(StartError::LimitStore)?;
        let handoff =
            crate::downstream::handoff::Handoff::new(redis, metrics.mrtr_handoffs.clone())
                .map_err(StartError::LimitStore)?;
        let mirror = crate::downstream::replay_mirror::ReplayMirror::start(
            redis,
            config.session.idle_timeout,
            Arc::clone(&handoff),
        )
        .map_err(StartError::LimitStore)?;
        sessions = sessions.with_mirror(mirror);
        continuations = continuations.with_handoff(handoff);
    }
    let streams = tokio_util::sync::CancellationToken::new();
    let gateway = Arc::new(Gateway {
        router: Router::new(
            Arc::clone(&catalogue),
            metrics.clone(),
            Arc::clone(&access),
            Arc::clone(&limits),
            auditor.clone(),
            task_ids,
        ),
        sealer: SessionSealer::new(sealer.clone(), config.session.max_lifetime),
        revoked: Arc::clone(&revoked),
        sessions: Arc::new(sessions),
        session_events,
        sse_connections: crate::downstream::legacy_sse::Connections::default(),
        continuations: Arc::new(continuations),
        origin: OriginPolicy::new(&config.listen),
        max_body_bytes: config.listen.max_body_bytes,
        shutdown: streams.clone(),
        client_ttl: config.catalogue.client_ttl,
        metrics: metrics.clone(),
        auth,
    });
    if let Some(handoff) = gateway.continuations.handoff() {
        background.spawn(Arc::clone(handoff).serve(Arc::downgrade(&gateway)));
    }
    if let Some(events) = &gateway.session_events {
        background.spawn(Arc::clone(events).follow(Arc::clone(&gateway.sessions)));
        background.spawn(Arc::clone(events).forward_updates(Arc::downgrade(&gateway)));
    }
    let (sessions, gauge) = (
        Arc::clone(&gateway.sessions),
        metrics.sessions.with_label_values(&["legacy"]),
    );
    metrics.on_scrape(move || gauge.set(i64::try_from(sessions.len()).unwrap_or(i64::MAX)));
    // HTTP layers, outermost first: panics become 500s, every request gets a trace span.
    let app = downstream::routes(gateway)
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .layer(tower_http::trace::TraceLayer::new_for_http());
    let mut mcp = Servers::new();
    let tls = match &config.listen.tls {
        Some(tls) => Some((TlsSetup::new(tls)?, tls.reload_interval)),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mcp_addr = serve(
        &mut mcp,
        config.listen.addr,
        app,
        tls,
        Listener {
            limits: config.listen.limits,
            open: metrics.open_connections.with_label_values(&["mcp"]),
        },
    )
    .await?;
    let mcp_url = format!("{scheme}://{mcp_addr}/mcp");
    tracing::info!(%mcp_addr, "MCP endpoint listening on {mcp_url}");
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut admin = Servers::new();
    let admin_addr = match &config.admin {
        Some(admin_config) => {
            let listener = Listener {
                limits: ADMIN_LIMITS,
                open: metrics.open_connections.with_label_values(&["admin"]),
            };
            let router =
                crate::admin::routes(Arc::clone(&catalogue), metrics, Arc::clone(&draining));
            let addr = serve(&mut admin, admin_config.addr, router, None, listener).await?;
            tracing::info!(%addr, "operations endpoint listening");
            Some(addr)
        }
        None => None,
    };
    Ok(Running {
        mcp_addr,
        mcp_url,
        admin_addr,
        catalogue,
        streams,
        mcp,
        admin,
        draining,
        settings: config.shutdown,
        background,
        auditor,
        live,
        reloads,
    })
}

/// The `config_loaded` audit record of `config`.
pub(crate) fn config_loaded(config: &Config) -> Vec<u8> {
    let path = config.source.path.display().to_string();
    let body = crate::audit::record::ConfigLoadedRecord {
        config_path: &path,
        config_sha256: &config.source.sha256,
        upstreams: config.upstreams.iter().map(|u| u.id.as_str()).collect(),
        version: env!("CARGO_PKG_VERSION"),
    };
    crate::audit::record::encode("config_loaded", &body, Default::default())
}

/// The `policy_loaded` audit record of the policy set in force, if policies are configured.
fn policy_loaded(access: &Access) -> Option<Vec<u8>> {
    let set = access.current()?;
    let config = access.config()?;
    let dir = config.dir.display().to_string();
    let body = crate::audit::record::PolicyLoadedRecord {
        policy_hash: &set.hash,
        mode: match config.mode {
            crate::config::PolicyMode::Enforce => "enforce",
            crate::config::PolicyMode::Audit => "audit",
        },
        dir: &dir,
        roles: set.roles.iter().map(|r| r.name.as_str()).collect(),
    };
    Some(crate::audit::record::encode(
        "policy_loaded",
        &body,
        Default::default(),
    ))
}

/// Bounds of the operations listener (scraped by a few monitoring systems).
const ADMIN_LIMITS: Limits = Limits {
    header_read_timeout: std::time::Duration::from_secs(10),
    idle_timeout: std::time::Duration::from_secs(60),
    max_connections: 256,
};

/// How one listener serves: its bounds and its open-connections gauge.
struct Listener {
    limits: Limits,
    open: prometheus::IntGauge,
}

/// The serving tasks of one listener and the switch that stops it accepting.
struct Servers {
    tasks: JoinSet<()>,
    stop: watch::Sender<bool>,
}

impl Servers {
    fn new() -> Self {
        Self {
            tasks: JoinSet::new(),
            stop: watch::channel(false).0,
        }
    }

    /// Stops accepting, waits up to `within` for the connections in flight to finish, then
    /// drops the rest; `true` when all finished in time.
    async fn close(&mut self, within: std::time::Duration) -> bool {
        self.stop.send_replace(true);
        let drained = tokio::time::timeout(within, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        if !drained {
            self.tasks.shutdown().await;
        }
        drained
    }
}

/// Binds `addr` and serves `app` on it, over TLS when `tls` is given (with its certificate
/// reload period), until `servers` is closed.
async fn serve(
    servers: &mut Servers,
    addr: SocketAddr,
    app: axum::Router,
    tls: Option<(TlsSetup, std::time::Duration)>,
    listener: Listener,
) -> Result<SocketAddr, StartError> {
    let socket = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let local = socket
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    servers.tasks.spawn(crate::listener::serve(
        socket,
        tls,
        app,
        listener.limits,
        listener.open,
        servers.stop.subscribe(),
    ));
    Ok(local)
}

/// The authenticator of `config`: its JWKS fetched once now (a failure is logged, and the key
/// store retries on the first unknown `kid`) and then on its schedule in `background`.
async fn authenticator(
    config: &Config,
    background: &mut JoinSet<()>,
) -> Result<Authenticator, StartError> {
    let Some(auth) = &config.auth else {
        return Ok(Authenticator::disabled());
    };
    let http = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    let authenticator = Authenticator::new(auth, http)?;
    if let Some(store) = authenticator.key_store() {
        if let Err(e) = store.refresh().await {
            tracing::error!(error = %e, "JWKS not loaded at start; tokens fail until it loads");
        }
        if let Some(period) = store.refresh_interval() {
            background.spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if let Err(e) = store.refresh().await {
                        tracing::warn!(error = %e, "scheduled JWKS refresh failed; keeping the previous keys");
                    }
                }
            });
        }
    }
    Ok(authenticator)
}

/// The policies of `config`, loaded (an invalid set stops the start), and their directory
/// watched in `background`.
fn access(
    config: &Config,
    catalogue: &Arc<Catalogue>,
    metrics: &Metrics,
    auditor: &Auditor,
    background: &mut JoinSet<()>,
) -> Result<Arc<Access>, StartError> {
    let Some(policies) = &config.policies else {
        return Ok(Arc::new(Access::open()));
    };
    let upstreams = config.upstreams.iter().map(|u| u.id.to_string()).collect();
    let access = Arc::new(
        Access::load(policies.clone(), upstreams)
            .map_err(|issues| StartError::Policy { issues })?,
    );
    let reloads = metrics.policy_reloads.clone();
    let watched = Arc::clone(&access);
    let (linted, catalogue) = (Arc::clone(&access), Arc::clone(catalogue));
    let auditor = auditor.clone();
    background.spawn(async move {
        let report = move |o: crate::policy::reload::Outcome| {
            reloads.with_label_values(&[o.as_str()]).inc();
            if o == crate::policy::reload::Outcome::Applied {
                lint_policies(&linted, &catalogue);
                if let Some(record) = policy_loaded(&linted) {
                    let auditor = auditor.clone();
                    tokio::spawn(async move { auditor.record(record).await });
                }
            }
        };
        if let Err(e) = crate::policy::reload::watch(watched, report).await {
            tracing::error!(error = %e, "cannot watch the policy directory; changes need a restart");
        }
    });
    Ok(access)
}

/// Logs the patterns of the policy set in force that match nothing in the catalogue (with
/// file and line): likely typos, never errors — catalogues change.
fn lint_policies(access: &Access, catalogue: &Catalogue) {
    if let Some(set) = access.current() {
        for issue in crate::policy::lint::unmatched_patterns(&set, &catalogue.snapshot()) {
            tracing::warn!(%issue, "policy pattern matches nothing in the catalogue");
        }
    }
}

fn warn_about_exposure(config: &Config) {
    let certificates = config
        .listen
        .tls
        .as_ref()
        .is_some_and(|t| t.client_ca_file.is_some());
    match (&config.auth, certificates) {
        (None, false) => tracing::warn!(
            "no `auth` section: every caller is the anonymous principal and may call every tool"
        ),
        (None, true) => tracing::warn!(
            "no `auth` section: callers are told apart by their client certificates only"
        ),
        _ => {}
    }
    if config.policies.is_none() {
        tracing::warn!(
            "NO POLICIES: no `policies` section, so every caller may list and call every tool, prompt and resource of every upstream"
        );
    }
    if config.listen.tls.is_none() && !config.listen.addr.ip().is_loopback() {
        tracing::warn!(addr = %config.listen.addr, "serving plain HTTP on a non-loopback address (listen.plain_http)");
        if OriginPolicy::new(&config.listen).accepts_any_host() {
            tracing::warn!(
                "no listen.public_url or listen.allowed_hosts: the Host header is not checked"
            );
        }
    }
}
