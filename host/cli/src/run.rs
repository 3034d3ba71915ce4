use crate::progress::Bars;
use anyhow::Result;
use clap::Args;
use kiln_services::app::App;
use kiln_services::output;
use kiln_services::pipeline::engine::{Event, StageResult, StageStatus};
use kiln_services::pipeline::{self, RunOptions, spec::Pipeline};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Args)]
pub struct RunArgs {
    /// The pipeline file (TOML).
    pipeline: PathBuf,
    /// Override a stage param: --set STAGE.PARAM=VALUE (repeatable).
    #[arg(long = "set", value_name = "STAGE.PARAM=VALUE")]
    overrides: Vec<String>,
    /// Run every stage even if an identical run is cached.
    #[arg(long)]
    no_cache: bool,
    /// Run this stage even if cached (repeatable).
    #[arg(long, value_name = "STAGE")]
    force: Vec<String>,
    /// How many stages may run at once.
    #[arg(long, short, default_value_t = 4)]
    jobs: usize,
    /// For a pipeline with a [sweep]: run at most this many combinations.
    #[arg(long)]
    max_runs: Option<usize>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// The first SIGINT (Ctrl-C) or SIGTERM, and the exit code it calls for.
async fn interrupted() -> (&'static str, i32) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => ("SIGINT", 130),
        _ = term.recv() => ("SIGTERM", 143),
    }
}

/// `kiln run`: the pipeline (or sweep) until it ends or the process is
/// interrupted; then the runs it was executing are marked KILLED.
pub async fn run(args: RunArgs) -> Result<i32> {
    let mut pipeline = Pipeline::load(&args.pipeline)?;
    for o in &args.overrides {
        pipeline.apply_override(o).map_err(anyhow::Error::msg)?;
    }
    for f in &args.force {
        if pipeline.stage(f).is_none() {
            anyhow::bail!("--force {f}: the pipeline has no stage `{f}`");
        }
    }
    let app = App::open(true).await?;
    let work = run_pipeline(&app, pipeline, &args);
    let code = tokio::select! {
        code = work => code,
        (signal, code) = interrupted() => {
            pipeline::abandon_live_runs(&app, &format!("interrupted ({signal})")).await;
            eprintln!("kiln run: interrupted ({signal}); the run is marked KILLED");
            Ok(code)
        }
    };
    // Servers watching this run (on PostgreSQL) hear its last changes.
    app.store.flush_changes(std::time::Duration::from_secs(2)).await;
    code
}

async fn run_pipeline(app: &App, pipeline: Pipeline, args: &RunArgs) -> Result<i32> {
    if pipeline.sweep.is_some() {
        return sweep(app, pipeline, args).await;
    }
    let prepared = pipeline::prepare(app, pipeline).await?;
    let name = prepared.pipeline.name.clone();
    let human = !args.json;
    let live = human && std::io::stderr().is_terminal();
    if human {
        kiln_services::outln!("Running pipeline `{name}` ({} stages)", prepared.pipeline.stages.len());
    }
    let options = RunOptions { jobs: args.jobs, no_cache: args.no_cache, force: args.force.iter().cloned().collect(), ..Default::default() };
    let bars = live.then(Bars::new);
    let run = pipeline::execute(app, prepared, options, None, |event| match (event, &bars) {
        (Event::Run(id), Some(bars)) => bars.follow(app, id),
        (Event::Started(stage), Some(bars)) => bars.started(&stage.name),
        (Event::Finished(r), Some(bars)) => bars.finished(&r.name, &stage_line(r)),
        (Event::Finished(r), None) if human => kiln_services::outln!("{}", stage_line(r)),
        _ => {}
    })
    .await?;
    let ok = run.succeeded();
    if args.json {
        let stages: Vec<serde_json::Value> = run
            .results
            .iter()
            .map(|r| {
                serde_json::json!({
                    "stage": r.name,
                    "status": r.status.word(),
                    "error": match &r.status { StageStatus::Failed(e) | StageStatus::GateFailed(e) | StageStatus::Skipped(e) => Some(e), _ => None },
                    "plugin": r.plugin,
                    "seconds": r.elapsed.as_secs_f64(),
                    "peak_memory": r.peak_memory,
                    "metrics": r.metrics,
                })
            })
            .collect();
        kiln_services::outln!(
            "{}",
            output::json(
                &serde_json::json!({"run_id": run.run_id, "pipeline": name, "succeeded": ok, "stages": stages, "registered": run.registered})
            )
        );
    } else {
        print_summary(&run.results);
        let ran = run.results.iter().filter(|r| r.status == StageStatus::Ran).count();
        let cached = run.results.iter().filter(|r| r.status == StageStatus::Cached).count();
        kiln_services::outln!(
            "\nRun {} in experiment `{name}`: {} ({ran} ran, {cached} cached). See it with `kiln runs show {}`.",
            run.run_id,
            if ok { "succeeded" } else { "FAILED" },
            output::short(&run.run_id, 12)
        );
        for r in &run.registered {
            let alias = r.alias.as_ref().map(|a| format!(" (alias {a})")).unwrap_or_default();
            kiln_services::outln!("Registered {} version {}{alias} from stage `{}`.", r.model, r.version, r.stage);
        }
    }
    Ok(if ok { 0 } else { 1 })
}

