//! Runs: create, get, update, delete, restore; params, metrics, tags,
//! batches, inputs; search and metric history.

use super::*;

pub(super) async fn run_json(app: &App, run_id: &str) -> Result<Value, MlflowError> {
    let views = app.store.run_views(&[run_id.to_string()]).await?;
    let v = views.first().ok_or_else(|| no_run(run_id))?;
    Ok(serde_json::to_value(RunJson(v)).expect("a run serialises"))
}

/// A run in MLflow's shape, written straight from the view (no `Value`
/// tree: a search answers with a thousand of these).
struct RunJson<'a>(&'a RunView);

impl serde::Serialize for RunJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        let v = self.0;
        struct Info<'a>(&'a RunView);
        impl serde::Serialize for Info<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let v = self.0;
                let mut m = s.serialize_map(Some(10))?;
                m.serialize_entry("run_id", &v.id)?;
                m.serialize_entry("run_uuid", &v.id)?;
                m.serialize_entry("run_name", &v.name)?;
                m.serialize_entry("experiment_id", &v.experiment_id)?;
                m.serialize_entry("user_id", &v.user_id)?;
                m.serialize_entry("status", &v.status)?;
                m.serialize_entry("start_time", &v.start_time)?;
                m.serialize_entry("end_time", &v.end_time)?;
                // Under the experiment's own location when it has one.
                let uri = match v.artifact_location.as_str() {
                    "" => format!("mlflow-artifacts:/{}/{}/artifacts", v.experiment_id, v.id),
                    root => format!("{root}/{}/artifacts", v.id),
                };
                m.serialize_entry("artifact_uri", &uri)?;
                m.serialize_entry("lifecycle_stage", &v.lifecycle_stage)?;
                m.end()
            }
        }
        struct Pairs<'a>(&'a [(String, String)], Option<&'a str>);
        impl serde::Serialize for Pairs<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.len() + usize::from(self.1.is_some())))?;
                for (k, v) in self.0 {
                    seq.serialize_element(&KeyValue(k, v))?;
                }
                if let Some(name) = self.1 {
                    seq.serialize_element(&KeyValue("mlflow.runName", name))?;
                }
                seq.end()
            }
        }
        struct KeyValue<'a>(&'a str, &'a str);
        impl serde::Serialize for KeyValue<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("key", self.0)?;
                m.serialize_entry("value", self.1)?;
                m.end()
            }
        }
        struct Metrics<'a>(&'a [MetricPoint]);
        impl serde::Serialize for Metrics<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.len()))?;
                for p in self.0 {
                    seq.serialize_element(&MetricJson::from(p))?;
                }
                seq.end()
            }
        }
        struct Data<'a>(&'a RunView);
        impl serde::Serialize for Data<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let v = self.0;
                // Runs not made through MLflow's API have no name tag; its
                // client reads the name from there.
                let name = (!v.tags.iter().any(|(k, _)| k == "mlflow.runName")).then_some(v.name.as_str());
                let mut m = s.serialize_map(Some(3))?;
                m.serialize_entry("metrics", &Metrics(&v.metrics))?;
                m.serialize_entry("params", &Pairs(&v.params, None))?;
                m.serialize_entry("tags", &Pairs(&v.tags, name))?;
                m.end()
            }
        }
        // MLflow's JSON leaves out empty lists; `inputs` is always there,
        // `outputs` only when the run produced a logged model.
        struct Inputs<'a>(&'a RunIo);
        impl serde::Serialize for Inputs<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let io = self.0;
                let mut m = s.serialize_map(None)?;
                if !io.datasets.is_empty() {
                    let datasets: Vec<Value> = io
                        .datasets
                        .iter()
                        .map(|d| {
                            json!({
                                "tags": d.tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
                                "dataset": {"name": d.name, "digest": d.digest, "source_type": d.source_type, "source": d.source, "schema": d.schema, "profile": d.profile},
                            })
                        })
                        .collect();
                    m.serialize_entry("dataset_inputs", &datasets)?;
                }
                if !io.models.is_empty() {
                    m.serialize_entry("model_inputs", &io.models.iter().map(|id| json!({"model_id": id})).collect::<Vec<_>>())?;
                }
                m.end()
            }
        }
        let has_outputs = !v.io.outputs.is_empty();
        let mut m = s.serialize_map(Some(3 + usize::from(has_outputs)))?;
        m.serialize_entry("info", &Info(v))?;
        m.serialize_entry("data", &Data(v))?;
        m.serialize_entry("inputs", &Inputs(&v.io))?;
        if has_outputs {
            let outputs: Vec<Value> = v.io.outputs.iter().map(|(id, step)| json!({"model_id": id, "step": step})).collect();
            m.serialize_entry("outputs", &json!({"model_outputs": outputs}))?;
        }
        m.end()
    }
}

