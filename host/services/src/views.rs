//! What Kiln's records look like to people and programs: the JSON of the
//! CLI's `--json` and of Kiln's REST API, which must agree (the e2e tests
//! compare them), so both build these and nothing else.
//!
//! Store rows are not the wire format and do not serialise: every view is
//! built from rows field by field, so renaming a column or a row field
//! changes nothing a client sees unless a view here is changed on purpose.
//! (MLflow's API has its own shapes, in `kiln-api`'s `mlflow.rs`.)

use crate::store;
use kiln_types::status::{RunStatus, StageState};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct Experiment {
    pub id: String,
    pub name: String,
    pub lifecycle_stage: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub runs: i64,
}

impl From<&store::ExperimentRecord> for Experiment {
    fn from(e: &store::ExperimentRecord) -> Self {
        Experiment {
            id: e.id.clone(),
            name: e.name.clone(),
            lifecycle_stage: e.lifecycle_stage.clone(),
            created_at: e.created_at,
            updated_at: e.updated_at,
            runs: e.runs,
        }
    }
}

/// A run in a list: what it is, where it stands, its params and latest metrics.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub id: String,
    pub experiment: String,
    pub name: String,
    pub status: RunStatus,
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub source: String,
    pub parent_run_id: Option<String>,
    pub params: BTreeMap<String, String>,
    /// Latest value per metric key.
    pub metrics: BTreeMap<String, f64>,
}

impl From<&store::RunSummary> for RunSummary {
    fn from(r: &store::RunSummary) -> Self {
        RunSummary {
            id: r.id.clone(),
            experiment: r.experiment.clone(),
            name: r.name.clone(),
            status: r.status,
            start_time: r.start_time,
            end_time: r.end_time,
            source: r.source.clone(),
            parent_run_id: r.parent_run_id.clone(),
            params: r.params.clone(),
            metrics: r.metrics.clone(),
        }
    }
}

/// One run in full.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    #[serde(flatten)]
    pub summary: RunSummary,
    pub error: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub stages: Vec<Stage>,
    pub artifacts: Vec<Artifact>,
}

impl From<&store::RunDetail> for Run {
    fn from(r: &store::RunDetail) -> Self {
        Run {
            summary: (&r.summary).into(),
            error: r.error.clone(),
            tags: r.tags.clone(),
            stages: r.stages.iter().map(Stage::from).collect(),
            artifacts: r.artifacts.iter().map(Artifact::from).collect(),
        }
    }
}

/// A pipeline stage as recorded in its run.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub stage: String,
    pub status: StageState,
    pub plugin_digest: Option<String>,
    pub cache_key: Option<String>,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub peak_memory: Option<i64>,
    pub attempts: i64,
    pub error: Option<String>,
    /// JSON text: output name → blob id or value.
    pub outputs: String,
}

