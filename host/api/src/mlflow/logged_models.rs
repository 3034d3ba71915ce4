//! MLflow 3's logged models (`/logged-models`): what `log_model` makes,
//! with its own files under `<experiment>/models/<id>/artifacts`, and what
//! registered versions made by MLflow 3 point at (`models:/m-…`).

use super::*;
use crate::store::{LoggedModelDetail, LoggedModelMetric, NewLoggedModel};

/// MLflow's status names for Kiln's.
fn status_name(status: &str) -> &'static str {
    match status {
        "READY" => "LOGGED_MODEL_READY",
        "FAILED" => "LOGGED_MODEL_UPLOAD_FAILED",
        _ => "LOGGED_MODEL_PENDING",
    }
}

fn status_from(v: &Value) -> Result<&'static str, MlflowError> {
    let word = v.as_str().map(str::to_string).or_else(|| v.as_i64().map(|n| n.to_string()));
    match word.as_deref() {
        Some("LOGGED_MODEL_PENDING" | "1") => Ok("PENDING"),
        Some("LOGGED_MODEL_READY" | "2") => Ok("READY"),
        Some("LOGGED_MODEL_UPLOAD_FAILED" | "3") => Ok("FAILED"),
        _ => Err(invalid_value("status", v, None)),
    }
}

pub(super) fn artifact_root(experiment_id: &str, id: &str) -> String {
    format!("mlflow-artifacts:/{experiment_id}/models/{id}/artifacts")
}

pub(super) async fn logged_model_artifact_uri(app: &App, id: &str) -> Result<String, MlflowError> {
    let m = app.store.logged_model_record(id).await?;
    Ok(artifact_root(&m.experiment_id, id))
}

fn pairs_json(pairs: &[(String, String)]) -> Vec<Value> {
    pairs.iter().map(|(k, v)| json!({"key": k, "value": v})).collect()
}

fn metric_json(id: &str, m: &LoggedModelMetric) -> Value {
    let mut out = json!({"key": m.key, "value": double_json(m.value), "timestamp": m.timestamp, "step": m.step, "model_id": id});
    for (field, value) in [("run_id", &m.run_id), ("dataset_name", &m.dataset_name), ("dataset_digest", &m.dataset_digest)] {
        if !value.is_empty() {
            out[field] = json!(value);
        }
    }
    out
}

pub(super) fn logged_model_json(m: &LoggedModelDetail) -> Value {
    let r = &m.record;
    json!({
        "info": {
            "model_id": r.id, "experiment_id": r.experiment_id, "name": r.name,
            "creation_timestamp_ms": r.created_at, "last_updated_timestamp_ms": r.updated_at,
            "artifact_uri": artifact_root(&r.experiment_id, &r.id), "status": status_name(&r.status),
            "status_message": r.status_message, "model_type": r.model_type, "source_run_id": r.source_run_id,
            "tags": pairs_json(&m.tags),
        },
        "data": {
            "params": pairs_json(&m.params),
            "metrics": m.metrics.iter().map(|x| metric_json(&r.id, x)).collect::<Vec<_>>(),
        },
    })
}

/// The `params` list of a call, each checked as a run's param is.
fn params(body: &Value) -> Result<Vec<(String, String)>, MlflowError> {
    list(body, "params")?.iter().enumerate().map(|(i, p)| param_pair(p, &format!("params[{i}]"))).collect()
}

