//! Artifact bodies in and out of the blob store, streamed: an upload or a
//! download of any size holds one chunk in memory at a time.

use crate::blobs::{BlobError, BlobStore};
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

/// Why an upload was not stored.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The client stopped sending, or went away.
    #[error("the upload was interrupted: {0}")]
    Body(axum::Error),
    #[error("the upload is larger than the limit of {limit} bytes (`upload_size` under [limits] in kiln.toml)")]
    TooLarge { limit: u64 },
    #[error(transparent)]
    Blob(#[from] BlobError),
}

impl UploadError {
    /// The client's doing (4xx) or the server's (5xx).
    pub fn status(&self) -> StatusCode {
        match self {
            UploadError::Body(_) => StatusCode::BAD_REQUEST,
            UploadError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            UploadError::Blob(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Store a request body of at most `limit` bytes as a blob; returns (blob
/// id, size). An interrupted or oversized upload leaves no blob behind.
pub async fn receive(blobs: &BlobStore, body: Body, limit: u64) -> Result<(String, u64), UploadError> {
    let mut writer = blobs.writer()?;
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(UploadError::Body)?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(UploadError::TooLarge { limit });
        }
        writer.write(&chunk)?;
    }
    // The fsync can take a while on a large file: off the async threads.
    tokio::task::spawn_blocking(move || writer.finish())
        .await
        .map_err(|e| BlobError::Io { path: "(blob writer)".into(), error: std::io::Error::other(e) })?
        .map_err(UploadError::Blob)
}

/// Extensions MLflow serves as `text/plain` whatever else they might be
/// (mlflow/server/handlers.py `TEXT_EXTENSIONS`), and its extension-less
/// model files.
const TEXT_EXTENSIONS: &[&str] = &[
    "txt",
    "log",
    "err",
    "cfg",
    "conf",
    "cnf",
    "cf",
    "ini",
    "properties",
    "prop",
    "hocon",
    "toml",
    "yaml",
    "yml",
    "xml",
    "json",
    "js",
    "py",
    "py3",
    "csv",
    "tsv",
    "md",
    "rst",
    "MLmodel",
    "mlproject",
];

/// The media type of an artifact, from its file name only, as MLflow
/// decides it: the uploader's Content-Type is never trusted, so an upload
/// cannot make the server hand a browser HTML or script of its choosing.
pub fn media_type_for(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    let extension = match name.rsplit_once('.') {
        Some((_, ext)) if !ext.is_empty() => ext,
        _ => name,
    };
    if TEXT_EXTENSIONS.contains(&extension) {
        return "text/plain".into();
    }
    mime_guess::from_path(name).first_raw().unwrap_or("application/octet-stream").to_string()
}

/// An artifact download: its type from its name, never sniffed, and an
/// attachment (a browser saves it rather than rendering it on this
/// server's origin), as MLflow sends artifacts.
pub fn send_artifact(blobs: &BlobStore, id: &str, path: &str) -> Result<Response, BlobError> {
    let mut response = send(blobs, id, &media_type_for(path))?;
    let name = path.rsplit('/').next().unwrap_or(path);
    // The name as a quoted-string and as RFC 5987 UTF-8, so any name is safe in the header.
    let ascii: String = name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let encoded: String =
        name.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
    let headers = response.headers_mut();
    headers.insert(axum::http::header::X_CONTENT_TYPE_OPTIONS, axum::http::HeaderValue::from_static("nosniff"));
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")) {
        headers.insert(axum::http::header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// A response streaming a blob, verified on the way out.
pub fn send(blobs: &BlobStore, id: &str, media_type: &str) -> Result<Response, BlobError> {
    let (size, stream) = blobs.read_stream(id)?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, media_type.to_string()), (axum::http::header::CONTENT_LENGTH, size.to_string())],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_come_from_the_name_as_mlflow_gives_them() {
        assert_eq!(media_type_for("model/MLmodel"), "text/plain");
        assert_eq!(media_type_for("notes.json"), "text/plain");
        assert_eq!(media_type_for("plot.png"), "image/png");
        assert_eq!(media_type_for("page.html"), "text/html");
        assert_eq!(media_type_for("weights.bin"), "application/octet-stream");
        assert_eq!(media_type_for("no-extension"), "application/octet-stream");
    }
}
