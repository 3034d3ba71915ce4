//! The MLflow tracking REST API (`/api/2.0/mlflow/...`), so existing MLflow
//! client code logs to Kiln unmodified: experiments, runs, params, metrics
//! with steps, tags, batches, search and metric history. Errors use
//! MLflow's codes and statuses.

use crate::app::App;
use crate::registry;
use crate::store::{MetricPoint, RunStatus, RunView, StoreError, now_ms};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::collections::HashMap;

/// MLflow's validation limits (mlflow/utils/validation.py), in characters
/// and entities.
pub(crate) const MAX_KEY: usize = 250;
const MAX_PARAM_VALUE: usize = 6000;
const MAX_TAG_VALUE: usize = 8000;
const MAX_EXPERIMENT_TAG_VALUE: usize = 20_000;
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
        .route("/api/2.0/mlflow-artifacts/artifacts/{*path}", get(download_artifact).put(upload_artifact))
}

/// MLflow 3 clients look for logged models when listing artifacts; Kiln
/// keeps models in its registry, so there are none of MLflow's kind.
async fn search_logged_models() -> Json<Value> {
    Json(json!({"models": []}))
}

/// `<experiment>/<run>/artifacts[/<path>]` → (run id, path inside the run).
fn split_artifact_path(path: &str) -> Result<(String, String), MlflowError> {
    let mut parts = path.trim_matches('/').splitn(4, '/');
    let (_experiment, run, root) = (parts.next(), parts.next(), parts.next());
    let (Some(run), Some("artifacts")) = (run, root) else {
        return Err(invalid(format!("artifact path '{path}' is not <experiment>/<run>/artifacts/<path>")));
    };
    let rel = parts.next().unwrap_or("").trim_matches('/').to_string();
    // Empty: the run's artifact root (for listing).
    if !rel.is_empty() {
        kiln_services::tracking::check_artifact_path(&rel).map_err(|e| invalid(format!("Invalid artifact path: {e}")))?;
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
    body: axum::body::Body,
) -> R {
    let (run_id, rel) = split_artifact_path(&path)?;
    if rel.is_empty() {
        return Err(invalid("an artifact needs a file name"));
    }
    app.store.run_extras(&run_id).await.map_err(|_| no_run(&run_id))?;
    let (blob, size) = super::artifacts::receive(&app.blobs, body, app.limits.upload_size).await.map_err(|e| match e.status() {
        s if s.is_client_error() => MlflowError { status: s, code: "INVALID_PARAMETER_VALUE", message: e.to_string() },
        _ => internal(format!("storing artifact {rel} of run {run_id}: {e}")),
    })?;
    let media = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/octet-stream");
    app.store.add_artifact(&run_id, &rel, &blob, size as i64, media).await?;
    Ok(Json(json!({})))
}

async fn download_artifact(State(app): State<App>, axum::extract::Path(path): axum::extract::Path<String>) -> Result<Response, MlflowError> {
    let (run_id, rel) = split_artifact_path(&path)?;
    let run = app.store.get_run(&run_id).await?;
    let a = run.artifacts.iter().find(|a| a.path == rel).ok_or_else(|| not_found(format!("artifact '{rel}' of run '{run_id}'")))?;
    super::artifacts::send(&app.blobs, &a.blob, &a.media_type).map_err(|e| internal(format!("artifact '{rel}' of run {run_id} cannot be read: {e}")))
}

async fn list_artifacts(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    let (run_id, rel) = split_artifact_path(q.get("path").map(String::as_str).unwrap_or(""))?;
    Ok(Json(json!({"files": children(&app, &run_id, &rel).await?})))
}

async fn list_run_artifacts(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    let run_id = q.get("run_id").or(q.get("run_uuid")).filter(|s| !s.is_empty()).ok_or_else(|| missing("run_id"))?;
    let (experiment, _, _) = app.store.run_extras(run_id).await.map_err(|_| no_run(run_id))?;
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
    /// A 5xx body carries only the request id; the detail goes to the log.
    fn into_response(self) -> Response {
        let message = if self.status.is_server_error() { super::guard::server_fault(&self.message) } else { self.message };
        (self.status, Json(json!({"error_code": self.code, "message": message}))).into_response()
    }
}

fn internal(detail: impl Into<String>) -> MlflowError {
    MlflowError { status: StatusCode::INTERNAL_SERVER_ERROR, code: "INTERNAL_ERROR", message: detail.into() }
}

impl From<StoreError> for MlflowError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => not_found(format!("{m} not found")),
            StoreError::Invalid(m) => invalid(m),
            StoreError::Conflict(m) => invalid(m),
            StoreError::RunNotActive { run, stage } => invalid(format!("The run {run} must be in the 'active' state. Current state is {stage}.")),
            other => internal(other.to_string()),
        }
    }
}

