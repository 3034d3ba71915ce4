//! Kiln's own tracking API under `/api/v1/`: experiments, runs, batch
//! logging, metric history, search, artifacts. The same store calls the
//! CLI makes; JSON shapes are the CLI's `--json` shapes.

use super::ApiError;
use super::mlflow::{MAX_KEY, NameProblem, name_problem};
use crate::app::App;
use crate::store::{MetricPoint, NewRun, RunStatus, now_ms};
use crate::views;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

type R = Result<Json<Value>, ApiError>;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

pub async fn list_experiments(State(app): State<App>) -> R {
    Ok(Json(json!(views::all::<_, views::Experiment>(&app.store.list_experiments(false).await?))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameBody {
    name: String,
}

pub async fn create_experiment(State(app): State<App>, Json(b): Json<NameBody>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = app.store.create_experiment(&b.name).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id, "name": b.name}))))
}

pub async fn rename_experiment(State(app): State<App>, Path(name): Path<String>, Json(b): Json<NameBody>) -> R {
    app.store.rename_experiment(&name, &b.name).await?;
    Ok(Json(json!({"name": b.name})))
}

pub async fn delete_experiment(State(app): State<App>, Path(name): Path<String>) -> R {
    app.store.set_experiment_stage(&name, "deleted").await?;
    Ok(Json(json!({"name": name, "lifecycle_stage": "deleted"})))
}

pub async fn restore_experiment(State(app): State<App>, Path(name): Path<String>) -> R {
    app.store.set_experiment_stage(&name, "active").await?;
    Ok(Json(json!({"name": name, "lifecycle_stage": "active"})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    experiment: String,
    name: Option<String>,
    parent_run_id: Option<String>,
}

pub async fn create_run(State(app): State<App>, Json(b): Json<CreateRun>) -> Result<(StatusCode, Json<Value>), ApiError> {
    if let Some(p) = &b.parent_run_id {
        app.store.get_run(p).await?;
    }
    let name = b.name.unwrap_or_else(|| b.experiment.clone());
    let id = app.store.create_run(NewRun { experiment: b.experiment, name, parent: b.parent_run_id, source: "api".into() }).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id, "status": "RUNNING"}))))
}

