//! Pipelines: a TOML file of inputs and stages, checked before anything
//! runs, executed as a DAG with content-keyed caching and gates, recorded
//! as one tracked run.

pub mod engine;
pub(crate) mod executor;
pub mod gate;
mod inputs;
pub mod spec;
pub mod sweep;

use crate::app::App;
use crate::plugins;
use crate::store::{LineageEdge, NewRun, PluginRecord, RunStatus, StageRecord};
use anyhow::{Context, Result};
use engine::{Event, StageResult, StageStatus};
use executor::PluginExecutor;
use kiln_types::PluginKind;
use spec::{Action, Pipeline};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub use executor::Outputs;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub jobs: usize,
    pub no_cache: bool,
    pub force: BTreeSet<String>,
    /// Leave the stages' `register` undone (a sweep registers only its
    /// best run's models).
    pub skip_register: bool,
}

/// A pipeline whose plugins, params and inputs have all been checked.
pub struct Prepared {
    pub pipeline: Pipeline,
    plugins: BTreeMap<String, PluginRecord>,
    inputs: Arc<inputs::Inputs>,
}

pub struct PipelineRun {
    pub run_id: String,
    pub results: Vec<StageResult>,
    /// The model versions the run's `register` stages made.
    pub registered: Vec<Registered>,
}

/// A model version a stage's `register` made.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Registered {
    pub stage: String,
    pub model: String,
    pub version: i64,
    pub alias: Option<String>,
}

/// Register the models of `run_id`'s stages that say `register`; the run
/// has finished with every gate passed.
pub async fn register_models(app: &App, pipeline: &Pipeline, run_id: &str) -> Result<Vec<Registered>> {
    let mut out = Vec::new();
    for stage in &pipeline.stages {
        let Some(r) = &stage.register else { continue };
        let v = crate::serving::register(app, run_id, &stage.name, &r.model, r.alias.as_deref())
            .await
            .with_context(|| format!("run {run_id} finished, but registering stage `{}`'s model as `{}` failed", stage.name, r.model))?;
        out.push(Registered { stage: stage.name.clone(), model: r.model.clone(), version: v.version, alias: r.alias.clone() });
    }
    Ok(out)
}

impl PipelineRun {
    pub fn succeeded(&self) -> bool {
        self.results.iter().all(|r| r.status.ok())
    }
}

/// Check everything that can be checked before running: plugins exist,
/// each stage gives its plugin kind what it needs, params fit the
/// plugin's schema, inputs load.
pub async fn prepare(app: &App, mut pipeline: Pipeline) -> Result<Prepared> {
    plugins::ensure_bundled(app).await?;
    // A confined pipeline's paths are checked before anything reads them
    // (the dataset lookup below reads the pointer file beside a path).
    if pipeline.confine.is_some() {
        for input in pipeline.inputs.values().filter(|i| i.dataset.is_none()) {
            inputs::open(&pipeline, input, app.limits.input_size)?;
        }
    }
    resolve_datasets(app, &mut pipeline).await?;
    let (resolved, wanted) = resolve_stages(app, &pipeline).await?;
    let limit = app.limits.input_size;
    let (pipeline, inputs) = tokio::task::spawn_blocking(move || inputs::load(&pipeline, &wanted, limit).map(|i| (pipeline, i))).await??;
    Ok(Prepared { pipeline, plugins: resolved, inputs: Arc::new(inputs) })
}

