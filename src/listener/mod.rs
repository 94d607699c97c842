//! Accepting client connections, plain or TLS, with bounds no client can get around: at most
//! `max_connections` at once, a request head (and a TLS handshake, and the first request of a
//! new connection) within `header_read_timeout`, and a connection without a request in flight
//! closed after `idle_timeout`. When the listener is full, a new connection replaces the oldest
//! one that has not started a request (`activity::Unstarted`); only when every connection is
//! serving does the next wait for one to end. A slowloris client that opens many connections and
//! trickles bytes holds each for at most `header_read_timeout`, never more than
//! `max_connections` at once, and never at the expense of a client that sends its requests.
//!
//! HTTP/1.1 and HTTP/2 (ALPN over TLS, prior knowledge over plain TCP) are served by hyper; every
//! request carries its [`RemoteAddr`] and, over mTLS, the client certificate's
//! [`crate::auth::PeerCertificate`]. On shutdown the loop stops accepting, every connection is
//! closed gracefully (in-flight requests finish) and the loop returns when all have ended.

mod activity;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::tls::TlsSetup;
use crate::tls::identity::peer_identity;
use activity::{Activity, TrackedBody, Unstarted};

/// The address of the connected client (the TCP peer), on every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

/// A listener's bounds (`listen.*`, DESIGN.md §5.6).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest time for a TLS handshake, for a new connection's first request head, and for
    /// each HTTP/1.1 request head (hyper also starts this timer while a keep-alive connection
    /// waits for its next request, so it bounds HTTP/1.1 keep-alive too).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often a full listener looks again for a connection to make room with.
const EVICT_RETRY: Duration = Duration::from_millis(50);

/// Serves `app` on `listener` (over TLS with `tls`, whose certificate is reloaded every period
/// given with it) within `limits` until `shutdown` turns true; then closes every connection
/// gracefully and returns when they have ended. `open` counts the connections open.
pub async fn serve(
    listener: TcpListener,
    tls: Option<(TlsSetup, Duration)>,
    app: axum::Router,
    limits: Limits,
    open: prometheus::IntGauge,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tls
        .as_ref()
        .map(|(setup, _)| TlsAcceptor::from(Arc::clone(&setup.server)));
    // Certificates are reloaded on their own schedule, whatever the accept loop waits for.
    let reloader = tls.map(|(setup, period)| {
        tokio::spawn(async move {
            let mut reload = tokio::time::interval(period);
            reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                reload.tick().await;
                setup.resolver.reload_if_changed();
            }
        })
    });
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let unstarted = Arc::new(Unstarted::default());
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => break,
        };
        // Full: make room by closing the oldest connection that has had its chance to start a
        // request and has not, or else wait for one to end.
        let grace = limits.header_read_timeout / 4;
        let permit = loop {
            if let Ok(permit) = Arc::clone(&permits).try_acquire_owned() {
                break Some(permit);
            }
            unstarted.evict_oldest(grace);
            tokio::select! {
                permit = Arc::clone(&permits).acquire_owned() => break permit.ok(),
                () = tokio::time::sleep(EVICT_RETRY.min(grace)) => {}
                () = stopped(&mut shutdown) => break None,
            }
        };
        let Some(permit) = permit else { break };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let acceptor = acceptor.clone();
        let shutdown = shutdown.clone();
        let open = open.clone();
        let activity = Activity::new();
        unstarted.push(&activity);
        connections.spawn(async move {
            // Counted while open; the permit goes back when the task ends, however it ends.
            let _open = Open::new(open, permit);
            match acceptor {
                None => connection(tcp, remote, None, app, limits, activity, shutdown).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tcp));
                    let shaken = tokio::select! {
                        shaken = handshake => shaken,
                        () = activity.evicted() => return,
                    };
                    match shaken {
                        Ok(Ok(stream)) => {
                            let peer = peer_identity(stream.get_ref().1.peer_certificates());
                            connection(stream, remote, peer, app, limits, activity, shutdown).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    if let Some(reloader) = reloader {
        reloader.abort();
    }
    connections.close();
    connections.wait().await;
}

/// Serves one connection until it ends, is idle too long, or the listener shuts down (then
/// gracefully: requests in flight finish).
async fn connection<I>(
    io: I,
    remote: SocketAddr,
    peer: Option<crate::auth::PeerCertificate>,
    app: axum::Router,
    limits: Limits,
    activity: Arc<Activity>,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let tracker = Arc::clone(&activity);
    let service =
        hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let in_flight = tracker.begin();
            let mut request = request.map(axum::body::Body::new);
            let extensions = request.extensions_mut();
            extensions.insert(RemoteAddr(remote));
            if let Some(peer) = &peer {
                extensions.insert(peer.clone());
            }
            let response = tower::ServiceExt::oneshot(app.clone(), request);
            async move {
                let response = response.await?;
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| TrackedBody::new(body, in_flight)),
                )
            }
        });
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%remote, error = %e, "connection ended with an error");
                }
                return;
            }
            () = activity.evicted() => {
                tracing::debug!(%remote, "closing a connection without a request: the listener is full");
                return;
            }
            () = activity.idle_for(limits.header_read_timeout, limits.idle_timeout), if !closing => {
                tracing::debug!(%remote, "closing an idle connection");
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = stopped(&mut shutdown), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// One open connection: counted in the gauge and holding its permit until dropped.
struct Open {
    _counted: crate::telemetry::Counted,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Open {
    fn new(gauge: prometheus::IntGauge, permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        Self {
            _counted: crate::telemetry::Counted::new(gauge),
            _permit: permit,
        }
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}