type R = Result<Json<Value>, MlflowError>;

fn text(body: &Value, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| body.get(*k).and_then(|v| v.as_str()).map(String::from))
}

fn required(body: &Value, keys: &[&str]) -> Result<String, MlflowError> {
    text(body, keys).filter(|s| !s.is_empty()).ok_or_else(|| missing(keys[0]))
}

/// int64 fields arrive as JSON numbers or, from protobuf's JSON, as strings.
fn int(body: &Value, key: &str) -> Result<Option<i64>, MlflowError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).map(Some).ok_or_else(|| invalid(format!("'{key}' must be an integer")))
        }
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| invalid(format!("'{key}' must be an integer, got '{s}'"))),
        Some(other) => Err(invalid(format!("'{key}' must be an integer, got {other}"))),
    }
}

/// MLflow's "required parameter" message (server/handlers.py).
fn missing(path: &str) -> MlflowError {
    invalid(format!("Missing value for required parameter '{path}'. See the API docs for more information about request parameters."))
}

fn no_run(id: &str) -> MlflowError {
    not_found(format!("Run with id={id} not found"))
}

/// A JSON value as Python's `json.dumps` writes it in MLflow's messages
/// (non-ASCII escaped).
fn py_json(v: &Value) -> String {
    let mut out = String::new();
    for c in v.to_string().chars() {
        if (c as u32) < 0x7f {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut [0; 2]) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// A float as Python's `str` writes it (`1.0`, `nan`, `inf`).
fn py_float(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf".into() } else { "-inf".into() }
    } else if v.fract() == 0.0 && v.abs() < 1e16 {
        format!("{v:.1}")
    } else {
        v.to_string()
    }
}

fn py_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// `Invalid value … for parameter '…' supplied…`, MLflow's `invalid_value`.
fn invalid_value(path: &str, value: &Value, message: Option<&str>) -> MlflowError {
    let value = py_json(value);
    invalid(match message {
        Some(m) => format!("Invalid value {value} for parameter '{path}' supplied: {m}"),
        None => format!("Invalid value {value} for parameter '{path}' supplied."),
    })
}

/// The message MLflow's request schema gives a field of the wrong type.
fn wrong_type(path: &str, value: &Value) -> MlflowError {
    let hint = format!(" Hint: Value was of type '{}'. See the API docs for more information about request parameters.", py_type(value));
    invalid_value(path, value, Some(&hint))
}

/// `field` inside an entity at `path` (`metrics[2]` in a batch, `` for a
/// single call), as MLflow's `append_to_json_path` names it.
fn at(path: &str, field: &str) -> String {
    if path.is_empty() { field.to_string() } else { format!("{path}.{field}") }
}

/// A required, non-empty string field.
fn required_str(body: &Value, key: &str, path: &str) -> Result<String, MlflowError> {
    match body.get(key) {
        None | Some(Value::Null) => Err(missing(&at(path, key))),
        Some(Value::String(s)) if s.is_empty() => Err(missing(&at(path, key))),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(wrong_type(&at(path, key), other)),
    }
}

/// The run id of a run-scoped call: required, and in a batch shaped as
/// MLflow's `_validate_run_id` wants.
fn run_id(body: &Value) -> Result<String, MlflowError> {
    let key = if body.get("run_id").is_some() || body.get("run_uuid").is_none() { "run_id" } else { "run_uuid" };
    required_str(body, key, "")
}

/// A double field: a JSON number, or a string as protobuf's JSON and
/// MLflow's client send NaN and the infinities (`"NaN"`, `"Infinity"`,
/// `"-Infinity"`; Python's `float()` spellings are taken too).
fn double(v: Option<&Value>, path: &str) -> Result<f64, MlflowError> {
    match v {
        None | Some(Value::Null) => Err(missing(path)),
        Some(Value::Number(n)) => n.as_f64().ok_or_else(|| wrong_type(path, &Value::Number(n.clone()))),
        Some(Value::String(s)) if s.is_empty() => Err(missing(path)),
        Some(Value::String(s)) => s.trim().parse::<f64>().map_err(|_| wrong_type(path, &Value::String(s.clone()))),
        Some(other) => Err(wrong_type(path, other)),
    }
}

/// A double as protobuf's JSON writes it, which is how MLflow's server
/// answers and its client reads: NaN and the infinities as strings.
fn double_json(v: f64) -> Value {
    if v.is_nan() {
        json!("NaN")
    } else if v == f64::INFINITY {
        json!("Infinity")
    } else if v == f64::NEG_INFINITY {
        json!("-Infinity")
    } else {
        json!(v)
    }
}

/// Why a metric, param or tag name breaks MLflow's rules (on a POSIX
/// server), if it does.
#[derive(Debug, PartialEq)]
pub(crate) enum NameProblem {
    /// A character outside letters, digits, `_ - . : /` and space.
    Characters,
    /// As a file path the name would be another name: `a/../b`, `/a`,
    /// `a//b`, `./a`, `a/`, `..`. Holds what it resolves to.
    Resolves(String),
}

pub(crate) const NAME_CHARACTERS: &str =
    "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colon(:) and slashes (/).";

/// MLflow's `validate_param_and_metric_name` and `path_not_unique`.
pub(crate) fn name_problem(name: &str) -> Option<NameProblem> {
    if !name.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '/' | '.' | '-' | ' ' | ':')) {
        return Some(NameProblem::Characters);
    }
    let norm = normpath(name);
    if norm != name || norm == "." || norm.starts_with("..") || norm.starts_with('/') {
        return Some(NameProblem::Resolves(norm));
    }
    None
}

