//! The model registry: registered models, versions, stages, aliases.

use super::*;

pub(super) fn version_value(v: &crate::store::VersionRecord, aliases: Vec<String>, tags: &[(String, String)]) -> Value {
    let mut out = json!({
        "name": v.name, "version": v.version.to_string(), "creation_timestamp": v.created_at,
        "last_updated_timestamp": v.updated_at, "current_stage": v.stage, "description": v.description,
        "source": v.source, "run_id": v.run_id.clone().unwrap_or_default(), "status": "READY", "run_link": "",
        "tags": tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(), "aliases": aliases,
    });
    if !v.model_id.is_empty() {
        out["model_id"] = json!(v.model_id);
    }
    out
}

pub(super) async fn version_json(app: &App, v: &crate::store::VersionRecord) -> Result<Value, MlflowError> {
    let aliases: Vec<String> = app.store.aliases(&v.name).await?.into_iter().filter(|(_, n)| *n == v.version).map(|(a, _)| a).collect();
    let tags = app.store.registry_tags(&v.name, Some(v.version)).await?;
    Ok(version_value(v, aliases, &tags))
}

pub(super) async fn model_json(app: &App, name: &str) -> Result<Value, MlflowError> {
    let m = app.store.model(name).await.map_err(|_| not_found(format!("Registered Model with name={name} not found")))?;
    let mut latest_json = Vec::new();
    for v in registry::latest_per_stage(&app.store, name, &[]).await? {
        let mut j = version_json(app, &v).await?;
        // MLflow lists latest versions without their aliases.
        if let Some(o) = j.as_object_mut() {
            o.remove("aliases");
        }
        latest_json.push(j);
    }
    let aliases: Vec<Value> = app.store.aliases(name).await?.into_iter().map(|(a, v)| json!({"alias": a, "version": v.to_string()})).collect();
    let tags: Vec<Value> = app.store.registry_tags(name, None).await?.into_iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
    Ok(json!({
        "name": m.name, "creation_timestamp": m.created_at, "last_updated_timestamp": m.updated_at,
        "description": m.description, "latest_versions": latest_json, "aliases": aliases, "tags": tags,
    }))
}

fn model_missing(name: &str) -> impl FnOnce(StoreError) -> MlflowError + '_ {
    move |e| match e {
        StoreError::NotFound(_) => not_found(format!("Registered Model with name={name} not found")),
        other => other.into(),
    }
}

fn already_exists(e: StoreError) -> MlflowError {
    match e {
        StoreError::Conflict(m) => MlflowError { status: StatusCode::BAD_REQUEST, code: "RESOURCE_ALREADY_EXISTS", message: m },
        other => other.into(),
    }
}

pub(super) async fn rename_model(State(app): State<App>, Json(body): Json<Value>) -> R {
    let name = required(&body, &["name"])?;
    let new_name = required(&body, &["new_name"])?;
    check_model_name(&new_name)?;
    app.store.rename_model(&name, &new_name).await.map_err(|e| match e {
        StoreError::NotFound(_) => not_found(format!("Registered Model with name={name} not found")),
        other => already_exists(other),
    })?;
    Ok(Json(json!({"registered_model": model_json(&app, &new_name).await?})))
}

pub(super) async fn update_model(State(app): State<App>, Json(body): Json<Value>) -> R {
    let name = required(&body, &["name"])?;
    let description = text(&body, &["description"]).unwrap_or_default();
    app.store.update_model(&name, &description).await.map_err(model_missing(&name))?;
    Ok(Json(json!({"registered_model": model_json(&app, &name).await?})))
}

pub(super) async fn set_model_tag(State(app): State<App>, Json(body): Json<Value>) -> R {
    let name = required(&body, &["name"])?;
    let (key, value) = entity_tag(&body, "")?;
    app.store.set_registry_tag(&name, None, &key, &value).await.map_err(model_missing(&name))?;
    Ok(Json(json!({})))
}

/// A DELETE's arguments come in the query string or, from some clients,
/// in a JSON body.
fn delete_args(q: &HashMap<String, String>, body: Option<Json<Value>>) -> Value {
    body.map(|Json(b)| b).filter(|b| b.is_object()).unwrap_or_else(|| json!(q))
}

