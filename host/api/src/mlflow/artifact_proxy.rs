//! MLflow's artifact proxy (`/api/2.0/mlflow-artifacts/`) and
//! `artifacts/list`: a run's files under `<experiment>/<run>/artifacts/`,
//! an MLflow 3 logged model's under `<experiment>/models/<id>/artifacts/`.

use super::*;

/// Whose files a proxy path names.
pub(super) enum Owner {
    Run(String),
    Model(String),
}

/// `<experiment>/<run>/artifacts[/<path>]` or
/// `<experiment>/models/<m-id>/artifacts[/<path>]` → (owner, path inside).
pub(super) fn split_artifact_path(path: &str) -> Result<(Owner, String), MlflowError> {
    let parts: Vec<&str> = path.trim_matches('/').splitn(5, '/').collect();
    let (owner, rest) = match parts.as_slice() {
        [_, "models", id, "artifacts", rest @ ..] if id.starts_with("m-") => (Owner::Model(id.to_string()), rest.join("/")),
        [_, run, "artifacts", rest @ ..] => (Owner::Run(run.to_string()), rest.join("/")),
        _ => {
            return Err(invalid(format!(
                "artifact path '{path}' is not <experiment>/<run>/artifacts/<path> or <experiment>/models/<model id>/artifacts/<path>"
            )));
        }
    };
    let rel = rest.trim_matches('/').to_string();
    // Empty: the artifact root (for listing).
    if !rel.is_empty() {
        kiln_services::tracking::check_artifact_path(&rel).map_err(|e| invalid(format!("Invalid artifact path: {e}")))?;
    }
    Ok((owner, rel))
}

/// The direct children of `prefix` among (path, size) files.
pub(super) fn children_of<'a>(files: impl Iterator<Item = (&'a str, i64)>, prefix: &str) -> Vec<Value> {
    let base = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
    let mut seen = std::collections::BTreeMap::new();
    for (path, size) in files {
        let Some(rest) = path.strip_prefix(&base) else { continue };
        match rest.split_once('/') {
            Some((dir, _)) => {
                seen.entry(dir.to_string()).or_insert(json!({"path": dir, "is_dir": true}));
            }
            None => {
                seen.insert(rest.to_string(), json!({"path": rest, "is_dir": false, "file_size": size}));
            }
        }
    }
    seen.into_values().collect()
}

/// The direct children of `prefix` among a run's artifact paths.
pub(super) async fn children(app: &App, run_id: &str, prefix: &str) -> Result<Vec<Value>, MlflowError> {
    let run = app.store.get_run(run_id).await?;
    Ok(children_of(run.artifacts.iter().map(|a| (a.path.as_str(), a.size)), prefix))
}

pub(super) async fn upload_artifact(State(app): State<App>, axum::extract::Path(path): axum::extract::Path<String>, body: axum::body::Body) -> R {
    let (owner, rel) = split_artifact_path(&path)?;
    if rel.is_empty() {
        return Err(invalid("an artifact needs a file name"));
    }
    store_artifact(&app, &owner, &rel, body, true).await?;
    Ok(Json(json!({})))
}

/// Keep `body` as `owner`'s file `rel` (an empty one only when
/// `keep_empty`: clients log empty files, the UI's upload refuses them);
/// the size received.
async fn store_artifact(app: &App, owner: &Owner, rel: &str, body: axum::body::Body, keep_empty: bool) -> Result<u64, MlflowError> {
    // The owner must exist before the body is stored.
    match owner {
        Owner::Run(run_id) => {
            app.store.run_extras(run_id).await.map_err(|_| no_run(run_id))?;
        }
        Owner::Model(id) => {
            app.store.logged_model_record(id).await?;
        }
    }
    let (blob, size) = crate::artifacts::receive(&app.blobs, body, app.limits.upload_size).await.map_err(|e| match e.status() {
        s if s.is_client_error() => MlflowError { status: s, code: "INVALID_PARAMETER_VALUE", message: e.to_string() },
        _ => internal(format!("storing artifact {rel}: {e}")),
    })?;
    if size == 0 && !keep_empty {
        return Ok(0);
    }
    match owner {
        // The uploader's Content-Type is not kept: downloads type by name.
        Owner::Run(run_id) => app.store.add_artifact(run_id, rel, &blob, size as i64, &crate::artifacts::media_type_for(rel)).await?,
        Owner::Model(id) => app.store.add_logged_model_artifact(id, rel, &blob, size as i64).await?,
    }
    Ok(size)
}

/// A file path a UI route was given, under MLflow's message.
/// MLflow answers exactly "Invalid path" (clients compare the whole
/// message), so why it is invalid goes to the server's log.
fn check_file_path(path: &str) -> Result<(), MlflowError> {
    kiln_services::tracking::check_artifact_path(path).map_err(|e| {
        tracing::info!(path, reason = %e, "refused an artifact path");
        invalid("Invalid path")
    })
}

