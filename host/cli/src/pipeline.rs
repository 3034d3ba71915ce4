use anyhow::{Context, Result};
use clap::Subcommand;
use kiln_services::app::App;
use kiln_services::output;
use kiln_services::pipeline;
use kiln_services::views;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum PipelineCommand {
    /// Check a pipeline file and register it under its name, for REST runs
    /// and schedules (relative paths resolve against the file's folder).
    Add { file: PathBuf },
    /// Queue a run of a registered pipeline for the workers; prints its id.
    Submit {
        name: String,
        #[arg(long = "set", value_name = "STAGE.PARAM=VALUE")]
        overrides: Vec<String>,
        #[arg(long)]
        no_cache: bool,
        #[arg(long)]
        json: bool,
    },
    /// List registered pipelines.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: PipelineCommand) -> Result<i32> {
    let app = App::open(true).await?;
    match cmd {
        PipelineCommand::Add { file } => {
            let source = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let base = file.parent().map(PathBuf::from).filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| PathBuf::from("."));
            let p = pipeline::register(&app, &source, &file.display().to_string(), &base).await?;
            kiln_services::outln!("Registered pipeline `{}` ({} stages)", p.name, p.stages.len());
        }
        PipelineCommand::Submit { name, overrides, no_cache, json } => {
            let request = pipeline::RunRequest { pipeline: name, set: overrides, no_cache, force: Vec::new() };
            let id = pipeline::submit(&app, &request).await?;
            if json {
                kiln_services::outln!("{}", output::json(&serde_json::json!({"id": id, "status": "queued"})));
            } else {
                kiln_services::outln!("Queued run {id}; a `kiln worker` or `kiln serve` picks it up");
            }
        }
        PipelineCommand::List { json } => {
            let list = app.store.list_pipelines().await?;
            if json {
                kiln_services::outln!("{}", output::json(&views::all::<_, views::Pipeline>(&list)));
            } else {
                let rows = list.iter().map(|p| vec![p.name.clone(), output::time_ms(p.updated_at), p.base_dir.clone()]).collect();
                kiln_services::outln!("{}", output::table(&["name", "updated (UTC)", "data paths relative to"], rows));
            }
        }
    }
    Ok(0)
}