/// Python's `posixpath.normpath`.
fn normpath(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let slashes = if path.starts_with("//") && !path.starts_with("///") { 2 } else { usize::from(path.starts_with('/')) };
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if !(slashes == 0 && parts.is_empty()) && parts.last() != Some(&"..") => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    let out = format!("{}{}", "/".repeat(slashes), parts.join("/"));
    if out.is_empty() { ".".into() } else { out }
}

/// MLflow's `_validate_metric_name` / `_validate_param_name` /
/// `_validate_tag_name`, with its messages.
fn check_name(name: &str, path: &str) -> Result<(), MlflowError> {
    let Some(problem) = name_problem(name) else {
        return Ok(());
    };
    let value = Value::String(name.to_string());
    match problem {
        NameProblem::Characters => Err(invalid_value(path, &value, Some(NAME_CHARACTERS))),
        NameProblem::Resolves(norm) => Err(invalid_value(
            path,
            &value,
            Some(&format!(
                "Names may be treated as files in certain cases, and must not resolve to other names when treated as such. This name would resolve to '{norm}'"
            )),
        )),
    }
}

/// MLflow's `_validate_length_limit` without truncation (names).
fn check_length(entity: &str, limit: usize, value: &str) -> Result<(), MlflowError> {
    if value.chars().count() > limit {
        return Err(invalid(format!("'{entity}' exceeds the maximum length of {limit} characters")));
    }
    Ok(())
}

/// MLflow's `_validate_length_limit(..., truncate=True)`: overlong param
/// and tag values are cut to the limit with a warning
/// (`MLFLOW_TRUNCATE_LONG_VALUES` is on by default), not refused.
fn truncated(entity: &str, key: &str, limit: usize, value: String) -> String {
    match value.char_indices().nth(limit) {
        None => value,
        Some((cut, _)) => {
            tracing::warn!("{entity} of '{key}' ({} characters) is truncated to {limit} characters to meet the length limit", value.chars().count());
            value[..cut].to_string()
        }
    }
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
    let tags = list(&body, "tags")?.iter().map(experiment_tag).collect::<Result<Vec<_>, _>>()?;
    let id = app.store.create_experiment(&name).await?;
    for (k, v) in &tags {
        app.store.set_experiment_tag(&id, k, v).await?;
    }
    Ok(Json(json!({"experiment_id": id})))
}

async fn get_experiment(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    app.store.ensure_default_experiment().await?;
    let id = q.get("experiment_id").ok_or_else(|| missing("experiment_id"))?;
    Ok(Json(json!({"experiment": experiment_json(&app, id).await?})))
}

async fn get_experiment_by_name(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    app.store.ensure_default_experiment().await?;
    let name = q.get("experiment_name").ok_or_else(|| missing("experiment_name"))?;
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
    let (key, value) = experiment_tag(&body)?;
    app.store.experiment_by_id(&id).await?.ok_or_else(|| not_found(format!("No Experiment with id={id} exists")))?;
    app.store.set_experiment_tag(&id, &key, &value).await?;
    Ok(Json(json!({})))
}