/// A random name as MLflow gives an unnamed model (`adjective-noun-NNN`
/// in MLflow; here a short unique suffix).
fn generated_name() -> String {
    format!("model-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

pub(super) async fn create_logged_model(State(app): State<App>, Json(body): Json<Value>) -> R {
    app.store.ensure_default_experiment().await?;
    let experiment_id = required_str(&body, "experiment_id", "")?;
    let e = app.store.experiment_by_id(&experiment_id).await?.ok_or_else(|| not_found(format!("No Experiment with id={experiment_id} exists")))?;
    if e.lifecycle_stage != "active" {
        return Err(invalid(format!("The experiment {experiment_id} must be in the 'active' state. Current state is {}.", e.lifecycle_stage)));
    }
    let name = match body.get("name") {
        None | Some(Value::Null) => generated_name(),
        Some(Value::String(n)) => {
            // MLflow's `_validate_logged_model_name`: a name is part of
            // paths and URIs.
            const BAD: [char; 6] = ['/', ':', '.', '%', '"', '\''];
            if n.is_empty() || n.contains(BAD) {
                return Err(invalid(format!(
                    "Invalid model name ('{n}') provided. Model name must be a non-empty string and cannot contain the following characters: ('/', ':', '.', '%', '\"', \"'\")"
                )));
            }
            n.clone()
        }
        Some(other) => return Err(wrong_type("name", other)),
    };
    // Not looked up, as in MLflow: the run may live on another server (a
    // model version's run may too).
    let source_run_id = text(&body, &["source_run_id"]).unwrap_or_default();
    let params = params(&body)?;
    let tags = entity_tags(&body)?;
    let model_type = text(&body, &["model_type"]).unwrap_or_default();
    let new = NewLoggedModel {
        experiment_id: &experiment_id,
        name: &name,
        source_run_id: &source_run_id,
        model_type: &model_type,
        params: &params,
        tags: &tags,
    };
    let record = app.store.create_logged_model(&new).await?;
    Ok(Json(json!({"model": logged_model_json(&app.store.logged_model(&record.id).await?)})))
}

pub(super) async fn get_logged_model(State(app): State<App>, axum::extract::Path(id): axum::extract::Path<String>) -> R {
    Ok(Json(json!({"model": logged_model_json(&app.store.logged_model(&id).await?)})))
}

pub(super) async fn finalize_logged_model(
    State(app): State<App>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Json(body): Json<Value>,
) -> R {
    let status = status_from(body.get("status").ok_or_else(|| missing("status"))?)?;
    app.store.finalize_logged_model(&id, status).await?;
    Ok(Json(json!({"model": logged_model_json(&app.store.logged_model(&id).await?)})))
}

pub(super) async fn delete_logged_model(State(app): State<App>, axum::extract::Path(id): axum::extract::Path<String>) -> R {
    app.store.delete_logged_model(&id).await?;
    Ok(Json(json!({})))
}

pub(super) async fn log_logged_model_params(
    State(app): State<App>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Json(body): Json<Value>,
) -> R {
    app.store.set_logged_model_pairs(&id, true, &params(&body)?).await?;
    Ok(Json(json!({})))
}

pub(super) async fn set_logged_model_tags(
    State(app): State<App>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Json(body): Json<Value>,
) -> R {
    app.store.set_logged_model_pairs(&id, false, &entity_tags(&body)?).await?;
    Ok(Json(json!({})))
}

pub(super) async fn delete_logged_model_tag(State(app): State<App>, axum::extract::Path((id, key)): axum::extract::Path<(String, String)>) -> R {
    match app.store.delete_logged_model_tag(&id, &key).await {
        // The model or the tag is missing; only a missing tag has
        // MLflow's own words, so the model is looked up on this path only.
        Err(StoreError::NotFound(_)) if app.store.logged_model_record(&id).await.is_ok() => {
            Err(not_found(format!("No tag with key: {key} for logged model with ID: {id}")))
        }
        r => {
            r?;
            Ok(Json(json!({})))
        }
    }
}

/// `search_logged_models`: experiments, a filter over fields, tags,
/// params and metrics, an ordering of `{field_name, ascending}` objects,
/// paging.
pub(super) async fn search_logged_models(State(app): State<App>, Json(body): Json<Value>) -> R {
    let experiment_ids: Vec<String> = list(&body, "experiment_ids")?
        .iter()
        .map(|v| v.as_str().map(String::from).or_else(|| v.as_i64().map(|n| n.to_string())).ok_or_else(|| wrong_type("experiment_ids", v)))
        .collect::<Result<_, _>>()?;
    if experiment_ids.is_empty() {
        return Err(missing("experiment_ids"));
    }
    let order_by = list(&body, "order_by")?
        .iter()
        .map(|o| {
            let field = required_str(o, "field_name", "order_by")?;
            let ascending = o.get("ascending").and_then(Value::as_bool).unwrap_or(true);
            Ok(format!("{} {}", quote_field(&field), if ascending { "ASC" } else { "DESC" }))
        })
        .collect::<Result<Vec<_>, MlflowError>>()?;
    let request = records::Request {
        filter: text(&body, &["filter"]).unwrap_or_default(),
        order_by,
        max_results: int(&body, "max_results")?.unwrap_or(100),
        page_token: text(&body, &["page_token"]).filter(|t| !t.is_empty()),
    };
    // `datasets`: only models with a metric measured on one of these
    // (a name, and a digest where given), as MLflow's store joins them.
    let datasets = list(&body, "datasets")?
        .iter()
        .enumerate()
        .map(|(i, d)| Ok((required_str(d, "dataset_name", &format!("datasets[{i}]"))?, text(d, &["dataset_digest"]).filter(|s| !s.is_empty()))))
        .collect::<Result<Vec<_>, MlflowError>>()?;
    let measured_on = |m: &LoggedModelDetail| {
        datasets.is_empty()
            || m.metrics
                .iter()
                .any(|p| datasets.iter().any(|(name, digest)| p.dataset_name == *name && digest.as_ref().is_none_or(|d| p.dataset_digest == *d)))
    };
    let all: Vec<records::LoggedModelEntry> =
        app.store.logged_models(&experiment_ids).await?.into_iter().filter(|m| measured_on(m)).map(records::LoggedModelEntry).collect();
    let page = records::search(all, &records::LOGGED_MODELS, &request, records::LoggedModelEntry::tie).map_err(search_error)?;
    let models: Vec<Value> = page.items.iter().map(|m| logged_model_json(&m.0)).collect();
    Ok(Json(with_token(json!({"models": models}), page.next_page_token)))
}

/// `metrics.val loss` → ``metrics.`val loss` `` so the parser reads it whole.
fn quote_field(field: &str) -> String {
    match field.split_once('.') {
        Some((prefix, key)) if !key.contains('`') => format!("{prefix}.`{key}`"),
        _ => field.to_string(),
    }
}

/// `runs/outputs`: the models a run produced.
pub(super) async fn log_outputs(State(app): State<App>, Json(body): Json<Value>) -> R {
    let run = run_id(&body)?;
    app.store.run_extras(&run).await.map_err(|_| no_run(&run))?;
    let models = list(&body, "models")?
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let id = required_str(m, "model_id", &format!("models[{i}]"))?;
            Ok((id, int(m, "step")?.unwrap_or(0)))
        })
        .collect::<Result<Vec<_>, MlflowError>>()?;
    for (id, _) in &models {
        app.store.logged_model_record(id).await?;
    }
    app.store.log_run_outputs(&run, &models).await?;
    Ok(Json(json!({})))
}

