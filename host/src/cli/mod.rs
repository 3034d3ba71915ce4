//! The `kiln` command line: a thin shell over the services.

mod data;
mod experiments;
mod models;
mod pipeline;
mod plugin;
mod run;
mod runs;
mod schedule;
mod serve;

use anyhow::Result;
use clap::{Parser, Subcommand};
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

/// Parse arguments, run, and return the process exit code.
pub async fn main() -> Result<i32> {
    let cli = Cli::parse();
    match cli.command {
        Command::Init { dir } => {
            let at = match dir {
                Some(d) => d,
                None => std::env::current_dir()?,
            };
            let ws = crate::workspace::Workspace::init(&at)?;
            let app = crate::app::App::open_at(ws).await?;
            crate::plugins::ensure_bundled(&app).await?;
            crate::outln!("Initialised Kiln workspace in {}", app.workspace.dir.display());
            Ok(0)
        }
        Command::Run(args) => run::run(args).await,
        Command::Runs(cmd) => runs::run(cmd).await,
        Command::Experiments(cmd) => experiments::run(cmd).await,
        Command::Models(cmd) => models::run(cmd).await,
        Command::Data(cmd) => data::run(cmd).await,
        Command::Plugin(cmd) => plugin::run(cmd).await,
        Command::Pipeline(cmd) => pipeline::run(cmd).await,
        Command::Schedule(cmd) => schedule::run(cmd).await,
        Command::Serve(args) => serve::serve(args).await,
        Command::Worker(args) => serve::worker(args).await,
    }
}