/// A metric point as MLflow writes it (NaN and the infinities as strings),
/// with its run where several runs' points share a list.
struct MetricJson<'a> {
    key: &'a str,
    value: f64,
    timestamp: i64,
    step: i64,
    run_id: Option<&'a str>,
}

impl<'a> From<&'a MetricPoint> for MetricJson<'a> {
    fn from(p: &'a MetricPoint) -> Self {
        MetricJson { key: &p.key, value: p.value, timestamp: p.timestamp, step: p.step, run_id: None }
    }
}

impl serde::Serialize for MetricJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let p = self;
        let mut m = s.serialize_map(Some(4 + usize::from(p.run_id.is_some())))?;
        m.serialize_entry("key", &p.key)?;
        if p.value.is_finite() {
            m.serialize_entry("value", &p.value)?;
        } else {
            m.serialize_entry("value", &double_json(p.value))?;
        }
        m.serialize_entry("timestamp", &p.timestamp)?;
        m.serialize_entry("step", &p.step)?;
        if let Some(run_id) = p.run_id {
            m.serialize_entry("run_id", run_id)?;
        }
        m.end()
    }
}

pub(super) async fn create_run(State(app): State<App>, Json(body): Json<Value>) -> R {
    app.store.ensure_default_experiment().await?;
    let experiment_id = text(&body, &["experiment_id"]).unwrap_or_else(|| "0".into());
    let experiment =
        app.store.experiment_by_id(&experiment_id).await?.ok_or_else(|| not_found(format!("No Experiment with id={experiment_id} exists")))?;
    if experiment.lifecycle_stage != "active" {
        return Err(invalid(format!(
            "The experiment {experiment_id} must be in the 'active' state. Current state is {}.",
            experiment.lifecycle_stage
        )));
    }
    let tags: Vec<(String, String)> = body
        .get("tags")
        .and_then(|t| t.as_array())
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t["key"].as_str()?.to_string(), t["value"].as_str().unwrap_or("").to_string())))
        .collect();
    let name = text(&body, &["run_name"])
        .or_else(|| tags.iter().find(|(k, _)| k == "mlflow.runName").map(|(_, v)| v.clone()))
        .unwrap_or_else(|| format!("run-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    let start = int(&body, "start_time")?.unwrap_or_else(now_ms);
    let user = text(&body, &["user_id"]).unwrap_or_default();
    // `start_run(nested=True)` names the parent in a tag; Kiln records it
    // as the run's parent so nesting shows in listings and lineage.
    // MLflow does not look the parent up; a parent this server does not
    // hold stays a tag only.
    let mut parent = tags.iter().find(|(k, _)| k == "mlflow.parentRunId").map(|(_, v)| v.clone());
    if let Some(p) = &parent
        && app.store.run_extras(p).await.is_err()
    {
        parent = None;
    }
    let id = app.store.create_run_in(&experiment_id, parent.as_deref(), &name, &user, start, "mlflow").await?;
    let mut tags = tags;
    if !tags.iter().any(|(k, _)| k == "mlflow.runName") {
        tags.push(("mlflow.runName".into(), name));
    }
    app.store.set_tags(&id, &tags).await?;
    Ok(Json(json!({"run": run_json(&app, &id).await?})))
}

pub(super) async fn get_run(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    let id = q.get("run_id").or(q.get("run_uuid")).filter(|s| !s.is_empty()).ok_or_else(|| missing("run_id"))?;
    let mut views = app.store.run_views(std::slice::from_ref(id)).await?;
    app.store.fill_io(&mut views).await?;
    let v = views.first().ok_or_else(|| no_run(id))?;
    Ok(Json(json!({"run": RunJson(v)})))
}

/// A write to run `id` through the store's writer, which refuses unknown
/// and deleted runs itself (no lookup first: a round trip per call).
pub(super) fn logged(id: &str, r: Result<(), StoreError>) -> Result<(), MlflowError> {
    r.map_err(|e| match e {
        StoreError::NotFound(_) => no_run(id),
        other => other.into(),
    })
}

/// A run that exists and is not deleted, as MLflow requires for logging.
pub(super) async fn active_run(app: &App, id: &str) -> Result<(), MlflowError> {
    let (_, _, stage) = app.store.run_extras(id).await.map_err(|e| match e {
        StoreError::NotFound(_) => no_run(id),
        other => other.into(),
    })?;
    if stage != "active" {
        return Err(invalid(format!("The run {id} must be in the 'active' state. Current state is {stage}.")));
    }
    Ok(())
}

pub(super) async fn update_run(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = required(&body, &["run_id", "run_uuid"])?;
    let status = match text(&body, &["status"]) {
        Some(s) => Some(RunStatus::parse(&s).ok_or_else(|| invalid(format!("Invalid run status '{s}'")))?),
        None => None,
    };
    let name = text(&body, &["run_name"]);
    app.store.update_run(&id, status, int(&body, "end_time")?, name.as_deref()).await?;
    if let Some(n) = &name {
        app.store.set_tags(&id, &[("mlflow.runName".into(), n.clone())]).await?;
    }
    Ok(Json(json!({"run_info": run_json(&app, &id).await?["info"]})))
}

pub(super) async fn delete_run(State(app): State<App>, Json(body): Json<Value>) -> R {
    app.store.set_run_stage(&required(&body, &["run_id"])?, "deleted").await?;
    Ok(Json(json!({})))
}

pub(super) async fn restore_run(State(app): State<App>, Json(body): Json<Value>) -> R {
    app.store.set_run_stage(&required(&body, &["run_id"])?, "active").await?;
    Ok(Json(json!({})))
}

/// A metric of a `log-metric` call (`path` empty) or the `metrics[i]` of a
/// batch, checked as MLflow's `_validate_metric` does, in its order.
/// MLflow refuses a negative timestamp; `path` (the metric's place in the
/// request) is spelled out only for the error.
pub(super) fn check_timestamp(key: &str, value: f64, timestamp: i64, path: impl FnOnce() -> String) -> Result<(), MlflowError> {
    if timestamp < 0 {
        return Err(invalid_value(
            &at(&path(), "timestamp"),
            &json!(timestamp),
            Some(&format!("metric '{key}' (value={}). Timestamp must be a nonnegative long (64-bit integer) ", py_float(value))),
        ));
    }
    Ok(())
}

pub(super) fn metric_point(m: &Value, path: &str) -> Result<MetricPoint, MlflowError> {
    let key = required_str(m, "key", path)?;
    let value = double(m.get("value"), &at(path, "value"))?;
    check_name(&key, &at(path, "name"))?;
    // Required, as MLflow's schema has it (its clients always send one).
    let timestamp = int(m, "timestamp")?.ok_or_else(|| missing(&at(path, "timestamp")))?;
    check_timestamp(&key, value, timestamp, || path.to_string())?;
    let step = int(m, "step")?.unwrap_or(0);
    check_length("Metric name", MAX_KEY, &key)?;
    Ok(MetricPoint { key, value, timestamp, step })
}

pub(super) fn param_pair(p: &Value, path: &str) -> Result<(String, String), MlflowError> {
    let key = required_str(p, "key", path)?;
    check_name(&key, &at(path, "key"))?;
    check_length("Param key", MAX_KEY, &key)?;
    let value = match p.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let value = truncated("Param value", &key, MAX_PARAM_VALUE, value);
    Ok((key, value))
}

pub(super) fn tag_pair(t: &Value, path: &str) -> Result<(String, String), MlflowError> {
    let key = required_str(t, "key", path)?;
    check_name(&key, &at(path, "key"))?;
    check_length(&at(path, "key"), MAX_KEY, &key)?;
    let value = match t.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => return Err(wrong_type(&at(path, "value"), other)),
    };
    let value = truncated("Tag value", &key, MAX_TAG_VALUE, value);
    Ok((key, value))
}

