//! Configuration hot reload (DESIGN.md §5.11): when the configuration file changes (watched,
//! debounced; a Kubernetes ConfigMap's `..data` swap included) or on SIGHUP, the file is loaded
//! and validated again, and what can change while serving is applied at once:
//!
//! - `upstreams`: added ones are built and listed, then appear in the merged lists; removed
//!   ones leave them, and calls and streams already on them finish (the upstream is stopped
//!   once nothing holds it, or after its longest call: `max_timeout`); an upstream whose
//!   configuration changed is replaced the same way; an unchanged one keeps its connections,
//!   sessions, breaker and limiter state;
//! - `limits` (limiters whose rate is unchanged keep their state; the store, its Redis server
//!   and `on_store_error` need a restart) and `namespacing`.
//!
//! Clients whose view changed are sent `list_changed` by the catalogue's subscribers. Every
//! other section (listen address, TLS, admin, auth, session, policies' directory, audit,
//! telemetry, catalogue, shutdown) takes effect at the next start: a reload that changes one is
//! applied for the rest and logs which sections are kept, every time, until the process
//! restarts. The policy files have their own watcher ([`crate::policy::reload`]).
//!
//! Keep-last-good, as for policies: a file that does not load or validate, or that removes an
//! upstream the policy files name, changes nothing; its problems are logged and the reload
//! counted `rejected` in `mcpgate_config_reloads_total` (`applied`, `unchanged` otherwise). An
//! applied reload writes a `config_loaded` audit record.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::audit::Auditor;
use crate::catalogue::Catalogue;
use crate::catalogue::refresh::Tasks;
use crate::config::{Config, ConfigSource};
use crate::limits::RateLimits;
use crate::policy::Access;
use crate::policy::reload::Outcome;
use crate::telemetry::Metrics;
use crate::upstream::{Upstream, UpstreamSet};

/// The sections a reload applies; every other one needs a restart.
pub const LIVE_SECTIONS: [&str; 3] = ["upstreams", "limits", "namespacing"];

/// What a configuration reload changes, and the configuration in force.
pub struct Live {
    /// The configuration whose live sections are in force (the last good one).
    pub(crate) in_force: tokio::sync::Mutex<Config>,
    /// What the process started with: the sections that need a restart are compared with it.
    pub(crate) started: ConfigSource,
    pub(crate) catalogue: Arc<Catalogue>,
    pub(crate) tasks: Arc<Tasks>,
    pub(crate) limits: Arc<RateLimits>,
    pub(crate) access: Arc<Access>,
    pub(crate) auditor: Auditor,
    pub(crate) metrics: Metrics,
}

impl Live {
    /// The configuration file.
    pub async fn path(&self) -> PathBuf {
        self.in_force.lock().await.source.path.clone()
    }

    /// Loads the configuration file again and applies what changed (one reload at a time);
    /// logs, counts and audits the outcome.
    pub async fn reload(&self) -> Outcome {
        let mut in_force = self.in_force.lock().await;
        let outcome = match Config::load(&in_force.source.path) {
            Err(e) => {
                tracing::error!(error = %e, "configuration reload rejected; the configuration in force stays");
                Outcome::Rejected
            }
            Ok(next) if next.source.sha256 == in_force.source.sha256 => Outcome::Unchanged,
            Ok(next) => self.apply(&mut in_force, next).await,
        };
        self.metrics
            .config_reloads
            .with_label_values(&[outcome.as_str()])
            .inc();
        outcome
    }