pub(super) async fn delete_model_tag(State(app): State<App>, Query(q): Query<HashMap<String, String>>, body: Option<Json<Value>>) -> R {
    let b = delete_args(&q, body);
    let name = required(&b, &["name"])?;
    let key = required(&b, &["key"])?;
    app.store.delete_registry_tag(&name, None, &key).await.map_err(|e| match e {
        StoreError::NotFound(m) if m.starts_with("Tag") => not_found(format!("No tag with name: {key} in registered model {name}")),
        other => model_missing(&name)(other),
    })?;
    Ok(Json(json!({})))
}

pub(super) async fn update_version(State(app): State<App>, Json(body): Json<Value>) -> R {
    let name = required(&body, &["name"])?;
    let version = version_number(&body)?;
    let description = text(&body, &["description"]).unwrap_or_default();
    let v = app.store.update_version(&name, version, &description).await?;
    Ok(Json(json!({"model_version": version_json(&app, &v).await?})))
}

pub(super) async fn delete_version(State(app): State<App>, Query(q): Query<HashMap<String, String>>, body: Option<Json<Value>>) -> R {
    let b = delete_args(&q, body);
    let name = required(&b, &["name"])?;
    app.store.delete_version(&name, version_number(&b)?).await?;
    Ok(Json(json!({})))
}

pub(super) async fn set_version_tag(State(app): State<App>, Json(body): Json<Value>) -> R {
    let name = required(&body, &["name"])?;
    let version = version_number(&body)?;
    let (key, value) = entity_tag(&body, "")?;
    app.store.set_registry_tag(&name, Some(version), &key, &value).await?;
    Ok(Json(json!({})))
}

pub(super) async fn delete_version_tag(State(app): State<App>, Query(q): Query<HashMap<String, String>>, body: Option<Json<Value>>) -> R {
    let b = delete_args(&q, body);
    let name = required(&b, &["name"])?;
    let version = version_number(&b)?;
    let key = required(&b, &["key"])?;
    app.store.delete_registry_tag(&name, Some(version), &key).await.map_err(|e| match e {
        StoreError::NotFound(m) if m.starts_with("Tag") => not_found(format!("No tag with name: {key} in model version {name} {version}")),
        other => other.into(),
    })?;
    Ok(Json(json!({})))
}

/// Where a version's files are (`get-download-uri`).
pub(super) async fn download_uri(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    let name = q.get("name").ok_or_else(|| missing("name"))?;
    let version = version_number(&json!({"version": q.get("version")}))?;
    let v = app.store.version(name, version).await?;
    Ok(Json(json!({"artifact_uri": resolve_source(&app, &v.source).await?})))
}

/// A `runs:/RUN/PATH` source is the run's artifact root and the path, a
/// `models:/m-…` source the logged model's artifact root, a
/// `models:/NAME/VERSION` source that version's own location; any other
/// source (or one naming what this server does not hold) is its own.
pub(super) async fn resolve_source(app: &App, source: &str) -> Result<String, MlflowError> {
    resolve_source_within(app, source, 8).await
}

/// [`resolve_source`] following at most `hops` `models:/NAME/V` sources:
/// versions can be made to name each other in a ring.
async fn resolve_source_within(app: &App, source: &str, hops: u32) -> Result<String, MlflowError> {
    if let Some(rest) = source.strip_prefix("runs:/") {
        let (run, path) = rest.split_once('/').unwrap_or((rest, ""));
        // A run another tracking server holds (the registry shared via
        // MLFLOW_REGISTRY_URI): the client resolves the URI there, and
        // MLflow's server hands the source back as it is.
        let Ok((experiment, _, _)) = app.store.run_extras(run).await else { return Ok(source.to_string()) };
        let root = format!("mlflow-artifacts:/{experiment}/{run}/artifacts");
        return Ok(if path.is_empty() { root } else { format!("{root}/{path}") });
    }
    if let Some(id) = source.strip_prefix("models:/").filter(|id| id.starts_with("m-") && !id.contains('/')) {
        return logged_model_artifact_uri(app, id).await;
    }
    // `models:/NAME/VERSION` (a copied version, `copy_model_version`):
    // where that version's files are, as MLflow's store resolves it. A
    // version this registry lacks leaves the URI for the client.
    if let Some((name, reference)) = source.strip_prefix("models:/").and_then(|rest| rest.split_once('/'))
        && hops > 0
        && let Ok(reference) = registry::VersionRef::parse(reference)
        && let Ok(v) = registry::resolve(&app.store, name, &reference).await
    {
        return Box::pin(resolve_source_within(app, &v.source, hops - 1)).await;
    }
    Ok(source.to_string())
}