/// An experiment tag, as MLflow's `_validate_experiment_tag` checks it
/// (values are refused, not truncated, past 20,000 characters).
pub(super) fn experiment_tag(t: &Value) -> Result<(String, String), MlflowError> {
    let key = required_str(t, "key", "")?;
    check_name(&key, "key")?;
    check_length("key", MAX_KEY, &key)?;
    let value = text(t, &["value"]).unwrap_or_default();
    check_length("value", MAX_EXPERIMENT_TAG_VALUE, &value)?;
    Ok((key, value))
}

/// A list field of a batch: absent is empty, anything but a list is
/// refused as MLflow's schema refuses it.
pub(super) fn list<'a>(body: &'a Value, key: &str) -> Result<&'a [Value], MlflowError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(wrong_type(key, other)),
    }
}

pub(super) fn batch_limit(entity: &str, limit: usize, length: usize) -> Result<(), MlflowError> {
    if length > limit {
        return Err(invalid(format!(
            "A batch logging request can contain at most {limit} {entity}. Got {length} {entity}. Please split up {entity} across multiple requests and try again."
        )));
    }
    Ok(())
}

// MLflow checks what is logged before it looks the run up, so a bad name
// on an unknown run is a 400, as there.

pub(super) async fn log_metric(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = run_id(&body)?;
    let point = metric_point(&body, "")?;
    logged(&id, app.store.log_metrics(&id, &[point]).await)?;
    // MLflow 3 links a metric to a logged model by `model_id` (and to the
    // dataset it was measured on), as in `log-batch`; one without is skipped.
    log_model_metrics(&app, &id, std::slice::from_ref(&body)).await?;
    Ok(Json(json!({})))
}

