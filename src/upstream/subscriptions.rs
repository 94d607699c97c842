//! Resource subscriptions (`resources/subscribe`) held upstream for several clients at once.
//!
//! A connection the gateway shares between clients — a stdio process, an HTTP+SSE connection,
//! the gateway's own session with a legacy HTTP upstream — carries each subscription once, for
//! everyone who asked: the subscriptions are counted, the upstream is asked on the first and
//! told `resources/unsubscribe` when the last holder lets go. Modern `subscriptions/listen`
//! streams release theirs when they end. A legacy session's `resources/unsubscribe` is answered
//! by the gateway, which keeps delivering only to sessions still subscribed; such a session's
//! hold on a shared connection lasts as long as the connection.
//!
//! A session's own upstream session (legacy HTTP upstreams) is not shared: its subscriptions go
//! straight through and end with it.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::json;

use super::{CallContext, Link, Reply, Upstream, UpstreamError};

/// Holders per subscribed upstream URI.
#[derive(Default)]
pub(super) struct Counts(Mutex<HashMap<String, usize>>);

impl Counts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a holder; `true` when it is the first.
    fn take(&self, uri: &str) -> bool {
        let mut counts = self.lock();
        let n = counts.entry(uri.to_string()).or_insert(0);
        *n += 1;
        *n == 1
    }

    /// Removes a holder; `true` when it was the last.
    fn give_back(&self, uri: &str) -> bool {
        let mut counts = self.lock();
        match counts.get_mut(uri) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                counts.remove(uri);
                true
            }
            None => false,
        }
    }
}

impl Upstream {
    /// Whether a call made for `ctx` goes over a connection shared with other clients.
    fn shared(&self, ctx: &CallContext) -> bool {
        match &self.link {
            Link::Mux(_) => true,
            Link::Http(_) => ctx.downstream_session.is_none(),
        }
    }

    /// Subscribes to updates of `uri` (the upstream's own) for `ctx`: on a shared connection
    /// counted, the upstream asked only for the first holder (and answered `{}` for the
    /// others); on a session's own upstream session, sent as it is.
    ///
    /// # Errors
    /// [`UpstreamError`] when the upstream could not be asked.
    pub async fn subscribe(&self, ctx: &CallContext, uri: &str) -> Result<Reply, UpstreamError> {
        let params = Some(json!({ "uri": uri }));
        if !self.shared(ctx) {
            return self.request(ctx, "resources/subscribe", params).await;
        }
        if !self.shared_subscriptions.take(uri) {
            return Ok(Ok(json!({})));
        }
        let reply = self.request(ctx, "resources/subscribe", params).await;
        if !matches!(reply, Ok(Ok(_))) {
            self.shared_subscriptions.give_back(uri);
        }
        reply
    }

    /// Lets go of one hold on a shared subscription to `uri`; the upstream is told
    /// `resources/unsubscribe` when it was the last. Failures are logged.
    pub async fn release(&self, uri: &str) {
        if !self.shared_subscriptions.give_back(uri) {
            return;
        }
        let params = Some(json!({ "uri": uri }));
        match self
            .request(&CallContext::shared(), "resources/unsubscribe", params)
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::debug!(upstream = %self.id, %error, "the upstream refused an unsubscribe")
            }
            Err(e) => tracing::debug!(upstream = %self.id, error = %e, "could not unsubscribe"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Counts;

    #[test]
    fn the_first_holder_subscribes_and_the_last_unsubscribes() {
        let counts = Counts::default();
        assert!(counts.take("a"));
        assert!(!counts.take("a"));
        assert!(!counts.give_back("a"));
        assert!(counts.give_back("a"));
        assert!(!counts.give_back("a"), "nothing left to give back");
        assert!(counts.take("a"));
    }
}