async fn run_json(app: &App, run_id: &str) -> Result<Value, MlflowError> {
    let views = app.store.run_views(&[run_id.to_string()]).await?;
    views.first().map(view_json).ok_or_else(|| no_run(run_id))
}

fn view_json(v: &RunView) -> Value {
    serde_json::to_value(RunJson(v)).expect("a run serialises")
}

/// A run in MLflow's shape, written straight from the view (no `Value`
/// tree: a search answers with a thousand of these).
struct RunJson<'a>(&'a RunView);

impl serde::Serialize for RunJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        let v = self.0;
        struct Info<'a>(&'a RunView);
        impl serde::Serialize for Info<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let v = self.0;
                let mut m = s.serialize_map(Some(10))?;
                m.serialize_entry("run_id", &v.id)?;
                m.serialize_entry("run_uuid", &v.id)?;
                m.serialize_entry("run_name", &v.name)?;
                m.serialize_entry("experiment_id", &v.experiment_id)?;
                m.serialize_entry("user_id", &v.user_id)?;
                m.serialize_entry("status", &v.status)?;
                m.serialize_entry("start_time", &v.start_time)?;
                m.serialize_entry("end_time", &v.end_time)?;
                m.serialize_entry("artifact_uri", &format!("mlflow-artifacts:/{}/{}/artifacts", v.experiment_id, v.id))?;
                m.serialize_entry("lifecycle_stage", &v.lifecycle_stage)?;
                m.end()
            }
        }
        struct Pairs<'a>(&'a [(String, String)], Option<&'a str>);
        impl serde::Serialize for Pairs<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.len() + usize::from(self.1.is_some())))?;
                for (k, v) in self.0 {
                    seq.serialize_element(&KeyValue(k, v))?;
                }
                if let Some(name) = self.1 {
                    seq.serialize_element(&KeyValue("mlflow.runName", name))?;
                }
                seq.end()
            }
        }
        struct KeyValue<'a>(&'a str, &'a str);
        impl serde::Serialize for KeyValue<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("key", self.0)?;
                m.serialize_entry("value", self.1)?;
                m.end()
            }
        }
        struct Metrics<'a>(&'a [MetricPoint]);
        impl serde::Serialize for Metrics<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.len()))?;
                for p in self.0 {
                    seq.serialize_element(&MetricJson::from(p))?;
                }
                seq.end()
            }
        }
        struct Data<'a>(&'a RunView);
        impl serde::Serialize for Data<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let v = self.0;
                // Runs not made through MLflow's API have no name tag; its
                // client reads the name from there.
                let name = (!v.tags.iter().any(|(k, _)| k == "mlflow.runName")).then_some(v.name.as_str());
                let mut m = s.serialize_map(Some(3))?;
                m.serialize_entry("metrics", &Metrics(&v.metrics))?;
                m.serialize_entry("params", &Pairs(&v.params, None))?;
                m.serialize_entry("tags", &Pairs(&v.tags, name))?;
                m.end()
            }
        }
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("info", &Info(v))?;
        m.serialize_entry("data", &Data(v))?;
        m.serialize_entry("inputs", &serde_json::Map::new())?;
        m.end()
    }
}

/// A metric point as MLflow writes it (NaN and the infinities as strings).
struct MetricJson<'a> {
    key: &'a str,
    value: f64,
    timestamp: i64,
    step: i64,
}

impl<'a> From<&'a MetricPoint> for MetricJson<'a> {
    fn from(p: &'a MetricPoint) -> Self {
        MetricJson { key: &p.key, value: p.value, timestamp: p.timestamp, step: p.step }
    }
}

impl serde::Serialize for MetricJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let p = self;
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("key", &p.key)?;
        if p.value.is_finite() {
            m.serialize_entry("value", &p.value)?;
        } else {
            m.serialize_entry("value", &double_json(p.value))?;
        }
        m.serialize_entry("timestamp", &p.timestamp)?;
        m.serialize_entry("step", &p.step)?;
        m.end()
    }
}

async fn create_run(State(app): State<App>, Json(body): Json<Value>) -> R {
    app.store.ensure_default_experiment().await?;
    let experiment_id = text(&body, &["experiment_id"]).unwrap_or_else(|| "0".into());
    app.store.experiment_by_id(&experiment_id).await?.ok_or_else(|| not_found(format!("No Experiment with id={experiment_id} exists")))?;
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
    let id = q.get("run_id").or(q.get("run_uuid")).filter(|s| !s.is_empty()).ok_or_else(|| missing("run_id"))?;
    Ok(Json(json!({"run": run_json(&app, id).await?})))
}