pub async fn get_run(State(app): State<App>, Path(id): Path<String>) -> R {
    Ok(Json(json!(views::Run::from(&app.store.get_run(&id).await?))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRun {
    status: Option<String>,
    end_time: Option<i64>,
    name: Option<String>,
}

pub async fn update_run(State(app): State<App>, Path(id): Path<String>, Json(b): Json<UpdateRun>) -> R {
    let status = match b.status.as_deref() {
        Some(s) => {
            Some(RunStatus::parse(s).ok_or_else(|| bad(format!("`status` must be RUNNING, SCHEDULED, FINISHED, FAILED or KILLED, got `{s}`")))?)
        }
        None => None,
    };
    let end = b.end_time.or(status.filter(|s| !matches!(s, RunStatus::Running | RunStatus::Scheduled)).map(|_| now_ms()));
    app.store.update_run(&id, status, end, b.name.as_deref()).await?;
    Ok(Json(json!(views::Run::from(&app.store.get_run(&id).await?))))
}

pub async fn delete_run(State(app): State<App>, Path(id): Path<String>) -> R {
    app.store.set_run_stage(&id, "deleted").await?;
    Ok(Json(json!({"id": id, "lifecycle_stage": "deleted"})))
}

pub async fn restore_run(State(app): State<App>, Path(id): Path<String>) -> R {
    app.store.set_run_stage(&id, "active").await?;
    Ok(Json(json!({"id": id, "lifecycle_stage": "active"})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricIn {
    key: String,
    /// Any JSON, so a string such as `"NaN"` gets this API's message
    /// rather than a deserialisation error.
    value: Option<Value>,
    #[serde(default)]
    step: i64,
    timestamp: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LogBatch {
    #[serde(default)]
    params: BTreeMap<String, Value>,
    #[serde(default)]
    metrics: Vec<MetricIn>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

/// Largest batch one request may log.
const MAX_BATCH: usize = 10_000;

/// A metric, param or tag name must follow MLflow's rules (so what is
/// logged here reads and logs the same through MLflow clients); `field`
/// names where the name was in the request.
fn check_key(field: &str, key: &str) -> Result<(), ApiError> {
    let len = key.chars().count();
    if len == 0 {
        return Err(bad(format!("{field} must not be empty")));
    }
    if len > MAX_KEY {
        let start: String = key.chars().take(40).collect();
        return Err(bad(format!("{field} {start:?}… is {len} characters long; names are at most {MAX_KEY} characters")));
    }
    match name_problem(key) {
        None => Ok(()),
        Some(NameProblem::Characters) => {
            let c = key.chars().find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '/' | '.' | '-' | ' ' | ':'))).unwrap_or('?');
            Err(bad(format!(
                "{field} {key:?} contains {c:?}; names may only contain letters, digits, underscores, dashes, periods, spaces, colons and slashes"
            )))
        }
        Some(NameProblem::Resolves(norm)) => Err(bad(format!(
            "{field} {key:?} would resolve to {norm:?} as a file path; names may not start or end with `/`, or contain `//`, `.` or `..` segments"
        ))),
    }
}

/// `POST /api/v1/runs/{id}/log`: params, metrics and tags, stored whole or
/// not at all; everything is checked before anything is written.
pub async fn log_batch(State(app): State<App>, Path(id): Path<String>, body: Result<Json<LogBatch>, JsonRejection>) -> R {
    let Json(b) = body.map_err(|r| {
        let status = if r.status() == StatusCode::UNPROCESSABLE_ENTITY { StatusCode::BAD_REQUEST } else { r.status() };
        ApiError::new(status, format!("the request body is not a log batch: {}", r.body_text()))
    })?;
    let total = b.params.len() + b.metrics.len() + b.tags.len();
    if total > MAX_BATCH {
        return Err(bad(format!(
            "a batch holds at most {MAX_BATCH} params, metrics and tags together; this one has {total} ({} metrics, {} params, {} tags): split it across requests",
            b.metrics.len(),
            b.params.len(),
            b.tags.len()
        )));
    }
    let now = now_ms();
    let mut points = Vec::with_capacity(b.metrics.len());
    for (i, m) in b.metrics.iter().enumerate() {
        check_key(&format!("metrics[{i}].key"), &m.key)?;
        let value = match &m.value {
            Some(Value::Number(n)) => n.as_f64().filter(|v| v.is_finite()),
            _ => None,
        };
        let value = value.ok_or_else(|| {
            let got = match &m.value {
                None => "nothing".to_string(),
                Some(v @ Value::String(_)) => format!("{v} (a string; the MLflow API under /api/2.0/mlflow takes \"NaN\" and \"Infinity\")"),
                Some(v) => v.to_string(),
            };
            bad(format!("metric `{}` needs a finite number as `value` (metrics[{i}].value), got {got}", m.key))
        })?;
        points.push(MetricPoint { key: m.key.clone(), value, step: m.step, timestamp: m.timestamp.unwrap_or(now) });
    }
    let mut params = Vec::new();
    for (k, v) in &b.params {
        check_key("params key", k)?;
        params.push((
            k.clone(),
            match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        ));
    }
    for k in b.tags.keys() {
        check_key("tags key", k)?;
    }
    app.store.get_run(&id).await?;
    // One write: a batch is stored whole or not at all.
    app.store.log_batch(&id, &points, &params, &b.tags.into_iter().collect::<Vec<_>>()).await?;
    Ok(Json(json!({"params": params.len(), "metrics": points.len()})))
}

pub async fn metric_history(State(app): State<App>, Path((id, key)): Path<(String, String)>) -> R {
    app.store.get_run(&id).await?;
    Ok(Json(json!(views::all::<_, views::MetricPoint>(&app.store.metric_history(&id, &key).await?))))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    #[serde(default)]
    filter: String,
    #[serde(default)]
    experiments: Vec<String>,
    #[serde(default)]
    order_by: Vec<String>,
    max_results: Option<i64>,
    page_token: Option<String>,
}

pub async fn search_runs(State(app): State<App>, Json(b): Json<SearchBody>) -> R {
    use kiln_services::tracking::{SearchError, SearchRequest};
    let request = SearchRequest {
        filter: &b.filter,
        order_by: b.order_by.iter().map(String::as_str).collect(),
        max_results: b.max_results.unwrap_or(100),
        page_token: b.page_token.as_deref(),
        experiments: b.experiments.clone(),
        ..Default::default()
    };
    let q = request.query().map_err(|e| match e {
        SearchError::Experiments(m) => bad(format!("`experiments`: {m}")),
        SearchError::Filter(m) => bad(format!("invalid filter: {m}")),
        SearchError::OrderBy { clause, message } => bad(format!("invalid order_by `{clause}`: {message}")),
        SearchError::MaxResults(n) => bad(format!("`max_results` must be between 1 and 50000, got {n}")),
        SearchError::PageToken(m) => bad(format!("`page_token`: {m}")),
    })?;
    let (runs, next) = app.store.search_runs(&q).await?;
    Ok(Json(json!({"runs": views::all::<_, views::RunSummary>(&runs), "next_page_token": next.map(|n| n.to_string())})))
}

pub async fn list_artifacts(State(app): State<App>, Path(id): Path<String>) -> R {
    Ok(Json(json!(views::all::<_, views::Artifact>(&app.store.get_run(&id).await?.artifacts))))
}

pub async fn upload_artifact(
    State(app): State<App>,
    Path((id, path)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    app.store.get_run(&id).await?;
    kiln_services::tracking::check_artifact_path(&path).map_err(bad)?;
    let (blob, size) = super::artifacts::receive(&app.blobs, body, app.limits.upload_size)
        .await
        .map_err(|e| ApiError::new(e.status(), format!("storing artifact `{path}` failed: {e}")))?;
    // The uploader's Content-Type is not kept: downloads type by name.
    let _ = headers;
    app.store.add_artifact(&id, &path, &blob, size as i64, &super::artifacts::media_type_for(&path)).await?;
    Ok((StatusCode::CREATED, Json(json!({"path": path, "size": size, "blob": blob}))))
}

pub async fn download_artifact(State(app): State<App>, Path((id, path)): Path<(String, String)>) -> Result<Response, ApiError> {
    let run = app.store.get_run(&id).await?;
    let a = run
        .artifacts
        .iter()
        .find(|a| a.path == path)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("run `{id}` has no artifact `{path}`")))?;
    super::artifacts::send_artifact(&app.blobs, &a.blob, &a.path)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("artifact `{path}`: {e}")))
}

/// The OpenAPI document of `/api/v1/`, kept beside the routes it describes
/// (tests/e2e/api.rs checks every route it calls is documented).
pub async fn openapi() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], include_str!("openapi.json")).into_response()
}
