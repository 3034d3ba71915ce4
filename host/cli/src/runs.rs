use anyhow::Result;
use clap::Subcommand;
use kiln_services::app::App;
use kiln_services::output;
use kiln_services::views;

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
    /// Search runs with a filter: `metrics.accuracy > 0.9 and params.model = 'forest'`.
    Search {
        /// MLflow's filter syntax, plus `or` and parentheses (empty: every run).
        #[arg(default_value = "")]
        filter: String,
        #[arg(long, short)]
        experiment: Vec<String>,
        /// e.g. "metrics.accuracy DESC" (repeatable).
        #[arg(long)]
        order_by: Vec<String>,
        #[arg(long, default_value_t = 100)]
        max_results: i64,
        /// The token a previous page printed.
        #[arg(long)]
        page_token: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Params side by side (differences marked) and metrics with the best marked.
    Compare {
        #[arg(required = true, num_args = 2..)]
        ids: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete a run (soft: `kiln runs restore` brings it back).
    Delete {
        id: String,
    },
    Restore {
        id: String,
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
                kiln_services::outln!("{}", output::json(&views::all::<_, views::RunSummary>(&runs)));
                return Ok(0);
            }
            if runs.is_empty() {
                kiln_services::outln!("No runs yet. Run a pipeline with `kiln run PIPELINE.toml`.");
                return Ok(0);
            }
            let rows = runs
                .iter()
                .map(|r| {
                    let metrics: Vec<String> =
                        headline_metrics(&r.metrics).iter().take(4).map(|(k, v)| format!("{k}={}", output::num(**v))).collect();
                    let more = if r.metrics.len() > 4 { format!(" (+{})", r.metrics.len() - 4) } else { String::new() };
                    vec![
                        output::short(&r.id, 12).to_string(),
                        r.experiment.clone(),
                        r.status.as_str().to_string(),
                        output::time_ms(r.start_time),
                        format!("{}{more}", metrics.join(" ")),
                    ]
                })
                .collect();
            kiln_services::outln!("{}", output::table(&["run", "experiment", "status", "started (UTC)", "metrics"], rows));
        }
        RunsCommand::Search { filter, experiment, order_by, max_results, page_token, json } => {
            use kiln_services::tracking::{SearchError, SearchRequest};
            let request = SearchRequest {
                filter: &filter,
                order_by: order_by.iter().map(String::as_str).collect(),
                max_results,
                page_token: page_token.as_deref(),
                experiments: experiment,
                ..Default::default()
            };
            let q = request.query().map_err(|e| match e {
                SearchError::Experiments(m) => anyhow::anyhow!("--experiment: {m}"),
                SearchError::Filter(m) => anyhow::anyhow!("invalid filter: {m}"),
                SearchError::OrderBy { clause, message } => anyhow::anyhow!("invalid --order-by `{clause}`: {message}"),
                SearchError::MaxResults(n) => anyhow::anyhow!("--max-results must be between 1 and 50000, got {n}"),
                SearchError::PageToken(m) => anyhow::anyhow!("--page-token: {m}"),
            })?;
            let (runs, next) = app.store.search_runs(&q).await?;
            if json {
                kiln_services::outln!(
                    "{}",
                    output::json(
                        &serde_json::json!({"runs": views::all::<_, views::RunSummary>(&runs), "next_page_token": next.map(|n| n.to_string())})
                    )
                );
            } else {
                let rows = runs
                    .iter()
                    .map(|r| {
                        let metrics: Vec<String> =
                            headline_metrics(&r.metrics).iter().take(4).map(|(k, v)| format!("{k}={}", output::num(**v))).collect();
                        vec![
                            output::short(&r.id, 12).to_string(),
                            r.experiment.clone(),
                            r.status.as_str().to_string(),
                            output::time_ms(r.start_time),
                            metrics.join(" "),
                        ]
                    })
                    .collect();
                kiln_services::outln!("{}", output::table(&["run", "experiment", "status", "started (UTC)", "metrics"], rows));
                if let Some(n) = next {
                    kiln_services::outln!("More: --page-token {n}");
                }
            }
        }
        RunsCommand::Compare { ids, json } => {
            let mut runs = Vec::new();
            for id in &ids {
                let full = app.store.resolve_run_id(id).await?;
                runs.push(app.store.get_run(&full).await?.summary);
            }
            let c = kiln_services::tracking::compare::compare(&runs);
            if json {
                kiln_services::outln!("{}", output::json(&c));
                return Ok(0);
            }
            let mut header = vec!["param".to_string()];
            header.extend(runs.iter().map(|r| output::short(&r.id, 12).to_string()));
            let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
            let rows = c
                .params
                .iter()
                .map(|(k, values, differs)| {
                    let mut row = vec![if *differs { format!("* {k}") } else { format!("  {k}") }];
                    row.extend(values.iter().map(|v| v.clone().unwrap_or_else(|| "-".into())));
                    row
                })
                .collect();
            kiln_services::outln!("{}", output::table(&header_refs, rows));
            kiln_services::outln!("(* = differs)\n");
            let mut header = vec!["metric".to_string()];
            header.extend(runs.iter().map(|r| output::short(&r.id, 12).to_string()));
            let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
            let rows = c
                .metrics
                .iter()
                .map(|(k, values, best)| {
                    let mut row = vec![k.clone()];
                    row.extend(values.iter().enumerate().map(|(i, v)| match v {
                        Some(v) if Some(i) == *best && values.iter().filter(|x| x.is_some()).count() > 1 => format!("{} *", output::num(*v)),
                        Some(v) => output::num(*v),
                        None => "-".into(),
                    }));
                    row
                })
                .collect();
            kiln_services::outln!("{}", output::table(&header_refs, rows));
            kiln_services::outln!("(* = best)");
        }
        RunsCommand::Delete { id } => {
            let id = app.store.resolve_run_id(&id).await?;
            app.store.set_run_stage(&id, "deleted").await?;
            kiln_services::outln!("Deleted run {id} (kiln runs restore {id} brings it back)");
        }
        RunsCommand::Restore { id } => {
            app.store.set_run_stage(&id, "active").await?;
            kiln_services::outln!("Restored run {id}");
        }
        RunsCommand::Show { id, logs, json } => {
            let id = app.store.resolve_run_id(&id).await?;
            let run = app.store.get_run(&id).await?;
            let log = if logs { Some(app.store.run_logs(&id).await?) } else { None };
            if json {
                let mut v = serde_json::to_value(views::Run::from(&run))?;
                v["lineage"] = serde_json::to_value(views::all::<_, views::LineageEdge>(&app.store.lineage_of_run(&id).await?))?;
                if let Some(l) = &log {
                    v["logs"] = serde_json::to_value(views::all::<_, views::LogLine>(l))?;
                }
                kiln_services::outln!("{}", output::json(&v));
                return Ok(0);
            }
            let s = &run.summary;
            kiln_services::outln!("run         {}", s.id);
            kiln_services::outln!("experiment  {}", s.experiment);
            kiln_services::outln!("status      {}", s.status.as_str());
            kiln_services::outln!("started     {} UTC", output::time_ms(s.start_time));
            if let Some(end) = s.end_time {
                kiln_services::outln!("duration    {:.2}s", (end - s.start_time) as f64 / 1000.0);
            }
            kiln_services::outln!("source      {}", s.source);
            if let Some(e) = &run.error {
                kiln_services::outln!("error       {e}");
            }
            if !s.params.is_empty() {
                kiln_services::outln!("\nparams");
                let rows = s.params.iter().map(|(k, v)| vec![k.clone(), v.clone()]).collect();
                kiln_services::outln!("{}", output::table(&["name", "value"], rows));
            }
            if !s.metrics.is_empty() {
                kiln_services::outln!("\nmetrics");
                let rows = s.metrics.iter().map(|(k, v)| vec![k.clone(), output::num(*v)]).collect();
                kiln_services::outln!("{}", output::table(&["name", "value"], rows));
            }
            if !run.stages.is_empty() {
                kiln_services::outln!("\nstages");
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
                            st.status.to_string(),
                            time,
                            st.peak_memory.map(|m| output::bytes(m as u64)).unwrap_or_default(),
                            st.error.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                kiln_services::outln!("{}", output::table(&["stage", "status", "time", "peak memory", "error"], rows));
            }
            if !run.artifacts.is_empty() {
                kiln_services::outln!("\nartifacts");
                let rows = run
                    .artifacts
                    .iter()
                    .map(|a| vec![a.path.clone(), output::bytes(a.size as u64), output::short(&a.blob, 16).to_string()])
                    .collect();
                kiln_services::outln!("{}", output::table(&["path", "size", "blob"], rows));
            }
            if let Some(log) = log {
                kiln_services::outln!("\nlog");
                for l in log {
                    kiln_services::outln!("[{}] {:<6} {}", l.stage, l.level, l.message);
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