pub(super) async fn log_param(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = run_id(&body)?;
    let param = param_pair(&body, "")?;
    logged(&id, app.store.log_params(&id, &[param]).await)?;
    Ok(Json(json!({})))
}

pub(super) async fn set_tag(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = run_id(&body)?;
    let tag = tag_pair(&body, "")?;
    logged(&id, app.store.set_tags(&id, &[tag]).await)?;
    Ok(Json(json!({})))
}

/// `runs/log-model` (MLflow 2's `log_model`): the model's metadata is
/// appended to the run's `mlflow.log-model.history` tag, as MLflow keeps it.
pub(super) async fn log_model(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = run_id(&body)?;
    let text = required_str(&body, "model_json", "")?;
    let model: Value = serde_json::from_str(&text).map_err(|e| invalid(format!("Malformed model info. \n {e}")))?;
    let missing_fields: Vec<&str> =
        ["artifact_path", "flavors", "utc_time_created", "run_id"].into_iter().filter(|f| model.get(*f).is_none()).collect();
    if !missing_fields.is_empty() {
        return Err(invalid(format!("Model json is missing mandatory fields: {:?}", missing_fields)));
    }
    let views = app.store.run_views(std::slice::from_ref(&id)).await?;
    let run = views.first().ok_or_else(|| no_run(&id))?;
    const HISTORY: &str = "mlflow.log-model.history";
    let mut history: Vec<Value> = run.tags.iter().find(|(k, _)| k == HISTORY).and_then(|(_, v)| serde_json::from_str(v).ok()).unwrap_or_default();
    history.push(model);
    logged(&id, app.store.set_tags(&id, &[(HISTORY.to_string(), Value::Array(history).to_string())]).await)?;
    Ok(Json(json!({})))
}

pub(super) async fn delete_tag(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = run_id(&body)?;
    let key = required_str(&body, "key", "")?;
    active_run(&app, &id).await?;
    app.store.delete_tag(&id, &key).await.map_err(|e| match e {
        StoreError::NotFound(_) => not_found(format!("No tag with name: {key} in run with id {id}")),
        e => e.into(),
    })?;
    Ok(Json(json!({})))
}

