//! Serving the gateway over TLS: accept, handshake (bounded in time), put the client
//! certificate's identity on every request of the connection, serve HTTP/1.1 or HTTP/2 as ALPN
//! chose, and on shutdown stop accepting and let open connections finish gracefully.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::TlsSetup;
use super::identity::peer_identity;

/// Longest TLS handshake before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` over TLS until `shutdown` turns true, then waits for open
/// connections to finish. Reloads the certificate every `reload_interval`.
pub async fn serve(
    listener: TcpListener,
    setup: TlsSetup,
    reload_interval: Duration,
    app: axum::Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(Arc::clone(&setup.server));
    let graceful = GracefulShutdown::new();
    let mut reload = tokio::time::interval(reload_interval);
    reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, remote) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let app = app.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "TLS handshake timed out");
                            return;
                        }
                    };
                    let peer = peer_identity(tls.get_ref().1.peer_certificates());
                    let app = app.map_request(move |mut request: axum::http::Request<hyper::body::Incoming>| {
                        if let Some(peer) = &peer {
                            request.extensions_mut().insert(peer.clone());
                        }
                        request
                    });
                    let connection = Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(app))
                        .into_owned();
                    if let Err(e) = watcher.watch(connection).await {
                        tracing::debug!(%remote, error = %e, "connection ended with an error");
                    }
                });
            }
            _ = reload.tick() => {
                setup.resolver.reload_if_changed();
            }
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}
