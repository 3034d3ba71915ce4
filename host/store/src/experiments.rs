//! Experiments: create, list, rename, delete and restore (soft, as MLflow).

use super::{Change, Result, Store, StoreError, now_ms};
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct ExperimentRecord {
    pub id: String,
    pub name: String,
    /// Where MLflow clients put the runs' artifacts when the experiment
    /// was created with one (`s3://…`, `file:///…`); empty: Kiln's blob
    /// store, through the artifact proxy.
    pub artifact_location: String,
    pub lifecycle_stage: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub runs: i64,
}

fn record_from_row(r: &sqlx::any::AnyRow) -> Result<ExperimentRecord> {
    Ok(ExperimentRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        artifact_location: r.try_get("artifact_location")?,
        lifecycle_stage: r.try_get("lifecycle_stage")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        runs: r.try_get("runs")?,
    })
}

const SELECT: &str = "SELECT e.id, e.name, e.artifact_location, e.lifecycle_stage, e.created_at, e.updated_at, \
    (SELECT COUNT(*) FROM runs r WHERE r.experiment_id = e.id AND r.lifecycle_stage = 'active') AS runs FROM experiments e";

impl Store {
    /// MLflow clients log to experiment "0" when none is set: it exists as
    /// `Default`.
    pub async fn ensure_default_experiment(&self) -> Result<()> {
        let now = now_ms();
        sqlx::query("INSERT INTO experiments (id, name, created_at, updated_at) VALUES ('0', 'Default', $1, $2) ON CONFLICT DO NOTHING")
            .bind(now)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn experiment_by_id(&self, id: &str) -> Result<Option<ExperimentRecord>> {
        let sql = sqlx::AssertSqlSafe(format!("{SELECT} WHERE e.id = $1"));
        sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?.as_ref().map(record_from_row).transpose()
    }

    pub async fn experiment_by_name(&self, name: &str) -> Result<Option<ExperimentRecord>> {
        let sql = sqlx::AssertSqlSafe(format!("{SELECT} WHERE e.name = $1"));
        sqlx::query(sql).bind(name).fetch_optional(&self.pool).await?.as_ref().map(record_from_row).transpose()
    }

    pub async fn experiment_tags(&self, id: &str) -> Result<Vec<(String, String)>> {
        sqlx::query("SELECT key, value FROM experiment_tags WHERE experiment_id = $1 ORDER BY key")
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("key")?, r.try_get("value")?)))
            .collect()
    }

    pub async fn set_experiment_tag(&self, id: &str, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO experiment_tags (experiment_id, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value",
        )
        .bind(id)
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        self.changed(Change::Experiment { id: id.into() });
        Ok(())
    }

    /// Set where MLflow clients put this experiment's run artifacts.
    pub async fn set_experiment_artifact_location(&self, id: &str, location: &str) -> Result<()> {
        sqlx::query("UPDATE experiments SET artifact_location = $1 WHERE id = $2").bind(location).bind(id).execute(&self.pool).await?;
        self.changed(Change::Experiment { id: id.into() });
        Ok(())
    }

    /// Delete an experiment's tag; a missing tag is not found.
    pub async fn delete_experiment_tag(&self, id: &str, key: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM experiment_tags WHERE experiment_id = $1 AND key = $2").bind(id).bind(key).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("No tag with name: {key} in experiment with id {id}")));
        }
        self.changed(Change::Experiment { id: id.into() });
        Ok(())
    }

    /// (experiment id, key, value) of every experiment tag.
    pub async fn all_experiment_tags(&self) -> Result<Vec<(String, String, String)>> {
        sqlx::query("SELECT experiment_id, key, value FROM experiment_tags ORDER BY experiment_id, key")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("experiment_id")?, r.try_get("key")?, r.try_get("value")?)))
            .collect()
    }

    pub async fn list_experiments(&self, include_deleted: bool) -> Result<Vec<ExperimentRecord>> {
        let sql = sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY e.name"));
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        let mut out = Vec::new();
        for r in &rows {
            let rec = record_from_row(r)?;
            if include_deleted || rec.lifecycle_stage == "active" {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// Create an experiment; its name must be new.
    pub async fn create_experiment(&self, name: &str) -> Result<String> {
        kiln_types::names::check_experiment_name(name).map_err(StoreError::Invalid)?;
        if sqlx::query("SELECT id FROM experiments WHERE name = $1").bind(name).fetch_optional(&self.pool).await?.is_some() {
            return Err(StoreError::Conflict(format!("an experiment named `{name}` already exists")));
        }
        self.experiment_id(name).await
    }

    pub async fn rename_experiment(&self, name: &str, new_name: &str) -> Result<()> {
        kiln_types::names::check_experiment_name(new_name).map_err(StoreError::Invalid)?;
        if sqlx::query("SELECT id FROM experiments WHERE name = $1").bind(new_name).fetch_optional(&self.pool).await?.is_some() {
            return Err(StoreError::Conflict(format!("an experiment named `{new_name}` already exists")));
        }
        let done = sqlx::query("UPDATE experiments SET name = $1, updated_at = $2 WHERE name = $3")
            .bind(new_name)
            .bind(now_ms())
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("experiment `{name}`")));
        }
        if let Some(e) = self.experiment_by_name(new_name).await? {
            self.changed(Change::Experiment { id: e.id });
        }
        Ok(())
    }

    /// Soft-delete (`deleted`) or restore (`active`) an experiment (by name
    /// or id) and its runs.
    pub async fn set_experiment_stage(&self, name: &str, stage: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT id FROM experiments WHERE name = $1 OR id = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("experiment `{name}`")))?;
        let id: String = row.try_get("id")?;
        sqlx::query("UPDATE experiments SET lifecycle_stage = $1, updated_at = $2 WHERE id = $3")
            .bind(stage)
            .bind(now_ms())
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE runs SET lifecycle_stage = $1 WHERE experiment_id = $2").bind(stage).bind(&id).execute(&mut *tx).await?;
        tx.commit().await?;
        self.changed(Change::Experiment { id });
        Ok(())
    }

    /// Soft-delete (`deleted`) or restore (`active`) one run.
    pub async fn set_run_stage(&self, run_id: &str, stage: &str) -> Result<()> {
        let done = sqlx::query("UPDATE runs SET lifecycle_stage = $1 WHERE id = $2").bind(stage).bind(run_id).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("run `{run_id}`")));
        }
        self.changed(Change::Run { id: run_id.into() });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::NewRun;
    use crate::testing::both_backends;

    both_backends!(experiment_lifecycle, |store| {
        store.create_experiment("a").await.unwrap();
        assert!(store.create_experiment("a").await.unwrap_err().to_string().contains("already exists"));
        let run = store.create_run(NewRun { experiment: "a".into(), name: "r".into(), parent: None, source: "t".into() }).await.unwrap();
        store.rename_experiment("a", "b").await.unwrap();
        let list = store.list_experiments(false).await.unwrap();
        assert_eq!((list[0].name.as_str(), list[0].runs), ("b", 1));
        store.set_experiment_stage("b", "deleted").await.unwrap();
        assert!(store.list_experiments(false).await.unwrap().is_empty());
        assert!(store.list_runs(None, 10).await.unwrap().is_empty(), "runs of a deleted experiment are hidden");
        store.set_experiment_stage("b", "active").await.unwrap();
        assert_eq!(store.list_runs(None, 10).await.unwrap()[0].id, run);
        store.set_run_stage(&run, "deleted").await.unwrap();
        assert!(store.list_runs(None, 10).await.unwrap().is_empty());
    });
}
