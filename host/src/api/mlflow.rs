//! The MLflow tracking REST API (`/api/2.0/mlflow/...`), so existing MLflow
//! client code logs to Kiln unmodified: experiments, runs, params, metrics
//! with steps, tags, batches, search and metric history. Errors use
//! MLflow's codes and statuses.

use crate::app::App;
use crate::store::{MetricPoint, RunStatus, SearchQuery, StoreError, now_ms};
use crate::tracking::filter;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::collections::HashMap;

/// MLflow's validation limits.
const MAX_KEY: usize = 250;
const MAX_PARAM_VALUE: usize = 6000;
const MAX_TAG_VALUE: usize = 8000;
const MAX_BATCH_METRICS: usize = 1000;
const MAX_BATCH_PARAMS: usize = 100;
const MAX_BATCH_TAGS: usize = 100;
const MAX_BATCH_TOTAL: usize = 1000;

pub fn router() -> Router<App> {
    let p = |s: &str| format!("/api/2.0/mlflow/{s}");
    Router::new()
        .route(&p("experiments/create"), post(create_experiment))
        .route(&p("experiments/get"), get(get_experiment))
        .route(&p("experiments/get-by-name"), get(get_experiment_by_name))
        .route(&p("experiments/search"), post(search_experiments).get(search_experiments_get))
        .route(&p("experiments/update"), post(update_experiment))
        .route(&p("experiments/delete"), post(delete_experiment))
        .route(&p("experiments/restore"), post(restore_experiment))
        .route(&p("experiments/set-experiment-tag"), post(set_experiment_tag))
        .route(&p("runs/create"), post(create_run))
        .route(&p("runs/get"), get(get_run))
        .route(&p("runs/update"), post(update_run))
        .route(&p("runs/delete"), post(delete_run))
        .route(&p("runs/restore"), post(restore_run))
        .route(&p("runs/log-metric"), post(log_metric))
        .route(&p("runs/log-parameter"), post(log_param))
        .route(&p("runs/set-tag"), post(set_tag))
        .route(&p("runs/delete-tag"), post(delete_tag))
        .route(&p("runs/log-batch"), post(log_batch))
        .route(&p("runs/log-inputs"), post(log_inputs))
        .route(&p("runs/search"), post(search_runs))
        .route(&p("metrics/get-history"), get(metric_history))
        .route(&p("artifacts/list"), get(list_run_artifacts))
        .route(&p("logged-models/search"), post(search_logged_models))
        .route(&p("registered-models/create"), post(create_model))
        .route(&p("registered-models/get"), get(get_model))
        .route(&p("registered-models/search"), get(search_models).post(search_models))
        .route(&p("registered-models/delete"), axum::routing::delete(delete_model))
        .route(&p("registered-models/get-latest-versions"), get(latest_versions_get).post(latest_versions))
        .route(&p("registered-models/alias"), get(get_by_alias).post(set_alias).delete(delete_alias))
        .route(&p("model-versions/create"), post(create_version))
        .route(&p("model-versions/get"), get(get_version))
        .route(&p("model-versions/search"), get(search_versions))
        .route(&p("model-versions/transition-stage"), post(transition_stage))
        .route("/api/2.0/mlflow-artifacts/artifacts", get(list_artifacts))
        .route(
            "/api/2.0/mlflow-artifacts/artifacts/{*path}",
            get(download_artifact).put(upload_artifact).layer(axum::extract::DefaultBodyLimit::max(MAX_ARTIFACT)),
        )
}

/// MLflow 3 clients look for logged models when listing artifacts; Kiln
/// keeps models in its registry, so there are none of MLflow's kind.
async fn search_logged_models() -> Json<Value> {
    Json(json!({"models": []}))
}

/// Largest artifact one PUT may carry (held in memory while it is hashed).
const MAX_ARTIFACT: usize = 2 << 30;

/// `<experiment>/<run>/artifacts[/<path>]` → (run id, path inside the run).
fn split_artifact_path(path: &str) -> Result<(String, String), MlflowError> {
    let mut parts = path.trim_matches('/').splitn(4, '/');
    let (_experiment, run, root) = (parts.next(), parts.next(), parts.next());
    let (Some(run), Some("artifacts")) = (run, root) else {
        return Err(invalid(format!("artifact path '{path}' is not <experiment>/<run>/artifacts/<path>")));
    };
    let rel = parts.next().unwrap_or("").trim_matches('/').to_string();
    if rel.split('/').any(|p| p == ".." || p == ".") || rel.contains('\\') {
        return Err(invalid(format!("Invalid artifact path: '{rel}'")));
    }
    Ok((run.to_string(), rel))
}

