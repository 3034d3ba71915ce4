//! `kiln-api`: Kiln's REST API under `/api/v1/` and MLflow's under
//! `/api/2.0/mlflow/`, the only crate that knows HTTP and JSON wire
//! formats. Handlers are thin: they call the same services the CLI calls.

mod artifacts;
mod datasets;
mod deployments;
mod error;
mod guard;
mod mlflow;
mod pipelines;
mod scoring;
mod server;
mod tracking;

// The services, under the paths the handlers name them by.
use kiln_services::{app, blobs, data, dataset, invalid, pipeline, records, registry, serving, store, views};

use crate::app::App;
use axum::Router;
use axum::routing::{get, post};
use kiln_services::listen::Routes;

pub use error::ApiError;
pub use guard::AllowedHosts;
pub use server::{ServeOptions, serve, serve_boxed};

/// Every route, behind the guard (Host and content-type checks, request
/// ids, JSON error bodies).
pub fn router(app: App, hosts: AllowedHosts, routes: Routes) -> Router {
    let routes = match routes {
        Routes::All => everything(),
        Routes::Bundle => bundle(),
    };
    routes.with_state(app).layer(axum::middleware::from_fn_with_state(std::sync::Arc::new(hosts), guard::guard))
}

/// `kiln serve --bundle`: one deployment's predictions and description,
/// the health checks, nothing that writes.
fn bundle() -> Router<App> {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/health", get(|| async { "OK" }))
        // `mlflow models serve`'s probe and its one scoring endpoint.
        .route("/ping", get(|| async { "\n" }))
        .route("/invocations", post(deployments::only_invocations))
        .route("/api/v1/deployments", get(deployments::list))
        .route("/api/v1/deployments/{name}", get(deployments::show))
        .route("/deployments/{name}/invocations", post(deployments::invocations))
}

fn everything() -> Router<App> {
    Router::new()
        .route("/api/v1/health", get(health))
        // MLflow's liveness probe, for tools that check it.
        .route("/health", get(|| async { "OK" }))
        .route("/api/v1/pipelines", post(pipelines::register).get(pipelines::list))
        .route("/api/v1/pipelines/{name}/runs", post(pipelines::submit))
        .route("/api/v1/pipeline-runs/{id}", get(pipelines::status))
        .route("/api/v1/pipeline-runs/{id}/events", get(pipelines::events))
        .route("/api/v1/pipeline-runs/{id}/cancel", post(pipelines::cancel))
        .route("/api/v1/openapi.json", get(tracking::openapi))
        .route("/api/v1/experiments", get(tracking::list_experiments).post(tracking::create_experiment))
        .route("/api/v1/experiments/{name}", axum::routing::patch(tracking::rename_experiment).delete(tracking::delete_experiment))
        .route("/api/v1/experiments/{name}/restore", post(tracking::restore_experiment))
        .route("/api/v1/runs", post(tracking::create_run))
        .route("/api/v1/runs/search", post(tracking::search_runs))
        .route("/api/v1/runs/{id}", get(tracking::get_run).patch(tracking::update_run).delete(tracking::delete_run))
        .route("/api/v1/runs/{id}/restore", post(tracking::restore_run))
        .route("/api/v1/runs/{id}/log", post(tracking::log_batch))
        .route("/api/v1/runs/{id}/metrics/{key}", get(tracking::metric_history))
        .route("/api/v1/runs/{id}/artifacts", get(tracking::list_artifacts))
        .route("/api/v1/runs/{id}/artifacts/{*path}", get(tracking::download_artifact).put(tracking::upload_artifact))
        .route("/api/v1/datasets", get(datasets::list))
        .route("/api/v1/datasets/{name}", get(datasets::versions))
        .route("/api/v1/datasets/{name}/versions", post(datasets::upload))
        .route("/api/v1/datasets/{name}/versions/{version}", get(datasets::show))
        .route("/api/v1/datasets/{name}/versions/{version}/content", get(datasets::download))
        .route("/api/v1/models", get(deployments::models))
        .route("/api/v1/models/{name}", get(deployments::model))
        .route("/api/v1/models/{name}/versions", post(deployments::register))
        .route("/api/v1/models/{name}/versions/{version}/stage", post(deployments::set_stage))
        .route("/api/v1/models/{name}/aliases/{alias}", axum::routing::put(deployments::set_alias))
        .route("/api/v1/deployments", post(deployments::create).get(deployments::list))
        .route("/api/v1/deployments/{name}", get(deployments::show).delete(deployments::delete))
        .route("/api/v1/deployments/{name}/history", get(deployments::history))
        .route("/api/v1/deployments/{name}/canary", post(deployments::canary))
        .route("/api/v1/deployments/{name}/promote", post(deployments::promote))
        .route("/api/v1/deployments/{name}/rollback", post(deployments::rollback))
        .route("/api/v1/deployments/{name}/shadow", axum::routing::put(deployments::set_shadow).delete(deployments::stop_shadow))
        // MLflow's scoring protocol, one endpoint per deployment.
        .route("/deployments/{name}/invocations", post(deployments::invocations))
        .merge(mlflow::router())
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}