/// Resolve every stage's plugin and check the stage against it: the
/// slots its kind needs, and its params against the plugin's schema.
/// Returns the plugins by stage and the data the stages read.
async fn resolve_stages(app: &App, pipeline: &Pipeline) -> Result<(BTreeMap<String, PluginRecord>, BTreeSet<spec::DataRef>)> {
    let mut resolved: BTreeMap<String, PluginRecord> = BTreeMap::new();
    for stage in &pipeline.stages {
        let Action::Plugin { uses, uses_line, .. } = &stage.action else { continue };
        let record = plugins::resolve(app, uses).await.map_err(|e| pipeline.error(*uses_line, format!("stage `{}`: {e}", stage.name)))?;
        resolved.insert(stage.name.clone(), record);
    }
    let mut wanted = BTreeSet::new();
    for stage in &pipeline.stages {
        let Action::Plugin { uses, uses_line, params, slots } = &stage.action else { continue };
        let record = &resolved[&stage.name];
        let kind: PluginKind = record.kind.parse().map_err(|e: String| anyhow::anyhow!(e))?;
        let need = |what: &str| pipeline.error(stage.line, format!("stage `{}`: a {kind} plugin ({uses}) needs `{what}`", stage.name));
        let forbid = |what: &str| pipeline.error(stage.line, format!("stage `{}`: a {kind} plugin ({uses}) takes no `{what}`", stage.name));
        match kind {
            PluginKind::Trainer | PluginKind::Evaluator => {
                let (data, line) = slots.data.as_ref().ok_or_else(|| need("data"))?;
                if pipeline.inputs[&data.input].target.is_none() {
                    return Err(pipeline
                        .error(*line, format!("stage `{}`: input `{}` has no `target`, which a {kind} needs", stage.name, data.input))
                        .into());
                }
                if slots.reference.is_some() {
                    return Err(forbid("reference").into());
                }
                if slots.current.is_some() {
                    return Err(forbid("current").into());
                }
                if kind == PluginKind::Trainer && slots.model.is_some() {
                    return Err(forbid("model").into());
                }
                if kind != PluginKind::Trainer
                    && let Some(r) = &stage.register
                {
                    return Err(pipeline
                        .error(r.line, format!("stage `{}`: a {kind} plugin ({uses}) makes no model to `register`", stage.name))
                        .into());
                }
                if kind == PluginKind::Evaluator {
                    let (model, line) = slots.model.as_ref().ok_or_else(|| need("model"))?;
                    let upstream = resolved.get(model).map(|r| r.kind.as_str());
                    let is_trainer = match upstream {
                        Some(k) => k == "trainer",
                        None => false,
                    };
                    if !is_trainer {
                        return Err(pipeline
                            .error(*line, format!("stage `{}`: model `{model}` is not a trainer stage, so it produces no model", stage.name))
                            .into());
                    }
                }
            }
            PluginKind::DriftDetector => {
                slots.reference.as_ref().ok_or_else(|| need("reference"))?;
                slots.current.as_ref().ok_or_else(|| need("current"))?;
                if slots.data.is_some() {
                    return Err(forbid("data").into());
                }
                if slots.model.is_some() {
                    return Err(forbid("model").into());
                }
            }
            PluginKind::Deployer => {
                return Err(pipeline.error(*uses_line, format!("stage `{}`: deployer stages are not supported in pipelines yet", stage.name)).into());
            }
        }
        plugins::validate_params(record, params).map_err(|msg| {
            pipeline.error(stage.line, format!("stage `{}`: params for {}@{} are invalid: {msg}", stage.name, record.name, record.version))
        })?;
        for r in [&slots.data, &slots.reference, &slots.current].into_iter().flatten() {
            wanted.insert(r.0.clone());
        }
    }
    Ok((resolved, wanted))
}

/// Runs this process is executing (a pipeline run, a sweep's parent), so
/// an interrupted `kiln run` can mark them KILLED rather than leave them
/// RUNNING forever.
static LIVE_RUNS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn live(id: &str, running: bool) {
    let mut runs = LIVE_RUNS.lock().unwrap_or_else(|e| e.into_inner());
    runs.retain(|r| r != id);
    if running {
        runs.push(id.to_string());
    }
}

/// Mark every run this process was executing as KILLED with `reason`
/// (after an interruption dropped their work), as MLflow does.
pub async fn abandon_live_runs(app: &App, reason: &str) {
    let runs = std::mem::take(&mut *LIVE_RUNS.lock().unwrap_or_else(|e| e.into_inner()));
    for id in runs {
        if let Err(e) = app.store.finish_run(&id, RunStatus::Killed, Some(reason)).await {
            tracing::error!("marking run {id} killed: {e}");
        }
    }
}