/// The direct children of `prefix` among a run's artifact paths.
async fn children(app: &App, run_id: &str, prefix: &str) -> Result<Vec<Value>, MlflowError> {
    let run = app.store.get_run(run_id).await?;
    let base = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
    let mut seen = std::collections::BTreeMap::new();
    for a in &run.artifacts {
        let Some(rest) = a.path.strip_prefix(&base) else { continue };
        match rest.split_once('/') {
            Some((dir, _)) => {
                seen.entry(dir.to_string()).or_insert(json!({"path": dir, "is_dir": true}));
            }
            None => {
                seen.insert(rest.to_string(), json!({"path": rest, "is_dir": false, "file_size": a.size}));
            }
        }
    }
    Ok(seen.into_values().collect())
}

async fn upload_artifact(
    State(app): State<App>,
    axum::extract::Path(path): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> R {
    let (run_id, rel) = split_artifact_path(&path)?;
    if rel.is_empty() {
        return Err(invalid("an artifact needs a file name"));
    }
    app.store.run_extras(&run_id).await.map_err(|_| not_found(format!("Run '{run_id}' not found")))?;
    let blob = app.blobs.put(&body).map_err(|e| {
        tracing::error!("storing an artifact: {e}");
        MlflowError { status: StatusCode::INTERNAL_SERVER_ERROR, code: "INTERNAL_ERROR", message: "could not store the artifact".into() }
    })?;
    let media = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/octet-stream");
    app.store.add_artifact(&run_id, &rel, &blob, body.len() as i64, media).await?;
    Ok(Json(json!({})))
}

async fn download_artifact(State(app): State<App>, axum::extract::Path(path): axum::extract::Path<String>) -> Result<Response, MlflowError> {
    let (run_id, rel) = split_artifact_path(&path)?;
    let run = app.store.get_run(&run_id).await?;
    let a = run.artifacts.iter().find(|a| a.path == rel).ok_or_else(|| not_found(format!("artifact '{rel}' of run '{run_id}'")))?;
    let bytes = app.blobs.get(&a.blob).map_err(|e| {
        tracing::error!("reading artifact {rel}: {e}");
        MlflowError { status: StatusCode::INTERNAL_SERVER_ERROR, code: "INTERNAL_ERROR", message: format!("artifact '{rel}' cannot be read: {e}") }
    })?;
    Ok(([(axum::http::header::CONTENT_TYPE, a.media_type.clone())], bytes).into_response())
}

async fn list_artifacts(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    let (run_id, rel) = split_artifact_path(q.get("path").map(String::as_str).unwrap_or(""))?;
    Ok(Json(json!({"files": children(&app, &run_id, &rel).await?})))
}

async fn list_run_artifacts(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    let run_id = q.get("run_id").or(q.get("run_uuid")).ok_or_else(|| invalid("Missing value for required parameter 'run_id'"))?;
    let (experiment, _, _) = app.store.run_extras(run_id).await.map_err(|_| not_found(format!("Run '{run_id}' not found")))?;
    let path = q.get("path").cloned().unwrap_or_default();
    let files: Vec<Value> = children(&app, run_id, path.trim_matches('/'))
        .await?
        .into_iter()
        .map(|mut f| {
            if !path.is_empty() {
                f["path"] = json!(format!("{}/{}", path.trim_matches('/'), f["path"].as_str().unwrap_or("")));
            }
            f
        })
        .collect();
    Ok(Json(json!({"root_uri": format!("mlflow-artifacts:/{experiment}/{run_id}/artifacts"), "files": files})))
}

pub struct MlflowError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn invalid(message: impl Into<String>) -> MlflowError {
    MlflowError { status: StatusCode::BAD_REQUEST, code: "INVALID_PARAMETER_VALUE", message: message.into() }
}

fn not_found(message: impl Into<String>) -> MlflowError {
    MlflowError { status: StatusCode::NOT_FOUND, code: "RESOURCE_DOES_NOT_EXIST", message: message.into() }
}

impl IntoResponse for MlflowError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error_code": self.code, "message": self.message}))).into_response()
    }
}

