//! Kiln's REST API under `/api/v1/`: the only module that knows HTTP and
//! JSON wire formats. Handlers are thin: they call the same services the
//! CLI calls.

mod error;
mod mlflow;
mod pipelines;

use crate::app::App;
use axum::Router;
use axum::routing::{get, post};

pub use error::ApiError;

pub fn router(app: App) -> Router {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/pipelines", post(pipelines::register).get(pipelines::list))
        .route("/api/v1/pipelines/{name}/runs", post(pipelines::submit))
        .route("/api/v1/pipeline-runs/{id}", get(pipelines::status))
        .route("/api/v1/pipeline-runs/{id}/events", get(pipelines::events))
        .route("/api/v1/pipeline-runs/{id}/cancel", post(pipelines::cancel))
        .merge(mlflow::router())
        .with_state(app)
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}