/// A write to run `id` through the store's writer, which refuses unknown
/// and deleted runs itself (no lookup first: a round trip per call).
fn logged(id: &str, r: Result<(), StoreError>) -> Result<(), MlflowError> {
    r.map_err(|e| match e {
        StoreError::NotFound(_) => no_run(id),
        other => other.into(),
    })
}

/// A run that exists and is not deleted, as MLflow requires for logging.
async fn active_run(app: &App, id: &str) -> Result<(), MlflowError> {
    let (_, _, stage) = app.store.run_extras(id).await.map_err(|e| match e {
        StoreError::NotFound(_) => no_run(id),
        other => other.into(),
    })?;
    if stage != "active" {
        return Err(invalid(format!("The run {id} must be in the 'active' state. Current state is {stage}.")));
    }
    Ok(())
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

/// A metric of a `log-metric` call (`path` empty) or the `metrics[i]` of a
/// batch, checked as MLflow's `_validate_metric` does, in its order.
/// MLflow refuses a negative timestamp; `path` (the metric's place in the
/// request) is spelled out only for the error.
fn check_timestamp(key: &str, value: f64, timestamp: i64, path: impl FnOnce() -> String) -> Result<(), MlflowError> {
    if timestamp < 0 {
        return Err(invalid_value(
            &at(&path(), "timestamp"),
            &json!(timestamp),
            Some(&format!("metric '{key}' (value={}). Timestamp must be a nonnegative long (64-bit integer) ", py_float(value))),
        ));
    }
    Ok(())
}

fn metric_point(m: &Value, path: &str) -> Result<MetricPoint, MlflowError> {
    let key = required_str(m, "key", path)?;
    let value = double(m.get("value"), &at(path, "value"))?;
    check_name(&key, &at(path, "name"))?;
    let timestamp = int(m, "timestamp")?.unwrap_or_else(now_ms);
    check_timestamp(&key, value, timestamp, || path.to_string())?;
    let step = int(m, "step")?.unwrap_or(0);
    check_length("Metric name", MAX_KEY, &key)?;
    Ok(MetricPoint { key, value, timestamp, step })
}

fn param_pair(p: &Value, path: &str) -> Result<(String, String), MlflowError> {
    let key = required_str(p, "key", path)?;
    check_name(&key, &at(path, "key"))?;
    check_length("Param key", MAX_KEY, &key)?;
    let value = match p.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let value = truncated("Param value", &key, MAX_PARAM_VALUE, value);
    Ok((key, value))
}

fn tag_pair(t: &Value, path: &str) -> Result<(String, String), MlflowError> {
    let key = required_str(t, "key", path)?;
    check_name(&key, &at(path, "key"))?;
    check_length(&at(path, "key"), MAX_KEY, &key)?;
    let value = truncated("Tag value", &key, MAX_TAG_VALUE, text(t, &["value"]).unwrap_or_default());
    Ok((key, value))
}

/// An experiment tag, as MLflow's `_validate_experiment_tag` checks it
/// (values are refused, not truncated, past 20,000 characters).
fn experiment_tag(t: &Value) -> Result<(String, String), MlflowError> {
    let key = required_str(t, "key", "")?;
    check_name(&key, "key")?;
    check_length("key", MAX_KEY, &key)?;
    let value = text(t, &["value"]).unwrap_or_default();
    check_length("value", MAX_EXPERIMENT_TAG_VALUE, &value)?;
    Ok((key, value))
}

/// A list field of a batch: absent is empty, anything but a list is
/// refused as MLflow's schema refuses it.
fn list<'a>(body: &'a Value, key: &str) -> Result<&'a [Value], MlflowError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(wrong_type(key, other)),
    }
}

fn batch_limit(entity: &str, limit: usize, length: usize) -> Result<(), MlflowError> {
    if length > limit {
        return Err(invalid(format!(
            "A batch logging request can contain at most {limit} {entity}. Got {length} {entity}. Please split up {entity} across multiple requests and try again."
        )));
    }
    Ok(())
}

// MLflow checks what is logged before it looks the run up, so a bad name
// on an unknown run is a 400, as there.

async fn log_metric(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = run_id(&body)?;
    let point = metric_point(&body, "")?;
    logged(&id, app.store.log_metrics(&id, &[point]).await)?;
    Ok(Json(json!({})))
}

async fn log_param(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = run_id(&body)?;
    let param = param_pair(&body, "")?;
    logged(&id, app.store.log_params(&id, &[param]).await)?;
    Ok(Json(json!({})))
}