impl From<&store::StageRecord> for Stage {
    fn from(s: &store::StageRecord) -> Self {
        Stage {
            stage: s.stage.clone(),
            status: s.status,
            plugin_digest: s.plugin_digest.clone(),
            cache_key: s.cache_key.clone(),
            started_at: s.started_at,
            ended_at: s.ended_at,
            peak_memory: s.peak_memory,
            attempts: s.attempts,
            error: s.error.clone(),
            outputs: s.outputs.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Artifact {
    pub path: String,
    pub blob: String,
    pub size: i64,
    pub media_type: String,
}

impl From<&store::ArtifactRecord> for Artifact {
    fn from(a: &store::ArtifactRecord) -> Self {
        Artifact { path: a.path.clone(), blob: a.blob.clone(), size: a.size, media_type: a.media_type.clone() }
    }
}

/// One logged value of a metric.
#[derive(Debug, Clone, Serialize)]
pub struct MetricPoint {
    pub key: String,
    pub value: f64,
    pub step: i64,
    pub timestamp: i64,
}

impl From<&store::MetricPoint> for MetricPoint {
    fn from(p: &store::MetricPoint) -> Self {
        MetricPoint { key: p.key.clone(), value: p.value, step: p.step, timestamp: p.timestamp }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub stage: String,
    pub level: String,
    pub message: String,
    pub at: i64,
}

impl From<&store::LogRecord> for LogLine {
    fn from(l: &store::LogRecord) -> Self {
        LogLine { stage: l.stage.clone(), level: l.level.clone(), message: l.message.clone(), at: l.at }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LineageEdge {
    pub src_kind: String,
    pub src_id: String,
    pub dst_kind: String,
    pub dst_id: String,
    pub run_id: Option<String>,
}

impl From<&store::LineageEdge> for LineageEdge {
    fn from(e: &store::LineageEdge) -> Self {
        LineageEdge {
            src_kind: e.src_kind.clone(),
            src_id: e.src_id.clone(),
            dst_kind: e.dst_kind.clone(),
            dst_id: e.dst_id.clone(),
            run_id: e.run_id.clone(),
        }
    }
}

/// A dataset version (its schema and profile are shown on their own).
#[derive(Debug, Clone, Serialize)]
pub struct DatasetVersion {
    pub name: String,
    pub version: i64,
    pub hash: String,
    pub kind: String,
    pub size: i64,
    pub files: i64,
    pub path: String,
    pub format: String,
    pub created_at: i64,
}

impl From<&store::DatasetVersion> for DatasetVersion {
    fn from(v: &store::DatasetVersion) -> Self {
        DatasetVersion {
            name: v.name.clone(),
            version: v.version,
            hash: v.hash.clone(),
            kind: v.kind.clone(),
            size: v.size,
            files: v.files,
            path: v.path.clone(),
            format: v.format.clone(),
            created_at: v.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Plugin {
    pub digest: String,
    pub name: String,
    pub version: String,
    pub kind: String,
    pub wit_version: String,
    pub summary: String,
    /// JSON Schema text.
    pub params_schema: String,
    pub imports: Vec<String>,
    pub blob: String,
    pub size: i64,
    pub bundled: bool,
    pub timeout_ms: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub created_at: i64,
}

impl From<&store::PluginRecord> for Plugin {
    fn from(p: &store::PluginRecord) -> Self {
        Plugin {
            digest: p.digest.clone(),
            name: p.name.clone(),
            version: p.version.clone(),
            kind: p.kind.clone(),
            wit_version: p.wit_version.clone(),
            summary: p.summary.clone(),
            params_schema: p.params_schema.clone(),
            imports: p.imports.clone(),
            blob: p.blob.clone(),
            size: p.size,
            bundled: p.bundled,
            timeout_ms: p.timeout_ms,
            memory_bytes: p.memory_bytes,
            created_at: p.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Model {
    pub name: String,
    pub description: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<&store::ModelRecord> for Model {
    fn from(m: &store::ModelRecord) -> Self {
        Model { name: m.name.clone(), description: m.description.clone(), created_at: m.created_at, updated_at: m.updated_at }
    }
}

/// A model MLflow 3 logged (`log_model` makes one per call): its own
/// files, params and metrics, the run that made it, and the registered
/// versions made from it.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedModel {
    pub id: String,
    pub name: String,
    pub experiment_id: String,
    /// `None` when it was logged outside a run.
    pub source_run_id: Option<String>,
    /// `PENDING` while its files upload, then `READY` (or `FAILED`).
    pub status: String,
    pub model_type: String,
    pub params: BTreeMap<String, String>,
    /// The last value logged of each metric.
    pub metrics: BTreeMap<String, f64>,
    pub tags: BTreeMap<String, String>,
    /// `NAME/VERSION` of each registered version made from it.
    pub versions: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl LoggedModel {
    pub fn new(m: &store::LoggedModelDetail, versions: &[store::VersionRecord]) -> Self {
        let r = &m.record;
        let mut metrics = BTreeMap::new();
        let mut latest = m.metrics.iter().collect::<Vec<_>>();
        latest.sort_by_key(|p| (p.step, p.timestamp));
        for p in latest {
            metrics.insert(p.key.clone(), p.value);
        }
        LoggedModel {
            id: r.id.clone(),
            name: r.name.clone(),
            experiment_id: r.experiment_id.clone(),
            source_run_id: Some(r.source_run_id.clone()).filter(|s| !s.is_empty()),
            status: r.status.clone(),
            model_type: r.model_type.clone(),
            params: m.params.iter().cloned().collect(),
            metrics,
            tags: m.tags.iter().cloned().collect(),
            versions: versions.iter().filter(|v| v.model_id == r.id).map(|v| format!("{}/{}", v.name, v.version)).collect(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: i64,
    pub run_id: Option<String>,
    pub source: String,
    /// The MLflow 3 logged model (`m-…`) the version was made from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    pub stage: String,
    pub description: String,
    /// The trainer plugin that loads a Kiln-trained model (`sha256:…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin_digest: Option<String>,
    /// The input it was trained on: columns and kinds, target, data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<serde_json::Value>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<&store::VersionRecord> for ModelVersion {
    fn from(v: &store::VersionRecord) -> Self {
        ModelVersion {
            name: v.name.clone(),
            version: v.version,
            run_id: v.run_id.clone(),
            source: v.source.clone(),
            model_id: Some(v.model_id.clone()).filter(|m| !m.is_empty()),
            stage: v.stage.clone(),
            description: v.description.clone(),
            plugin_digest: Some(v.plugin_digest.clone()).filter(|d| !d.is_empty()),
            signature: serde_json::from_str(&v.signature).ok().filter(|s: &serde_json::Value| s.as_object().is_some_and(|o| !o.is_empty())),
            created_at: v.created_at,
            updated_at: v.updated_at,
        }
    }
}

/// A model in a listing: its latest version and aliases (`kiln models
/// list --json`, `GET /api/v1/models`).
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    pub name: String,
    pub latest_version: Option<i64>,
    pub aliases: Vec<(String, i64)>,
    pub updated_at: i64,
}

/// A model with its versions and aliases (`kiln models show`,
/// `GET /api/v1/models/{name}`).
#[derive(Debug, Clone, Serialize)]
pub struct ModelDetail {
    pub model: Model,
    pub versions: Vec<ModelVersion>,
    pub aliases: Vec<(String, i64)>,
}

impl ModelDetail {
    pub fn new(model: &store::ModelRecord, versions: &[store::VersionRecord], aliases: &[(String, i64)]) -> Self {
        ModelDetail { model: model.into(), versions: all(versions), aliases: aliases.to_vec() }
    }
}

/// A deployment: the name it is served under and what answers there.
#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    pub name: String,
    pub model: String,
    /// What was deployed, as given (`3`, `champion`, `Production`).
    pub model_ref: String,
    pub version: i64,
    pub instances: i64,
    pub timeout_ms: Option<i64>,
    pub max_rows: Option<i64>,
    /// Where clients send predictions.
    pub invocations: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// The version taking a share of the traffic, while a rollout runs.
    pub canary: Option<Canary>,
    /// The version every request is mirrored to.
    pub shadow: Option<VersionOf>,
    /// Rollouts this deployment has had.
    pub rollout: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionOf {
    pub model: String,
    pub version: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Canary {
    pub model: String,
    pub version: i64,
    pub percent: f64,
    pub started_at: Option<i64>,
    pub policy: crate::serving::rollout::Policy,
}

impl From<&store::DeploymentRecord> for Deployment {
    fn from(d: &store::DeploymentRecord) -> Self {
        Deployment {
            name: d.name.clone(),
            model: d.model_name.clone(),
            model_ref: d.model_ref.clone(),
            version: d.version,
            instances: d.instances,
            timeout_ms: d.timeout_ms,
            max_rows: d.max_rows,
            invocations: format!("/deployments/{}/invocations", d.name),
            created_at: d.created_at,
            updated_at: d.updated_at,
            canary: d.canary.as_ref().map(|c| Canary {
                model: c.model_name.clone(),
                version: c.version,
                percent: d.canary_percent,
                started_at: d.rollout_started_at,
                policy: crate::serving::rollout::Policy::of(d),
            }),
            shadow: d.shadow.as_ref().map(|s| VersionOf { model: s.model_name.clone(), version: s.version }),
            rollout: d.rollout,
        }
    }
}

/// One change in a deployment's history.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentEvent {
    pub seq: i64,
    pub at: i64,
    pub action: String,
    pub model: String,
    pub version: i64,
    pub reason: String,
}

impl From<&store::DeploymentEvent> for DeploymentEvent {
    fn from(e: &store::DeploymentEvent) -> Self {
        DeploymentEvent { seq: e.seq, at: e.at, action: e.action.clone(), model: e.model_name.clone(), version: e.version, reason: e.reason.clone() }
    }
}

/// What one role of the current rollout served, over every process.
#[derive(Debug, Clone, Serialize)]
pub struct RoleTraffic {
    pub role: &'static str,
    pub version: i64,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Shadow only: answers equal to the ones returned.
    pub agreed: Option<u64>,
}

impl RoleTraffic {
    /// The roles of `rows` (one rollout's counts) that served anything.
    pub fn of(rows: &[store::RolloutStat]) -> Vec<RoleTraffic> {
        use crate::serving::stats::{Counts, Role};
        [Role::Stable, Role::Canary, Role::Shadow]
            .into_iter()
            .map(|role| (role, Counts::sum(rows, role)))
            .filter(|(_, c)| c.requests > 0)
            .map(|(role, c)| RoleTraffic {
                role: role.as_str(),
                version: c.version,
                requests: c.requests,
                errors: c.errors,
                error_rate: c.error_rate(),
                p50_ms: c.latency.quantile_ms(0.5),
                p99_ms: c.p99_ms(),
                agreed: (role == Role::Shadow).then_some(c.agreed),
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Pipeline {
    pub name: String,
    pub spec: String,
    pub base_dir: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<&store::PipelineRecord> for Pipeline {
    fn from(p: &store::PipelineRecord) -> Self {
        Pipeline { name: p.name.clone(), spec: p.spec.clone(), base_dir: p.base_dir.clone(), created_at: p.created_at, updated_at: p.updated_at }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Schedule {
    pub id: String,
    pub pipeline: String,
    pub cron: String,
    pub created_at: i64,
}

impl From<&store::ScheduleRecord> for Schedule {
    fn from(s: &store::ScheduleRecord) -> Self {
        Schedule { id: s.id.clone(), pipeline: s.pipeline.clone(), cron: s.cron.clone(), created_at: s.created_at }
    }
}

/// Views of a list of rows.
/// Where a deployer plugin deployed a deployment, and what it answered.
#[derive(Debug, Clone, Serialize)]
pub struct DeployTarget {
    pub deployment: String,
    pub plugin: String,
    pub plugin_digest: String,
    pub params: serde_json::Value,
    /// What this deployment granted (the plugin's own grants apply too).
    pub grants: serde_json::Value,
    pub model: String,
    pub version: i64,
    pub status: String,
    pub endpoint: Option<String>,
    /// The plugin's manifest: JSON when it is JSON, else its text.
    pub manifest: serde_json::Value,
    pub updated_at: i64,
}

impl From<&store::DeployTargetRecord> for DeployTarget {
    fn from(t: &store::DeployTargetRecord) -> Self {
        let json = |text: &str| serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_string()));
        DeployTarget {
            deployment: t.deployment.clone(),
            plugin: t.plugin_name.clone(),
            plugin_digest: t.plugin_digest.clone(),
            params: json(&t.params),
            grants: json(&t.grants),
            model: t.model_name.clone(),
            version: t.version,
            status: t.status.clone(),
            endpoint: t.endpoint.clone(),
            manifest: json(&t.manifest),
            updated_at: t.updated_at,
        }
    }
}

pub fn all<'a, R: 'a, V: From<&'a R>>(rows: impl IntoIterator<Item = &'a R>) -> Vec<V> {
    rows.into_iter().map(V::from).collect()
}