impl From<StoreError> for MlflowError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => not_found(format!("{m} not found")),
            StoreError::Conflict(m) => invalid(m),
            other => {
                tracing::error!("mlflow api: {other}");
                MlflowError { status: StatusCode::INTERNAL_SERVER_ERROR, code: "INTERNAL_ERROR", message: "internal error (see the server log)".into() }
            }
        }
    }
}

type R = Result<Json<Value>, MlflowError>;

fn text(body: &Value, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| body.get(*k).and_then(|v| v.as_str()).map(String::from))
}

fn required(body: &Value, keys: &[&str]) -> Result<String, MlflowError> {
    text(body, keys).filter(|s| !s.is_empty()).ok_or_else(|| invalid(format!("Missing value for required parameter '{}'", keys[0])))
}

/// int64 fields arrive as JSON numbers or, from protobuf's JSON, as strings.
fn int(body: &Value, key: &str) -> Result<Option<i64>, MlflowError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).map(Some).ok_or_else(|| invalid(format!("'{key}' must be an integer"))),
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| invalid(format!("'{key}' must be an integer, got '{s}'"))),
        Some(other) => Err(invalid(format!("'{key}' must be an integer, got {other}"))),
    }
}

fn number(v: Option<&Value>, key: &str) -> Result<f64, MlflowError> {
    match v {
        Some(Value::Number(n)) => Ok(n.as_f64().unwrap_or(f64::NAN)),
        Some(Value::String(s)) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" | "inf" => Ok(f64::INFINITY),
            "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
            _ => s.parse().map_err(|_| invalid(format!("Got invalid value {s} for metric '{key}'"))),
        },
        _ => Err(invalid(format!("Missing value for required parameter 'value' of metric '{key}'"))),
    }
}

/// MLflow's name rules: not empty, not too long, no path tricks.
fn check_key(kind: &str, key: &str) -> Result<(), MlflowError> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(invalid(format!("{kind} name '{key}' must be 1 to {MAX_KEY} characters")));
    }
    if key.starts_with('/') || key.split(['/', '\\']).any(|part| part == "..") {
        return Err(invalid(format!("Invalid {kind} name: '{key}'. Names may not start with '/' or contain '..' path segments")));
    }
    Ok(())
}

async fn experiment_json(app: &App, id: &str) -> Result<Value, MlflowError> {
    let e = app.store.experiment_by_id(id).await?.ok_or_else(|| not_found(format!("No Experiment with id={id} exists")))?;
    let tags: Vec<Value> = app.store.experiment_tags(id).await?.into_iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
    Ok(json!({
        "experiment_id": e.id,
        "name": e.name,
        "artifact_location": format!("mlflow-artifacts:/{}", e.id),
        "lifecycle_stage": e.lifecycle_stage,
        "creation_time": e.created_at,
        "last_update_time": e.updated_at,
        "tags": tags,
    }))
}

async fn create_experiment(State(app): State<App>, Json(body): Json<Value>) -> R {
    let name = required(&body, &["name"])?;
    if app.store.experiment_by_name(&name).await?.is_some() {
        return Err(MlflowError {
            status: StatusCode::BAD_REQUEST,
            code: "RESOURCE_ALREADY_EXISTS",
            message: format!("Experiment '{name}' already exists."),
        });
    }
    let id = app.store.create_experiment(&name).await?;
    for t in body.get("tags").and_then(|t| t.as_array()).into_iter().flatten() {
        if let (Some(k), Some(v)) = (t["key"].as_str(), t["value"].as_str()) {
            app.store.set_experiment_tag(&id, k, v).await?;
        }
    }
    Ok(Json(json!({"experiment_id": id})))
}

async fn get_experiment(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    app.store.ensure_default_experiment().await?;
    let id = q.get("experiment_id").ok_or_else(|| invalid("Missing value for required parameter 'experiment_id'"))?;
    Ok(Json(json!({"experiment": experiment_json(&app, id).await?})))
}

