//! What `kiln serve` is asked for, known below the HTTP layer: the
//! options of the server loop, the open-file limit it runs under, and the
//! shape of the function that serves (`kiln_api::serve_boxed`), which the
//! binary hands to the CLI so the CLI need not depend on the API crate.

use crate::app::App;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The server loop's limits and names.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// A request's header must arrive within this (also the idle timeout).
    pub header_timeout: Duration,
    /// A body that sends no frame for this long is cut off.
    pub body_timeout: Duration,
    /// Connections open at once; more wait for a free slot.
    pub max_connections: usize,
    /// Host names besides the bound address (`*` for any).
    pub allowed_hosts: Vec<String>,
    /// Which routes: everything, or a bundle's predictions only.
    pub routes: Routes,
}

/// What a server answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Routes {
    /// Kiln's API, MLflow's, and the deployments' invocations.
    #[default]
    All,
    /// `kiln serve --bundle`: the deployment's invocations (also at
    /// `/invocations`, as `mlflow models serve` has it), its description
    /// and the health checks; nothing that writes.
    Bundle,
}

/// A running server: ends when the stop signal turns true.
pub type Serving = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Serve `App` on a listener until `stop` turns true.
pub type Serve = fn(TcpListener, App, ServeOptions, watch::Receiver<bool>) -> Serving;

/// Raise this process's open-file limit to its hard limit (as Go and
/// nginx do) and return it: connections, blobs and the database all
/// need descriptors.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum
        && limit.current.is_some_and(|soft| soft < hard)
    {
        limit.current = Some(hard);
        let _ = setrlimit(Resource::Nofile, limit);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(1 << 20)
}

/// The default connection limit: half the descriptors, at most 4,096.
pub fn default_max_connections(fd_limit: u64) -> usize {
    (fd_limit / 2).clamp(64, 4096) as usize
}
