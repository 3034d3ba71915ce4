//! Pipelines: a TOML file of inputs and stages, checked before anything
//! runs, executed as a DAG with content-keyed caching and gates, recorded
//! as one tracked run.

pub mod engine;
mod executor;
pub mod gate;
mod inputs;
pub mod spec;

use crate::app::App;
use crate::plugins;
use crate::store::{LineageEdge, NewRun, PluginRecord, RunStatus};
use anyhow::Result;
use engine::{Event, StageResult};
use executor::PluginExecutor;
use kiln_sdk::PluginKind;
use spec::{Action, Pipeline};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub use executor::Outputs;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub jobs: usize,
    pub no_cache: bool,
    pub force: BTreeSet<String>,
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
}

impl PipelineRun {
    pub fn succeeded(&self) -> bool {
        self.results.iter().all(|r| r.status.ok())
    }
}

/// Check everything that can be checked before running: plugins exist,
/// each stage gives its plugin kind what it needs, params fit the
/// plugin's schema, inputs load.
pub async fn prepare(app: &App, pipeline: Pipeline) -> Result<Prepared> {
    plugins::ensure_bundled(app).await?;
    let mut resolved: BTreeMap<String, PluginRecord> = BTreeMap::new();
    for stage in &pipeline.stages {
        let Action::Plugin { uses, uses_line, .. } = &stage.action else { continue };
        let record = plugins::resolve(app, uses)
            .await
            .map_err(|e| pipeline.error(*uses_line, format!("stage `{}`: {e}", stage.name)))?;
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
    let inputs = Arc::new(inputs::load(&pipeline, &wanted)?);
    Ok(Prepared { pipeline, plugins: resolved, inputs })
}

/// Run a prepared pipeline as a new tracked run (experiment = pipeline name).
pub async fn execute(app: &App, prepared: Prepared, options: RunOptions, on_event: impl FnMut(Event<'_>)) -> Result<PipelineRun> {
    let Prepared { pipeline, plugins, inputs } = prepared;
    let run_id = app
        .store
        .create_run(NewRun {
            experiment: pipeline.name.clone(),
            name: pipeline.name.clone(),
            parent: None,
            source: format!("pipeline:{}", pipeline.file),
        })
        .await?;
    app.store
        .set_tags(&run_id, &[("kiln.pipeline".into(), pipeline.name.clone()), ("kiln.source".into(), pipeline.file.clone())])
        .await?;
    app.store.log_params(&run_id, &run_params(&pipeline)).await?;
    for (r, data) in inputs.iter() {
        app.store
            .add_lineage(&LineageEdge {
                src_kind: "data".into(),
                src_id: format!("{}#{}", data.path, &data.hash[..16]),
                dst_kind: "run".into(),
                dst_id: run_id.clone(),
                run_id: Some(format!("{run_id}:{r}")),
            })
            .await?;
    }
    let executor = Arc::new(PluginExecutor {
        app: app.clone(),
        run_id: run_id.clone(),
        plugins,
        inputs,
        no_cache: options.no_cache,
        force: options.force,
    });
    let jobs = if options.jobs == 0 { 4 } else { options.jobs };
    let results = engine::run(&pipeline, executor, jobs, on_event).await;
    let run = PipelineRun { run_id, results };
    let error = run.results.iter().find(|r| !r.status.ok()).map(|r| format!("stage `{}` {}", r.name, r.status.word()));
    let status = if run.succeeded() { RunStatus::Finished } else { RunStatus::Failed };
    app.store.finish_run(&run.run_id, status, error.as_deref()).await?;
    Ok(run)
}

/// Params of the run: every stage param as `stage.param`, and the inputs'
/// paths and splits.
fn run_params(p: &Pipeline) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, input) in &p.inputs {
        out.push((format!("{name}.path"), input.path.display().to_string()));
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

