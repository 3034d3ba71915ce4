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

/// A response streaming a blob, verified on the way out.
pub fn send(blobs: &BlobStore, id: &str, media_type: &str) -> Result<Response, BlobError> {
    let (size, stream) = blobs.read_stream(id)?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, media_type.to_string()), (axum::http::header::CONTENT_LENGTH, size.to_string())],
        Body::from_stream(stream),
    )
        .into_response())
}
