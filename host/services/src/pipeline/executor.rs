//! Runs plugin stages for real: resolves inputs and upstream models, checks
//! the stage cache, calls the sandbox with retries, and records everything
//! (stage row, metrics, logs, artifacts, lineage, cache entry).

use super::engine::{StageExecutor, StageResult, StageStatus};
use super::inputs::{Dataset, Inputs};
use super::spec::{Action, Slots, Stage};
use crate::app::App;
use crate::plugins::{self, LimitOverrides};
use crate::runtime::{CallReport, EventSender, HostEvent, RuntimeError};
use crate::store::{LineageEdge, LogRecord, MetricPoint, PluginRecord, StageRecord, StageState, Store, now_ms};
use anyhow::{Context, Result, anyhow};
use kiln_types::PluginKind;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

/// What a plugin stage leaves for downstream stages and the cache.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outputs {
    pub metrics: BTreeMap<String, f64>,
    /// Blob id of a trained model and the digest of the plugin that loads it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_blob: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_plugin: Option<String>,
    /// Blob id of a JSON report (evaluation details, drift per feature).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_blob: Option<String>,
    /// A trained model's input columns and training data
    /// (`serving::signature::Signature`), for registering and serving it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<serde_json::Value>,
}

pub struct PluginExecutor {
    pub app: App,
    pub run_id: String,
    pub plugins: BTreeMap<String, PluginRecord>,
    pub inputs: Arc<Inputs>,
    pub no_cache: bool,
    pub force: BTreeSet<String>,
}

impl StageExecutor for PluginExecutor {
    async fn execute(&self, stage: Stage, upstream: BTreeMap<String, StageResult>) -> StageResult {
        let started_at = now_ms();
        let clock = Instant::now();
        let record = &self.plugins[&stage.name];
        let mut result = StageResult::new(&stage.name, StageStatus::Ran);
        result.plugin = Some(format!("{}@{}", record.name, record.version));
        // A worker resuming a run whose previous worker died: a stage that
        // was already recorded is not run (or recorded) again.
        if let Ok(Some(done)) = self.app.store.get_stage(&self.run_id, &stage.name).await
            && matches!(done.status, StageState::Ran | StageState::Cached)
            && let Ok(outputs) = serde_json::from_str::<Outputs>(&done.outputs)
        {
            result.status = if done.status == StageState::Ran { StageStatus::Ran } else { StageStatus::Cached };
            result.metrics = outputs.metrics.clone();
            result.outputs = serde_json::to_value(&outputs).unwrap_or_default();
            result.attempts = done.attempts as u32;
            return result;
        }
        let mut cache_key = None;
        let mut logs = Vec::new();
        let outcome: Result<(Outputs, bool)> = async {
            let key = self.cache_key(&stage, record, &upstream)?;
            cache_key = Some(key.clone());
            if !self.no_cache
                && !self.force.contains(&stage.name)
                && let Some(hit) = self.app.store.cache_get(&key).await?
                && let Ok(outputs) = serde_json::from_str::<Outputs>(&hit)
                && self.outputs_present(&outputs)
            {
                return Ok((outputs, true));
            }
            let attempts = stage.retries + 1;
            let mut last = None;
            for attempt in 1..=attempts {
                result.attempts = attempt;
                match self.call(&stage, record, &upstream, &mut result, &mut logs).await {
                    Ok(outputs) => return Ok((outputs, false)),
                    Err(e) => {
                        let retryable =
                            !matches!(e.downcast_ref::<RuntimeError>(), Some(RuntimeError::Plugin { .. } | RuntimeError::WrongKind { .. }));
                        logs.push(LogRecord {
                            stage: stage.name.clone(),
                            level: "error".into(),
                            message: format!("attempt {attempt}/{attempts} failed: {e:#}"),
                            at: now_ms(),
                        });
                        last = Some(e);
                        if !retryable {
                            break;
                        }
                    }
                }
            }
            Err(last.unwrap())
        }
        .await;
        let outputs = match outcome {
            Ok((outputs, cached)) => {
                result.status = if cached { StageStatus::Cached } else { StageStatus::Ran };
                outputs
            }
            Err(e) => {
                result.status = StageStatus::Failed(format!("plugin {}@{} {e:#}", record.name, record.version));
                Outputs::default()
            }
        };
        result.metrics = outputs.metrics.clone();
        result.outputs = serde_json::to_value(&outputs).unwrap_or_default();
        result.elapsed = clock.elapsed();
        if let Err(e) = self.record(&stage, record, &result, &outputs, cache_key, started_at, logs).await {
            // Not being able to record a stage is a failure of the stage:
            // the run must not claim what the store does not hold.
            result.status = StageStatus::Failed(format!("recording the stage failed: {e:#}"));
        }
        result
    }
}