/// Metrics of a batch that name a `model_id` are the model's too.
pub(super) async fn log_model_metrics(app: &App, run_id: &str, metrics: &[Value]) -> Result<(), MlflowError> {
    let mut by_model: HashMap<String, Vec<LoggedModelMetric>> = HashMap::new();
    for (i, m) in metrics.iter().enumerate() {
        let Some(model_id) = m.get("model_id").and_then(Value::as_str).filter(|s| !s.is_empty()) else { continue };
        let path = format!("metrics[{i}]");
        by_model.entry(model_id.to_string()).or_default().push(LoggedModelMetric {
            key: required_str(m, "key", &path)?,
            value: double(m.get("value"), &at(&path, "value"))?,
            step: int(m, "step")?.unwrap_or(0),
            timestamp: int(m, "timestamp")?.unwrap_or_else(now_ms),
            run_id: run_id.to_string(),
            dataset_name: text(m, &["dataset_name"]).unwrap_or_default(),
            dataset_digest: text(m, &["dataset_digest"]).unwrap_or_default(),
        });
    }
    for (id, points) in by_model {
        app.store.log_logged_model_metrics(&id, &points).await?;
    }
    Ok(())
}

/// The files of a logged model under a directory (for clients that read
/// them through the tracking API rather than the artifact proxy).
pub(super) async fn list_logged_model_artifacts(
    State(app): State<App>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> R {
    let m = app.store.logged_model_record(&id).await?;
    let dir = q.get("artifact_directory_path").map(|p| p.trim_matches('/').to_string()).unwrap_or_default();
    let files = model_children(&app, &id, &dir).await?;
    Ok(Json(json!({"root_uri": artifact_root(&m.experiment_id, &id), "files": files})))
}

/// The direct children of `prefix` among a logged model's files.
pub(super) async fn model_children(app: &App, id: &str, prefix: &str) -> Result<Vec<Value>, MlflowError> {
    let files: Vec<(String, i64)> = app.store.logged_model_artifacts(id).await?.into_iter().map(|(p, _, s)| (p, s)).collect();
    Ok(children_of(files.iter().map(|(p, s)| (p.as_str(), *s)), prefix))
}
