//! MLflow 3's logged models: a model with its own id, files, params, tags
//! and metrics, made in a run (or outside one) and finalised once its
//! files are uploaded; registered versions point at it by id.

use super::{Change, Result, Store, StoreError, now_ms};
use sqlx::Row;
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct LoggedModelRecord {
    /// `m-` and 32 hex digits.
    pub id: String,
    pub experiment_id: String,
    pub name: String,
    /// Empty when the model was logged outside a run.
    pub source_run_id: String,
    /// `PENDING`, `READY` or `FAILED`.
    pub status: String,
    pub status_message: String,
    pub model_type: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoggedModelMetric {
    pub key: String,
    pub value: f64,
    pub step: i64,
    pub timestamp: i64,
    pub run_id: String,
    pub dataset_name: String,
    pub dataset_digest: String,
}

/// A logged model with what hangs off it.
#[derive(Debug, Clone)]
pub struct LoggedModelDetail {
    pub record: LoggedModelRecord,
    pub params: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    pub metrics: Vec<LoggedModelMetric>,
}

/// What a new logged model starts with.
#[derive(Debug, Default)]
pub struct NewLoggedModel<'a> {
    pub experiment_id: &'a str,
    pub name: &'a str,
    pub source_run_id: &'a str,
    pub model_type: &'a str,
    pub params: &'a [(String, String)],
    pub tags: &'a [(String, String)],
}

/// A dataset a run read, as `runs/log-inputs` names it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatasetInput {
    pub name: String,
    pub digest: String,
    pub source_type: String,
    pub source: String,
    pub schema: String,
    pub profile: String,
    /// Context tags (`mlflow.data.context = training`).
    pub tags: Vec<(String, String)>,
}

/// A dataset some run of an experiment read, and in what context.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSummary {
    pub experiment_id: String,
    pub name: String,
    pub digest: String,
    pub context: Option<String>,
}

/// What a run read (datasets in the order first logged, logged models)
/// and the logged models it produced, with the step of each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunIo {
    pub datasets: Vec<DatasetInput>,
    pub models: Vec<String>,
    pub outputs: Vec<(String, i64)>,
}

/// The statuses a logged model may have.
pub const LOGGED_MODEL_STATUSES: &[&str] = &["PENDING", "READY", "FAILED"];

const COLUMNS: &str = "id, experiment_id, name, source_run_id, status, status_message, model_type, created_at, updated_at";