fn stage_line(r: &StageResult) -> String {
    let detail = match &r.status {
        StageStatus::Failed(e) | StageStatus::GateFailed(e) | StageStatus::Skipped(e) => e.clone(),
        _ => r.metrics.iter().take(6).map(|(k, v)| format!("{k}={}", output::num(*v))).collect::<Vec<_>>().join(" "),
    };
    let secs = if r.elapsed.is_zero() { String::new() } else { format!("{:.2}s", r.elapsed.as_secs_f64()) };
    format!("  {:<16} {:<11} {:>7}  {:<16} {detail}", r.name, r.status.word(), secs, r.plugin.as_deref().unwrap_or("-"))
}

/// A few lines a person reads first: model quality and drift verdicts.
fn print_summary(results: &[StageResult]) {
    let mut lines = Vec::new();
    for r in results.iter().filter(|r| r.status.ok()) {
        let m = &r.metrics;
        if let (Some(share), Some(drift)) = (m.get("drift_share"), m.get("dataset_drift")) {
            let n = m.get("features").copied().unwrap_or(0.0);
            let d = m.get("drifted_features").copied().unwrap_or(0.0);
            let verdict = if *drift > 0.0 { "DRIFT" } else { "no drift" };
            lines.push(format!("  {:<16} {verdict}: {} of {} features drifted (share {})", r.name, d, n, output::num(*share)));
        } else if ["accuracy", "r2", "rmse"].iter().any(|k| m.contains_key(*k)) {
            let keys = ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "rmse", "mae", "r2"];
            let shown: Vec<String> = keys.iter().filter_map(|k| m.get(*k).map(|v| format!("{k} {}", output::num(*v)))).collect();
            lines.push(format!("  {:<16} {}", r.name, shown.join(", ")));
        }
    }
    if !lines.is_empty() {
        kiln_services::outln!("\nSummary");
        for l in lines {
            kiln_services::outln!("{l}");
        }
    }
}

async fn sweep(app: &App, pipeline: Pipeline, args: &RunArgs) -> Result<i32> {
    let name = pipeline.name.clone();
    let options = RunOptions { jobs: args.jobs, no_cache: args.no_cache, force: args.force.iter().cloned().collect(), ..Default::default() };
    let human = !args.json;
    if human {
        kiln_services::outln!("Sweeping pipeline `{name}`");
    }
    let outcome = pipeline::run_sweep(app, pipeline, options, args.max_runs, |c| {
        if human {
            let params: Vec<String> = c.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let metric = c.metric.map(output::num).unwrap_or_else(|| "-".into());
            kiln_services::outln!(
                "  {}  {:<9} {metric:>10}  {}",
                output::short(&c.run_id, 12),
                if c.succeeded { "succeeded" } else { "FAILED" },
                params.join(" ")
            );
        }
    })
    .await?;
    if args.json {
        kiln_services::outln!("{}", output::json(&outcome));
    } else {
        match outcome.best {
            Some(b) => {
                let c = &outcome.children[b];
                kiln_services::outln!(
                    "\nBest {} = {} in run {} ({}). Parent run {}.",
                    outcome.metric,
                    output::num(c.metric.unwrap_or(f64::NAN)),
                    output::short(&c.run_id, 12),
                    c.params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "),
                    outcome.parent_id
                );
            }
            None => kiln_services::outln!("\nNo combination succeeded. Parent run {}.", outcome.parent_id),
        }
    }
    Ok(if outcome.best.is_some() { 0 } else { 1 })
}