/// Run a prepared pipeline as a tracked run (experiment = pipeline name):
/// a new run, or `existing` (a queued run a worker picked up; stages it
/// already recorded are not run again).
pub async fn execute(
    app: &App,
    prepared: Prepared,
    options: RunOptions,
    existing: Option<String>,
    mut on_event: impl FnMut(Event<'_>),
) -> Result<PipelineRun> {
    let Prepared { pipeline, plugins, inputs } = prepared;
    let run_id = match existing {
        Some(id) => {
            app.store.set_run_status(&id, RunStatus::Running).await?;
            id
        }
        None => app.store.create_run(new_run(&pipeline)).await?,
    };
    live(&run_id, true);
    app.store.set_tags(&run_id, &[("kiln.pipeline".into(), pipeline.name.clone()), ("kiln.source".into(), pipeline.file.clone())]).await?;
    app.store.log_params(&run_id, &run_params(&pipeline)).await?;
    for input in pipeline.inputs.values() {
        if let Some((name, version)) = &input.version {
            app.store.record_dataset_usage(name, *version, &run_id, &input.name).await?;
        }
    }
    for (r, data) in inputs.iter() {
        let version = pipeline.inputs.get(&r.input).and_then(|i| i.version.as_ref());
        app.store
            .add_lineage(&LineageEdge {
                src_kind: if version.is_some() { "dataset".into() } else { "data".into() },
                src_id: match version {
                    Some((name, v)) => format!("{name}@{v}"),
                    None => format!("{}#{}", data.path, &data.hash[..16]),
                },
                dst_kind: "run".into(),
                dst_id: run_id.clone(),
                run_id: Some(format!("{run_id}:{r}")),
            })
            .await?;
    }
    let executor =
        Arc::new(PluginExecutor { app: app.clone(), run_id: run_id.clone(), plugins, inputs, no_cache: options.no_cache, force: options.force });
    let jobs = if options.jobs == 0 { 4 } else { options.jobs };
    on_event(Event::Run(&run_id));
    let results = engine::run(&pipeline, executor, jobs, &mut on_event).await;
    // Plugin stages record themselves as they finish; gates and skipped
    // stages are recorded here so the run shows every stage's state.
    for r in &results {
        if matches!(r.status, StageStatus::GatePassed | StageStatus::GateFailed(_) | StageStatus::Skipped(_)) {
            let error = match &r.status {
                StageStatus::GateFailed(e) | StageStatus::Skipped(e) => Some(e.clone()),
                _ => None,
            };
            let now = crate::store::now_ms();
            app.store
                .upsert_stage(
                    &run_id,
                    &StageRecord {
                        stage: r.name.clone(),
                        status: r.status.state(),
                        plugin_digest: None,
                        cache_key: None,
                        started_at: Some(now),
                        ended_at: Some(now),
                        peak_memory: None,
                        attempts: 0,
                        error,
                        outputs: "{}".into(),
                    },
                )
                .await?;
        }
    }
    let mut run = PipelineRun { run_id, results, registered: Vec::new() };
    let error = run.results.iter().find(|r| !r.status.ok()).map(|r| format!("stage `{}` {}", r.name, r.status.word()));
    let status = if run.succeeded() { RunStatus::Finished } else { RunStatus::Failed };
    app.store.finish_run(&run.run_id, status, error.as_deref()).await?;
    live(&run.run_id, false);
    if run.succeeded() && !options.skip_register {
        run.registered = register_models(app, &pipeline, &run.run_id).await?;
    }
    Ok(run)
}

fn new_run(pipeline: &Pipeline) -> NewRun {
    NewRun { experiment: pipeline.name.clone(), name: pipeline.name.clone(), parent: None, source: format!("pipeline:{}", pipeline.file) }
}

/// One combination of a sweep and how it did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SweepChild {
    pub run_id: String,
    pub params: BTreeMap<String, serde_json::Value>,
    pub metric: Option<f64>,
    pub succeeded: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SweepOutcome {
    pub parent_id: String,
    pub metric: String,
    pub children: Vec<SweepChild>,
    /// Index into `children`.
    pub best: Option<usize>,
    /// The versions the best run's `register` stages made.
    pub registered: Vec<Registered>,
}

/// Run every combination of the pipeline's `[sweep]` as a child run of one
/// parent run. Every combination is checked (plugins, params, inputs)
/// before the first one runs.
pub async fn run_sweep(
    app: &App,
    pipeline: Pipeline,
    options: RunOptions,
    max_runs: Option<usize>,
    mut on_child: impl FnMut(&SweepChild),
) -> Result<SweepOutcome> {
    let sweep = pipeline.sweep.clone().ok_or_else(|| anyhow::anyhow!("the pipeline has no [sweep]"))?;
    let combos = sweep.combinations(max_runs).map_err(crate::invalid::invalid)?;
    let mut prepared = Vec::with_capacity(combos.len());
    for combo in &combos {
        let mut p = pipeline.clone();
        for (key, value) in combo {
            let (stage, param) = key.split_once('.').unwrap();
            p.set_param(stage, param, value.clone()).map_err(anyhow::Error::msg)?;
        }
        prepared.push(prepare(app, p).await?);
    }
    let mut parent = new_run(&pipeline);
    parent.name = format!("{} sweep", pipeline.name);
    let parent_id = app.store.create_run(parent).await?;
    live(&parent_id, true);
    app.store
        .log_params(
            &parent_id,
            &[
                ("sweep.method".into(), if sweep.random { "random" } else { "grid" }.into()),
                ("sweep.metric".into(), sweep.metric.clone()),
                ("sweep.goal".into(), if sweep.maximize { "maximize" } else { "minimize" }.into()),
                ("sweep.runs".into(), combos.len().to_string()),
            ],
        )
        .await?;
    app.store.set_tags(&parent_id, &[("kiln.pipeline".into(), pipeline.name.clone()), ("kiln.sweep".into(), "parent".into())]).await?;
    let (metric_stage, metric_name) = sweep.metric.split_once('.').unwrap();
    let mut children = Vec::new();
    let mut best: Option<usize> = None;
    for (i, (combo, prep)) in combos.into_iter().zip(prepared).enumerate() {
        let mut child = new_run(&prep.pipeline);
        child.name = format!("{} #{}", prep.pipeline.name, i + 1);
        child.parent = Some(parent_id.clone());
        let child_id = app.store.create_run(child).await?;
        let run = execute(app, prep, RunOptions { skip_register: true, ..options.clone() }, Some(child_id.clone()), |_| {}).await?;
        let metric = run.results.iter().find(|r| r.name == metric_stage).and_then(|r| r.metrics.get(metric_name).copied());
        let c = SweepChild { run_id: child_id, params: combo, metric, succeeded: run.succeeded() };
        on_child(&c);
        if let Some(m) = c.metric
            && c.succeeded
            && best.is_none_or(|b: usize| sweep.better(m, children.get(b).and_then(|x: &SweepChild| x.metric).unwrap_or(f64::NAN)))
        {
            best = Some(children.len());
        }
        children.push(c);
    }
    if let Some(b) = best {
        let c = &children[b];
        let now = crate::store::now_ms();
        app.store
            .log_metrics(
                &parent_id,
                &[crate::store::MetricPoint { key: format!("best.{}", sweep.metric), value: c.metric.unwrap(), step: 0, timestamp: now }],
            )
            .await?;
        app.store.set_tags(&parent_id, &[("kiln.best_run".into(), c.run_id.clone())]).await?;
        let best_params: Vec<(String, String)> = c
            .params
            .iter()
            .map(|(k, v)| {
                (
                    format!("best.{k}"),
                    match v {
                        serde_json::Value::String(s) => s.clone(),
                        o => o.to_string(),
                    },
                )
            })
            .collect();
        app.store.log_params(&parent_id, &best_params).await?;
    }
    let status = if best.is_some() { RunStatus::Finished } else { RunStatus::Failed };
    app.store.finish_run(&parent_id, status, if best.is_some() { None } else { Some("no combination succeeded") }).await?;
    live(&parent_id, false);
    let registered = match best {
        Some(b) if !options.skip_register => register_models(app, &pipeline, &children[b].run_id).await?,
        _ => Vec::new(),
    };
    Ok(SweepOutcome { parent_id, metric: sweep.metric, children, best, registered })
}

/// What a queued pipeline run asks for (the job's payload).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RunRequest {
    pub pipeline: String,
    /// `STAGE.PARAM=VALUE` overrides.
    #[serde(default)]
    pub set: Vec<String>,
    #[serde(default)]
    pub no_cache: bool,
    #[serde(default)]
    pub force: Vec<String>,
}

