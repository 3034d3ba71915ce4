//! Serving over REST: `POST /deployments/{name}/invocations` (MLflow's
//! scoring protocol, see `scoring.rs`), deployments under
//! `/api/v1/deployments`, and the registry from Kiln's side under
//! `/api/v1/models`.

use super::ApiError;
use crate::app::App;
use crate::scoring;
use crate::serving::rollout::{self, Policy};
use crate::serving::stats::Role;
use crate::serving::target::{self, GrantSet, TargetOptions};
use crate::serving::{self, DeployOptions, ServeError};
use crate::views;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kiln_services::runtime::RuntimeError;
use serde::Deserialize;
use serde_json::{Value, json};

type R = Result<Json<Value>, ApiError>;

/// A request body larger than this is refused with 413 before it is read
/// whole: 10,000 rows of 100 columns of numbers fit.
pub const MAX_BODY: usize = 32 << 20;

/// A client's key for a canary split: requests with the same key are
/// answered by the same version (an A/B test's arm).
pub const ROUTE_KEY: &str = "x-kiln-route-key";

/// An error as `mlflow models serve` shapes it, with the column when the
/// input was wrong, and the status it maps to.
fn failure(status: StatusCode, code: &str, message: String, column: Option<String>) -> Response {
    let mut body = json!({"error_code": code, "message": message});
    if let Some(c) = column {
        body["column"] = json!(c);
    }
    let mut response = (status, Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn serve_failure(e: ServeError) -> Response {
    let message = e.to_string();
    match e {
        ServeError::NoDeployment(_) => failure(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", message, None),
        ServeError::BadInput { column, .. } => failure(StatusCode::BAD_REQUEST, "BAD_REQUEST", message, column),
        ServeError::Busy(_) | ServeError::Unavailable(_) | ServeError::Load(..) => {
            tracing::warn!("{message}");
            failure(StatusCode::SERVICE_UNAVAILABLE, "TEMPORARILY_UNAVAILABLE", message, None)
        }
        ServeError::Predict(_, RuntimeError::Plugin { code, field, .. }) if code != "plugin error" => {
            failure(StatusCode::BAD_REQUEST, "BAD_REQUEST", format!("the model refused the input: {message}"), field)
        }
        ServeError::Predict(_, RuntimeError::Timeout(_)) => {
            tracing::warn!("{message}");
            failure(StatusCode::GATEWAY_TIMEOUT, "DEADLINE_EXCEEDED", format!("{message}; the instance was replaced"), None)
        }
        ServeError::Predict(..) => {
            tracing::warn!("{message}");
            failure(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", format!("the model failed on this request: {message}"), None)
        }
    }
}

/// `POST /deployments/{name}/invocations`.
/// `POST /invocations` of a bundle server: its one deployment's.
pub async fn only_invocations(State(app): State<App>, headers: HeaderMap, body: axum::body::Body) -> Response {
    let name = match app.store.deployments().await {
        Ok(all) if all.len() == 1 => all[0].name.clone(),
        Ok(_) => {
            return failure(
                StatusCode::NOT_FOUND,
                "RESOURCE_DOES_NOT_EXIST",
                "this server has no single deployment; POST /deployments/NAME/invocations".into(),
                None,
            );
        }
        Err(e) => return failure(StatusCode::SERVICE_UNAVAILABLE, "TEMPORARILY_UNAVAILABLE", e.to_string(), None),
    };
    invocations(State(app), Path(name), headers, body).await
}

pub async fn invocations(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap, body: axum::body::Body) -> Response {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let too_large = || failure(StatusCode::PAYLOAD_TOO_LARGE, "BAD_REQUEST", format!("the request body is larger than {MAX_BODY} bytes"), None);
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let key = headers.get(ROUTE_KEY).and_then(|v| v.to_str().ok());
    let routed = match serving::route(&app, &name, key).await {
        Ok(r) => r,
        Err(e) => return serve_failure(e),
    };
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else { return too_large() };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let signature = &routed.pool.signature;
    let parsed = match essence.as_str() {
        "application/json" => scoring::from_json(&bytes, signature),
        "text/csv" => scoring::from_csv(&bytes, signature),
        _ => {
            let shown = if content_type.is_empty() { "none".to_string() } else { format!("`{content_type}`") };
            return failure(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "BAD_REQUEST",
                format!("content type {shown} is not served: send application/json (MLflow's scoring protocol) or text/csv"),
                None,
            );
        }
    };
    let table = match parsed {
        Ok(t) => t,
        Err(e) => return failure(StatusCode::BAD_REQUEST, "BAD_REQUEST", e.message, e.column),
    };
    match serving::predict(&app, routed, table).await {
        Ok(served) => {
            let mut response = Json(scoring::response(&served.predictions)).into_response();
            let h = response.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&served.model_name) {
                h.insert("x-kiln-model", v);
            }
            h.insert("x-kiln-model-version", HeaderValue::from(served.version));
            h.insert("x-kiln-route", HeaderValue::from_static(served.role.as_str()));
            response
        }
        Err(e) => serve_failure(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployBody {
    name: String,
    /// `MODEL@VERSION` or `MODEL@ALIAS`.
    model: String,
    instances: Option<i64>,
    /// `30s`, `500ms`.
    timeout: Option<String>,
    max_rows: Option<i64>,
    /// Deploy through a deployer plugin too. Only what the operator granted
    /// the plugin (`kiln plugin grant`) applies: a client cannot grant a
    /// directory of the server's.
    target: Option<TargetBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetBody {
    plugin: String,
    #[serde(default = "empty_object")]
    params: Value,
}

fn empty_object() -> Value {
    json!({})
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// A deploy the user got wrong (an unknown model or version is a 404).
fn deploy_error(e: anyhow::Error) -> ApiError {
    if e.downcast_ref::<crate::store::StoreError>().is_some() {
        return e.into();
    }
    bad_request(format!("{e:#}"))
}

/// `POST /api/v1/deployments`: create or repoint one; its instances are
/// loaded before the answer, so the first prediction is warm.
pub async fn create(State(app): State<App>, Json(body): Json<DeployBody>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let timeout =
        body.timeout.as_deref().map(kiln_services::runtime::parse_duration).transpose().map_err(|e| bad_request(format!("timeout: {e}")))?;
    let options = DeployOptions { instances: body.instances, timeout, max_rows: body.max_rows };
    let d = serving::deploy(&app, &body.name, &body.model, &options).await.map_err(deploy_error)?;
    let target = match body.target {
        Some(t) => {
            let options = TargetOptions { plugin: t.plugin, params: t.params, grants: GrantSet::default() };
            target::deploy_to(&app, &d.name, &options).await.map(Some)
        }
        None => target::redeploy(&app, &d.name).await,
    }
    .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}")))?;
    warm(&app, &d.name).await?;
    let mut out = json!(views::Deployment::from(&d));
    if let Some((t, _)) = target {
        out["target"] = json!(views::DeployTarget::from(&t));
    }
    Ok((StatusCode::CREATED, Json(out)))
}

async fn warm(app: &App, name: &str) -> Result<(), ApiError> {
    serving::warm(app, name).await.map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("deployed, but a version does not load: {e}")))
}

pub async fn list(State(app): State<App>) -> R {
    Ok(Json(json!(views::all::<_, views::Deployment>(&app.store.deployments().await?))))
}

/// `GET /api/v1/deployments/{name}`: the deployment, what each of its
/// versions served in the current rollout (over every process), and, when
/// this process serves it, its instances.
pub async fn show(State(app): State<App>, Path(name): Path<String>) -> R {
    let d = app.store.deployment(&name).await?;
    let mut out = json!(views::Deployment::from(&d));
    app.rollout_stats.flush(&app.store).await?;
    out["traffic"] = json!(views::RoleTraffic::of(&app.store.rollout_stats(&name, d.rollout).await?));
    if let Some(pool) = app.pools.of_role(&d, Role::Stable) {
        out["serving"] = json!({"idle_instances": pool.idle(), "replaced_instances": pool.replaced()});
    }
    if let Some(t) = app.store.deploy_target(&name).await? {
        out["target"] = json!(views::DeployTarget::from(&t));
    }
    Ok(Json(out))
}

pub async fn delete(State(app): State<App>, Path(name): Path<String>) -> R {
    app.store.delete_deployment(&name).await?;
    app.pools.remove(&name);
    Ok(Json(json!({})))
}

/// `GET /api/v1/deployments/{name}/history`: every change, oldest first.
pub async fn history(State(app): State<App>, Path(name): Path<String>) -> R {
    let events = serving::history(&app, &name).await?;
    Ok(Json(json!(views::all::<_, views::DeploymentEvent>(&events))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryBody {
    /// `MODEL@VERSION` or `MODEL@ALIAS`.
    model: String,
    percent: f64,
    #[serde(default)]
    policy: Option<Policy>,
}

/// `POST /api/v1/deployments/{name}/canary`: start a rollout.
pub async fn canary(State(app): State<App>, Path(name): Path<String>, Json(body): Json<CanaryBody>) -> R {
    let policy = body.policy.unwrap_or_default();
    let d = rollout::start_canary(&app, &name, &body.model, body.percent, &policy).await.map_err(deploy_error)?;
    warm(&app, &name).await?;
    Ok(Json(json!(views::Deployment::from(&d))))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    reason: Option<String>,
}

fn no_canary(name: &str) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, format!("deployment `{name}` has no canary to decide on"))
}

/// `POST /api/v1/deployments/{name}/promote`.
pub async fn promote(State(app): State<App>, Path(name): Path<String>, body: Option<Json<DecisionBody>>) -> R {
    let reason = body.and_then(|b| b.0.reason).unwrap_or_else(|| "promoted by hand".into());
    let d = rollout::promote(&app, &name, None, &reason).await.map_err(deploy_error)?.ok_or_else(|| no_canary(&name))?;
    Ok(Json(json!(views::Deployment::from(&d))))
}

/// `POST /api/v1/deployments/{name}/rollback`.
pub async fn rollback(State(app): State<App>, Path(name): Path<String>, body: Option<Json<DecisionBody>>) -> R {
    let reason = body.and_then(|b| b.0.reason).unwrap_or_else(|| "rolled back by hand".into());
    let d = rollout::roll_back(&app, &name, None, &reason).await.map_err(deploy_error)?.ok_or_else(|| no_canary(&name))?;
    Ok(Json(json!(views::Deployment::from(&d))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowBody {
    model: String,
}

/// `PUT /api/v1/deployments/{name}/shadow`: mirror every request there.
pub async fn set_shadow(State(app): State<App>, Path(name): Path<String>, Json(body): Json<ShadowBody>) -> R {
    let d = rollout::set_shadow(&app, &name, Some(&body.model)).await.map_err(deploy_error)?;
    warm(&app, &name).await?;
    Ok(Json(json!(views::Deployment::from(&d))))
}

/// `DELETE /api/v1/deployments/{name}/shadow`.
pub async fn stop_shadow(State(app): State<App>, Path(name): Path<String>) -> R {
    let d = rollout::set_shadow(&app, &name, None).await.map_err(deploy_error)?;
    Ok(Json(json!(views::Deployment::from(&d))))
}

pub async fn models(State(app): State<App>) -> R {
    Ok(Json(json!(crate::registry::summaries(&app.store).await?)))
}

pub async fn model(State(app): State<App>, Path(name): Path<String>) -> R {
    let model = app.store.model(&name).await?;
    let versions = app.store.versions(&name).await?;
    let aliases = app.store.aliases(&name).await?;
    Ok(Json(json!(views::ModelDetail::new(&model, &versions, &aliases))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    run_id: String,
    stage: String,
    alias: Option<String>,
}

/// `POST /api/v1/models/{name}/versions`: register a run's trained model.
pub async fn register(
    State(app): State<App>,
    Path(name): Path<String>,
    Json(body): Json<RegisterBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let v = serving::register(&app, &body.run_id, &body.stage, &name, body.alias.as_deref()).await.map_err(deploy_error)?;
    Ok((StatusCode::CREATED, Json(json!(views::ModelVersion::from(&v)))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasBody {
    version: i64,
}

/// `PUT /api/v1/models/{name}/aliases/{alias}`.
pub async fn set_alias(State(app): State<App>, Path((name, alias)): Path<(String, String)>, Json(body): Json<AliasBody>) -> R {
    crate::registry::check_alias(&alias).map_err(bad_request)?;
    app.store.set_alias(&name, &alias, body.version).await?;
    Ok(Json(json!({"name": name, "alias": alias, "version": body.version})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageBody {
    stage: String,
    #[serde(default)]
    archive_existing: bool,
}

/// `POST /api/v1/models/{name}/versions/{version}/stage`.
pub async fn set_stage(State(app): State<App>, Path((name, version)): Path<(String, i64)>, Json(body): Json<StageBody>) -> R {
    let v = app.store.transition_stage(&name, version, &body.stage, body.archive_existing).await.map_err(|e| match e {
        crate::store::StoreError::Conflict(m) => bad_request(m),
        other => other.into(),
    })?;
    Ok(Json(json!(views::ModelVersion::from(&v))))
}
