//! Prometheus metrics (an owned [`prometheus::Registry`], never the global one) and log setup.
//!
//! Names follow Prometheus conventions (DESIGN.md §5.8). Labels stay bounded: method names from
//! a fixed set, upstream ids from the configuration, outcomes from a fixed set; never arguments,
//! tokens or user ids.

pub mod audit;
pub mod otlp;
pub mod trace_context;
pub mod traffic;

use std::sync::{Arc, Mutex};

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Latency histogram buckets, seconds: 0.5 ms to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Metric handles; cloning shares the same series.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Rate limits, circuit breakers, bulkheads, timeouts, retries.
    pub traffic: traffic::TrafficMetrics,
    /// The audit log.
    pub audit: audit::AuditMetrics,
    /// `mcpgate_requests_total{method,upstream,outcome}`: calls ended, by the outcome of their
    /// audit record ([`crate::audit::record::Outcome`]); `upstream` is empty for a call that
    /// named no known target.
    pub requests: IntCounterVec,
    /// `mcpgate_request_duration_seconds{method,upstream}`: time from a call's request to its
    /// end, whatever the outcome, seconds.
    pub request_duration: HistogramVec,
    /// `mcpgate_upstream_request_duration_seconds{method,upstream}`: time from forwarding a
    /// call to the upstream's final answer, seconds.
    pub upstream_request_duration: HistogramVec,
    /// `mcpgate_upstream_up{upstream}`: 1 when the last catalogue refresh of the upstream
    /// succeeded, else 0.
    pub upstream_up: IntGaugeVec,
    /// `mcpgate_catalogue_refresh_failures_total{upstream}`: failed catalogue refreshes.
    pub catalogue_refresh_failures: IntCounterVec,
    /// `mcpgate_auth_rejections_total{reason}`: requests refused at the front door, by reason
    /// (`missing_credentials`, `invalid_token`, `insufficient_scope`).
    pub auth_rejections: IntCounterVec,
    /// `mcpgate_policy_decisions_total{effect}`: call decisions by the rules' effect (`allow`,
    /// `deny`; in audit mode a deny is counted though the call goes ahead).
    pub policy_decisions: IntCounterVec,
    /// `mcpgate_policy_reloads_total{outcome}`: policy reloads (`applied`, `unchanged`,
    /// `rejected`).
    pub policy_reloads: IntCounterVec,
    /// `mcpgate_open_connections{listener}`: client connections open now, by listener
    /// (`mcp`, `admin`); at most `listen.max_connections`.
    pub open_connections: IntGaugeVec,
    /// `mcpgate_open_streams{era,kind}`: SSE response streams open now; `kind` is `response`
    /// (a POST answered with a stream, `subscriptions/listen` included), `standalone` (a
    /// legacy session's GET stream) or `connection` (a 2024-11-05 HTTP+SSE connection).
    pub open_streams: IntGaugeVec,
    /// `mcpgate_sessions{era}`: legacy sessions with state on this replica (set at scrape).
    pub sessions: IntGaugeVec,
    /// `mcpgate_catalogue_entries{upstream,kind}`: merged entries served, per owner and kind
    /// (`tools`, `prompts`, `resources`, `resource_templates`).
    pub catalogue_entries: IntGaugeVec,
    /// `mcpgate_catalogue_conflicts`: keys claimed by several upstreams, served by none.
    pub catalogue_conflicts: IntGauge,
    /// `mcpgate_config_reloads_total{outcome}`: configuration reloads (`applied`,
    /// `unchanged`, `rejected`).
    pub config_reloads: IntCounterVec,
    /// `mcpgate_mrtr_handoffs_total{outcome}`: MRTR retries that reached this replica while
    /// their call was parked on another (`limits.store: redis`), by outcome: `answered` (the
    /// owner's answer began), `owner_gone` (no replica held the call, or it went silent
    /// first), `store_unavailable` (Redis did not answer).
    pub mrtr_handoffs: IntCounterVec,
    /// Run before each scrape: gauges read from the state they describe.
    on_scrape: Arc<Mutex<Vec<ScrapeHook>>>,
}

/// A gauge update run before each scrape.
type ScrapeHook = Box<dyn Fn() + Send + Sync>;

