//! MLflow's REST API (`/api/2.0/mlflow/...`, `/api/2.0/mlflow-artifacts/...`),
//! so MLflow client code of either major works with Kiln unmodified:
//! experiments, runs (params, metrics with steps, tags, batches, inputs,
//! outputs, search, metric history), MLflow 3's logged models, the model
//! registry, and the artifact proxy. Errors use MLflow's codes and
//! statuses; an unknown route under MLflow's prefixes gets
//! `ENDPOINT_NOT_FOUND`. The README's compatibility table lists the routes.

mod artifact_proxy;
mod experiments;
mod logged_models;
mod model_registry;
mod runs;
mod version_source;

use artifact_proxy::*;
use experiments::*;
use logged_models::*;
use model_registry::*;
use runs::*;

use crate::app::App;
use crate::records;
use crate::registry;
use crate::store::{MetricPoint, RunIo, RunStatus, RunView, StoreError, now_ms};
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

/// MLflow serves its REST API twice: under `/api/` for clients and under
/// `/ajax-api/` for its web UI, which scripts and MLflow's own REST tests
/// call too (`ajax-api/2.0/mlflow/metrics/get-history`, ...).
pub fn router() -> Router<App> {
    routes("/api")
        .merge(routes("/ajax-api"))
        .route("/get-artifact", get(get_run_artifact))
        .route("/model-versions/get-artifact", get(get_version_artifact))
}

fn routes(api: &str) -> Router<App> {
    let p = |s: &str| format!("{api}/2.0/mlflow/{s}");
    Router::new()
        .route(&p("experiments/create"), post(create_experiment))
        .route(&p("experiments/get"), get(get_experiment))
        .route(&p("experiments/get-by-name"), get(get_experiment_by_name))
        .route(&p("experiments/search"), post(search_experiments).get(search_experiments_get))
        .route(&p("experiments/update"), post(update_experiment))
        .route(&p("experiments/delete"), post(delete_experiment))
        .route(&p("experiments/restore"), post(restore_experiment))
        .route(&p("experiments/set-experiment-tag"), post(set_experiment_tag))
        .route(&p("experiments/delete-experiment-tag"), post(delete_experiment_tag))
        .route(&p("experiments/search-datasets"), post(search_datasets))
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
        .route(&p("metrics/get-history-bulk"), get(metric_history_of_runs))
        .route(&p("metrics/get-history-bulk-interval"), get(metric_history_bulk))
        .route(&p("artifacts/list"), get(list_run_artifacts))
        .route(&p("upload-artifact"), post(upload_run_artifact))
        .route(&p("runs/outputs"), post(log_outputs))
        .route(&p("runs/log-model"), post(log_model))
        .route(&p("logged-models"), post(create_logged_model))
        .route(&p("logged-models/search"), post(search_logged_models))
        .route(&p("logged-models/{id}"), get(get_logged_model).patch(finalize_logged_model).delete(delete_logged_model))
        .route(&p("logged-models/{id}/params"), post(log_logged_model_params))
        .route(&p("logged-models/{id}/tags"), axum::routing::patch(set_logged_model_tags))
        .route(&p("logged-models/{id}/tags/{key}"), axum::routing::delete(delete_logged_model_tag))
        .route(&p("logged-models/{id}/artifacts/directories"), get(list_logged_model_artifacts))
        .route(&p("logged-models/{id}/artifacts/files"), get(get_logged_model_artifact))
        .route(&p("registered-models/create"), post(create_model))
        .route(&p("registered-models/get"), get(get_model))
        .route(&p("registered-models/search"), get(search_models_get).post(search_models))
        .route(&p("registered-models/delete"), axum::routing::delete(delete_model))
        .route(&p("registered-models/rename"), post(rename_model))
        .route(&p("registered-models/update"), axum::routing::patch(update_model))
        .route(&p("registered-models/set-tag"), post(set_model_tag))
        .route(&p("registered-models/delete-tag"), axum::routing::delete(delete_model_tag))
        .route(&p("registered-models/get-latest-versions"), get(latest_versions_get).post(latest_versions))
        .route(&p("registered-models/alias"), get(get_by_alias).post(set_alias).delete(delete_alias))
        .route(&p("model-versions/create"), post(create_version))
        .route(&p("model-versions/get"), get(get_version))
        .route(&p("model-versions/update"), axum::routing::patch(update_version))
        .route(&p("model-versions/delete"), axum::routing::delete(delete_version))
        .route(&p("model-versions/set-tag"), post(set_version_tag))
        .route(&p("model-versions/delete-tag"), axum::routing::delete(delete_version_tag))
        .route(&p("model-versions/get-download-uri"), get(download_uri))
        .route(&p("model-versions/search"), get(search_versions_get).post(search_versions))
        .route(&p("model-versions/transition-stage"), post(transition_stage))
        .route(&format!("{api}/2.0/mlflow-artifacts/artifacts"), get(list_artifacts))
        .route(&format!("{api}/2.0/mlflow-artifacts/artifacts/{{*path}}"), get(download_artifact).put(upload_artifact).delete(delete_artifact))
        .route(&format!("{api}/3.0/mlflow/server-info"), get(server_info))
        // Anything else under MLflow's prefixes: MLflow's JSON error, and
        // a line in the log naming what was asked for.
        .route(&format!("{api}/2.0/mlflow/{{*rest}}"), axum::routing::any(unknown_endpoint))
        .route(&format!("{api}/2.0/mlflow-artifacts/{{*rest}}"), axum::routing::any(unknown_endpoint))
        .route(&format!("{api}/2.1/mlflow/{{*rest}}"), axum::routing::any(unknown_endpoint))
        .route(&format!("{api}/3.0/mlflow/{{*rest}}"), axum::routing::any(unknown_endpoint))
}