/// MLflow's order: run id shape, every entity, the batch limits, duplicate
/// param keys, then the run. Nothing is written unless all of it passes.
/// A `log-batch` body whose every field has the type MLflow's schema
/// wants, read straight into these (keys borrowed from the request), so a
/// 1,000-metric batch costs no tree of `Value`s. Anything else (a value
/// as a string, a field of the wrong type) fails this read and takes the
/// general path, which finds and words the error as MLflow does.
#[derive(serde::Deserialize)]
struct TypedBatch<'a> {
    #[serde(borrow)]
    run_id: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    metrics: Vec<TypedMetric<'a>>,
    #[serde(default, borrow)]
    params: Vec<TypedPair<'a>>,
    #[serde(default, borrow)]
    tags: Vec<TypedPair<'a>>,
}

#[derive(serde::Deserialize)]
struct TypedMetric<'a> {
    #[serde(borrow)]
    key: std::borrow::Cow<'a, str>,
    value: f64,
    timestamp: Option<i64>,
    step: Option<i64>,
}

#[derive(serde::Deserialize)]
struct TypedPair<'a> {
    #[serde(borrow)]
    key: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    value: Option<std::borrow::Cow<'a, str>>,
}

/// The checks of `metric_point` that are left once the types are right,
/// in its order; the path is spelled out only for an error.
fn typed_metric(m: TypedMetric, i: usize) -> Result<MetricPoint, MlflowError> {
    let path = || format!("metrics[{i}]");
    if m.key.is_empty() {
        return Err(missing(&at(&path(), "key")));
    }
    if name_problem(&m.key).is_some() {
        check_name(&m.key, &at(&path(), "name"))?;
    }
    let timestamp = m.timestamp.ok_or_else(|| missing(&at(&path(), "timestamp")))?;
    check_timestamp(&m.key, m.value, timestamp, path)?;
    check_length("Metric name", MAX_KEY, &m.key)?;
    Ok(MetricPoint { key: m.key.into_owned(), value: m.value, timestamp, step: m.step.unwrap_or(0) })
}

type Batch = (Vec<MetricPoint>, Vec<(String, String)>, Vec<(String, String)>);

impl TypedBatch<'_> {
    fn checked(self) -> Result<(String, Batch), MlflowError> {
        let id = self.run_id.into_owned();
        if id.is_empty() {
            return Err(missing("run_id"));
        }
        check_run_id_shape(&id)?;
        let metrics = self.metrics.into_iter().enumerate().map(|(i, m)| typed_metric(m, i)).collect::<Result<Vec<_>, _>>()?;
        let pair = |p: TypedPair| json!({"key": p.key, "value": p.value});
        // Params and tags are few: checked by the general functions.
        let params =
            self.params.into_iter().enumerate().map(|(i, p)| param_pair(&pair(p), &format!("params[{i}]"))).collect::<Result<Vec<_>, _>>()?;
        let tags = self.tags.into_iter().enumerate().map(|(i, t)| tag_pair(&pair(t), &format!("tags[{i}]"))).collect::<Result<Vec<_>, _>>()?;
        Ok((id, (metrics, params, tags)))
    }
}

pub(super) fn check_run_id_shape(id: &str) -> Result<(), MlflowError> {
    let mut first = id.chars();
    if !(first.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id.chars().count() <= 256
        && first.all(|c| c.is_alphanumeric() || c == '_' || c == '-'))
    {
        return Err(invalid_value("run_id", &json!(id), None));
    }
    Ok(())
}

/// `log-batch` read the general way: any JSON, every error worded as MLflow words it.
pub(super) fn general_batch(body: &Value) -> Result<(String, Batch), MlflowError> {
    let id = run_id(body)?;
    let (metrics, params, tags) = (list(body, "metrics")?, list(body, "params")?, list(body, "tags")?);
    check_run_id_shape(&id)?;
    let metrics = metrics.iter().enumerate().map(|(i, m)| metric_point(m, &format!("metrics[{i}]"))).collect::<Result<Vec<_>, _>>()?;
    let params = params.iter().enumerate().map(|(i, p)| param_pair(p, &format!("params[{i}]"))).collect::<Result<Vec<_>, _>>()?;
    let tags = tags.iter().enumerate().map(|(i, t)| tag_pair(t, &format!("tags[{i}]"))).collect::<Result<Vec<_>, _>>()?;
    Ok((id, (metrics, params, tags)))
}