async fn get_experiment_by_name(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    app.store.ensure_default_experiment().await?;
    let name = q.get("experiment_name").ok_or_else(|| invalid("Missing value for required parameter 'experiment_name'"))?;
    let e = app.store.experiment_by_name(name).await?.ok_or_else(|| not_found(format!("Could not find experiment with name '{name}'")))?;
    Ok(Json(json!({"experiment": experiment_json(&app, &e.id).await?})))
}

async fn search_experiments_get(state: State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    search_experiments(state, Json(json!({"view_type": q.get("view_type"), "max_results": q.get("max_results")}))).await
}

async fn search_experiments(State(app): State<App>, Json(body): Json<Value>) -> R {
    app.store.ensure_default_experiment().await?;
    let view = text(&body, &["view_type"]).unwrap_or_else(|| "ACTIVE_ONLY".into());
    let all = app.store.list_experiments(true).await?;
    let mut out = Vec::new();
    for e in all {
        let keep = match view.as_str() {
            "ALL" => true,
            "DELETED_ONLY" => e.lifecycle_stage == "deleted",
            _ => e.lifecycle_stage == "active",
        };
        if keep {
            out.push(experiment_json(&app, &e.id).await?);
        }
    }
    Ok(Json(json!({"experiments": out})))
}

async fn update_experiment(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = required(&body, &["experiment_id"])?;
    let e = app.store.experiment_by_id(&id).await?.ok_or_else(|| not_found(format!("No Experiment with id={id} exists")))?;
    if let Some(new_name) = text(&body, &["new_name"]) {
        app.store.rename_experiment(&e.name, &new_name).await?;
    }
    Ok(Json(json!({})))
}

async fn delete_experiment(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = required(&body, &["experiment_id"])?;
    app.store.set_experiment_stage(&id, "deleted").await?;
    Ok(Json(json!({})))
}

async fn restore_experiment(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = required(&body, &["experiment_id"])?;
    app.store.set_experiment_stage(&id, "active").await?;
    Ok(Json(json!({})))
}

async fn set_experiment_tag(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = required(&body, &["experiment_id"])?;
    let key = required(&body, &["key"])?;
    check_key("tag", &key)?;
    app.store.experiment_by_id(&id).await?.ok_or_else(|| not_found(format!("No Experiment with id={id} exists")))?;
    app.store.set_experiment_tag(&id, &key, &text(&body, &["value"]).unwrap_or_default()).await?;
    Ok(Json(json!({})))
}