pub(super) fn version_number(body: &Value) -> Result<i64, MlflowError> {
    let text = match body.get("version") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(missing("version")),
    };
    text.parse().map_err(|_| invalid(format!("Parameter 'version' must be an integer, got '{text}'.")))
}

pub(super) async fn create_model(State(app): State<App>, Json(body): Json<Value>) -> R {
    let name = required(&body, &["name"])?;
    check_model_name(&name)?;
    let tags = entity_tags(&body)?;
    app.store.create_model(&name, &text(&body, &["description"]).unwrap_or_default()).await.map_err(already_exists)?;
    for (k, v) in &tags {
        app.store.set_registry_tag(&name, None, k, v).await?;
    }
    Ok(Json(json!({"registered_model": model_json(&app, &name).await?})))
}

/// MLflow's `_validate_model_name`: present and of bounded length.
fn check_model_name(name: &str) -> Result<(), MlflowError> {
    if name.trim().is_empty() {
        return Err(missing("name"));
    }
    check_length("name", 256, name)
}

pub(super) async fn get_model(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    let name = q.get("name").ok_or_else(|| missing("name"))?;
    Ok(Json(json!({"registered_model": model_json(&app, name).await?})))
}

pub(super) async fn search_models_get(state: State<App>, Query(q): Query<Vec<(String, String)>>) -> R {
    search_models(state, Json(query_body(&q))).await
}

pub(super) async fn search_models(State(app): State<App>, Json(body): Json<Value>) -> R {
    let request = search_request(&body, 100)?;
    let mut tags: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for (name, key, value) in app.store.all_model_tags().await? {
        tags.entry(name).or_default().push((key, value));
    }
    let all: Vec<records::ModelEntry> = app
        .store
        .list_models()
        .await?
        .into_iter()
        .map(|m| {
            let tags = tags.remove(&m.name).unwrap_or_default();
            records::ModelEntry { record: m, tags }
        })
        .collect();
    let page = records::search(all, &records::MODELS, &request, records::ModelEntry::tie).map_err(search_error)?;
    let mut out = Vec::with_capacity(page.items.len());
    for m in &page.items {
        out.push(model_json(&app, &m.record.name).await?);
    }
    Ok(Json(with_token(json!({"registered_models": out}), page.next_page_token)))
}

pub(super) async fn delete_model(State(app): State<App>, Query(q): Query<HashMap<String, String>>, body: Option<Json<Value>>) -> R {
    let name = body.and_then(|Json(b)| text(&b, &["name"])).or_else(|| q.get("name").cloned()).ok_or_else(|| missing("name"))?;
    app.store.delete_model(&name).await?;
    Ok(Json(json!({})))
}

pub(super) async fn latest_versions_get(state: State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    let stages: Vec<Value> = q.get("stages").map(|s| vec![json!(s)]).unwrap_or_default();
    latest_versions(state, Json(json!({"name": q.get("name"), "stages": stages}))).await
}

pub(super) async fn latest_versions(State(app): State<App>, Json(body): Json<Value>) -> R {
    let name = required(&body, &["name"])?;
    app.store.model(&name).await.map_err(|_| not_found(format!("Registered Model with name={name} not found")))?;
    let wanted: Vec<String> =
        body.get("stages").and_then(|s| s.as_array()).into_iter().flatten().filter_map(|s| s.as_str().map(String::from)).collect();
    let mut out = Vec::new();
    for v in registry::latest_per_stage(&app.store, &name, &wanted).await? {
        out.push(version_json(&app, &v).await?);
    }
    Ok(Json(json!({"model_versions": out})))
}

