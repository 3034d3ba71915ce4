//! Serving: registering what a pipeline trained, deploying a version
//! under a name, and answering predictions from warm sandboxed instances
//! ([`pool`]). The wire formats (MLflow's scoring protocol) are
//! `kiln-api`'s; this decides what may be served and checks the input
//! against the model's [`signature`].

pub mod bundle;
pub mod import;
pub mod pool;
pub mod rollout;
pub mod signature;
pub mod stats;
pub mod target;

use crate::app::App;
use crate::dataset::{ColumnData, Table};
use crate::pipeline::executor::Outputs;
use crate::plugins::{self, LimitOverrides};
use crate::registry::{self, VersionRef};
use crate::runtime::RuntimeError;
use crate::store::{DeploymentRecord, LineageEdge, NewVersion, RunStatus, StoreError, VersionRecord};
use anyhow::{Context, Result, anyhow, bail};
use pool::Pool;
use signature::Signature;
use stats::{Outcome, Role};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A request's deadline unless the deployment sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Rows per request unless the deployment sets a cap.
pub const DEFAULT_MAX_ROWS: i64 = 10_000;
/// Warm instances per deployment unless it says.
pub const DEFAULT_INSTANCES: i64 = 2;
/// At most this many instances per deployment: each holds one of the
/// runtime's 256 instance slots, which pipeline calls need too.
pub const MAX_INSTANCES: i64 = 32;

/// A prediction and who made it.
#[derive(Debug)]
pub struct Served {
    pub model_name: String,
    pub version: i64,
    /// The part that version plays in the deployment.
    pub role: Role,
    pub predictions: Table,
}

/// Why a prediction was not made; the API maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("deployment `{0}` not found")]
    NoDeployment(String),
    /// The request does not fit the model (400).
    #[error("{message}")]
    BadInput { column: Option<String>, message: String },
    /// Every instance stayed busy (503).
    #[error("{0}")]
    Busy(String),
    /// The deployed version cannot be loaded at all (503).
    #[error("{0}")]
    Unavailable(String),
    #[error("loading {0} failed: {1}")]
    Load(String, RuntimeError),
    /// The plugin failed on this request: its own error (400 when it is
    /// about the input), or a trap, timeout or memory cap (5xx).
    #[error("{0}: {1}")]
    Predict(String, RuntimeError),
}

impl ServeError {
    fn bad(column: Option<&str>, message: String) -> Self {
        ServeError::BadInput { column: column.map(String::from), message }
    }

    /// The version failed, not the request: it counts against a canary.
    pub fn is_version_failure(&self) -> bool {
        match self {
            ServeError::NoDeployment(_) | ServeError::BadInput { .. } => false,
            ServeError::Predict(_, RuntimeError::Plugin { code, .. }) => code == "plugin error",
            _ => true,
        }
    }

    /// The version is broken (it trapped, hung, ran out of memory or does
    /// not load), as opposed to busy: a canary doing this is rolled back at
    /// once.
    pub fn is_breakage(&self) -> bool {
        matches!(self, ServeError::Load(..) | ServeError::Unavailable(_) | ServeError::Predict(..)) && self.is_version_failure()
    }
}

/// The deployment options a user gives.
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    pub instances: Option<i64>,
    pub timeout: Option<Duration>,
    pub max_rows: Option<i64>,
}

/// `MODEL@VERSION`, `MODEL@ALIAS`, `MODEL@latest` or `MODEL@Production`
/// → (model, what it names, as given).
pub fn parse_model_ref(text: &str) -> Result<(String, VersionRef, String)> {
    let Some((model, reference)) = text.split_once('@').filter(|(m, r)| !m.is_empty() && !r.is_empty()) else {
        bail!("`{text}` is not MODEL@VERSION or MODEL@ALIAS (for example cancer@3 or cancer@champion)");
    };
    let parsed = match reference.parse::<i64>() {
        Ok(_) => VersionRef::parse(reference),
        Err(_) => VersionRef::parse(reference).or_else(|_| VersionRef::parse(&format!("@{reference}"))),
    }
    .map_err(|e| anyhow!("`{text}`: {e}"))?;
    Ok((model.to_string(), parsed, reference.to_string()))
}