impl Metrics {
    /// Creates and registers every metric.
    ///
    /// # Panics
    /// Never in practice: only on invalid metric definitions, which are constants here.
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("mcpgate_requests_total", "Calls ended, by outcome"),
            &["method", "upstream", "outcome"],
        )
        .expect("valid metric");
        let histogram = |name: &str, help: &str| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                &["method", "upstream"],
            )
            .expect("valid metric")
        };
        let request_duration = histogram(
            "mcpgate_request_duration_seconds",
            "Time from a call's request to its end, seconds",
        );
        let upstream_request_duration = histogram(
            "mcpgate_upstream_request_duration_seconds",
            "Time from forwarding a call to the upstream's final answer, seconds",
        );
        let upstream_up = IntGaugeVec::new(
            Opts::new(
                "mcpgate_upstream_up",
                "1 when the upstream's last catalogue refresh succeeded",
            ),
            &["upstream"],
        )
        .expect("valid metric");
        let catalogue_refresh_failures = IntCounterVec::new(
            Opts::new(
                "mcpgate_catalogue_refresh_failures_total",
                "Catalogue refreshes of an upstream that failed",
            ),
            &["upstream"],
        )
        .expect("valid metric");
        let auth_rejections = IntCounterVec::new(
            Opts::new(
                "mcpgate_auth_rejections_total",
                "Requests refused at the front door, by reason",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let policy_decisions = IntCounterVec::new(
            Opts::new(
                "mcpgate_policy_decisions_total",
                "Policy decisions on calls, by effect",
            ),
            &["effect"],
        )
        .expect("valid metric");
        let policy_reloads = IntCounterVec::new(
            Opts::new(
                "mcpgate_policy_reloads_total",
                "Policy set reloads, by outcome",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let open_connections = IntGaugeVec::new(
            Opts::new(
                "mcpgate_open_connections",
                "Client connections open now, by listener",
            ),
            &["listener"],
        )
        .expect("valid metric");
        let gauges = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let open_streams = gauges(
            "mcpgate_open_streams",
            "SSE response streams open now, by era and kind",
            &["era", "kind"],
        );
        let sessions = gauges(
            "mcpgate_sessions",
            "Legacy sessions with state on this replica",
            &["era"],
        );
        let catalogue_entries = gauges(
            "mcpgate_catalogue_entries",
            "Merged catalogue entries served, by owning upstream and kind",
            &["upstream", "kind"],
        );
        let catalogue_conflicts = IntGauge::with_opts(Opts::new(
            "mcpgate_catalogue_conflicts",
            "Catalogue keys claimed by several upstreams and served by none",
        ))
        .expect("valid metric");
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "mcpgate_config_reloads_total",
                "Configuration reloads, by outcome",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let mrtr_handoffs = IntCounterVec::new(
            Opts::new(
                "mcpgate_mrtr_handoffs_total",
                "MRTR retries handed to the replica holding their call, by outcome",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "mcpgate_build_info",
                "1, labelled with the gateway's version and git revision",
            ),
            &["version", "revision"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), crate::GIT_REVISION])
            .set(1);
        // Every outcome from the start, so rates and alerts see zeros rather than nothing.
        for outcome in ["applied", "unchanged", "rejected"] {
            policy_reloads.with_label_values(&[outcome]);
            config_reloads.with_label_values(&[outcome]);
        }
        for outcome in ["answered", "owner_gone", "store_unavailable"] {
            mrtr_handoffs.with_label_values(&[outcome]);
        }
        for c in [
            Box::new(open_connections.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(open_streams.clone()),
            Box::new(sessions.clone()),
            Box::new(catalogue_entries.clone()),
            Box::new(catalogue_conflicts.clone()),
            Box::new(config_reloads.clone()),
            Box::new(mrtr_handoffs.clone()),
            Box::new(build_info),
            Box::new(policy_decisions.clone()),
            Box::new(policy_reloads.clone()),
            Box::new(requests.clone()),
            Box::new(request_duration.clone()),
            Box::new(upstream_request_duration.clone()),
            Box::new(upstream_up.clone()),
            Box::new(catalogue_refresh_failures.clone()),
            Box::new(auth_rejections.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        Self {
            traffic: traffic::TrafficMetrics::register(&registry).expect("unique metrics"),
            audit: audit::AuditMetrics::register(&registry).expect("unique metrics"),
            registry,
            requests,
            request_duration,
            upstream_request_duration,
            upstream_up,
            catalogue_refresh_failures,
            auth_rejections,
            policy_decisions,
            policy_reloads,
            open_connections,
            open_streams,
            sessions,
            catalogue_entries,
            catalogue_conflicts,
            config_reloads,
            mrtr_handoffs,
            on_scrape: Arc::default(),
        }
    }

    /// Runs `hook` before every scrape (for gauges read from the state they describe).
    pub fn on_scrape(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.on_scrape
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(hook));
    }

    /// The text exposition format of every metric.
    pub fn render(&self) -> String {
        for hook in self
            .on_scrape
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            hook();
        }
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// One count of a gauge, held while something is open (a connection, a stream): up when
/// made, down when dropped, however it ends.
pub struct Counted(IntGauge);

impl Counted {
    /// Counts one more on `gauge`.
    pub fn new(gauge: IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Installs the global tracing subscriber: JSON lines when `json`, else human-readable; the
/// level from `RUST_LOG` (default `info`); spans exported over OTLP when `otlp` is given (the
/// returned [`otlp::Exporter`] must be shut down at exit to send the last batch). Calling it
/// twice is harmless (the first subscriber stays).
pub fn init_logging(
    json: bool,
    otlp: Option<&crate::config::OtlpConfig>,
) -> Option<otlp::Exporter> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{EnvFilter, Layer as _};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    let (exporter, export) = match otlp.map(otlp::layer) {
        Some(Ok((exporter, layer))) => (Some(exporter), Some(layer)),
        Some(Err(e)) => {
            eprintln!("warning: OTLP export disabled: {e}");
            (None, None)
        }
        None => (None, None),
    };
    // Only the gateway's own spans are exported: never those of the HTTP stacks (the
    // exporter's own requests would otherwise trace themselves).
    let ours =
        tracing_subscriber::filter::Targets::new().with_target("mcpgate", tracing::Level::INFO);
    let installed = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(export.map(|layer| layer.with_filter(ours)))
        .try_init();
    if installed.is_err() {
        if let Some(e) = &exporter {
            e.shutdown();
        }
        return None;
    }
    exporter
}
