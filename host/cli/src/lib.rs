//! `kiln-cli`: the `kiln` command line, a thin shell over the services.
//! It does not depend on the REST API crate: `kiln serve` gets the server
//! as a function from the binary (see [`run`]), so changing a handler
//! rebuilds the API crate and the binary, not this one.

mod data;
mod deploy;
mod experiments;
mod models;
mod pipeline;
mod plugin;
mod progress;
mod run;
mod runs;
mod schedule;
mod serve;

use anyhow::Result;
use clap::{Parser, Subcommand};
use kiln_services::listen::Serve;
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "kiln", version, about = "MLOps with sandboxed WebAssembly plugins", propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a workspace (`.kiln/`) in DIR (default: the current directory).
    Init { dir: Option<PathBuf> },
    /// Run a pipeline file as a tracked run.
    Run(run::RunArgs),
    /// Create, list, rename, delete and restore experiments.
    #[command(subcommand)]
    Experiments(experiments::ExperimentsCommand),
    /// The model registry: registered models, versions, stages, aliases.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Serve a registered model version under a name (`kiln serve` answers
    /// predictions at /deployments/NAME/invocations).
    Deploy(deploy::DeployArgs),
    /// List and delete deployments.
    #[command(subcommand)]
    Deployments(deploy::DeploymentsCommand),
    /// List, search, compare and inspect tracked runs.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Version data: add, status, checkout, list, show, diff.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Register, list, inspect and remove plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Register pipelines for REST runs and schedules.
    #[command(subcommand)]
    Pipeline(pipeline::PipelineCommand),
    /// Run registered pipelines on cron schedules.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Serve the REST API, with embedded workers and the scheduler.
    Serve(serve::ServeArgs),
    /// Run queued pipeline runs (several workers may share one database).
    Worker(serve::WorkerArgs),
}

/// The whole process: logging, the panic hook, the async runtime, the
/// command; returns the exit code. `serve` is `kiln_api::serve_boxed`.
pub fn run(serve: Serve) -> i32 {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("KILN_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .init();
    // A bug in kiln must still end in a sentence, not a backtrace dump.
    // (Written, not eprintln!ed: a closed stderr must not panic again.)
    std::panic::set_hook(Box::new(|info| {
        let _ = writeln!(std::io::stderr(), "error: internal error in kiln ({info}); please report it with the command you ran");
    }));
    // Multi-threaded: a plugin spinning in Wasm must not starve other tasks.
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(async {
        match main(serve).await {
            Ok(code) => code,
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "error: {e:#}");
                1
            }
        }
    })
}

/// Parse arguments, run, and return the process exit code.
pub async fn main(serve: Serve) -> Result<i32> {
    let cli = Cli::parse();
    match cli.command {
        Command::Init { dir } => {
            let at = match dir {
                Some(d) => d,
                None => std::env::current_dir()?,
            };
            let ws = kiln_services::workspace::Workspace::init(&at)?;
            let app = kiln_services::app::App::open_at(ws).await?;
            kiln_services::plugins::ensure_bundled(&app).await?;
            kiln_services::outln!("Initialised Kiln workspace in {}", app.workspace.dir.display());
            Ok(0)
        }
        Command::Run(args) => run::run(args).await,
        Command::Runs(cmd) => runs::run(cmd).await,
        Command::Experiments(cmd) => experiments::run(cmd).await,
        Command::Models(cmd) => models::run(cmd).await,
        Command::Deploy(args) => deploy::deploy(args).await,
        Command::Deployments(cmd) => deploy::run(cmd).await,
        Command::Data(cmd) => data::run(cmd).await,
        Command::Plugin(cmd) => plugin::run(cmd).await,
        Command::Pipeline(cmd) => pipeline::run(cmd).await,
        Command::Schedule(cmd) => schedule::run(cmd).await,
        Command::Serve(args) => serve::serve(args, serve).await,
        Command::Worker(args) => serve::worker(args).await,
    }
}
