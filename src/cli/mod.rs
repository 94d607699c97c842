//! What the `mcpgate` subcommands do beyond serving, as library functions the binary calls
//! (and tests can): reading the live catalogue, and the policy commands for security teams.

pub mod policy;

use std::sync::Arc;

use crate::catalogue::{Catalogue, Snapshot};
use crate::config::Config;
use crate::upstream::UpstreamSet;

/// Connects to every upstream of `config` once and returns the merged catalogue. Upstreams
/// that are down are listed as down in the snapshot.
///
/// # Errors
/// When the upstream HTTP client cannot be built.
pub async fn live_snapshot(config: &Config) -> anyhow::Result<Arc<Snapshot>> {
    let metrics = crate::telemetry::Metrics::new();
    let upstreams = Arc::new(UpstreamSet::new(
        &config.upstreams,
        &config.session,
        None,
        &metrics.traffic,
    )?);
    let catalogue = Catalogue::new(
        upstreams,
        &config.namespacing,
        config.catalogue.clone(),
        metrics,
    );
    catalogue.refresh_all().await;
    Ok(catalogue.snapshot())
}