impl PluginExecutor {
    fn slots(stage: &Stage) -> (&serde_json::Value, &Slots) {
        match &stage.action {
            Action::Plugin { params, slots, .. } => (params, slots),
            Action::Gate { .. } => unreachable!("gates are evaluated by the engine"),
        }
    }

    fn data(&self, slot: &Option<(super::spec::DataRef, usize)>) -> Result<Arc<Dataset>> {
        let (r, _) = slot.as_ref().ok_or_else(|| anyhow!("missing data slot"))?;
        self.inputs.get(r).cloned().ok_or_else(|| anyhow!("input `{r}` was not loaded"))
    }

    /// hash(WIT version, plugin digest, canonical params, input hashes,
    /// upstream model): equal keys mean equal outputs.
    fn cache_key(&self, stage: &Stage, record: &PluginRecord, upstream: &BTreeMap<String, StageResult>) -> Result<String> {
        let (params, slots) = Self::slots(stage);
        let mut h = blake3::Hasher::new();
        h.update(b"kiln-stage/1\0");
        h.update(record.wit_version.as_bytes());
        h.update(b"\0");
        h.update(record.digest.as_bytes());
        h.update(b"\0");
        // serde_json's map is ordered by key, so this text is canonical.
        h.update(serde_json::to_string(params)?.as_bytes());
        for (slot, r) in [("data", &slots.data), ("reference", &slots.reference), ("current", &slots.current)] {
            if r.is_some() {
                h.update(slot.as_bytes());
                h.update(self.data(r)?.hash.as_bytes());
            }
        }
        if let Some((model, _)) = &slots.model {
            let blob = upstream[model].outputs.get("model_blob").and_then(|v| v.as_str()).unwrap_or("");
            h.update(b"model");
            h.update(blob.as_bytes());
        }
        Ok(h.finalize().to_hex().to_string())
    }

    fn outputs_present(&self, o: &Outputs) -> bool {
        [&o.model_blob, &o.report_blob].into_iter().flatten().all(|b| self.app.blobs.contains(b))
    }