async fn set_tag(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = run_id(&body)?;
    let tag = tag_pair(&body, "")?;
    logged(&id, app.store.set_tags(&id, &[tag]).await)?;
    Ok(Json(json!({})))
}

async fn delete_tag(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = run_id(&body)?;
    let key = required_str(&body, "key", "")?;
    active_run(&app, &id).await?;
    app.store.delete_tag(&id, &key).await?;
    Ok(Json(json!({})))
}

/// MLflow's order: run id shape, every entity, the batch limits, duplicate
/// param keys, then the run. Nothing is written unless all of it passes.
/// A `log-batch` body whose every field has the type MLflow's schema
/// wants, read straight into these (keys borrowed from the request), so a
/// 1,000-metric batch costs no tree of `Value`s. Anything else (a value
/// as a string, a field of the wrong type) fails this read and takes the
/// general path, which finds and words the error as MLflow does.
#[derive(serde::Deserialize)]
struct TypedBatch<'a> {
    #[serde(borrow)]
    run_id: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    metrics: Vec<TypedMetric<'a>>,
    #[serde(default, borrow)]
    params: Vec<TypedPair<'a>>,
    #[serde(default, borrow)]
    tags: Vec<TypedPair<'a>>,
}

#[derive(serde::Deserialize)]
struct TypedMetric<'a> {
    #[serde(borrow)]
    key: std::borrow::Cow<'a, str>,
    value: f64,
    timestamp: Option<i64>,
    step: Option<i64>,
}

#[derive(serde::Deserialize)]
struct TypedPair<'a> {
    #[serde(borrow)]
    key: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    value: Option<std::borrow::Cow<'a, str>>,
}

/// The checks of `metric_point` that are left once the types are right,
/// in its order; the path is spelled out only for an error.
fn typed_metric(m: TypedMetric, i: usize) -> Result<MetricPoint, MlflowError> {
    let path = || format!("metrics[{i}]");
    if m.key.is_empty() {
        return Err(missing(&at(&path(), "key")));
    }
    if name_problem(&m.key).is_some() {
        check_name(&m.key, &at(&path(), "name"))?;
    }
    let timestamp = m.timestamp.unwrap_or_else(now_ms);
    check_timestamp(&m.key, m.value, timestamp, path)?;
    check_length("Metric name", MAX_KEY, &m.key)?;
    Ok(MetricPoint { key: m.key.into_owned(), value: m.value, timestamp, step: m.step.unwrap_or(0) })
}

type Batch = (Vec<MetricPoint>, Vec<(String, String)>, Vec<(String, String)>);

impl TypedBatch<'_> {
    fn checked(self) -> Result<(String, Batch), MlflowError> {
        let id = self.run_id.into_owned();
        if id.is_empty() {
            return Err(missing("run_id"));
        }
        check_run_id_shape(&id)?;
        let metrics = self.metrics.into_iter().enumerate().map(|(i, m)| typed_metric(m, i)).collect::<Result<Vec<_>, _>>()?;
        let pair = |p: TypedPair| json!({"key": p.key, "value": p.value});
        // Params and tags are few: checked by the general functions.
        let params =
            self.params.into_iter().enumerate().map(|(i, p)| param_pair(&pair(p), &format!("params[{i}]"))).collect::<Result<Vec<_>, _>>()?;
        let tags = self.tags.into_iter().enumerate().map(|(i, t)| tag_pair(&pair(t), &format!("tags[{i}]"))).collect::<Result<Vec<_>, _>>()?;
        Ok((id, (metrics, params, tags)))
    }
}

fn check_run_id_shape(id: &str) -> Result<(), MlflowError> {
    let mut first = id.chars();
    if !(first.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id.chars().count() <= 256
        && first.all(|c| c.is_alphanumeric() || c == '_' || c == '-'))
    {
        return Err(invalid_value("run_id", &json!(id), None));
    }
    Ok(())
}

/// `log-batch` read the general way: any JSON, every error worded as MLflow words it.
fn general_batch(body: &Value) -> Result<(String, Batch), MlflowError> {
    let id = run_id(body)?;
    let (metrics, params, tags) = (list(body, "metrics")?, list(body, "params")?, list(body, "tags")?);
    check_run_id_shape(&id)?;
    let metrics = metrics.iter().enumerate().map(|(i, m)| metric_point(m, &format!("metrics[{i}]"))).collect::<Result<Vec<_>, _>>()?;
    let params = params.iter().enumerate().map(|(i, p)| param_pair(p, &format!("params[{i}]"))).collect::<Result<Vec<_>, _>>()?;
    let tags = tags.iter().enumerate().map(|(i, t)| tag_pair(t, &format!("tags[{i}]"))).collect::<Result<Vec<_>, _>>()?;
    Ok((id, (metrics, params, tags)))
}

