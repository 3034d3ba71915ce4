//! Artifact bodies in and out of the blob store, streamed: an upload or a
//! download of any size holds one chunk in memory at a time.

use crate::blobs::{BlobError, BlobStore};
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

/// Why an upload was not stored.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the upload was interrupted: {0}")]
    Body(axum::Error),
    #[error(transparent)]
    Blob(#[from] BlobError),
}

/// Store a request body as a blob; returns (blob id, size). An interrupted
/// upload leaves no blob behind.
pub async fn receive(blobs: &BlobStore, body: Body) -> Result<(String, u64), UploadError> {
    let mut writer = blobs.writer()?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        writer.write(&chunk.map_err(UploadError::Body)?)?;
    }
    // The fsync can take a while on a large file: off the async threads.
    tokio::task::spawn_blocking(move || writer.finish())
        .await
        .map_err(|e| BlobError::Io { path: "(blob writer)".into(), source: std::io::Error::other(e) })?
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
