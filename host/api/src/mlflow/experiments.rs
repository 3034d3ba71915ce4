//! Experiments: create, get, search, update, delete, restore, tags.

use super::*;

pub(super) async fn experiment_json(app: &App, id: &str) -> Result<Value, MlflowError> {
    let e = app.store.experiment_by_id(id).await?.ok_or_else(|| not_found(format!("No Experiment with id={id} exists")))?;
    Ok(experiment_value(&e, &app.store.experiment_tags(id).await?))
}

/// An experiment's artifact root: its own location when it was created
/// with one, else Kiln's proxy.
pub(super) fn experiment_artifact_root(e: &crate::store::ExperimentRecord) -> String {
    if e.artifact_location.is_empty() { format!("mlflow-artifacts:/{}", e.id) } else { e.artifact_location.clone() }
}

fn experiment_value(e: &crate::store::ExperimentRecord, tags: &[(String, String)]) -> Value {
    json!({
        "experiment_id": e.id,
        "name": e.name,
        "artifact_location": experiment_artifact_root(e),
        "lifecycle_stage": e.lifecycle_stage,
        "creation_time": e.created_at,
        "last_update_time": e.updated_at,
        "tags": tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
    })
}

pub(super) async fn create_experiment(State(app): State<App>, Json(body): Json<Value>) -> R {
    let name = required(&body, &["name"])?;
    if app.store.experiment_by_name(&name).await?.is_some() {
        return Err(MlflowError {
            status: StatusCode::BAD_REQUEST,
            code: "RESOURCE_ALREADY_EXISTS",
            message: format!("Experiment '{name}' already exists."),
        });
    }
    let location = optional(&body, "artifact_location")?.unwrap_or_default();
    let tags = list(&body, "tags")?.iter().map(experiment_tag).collect::<Result<Vec<_>, _>>()?;
    // MLflow's `_validate_storage_location_uri`, in the parts that matter
    // to a server that does not open the location itself.
    if location.starts_with("runs:") {
        return Err(invalid(format!("Artifact location cannot be a runs:/ URI. Given: '{location}'")));
    }
    if location.chars().count() > 2048 {
        return Err(invalid("Invalid artifact path length. The length of the artifact path cannot be greater than 2048 characters."));
    }
    if location.contains('#') {
        return Err(invalid("'artifact_location' URL can't include fragments or params."));
    }
    // A relative path means this server's directory, as MLflow's server
    // takes it; clients elsewhere could not find it otherwise.
    let location = if !location.is_empty() && !location.contains(':') && !location.starts_with('/') {
        let absolute = std::path::absolute(&location).map_err(|e| invalid(format!("artifact_location '{location}': {e}")))?;
        absolute.to_string_lossy().into_owned()
    } else {
        location
    };
    let id = app.store.create_experiment(&name).await?;
    let location = match (location.is_empty(), &app.default_artifact_root) {
        (false, _) => location.trim_end_matches('/').to_string(),
        (true, Some(root)) => format!("{root}/{id}"),
        (true, None) => String::new(),
    };
    if !location.is_empty() {
        app.store.set_experiment_artifact_location(&id, &location).await?;
    }
    for (k, v) in &tags {
        app.store.set_experiment_tag(&id, k, v).await?;
    }
    Ok(Json(json!({"experiment_id": id})))
}

pub(super) async fn get_experiment(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    app.store.ensure_default_experiment().await?;
    let id = q.get("experiment_id").ok_or_else(|| missing("experiment_id"))?;
    Ok(Json(json!({"experiment": experiment_json(&app, id).await?})))
}