/// The body of a JSON request, or the answer axum's `Json` extractor gives
/// when it is not one (wrong content type, malformed JSON).
struct JsonBytes(axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for JsonBytes {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        let json = req.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
            let essence = v.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
        });
        if !json {
            // Let axum's extractor word the refusal.
            return Err(match Json::<Value>::from_request(req, state).await {
                Ok(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response(),
                Err(rejection) => rejection.into_response(),
            });
        }
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(IntoResponse::into_response)?;
        Ok(JsonBytes(bytes))
    }
}

async fn log_batch(State(app): State<App>, JsonBytes(body): JsonBytes) -> Result<Response, MlflowError> {
    let (id, (metrics, params, tags)) = match serde_json::from_slice::<TypedBatch>(&body) {
        Ok(typed) => typed.checked()?,
        Err(_) => match Json::<Value>::from_bytes(&body) {
            Ok(Json(value)) => general_batch(&value)?,
            Err(rejection) => return Ok(rejection.into_response()),
        },
    };
    batch_limit("metrics", MAX_BATCH_METRICS, metrics.len())?;
    batch_limit("params", MAX_BATCH_PARAMS, params.len())?;
    batch_limit("tags", MAX_BATCH_TAGS, tags.len())?;
    batch_limit("metrics, params, and tags", MAX_BATCH_TOTAL, metrics.len() + params.len() + tags.len())?;
    let mut seen = std::collections::HashSet::new();
    let dupes: Vec<String> = params.iter().filter(|(k, _)| !seen.insert(k.as_str())).map(|(k, _)| format!("'{k}'")).collect();
    if !dupes.is_empty() {
        return Err(invalid(format!(
            "Duplicate parameter keys have been submitted: [{}]. Please ensure the request contains only one param value per param key.",
            dupes.join(", ")
        )));
    }
    // One write: a batch is stored whole or not at all.
    logged(&id, app.store.log_batch(&id, &metrics, &params, &tags).await)?;
    Ok(Json(json!({})).into_response())
}

