//! Hot reload: the policy directory is watched (notify, debounced), and each change loads the
//! whole set again. A valid set is applied atomically; an invalid one is rejected whole, logged
//! with its problems and counted, and the set in force stays.

use std::sync::Arc;

use super::Access;

/// The outcome of one reload, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new set is in force.
    Applied,
    /// The files changed but the set is the same.
    Unchanged,
    /// The new set is invalid; the old one stays.
    Rejected,
}

impl Outcome {
    /// A label: `applied`, `unchanged`, `rejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Unchanged => "unchanged",
            Self::Rejected => "rejected",
        }
    }
}

/// Watches the policy directory of `access` until the returned future is dropped, reporting
/// each reload to `report`.
///
/// # Errors
/// When the directory cannot be watched.
pub async fn watch(
    access: Arc<Access>,
    report: impl Fn(Outcome) + Send + 'static,
) -> Result<(), notify_debouncer_mini::notify::Error> {
    let Some(dir) = access.config().map(|c| c.dir.clone()) else {
        return Ok(());
    };
    let (watch, mut rx) = crate::watch::watch_dir(&dir, |_| true)?;
    tracing::info!(dir = %dir.display(), "watching the policy directory");
    while rx.recv().await.is_some() {
        let outcome = match access.reload() {
            Ok(true) => Outcome::Applied,
            Ok(false) => Outcome::Unchanged,
            Err(issues) => {
                for issue in &issues {
                    tracing::error!(%issue, "policy reload rejected");
                }
                tracing::error!(
                    problems = issues.len(),
                    "the new policy set is invalid; the previous set stays in force"
                );
                Outcome::Rejected
            }
        };
        report(outcome);
    }
    drop(watch);
    Ok(())
}
