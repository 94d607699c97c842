//! The configured upstreams as one set that a configuration reload can change while calls are
//! served: [`UpstreamSet::plan`] builds what a new configuration adds or changes (keeping every
//! unchanged upstream, its connections and sessions, as it is), [`UpstreamSet::install`] puts a
//! membership in force at once. A call holds the [`Upstream`] it resolved, so a call in flight
//! to an upstream that a reload removes or replaces finishes on it; [`UpstreamSet::retire`]
//! stops such an upstream once nothing holds it any more.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::broadcast;
use uuid::Uuid;

use super::UpstreamSessions;
use super::{Upstream, UpstreamEvent, session_requests, stdio};
use crate::config::{SessionConfig, UpstreamConfig};
use crate::telemetry::traffic::TrafficMetrics;

/// How often a retiring upstream checks whether calls still hold it.
const RETIRE_POLL: Duration = Duration::from_millis(100);

/// All upstreams, in configuration order.
pub struct UpstreamSet {
    members: RwLock<Arc<[Arc<Upstream>]>>,
    events: broadcast::Sender<UpstreamEvent>,
    session_requests: Arc<session_requests::SessionRequests>,
    children: stdio::Children,
    /// What every upstream is built with.
    http_client: reqwest::Client,
    sessions: UpstreamSessions,
    metrics: TrafficMetrics,
}

/// What a new list of upstream configurations changes: built by [`UpstreamSet::plan`], put in
/// force by [`UpstreamSet::install`].
pub struct Plan {
    /// The membership after the change, in configuration order: unchanged upstreams as they
    /// are, added and changed ones newly built.
    pub next: Vec<Arc<Upstream>>,
    /// The newly built upstreams (added, or changed and so replaced), not yet listed.
    pub fresh: Vec<Arc<Upstream>>,
    /// The upstreams that leave the set: removed, or replaced by a changed configuration.
    pub retired: Vec<Arc<Upstream>>,
    /// Whether the membership's order differs (configuration order is listing order).
    pub reordered: bool,
}

impl Plan {
    /// Whether the plan changes nothing (same upstreams, same configurations, same order).
    pub fn is_empty(&self) -> bool {
        self.fresh.is_empty() && self.retired.is_empty() && !self.reordered
    }
}

impl UpstreamSet {
    /// Builds every upstream of the configuration; `sessions` bounds the legacy upstream
    /// sessions held per downstream session, and `shared`, if given, shares them with the
    /// other replicas; `metrics` takes their traffic-control series.
    /// stdio children start at once. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// When the shared HTTP client cannot be built (TLS roots unavailable).
    pub fn new(
        cfgs: &[UpstreamConfig],
        sessions: &SessionConfig,
        shared: Option<Arc<super::SharedSessions>>,
        metrics: &TrafficMetrics,
    ) -> Result<Self, reqwest::Error> {
        let http_client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("mcpgate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let set = Self {
            members: RwLock::new(Arc::from(Vec::new())),
            events: broadcast::channel(256).0,
            session_requests: Arc::new(session_requests::SessionRequests::default()),
            children: stdio::Children::default(),
            http_client,
            sessions: UpstreamSessions {
                config: sessions.clone(),
                shared,
            },
            metrics: metrics.clone(),
        };
        let built: Vec<_> = cfgs.iter().map(|c| set.build(c)).collect();
        set.install(built);
        Ok(set)
    }

    fn build(&self, cfg: &UpstreamConfig) -> Arc<Upstream> {
        Arc::new(Upstream::new(
            cfg,
            self.http_client.clone(),
            &self.sessions,
            self.events.clone(),
            Arc::clone(&self.session_requests),
            &self.metrics,
            &self.children,
        ))
    }

    /// Compares `cfgs` with the upstreams in force and builds the added and changed ones
    /// (their stdio processes start now); nothing is in force until [`UpstreamSet::install`].
    /// An upstream whose configuration is equal keeps its connections and sessions.
    pub fn plan(&self, cfgs: &[UpstreamConfig]) -> Plan {
        let current = self.all();
        let mut plan = Plan {
            next: Vec::with_capacity(cfgs.len()),
            fresh: Vec::new(),
            retired: Vec::new(),
            reordered: false,
        };
        for cfg in cfgs {
            match current.iter().find(|u| u.id() == &cfg.id) {
                Some(kept) if kept.config() == cfg => plan.next.push(Arc::clone(kept)),
                _ => {
                    let built = self.build(cfg);
                    plan.fresh.push(Arc::clone(&built));
                    plan.next.push(built);
                }
            }
        }
        plan.retired = current
            .iter()
            .filter(|u| !plan.next.iter().any(|n| Arc::ptr_eq(n, u)))
            .cloned()
            .collect();
        plan.reordered = plan
            .next
            .iter()
            .map(|u| u.id())
            .ne(current.iter().map(|u| u.id()));
        plan
    }

    /// Puts `members` in force: calls resolved from now on reach them.
    pub fn install(&self, members: Vec<Arc<Upstream>>) {
        *self.members.write().unwrap_or_else(|p| p.into_inner()) = Arc::from(members);
    }

    /// Stops `upstream`, which has left the set, once no call or stream holds it any more or
    /// after `within` (its longest call), whichever comes first: a stdio process gets SIGTERM,
    /// then SIGKILL. Its legacy upstream sessions are dropped with it.
    pub async fn retire(upstream: Arc<Upstream>, within: Duration) {
        let idle = async {
            while Arc::strong_count(&upstream) > 1 {
                tokio::time::sleep(RETIRE_POLL).await;
            }
        };
        if tokio::time::timeout(within, idle).await.is_err() {
            tracing::warn!(upstream = %upstream.id(), ?within, "calls to the removed upstream were still running; stopping it");
        }
        upstream.stop().await;
        tracing::info!(upstream = %upstream.id(), "removed upstream stopped");
    }

    /// Where downstream sessions take the requests their upstream sessions send on standalone
    /// streams ([`session_requests`]).
    pub fn session_requests(&self) -> &Arc<session_requests::SessionRequests> {
        &self.session_requests
    }

    /// The upstreams in force, in configuration order (a snapshot: a reload does not change
    /// it).
    pub fn all(&self) -> Arc<[Arc<Upstream>]> {
        Arc::clone(&self.members.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The upstream in force with this id.
    pub fn get(&self, id: &str) -> Option<Arc<Upstream>> {
        let members = self.members.read().unwrap_or_else(|p| p.into_inner());
        members.iter().find(|u| u.id().as_str() == id).cloned()
    }

    /// Subscribes to upstream events (list changes, reconnects).
    pub fn subscribe(&self) -> broadcast::Receiver<UpstreamEvent> {
        self.events.subscribe()
    }

    /// Stops the stdio upstreams' processes for shutdown: SIGTERM, SIGKILL 5 s later, none
    /// restarted; returns once all have exited (or after 6 s).
    pub async fn stop_children(&self) {
        self.children.stop().await;
    }

    /// Ends every upstream session held for a downstream session.
    pub async fn close_session(&self, downstream: Uuid) {
        for u in self.all().iter() {
            u.close_session(downstream).await;
        }
    }
}