pub const PIPELINE_JOB: &str = "pipeline-run";

/// Check a pipeline and register it under its name (for REST runs and
/// schedules). Relative data paths resolve against `base_dir`; a
/// registered pipeline reads only inside the workspace (see
/// [`Pipeline::confine`]), since the server runs it for any client.
pub async fn register(app: &App, source: &str, label: &str, base_dir: &std::path::Path) -> Result<Pipeline> {
    let root = workspace_root(app)?;
    let base = std::path::absolute(base_dir)?;
    let base = base.canonicalize().unwrap_or(base);
    let mut pipeline = Pipeline::parse(source, label, &base)?;
    pipeline.confine_to(&root);
    let prepared = prepare(app, pipeline).await?;
    // Stored relative to the workspace, so the workspace can move.
    let stored = base.strip_prefix(&root).map(|p| p.display().to_string()).unwrap_or_else(|_| base.display().to_string());
    app.store.upsert_pipeline(&prepared.pipeline.name, source, &stored).await?;
    Ok(prepared.pipeline)
}

/// The workspace root as the kernel names it (symlinks resolved), the
/// folder confined pipelines may not leave.
fn workspace_root(app: &App) -> Result<std::path::PathBuf> {
    let root = app.workspace.root();
    root.canonicalize().map_err(|e| anyhow::anyhow!("resolving the workspace folder {}: {e}", root.display()))
}