/// `upload-artifact?run_uuid=…&path=…` with the file as the body: how
/// MLflow's web UI attaches a file to a run.
pub(super) async fn upload_run_artifact(State(app): State<App>, Query(q): Query<HashMap<String, String>>, body: axum::body::Body) -> R {
    let run_id = q.get("run_uuid").filter(|s| !s.is_empty()).ok_or_else(|| invalid("Request must specify run_uuid."))?;
    let path = q.get("path").filter(|s| !s.is_empty()).ok_or_else(|| invalid("Request must specify path."))?;
    check_file_path(path)?;
    let owner = Owner::Run(run_id.clone());
    if store_artifact(&app, &owner, path, body, false).await? == 0 {
        return Err(invalid("Request must specify data."));
    }
    Ok(Json(json!({})))
}

pub(super) async fn download_artifact(
    State(app): State<App>,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> Result<Response, MlflowError> {
    let (owner, rel) = split_artifact_path(&path)?;
    send_file(&app, &owner, &rel).await
}

/// `owner`'s file `rel`, typed by its name.
async fn send_file(app: &App, owner: &Owner, rel: &str) -> Result<Response, MlflowError> {
    let blob = match owner {
        Owner::Run(run_id) => {
            let run = app.store.get_run(run_id).await?;
            run.artifacts
                .iter()
                .find(|a| a.path == rel)
                .map(|a| a.blob.clone())
                .ok_or_else(|| not_found(format!("artifact '{rel}' of run '{run_id}'")))?
        }
        Owner::Model(id) => app
            .store
            .logged_model_artifacts(id)
            .await?
            .into_iter()
            .find(|(p, _, _)| *p == rel)
            .map(|(_, blob, _)| blob)
            .ok_or_else(|| not_found(format!("artifact '{rel}' of logged model '{id}'")))?,
    };
    crate::artifacts::send_artifact(&app.blobs, &blob, rel).map_err(|e| internal(format!("artifact '{rel}' cannot be read: {e}")))
}

/// `/get-artifact?run_uuid=…&path=…`: how MLflow's web UI reads a
/// run's file.
pub(super) async fn get_run_artifact(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> Result<Response, MlflowError> {
    let run_id = q.get("run_uuid").or(q.get("run_id")).filter(|s| !s.is_empty()).ok_or_else(|| missing("run_uuid"))?;
    let path = q.get("path").filter(|s| !s.is_empty()).ok_or_else(|| missing("path"))?;
    check_file_path(path)?;
    send_file(&app, &Owner::Run(run_id.clone()), path).await
}

/// `/model-versions/get-artifact?name&version&path`: a file of a
/// registered version, as MLflow's UI reads it, from wherever the
/// version's download URI says its files are on this server.
pub(super) async fn get_version_artifact(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> Result<Response, MlflowError> {
    let path = q.get("path").filter(|s| !s.is_empty()).ok_or_else(|| missing("path"))?;
    check_file_path(path)?;
    let name = q.get("name").filter(|s| !s.is_empty()).ok_or_else(|| missing("name"))?;
    let version = super::model_registry::version_number(&json!({"version": q.get("version")}))?;
    let v = app.store.version(name, version).await?;
    let uri = super::model_registry::resolve_source(&app, &v.source).await?;
    let Some(root) = uri.strip_prefix("mlflow-artifacts:") else {
        return Err(invalid(format!("version {version} of '{name}' keeps its files at '{uri}', which this server does not serve")));
    };
    let (owner, rel) = split_artifact_path(&format!("{}/{path}", root.trim_start_matches('/')))?;
    send_file(&app, &owner, &rel).await
}

/// `logged-models/{id}/artifacts/files?artifact_file_path=…`: a logged
/// model's file, as MLflow's UI reads it.
pub(super) async fn get_logged_model_artifact(
    State(app): State<App>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, MlflowError> {
    let path = q.get("artifact_file_path").filter(|s| !s.is_empty()).ok_or_else(|| missing("artifact_file_path"))?;
    check_file_path(path)?;
    app.store.logged_model_record(&id).await?;
    send_file(&app, &Owner::Model(id), path).await
}

/// `DELETE`: a file, or a folder and everything under it.
pub(super) async fn delete_artifact(State(app): State<App>, axum::extract::Path(path): axum::extract::Path<String>) -> R {
    let (owner, rel) = split_artifact_path(&path)?;
    if rel.is_empty() {
        return Err(invalid("name the artifact to delete"));
    }
    let deleted = match &owner {
        Owner::Run(run_id) => app.store.delete_artifacts(run_id, &rel).await?,
        Owner::Model(id) => app.store.delete_logged_model_artifact(id, &rel).await?,
    };
    if deleted == 0 {
        return Err(not_found(format!("artifact '{rel}'")));
    }
    Ok(Json(json!({})))
}

pub(super) async fn list_artifacts(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    let (owner, rel) = split_artifact_path(q.get("path").map(String::as_str).unwrap_or(""))?;
    let files = match &owner {
        Owner::Run(run_id) => children(&app, run_id, &rel).await?,
        Owner::Model(id) => model_children(&app, id, &rel).await?,
    };
    Ok(Json(json!({"files": files})))
}

pub(super) async fn list_run_artifacts(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    let run_id = q.get("run_id").or(q.get("run_uuid")).filter(|s| !s.is_empty()).ok_or_else(|| missing("run_id"))?;
    let (experiment, _, _) = app.store.run_extras(run_id).await.map_err(|_| no_run(run_id))?;
    let path = q.get("path").cloned().unwrap_or_default();
    if !path.trim_matches('/').is_empty() {
        check_file_path(path.trim_matches('/'))?;
    }
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