/// What MLflow 3 clients probe before large artifact transfers: Kiln has
/// no multipart or presigned transfers, so clients send files whole.
async fn server_info() -> Json<Value> {
    Json(json!({
        "store_type": "SqlStore", "workspaces_enabled": false, "trace_archival_enabled": false,
        "multipart_uploads_enabled": false, "multipart_downloads_enabled": false,
        "presigned_upload_run_id_supported": false, "presigned_upload_model_id_supported": false, "features_enabled": {},
    }))
}

async fn unknown_endpoint(method: axum::http::Method, uri: axum::http::Uri) -> MlflowError {
    tracing::warn!(%method, path = uri.path(), "an MLflow client asked for an endpoint Kiln does not serve");
    MlflowError {
        status: StatusCode::NOT_FOUND,
        code: "ENDPOINT_NOT_FOUND",
        message: format!("{method} {} is not an MLflow endpoint Kiln serves (see the compatibility table in Kiln's README)", uri.path()),
    }
}

/// A GET's query as the JSON body of the same call: a key given more than
/// once (`order_by`, `experiment_ids`) becomes a list; `max_results`
/// stays a string, which [`int`] reads.
fn query_body(q: &[(String, String)]) -> Value {
    let mut body = serde_json::Map::new();
    for (k, v) in q {
        match body.get_mut(k) {
            Some(Value::Array(items)) => items.push(json!(v)),
            Some(one) => *one = json!([one.clone(), v]),
            None if matches!(k.as_str(), "order_by" | "experiment_ids") => {
                body.insert(k.clone(), json!([v]));
            }
            None => {
                body.insert(k.clone(), json!(v));
            }
        }
    }
    Value::Object(body)
}

/// `view_type`: which lifecycle stages a search shows.
enum ViewType {
    Active,
    Deleted,
    All,
}

impl ViewType {
    fn keeps(&self, stage: &str) -> bool {
        match self {
            ViewType::All => true,
            ViewType::Deleted => stage == "deleted",
            ViewType::Active => stage == "active",
        }
    }
}

fn view_type(body: &Value) -> Result<ViewType, MlflowError> {
    match body.get("view_type") {
        None | Some(Value::Null) => Ok(ViewType::Active),
        Some(v) => match v.as_str().map(str::to_string).or_else(|| v.as_i64().map(|n| n.to_string())).as_deref() {
            Some("ACTIVE_ONLY" | "1") => Ok(ViewType::Active),
            Some("DELETED_ONLY" | "2") => Ok(ViewType::Deleted),
            Some("ALL" | "3") => Ok(ViewType::All),
            _ => Err(invalid_value("view_type", v, None)),
        },
    }
}