pub(super) async fn create_version(State(app): State<App>, Json(body): Json<Value>) -> R {
    let name = required(&body, &["name"])?;
    let source = required(&body, &["source"])?;
    // The run may live in another tracking server (a registry shared via
    // `MLFLOW_REGISTRY_URI`): MLflow accepts it, and so does Kiln.
    let mut run_id = text(&body, &["run_id"]).filter(|r| !r.is_empty());
    let model_id = text(&body, &["model_id"]).unwrap_or_default();
    // MLflow 3's `log_model` names the logged model, not the run: the
    // version's run is the model's source run, as MLflow's server takes it.
    if run_id.is_none() && !model_id.is_empty() {
        let source = app.store.logged_model_record(&model_id).await?.source_run_id;
        run_id = Some(source).filter(|r| !r.is_empty());
    }
    if let Some(pattern) = &app.version_source_pattern
        && !pattern.is_match(&source)
    {
        return Err(invalid(format!("Invalid model version source: '{source}'.")));
    }
    let tags = entity_tags(&body)?;
    // A prompt's "source" is a placeholder, which MLflow does not check.
    if !tags.iter().any(|(k, v)| k == "mlflow.prompt.is_prompt" && v == "true") {
        version_source::check(&app, &source, run_id.as_deref(), &model_id).await?;
    }
    let description = text(&body, &["description"]).unwrap_or_default();
    let new = crate::store::NewVersion {
        source: &source,
        run_id: run_id.as_deref(),
        description: &description,
        model_id: &model_id,
        tags: &tags,
        ..Default::default()
    };
    let v = app.store.create_version_from(&name, &new).await.map_err(model_missing(&name))?;
    if !model_id.is_empty() {
        app.store.record_model_versions_tag(&model_id).await?;
    }
    Ok(Json(json!({"model_version": version_json(&app, &v).await?})))
}

pub(super) async fn get_version(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    let name = q.get("name").ok_or_else(|| missing("name"))?;
    let version = version_number(&json!({"version": q.get("version")}))?;
    let v = app.store.version(name, version).await?;
    Ok(Json(json!({"model_version": version_json(&app, &v).await?})))
}

pub(super) async fn search_versions_get(state: State<App>, Query(q): Query<Vec<(String, String)>>) -> R {
    search_versions(state, Json(query_body(&q))).await
}

pub(super) async fn search_versions(State(app): State<App>, Json(body): Json<Value>) -> R {
    let request = search_request(&body, 10_000)?;
    let mut tags: HashMap<(String, i64), Vec<(String, String)>> = HashMap::new();
    for (name, version, key, value) in app.store.all_version_tags().await? {
        tags.entry((name, version)).or_default().push((key, value));
    }
    let all: Vec<records::VersionEntry> = app
        .store
        .all_versions()
        .await?
        .into_iter()
        .map(|v| {
            let tags = tags.remove(&(v.name.clone(), v.version)).unwrap_or_default();
            records::VersionEntry { record: v, tags }
        })
        .collect();
    let page = records::VersionEntry::search(all, &request).map_err(search_error)?;
    let mut aliases: HashMap<(String, i64), Vec<String>> = HashMap::new();
    for (name, alias, version) in app.store.all_aliases().await? {
        aliases.entry((name, version)).or_default().push(alias);
    }
    let out: Vec<Value> = page
        .items
        .iter()
        .map(|v| version_value(&v.record, aliases.remove(&(v.record.name.clone(), v.record.version)).unwrap_or_default(), &v.tags))
        .collect();
    Ok(Json(with_token(json!({"model_versions": out}), page.next_page_token)))
}

pub(super) async fn transition_stage(State(app): State<App>, Json(body): Json<Value>) -> R {
    let name = required(&body, &["name"])?;
    let version = version_number(&body)?;
    let stage = required(&body, &["stage"])?;
    let archive = body.get("archive_existing_versions").and_then(|v| v.as_bool().or_else(|| v.as_str().map(|s| s == "true"))).unwrap_or(false);
    let v = app.store.transition_stage(&name, version, &stage, archive).await?;
    Ok(Json(json!({"model_version": version_json(&app, &v).await?})))
}

pub(super) async fn set_alias(State(app): State<App>, Json(body): Json<Value>) -> R {
    let name = required(&body, &["name"])?;
    let alias = required(&body, &["alias"])?;
    registry::check_alias(&alias).map_err(invalid)?;
    app.store.set_alias(&name, &alias, version_number(&body)?).await?;
    Ok(Json(json!({})))
}

pub(super) async fn delete_alias(State(app): State<App>, Query(q): Query<HashMap<String, String>>, body: Option<Json<Value>>) -> R {
    let b = body.map(|Json(b)| b).unwrap_or_else(|| json!({"name": q.get("name"), "alias": q.get("alias")}));
    app.store.delete_alias(&required(&b, &["name"])?, &required(&b, &["alias"])?).await?;
    Ok(Json(json!({})))
}

pub(super) async fn get_by_alias(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    let name = q.get("name").ok_or_else(|| missing("name"))?;
    let alias = q.get("alias").ok_or_else(|| missing("alias"))?;
    let v = app.store.version_by_alias(name, alias).await?;
    Ok(Json(json!({"model_version": version_json(&app, &v).await?})))
}