    async fn call(
        &self,
        stage: &Stage,
        record: &PluginRecord,
        upstream: &BTreeMap<String, StageResult>,
        result: &mut StageResult,
        logs: &mut Vec<LogRecord>,
    ) -> Result<Outputs> {
        let (params, slots) = Self::slots(stage);
        let params_text = serde_json::to_string(params)?;
        let limits = plugins::limits_for(record, LimitOverrides { timeout: stage.timeout, memory_bytes: stage.memory });
        let plugin = plugins::load(&self.app, record)?;
        let app = &self.app;
        let absorb = |logs: &mut Vec<LogRecord>, report: &CallReport, result: &mut StageResult| {
            result.peak_memory = Some(result.peak_memory.unwrap_or(0).max(report.peak_memory));
            let base = now_ms();
            logs.extend(report.logs.iter().map(|l| LogRecord {
                stage: stage.name.clone(),
                level: l.level.clone(),
                message: l.message.clone(),
                at: base,
            }));
            if report.dropped_events > 0 {
                logs.push(LogRecord {
                    stage: stage.name.clone(),
                    level: "warn".into(),
                    message: format!(
                        "{} log lines and metrics of this call were dropped: a call sends at most {} events and {} bytes of them",
                        report.dropped_events,
                        crate::runtime::MAX_EVENTS,
                        crate::runtime::MAX_EVENT_BYTES
                    ),
                    at: base,
                });
            }
        };
        let mut outputs = Outputs::default();
        match plugin.info.kind {
            PluginKind::Trainer => {
                let data = self.data(&slots.data)?;
                let target = data.target.clone().ok_or_else(|| anyhow!("the trainer's data has no target"))?;
                let (events, relayed) = self.relay(stage);
                let trained = app.runtime()?.train(&plugin, data.features.clone(), target, &params_text, &limits, Some(events)).await;
                // The live metrics are in the run's history by now; the
                // latest value per name becomes the stage's metric.
                let live = relayed.await.unwrap_or_default();
                logs.extend(live.lost(&stage.name));
                let (bytes, report) = trained?;
                absorb(logs, &report, result);
                let blob = app.blobs.put(&bytes)?;
                outputs.metrics.extend(live.latest);
                outputs.model_blob = Some(blob);
                outputs.model_plugin = Some(record.digest.clone());
                let signature = crate::serving::signature::Signature::of(&data.features, data.target.as_ref(), Some(data.origin.clone()));
                outputs.signature = Some(serde_json::to_value(signature)?);
            }
            PluginKind::Evaluator => {
                let data = self.data(&slots.data)?;
                let target = data.target.clone().ok_or_else(|| anyhow!("the evaluator's data has no target"))?;
                let (model_stage, _) = slots.model.as_ref().ok_or_else(|| anyhow!("an evaluator needs `model`"))?;
                let up: Outputs = serde_json::from_value(upstream[model_stage].outputs.clone())?;
                let (blob, trainer_digest) = up.model_blob.zip(up.model_plugin).ok_or_else(|| anyhow!("stage `{model_stage}` produced no model"))?;
                let trainer = app
                    .store
                    .plugin_by_digest(&trainer_digest)
                    .await?
                    .ok_or_else(|| anyhow!("the plugin that trained `{model_stage}` ({trainer_digest}) is gone"))?;
                let trainer_plugin = plugins::load(app, &trainer)?;
                let model = app.blobs.get(&blob)?;
                let trainer_limits = plugins::limits_for(&trainer, LimitOverrides { timeout: stage.timeout, memory_bytes: stage.memory });
                let (events, relayed) = self.relay(stage);
                let predicted = app.runtime()?.predict(&trainer_plugin, &model, data.features.clone(), &trainer_limits, Some(events)).await;
                logs.extend(relayed.await.unwrap_or_default().lost(&stage.name));
                let (predictions, report) = predicted.with_context(|| format!("predicting with the model of `{model_stage}`"))?;
                absorb(logs, &report, result);
                let (events, relayed) = self.relay(stage);
                let evaluated = app.runtime()?.evaluate(&plugin, target, predictions, &params_text, &limits, Some(events)).await;
                logs.extend(relayed.await.unwrap_or_default().lost(&stage.name));
                let (evaluation, report) = evaluated?;
                absorb(logs, &report, result);
                outputs.metrics.extend(evaluation.metrics);
                outputs.report_blob = Some(app.blobs.put(serde_json::to_string_pretty(&evaluation.report)?.as_bytes())?);
            }
            PluginKind::DriftDetector => {
                let reference = self.data(&slots.reference)?;
                let current = self.data(&slots.current)?;
                let (events, relayed) = self.relay(stage);
                let detected =
                    app.runtime()?.detect(&plugin, reference.features.clone(), current.features.clone(), &params_text, &limits, Some(events)).await;
                logs.extend(relayed.await.unwrap_or_default().lost(&stage.name));
                let (drift, report) = detected?;
                absorb(logs, &report, result);
                let drifted = drift.features.iter().filter(|f| f.drifted).count();
                outputs.metrics.insert("drift_share".into(), drift.drift_share);
                outputs.metrics.insert("drifted_features".into(), drifted as f64);
                outputs.metrics.insert("features".into(), drift.features.len() as f64);
                outputs.metrics.insert("dataset_drift".into(), if drift.dataset_drift { 1.0 } else { 0.0 });
                let json = serde_json::json!({
                    "drift_share": drift.drift_share,
                    "dataset_drift": drift.dataset_drift,
                    "features": drift.features.iter().map(|f| serde_json::json!({
                        "feature": f.feature, "statistic": f.statistic, "p_value": f.p_value, "drifted": f.drifted,
                    })).collect::<Vec<_>>(),
                });
                outputs.report_blob = Some(app.blobs.put(serde_json::to_string_pretty(&json)?.as_bytes())?);
            }
            PluginKind::Deployer => return Err(anyhow!("deployer stages are not supported in pipelines yet")),
        }
        Ok(outputs)
    }

