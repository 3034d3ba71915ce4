//! Experiments, runs, params, metrics, tags, logs, artifacts and stage
//! records.

use super::group::TrackingWrite;
use super::{Change, Result, Store, StoreError, now_ms};
use sqlx::{AssertSqlSafe, Row};
use std::collections::{BTreeMap, HashMap};

pub use kiln_types::status::{RunStatus, StageState};

pub struct NewRun {
    pub experiment: String,
    pub name: String,
    pub parent: Option<String>,
    pub source: String,
}

#[derive(Debug, Clone)]
pub struct MetricPoint {
    pub key: String,
    pub value: f64,
    pub step: i64,
    pub timestamp: i64,
}

#[derive(Debug, Clone)]
pub struct RunSummary {
    pub id: String,
    pub experiment: String,
    pub name: String,
    pub status: RunStatus,
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub source: String,
    pub parent_run_id: Option<String>,
    pub params: BTreeMap<String, String>,
    /// Latest value per metric key.
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Debug, Clone)]
pub struct StageRecord {
    pub stage: String,
    pub status: StageState,
    pub plugin_digest: Option<String>,
    pub cache_key: Option<String>,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub peak_memory: Option<i64>,
    pub attempts: i64,
    pub error: Option<String>,
    /// JSON object: output name → blob id or value.
    pub outputs: String,
}

#[derive(Debug, Clone)]
pub struct ArtifactRecord {
    pub path: String,
    pub blob: String,
    pub size: i64,
    pub media_type: String,
}

#[derive(Debug, Clone)]
pub struct LogRecord {
    pub stage: String,
    pub level: String,
    pub message: String,
    pub at: i64,
}

#[derive(Debug, Clone)]
pub struct RunDetail {
    pub summary: RunSummary,
    pub error: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub stages: Vec<StageRecord>,
    pub artifacts: Vec<ArtifactRecord>,
}

/// A run as MLflow's API shows it: info, params, latest metrics, tags.
#[derive(Debug, Clone)]
pub struct RunView {
    pub id: String,
    pub name: String,
    pub experiment_id: String,
    pub user_id: String,
    pub status: String,
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub lifecycle_stage: String,
    pub parent_run_id: Option<String>,
    /// The experiment's own artifact location (MLflow's
    /// `artifact_location`), empty when it has none.
    pub artifact_location: String,
    pub params: Vec<(String, String)>,
    pub metrics: Vec<MetricPoint>,
    pub tags: Vec<(String, String)>,
    /// What it read and produced (`runs/log-inputs`, `runs/outputs`).
    pub io: super::RunIo,
}

impl Store {
    /// The id of the experiment called `name`, created if missing.
    pub async fn experiment_id(&self, name: &str) -> Result<String> {
        if let Some(row) = sqlx::query("SELECT id FROM experiments WHERE name = $1").bind(name).fetch_optional(&self.pool).await? {
            return Ok(row.try_get("id")?);
        }
        kiln_types::names::check_experiment_name(name).map_err(StoreError::Invalid)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let now = now_ms();
        sqlx::query("INSERT INTO experiments (id, name, created_at, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING")
            .bind(&id)
            .bind(name)
            .bind(now)
            .bind(now)
            .execute(&self.pool)
            .await?;
        // Someone else may have won the race; read back whichever row exists.
        let row = sqlx::query("SELECT id FROM experiments WHERE name = $1").bind(name).fetch_one(&self.pool).await?;
        let id: String = row.try_get("id")?;
        self.changed(Change::Experiment { id: id.clone() });
        Ok(id)
    }