/// The filter, ordering and paging of a `search` call.
fn search_request(body: &Value, default_max: i64) -> Result<records::Request, MlflowError> {
    let order_by = match body.get("order_by") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            items.iter().map(|v| v.as_str().map(String::from).ok_or_else(|| wrong_type("order_by", v))).collect::<Result<_, _>>()?
        }
        Some(Value::String(s)) => vec![s.clone()],
        Some(other) => return Err(wrong_type("order_by", other)),
    };
    Ok(records::Request {
        filter: text(body, &["filter", "filter_string"]).unwrap_or_default(),
        order_by,
        max_results: int(body, "max_results")?.unwrap_or(default_max),
        page_token: text(body, &["page_token"]).filter(|t| !t.is_empty()),
    })
}

/// A search request's refusal, in MLflow's words where it has them.
fn search_error(e: kiln_services::tracking::SearchError) -> MlflowError {
    use kiln_services::tracking::SearchError;
    match e {
        SearchError::Experiments(m) => invalid(m),
        SearchError::Filter(m) => invalid(format!("Invalid filter: {m}")),
        SearchError::OrderBy { clause, message } => invalid(format!("Invalid order_by clause '{clause}': {message}")),
        SearchError::MaxResults(n) if n < 1 => {
            invalid(format!("Invalid value {n} for parameter 'max_results' supplied. It must be a positive integer"))
        }
        SearchError::MaxResults(n) => invalid(format!(
            "Invalid value {n} for parameter 'max_results' supplied. It must be at most {}",
            kiln_services::tracking::MAX_SEARCH_RESULTS
        )),
        SearchError::PageToken(m) => invalid(format!("Invalid page token: {m}")),
    }
}

/// A search response with `next_page_token` when there is a next page.
fn with_token(mut body: Value, token: Option<String>) -> Value {
    if let Some(t) = token {
        body["next_page_token"] = json!(t);
    }
    body
}

#[derive(Debug)]
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

/// A required string: MLflow's schema refuses one of another type by
/// naming it (`Invalid value 123 for parameter 'name' supplied`).
fn required(body: &Value, keys: &[&str]) -> Result<String, MlflowError> {
    if let Some((key, v)) = keys.iter().find_map(|k| body.get(*k).map(|v| (k, v))).filter(|(_, v)| !v.is_null() && !v.is_string()) {
        return Err(wrong_type(key, v));
    }
    text(body, keys).filter(|s| !s.is_empty()).ok_or_else(|| missing(keys[0]))
}

/// An optional string: absent or null is `None`, another type is refused
/// as MLflow's schema refuses it.
fn optional(body: &Value, key: &str) -> Result<Option<String>, MlflowError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong_type(key, other)),
    }
}

/// int64 fields arrive as JSON numbers or, from protobuf's JSON, as strings.
fn int(body: &Value, key: &str) -> Result<Option<i64>, MlflowError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).map(Some).ok_or_else(|| invalid(format!("'{key}' must be an integer")))
        }
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| wrong_type(key, &Value::String(s.clone()))),
        Some(other) => Err(wrong_type(key, other)),
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

/// A tag of a registered model, a model version or a logged model at
/// `path` (`""` for a `set-tag` body): MLflow's name rules and length
/// limit for the key, a string value (or none), cut to the tag limit.
fn entity_tag(t: &Value, path: &str) -> Result<(String, String), MlflowError> {
    let key = required_str(t, "key", path)?;
    check_length(&at(path, "key"), MAX_KEY, &key)?;
    check_name(&key, &at(path, "key"))?;
    let value = match t.get("value") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(wrong_type(&at(path, "value"), other)),
    };
    let value = truncated("Tag value", &key, MAX_TAG_VALUE, value);
    Ok((key, value))
}

/// The `tags` list of a create call, each an [`entity_tag`].
fn entity_tags(body: &Value) -> Result<Vec<(String, String)>, MlflowError> {
    list(body, "tags")?.iter().enumerate().map(|(i, t)| entity_tag(t, &format!("tags[{i}]"))).collect()
}