    /// A live sink for one plugin call, and the task that moves its events
    /// into the run as they come: log lines into the run's log, metrics
    /// into its history (as `STAGE.NAME`), progress onto the change feed.
    /// The task ends when the call drops the sink, answering the latest
    /// value of each metric.
    fn relay(&self, stage: &Stage) -> (EventSender, tokio::task::JoinHandle<Relayed>) {
        let (tx, rx) = tokio::sync::mpsc::channel(RELAY_CAPACITY);
        let task = tokio::spawn(relay(self.app.store.clone(), self.run_id.clone(), stage.name.clone(), rx));
        (tx, task)
    }

    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        stage: &Stage,
        record: &PluginRecord,
        result: &StageResult,
        outputs: &Outputs,
        cache_key: Option<String>,
        started_at: i64,
        logs: Vec<LogRecord>,
    ) -> Result<()> {
        let store = &self.app.store;
        let error = match &result.status {
            StageStatus::Failed(e) => Some(e.clone()),
            _ => None,
        };
        let outputs_json = serde_json::to_string(outputs)?;
        store
            .upsert_stage(
                &self.run_id,
                &StageRecord {
                    stage: stage.name.clone(),
                    status: result.status.state(),
                    plugin_digest: Some(record.digest.clone()),
                    cache_key: cache_key.clone(),
                    started_at: Some(started_at),
                    ended_at: Some(now_ms()),
                    peak_memory: result.peak_memory.map(|m| m as i64),
                    attempts: result.attempts as i64,
                    error,
                    outputs: outputs_json.clone(),
                },
            )
            .await?;
        store.append_logs(&self.run_id, &logs).await?;
        if !result.status.ok() {
            return Ok(());
        }
        let now = now_ms();
        let points: Vec<MetricPoint> = outputs
            .metrics
            .iter()
            .filter(|_| !matches!(result.status, StageStatus::Ran) || record.kind != "trainer")
            .map(|(k, v)| MetricPoint { key: format!("{}.{k}", stage.name), value: *v, step: 0, timestamp: now })
            .collect();
        store.log_metrics(&self.run_id, &points).await?;
        if let Some(blob) = &outputs.model_blob {
            let size = self.app.blobs.size(blob).map(|n| n as i64).unwrap_or(0);
            store.add_artifact(&self.run_id, &format!("{}/model.bin", stage.name), blob, size, "application/octet-stream").await?;
            store
                .add_lineage(&LineageEdge {
                    src_kind: "run".into(),
                    src_id: self.run_id.clone(),
                    dst_kind: "model".into(),
                    dst_id: blob.clone(),
                    run_id: Some(self.run_id.clone()),
                })
                .await?;
        }
        if let Some(blob) = &outputs.report_blob {
            let size = self.app.blobs.size(blob).map(|n| n as i64).unwrap_or(0);
            store.add_artifact(&self.run_id, &format!("{}/report.json", stage.name), blob, size, "application/json").await?;
        }
        if result.status == StageStatus::Ran
            && let Some(key) = cache_key
        {
            store.cache_put(&key, &outputs_json, &self.run_id).await?;
        }
        Ok(())
    }
}

/// Events in flight between a running plugin and the store; past this the
/// plugin's events queue inside the sandbox's host (bounded by its caps).
const RELAY_CAPACITY: usize = 1024;
/// Events written to the store per batch.
const RELAY_BATCH: usize = 512;

/// What a relay stored: the latest value of each metric it stored, and
/// how many lines and points it could not store.
#[derive(Debug, Default)]
struct Relayed {
    latest: BTreeMap<String, f64>,
    lost_logs: usize,
    lost_metrics: usize,
}

impl Relayed {
    /// A warning for the stage's log if anything was lost (the run must
    /// not look complete when it is not).
    fn lost(&self, stage: &str) -> Option<LogRecord> {
        (self.lost_logs + self.lost_metrics > 0).then(|| LogRecord {
            stage: stage.to_string(),
            level: "warn".into(),
            message: format!(
                "{} live log lines and {} live metric points of this call could not be stored (see the server log)",
                self.lost_logs, self.lost_metrics
            ),
            at: now_ms(),
        })
    }
}

async fn relay(store: Store, run: String, stage: String, mut rx: tokio::sync::mpsc::Receiver<HostEvent>) -> Relayed {
    let mut relayed = Relayed::default();
    let mut batch = Vec::with_capacity(RELAY_BATCH);
    // One write per batch of whatever is waiting: a plugin that logs fast
    // costs a transaction per batch, not per line.
    while rx.recv_many(&mut batch, RELAY_BATCH).await > 0 {
        let mut logs = Vec::new();
        let mut points = Vec::new();
        let mut latest = Vec::new();
        let mut progress = None;
        let now = now_ms();
        for event in batch.drain(..) {
            match event {
                HostEvent::Log(l) => logs.push(LogRecord { stage: stage.clone(), level: l.level, message: l.message, at: now }),
                HostEvent::Metric(m) => {
                    points.push(MetricPoint { key: format!("{stage}.{}", m.name), value: m.value, step: m.step as i64, timestamp: now });
                    latest.push((m.name, m.value));
                }
                HostEvent::Progress { done, total, message } => progress = Some((done, total, message)),
            }
        }
        if let Err(e) = store.append_logs(&run, &logs).await {
            tracing::warn!(run, stage, "storing {} live log lines failed: {e}", logs.len());
            relayed.lost_logs += logs.len();
        }
        if !points.is_empty() {
            match store.log_metrics(&run, &points).await {
                // Only what was stored may become the stage's metrics.
                Ok(()) => relayed.latest.extend(latest),
                Err(e) => {
                    tracing::warn!(run, stage, "storing {} live metrics failed: {e}", points.len());
                    relayed.lost_metrics += points.len();
                }
            }
        }
        if let Some((done, total, message)) = progress {
            store.publish_progress(&run, &stage, done, total, &message);
        }
    }
    relayed
}