    async fn apply(&self, in_force: &mut Config, next: Config) -> Outcome {
        let kept = self.started.changed_sections(&next.source, &LIVE_SECTIONS);
        if !kept.is_empty() {
            tracing::warn!(sections = ?kept, "configuration sections changed that take effect only at restart; the values the process started with stay in force");
        }
        if next.limits.store != in_force.limits.store
            || next.limits.on_store_error != in_force.limits.on_store_error
        {
            tracing::warn!(
                "limits.store, limits.redis and limits.on_store_error take effect only at restart; the rates apply now"
            );
        }
        let ids: Vec<String> = next.upstreams.iter().map(|u| u.id.to_string()).collect();
        if let Err(issues) = self.access.check_upstreams(&ids) {
            for issue in &issues {
                tracing::error!(%issue, "configuration reload rejected: the policy set is invalid with the new upstreams");
            }
            return Outcome::Rejected;
        }
        let upstreams = self.catalogue.upstreams();
        let plan = upstreams.plan(&next.upstreams);
        if plan.is_empty()
            && next.limits == in_force.limits
            && next.namespacing == in_force.namespacing
        {
            *in_force = next;
            return Outcome::Unchanged;
        }
        let listed = self.catalogue.list_fresh(&plan).await;
        self.limits.reconfigure(&next.limits, &next.upstreams);
        // The old upstreams' refresh, listen and health tasks stop first.
        for retired in &plan.retired {
            self.tasks.remove(retired.id());
        }
        // Calls resolved from the current snapshot still find the upstreams being removed
        // until the new snapshot is in force.
        let removed: Vec<_> = plan
            .retired
            .iter()
            .filter(|r| !plan.next.iter().any(|n| n.id() == r.id()))
            .cloned()
            .collect();
        upstreams.install(plan.next.iter().chain(&removed).cloned().collect());
        self.catalogue.reconfigure(&next.namespacing, &plan, listed);
        upstreams.install(plan.next.clone());
        for fresh in &plan.fresh {
            self.tasks.add(Arc::clone(fresh));
        }
        self.access.set_upstreams(ids);
        let ids_of = |list: &[Arc<Upstream>], keep: &dyn Fn(&Upstream) -> bool| {
            list.iter()
                .filter(|u| keep(u))
                .map(|u| u.id().to_string())
                .collect::<Vec<_>>()
        };
        let was_there = |u: &Upstream| plan.retired.iter().any(|r| r.id() == u.id());
        let stays = |u: &Upstream| plan.next.iter().any(|n| n.id() == u.id());
        tracing::info!(
            added = ?ids_of(&plan.fresh, &|u| !was_there(u)),
            changed = ?ids_of(&plan.fresh, &was_there),
            removed = ?ids_of(&plan.retired, &|u| !stays(u)),
            sha256 = %next.source.sha256,
            "configuration reloaded"
        );
        for retired in plan.retired {
            let within = retired.controls().traffic.max_timeout;
            let (upstreams, traffic) = (Arc::clone(upstreams), self.metrics.traffic.clone());
            tokio::spawn(async move {
                let id = retired.id().to_string();
                UpstreamSet::retire(retired, within).await;
                if upstreams.get(&id).is_none() {
                    traffic.forget(&id);
                }
            });
        }
        self.auditor.record(crate::app::config_loaded(&next)).await;
        *in_force = next;
        Outcome::Applied
    }
}

/// Reloads `live` whenever the configuration file changes or `requests` delivers (SIGHUP),
/// until the future is dropped.
pub async fn watch(live: Arc<Live>, mut requests: mpsc::Receiver<()>) {
    let path = live.path().await;
    let (watch, mut changes) = match watch_file(&path) {
        Some((watch, changes)) => (Some(watch), changes),
        None => (None, mpsc::channel(1).1),
    };
    loop {
        tokio::select! {
            Some(()) = changes.recv() => {}
            Some(()) = requests.recv() => {}
            else => break,
        }
        live.reload().await;
    }
    drop(watch);
}

/// Watches the directory of `path` (an editor's rename and a ConfigMap's `..data` swap both
/// replace the file) for changes of the file or of a `..`-prefixed entry; `None` when `path`
/// is not a file or cannot be watched (logged: SIGHUP still reloads).
fn watch_file(path: &Path) -> Option<(crate::watch::Watch, mpsc::Receiver<()>)> {
    if !path.is_file() {
        return None;
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name()?.to_os_string();
    let relevant = move |entry: &Path| {
        entry
            .file_name()
            .is_some_and(|f| f == name || f.to_string_lossy().starts_with(".."))
    };
    match crate::watch::watch_dir(&dir, relevant) {
        Ok(watching) => {
            tracing::info!(path = %path.display(), "watching the configuration file");
            Some(watching)
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot watch the configuration file; reload with SIGHUP");
            None
        }
    }
}
