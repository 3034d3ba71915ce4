use crate::app::App;
use crate::output;
use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first.
    List {
        #[arg(long, short)]
        experiment: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Show one run: params, metrics, stages, artifacts.
    Show {
        /// Run id, or a unique prefix of it.
        id: String,
        /// Also print the run's log.
        #[arg(long)]
        logs: bool,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: RunsCommand) -> Result<i32> {
    let app = App::open(true).await?;
    match cmd {
        RunsCommand::List { experiment, limit, json } => {
            let runs = app.store.list_runs(experiment.as_deref(), limit).await?;
            if json {
                println!("{}", output::json(&runs));
                return Ok(0);
            }
            if runs.is_empty() {
                println!("No runs yet. Run a pipeline with `kiln run PIPELINE.toml`.");
                return Ok(0);
            }
            let rows = runs
                .iter()
                .map(|r| {
                    let metrics: Vec<String> = headline_metrics(&r.metrics).iter().take(4).map(|(k, v)| format!("{k}={}", output::num(**v))).collect();
                    let more = if r.metrics.len() > 4 { format!(" (+{})", r.metrics.len() - 4) } else { String::new() };
                    vec![
                        r.id[..12].to_string(),
                        r.experiment.clone(),
                        r.status.as_str().to_string(),
                        output::time_ms(r.start_time),
                        format!("{}{more}", metrics.join(" ")),
                    ]
                })
                .collect();
            println!("{}", output::table(&["run", "experiment", "status", "started (UTC)", "metrics"], rows));
        }
        RunsCommand::Show { id, logs, json } => {
            let id = app.store.resolve_run_id(&id).await?;
            let run = app.store.get_run(&id).await?;
            let log = if logs { Some(app.store.run_logs(&id).await?) } else { None };
            if json {
                let mut v = serde_json::to_value(&run)?;
                v["lineage"] = serde_json::to_value(app.store.lineage_of_run(&id).await?)?;
                if let Some(l) = &log {
                    v["logs"] = serde_json::to_value(l)?;
                }
                println!("{}", output::json(&v));
                return Ok(0);
            }
            let s = &run.summary;
            println!("run         {}", s.id);
            println!("experiment  {}", s.experiment);
            println!("status      {}", s.status.as_str());
            println!("started     {} UTC", output::time_ms(s.start_time));
            if let Some(end) = s.end_time {
                println!("duration    {:.2}s", (end - s.start_time) as f64 / 1000.0);
            }
            println!("source      {}", s.source);
            if let Some(e) = &run.error {
                println!("error       {e}");
            }
            if !s.params.is_empty() {
                println!("\nparams");
                let rows = s.params.iter().map(|(k, v)| vec![k.clone(), v.clone()]).collect();
                println!("{}", output::table(&["name", "value"], rows));
            }
            if !s.metrics.is_empty() {
                println!("\nmetrics");
                let rows = s.metrics.iter().map(|(k, v)| vec![k.clone(), output::num(*v)]).collect();
                println!("{}", output::table(&["name", "value"], rows));
            }
            if !run.stages.is_empty() {
                println!("\nstages");
                let rows = run
                    .stages
                    .iter()
                    .map(|st| {
                        let time = match (st.started_at, st.ended_at) {
                            (Some(a), Some(b)) => format!("{:.2}s", (b - a) as f64 / 1000.0),
                            _ => String::new(),
                        };
                        vec![
                            st.stage.clone(),
                            st.status.clone(),
                            time,
                            st.peak_memory.map(|m| output::bytes(m as u64)).unwrap_or_default(),
                            st.error.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                println!("{}", output::table(&["stage", "status", "time", "peak memory", "error"], rows));
            }
            if !run.artifacts.is_empty() {
                println!("\nartifacts");
                let rows = run.artifacts.iter().map(|a| vec![a.path.clone(), output::bytes(a.size as u64), a.blob[..16].to_string()]).collect();
                println!("{}", output::table(&["path", "size", "blob"], rows));
            }
            if let Some(log) = log {
                println!("\nlog");
                for l in log {
                    println!("[{}] {:<6} {}", l.stage, l.level, l.message);
                }
            }
        }
    }
    Ok(0)
}

/// Quality metrics first (accuracy, F1, R², ...), then drift verdicts, then
/// the rest in name order: what a person scanning a list wants to see.
fn headline_metrics(m: &std::collections::BTreeMap<String, f64>) -> Vec<(&String, &f64)> {
    const ORDER: [&str; 8] = ["accuracy", "f1", "roc_auc", "r2", "rmse", "mae", "dataset_drift", "drift_share"];
    let rank = |k: &str| ORDER.iter().position(|o| k.rsplit('.').next() == Some(*o)).unwrap_or(ORDER.len());
    let mut v: Vec<(&String, &f64)> = m.iter().collect();
    v.sort_by_key(|(k, _)| rank(k));
    v
}
