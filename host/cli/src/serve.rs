use anyhow::{Context, Result};
use clap::Args;
use kiln_services::app::App;
use kiln_services::listen::{self, Serve};
use kiln_services::worker::{self, WorkerOptions};
use std::io::Write;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Embedded workers that run queued pipeline runs (0 for none).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Do not run the scheduler in this process.
    #[arg(long)]
    no_scheduler: bool,
    /// A worker's lease on a job; it is renewed every third of this.
    #[arg(long, default_value = "30s", value_parser = kiln_services::runtime::parse_duration)]
    lease: Duration,
    /// Serve under this host name too (repeatable; `*` for any). Requests
    /// whose Host header names neither this nor the bound address are refused.
    #[arg(long = "allow-host", value_name = "NAME", env = "KILN_ALLOW_HOSTS", value_delimiter = ',')]
    allow_hosts: Vec<String>,
    /// A request's header must arrive within this; an idle kept-alive
    /// connection is closed after it too.
    #[arg(long, default_value = "30s", value_parser = kiln_services::runtime::parse_duration)]
    header_timeout: Duration,
    /// A request body that sends nothing for this long is cut off.
    #[arg(long, default_value = "60s", value_parser = kiln_services::runtime::parse_duration)]
    body_timeout: Duration,
    /// Connections open at once (default: half the open-file limit, at most 4096);
    /// more wait until one closes.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Where MLflow clients write the artifacts of experiments created
    /// without an `artifact_location` (a URI such as `s3://bucket/mlflow`
    /// or `file:///srv/mlartifacts`, or an absolute path): each such
    /// experiment's location is `ROOT/<id>`, and clients write there
    /// themselves. By default they upload through Kiln (`mlflow-artifacts:/`).
    #[arg(long, value_name = "ROOT", value_parser = artifact_root)]
    default_artifact_root: Option<String>,
    /// MLflow clients may create model versions only from sources this
    /// regular expression matches somewhere in (say `^s3://models/`);
    /// others are refused with 400. MLflow's server reads the same
    /// variable.
    #[arg(long, value_name = "REGEX", env = "MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX")]
    version_source_pattern: Option<String>,
    /// Serve the folder the `bundle` deployer wrote, and nothing else: no
    /// workspace or database is needed (or used).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["default_artifact_root", "version_source_pattern"])]
    bundle: Option<std::path::PathBuf>,
}

/// A URI with a scheme, or a path made an absolute `file://` URI, as
/// `mlflow server` takes its `--default-artifact-root`.
fn artifact_root(s: &str) -> Result<String, String> {
    let s = s.trim_end_matches('/');
    match s.split_once("://") {
        Some((scheme, rest)) if !scheme.is_empty() && !rest.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) => {
            Ok(s.to_string())
        }
        Some(_) => Err(format!("`{s}` is not a URI such as s3://bucket/path or file:///path")),
        None if s.is_empty() => Err("the artifact root is empty".into()),
        None => {
            let path = std::path::absolute(s).map_err(|e| format!("`{s}`: {e}"))?;
            let path = path.to_str().ok_or_else(|| format!("`{s}` is not UTF-8"))?;
            Ok(format!("file://{path}"))
        }
    }
}

#[derive(Args)]
pub struct WorkerArgs {
    /// A worker's lease on a job; a job whose worker died is taken over this
    /// long after its last heartbeat.
    #[arg(long, default_value = "30s", value_parser = kiln_services::runtime::parse_duration)]
    lease: Duration,
}

fn shutdown_signal() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    let (tx, rx) = watch::channel(false);
    let stop = tx.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        let _ = stop.send(true);
    });
    (tx, rx)
}

/// Bind `addr` with a listen backlog of 4,096 (tokio's default is 1,024):
/// a thousand clients connecting in the same instant, while the server is
/// busy compiling its bundled plugins, must queue, not be reset.
async fn listen(addr: &str) -> Result<tokio::net::TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(4096)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(|| anyhow::anyhow!("the address resolves to nothing"), anyhow::Error::from))
}

/// Load every deployment's instances, so the first predictions are warm;
/// one that cannot load is logged and answers 503 until it is fixed.
async fn warm_deployments(app: &App) {
    let deployments = match app.store.deployments().await {
        Ok(d) => d,
        Err(e) => return tracing::error!("listing deployments: {e}"),
    };
    for d in deployments {
        if let Err(e) = kiln_services::serving::warm(app, &d.name).await {
            tracing::warn!(deployment = %d.name, "not serving yet: {e}");
        }
    }
}