fn check_deployment_name(name: &str) -> Result<()> {
    let ok = !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) && !name.starts_with('.');
    if !ok {
        bail!("`{name}` is not a deployment name: 1 to 64 letters, digits, `-`, `_` or `.`, not starting with `.`");
    }
    Ok(())
}

/// Create deployment `name` serving `model_ref`, or point it there; the
/// version must be one Kiln can serve.
pub async fn deploy(app: &App, name: &str, model_ref: &str, options: &DeployOptions) -> Result<DeploymentRecord> {
    check_deployment_name(name)?;
    let (model, reference, given) = parse_model_ref(model_ref)?;
    let version = servable_version(app, registry::resolve(&app.store, &model, &reference).await?).await?;
    servable(app, &version).await?;
    let instances = options.instances.unwrap_or(DEFAULT_INSTANCES);
    if !(1..=MAX_INSTANCES).contains(&instances) {
        bail!("instances must be between 1 and {MAX_INSTANCES}, not {instances}");
    }
    if let Some(rows) = options.max_rows.filter(|r| *r < 1) {
        bail!("max rows must be at least 1, not {rows}");
    }
    let record = DeploymentRecord {
        timeout_ms: options.timeout.map(|t| t.as_millis() as i64),
        max_rows: options.max_rows,
        ..DeploymentRecord::new(name, &model, &given, version.version, instances)
    };
    let reason = format!("deployed {model}@{given}");
    Ok(app.store.put_deployment(&record, &reason).await?)
}

/// `v`, made servable first if MLflow's API registered it with an `onnx`
/// flavour whose files this Kiln holds ([`import::adopt`]).
pub async fn servable_version(app: &App, v: VersionRecord) -> Result<VersionRecord> {
    if !v.blob.is_empty() {
        return Ok(v);
    }
    import::adopt(app, &v).await.map_err(|e| {
        anyhow!(
            "version {} of model `{}` was registered through MLflow's API and cannot be served: {e:#}; \
             Kiln serves models a Kiln trainer plugin made (`kiln models register RUN STAGE NAME`) and ONNX models \
             (`kiln models import`, or an MLflow model with an `onnx` flavour)",
            v.version,
            v.name
        )
    })
}

/// What loads a version: the trainer plugin that made it and its bytes.
async fn servable(app: &App, v: &VersionRecord) -> Result<(crate::store::PluginRecord, Vec<u8>)> {
    if v.blob.is_empty() || v.plugin_digest.is_empty() {
        bail!(
            "version {} of model `{}` was registered through MLflow's API (its files are at `{}`); \
             Kiln serves models a Kiln trainer plugin made (`kiln models register RUN STAGE NAME`)",
            v.version,
            v.name,
            v.source
        );
    }
    let plugin = app
        .store
        .plugin_by_digest(&v.plugin_digest)
        .await?
        .ok_or_else(|| anyhow!("version {} of model `{}` needs plugin {}, which is no longer registered", v.version, v.name, v.plugin_digest))?;
    if plugin.kind != "trainer" {
        bail!("version {} of model `{}` names plugin {}@{}, a {}, not a trainer", v.version, v.name, plugin.name, plugin.version, plugin.kind);
    }
    let bytes = app.blobs.get(&v.blob).with_context(|| format!("reading the model of version {} of `{}`", v.version, v.name))?;
    Ok((plugin, bytes))
}

/// Where a request to a deployment goes: the version that answers it and
/// the shadow it is mirrored to, from the deployment's row as the store
/// has it now (so a change by any process applies to the next request).
pub struct Routed {
    pub deployment: DeploymentRecord,
    pub role: Role,
    pub pool: Arc<Pool>,
    pub shadow: Option<Arc<Pool>>,
}

