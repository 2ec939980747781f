//! The gateway's accept loop: HTTP/1.1 with upgrades, bounded against clients that do not
//! cooperate before their upgrade (what API Gateway's edge does for us on AWS).
//!
//! - A connection must deliver each request head within the stage's
//!   `handshake_timeout_secs` (hyper's header-read timer, which also runs while a new or
//!   kept-alive connection sends nothing): a slowloris or a silent TCP connection is
//!   dropped instead of holding a file descriptor forever.
//! - At most `max_pending_handshakes` connections may be open before their upgrade; beyond
//!   that a new TCP connection is closed at once. An upgraded connection no longer counts
//!   (it counts toward `max_connections` instead).
//! - Every accepted socket gets a fixed kernel send buffer (`send_buffer_bytes`) instead
//!   of an autotuned one, so a client that stops reading holds a bounded amount of kernel
//!   memory before its outbound queue fills and it is closed as a slow consumer.
//! - Shutdown stops accepting at once and never waits for a connection that has not
//!   upgraded (axum's graceful shutdown waits for every in-flight request, so one
//!   half-sent request held Ctrl-C hostage).

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use wsctl_handlers::metrics::Metrics;

/// Bounds of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct AcceptLimits {
    /// Time a connection has to send a complete request head.
    pub handshake_timeout: Duration,
    /// Connections that may be open before their upgrade at once.
    pub max_pending: usize,
    /// Kernel send buffer of every accepted socket.
    pub send_buffer: usize,
}

/// Serves `app` on `listener` until `shutdown` completes; returns at once then.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: AcceptLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let pending = Arc::new(Semaphore::new(limits.max_pending.max(1)));
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors (EMFILE) and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            metrics.handshakes_refused.fetch_add(1, Relaxed);
            tracing::debug!(peer = %peer, "too many connections before their upgrade; closed");
            continue;
        };
        // Frames are small and latency-sensitive: no Nagle delay. A fixed send buffer
        // bounds the kernel memory a client that stops reading can hold.
        let _ = tcp.set_nodelay(true);
        if let Err(e) = socket2::SockRef::from(&tcp).set_send_buffer_size(limits.send_buffer) {
            tracing::debug!(peer = %peer, error = %e, "cannot set the send buffer size");
        }
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(req.map(Body::new))
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).header_read_timeout(limits.handshake_timeout);
            // Resolves once the connection closes or is handed over to its WebSocket session.
            if let Err(e) = http.serve_connection(TokioIo::new(tcp), service).with_upgrades().await {
                tracing::debug!(peer = %peer, error = %e, "connection ended before or without an upgrade");
            }
            drop(permit);
        });
    }
}