/// A registered pipeline with `request`'s overrides applied.
pub async fn load_registered(app: &App, request: &RunRequest) -> Result<Pipeline> {
    let rec =
        app.store.pipeline(&request.pipeline).await?.ok_or_else(|| crate::store::StoreError::NotFound(format!("pipeline `{}`", request.pipeline)))?;
    let root = workspace_root(app)?;
    let mut pipeline = Pipeline::parse(&rec.spec, &format!("{}.toml", rec.name), &root.join(&rec.base_dir))?;
    pipeline.confine_to(&root);
    for o in &request.set {
        pipeline.apply_override(o).map_err(crate::invalid::invalid)?;
    }
    for f in &request.force {
        if pipeline.stage(f).is_none() {
            return Err(crate::invalid::invalid(format!("force: the pipeline has no stage `{f}`")));
        }
    }
    Ok(pipeline)
}

/// Queue a run of a registered pipeline; returns the run id. The run exists
/// (status SCHEDULED) from now on, so it can be watched before a worker
/// picks it up.
pub async fn submit(app: &App, request: &RunRequest) -> Result<String> {
    let pipeline = check_request(app, request).await?;
    queue(app, &pipeline, request).await
}

/// The registered pipeline a request names, with its overrides applied
/// and checked: overridden params must fit the plugins' schemas now, not
/// fail later in a worker.
pub async fn check_request(app: &App, request: &RunRequest) -> Result<Pipeline> {
    let pipeline = load_registered(app, request).await?;
    plugins::ensure_bundled(app).await?;
    resolve_stages(app, &pipeline).await?;
    Ok(pipeline)
}