/// Route a request to deployment `name`; `key` keeps a client on one side
/// of a canary split. A canary that cannot load is rolled back and the
/// request goes to the stable version.
pub async fn route(app: &App, name: &str, key: Option<&str>) -> Result<Routed, ServeError> {
    let deployment = match app.store.deployment(name).await {
        Ok(r) => r,
        Err(StoreError::NotFound(_)) => return Err(ServeError::NoDeployment(name.to_string())),
        Err(e) => return Err(ServeError::Unavailable(e.to_string())),
    };
    let mut role = rollout::choose(&deployment, key);
    let pool = match pool_of(app, &deployment, role).await {
        Ok(p) => p,
        Err(e) if role == Role::Canary => {
            canary_broke(app, &deployment, &e).await;
            role = Role::Stable;
            pool_of(app, &deployment, role).await?
        }
        Err(e) => return Err(e),
    };
    let shadow = match deployment.shadow {
        Some(_) => pool_of(app, &deployment, Role::Shadow).await.map_err(|e| tracing::warn!(deployment = name, "shadow not mirrored: {e}")).ok(),
        None => None,
    };
    Ok(Routed { deployment, role, pool, shadow })
}

/// The stable version's pool of deployment `name` (to warm it).
pub async fn pool_for(app: &App, name: &str) -> Result<Arc<Pool>, ServeError> {
    Ok(route(app, name, None).await?.pool)
}

/// Fill the pools of every version deployment `name` serves.
pub async fn warm(app: &App, name: &str) -> Result<(), ServeError> {
    let d = app.store.deployment(name).await.map_err(|e| ServeError::Unavailable(e.to_string()))?;
    for role in [Role::Stable, Role::Canary, Role::Shadow] {
        if rollout::as_role(&d, role).is_some() {
            pool_of(app, &d, role).await?.warm_up(app).await?;
        }
    }
    Ok(())
}

/// The pool of the version playing `role` in `d`: made the first time,
/// remade when the deployment's settings changed.
async fn pool_of(app: &App, d: &DeploymentRecord, role: Role) -> Result<Arc<Pool>, ServeError> {
    let Some(record) = rollout::as_role(d, role) else {
        return Err(ServeError::Unavailable(format!("deployment `{}` has no {} version", d.name, role.as_str())));
    };
    if let Some(pool) = app.pools.get(&record) {
        return Ok(pool);
    }
    let name = &d.name;
    let unavailable = |e: anyhow::Error| ServeError::Unavailable(format!("deployment `{name}` cannot serve: {e:#}"));
    let version = app.store.version(&record.model_name, record.version).await.map_err(|e| unavailable(e.into()))?;
    let (plugin_record, bytes) = servable(app, &version).await.map_err(unavailable)?;
    let plugin = plugins::load(app, &plugin_record).map_err(unavailable)?;
    let signature = Signature::parse(&version.signature).map_err(|e| unavailable(anyhow!(e)))?;
    let timeout = record.timeout_ms.map(|ms| Duration::from_millis(ms as u64)).unwrap_or(DEFAULT_TIMEOUT);
    let limits = plugins::limits_for(&plugin_record, LimitOverrides { timeout: Some(timeout), memory_bytes: None });
    Ok(app.pools.put(Arc::new(Pool::new(record, signature, plugin, bytes, limits))))
}

async fn canary_broke(app: &App, d: &DeploymentRecord, e: &ServeError) {
    let Some(canary) = &d.canary else { return };
    let reason = format!("version {} failed a request: {e}", canary.version);
    if let Err(e) = rollout::roll_back(app, &d.name, Some(d.rollout), &reason).await {
        tracing::error!(deployment = %d.name, "rolling back a broken canary: {e:#}");
    }
}

