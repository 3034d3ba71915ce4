//! Datasets over REST: list, show a version (schema, profile, the runs
//! that read it), upload a file as a new version, download a version.

use super::ApiError;
use crate::app::App;
use crate::views;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

type R = Result<Json<Value>, ApiError>;

/// `3` or `latest`.
fn version(v: &str) -> Result<Option<i64>, ApiError> {
    if v == "latest" {
        return Ok(None);
    }
    v.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .map(Some)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, format!("version `{v}` is not a number from 1 or `latest`")))
}

pub async fn list(State(app): State<App>) -> R {
    let out: Vec<Value> =
        app.store.list_datasets().await?.into_iter().map(|(v, n)| json!({"latest": views::DatasetVersion::from(&v), "versions": n})).collect();
    Ok(Json(json!(out)))
}

pub async fn versions(State(app): State<App>, Path(name): Path<String>) -> R {
    let versions = app.store.dataset_versions(&name).await?;
    if versions.is_empty() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("dataset `{name}` not found")));
    }
    Ok(Json(json!({"name": name, "versions": views::all::<_, views::DatasetVersion>(&versions)})))
}

pub async fn show(State(app): State<App>, Path((name, v)): Path<(String, String)>) -> R {
    let v = app.store.dataset_version(&name, version(&v)?).await?;
    let parse = |s: &Option<String>| s.as_deref().map(serde_json::from_str::<Value>).transpose();
    let (schema, prof) = (parse(&v.schema_json), parse(&v.profile_json));
    let (Ok(schema), Ok(prof)) = (schema, prof) else {
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the stored profile of {name}@{} is not JSON", v.version)));
    };
    let runs: Vec<Value> = app.store.dataset_usage(&v.name, v.version).await?.into_iter().map(|(r, i)| json!({"run_id": r, "input": i})).collect();
    Ok(Json(json!({"version": views::DatasetVersion::from(&v), "schema": schema, "profile": prof, "runs": runs})))
}

#[derive(Deserialize)]
pub struct UploadQuery {
    /// The file's name: its extension says whether it is CSV/TSV/Parquet.
    filename: String,
    #[serde(default)]
    no_profile: bool,
}

/// `POST /api/v1/datasets/{name}/versions?filename=train.csv`, the file as
/// the body (streamed to the blob store).
pub async fn upload(
    State(app): State<App>,
    Path(name): Path<String>,
    Query(q): Query<UploadQuery>,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if q.filename.is_empty() || q.filename.contains('/') {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("filename `{}` must be a plain file name", q.filename)));
    }
    let (blob, size) = super::artifacts::receive(&app.blobs, body, app.limits.upload_size)
        .await
        .map_err(|e| ApiError::new(e.status(), format!("storing the upload failed: {e}")))?;
    let (v, created) = crate::data::add_blob(&app, &name, &blob, size, &q.filename, !q.no_profile).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!({"version": views::DatasetVersion::from(&v), "created": created}))))
}

/// The bytes of a file version (a folder version gives its manifest).
pub async fn download(State(app): State<App>, Path((name, v)): Path<(String, String)>) -> Result<Response, ApiError> {
    let v = app.store.dataset_version(&name, version(&v)?).await?;
    let media = match v.format.as_str() {
        "csv" => "text/csv",
        "tsv" => "text/tab-separated-values",
        _ if v.kind == "dir" => "application/json",
        _ => "application/octet-stream",
    };
    super::artifacts::send(&app.blobs, &v.hash, media).map_err(|e| {
        let status = if matches!(e, crate::blobs::BlobError::Missing(_)) { StatusCode::NOT_FOUND } else { StatusCode::INTERNAL_SERVER_ERROR };
        ApiError::new(status, format!("{name}@{}: {e}", v.version))
    })
}