/// The body of a JSON request, or the answer axum's `Json` extractor gives
/// when it is not one (wrong content type, malformed JSON).
pub(super) struct JsonBytes(axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for JsonBytes {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        let json = req.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
            let essence = v.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
        });
        if !json {
            // Let axum's extractor word the refusal.
            return Err(match Json::<Value>::from_request(req, state).await {
                Ok(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response(),
                Err(rejection) => rejection.into_response(),
            });
        }
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(IntoResponse::into_response)?;
        Ok(JsonBytes(bytes))
    }
}

pub(super) async fn log_batch(State(app): State<App>, JsonBytes(body): JsonBytes) -> Result<Response, MlflowError> {
    let (id, (metrics, params, tags)) = match serde_json::from_slice::<TypedBatch>(&body) {
        Ok(typed) => typed.checked()?,
        Err(_) => match Json::<Value>::from_bytes(&body) {
            Ok(Json(value)) => general_batch(&value)?,
            Err(rejection) => return Ok(rejection.into_response()),
        },
    };
    batch_limit("metrics", MAX_BATCH_METRICS, metrics.len())?;
    batch_limit("params", MAX_BATCH_PARAMS, params.len())?;
    batch_limit("tags", MAX_BATCH_TAGS, tags.len())?;
    batch_limit("metrics, params, and tags", MAX_BATCH_TOTAL, metrics.len() + params.len() + tags.len())?;
    let mut seen = std::collections::HashSet::new();
    let dupes: Vec<String> = params.iter().filter(|(k, _)| !seen.insert(k.as_str())).map(|(k, _)| format!("'{k}'")).collect();
    if !dupes.is_empty() {
        return Err(invalid(format!(
            "Duplicate parameter keys have been submitted: [{}]. Please ensure the request contains only one param value per param key.",
            dupes.join(", ")
        )));
    }
    // One write: a batch is stored whole or not at all.
    logged(&id, app.store.log_batch(&id, &metrics, &params, &tags).await)?;
    // MLflow 3 links metrics to a logged model by `model_id`: rare, so
    // only a body that names one is read a second time.
    if names_a_model_id(&body) {
        let value: Value = serde_json::from_slice(&body).map_err(|e| invalid(e.to_string()))?;
        log_model_metrics(&app, &id, list(&value, "metrics")?).await?;
    }
    Ok(Json(json!({})).into_response())
}

fn names_a_model_id(body: &[u8]) -> bool {
    body.windows(10).any(|w| w == b"\"model_id\"")
}

/// `runs/log-inputs`: the datasets (with their context tags) and logged
/// models a run read, returned in the run's `inputs`.
pub(super) async fn log_inputs(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = run_id(&body)?;
    active_run(&app, &id).await?;
    let datasets = list(&body, "datasets")?
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let path = format!("datasets[{i}].dataset");
            let ds = d.get("dataset").ok_or_else(|| missing(&path))?;
            let field = |key: &str| ds.get(key).and_then(Value::as_str).unwrap_or("").to_string();
            let tags = list(d, "tags")?
                .iter()
                .map(|t| {
                    Ok((required_str(t, "key", &format!("datasets[{i}].tags"))?, t.get("value").and_then(Value::as_str).unwrap_or("").to_string()))
                })
                .collect::<Result<Vec<_>, MlflowError>>()?;
            Ok(crate::store::DatasetInput {
                name: required_str(ds, "name", &path)?,
                digest: required_str(ds, "digest", &path)?,
                source_type: field("source_type"),
                source: field("source"),
                schema: field("schema"),
                profile: field("profile"),
                tags,
            })
        })
        .collect::<Result<Vec<_>, MlflowError>>()?;
    let models = list(&body, "models")?
        .iter()
        .enumerate()
        .map(|(i, m)| required_str(m, "model_id", &format!("models[{i}]")))
        .collect::<Result<Vec<_>, MlflowError>>()?;
    app.store.log_run_inputs(&id, &datasets, &models).await?;
    Ok(Json(json!({})))
}