async fn run_json(app: &App, run_id: &str) -> Result<Value, MlflowError> {
    let run = app.store.get_run(run_id).await.map_err(|e| match e {
        StoreError::NotFound(_) => not_found(format!("Run '{run_id}' not found")),
        other => other.into(),
    })?;
    let (experiment_id, user, stage) = app.store.run_extras(run_id).await?;
    let metrics: Vec<Value> = app
        .store
        .latest_metrics(run_id)
        .await?
        .into_iter()
        .map(|m| json!({"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step}))
        .collect();
    let s = &run.summary;
    let mut tags: Vec<Value> = run.tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
    if !run.tags.contains_key("mlflow.runName") {
        tags.push(json!({"key": "mlflow.runName", "value": s.name}));
    }
    Ok(json!({
        "info": {
            "run_id": s.id, "run_uuid": s.id, "run_name": s.name, "experiment_id": experiment_id,
            "user_id": user, "status": s.status.as_str(), "start_time": s.start_time, "end_time": s.end_time,
            "artifact_uri": format!("mlflow-artifacts:/{experiment_id}/{}/artifacts", s.id), "lifecycle_stage": stage,
        },
        "data": {
            "metrics": metrics,
            "params": s.params.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
            "tags": tags,
        },
        "inputs": {},
    }))
}

async fn create_run(State(app): State<App>, Json(body): Json<Value>) -> R {
    app.store.ensure_default_experiment().await?;
    let experiment_id = text(&body, &["experiment_id"]).unwrap_or_else(|| "0".into());
    app.store
        .experiment_by_id(&experiment_id)
        .await?
        .ok_or_else(|| not_found(format!("No Experiment with id={experiment_id} exists")))?;
    let tags: Vec<(String, String)> = body
        .get("tags")
        .and_then(|t| t.as_array())
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t["key"].as_str()?.to_string(), t["value"].as_str().unwrap_or("").to_string())))
        .collect();
    let name = text(&body, &["run_name"])
        .or_else(|| tags.iter().find(|(k, _)| k == "mlflow.runName").map(|(_, v)| v.clone()))
        .unwrap_or_else(|| format!("run-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    let start = int(&body, "start_time")?.unwrap_or_else(now_ms);
    let user = text(&body, &["user_id"]).unwrap_or_default();
    // `start_run(nested=True)` names the parent in a tag; Kiln records it
    // as the run's parent so nesting shows in listings and lineage.
    let parent = tags.iter().find(|(k, _)| k == "mlflow.parentRunId").map(|(_, v)| v.clone());
    if let Some(p) = &parent {
        app.store.run_extras(p).await.map_err(|_| not_found(format!("Parent run '{p}' not found")))?;
    }
    let id = app.store.create_run_in(&experiment_id, parent.as_deref(), &name, &user, start, "mlflow").await?;
    let mut tags = tags;
    if !tags.iter().any(|(k, _)| k == "mlflow.runName") {
        tags.push(("mlflow.runName".into(), name));
    }
    app.store.set_tags(&id, &tags).await?;
    Ok(Json(json!({"run": run_json(&app, &id).await?})))
}

async fn get_run(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    let id = q.get("run_id").or(q.get("run_uuid")).ok_or_else(|| invalid("Missing value for required parameter 'run_id'"))?;
    Ok(Json(json!({"run": run_json(&app, id).await?})))
}

async fn existing_run(app: &App, body: &Value) -> Result<String, MlflowError> {
    let id = required(body, &["run_id", "run_uuid"])?;
    let (_, _, stage) = app.store.run_extras(&id).await.map_err(|_| not_found(format!("Run '{id}' not found")))?;
    if stage != "active" {
        return Err(invalid(format!("The run {id} must be in the 'active' state. Current state is {stage}.")));
    }
    Ok(id)
}

async fn update_run(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = required(&body, &["run_id", "run_uuid"])?;
    let status = match text(&body, &["status"]) {
        Some(s) => Some(RunStatus::parse(&s).ok_or_else(|| invalid(format!("Invalid run status '{s}'")))?),
        None => None,
    };
    let name = text(&body, &["run_name"]);
    app.store.update_run(&id, status, int(&body, "end_time")?, name.as_deref()).await?;
    if let Some(n) = &name {
        app.store.set_tags(&id, &[("mlflow.runName".into(), n.clone())]).await?;
    }
    Ok(Json(json!({"run_info": run_json(&app, &id).await?["info"]})))
}

async fn delete_run(State(app): State<App>, Json(body): Json<Value>) -> R {
    app.store.set_run_stage(&required(&body, &["run_id"])?, "deleted").await?;
    Ok(Json(json!({})))
}

async fn restore_run(State(app): State<App>, Json(body): Json<Value>) -> R {
    app.store.set_run_stage(&required(&body, &["run_id"])?, "active").await?;
    Ok(Json(json!({})))
}

fn metric_point(m: &Value) -> Result<MetricPoint, MlflowError> {
    let key = required(m, &["key"])?;
    check_key("metric", &key)?;
    Ok(MetricPoint {
        value: number(m.get("value"), &key)?,
        timestamp: int(m, "timestamp")?.unwrap_or_else(now_ms),
        step: int(m, "step")?.unwrap_or(0),
        key,
    })
}

fn param_pair(p: &Value) -> Result<(String, String), MlflowError> {
    let key = required(p, &["key"])?;
    check_key("param", &key)?;
    let value = match p.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    if value.len() > MAX_PARAM_VALUE {
        return Err(invalid(format!("Param value for '{key}' had length {}, which exceeded length limit of {MAX_PARAM_VALUE}", value.len())));
    }
    Ok((key, value))
}

fn tag_pair(t: &Value) -> Result<(String, String), MlflowError> {
    let key = required(t, &["key"])?;
    check_key("tag", &key)?;
    let value = text(t, &["value"]).unwrap_or_default();
    if value.len() > MAX_TAG_VALUE {
        return Err(invalid(format!("Tag value for '{key}' had length {}, which exceeded length limit of {MAX_TAG_VALUE}", value.len())));
    }
    Ok((key, value))
}

async fn log_metric(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = existing_run(&app, &body).await?;
    app.store.log_metrics(&id, &[metric_point(&body)?]).await?;
    Ok(Json(json!({})))
}

async fn log_param(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = existing_run(&app, &body).await?;
    app.store.log_params(&id, &[param_pair(&body)?]).await?;
    Ok(Json(json!({})))
}

async fn set_tag(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = existing_run(&app, &body).await?;
    app.store.set_tags(&id, &[tag_pair(&body)?]).await?;
    Ok(Json(json!({})))
}

async fn delete_tag(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = existing_run(&app, &body).await?;
    app.store.delete_tag(&id, &required(&body, &["key"])?).await?;
    Ok(Json(json!({})))
}

async fn log_batch(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = existing_run(&app, &body).await?;
    let list = |k: &str| body.get(k).and_then(|v| v.as_array()).cloned().unwrap_or_default();
    let (metrics, params, tags) = (list("metrics"), list("params"), list("tags"));
    if metrics.len() > MAX_BATCH_METRICS || params.len() > MAX_BATCH_PARAMS || tags.len() > MAX_BATCH_TAGS {
        return Err(invalid(format!(
            "A batch logging request can contain at most {MAX_BATCH_METRICS} metrics, {MAX_BATCH_PARAMS} params and {MAX_BATCH_TAGS} tags; got {} metrics, {} params, {} tags",
            metrics.len(),
            params.len(),
            tags.len()
        )));
    }
    if metrics.len() + params.len() + tags.len() > MAX_BATCH_TOTAL {
        return Err(invalid(format!("A batch logging request can contain at most {MAX_BATCH_TOTAL} entities in total")));
    }
    // Everything is checked before anything is written.
    let metrics = metrics.iter().map(metric_point).collect::<Result<Vec<_>, _>>()?;
    let params = params.iter().map(param_pair).collect::<Result<Vec<_>, _>>()?;
    let tags = tags.iter().map(tag_pair).collect::<Result<Vec<_>, _>>()?;
    app.store.log_params(&id, &params).await?;
    app.store.log_metrics(&id, &metrics).await?;
    app.store.set_tags(&id, &tags).await?;
    Ok(Json(json!({})))
}

/// Dataset inputs are accepted and recorded as tags (`mlflow.input.<name>`)
/// until datasets are first-class.
async fn log_inputs(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = existing_run(&app, &body).await?;
    let mut tags = Vec::new();
    for d in body.get("datasets").and_then(|v| v.as_array()).into_iter().flatten() {
        let ds = &d["dataset"];
        if let Some(name) = ds["name"].as_str() {
            tags.push((format!("mlflow.input.{name}"), ds["digest"].as_str().unwrap_or("").to_string()));
        }
    }
    app.store.set_tags(&id, &tags).await?;
    Ok(Json(json!({})))
}

async fn search_runs(State(app): State<App>, Json(body): Json<Value>) -> R {
    let experiment_ids: Vec<String> = body
        .get("experiment_ids")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from).or_else(|| v.as_i64().map(|i| i.to_string())))
        .collect();
    let parsed = filter::parse(&text(&body, &["filter"]).unwrap_or_default()).map_err(|e| invalid(format!("Invalid filter: {e}")))?;
    let order_by = body
        .get("order_by")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .map(|o| filter::parse_order_by(o).map_err(|e| invalid(format!("Invalid order_by clause '{o}': {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let max_results = int(&body, "max_results")?.unwrap_or(1000);
    if !(1..=50_000).contains(&max_results) {
        return Err(invalid(format!("Invalid value {max_results} for parameter 'max_results' supplied")));
    }
    let offset = match text(&body, &["page_token"]).filter(|t| !t.is_empty()) {
        Some(t) => t.parse().map_err(|_| invalid(format!("Invalid page token '{t}'")))?,
        None => 0,
    };
    let q = SearchQuery { experiment_ids, filter: parsed, order_by, max_results, offset, ..Default::default() };
    let (runs, next) = app.store.search_runs(&q).await?;
    let mut out = Vec::with_capacity(runs.len());
    for r in &runs {
        out.push(run_json(&app, &r.id).await?);
    }
    let mut resp = json!({"runs": out});
    if let Some(n) = next {
        resp["next_page_token"] = json!(n.to_string());
    }
    Ok(Json(resp))
}

async fn metric_history(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    let id = q.get("run_id").or(q.get("run_uuid")).ok_or_else(|| invalid("Missing value for required parameter 'run_id'"))?;
    let key = q.get("metric_key").ok_or_else(|| invalid("Missing value for required parameter 'metric_key'"))?;
    app.store.run_extras(id).await.map_err(|_| not_found(format!("Run '{id}' not found")))?;
    let points = app.store.metric_history(id, key).await?;
    let metrics: Vec<Value> = points.into_iter().map(|m| json!({"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step})).collect();
    Ok(Json(json!({"metrics": metrics})))
}

// ---- model registry -------------------------------------------------------

async fn version_json(app: &App, v: &crate::store::VersionRecord) -> Result<Value, MlflowError> {
    let aliases: Vec<String> = app.store.aliases(&v.name).await?.into_iter().filter(|(_, n)| *n == v.version).map(|(a, _)| a).collect();
    Ok(json!({
        "name": v.name, "version": v.version.to_string(), "creation_timestamp": v.created_at,
        "last_updated_timestamp": v.updated_at, "current_stage": v.stage, "description": v.description,
        "source": v.source, "run_id": v.run_id.clone().unwrap_or_default(), "status": "READY", "tags": [], "aliases": aliases,
    }))
}

async fn model_json(app: &App, name: &str) -> Result<Value, MlflowError> {
    let m = app.store.model(name).await.map_err(|_| not_found(format!("Registered Model with name={name} not found")))?;
    let versions = app.store.versions(name).await?;
    // Latest version per stage, as MLflow reports them.
    let mut latest: std::collections::BTreeMap<String, &crate::store::VersionRecord> = Default::default();
    for v in &versions {
        latest.insert(v.stage.clone(), v);
    }
    let mut latest_json = Vec::new();
    for v in latest.values() {
        latest_json.push(version_json(app, v).await?);
    }
    let aliases: Vec<Value> = app.store.aliases(name).await?.into_iter().map(|(a, v)| json!({"alias": a, "version": v.to_string()})).collect();
    Ok(json!({
        "name": m.name, "creation_timestamp": m.created_at, "last_updated_timestamp": m.updated_at,
        "description": m.description, "latest_versions": latest_json, "aliases": aliases, "tags": [],
    }))
}

fn version_number(body: &Value) -> Result<i64, MlflowError> {
    let text = match body.get("version") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(invalid("Missing value for required parameter 'version'")),
    };
    text.parse().map_err(|_| invalid(format!("Model version must be an integer, got '{text}'")))
}

async fn create_model(State(app): State<App>, Json(body): Json<Value>) -> R {
    let name = required(&body, &["name"])?;
    app.store.create_model(&name, &text(&body, &["description"]).unwrap_or_default()).await.map_err(|e| match e {
        StoreError::Conflict(m) => MlflowError { status: StatusCode::BAD_REQUEST, code: "RESOURCE_ALREADY_EXISTS", message: m },
        other => other.into(),
    })?;
    Ok(Json(json!({"registered_model": model_json(&app, &name).await?})))
}

async fn get_model(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    let name = q.get("name").ok_or_else(|| invalid("Missing value for required parameter 'name'"))?;
    Ok(Json(json!({"registered_model": model_json(&app, name).await?})))
}

async fn search_models(State(app): State<App>) -> R {
    let mut out = Vec::new();
    for m in app.store.list_models().await? {
        out.push(model_json(&app, &m.name).await?);
    }
    Ok(Json(json!({"registered_models": out})))
}

async fn delete_model(State(app): State<App>, Query(q): Query<HashMap<String, String>>, body: Option<Json<Value>>) -> R {
    let name = body.and_then(|Json(b)| text(&b, &["name"])).or_else(|| q.get("name").cloned()).ok_or_else(|| invalid("Missing value for required parameter 'name'"))?;
    app.store.delete_model(&name).await?;
    Ok(Json(json!({})))
}

async fn latest_versions_get(state: State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    let stages: Vec<Value> = q.get("stages").map(|s| vec![json!(s)]).unwrap_or_default();
    latest_versions(state, Json(json!({"name": q.get("name"), "stages": stages}))).await
}

async fn latest_versions(State(app): State<App>, Json(body): Json<Value>) -> R {
    let name = required(&body, &["name"])?;
    app.store.model(&name).await.map_err(|_| not_found(format!("Registered Model with name={name} not found")))?;
    let wanted: Vec<String> = body.get("stages").and_then(|s| s.as_array()).into_iter().flatten().filter_map(|s| s.as_str().map(|s| s.to_ascii_lowercase())).collect();
    let mut latest: std::collections::BTreeMap<String, crate::store::VersionRecord> = Default::default();
    for v in app.store.versions(&name).await? {
        if wanted.is_empty() || wanted.contains(&v.stage.to_ascii_lowercase()) {
            latest.insert(v.stage.clone(), v);
        }
    }
    let mut out = Vec::new();
    for v in latest.values() {
        out.push(version_json(&app, v).await?);
    }
    Ok(Json(json!({"model_versions": out})))
}

async fn create_version(State(app): State<App>, Json(body): Json<Value>) -> R {
    let name = required(&body, &["name"])?;
    let source = required(&body, &["source"])?;
    let run_id = text(&body, &["run_id"]).filter(|r| !r.is_empty());
    if let Some(r) = &run_id {
        app.store.run_extras(r).await.map_err(|_| not_found(format!("Run '{r}' not found")))?;
    }
    let v = app
        .store
        .create_version(&name, &source, run_id.as_deref(), &text(&body, &["description"]).unwrap_or_default())
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => not_found(format!("Registered Model with name={name} not found")),
            other => other.into(),
        })?;
    Ok(Json(json!({"model_version": version_json(&app, &v).await?})))
}

async fn get_version(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    let name = q.get("name").ok_or_else(|| invalid("Missing value for required parameter 'name'"))?;
    let version = version_number(&json!({"version": q.get("version")}))?;
    let v = app.store.version(name, version).await?;
    Ok(Json(json!({"model_version": version_json(&app, &v).await?})))
}

/// `filter=name='m'` (the form clients send); other filters are refused.
async fn search_versions(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    let f = q.get("filter").cloned().unwrap_or_default();
    let name = f
        .trim()
        .strip_prefix("name")
        .map(str::trim_start)
        .and_then(|r| r.strip_prefix('='))
        .map(|r| r.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
        .ok_or_else(|| invalid(format!("Unsupported model version filter '{f}': use name='MODEL'")))?;
    let mut out = Vec::new();
    for v in app.store.versions(&name).await? {
        out.push(version_json(&app, &v).await?);
    }
    Ok(Json(json!({"model_versions": out})))
}

async fn transition_stage(State(app): State<App>, Json(body): Json<Value>) -> R {
    let name = required(&body, &["name"])?;
    let version = version_number(&body)?;
    let stage = required(&body, &["stage"])?;
    let archive = body.get("archive_existing_versions").and_then(|v| v.as_bool().or_else(|| v.as_str().map(|s| s == "true"))).unwrap_or(false);
    let v = app.store.transition_stage(&name, version, &stage, archive).await?;
    Ok(Json(json!({"model_version": version_json(&app, &v).await?})))
}

async fn set_alias(State(app): State<App>, Json(body): Json<Value>) -> R {
    let name = required(&body, &["name"])?;
    let alias = required(&body, &["alias"])?;
    if alias.eq_ignore_ascii_case("latest") || alias.starts_with('v') && alias[1..].chars().all(|c| c.is_ascii_digit()) {
        return Err(invalid(format!("'{alias}' is reserved and cannot be used as an alias")));
    }
    app.store.set_alias(&name, &alias, version_number(&body)?).await?;
    Ok(Json(json!({})))
}

async fn delete_alias(State(app): State<App>, Query(q): Query<HashMap<String, String>>, body: Option<Json<Value>>) -> R {
    let b = body.map(|Json(b)| b).unwrap_or_else(|| json!({"name": q.get("name"), "alias": q.get("alias")}));
    app.store.delete_alias(&required(&b, &["name"])?, &required(&b, &["alias"])?).await?;
    Ok(Json(json!({})))
}

async fn get_by_alias(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    let name = q.get("name").ok_or_else(|| invalid("Missing value for required parameter 'name'"))?;
    let alias = q.get("alias").ok_or_else(|| invalid("Missing value for required parameter 'alias'"))?;
    let v = app.store.version_by_alias(name, alias).await?;
    Ok(Json(json!({"model_version": version_json(&app, &v).await?})))
}