/// Answer `features` (parsed for `routed.pool`'s signature) on the routed
/// version, count it for the rollout, and mirror it to the shadow. A
/// canary that breaks on it is rolled back at once and the stable version
/// answers instead.
pub async fn predict(app: &App, routed: Routed, features: Table) -> Result<Served, ServeError> {
    let Routed { deployment, role, pool, shadow } = routed;
    // The request again, for the stable version or the shadow; a copy only
    // when one may need it.
    let spare = (role == Role::Canary || shadow.is_some()).then(|| features.clone());
    let checked = check_input(&pool, features)?;
    let started = Instant::now();
    let mut outcome = pool.predict(app, checked, role).await;
    record(app, &deployment, role, &pool, started, &outcome);
    if role == Role::Canary
        && let Err(e) = &outcome
        && e.is_breakage()
        && let Some(features) = spare.clone()
    {
        canary_broke(app, &deployment, e).await;
        let stable = pool_of(app, &deployment, Role::Stable).await?;
        let checked = check_input(&stable, features)?;
        let started = Instant::now();
        outcome = stable.predict(app, checked, Role::Stable).await;
        record(app, &deployment, Role::Stable, &stable, started, &outcome);
    }
    if let (Some(shadow), Some(features), Ok(served)) = (shadow, spare, &outcome) {
        mirror(app, deployment, shadow, features, served.predictions.clone());
    }
    outcome
}

fn record(app: &App, d: &DeploymentRecord, role: Role, pool: &Pool, started: Instant, outcome: &Result<Served, ServeError>) {
    let failed = match outcome {
        Ok(_) => false,
        Err(e) if e.is_version_failure() => true,
        // The client's mistake says nothing about the version.
        Err(_) => return,
    };
    app.rollout_stats.record(d, role, pool.deployment.version, Outcome { latency: started.elapsed(), failed, agreed: false });
}

/// Predict on the shadow off the request's path, if it has an instance free
/// right now (a slow shadow never holds up or piles up behind the live
/// version), and count whether it agreed.
fn mirror(app: &App, d: DeploymentRecord, shadow: Arc<Pool>, features: Table, answered: Table) {
    let app = app.clone();
    tokio::spawn(async move {
        let Ok(checked) = check_input(&shadow, features) else {
            let outcome = Outcome { latency: Duration::ZERO, failed: true, agreed: false };
            return app.rollout_stats.record(&d, Role::Shadow, shadow.deployment.version, outcome);
        };
        let started = Instant::now();
        match shadow.try_predict(&app, checked).await {
            None => {}
            Some(result) => {
                let agreed = result.as_ref().is_ok_and(|s| s.predictions == answered);
                let failed = result.as_ref().err().is_some_and(ServeError::is_version_failure);
                if let Err(e) = &result {
                    tracing::debug!(deployment = %d.name, "shadow failed: {e}");
                }
                app.rollout_stats.record(&d, Role::Shadow, shadow.deployment.version, Outcome { latency: started.elapsed(), failed, agreed });
            }
        }
    });
}

/// Check a request's table against the model's signature (columns by
/// name, none missing, none unknown, kinds as trained) and the row cap,
/// and put its columns in the trained order.
pub fn check_input(pool: &Pool, mut features: Table) -> Result<Table, ServeError> {
    let max_rows = pool.deployment.max_rows.unwrap_or(DEFAULT_MAX_ROWS);
    if features.rows as i64 > max_rows {
        return Err(ServeError::bad(
            None,
            format!("{} rows sent; deployment `{}` takes at most {max_rows} per request", features.rows, pool.deployment.name),
        ));
    }
    if features.rows == 0 {
        return Err(ServeError::bad(None, "the request has no rows".into()));
    }
    let inputs = &pool.signature.inputs;
    if inputs.is_empty() {
        return Ok(features);
    }
    if let Some(extra) = features.columns.iter().find(|c| pool.signature.kind_of(&c.name).is_none()) {
        let known: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
        return Err(ServeError::bad(
            Some(&extra.name),
            format!("column `{}` is not an input of this model (its inputs: {})", extra.name, known.join(", ")),
        ));
    }
    let mut ordered = Vec::with_capacity(inputs.len());
    for input in inputs {
        let Some(at) = features.columns.iter().position(|c| c.name == input.name) else {
            return Err(ServeError::bad(Some(&input.name), format!("column `{}` is missing: the model was trained with it", input.name)));
        };
        let column = features.columns.swap_remove(at);
        let fits = matches!(
            (&column.data, input.kind),
            (ColumnData::Numeric(_), signature::Kind::Double) | (ColumnData::Categorical(_), signature::Kind::String)
        );
        if !fits {
            let want = match input.kind {
                signature::Kind::Double => "numbers",
                signature::Kind::String => "strings",
            };
            return Err(ServeError::bad(Some(&input.name), format!("column `{}` must hold {want}, as the model was trained on", input.name)));
        }
        ordered.push(column);
    }
    features.columns = ordered;
    Ok(features)
}