pub(super) async fn search_runs(State(app): State<App>, Json(body): Json<Value>) -> Result<Response, MlflowError> {
    let experiment_ids: Vec<String> = body
        .get("experiment_ids")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from).or_else(|| v.as_i64().map(|i| i.to_string())))
        .collect();
    use kiln_services::tracking::SearchRequest;
    let (filter_text, page_token) = (text(&body, &["filter"]).unwrap_or_default(), text(&body, &["page_token"]).filter(|t| !t.is_empty()));
    let request = SearchRequest {
        filter: &filter_text,
        order_by: body.get("order_by").and_then(|v| v.as_array()).into_iter().flatten().filter_map(|v| v.as_str()).collect(),
        max_results: int(&body, "max_results")?.unwrap_or(1000),
        page_token: page_token.as_deref(),
        experiment_ids,
        ..Default::default()
    };
    let q = request.query().map_err(search_error)?;
    let (runs, next) = app.store.search_rendered(&q, |v| serde_json::to_vec(&RunJson(v)).expect("a run serialises")).await?;
    let mut body = Vec::with_capacity(runs.iter().map(|r| r.len() + 1).sum::<usize>() + 64);
    body.extend_from_slice(b"{\"runs\":[");
    for (i, r) in runs.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(r);
    }
    body.push(b']');
    if let Some(n) = next {
        body.extend_from_slice(format!(",\"next_page_token\":\"{n}\"").as_bytes());
    }
    body.push(b'}');
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `metrics/get-history-bulk` (a route of MLflow's UI): one metric's whole
/// history in several runs, by run id, each run's points by time, step and
/// value, at most `max_results` points in all.
pub(super) async fn metric_history_of_runs(State(app): State<App>, Query(q): Query<Vec<(String, String)>>) -> Result<Response, MlflowError> {
    const MAX_RUNS: usize = 100;
    const MAX_POINTS: usize = 25_000;
    let mut runs: Vec<&str> = q.iter().filter(|(k, v)| k == "run_id" && !v.is_empty()).map(|(_, v)| v.as_str()).collect();
    if runs.is_empty() {
        return Err(invalid("GetMetricHistoryBulk request must specify at least one run_id."));
    }
    if runs.len() > MAX_RUNS {
        return Err(invalid(format!("GetMetricHistoryBulk request cannot specify more than {MAX_RUNS} run_ids. Received {} run_ids.", runs.len())));
    }
    let key = q
        .iter()
        .find(|(k, _)| k == "metric_key")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| invalid("GetMetricHistoryBulk request must specify a metric_key."))?;
    let limit = match q.iter().find(|(k, _)| k == "max_results").map(|(_, v)| v) {
        Some(n) => n.parse::<usize>().map_err(|_| wrong_type("max_results", &json!(n)))?.min(MAX_POINTS),
        None => MAX_POINTS,
    };
    runs.sort_unstable();
    runs.dedup();
    let mut histories = Vec::new();
    let mut total = 0;
    for run in runs {
        if total >= limit {
            break;
        }
        // An unknown run has no points, as in MLflow.
        let (mut points, _) = app.store.metric_history_page(run, key, 0, i64::MAX).await?;
        points.sort_by(|a, b| (a.timestamp, a.step).cmp(&(b.timestamp, b.step)).then(a.value.total_cmp(&b.value)));
        points.truncate(limit - total);
        total += points.len();
        histories.push((run, points));
    }
    let metrics = histories
        .iter()
        .flat_map(|(run, points)| points.iter().map(|p| MetricJson { key, value: p.value, timestamp: p.timestamp, step: p.step, run_id: Some(run) }))
        .collect();
    MetricsPage { metrics, next_page_token: None }.response()
}