/// Dataset inputs are accepted and recorded as tags (`mlflow.input.<name>`)
/// until datasets are first-class.
async fn log_inputs(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = run_id(&body)?;
    active_run(&app, &id).await?;
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

async fn search_runs(State(app): State<App>, Json(body): Json<Value>) -> Result<Response, MlflowError> {
    let experiment_ids: Vec<String> = body
        .get("experiment_ids")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from).or_else(|| v.as_i64().map(|i| i.to_string())))
        .collect();
    use kiln_services::tracking::{SearchError, SearchRequest};
    let (filter_text, page_token) = (text(&body, &["filter"]).unwrap_or_default(), text(&body, &["page_token"]).filter(|t| !t.is_empty()));
    let request = SearchRequest {
        filter: &filter_text,
        order_by: body.get("order_by").and_then(|v| v.as_array()).into_iter().flatten().filter_map(|v| v.as_str()).collect(),
        max_results: int(&body, "max_results")?.unwrap_or(1000),
        page_token: page_token.as_deref(),
        experiment_ids,
        ..Default::default()
    };
    // MLflow's wording, where MLflow has one.
    let q = request.query().map_err(|e| match e {
        SearchError::Experiments(m) => invalid(m),
        SearchError::Filter(m) => invalid(format!("Invalid filter: {m}")),
        SearchError::OrderBy { clause, message } => invalid(format!("Invalid order_by clause '{clause}': {message}")),
        SearchError::MaxResults(n) => invalid(format!("Invalid value {n} for parameter 'max_results' supplied")),
        SearchError::PageToken(m) => invalid(format!("Invalid page token: {m}")),
    })?;
    let (runs, next) = app.store.search_rendered(&q, |v| serde_json::to_vec(&RunJson(v)).expect("a run serialises")).await?;
    let mut body = Vec::with_capacity(runs.iter().map(|r| r.len() + 1).sum::<usize>() + 64);
    body.extend_from_slice(b"{\"runs\":[");
    for (i, r) in runs.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(r);
    }
    body.push(b']');
    if let Some(n) = next {
        body.extend_from_slice(format!(",\"next_page_token\":\"{n}\"").as_bytes());
    }
    body.push(b'}');
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn metric_history(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> Result<Response, MlflowError> {
    let id = q.get("run_id").or(q.get("run_uuid")).filter(|s| !s.is_empty()).ok_or_else(|| missing("run_id"))?;
    let key = q.get("metric_key").filter(|s| !s.is_empty()).ok_or_else(|| missing("metric_key"))?;
    // Paged when the client asks (`max_results`, `page_token`), whole
    // otherwise, as MLflow's server does.
    let offset: usize = match q.get("page_token").filter(|t| !t.is_empty()) {
        Some(t) => t.parse().map_err(|_| invalid(format!("Invalid page token '{t}'")))?,
        None => 0,
    };
    let limit = match q.get("max_results").filter(|t| !t.is_empty()) {
        Some(n) => Some(
            n.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| invalid(format!("Invalid value {n} for parameter 'max_results' supplied")))?,
        ),
        None => None,
    };
    let limit = limit.map_or(i64::MAX, |l| l as i64);
    let (points, more) = app.store.metric_history_page(id, key, offset as i64, limit).await?;
    if points.is_empty() {
        // No points: an unknown run is an error, a run without this metric is not.
        app.store.run_extras(id).await.map_err(|e| match e {
            StoreError::NotFound(_) => no_run(id),
            other => other.into(),
        })?;
    }
    // Written straight from the points: a page of 25,000 is too many for a
    // tree of `Value`s.
    #[derive(serde::Serialize)]
    struct Page<'a> {
        metrics: Vec<MetricJson<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_page_token: Option<String>,
    }
    let page = Page {
        metrics: points.iter().map(|p| MetricJson { key, value: p.value, timestamp: p.timestamp, step: p.step }).collect(),
        next_page_token: more.then(|| (offset as i64 + limit).to_string()),
    };
    let body = serde_json::to_vec(&page).map_err(|e| invalid(e.to_string()))?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response())
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
    let mut latest_json = Vec::new();
    for v in registry::latest_per_stage(&app.store, name, &[]).await? {
        latest_json.push(version_json(app, &v).await?);
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
        _ => return Err(missing("version")),
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
    let name = q.get("name").ok_or_else(|| missing("name"))?;
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
    let name = body.and_then(|Json(b)| text(&b, &["name"])).or_else(|| q.get("name").cloned()).ok_or_else(|| missing("name"))?;
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
    let wanted: Vec<String> =
        body.get("stages").and_then(|s| s.as_array()).into_iter().flatten().filter_map(|s| s.as_str().map(String::from)).collect();
    let mut out = Vec::new();
    for v in registry::latest_per_stage(&app.store, &name, &wanted).await? {
        out.push(version_json(&app, &v).await?);
    }
    Ok(Json(json!({"model_versions": out})))
}

async fn create_version(State(app): State<App>, Json(body): Json<Value>) -> R {
    let name = required(&body, &["name"])?;
    let source = required(&body, &["source"])?;
    let run_id = text(&body, &["run_id"]).filter(|r| !r.is_empty());
    if let Some(r) = &run_id {
        app.store.run_extras(r).await.map_err(|_| no_run(r))?;
    }
    let v = app.store.create_version(&name, &source, run_id.as_deref(), &text(&body, &["description"]).unwrap_or_default()).await.map_err(
        |e| match e {
            StoreError::NotFound(_) => not_found(format!("Registered Model with name={name} not found")),
            other => other.into(),
        },
    )?;
    Ok(Json(json!({"model_version": version_json(&app, &v).await?})))
}

async fn get_version(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    let name = q.get("name").ok_or_else(|| missing("name"))?;
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
    registry::check_alias(&alias).map_err(invalid)?;
    app.store.set_alias(&name, &alias, version_number(&body)?).await?;
    Ok(Json(json!({})))
}

async fn delete_alias(State(app): State<App>, Query(q): Query<HashMap<String, String>>, body: Option<Json<Value>>) -> R {
    let b = body.map(|Json(b)| b).unwrap_or_else(|| json!({"name": q.get("name"), "alias": q.get("alias")}));
    app.store.delete_alias(&required(&b, &["name"])?, &required(&b, &["alias"])?).await?;
    Ok(Json(json!({})))
}

async fn get_by_alias(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    let name = q.get("name").ok_or_else(|| missing("name"))?;
    let alias = q.get("alias").ok_or_else(|| missing("alias"))?;
    let v = app.store.version_by_alias(name, alias).await?;
    Ok(Json(json!({"model_version": version_json(&app, &v).await?})))
}