pub async fn serve(args: ServeArgs, serve: Serve) -> Result<i32> {
    let fd_limit = listen::raise_fd_limit();
    if let Some(dir) = args.bundle.clone() {
        return serve_bundle(args, &dir, serve, fd_limit).await;
    }
    let mut app = App::open(true).await?;
    app.default_artifact_root = args.default_artifact_root.clone();
    if let Some(pattern) = &args.version_source_pattern {
        app.set_version_source_pattern(pattern)?;
    }
    if let Some(root) = &app.default_artifact_root {
        // MLflow's server puts its Default experiment under the root too.
        // Kiln's may predate the flag: it moves only while it has no runs,
        // whose files would otherwise be left behind.
        app.store.ensure_default_experiment().await?;
        if let Some(e) = app.store.experiment_by_id("0").await?
            && e.artifact_location.is_empty()
            && e.runs == 0
        {
            app.store.set_experiment_artifact_location("0", &format!("{root}/0")).await?;
        }
    }
    // What a killed server was uploading when it died.
    app.blobs.sweep_temporary();
    let listener = listen(&args.addr).await.with_context(|| format!("cannot listen on {}", args.addr))?;
    let addr = listener.local_addr()?;
    let (_tx, rx) = shutdown_signal();
    // Registering the bundled plugins compiles them on a fresh workspace
    // (a few hundred ms): serve requests meanwhile, and start the workers
    // and the scheduler, which run plugins, once it is done. A request that
    // needs a bundled plugin first waits for it (`plugins::resolve`).
    let background = {
        let (app, rx, workers, lease, scheduler) = (app.clone(), rx.clone(), args.workers, args.lease, !args.no_scheduler);
        tokio::spawn(async move {
            if let Err(e) = kiln_services::plugins::ensure_bundled(&app).await {
                tracing::error!("registering the bundled plugins: {e:#}");
            }
            warm_deployments(&app).await;
            let mut tasks = Vec::new();
            for _ in 0..workers {
                tasks.push(tokio::spawn(worker::run(app.clone(), WorkerOptions::new(lease), rx.clone())));
            }
            if scheduler {
                tasks.push(tokio::spawn(kiln_services::scheduler::run(app.clone(), rx.clone())));
            }
            // Every serving process counts what it served and judges
            // canaries; the store lets one decision through.
            tasks.push(tokio::spawn(kiln_services::serving::rollout::supervise(app.clone(), rx.clone())));
            for t in tasks {
                let _ = t.await;
            }
        })
    };
    kiln_services::outln!(
        "Kiln listening on http://{addr} (workspace {}, {} worker(s), scheduler {})",
        app.workspace.dir.display(),
        args.workers,
        if args.no_scheduler { "off" } else { "on" }
    );
    std::io::stdout().flush()?;
    let options = server_options(&args, fd_limit, listen::Routes::All);
    serve(listener, app.clone(), options, rx.clone()).await?;
    let _ = background.await;
    app.store.flush_changes(std::time::Duration::from_secs(2)).await;
    Ok(0)
}

/// The server loop's options as the flags give them.
fn server_options(args: &ServeArgs, fd_limit: u64, routes: listen::Routes) -> listen::ServeOptions {
    listen::ServeOptions {
        header_timeout: args.header_timeout,
        body_timeout: args.body_timeout,
        max_connections: args.max_connections.unwrap_or_else(|| listen::default_max_connections(fd_limit)),
        allowed_hosts: args.allow_hosts.clone(),
        routes,
    }
}

/// `kiln serve --bundle DIR`: one deployment from a folder, loaded before
/// the port opens (a bundle server has nothing else to do meanwhile).
async fn serve_bundle(args: ServeArgs, dir: &std::path::Path, serve: Serve, fd_limit: u64) -> Result<i32> {
    let opened = kiln_services::serving::bundle::open(dir).await?;
    let app = opened.app.clone();
    kiln_services::serving::warm(&app, &opened.deployment).await?;
    let d = app.store.deployment(&opened.deployment).await?;
    let listener = listen(&args.addr).await.with_context(|| format!("cannot listen on {}", args.addr))?;
    let addr = listener.local_addr()?;
    let (_tx, rx) = shutdown_signal();
    kiln_services::outln!(
        "Kiln listening on http://{addr} (bundle {}: deployment {}, {} version {}, at POST /invocations and /deployments/{}/invocations)",
        dir.display(),
        d.name,
        d.model_name,
        d.version,
        d.name
    );
    std::io::stdout().flush()?;
    let options = server_options(&args, fd_limit, listen::Routes::Bundle);
    serve(listener, app, options, rx).await?;
    drop(opened);
    Ok(0)
}

pub async fn worker(args: WorkerArgs) -> Result<i32> {
    let app = App::open(true).await?;
    kiln_services::plugins::ensure_bundled(&app).await?;
    let options = WorkerOptions::new(args.lease);
    kiln_services::outln!("Kiln worker {} on {}", options.id, kiln_services::store::redact(&app.workspace.database_url()));
    std::io::stdout().flush()?;
    let (_tx, rx) = shutdown_signal();
    worker::run(app.clone(), options, rx).await;
    app.store.flush_changes(std::time::Duration::from_secs(2)).await;
    Ok(0)
}
