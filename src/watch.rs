//! Watching a directory for changes (notify, debounced): the policy directory, and the
//! directory of the configuration file. Non-recursive; a file replaced by rename (editors) or a
//! Kubernetes ConfigMap's atomic `..data` swap shows as events on entries of the directory.

use std::path::Path;
use std::time::Duration;

use notify_debouncer_mini::notify::{self, RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};
use tokio::sync::mpsc;

/// Quiet time after the last change before it is reported (editors write in bursts).
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// A running watch; dropping it stops watching.
pub type Watch = Debouncer<RecommendedWatcher>;

/// Watches `dir` and delivers `()` on the returned channel after each burst of changes to an
/// entry for which `relevant` holds (bursts while one is pending are merged into it).
///
/// # Errors
/// When the directory cannot be watched.
pub fn watch_dir(
    dir: &Path,
    relevant: impl Fn(&Path) -> bool + Send + 'static,
) -> Result<(Watch, mpsc::Receiver<()>), notify::Error> {
    let (tx, rx) = mpsc::channel::<()>(1);
    let mut debouncer = new_debouncer(DEBOUNCE, move |result: DebounceEventResult| {
        if let Ok(events) = result
            && events.iter().any(|e| relevant(&e.path))
        {
            let _ = tx.try_send(());
        }
    })?;
    debouncer
        .watcher()
        .watch(dir, RecursiveMode::NonRecursive)?;
    Ok((debouncer, rx))
}
