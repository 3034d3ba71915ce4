//! One error type for the API, mapped once to a status and a JSON body.
//! The client gets a stable message; server faults are logged in full.

use crate::invalid::Invalid;
use crate::pipeline::spec::SpecError;
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    /// A 5xx body carries only the request id (see `guard::error_body`).
    fn into_response(self) -> Response {
        super::guard::error_body(self.status, false, self.message)
    }
}

impl From<anyhow::Error> for ApiError {
    /// The client's mistakes by type; everything else is the server's.
    fn from(e: anyhow::Error) -> Self {
        let message = format!("{e:#}");
        if let Some(s) = e.downcast_ref::<StoreError>() {
            let status = match s {
                StoreError::NotFound(_) => StatusCode::NOT_FOUND,
                StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
                StoreError::Conflict(_) | StoreError::RunNotActive { .. } => StatusCode::CONFLICT,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            return ApiError::new(status, message);
        }
        let client = e.downcast_ref::<SpecError>().is_some()
            || e.downcast_ref::<Invalid>().is_some()
            || e.downcast_ref::<crate::dataset::ReadError>().is_some();
        let status = if client { StatusCode::BAD_REQUEST } else { StatusCode::INTERNAL_SERVER_ERROR };
        ApiError::new(status, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        anyhow::Error::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_mistakes_are_4xx_and_everything_else_is_a_server_fault() {
        let status = |e: anyhow::Error| ApiError::from(e).status;
        assert_eq!(status(StoreError::NotFound("run `x`".into()).into()), StatusCode::NOT_FOUND);
        assert_eq!(status(StoreError::Invalid("blank name".into()).into()), StatusCode::BAD_REQUEST);
        assert_eq!(status(StoreError::Conflict("exists".into()).into()), StatusCode::CONFLICT);
        assert_eq!(status(crate::invalid::invalid("bad override")), StatusCode::BAD_REQUEST);
        assert_eq!(status(SpecError { file: "p.toml".into(), line: 3, message: "no such stage".into() }.into()), StatusCode::BAD_REQUEST);
        // A database that cannot take the write, and any error nobody
        // classified, are the server's: 500, not 409 or 400.
        assert_eq!(status(StoreError::Unavailable("disk full".into()).into()), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status(anyhow::anyhow!("open /srv/kiln/.kiln/blobs: permission denied")), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
