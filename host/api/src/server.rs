//! The HTTP server loop: hyper driven directly, so that a connection that
//! sends nothing (or half a header, or half a body) is closed, and the
//! number of open connections is bounded. `axum::serve` has neither.
//!
//! - A request's header must arrive within `header_timeout`; the same
//!   timer runs while a kept-alive connection sits idle between requests
//!   (hyper starts it when the connection goes idle), so idle
//!   connections are closed too.
//! - A request body must keep moving: `body_timeout` without a frame ends
//!   it (a slow but steady upload of any size is fine).
//! - At most `max_connections` are open at once. Past that, new
//!   connections wait in the listen backlog until one closes, rather than
//!   the process running out of file descriptors and failing everything.

use super::guard::AllowedHosts;
use crate::app::App;
use anyhow::Result;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
pub use kiln_services::listen::ServeOptions;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// How long in-flight requests may take to finish once a shutdown starts.
const DRAIN: Duration = Duration::from_secs(10);

/// Serve `app` on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, app: App, options: ServeOptions, mut stop: watch::Receiver<bool>) -> Result<()> {
    let addr = listener.local_addr()?;
    let router = super::router(app, AllowedHosts::new(addr, &options.allowed_hosts), options.routes)
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(options.body_timeout));
    let permits = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = stop.wait_for(|v| *v) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|v| *v) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning; the
                // connections already open keep being served.
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(options.header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that vanishes or times out is not the server's error.
            if let Err(e) = connection.await {
                tracing::debug!("connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN) => tracing::warn!("requests still running {DRAIN:?} after shutdown began; stopping anyway"),
    }
    Ok(())
}

/// [`serve`] as the command line takes it (`kiln_services::listen::Serve`):
/// the binary hands it to the CLI, so the CLI does not depend on this crate
/// and is not rebuilt when a handler changes.
pub fn serve_boxed(listener: TcpListener, app: App, options: ServeOptions, stop: watch::Receiver<bool>) -> kiln_services::listen::Serving {
    Box::pin(serve(listener, app, options, stop))
}