/// Deployment `name`'s history, oldest first; also after it was deleted,
/// and an error if it never existed.
pub async fn history(app: &App, name: &str) -> Result<Vec<crate::store::DeploymentEvent>, StoreError> {
    let events = app.store.deployment_events(name).await?;
    if events.is_empty() {
        app.store.deployment(name).await?;
    }
    Ok(events)
}

/// Register the model stage `stage` of run `run_id` trained as the next
/// version of `name` (creating the model), with `alias` if given. The run
/// must have finished: a run whose gate failed is FAILED and registers
/// nothing.
pub async fn register(app: &App, run_id: &str, stage: &str, name: &str, alias: Option<&str>) -> Result<VersionRecord> {
    let run = app.store.get_run(run_id).await?;
    if run.summary.status != RunStatus::Finished {
        bail!(
            "run `{run_id}` is {}: only a finished run's model is registered{}",
            run.summary.status,
            run.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
        );
    }
    let record = run.stages.iter().find(|s| s.stage == stage);
    let outputs: Option<Outputs> = record.and_then(|s| serde_json::from_str(&s.outputs).ok());
    let Some((outputs, blob, plugin)) = outputs.and_then(|o| Some((o.clone(), o.model_blob?, o.model_plugin?))) else {
        let with_models: Vec<&str> = run
            .stages
            .iter()
            .filter(|s| serde_json::from_str::<Outputs>(&s.outputs).is_ok_and(|o| o.model_blob.is_some()))
            .map(|s| s.stage.as_str())
            .collect();
        bail!(
            "stage `{stage}` of run `{run_id}` made no model (stages with a model: {})",
            if with_models.is_empty() { "none".to_string() } else { with_models.join(", ") }
        );
    };
    if let Some(a) = alias {
        registry::check_alias(a).map_err(|e| anyhow!(e))?;
    }
    match app.store.model(name).await {
        Ok(_) => {}
        Err(StoreError::NotFound(_)) => {
            app.store.create_model(name, "").await?;
        }
        Err(e) => return Err(e.into()),
    }
    let signature = outputs.signature.map(|s| s.to_string()).unwrap_or_default();
    let source = format!("runs:/{run_id}/{stage}");
    let new = NewVersion { source: &source, run_id: Some(run_id), blob: &blob, plugin_digest: &plugin, signature: &signature, ..Default::default() };
    let version = app.store.create_version_from(name, &new).await?;
    if let Some(a) = alias {
        app.store.set_alias(name, a, version.version).await?;
    }
    app.store
        .add_lineage(&LineageEdge {
            src_kind: "model".into(),
            src_id: blob,
            dst_kind: "model_version".into(),
            dst_id: format!("{name}/{}", version.version),
            run_id: Some(run_id.to_string()),
        })
        .await?;
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_references_read_versions_aliases_and_stages() {
        let (m, r, given) = parse_model_ref("cancer@3").unwrap();
        assert_eq!((m.as_str(), r, given.as_str()), ("cancer", VersionRef::Number(3), "3"));
        assert_eq!(parse_model_ref("cancer@champion").unwrap().1, VersionRef::Alias("champion".into()));
        assert_eq!(parse_model_ref("cancer@@champion").unwrap().1, VersionRef::Alias("champion".into()));
        assert_eq!(parse_model_ref("cancer@Production").unwrap().1, VersionRef::Stage("Production"));
        for bad in ["cancer", "@3", "cancer@", "cancer@0"] {
            assert!(parse_model_ref(bad).is_err(), "{bad}");
        }
        assert!(check_deployment_name("web-1.v2").is_ok());
        for bad in ["", ".hidden", "a/b", "sp ace"] {
            assert!(check_deployment_name(bad).is_err(), "{bad}");
        }
    }
}
