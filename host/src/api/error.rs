//! One error type for the API, mapped once to a status and a JSON body.
//! The client gets a stable message; server faults are logged in full.

use crate::pipeline::spec::SpecError;
use crate::store::StoreError;
use axum::Json;
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
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({"error": self.message}))).into_response()
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        let message = format!("{e:#}");
        if let Some(s) = e.downcast_ref::<StoreError>() {
            return match s {
                StoreError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, message),
                StoreError::Conflict(_) | StoreError::RunNotActive { .. } => ApiError::new(StatusCode::CONFLICT, message),
                _ => {
                    tracing::error!("store error: {message}");
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error (see the server log)")
                }
            };
        }
        if e.downcast_ref::<SpecError>().is_some() || e.downcast_ref::<crate::dataset::CsvError>().is_some() {
            return ApiError::new(StatusCode::BAD_REQUEST, message);
        }
        // What is left are checks on the request (unknown plugin, bad
        // override, invalid params): the client's to fix.
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        anyhow::Error::from(e).into()
    }
}