pub(super) async fn get_experiment_by_name(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> R {
    app.store.ensure_default_experiment().await?;
    let name = q.get("experiment_name").ok_or_else(|| missing("experiment_name"))?;
    let e = app.store.experiment_by_name(name).await?.ok_or_else(|| not_found(format!("Could not find experiment with name '{name}'")))?;
    Ok(Json(json!({"experiment": experiment_json(&app, &e.id).await?})))
}

pub(super) async fn search_experiments_get(state: State<App>, Query(q): Query<Vec<(String, String)>>) -> R {
    search_experiments(state, Json(query_body(&q))).await
}

pub(super) async fn search_experiments(State(app): State<App>, Json(body): Json<Value>) -> R {
    app.store.ensure_default_experiment().await?;
    let view = view_type(&body)?;
    let mut tags: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for (id, key, value) in app.store.all_experiment_tags().await? {
        tags.entry(id).or_default().push((key, value));
    }
    let all: Vec<records::ExperimentEntry> = app
        .store
        .list_experiments(true)
        .await?
        .into_iter()
        .filter(|e| view.keeps(&e.lifecycle_stage))
        .map(|e| {
            let tags = tags.remove(&e.id).unwrap_or_default();
            records::ExperimentEntry { record: e, tags }
        })
        .collect();
    let page = records::search(all, &records::EXPERIMENTS, &search_request(&body, 1000)?, records::ExperimentEntry::tie).map_err(search_error)?;
    let out: Vec<Value> = page.items.iter().map(|e| experiment_value(&e.record, &e.tags)).collect();
    Ok(Json(with_token(json!({"experiments": out}), page.next_page_token)))
}

pub(super) async fn update_experiment(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = required(&body, &["experiment_id"])?;
    let e = app.store.experiment_by_id(&id).await?.ok_or_else(|| not_found(format!("No Experiment with id={id} exists")))?;
    if let Some(new_name) = text(&body, &["new_name"]) {
        app.store.rename_experiment(&e.name, &new_name).await?;
    }
    Ok(Json(json!({})))
}

pub(super) async fn delete_experiment(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = required(&body, &["experiment_id"])?;
    if id == "0" {
        return Err(invalid("Cannot delete the default experiment '0'. This is an internally reserved experiment."));
    }
    app.store.set_experiment_stage(&id, "deleted").await?;
    Ok(Json(json!({})))
}

pub(super) async fn restore_experiment(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = required(&body, &["experiment_id"])?;
    app.store.set_experiment_stage(&id, "active").await?;
    Ok(Json(json!({})))
}

pub(super) async fn set_experiment_tag(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = required(&body, &["experiment_id"])?;
    let (key, value) = experiment_tag(&body)?;
    app.store.experiment_by_id(&id).await?.ok_or_else(|| not_found(format!("No Experiment with id={id} exists")))?;
    app.store.set_experiment_tag(&id, &key, &value).await?;
    Ok(Json(json!({})))
}

pub(super) async fn delete_experiment_tag(State(app): State<App>, Json(body): Json<Value>) -> R {
    let id = required(&body, &["experiment_id"])?;
    let key = required(&body, &["key"])?;
    app.store.experiment_by_id(&id).await?.ok_or_else(|| not_found(format!("No Experiment with id={id} exists")))?;
    app.store.delete_experiment_tag(&id, &key).await?;
    Ok(Json(json!({})))
}

/// MLflow's limit on the experiments of one `search-datasets` call.
const MAX_DATASET_EXPERIMENTS: usize = 20;

/// `experiments/search-datasets`: the datasets the runs of some
/// experiments read (what MLflow's UI offers as run filters).
pub(super) async fn search_datasets(State(app): State<App>, Json(body): Json<Value>) -> R {
    let ids: Vec<String> = list(&body, "experiment_ids")?
        .iter()
        .map(|v| v.as_str().map(String::from).ok_or_else(|| wrong_type("experiment_ids", v)))
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Err(invalid("SearchDatasets request must specify at least one experiment_id."));
    }
    if ids.len() > MAX_DATASET_EXPERIMENTS {
        return Err(invalid(format!(
            "SearchDatasets request cannot specify more than {MAX_DATASET_EXPERIMENTS} experiment_ids. Received {} experiment_ids.",
            ids.len()
        )));
    }
    let out: Vec<Value> = app
        .store
        .dataset_summaries(&ids)
        .await?
        .into_iter()
        .map(|d| {
            let mut v = json!({"experiment_id": d.experiment_id, "name": d.name, "digest": d.digest});
            if let Some(c) = d.context {
                v["context"] = json!(c);
            }
            v
        })
        .collect();
    Ok(Json(json!({"dataset_summaries": out})))
}