pub(super) async fn metric_history(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> Result<Response, MlflowError> {
    let id = q.get("run_id").or(q.get("run_uuid")).filter(|s| !s.is_empty()).ok_or_else(|| missing("run_id"))?;
    let key = q.get("metric_key").filter(|s| !s.is_empty()).ok_or_else(|| missing("metric_key"))?;
    // Paged when the client asks (`max_results`, `page_token`), whole
    // otherwise, as MLflow's server does.
    let offset: usize = match q.get("page_token").filter(|t| !t.is_empty()) {
        Some(t) => t.parse().map_err(|_| invalid(format!("Invalid page token '{t}'")))?,
        None => 0,
    };
    let limit = match q.get("max_results").filter(|t| !t.is_empty()) {
        Some(n) => Some(
            n.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| invalid(format!("Invalid value {n} for parameter 'max_results' supplied")))?,
        ),
        None => None,
    };
    let limit = limit.map_or(i64::MAX, |l| l as i64);
    let (points, more) = app.store.metric_history_page(id, key, offset as i64, limit).await?;
    if points.is_empty() {
        // No points: an unknown run is an error, a run without this metric is not.
        app.store.run_extras(id).await.map_err(|e| match e {
            StoreError::NotFound(_) => no_run(id),
            other => other.into(),
        })?;
    }
    let page = MetricsPage {
        metrics: points.iter().map(|p| MetricJson { key, value: p.value, timestamp: p.timestamp, step: p.step, run_id: None }).collect(),
        next_page_token: more.then(|| (offset as i64 + limit).to_string()),
    };
    page.response()
}

/// The metric-history answers, written straight from the points: a page
/// of 25,000 is too many for a tree of `Value`s.
#[derive(serde::Serialize)]
struct MetricsPage<'a> {
    metrics: Vec<MetricJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

impl MetricsPage<'_> {
    fn response(&self) -> Result<Response, MlflowError> {
        let body = serde_json::to_vec(self).map_err(|e| invalid(e.to_string()))?;
        Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response())
    }
}

/// `metrics/get-history-bulk-interval`: one metric of up to 100 runs,
/// sampled for a chart (MLflow's rules: kiln_services::tracking::sample).
pub(super) async fn metric_history_bulk(State(app): State<App>, Query(q): Query<Vec<(String, String)>>) -> Result<Response, MlflowError> {
    use kiln_services::tracking::sample::sample_steps;
    const MAX_RUNS: usize = 100;
    const MAX_RESULTS_PER_RUN: i64 = 2500;
    // Every point logged at a sampled step comes back, several per step
    // when a step was logged more than once, up to MLflow's history cap.
    const MAX_POINTS_PER_RUN: usize = 25_000;
    let body = query_body(&q);
    let run_ids: Vec<String> = match body.get("run_ids") {
        None => return Err(missing("run_ids")),
        Some(Value::Array(ids)) => ids.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
        Some(Value::String(id)) => vec![id.clone()],
        Some(other) => return Err(wrong_type("run_ids", other)),
    };
    if run_ids.len() > MAX_RUNS {
        return Err(invalid(format!(
            "GetMetricHistoryBulkInterval request must specify at most {MAX_RUNS} run_ids. Received {} run_ids.",
            run_ids.len()
        )));
    }
    let key = required(&body, &["metric_key"])?;
    let max_results = int(&body, "max_results")?.unwrap_or(MAX_RESULTS_PER_RUN);
    if !(1..=MAX_RESULTS_PER_RUN).contains(&max_results) {
        return Err(invalid(format!("max_results must be between 1 and {MAX_RESULTS_PER_RUN}.")));
    }
    let range = match (int(&body, "start_step")?, int(&body, "end_step")?) {
        (Some(start), Some(end)) if start > end => {
            return Err(invalid(format!("end_step must be greater than start_step. Found start_step={start} and end_step={end}.")));
        }
        (Some(start), Some(end)) => Some((start, end)),
        (None, None) => None,
        _ => return Err(invalid("If either start step or end step are specified, both must be specified.")),
    };
    let mut histories = Vec::with_capacity(run_ids.len());
    for id in &run_ids {
        app.store.run_extras(id).await.map_err(|_| no_run(id))?;
        let mut points = app.store.metric_history(id, &key).await?;
        points.sort_by_key(|p| (p.step, p.timestamp));
        histories.push(points);
    }
    let steps: Vec<Vec<i64>> = histories.iter().map(|h| h.iter().map(|p| p.step).collect()).collect();
    let sampled = sample_steps(&steps, max_results as usize, range);
    let mut metrics = Vec::new();
    for (id, history) in run_ids.iter().zip(&histories) {
        let kept = history.iter().filter(|p| sampled.binary_search(&p.step).is_ok()).take(MAX_POINTS_PER_RUN);
        metrics.extend(kept.map(|p| MetricJson { run_id: Some(id), ..MetricJson::from(p) }));
    }
    MetricsPage { metrics, next_page_token: None }.response()
}