/// Queue a run of a checked pipeline (see [`check_request`]): the run row
/// (SCHEDULED) and its job. Only database writes: the scheduler calls it
/// right after claiming a tick, so the window in which a dying process
/// leaves a claimed tick without a run stays as small as it can.
pub async fn queue(app: &App, pipeline: &Pipeline, request: &RunRequest) -> Result<String> {
    let run_id = app.store.create_run(new_run(pipeline)).await?;
    app.store.set_run_status(&run_id, RunStatus::Scheduled).await?;
    app.store.enqueue_job(PIPELINE_JOB, &serde_json::to_string(request)?, Some(&run_id)).await?;
    Ok(run_id)
}

/// What a worker does with a pipeline-run job.
pub async fn run_job(app: &App, job: &crate::store::Job) -> Result<PipelineRun> {
    let request: RunRequest = serde_json::from_str(&job.payload)?;
    let pipeline = load_registered(app, &request).await?;
    let prepared = prepare(app, pipeline).await?;
    let options = RunOptions { jobs: 4, no_cache: request.no_cache, force: request.force.iter().cloned().collect(), ..Default::default() };
    execute(app, prepared, options, job.run_id.clone(), |_| {}).await
}

/// Params of the run: every stage param as `stage.param`, and the inputs'
/// paths and splits.
fn run_params(p: &Pipeline) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, input) in &p.inputs {
        match (&input.dataset, &input.version) {
            (Some(_), Some((ds, v))) => out.push((format!("{name}.dataset"), format!("{ds}@{v}"))),
            (Some(reference), None) => out.push((format!("{name}.dataset"), reference.clone())),
            (None, _) => out.push((format!("{name}.path"), input.given.clone())),
        }
        if let Some(s) = input.split {
            out.push((format!("{name}.split.test_size"), s.test_size.to_string()));
            out.push((format!("{name}.split.seed"), s.seed.to_string()));
            out.push((format!("{name}.split.stratify"), s.stratify.to_string()));
        }
    }
    for stage in &p.stages {
        match &stage.action {
            Action::Plugin { uses, params, .. } => {
                out.push((format!("{}.uses", stage.name), uses.clone()));
                if let Some(obj) = params.as_object() {
                    for (k, v) in obj {
                        let text = match v {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        out.push((format!("{}.{k}", stage.name), text));
                    }
                }
            }
            Action::Gate { text, .. } => out.push((format!("{}.check", stage.name), text.clone())),
        }
    }
    out
}

/// Point `dataset` inputs at their version's blob, and recognise tracked
/// `path` inputs (a pointer file beside them whose hash the file still
/// has), so the run records which dataset versions it read.
async fn resolve_datasets(app: &App, pipeline: &mut Pipeline) -> Result<()> {
    let names: Vec<String> = pipeline.inputs.keys().cloned().collect();
    for name in names {
        let input = &pipeline.inputs[&name];
        let line = input.line;
        if let Some(reference) = input.dataset.clone() {
            let (ds, version) = crate::data::parse_ref(&reference).map_err(|e| pipeline.error(line, format!("input `{name}`: {e}")))?;
            let v = app.store.dataset_version(&ds, version).await.map_err(|e| pipeline.error(line, format!("input `{name}`: {e}")))?;
            if v.kind != "file" || v.format != "csv" {
                let what = if v.kind == "dir" {
                    "a folder".to_string()
                } else if v.format.is_empty() {
                    "not a CSV file".into()
                } else {
                    format!("a {} file", v.format)
                };
                return Err(pipeline.error(line, format!("input `{name}`: {}@{} is {what}; pipelines read CSV files", v.name, v.version)).into());
            }
            let path = app
                .blobs
                .file(&v.hash)
                .map_err(|e| pipeline.error(line, format!("input `{name}`: {}@{}: {e} (fetch it with `kiln data pull`)", v.name, v.version)))?;
            let input = pipeline.inputs.get_mut(&name).unwrap();
            input.path = path;
            input.version = Some((v.name, v.version));
        } else {
            let (app, path) = (app.clone(), input.path.clone());
            if let Some(version) = tokio::task::spawn_blocking(move || crate::data::tracked_version(&app.local(), &path)).await?? {
                pipeline.inputs.get_mut(&name).unwrap().version = Some(version);
            }
        }
    }
    Ok(())
}