    pub async fn create_run(&self, new: NewRun) -> Result<String> {
        let experiment_id = self.experiment_id(&new.experiment).await?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        sqlx::query(
            "INSERT INTO runs (id, experiment_id, parent_run_id, name, status, start_time, source) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(&experiment_id)
        .bind(new.parent)
        .bind(&new.name)
        .bind(RunStatus::Running.as_str())
        .bind(now_ms())
        .bind(&new.source)
        .execute(&self.pool)
        .await?;
        self.changed(Change::Run { id: id.clone() });
        Ok(id)
    }

    /// Create a run the way MLflow clients do: in an experiment given by
    /// id, with their start time and user.
    pub async fn create_run_in(
        &self,
        experiment_id: &str,
        parent: Option<&str>,
        name: &str,
        user: &str,
        start_time: i64,
        source: &str,
    ) -> Result<String> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        sqlx::query(
            "INSERT INTO runs (id, experiment_id, parent_run_id, name, status, start_time, source, user_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(experiment_id)
        .bind(parent)
        .bind(name)
        .bind(RunStatus::Running.as_str())
        .bind(start_time)
        .bind(source)
        .bind(user)
        .execute(&self.pool)
        .await?;
        self.changed(Change::Run { id: id.clone() });
        Ok(id)
    }

    /// Set status, end time and name (each when given).
    pub async fn update_run(&self, run_id: &str, status: Option<RunStatus>, end_time: Option<i64>, name: Option<&str>) -> Result<()> {
        let done =
            sqlx::query("UPDATE runs SET status = COALESCE($1, status), end_time = COALESCE($2, end_time), name = COALESCE($3, name) WHERE id = $4")
                .bind(status.map(|s| s.as_str()))
                .bind(end_time)
                .bind(name)
                .bind(run_id)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("run `{run_id}`")));
        }
        self.changed(Change::Run { id: run_id.into() });
        Ok(())
    }

    pub async fn delete_tag(&self, run_id: &str, key: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM tags WHERE run_id = $1 AND key = $2").bind(run_id).bind(key).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("tag `{key}` of run `{run_id}`")));
        }
        self.changed(Change::Run { id: run_id.into() });
        Ok(())
    }

    /// Latest value of every metric of a run, with step and timestamp.
    pub async fn latest_metrics(&self, run_id: &str) -> Result<Vec<MetricPoint>> {
        sqlx::query("SELECT key, step, timestamp, value, is_nan FROM latest_metrics WHERE run_id = $1 ORDER BY key")
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(metric_from_row)
            .collect()
    }

    /// Experiment id, user and lifecycle stage of a run.
    pub async fn run_extras(&self, run_id: &str) -> Result<(String, String, String)> {
        let r = sqlx::query("SELECT experiment_id, user_id, lifecycle_stage FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("run `{run_id}`")))?;
        Ok((r.try_get("experiment_id")?, r.try_get("user_id")?, r.try_get("lifecycle_stage")?))
    }

    /// Params are immutable once logged (as in MLflow): logging the same
    /// value again is fine, a different value is a conflict.
    pub async fn log_params(&self, run_id: &str, params: &[(String, String)]) -> Result<()> {
        self.log_batch(run_id, &[], params, &[]).await
    }

    /// Append metric points and keep `latest_metrics` current, atomically.
    pub async fn log_metrics(&self, run_id: &str, points: &[MetricPoint]) -> Result<()> {
        self.log_batch(run_id, points, &[], &[]).await
    }

    /// Metrics, params and tags of one run, all or nothing, through the
    /// group-commit writer (see `group.rs`).
    pub async fn log_batch(&self, run_id: &str, metrics: &[MetricPoint], params: &[(String, String)], tags: &[(String, String)]) -> Result<()> {
        // An empty write still goes to the writer: it checks the run.
        self.writer
            .write(TrackingWrite { run_id: run_id.to_string(), metrics: metrics.to_vec(), params: params.to_vec(), tags: tags.to_vec() })
            .await?;
        if !params.is_empty() || !tags.is_empty() {
            self.changed(Change::Run { id: run_id.into() });
        }
        if !metrics.is_empty() {
            self.changed(Change::Metrics { run: run_id.into() });
        }
        Ok(())
    }

    pub async fn set_tags(&self, run_id: &str, tags: &[(String, String)]) -> Result<()> {
        self.log_batch(run_id, &[], &[], tags).await
    }

    pub async fn finish_run(&self, run_id: &str, status: RunStatus, error: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE runs SET status = $1, end_time = $2, error = $3 WHERE id = $4")
            .bind(status.as_str())
            .bind(now_ms())
            .bind(error)
            .bind(run_id)
            .execute(&self.pool)
            .await?;
        self.changed(Change::Run { id: run_id.into() });
        Ok(())
    }

    /// Runs, newest first, optionally of one experiment.
    pub async fn list_runs(&self, experiment: Option<&str>, limit: i64) -> Result<Vec<RunSummary>> {
        const BASE: &str = "SELECT r.id, e.name AS experiment, r.name, r.status, r.start_time, r.end_time, r.source, \
                            r.parent_run_id FROM runs r JOIN experiments e ON e.id = r.experiment_id \
                            WHERE r.lifecycle_stage = 'active'";
        let rows = match experiment {
            Some(name) => {
                sqlx::query(AssertSqlSafe(format!("{BASE} AND e.name = $1 ORDER BY r.start_time DESC, r.id LIMIT $2")))
                    .bind(name)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => sqlx::query(AssertSqlSafe(format!("{BASE} ORDER BY r.start_time DESC, r.id LIMIT $1"))).bind(limit).fetch_all(&self.pool).await?,
        };
        let mut runs: Vec<RunSummary> = rows.iter().map(summary_from_row).collect::<Result<_>>()?;
        self.fill_params_and_metrics(&mut runs).await?;
        Ok(runs)
    }

    pub(super) async fn fill_params_and_metrics(&self, runs: &mut [RunSummary]) -> Result<()> {
        if runs.is_empty() {
            return Ok(());
        }
        let list = placeholders(runs.len());
        let mut q = sqlx::query(AssertSqlSafe(format!("SELECT run_id, key, value FROM params WHERE run_id IN ({list})")));
        for r in runs.iter() {
            q = q.bind(r.id.clone());
        }
        let index: BTreeMap<String, usize> = runs.iter().enumerate().map(|(i, r)| (r.id.clone(), i)).collect();
        for row in q.fetch_all(&self.pool).await? {
            let run_id: String = row.try_get("run_id")?;
            runs[index[&run_id]].params.insert(row.try_get("key")?, row.try_get("value")?);
        }
        let mut q = sqlx::query(AssertSqlSafe(format!("SELECT run_id, key, value, is_nan FROM latest_metrics WHERE run_id IN ({list})")));
        for r in runs.iter() {
            q = q.bind(r.id.clone());
        }
        for row in q.fetch_all(&self.pool).await? {
            let run_id: String = row.try_get("run_id")?;
            let is_nan: i64 = row.try_get("is_nan")?;
            let value: Option<f64> = row.try_get("value")?;
            runs[index[&run_id]].metrics.insert(row.try_get("key")?, if is_nan == 1 { f64::NAN } else { value.unwrap_or(f64::NAN) });
        }
        Ok(())
    }

    /// Many runs at once, in the order of `ids` (unknown ids are left out):
    /// four queries per thousand runs, however many runs, so a search
    /// returning a thousand runs does not make a thousand round trips.
    pub async fn run_views(&self, ids: &[String]) -> Result<Vec<RunView>> {
        let mut views: Vec<RunView> = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(1000) {
            let list = placeholders(chunk.len());
            let query = |sql: String| bound(sql, chunk);
            let rows = query(format!(
                "SELECT r.id, r.name, r.experiment_id, r.user_id, r.status, r.start_time, r.end_time, r.lifecycle_stage, r.parent_run_id, \
                 e.artifact_location FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE r.id IN ({list})"
            ))
            .fetch_all(&self.pool)
            .await?;
            let mut found: HashMap<String, RunView> = HashMap::with_capacity(rows.len());
            for r in &rows {
                let view = RunView::from_row(r)?;
                found.insert(view.id.clone(), view);
            }
            for r in
                query(format!("SELECT run_id, key, value FROM params WHERE run_id IN ({list}) ORDER BY run_id, key")).fetch_all(&self.pool).await?
            {
                if let Some(v) = found.get_mut(&r.try_get::<String, _>("run_id")?) {
                    v.params.push((r.try_get("key")?, r.try_get("value")?));
                }
            }
            for r in query(format!("SELECT run_id, key, value FROM tags WHERE run_id IN ({list}) ORDER BY run_id, key")).fetch_all(&self.pool).await?
            {
                if let Some(v) = found.get_mut(&r.try_get::<String, _>("run_id")?) {
                    v.tags.push((r.try_get("key")?, r.try_get("value")?));
                }
            }
            for r in
                query(format!("SELECT run_id, key, step, timestamp, value, is_nan FROM latest_metrics WHERE run_id IN ({list}) ORDER BY run_id, key"))
                    .fetch_all(&self.pool)
                    .await?
            {
                if let Some(v) = found.get_mut(&r.try_get::<String, _>("run_id")?) {
                    v.metrics.push(metric_from_row(&r)?);
                }
            }
            views.extend(chunk.iter().filter_map(|id| found.remove(id)));
        }
        Ok(views)
    }

    /// Each view's inputs and outputs (`runs/log-inputs`, `runs/outputs`),
    /// three queries per thousand runs. Apart from [`Store::run_views`]:
    /// only a get and a search show them, not the writes that answer with
    /// the run.
    pub async fn fill_io(&self, views: &mut [RunView]) -> Result<()> {
        for chunk in views.chunks_mut(1000) {
            let ids: Vec<String> = chunk.iter().map(|v| v.id.clone()).collect();
            let mut io = self.run_io(&format!("r.id IN ({})", placeholders(ids.len())), &ids).await?;
            for v in chunk {
                v.io = io.remove(&v.id).unwrap_or_default();
            }
        }
        Ok(())
    }

    /// A full run id from an id or a unique prefix of at least 4 characters.
    pub async fn resolve_run_id(&self, prefix: &str) -> Result<String> {
        if prefix.len() < 4 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(StoreError::NotFound(format!("run `{prefix}` (give the id or at least 4 of its first characters)")));
        }
        let rows = sqlx::query("SELECT id FROM runs WHERE id LIKE $1 ORDER BY id LIMIT 2").bind(format!("{prefix}%")).fetch_all(&self.pool).await?;
        match rows.len() {
            0 => Err(StoreError::NotFound(format!("run `{prefix}`"))),
            1 => Ok(rows[0].try_get("id")?),
            _ => Err(StoreError::Conflict(format!("run id prefix `{prefix}` is ambiguous; give more characters"))),
        }
    }

    pub async fn get_run(&self, run_id: &str) -> Result<RunDetail> {
        let row = sqlx::query(
            "SELECT r.id, e.name AS experiment, r.name, r.status, r.start_time, r.end_time, r.source, r.parent_run_id, r.error \
             FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE r.id = $1",
        )
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("run `{run_id}`")))?;
        let mut summary = [summary_from_row(&row)?];
        self.fill_params_and_metrics(&mut summary).await?;
        let [summary] = summary;
        let error: Option<String> = row.try_get("error")?;

        let mut tags = BTreeMap::new();
        for row in sqlx::query("SELECT key, value FROM tags WHERE run_id = $1").bind(run_id).fetch_all(&self.pool).await? {
            tags.insert(row.try_get("key")?, row.try_get("value")?);
        }
        let stages = sqlx::query(
            "SELECT stage, status, plugin_digest, cache_key, started_at, ended_at, peak_memory, attempts, error, outputs \
             FROM stage_runs WHERE run_id = $1 ORDER BY started_at, stage",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(stage_from_row)
        .collect::<Result<Vec<_>>>()?;
        let artifacts = sqlx::query("SELECT path, blob, size, media_type FROM artifacts WHERE run_id = $1 ORDER BY path")
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(ArtifactRecord {
                    path: r.try_get("path")?,
                    blob: r.try_get("blob")?,
                    size: r.try_get("size")?,
                    media_type: r.try_get("media_type")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RunDetail { summary, error, tags, stages, artifacts })
    }

    /// The recorded outcome of one stage of a run, if any.
    pub async fn get_stage(&self, run_id: &str, stage: &str) -> Result<Option<StageRecord>> {
        let row = sqlx::query(
            "SELECT stage, status, plugin_digest, cache_key, started_at, ended_at, peak_memory, attempts, error, outputs \
             FROM stage_runs WHERE run_id = $1 AND stage = $2",
        )
        .bind(run_id)
        .bind(stage)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(stage_from_row).transpose()
    }

    pub async fn set_run_status(&self, run_id: &str, status: RunStatus) -> Result<()> {
        sqlx::query("UPDATE runs SET status = $1 WHERE id = $2").bind(status.as_str()).bind(run_id).execute(&self.pool).await?;
        self.changed(Change::Run { id: run_id.into() });
        Ok(())
    }

    /// Log lines after `after_seq`, with their sequence numbers.
    pub async fn run_logs_after(&self, run_id: &str, after_seq: i64) -> Result<Vec<(i64, LogRecord)>> {
        sqlx::query("SELECT seq, stage, level, message, at FROM run_logs WHERE run_id = $1 AND seq > $2 ORDER BY seq")
            .bind(run_id)
            .bind(after_seq)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("seq")?,
                    LogRecord { stage: r.try_get("stage")?, level: r.try_get("level")?, message: r.try_get("message")?, at: r.try_get("at")? },
                ))
            })
            .collect()
    }

    pub async fn append_logs(&self, run_id: &str, logs: &[LogRecord]) -> Result<()> {
        if logs.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        // Stages append to one run's log concurrently (live, batch by
        // batch). SQLite's BEGIN IMMEDIATE already serialises writers; on
        // PostgreSQL two transactions would read the same MAX(seq) and the
        // second would hit the primary key, so the run's row is locked
        // first.
        if self.backend == super::Backend::Postgres {
            sqlx::query("SELECT id FROM runs WHERE id = $1 FOR UPDATE").bind(run_id).fetch_optional(&mut *tx).await?;
        }
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS seq FROM run_logs WHERE run_id = $1").bind(run_id).fetch_one(&mut *tx).await?;
        let mut seq: i64 = row.try_get("seq")?;
        for l in logs {
            seq += 1;
            sqlx::query("INSERT INTO run_logs (run_id, seq, stage, level, message, at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(run_id)
                .bind(seq)
                .bind(&l.stage)
                .bind(&l.level)
                .bind(&l.message)
                .bind(l.at)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.changed(Change::Logs { run: run_id.into() });
        Ok(())
    }

    pub async fn run_logs(&self, run_id: &str) -> Result<Vec<LogRecord>> {
        Ok(self.run_logs_after(run_id, 0).await?.into_iter().map(|(_, l)| l).collect())
    }

    pub async fn add_artifact(&self, run_id: &str, path: &str, blob: &str, size: i64, media_type: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO artifacts (run_id, path, blob, size, media_type, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (run_id, path) DO UPDATE SET blob = excluded.blob, size = excluded.size, media_type = excluded.media_type",
        )
        .bind(run_id)
        .bind(path)
        .bind(blob)
        .bind(size)
        .bind(media_type)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        self.changed(Change::Artifacts { run: run_id.into() });
        Ok(())
    }

    /// Delete a run's artifact, or a folder of them; how many went.
    pub async fn delete_artifacts(&self, run_id: &str, path: &str) -> Result<u64> {
        let under = format!("{}/%", path.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        let done = sqlx::query("DELETE FROM artifacts WHERE run_id = $1 AND (path = $2 OR path LIKE $3 ESCAPE '\\')")
            .bind(run_id)
            .bind(path)
            .bind(under)
            .execute(&self.pool)
            .await?;
        self.changed(Change::Artifacts { run: run_id.into() });
        Ok(done.rows_affected())
    }

    pub async fn upsert_stage(&self, run_id: &str, s: &StageRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO stage_runs (run_id, stage, status, plugin_digest, cache_key, started_at, ended_at, peak_memory, attempts, error, outputs) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (run_id, stage) DO UPDATE SET status = excluded.status, plugin_digest = excluded.plugin_digest, \
             cache_key = excluded.cache_key, started_at = excluded.started_at, ended_at = excluded.ended_at, \
             peak_memory = excluded.peak_memory, attempts = excluded.attempts, error = excluded.error, outputs = excluded.outputs",
        )
        .bind(run_id)
        .bind(&s.stage)
        .bind(s.status.as_str())
        .bind(&s.plugin_digest)
        .bind(&s.cache_key)
        .bind(s.started_at)
        .bind(s.ended_at)
        .bind(s.peak_memory)
        .bind(s.attempts)
        .bind(&s.error)
        .bind(&s.outputs)
        .execute(&self.pool)
        .await?;
        self.changed(Change::Stage { run: run_id.into(), stage: s.stage.clone() });
        Ok(())
    }
}

pub(super) fn summary_from_row(row: &sqlx::any::AnyRow) -> Result<RunSummary> {
    let status: String = row.try_get("status")?;
    Ok(RunSummary {
        id: row.try_get("id")?,
        experiment: row.try_get("experiment")?,
        name: row.try_get("name")?,
        status: RunStatus::parse(&status)
            .ok_or_else(|| StoreError::Db(sqlx::Error::Decode(format!("`{status}` in column `status` is not a known value").into())))?,
        start_time: row.try_get("start_time")?,
        end_time: row.try_get("end_time")?,
        source: row.try_get("source")?,
        parent_run_id: row.try_get("parent_run_id")?,
        params: BTreeMap::new(),
        metrics: BTreeMap::new(),
    })
}

fn stage_from_row(r: &sqlx::any::AnyRow) -> Result<StageRecord> {
    Ok(StageRecord {
        stage: r.try_get("stage")?,
        status: decode(r, "status", StageState::parse)?,
        plugin_digest: r.try_get("plugin_digest")?,
        cache_key: r.try_get("cache_key")?,
        started_at: r.try_get("started_at")?,
        ended_at: r.try_get("ended_at")?,
        peak_memory: r.try_get("peak_memory")?,
        attempts: r.try_get("attempts")?,
        error: r.try_get("error")?,
        outputs: r.try_get("outputs")?,
    })
}

impl RunView {
    /// A run's info from a row of `runs` (params, metrics and tags empty).
    pub(super) fn from_row(r: &sqlx::any::AnyRow) -> Result<Self> {
        Ok(RunView {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            experiment_id: r.try_get("experiment_id")?,
            user_id: r.try_get("user_id")?,
            status: r.try_get("status")?,
            start_time: r.try_get("start_time")?,
            end_time: r.try_get("end_time")?,
            lifecycle_stage: r.try_get("lifecycle_stage")?,
            parent_run_id: r.try_get("parent_run_id")?,
            artifact_location: r.try_get("artifact_location")?,
            params: Vec::new(),
            metrics: Vec::new(),
            tags: Vec::new(),
            io: super::RunIo::default(),
        })
    }
}

/// `$1, $2, …, $n`: the list for `n` values bound in order.
pub(crate) fn placeholders(n: usize) -> String {
    (1..=n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// `sql` with `ids` bound to `$1…$n` in order.
pub(crate) fn bound(sql: String, ids: &[String]) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
    ids.iter().fold(sqlx::query(AssertSqlSafe(sql)), |q, id| q.bind(id.as_str()))
}

pub(super) fn metric_from_row(row: &sqlx::any::AnyRow) -> Result<MetricPoint> {
    let is_nan: i64 = row.try_get("is_nan")?;
    let value: Option<f64> = row.try_get("value")?;
    Ok(MetricPoint {
        key: row.try_get("key")?,
        value: if is_nan == 1 { f64::NAN } else { value.unwrap_or(f64::NAN) },
        step: row.try_get("step")?,
        timestamp: row.try_get("timestamp")?,
    })
}

/// A text column that must hold one of an enum's words: anything else is
/// a damaged database, a server fault.
pub(crate) fn decode<T>(r: &sqlx::any::AnyRow, column: &str, parse: fn(&str) -> Option<T>) -> Result<T> {
    let text: String = r.try_get(column)?;
    parse(&text).ok_or_else(|| StoreError::Db(sqlx::Error::Decode(format!("`{text}` in column `{column}` is not a known value").into())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::both_backends;

    both_backends!(run_round_trip, |store| {
        let id = store.create_run(NewRun { experiment: "exp".into(), name: "first".into(), parent: None, source: "test".into() }).await.unwrap();
        store.log_params(&id, &[("lr".into(), "0.1".into())]).await.unwrap();
        // Same value again is fine; a different one is refused and changes nothing.
        store.log_params(&id, &[("lr".into(), "0.1".into())]).await.unwrap();
        let err = store.log_params(&id, &[("lr".into(), "0.2".into())]).await.unwrap_err();
        assert!(err.to_string().contains("lr"), "{err}");
        let points = [
            MetricPoint { key: "loss".into(), value: 0.9, step: 0, timestamp: 1 },
            MetricPoint { key: "loss".into(), value: 0.5, step: 2, timestamp: 2 },
            MetricPoint { key: "loss".into(), value: 0.7, step: 1, timestamp: 3 },
            MetricPoint { key: "odd".into(), value: f64::NAN, step: 0, timestamp: 1 },
        ];
        store.log_metrics(&id, &points).await.unwrap();
        store.set_tags(&id, &[("team".into(), "ml".into())]).await.unwrap();
        store.finish_run(&id, RunStatus::Finished, None).await.unwrap();

        let runs = store.list_runs(Some("exp"), 10).await.unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].params["lr"], "0.1");
        assert_eq!(runs[0].metrics["loss"], 0.5, "latest is the highest step");
        assert!(runs[0].metrics["odd"].is_nan());
        assert_eq!(runs[0].status, RunStatus::Finished);
        let history = store.metric_history(&id, "loss").await.unwrap();
        assert_eq!(history.iter().map(|p| p.step).collect::<Vec<_>>(), vec![0, 1, 2]);
        let full = store.resolve_run_id(&id[..8]).await.unwrap();
        let detail = store.get_run(&full).await.unwrap();
        assert_eq!(detail.tags["team"], "ml");
        assert!(store.list_runs(Some("other"), 10).await.unwrap().is_empty());
    });

    both_backends!(logs_keep_order, |store| {
        let id = store.create_run(NewRun { experiment: "e".into(), name: "r".into(), parent: None, source: "test".into() }).await.unwrap();
        let line = |m: &str| LogRecord { stage: "s".into(), level: "info".into(), message: m.into(), at: 0 };
        store.append_logs(&id, &[line("a"), line("b")]).await.unwrap();
        store.append_logs(&id, &[line("c")]).await.unwrap();
        let logs = store.run_logs(&id).await.unwrap();
        assert_eq!(logs.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(), vec!["a", "b", "c"]);
    });

    both_backends!(concurrent_appends_to_one_run_all_land, |store| {
        let id = store.create_run(NewRun { experiment: "e".into(), name: "r".into(), parent: None, source: "test".into() }).await.unwrap();
        // Parallel stages relaying their live logs into the same run.
        let writers: Vec<_> = (0..6)
            .map(|w| {
                let (store, id) = (store.clone(), id.clone());
                tokio::spawn(async move {
                    for i in 0..20 {
                        let line = LogRecord { stage: format!("s{w}"), level: "info".into(), message: format!("{i}"), at: 0 };
                        store.append_logs(&id, &[line.clone(), line]).await.unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        assert_eq!(store.run_logs(&id).await.unwrap().len(), 6 * 20 * 2);
    });
}