fn record_from_row(r: &sqlx::any::AnyRow) -> Result<LoggedModelRecord> {
    Ok(LoggedModelRecord {
        id: r.try_get("id")?,
        experiment_id: r.try_get("experiment_id")?,
        name: r.try_get("name")?,
        source_run_id: r.try_get("source_run_id")?,
        status: r.try_get("status")?,
        status_message: r.try_get("status_message")?,
        model_type: r.try_get("model_type")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound(format!("Logged model with ID '{id}'"))
}

impl Store {
    pub async fn create_logged_model(&self, new: &NewLoggedModel<'_>) -> Result<LoggedModelRecord> {
        let id = format!("m-{}", uuid::Uuid::new_v4().simple());
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO logged_models (id, experiment_id, name, source_run_id, status, model_type, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'PENDING', $5, $6, $7)",
        )
        .bind(&id)
        .bind(new.experiment_id)
        .bind(new.name)
        .bind(new.source_run_id)
        .bind(new.model_type)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for (table, pairs) in [("logged_model_params", new.params), ("logged_model_tags", new.tags)] {
            for (k, v) in pairs {
                let sql = sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {table} (model_id, key, value) VALUES ($1, $2, $3) ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value"
                ));
                sqlx::query(sql).bind(&id).bind(k).bind(v).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        self.changed(Change::Experiment { id: new.experiment_id.into() });
        self.logged_model_record(&id).await
    }

    /// A logged model that is not deleted.
    pub async fn logged_model(&self, id: &str) -> Result<LoggedModelDetail> {
        let record = self.logged_model_record(id).await?;
        Ok(self.details(vec![record]).await?.remove(0))
    }

    /// A live model's record alone: what a write checks before it touches
    /// the model's params, tags, metrics or files.
    pub async fn logged_model_record(&self, id: &str) -> Result<LoggedModelRecord> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM logged_models WHERE id = $1 AND deleted = 0"));
        let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?.ok_or_else(|| not_found(id))?;
        record_from_row(&row)
    }

    /// The logged models of these experiments (all when empty), oldest first.
    pub async fn logged_models(&self, experiment_ids: &[String]) -> Result<Vec<LoggedModelDetail>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM logged_models WHERE deleted = 0 ORDER BY created_at, id"));
        let records: Vec<LoggedModelRecord> = sqlx::query(sql)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(record_from_row)
            .filter(|r| r.as_ref().map_or(true, |r| experiment_ids.is_empty() || experiment_ids.contains(&r.experiment_id)))
            .collect::<Result<_>>()?;
        self.details(records).await
    }

    /// The params, tags and metrics of `records`: three queries whatever
    /// their number (of one model's rows, or of every live model's).
    async fn details(&self, records: Vec<LoggedModelRecord>) -> Result<Vec<LoggedModelDetail>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let one = match records.as_slice() {
            [only] => Some(only.id.clone()),
            _ => None,
        };
        let scope = if one.is_some() { "model_id = $1" } else { "model_id IN (SELECT id FROM logged_models WHERE deleted = 0)" };
        let fetch = |sql: String| {
            let query = sqlx::query(sqlx::AssertSqlSafe(sql));
            let query = match &one {
                Some(id) => query.bind(id.clone()),
                None => query,
            };
            query.fetch_all(&self.pool)
        };
        let mut pairs: [HashMap<String, Vec<(String, String)>>; 2] = Default::default();
        for (table, into) in ["logged_model_params", "logged_model_tags"].into_iter().zip(pairs.iter_mut()) {
            for r in fetch(format!("SELECT model_id, key, value FROM {table} WHERE {scope} ORDER BY model_id, key")).await? {
                into.entry(r.try_get("model_id")?).or_default().push((r.try_get("key")?, r.try_get("value")?));
            }
        }
        let mut metrics: HashMap<String, Vec<LoggedModelMetric>> = HashMap::new();
        let sql = format!(
            "SELECT model_id, key, value, is_nan, step, timestamp, run_id, dataset_name, dataset_digest FROM logged_model_metrics \
             WHERE {scope} ORDER BY model_id, key, step, timestamp"
        );
        for r in fetch(sql).await? {
            let nan: i64 = r.try_get("is_nan")?;
            metrics.entry(r.try_get("model_id")?).or_default().push(LoggedModelMetric {
                key: r.try_get("key")?,
                value: if nan != 0 { f64::NAN } else { r.try_get::<Option<f64>, _>("value")?.unwrap_or(f64::NAN) },
                step: r.try_get("step")?,
                timestamp: r.try_get("timestamp")?,
                run_id: r.try_get("run_id")?,
                dataset_name: r.try_get("dataset_name")?,
                dataset_digest: r.try_get("dataset_digest")?,
            });
        }
        let [mut params, mut tags] = pairs;
        Ok(records
            .into_iter()
            .map(|record| LoggedModelDetail {
                params: params.remove(&record.id).unwrap_or_default(),
                tags: tags.remove(&record.id).unwrap_or_default(),
                metrics: metrics.remove(&record.id).unwrap_or_default(),
                record,
            })
            .collect())
    }

    /// Mark a model `READY` or `FAILED` (or back to `PENDING`).
    pub async fn finalize_logged_model(&self, id: &str, status: &str) -> Result<LoggedModelRecord> {
        if !LOGGED_MODEL_STATUSES.contains(&status) {
            return Err(StoreError::Invalid(format!("a logged model's status is one of {}, not `{status}`", LOGGED_MODEL_STATUSES.join(", "))));
        }
        let done = sqlx::query("UPDATE logged_models SET status = $1, updated_at = $2 WHERE id = $3 AND deleted = 0")
            .bind(status)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(id));
        }
        let record = self.logged_model_record(id).await?;
        self.changed(Change::Experiment { id: record.experiment_id.clone() });
        Ok(record)
    }

    /// Delete a logged model (kept, marked deleted, as MLflow does).
    pub async fn delete_logged_model(&self, id: &str) -> Result<()> {
        let done = sqlx::query("UPDATE logged_models SET deleted = 1, updated_at = $1 WHERE id = $2 AND deleted = 0")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// Set params (`params` true) or tags on a model.
    pub async fn set_logged_model_pairs(&self, id: &str, params: bool, pairs: &[(String, String)]) -> Result<()> {
        self.logged_model_record(id).await?;
        let table = if params { "logged_model_params" } else { "logged_model_tags" };
        let mut tx = self.begin_write().await?;
        for (k, v) in pairs {
            let sql = sqlx::AssertSqlSafe(format!(
                "INSERT INTO {table} (model_id, key, value) VALUES ($1, $2, $3) ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value"
            ));
            sqlx::query(sql).bind(id).bind(k).bind(v).execute(&mut *tx).await?;
        }
        sqlx::query("UPDATE logged_models SET updated_at = $1 WHERE id = $2").bind(now_ms()).bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Record on a logged model the registered versions made from it, as
    /// MLflow's server does: the tag `mlflow.modelVersions`, a JSON list
    /// of `{"name": …, "version": …}` in the order they were made, written
    /// as Python's `json.dumps` writes it. The list is read from the
    /// versions themselves with the model's row locked first, so two
    /// versions registered at once both end up in it. A model this store
    /// does not have is left alone.
    pub async fn record_model_versions_tag(&self, id: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let touched = sqlx::query("UPDATE logged_models SET updated_at = $1 WHERE id = $2").bind(now_ms()).bind(id).execute(&mut *tx).await?;
        if touched.rows_affected() == 0 {
            // A version may name a model another tracking server keeps
            // (a registry of its own, via MLFLOW_REGISTRY_URI).
            return Ok(());
        }
        let rows = sqlx::query("SELECT name, version FROM model_versions WHERE model_id = $1 ORDER BY created_at, name, version")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        for r in rows {
            let name: String = r.try_get("name")?;
            let version: i64 = r.try_get("version")?;
            items.push(format!("{{\"name\": {}, \"version\": {version}}}", python_json_string(&name)));
        }
        let value = format!("[{}]", items.join(", "));
        sqlx::query(
            "INSERT INTO logged_model_tags (model_id, key, value) VALUES ($1, 'mlflow.modelVersions', $2) ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value",
        )
        .bind(id)
        .bind(&value)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_logged_model_tag(&self, id: &str, key: &str) -> Result<()> {
        self.logged_model_record(id).await?;
        let done = sqlx::query("DELETE FROM logged_model_tags WHERE model_id = $1 AND key = $2").bind(id).bind(key).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("Tag '{key}' of logged model '{id}'")));
        }
        Ok(())
    }

    /// Metrics logged with this model's id (they are in the run's history too).
    pub async fn log_logged_model_metrics(&self, id: &str, metrics: &[LoggedModelMetric]) -> Result<()> {
        self.logged_model_record(id).await?;
        let mut tx = self.begin_write().await?;
        for m in metrics {
            sqlx::query(
                "INSERT INTO logged_model_metrics (model_id, key, value, is_nan, step, timestamp, run_id, dataset_name, dataset_digest) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(id)
            .bind(&m.key)
            .bind(if m.value.is_nan() { None } else { Some(m.value) })
            .bind(i64::from(m.value.is_nan()))
            .bind(m.step)
            .bind(m.timestamp)
            .bind(&m.run_id)
            .bind(&m.dataset_name)
            .bind(&m.dataset_digest)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn add_logged_model_artifact(&self, id: &str, path: &str, blob: &str, size: i64) -> Result<()> {
        self.logged_model_record(id).await?;
        sqlx::query(
            "INSERT INTO logged_model_artifacts (model_id, path, blob, size, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (model_id, path) DO UPDATE SET blob = excluded.blob, size = excluded.size",
        )
        .bind(id)
        .bind(path)
        .bind(blob)
        .bind(size)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// (path, blob, size) of a model's files.
    pub async fn logged_model_artifacts(&self, id: &str) -> Result<Vec<(String, String, i64)>> {
        sqlx::query("SELECT path, blob, size FROM logged_model_artifacts WHERE model_id = $1 ORDER BY path")
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("path")?, r.try_get("blob")?, r.try_get("size")?)))
            .collect()
    }

    pub async fn delete_logged_model_artifact(&self, id: &str, path: &str) -> Result<u64> {
        let prefix = format!("{}/%", path.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        let done = sqlx::query("DELETE FROM logged_model_artifacts WHERE model_id = $1 AND (path = $2 OR path LIKE $3 ESCAPE '\\')")
            .bind(id)
            .bind(path)
            .bind(prefix)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// `runs/outputs`: record that a run produced these models.
    pub async fn log_run_outputs(&self, run_id: &str, models: &[(String, i64)]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for (model_id, step) in models {
            sqlx::query(
                "INSERT INTO run_model_outputs (run_id, model_id, step) VALUES ($1, $2, $3) ON CONFLICT (run_id, model_id) DO UPDATE SET step = excluded.step",
            )
            .bind(run_id)
            .bind(model_id)
            .bind(step)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.changed(Change::Run { id: run_id.into() });
        Ok(())
    }

    /// `runs/log-inputs`: datasets (once per name and digest; a repeat
    /// keeps the first) and logged models a run read.
    pub async fn log_run_inputs(&self, run_id: &str, datasets: &[DatasetInput], models: &[String]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        for d in datasets {
            let tags = serde_json::Value::Array(d.tags.iter().map(|(k, v)| serde_json::json!({"key": k, "value": v})).collect()).to_string();
            sqlx::query(
                "INSERT INTO run_dataset_inputs (run_id, name, digest, source_type, source, schema, profile, tags, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (run_id, name, digest) DO NOTHING",
            )
            .bind(run_id)
            .bind(&d.name)
            .bind(&d.digest)
            .bind(&d.source_type)
            .bind(&d.source)
            .bind(&d.schema)
            .bind(&d.profile)
            .bind(tags)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        for m in models {
            sqlx::query("INSERT INTO run_model_inputs (run_id, model_id) VALUES ($1, $2) ON CONFLICT (run_id, model_id) DO NOTHING")
                .bind(run_id)
                .bind(m)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.changed(Change::Run { id: run_id.into() });
        Ok(())
    }

    /// The distinct datasets the runs of `experiment_ids` read, each with
    /// its `mlflow.data.context` tag where it has one (MLflow's
    /// `experiments/search-datasets`, which its UI lists): at most 1,000,
    /// as MLflow answers.
    pub async fn dataset_summaries(&self, experiment_ids: &[String]) -> Result<Vec<DatasetSummary>> {
        if experiment_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT DISTINCT r.experiment_id, x.name, x.digest, x.tags FROM run_dataset_inputs x JOIN runs r ON r.id = x.run_id \
             WHERE r.experiment_id IN ({}) ORDER BY r.experiment_id, x.name, x.digest",
            super::runs::placeholders(experiment_ids.len())
        );
        let mut out: Vec<DatasetSummary> = Vec::new();
        for r in super::runs::bound(sql, experiment_ids).fetch_all(&self.pool).await? {
            let tags: String = r.try_get("tags")?;
            let context = serde_json::from_str::<Vec<serde_json::Value>>(&tags)
                .unwrap_or_default()
                .iter()
                .find(|t| t["key"] == "mlflow.data.context")
                .and_then(|t| t["value"].as_str().map(String::from));
            let summary =
                DatasetSummary { experiment_id: r.try_get("experiment_id")?, name: r.try_get("name")?, digest: r.try_get("digest")?, context };
            // Two runs' inputs of one dataset differ in their other tags.
            if !out.contains(&summary) {
                out.push(summary);
            }
            if out.len() == 1000 {
                break;
            }
        }
        Ok(out)
    }

    /// What the runs `scope` selects read and produced, by run id.
    /// `scope` is a condition on `r`, the runs table, whose `$n` are
    /// `ids`; three queries for any number of runs, so a search page or
    /// the run catalog costs no query per run.
    pub(crate) async fn run_io(&self, scope: &str, ids: &[String]) -> Result<HashMap<String, RunIo>> {
        let query = |sql: String| super::runs::bound(sql, ids);
        let mut io: HashMap<String, RunIo> = HashMap::new();
        for r in query(format!(
            "SELECT x.run_id, x.name, x.digest, x.source_type, x.source, x.schema, x.profile, x.tags FROM run_dataset_inputs x \
             JOIN runs r ON r.id = x.run_id WHERE {scope} ORDER BY x.run_id, x.created_at, x.name, x.digest"
        ))
        .fetch_all(&self.pool)
        .await?
        {
            let tags: String = r.try_get("tags")?;
            let tags = serde_json::from_str::<Vec<serde_json::Value>>(&tags)
                .unwrap_or_default()
                .iter()
                .filter_map(|t| Some((t["key"].as_str()?.to_string(), t["value"].as_str().unwrap_or("").to_string())))
                .collect();
            io.entry(r.try_get("run_id")?).or_default().datasets.push(DatasetInput {
                name: r.try_get("name")?,
                digest: r.try_get("digest")?,
                source_type: r.try_get("source_type")?,
                source: r.try_get("source")?,
                schema: r.try_get("schema")?,
                profile: r.try_get("profile")?,
                tags,
            });
        }
        for r in query(format!(
            "SELECT x.run_id, x.model_id FROM run_model_inputs x JOIN runs r ON r.id = x.run_id WHERE {scope} ORDER BY x.run_id, x.model_id"
        ))
        .fetch_all(&self.pool)
        .await?
        {
            io.entry(r.try_get("run_id")?).or_default().models.push(r.try_get("model_id")?);
        }
        for r in query(format!(
            "SELECT x.run_id, x.model_id, x.step FROM run_model_outputs x JOIN runs r ON r.id = x.run_id WHERE {scope} ORDER BY x.run_id, x.model_id"
        ))
        .fetch_all(&self.pool)
        .await?
        {
            io.entry(r.try_get("run_id")?).or_default().outputs.push((r.try_get("model_id")?, r.try_get("step")?));
        }
        Ok(io)
    }
}

/// A string as Python's `json.dumps` writes it: non-ASCII as `\uXXXX`.
fn python_json_string(s: &str) -> String {
    let mut out = String::new();
    for c in serde_json::Value::String(s.to_string()).to_string().chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut [0; 2]) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::both_backends;

    both_backends!(a_runs_inputs_and_outputs_come_with_it_in_views_and_searches, |store| {
        store.ensure_default_experiment().await.unwrap();
        let read = store.create_run_in("0", None, "read", "u", 1, "mlflow").await.unwrap();
        let plain = store.create_run_in("0", None, "plain", "u", 2, "mlflow").await.unwrap();
        let iris = DatasetInput {
            name: "iris".into(),
            digest: "d1".into(),
            source_type: "code".into(),
            tags: vec![("mlflow.data.context".into(), "training".into())],
            ..Default::default()
        };
        let model = store.create_logged_model(&NewLoggedModel { experiment_id: "0", name: "m", ..Default::default() }).await.unwrap();
        store.log_run_inputs(&read, std::slice::from_ref(&iris), std::slice::from_ref(&model.id)).await.unwrap();
        store.log_run_outputs(&read, &[(model.id.clone(), 3)]).await.unwrap();
        let want = RunIo { datasets: vec![iris], models: vec![model.id.clone()], outputs: vec![(model.id.clone(), 3)] };
        let mut views = store.run_views(&[plain.clone(), read.clone()]).await.unwrap();
        assert!(views.iter().all(|v| v.io == RunIo::default()), "run_views leaves them to fill_io");
        store.fill_io(&mut views).await.unwrap();
        assert_eq!(views.iter().map(|v| (v.id.clone(), v.io.clone())).collect::<Vec<_>>(), [(plain, RunIo::default()), (read.clone(), want.clone())]);
        // A search (from the run catalog on SQLite, from SQL on PostgreSQL)
        // renders the same views.
        fn render(v: &crate::RunView) -> Vec<u8> {
            format!("{} {:?}", v.name, v.io).into_bytes()
        }
        let q = crate::SearchQuery { max_results: 10, ..Default::default() };
        if store.backend() == crate::Backend::Sqlite {
            store.rebuild_catalog().await.unwrap();
        }
        let (got, _) = store.search_rendered(&q, render).await.unwrap();
        let got: Vec<String> = got.iter().map(|b| String::from_utf8(b.to_vec()).unwrap()).collect();
        assert!(got.contains(&format!("read {want:?}")), "{got:?}");
        assert!(got.contains(&format!("plain {:?}", RunIo::default())), "{got:?}");
    });

    both_backends!(logged_models_live_and_die_with_their_parts, |store| {
        store.ensure_default_experiment().await.unwrap();
        let params = [("C".to_string(), "0.5".to_string())];
        let m =
            store.create_logged_model(&NewLoggedModel { experiment_id: "0", name: "model", params: &params, ..Default::default() }).await.unwrap();
        assert!(m.id.starts_with("m-") && m.id.len() == 34 && m.status == "PENDING");
        assert_eq!(store.finalize_logged_model(&m.id, "READY").await.unwrap().status, "READY");
        assert!(store.finalize_logged_model(&m.id, "DONE").await.is_err());
        store.set_logged_model_pairs(&m.id, false, &[("team".into(), "ml".into())]).await.unwrap();
        let metric = LoggedModelMetric { key: "acc".into(), value: f64::NAN, step: 0, timestamp: 1, ..Default::default() };
        store.log_logged_model_metrics(&m.id, &[metric]).await.unwrap();
        store.add_logged_model_artifact(&m.id, "dir/MLmodel", "blob", 3).await.unwrap();
        let got = store.logged_model(&m.id).await.unwrap();
        assert_eq!((got.params, got.tags), (params.to_vec(), vec![("team".to_string(), "ml".to_string())]));
        assert!(got.metrics[0].value.is_nan());
        let other = [("C".to_string(), "2".to_string())];
        let second =
            store.create_logged_model(&NewLoggedModel { experiment_id: "0", name: "second", params: &other, ..Default::default() }).await.unwrap();
        let listed = store.logged_models(&["0".into()]).await.unwrap();
        let seen: Vec<_> = listed.iter().map(|m| (m.record.id.clone(), m.params.clone(), m.tags.len(), m.metrics.len())).collect();
        assert_eq!(seen, [(m.id.clone(), params.to_vec(), 1, 1), (second.id.clone(), other.to_vec(), 0, 0)], "each model gets its own rows");
        store.delete_logged_model(&second.id).await.unwrap();
        assert_eq!(store.logged_models(&["0".into()]).await.unwrap().len(), 1);
        assert!(store.logged_models(&["7".into()]).await.unwrap().is_empty());
        assert_eq!(store.delete_logged_model_artifact(&m.id, "dir").await.unwrap(), 1);
        store.delete_logged_model_tag(&m.id, "team").await.unwrap();
        assert!(store.delete_logged_model_tag(&m.id, "team").await.is_err());
        store.delete_logged_model(&m.id).await.unwrap();
        assert!(store.logged_model(&m.id).await.is_err(), "a deleted model is gone to readers");
    });
}
