//! The stage cache and lineage edges.

use super::{Change, Result, Store, now_ms};
use sqlx::Row;

#[derive(Debug, Clone, PartialEq)]
pub struct LineageEdge {
    pub src_kind: String,
    pub src_id: String,
    pub dst_kind: String,
    pub dst_id: String,
    pub run_id: Option<String>,
}

impl Store {
    /// Outputs recorded under a stage cache key, if any.
    pub async fn cache_get(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT outputs FROM stage_cache WHERE cache_key = $1").bind(key).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.try_get("outputs")).transpose()?)
    }

    /// Remember a stage's outputs; the first writer of a key wins (two
    /// identical runs produce interchangeable outputs).
    pub async fn cache_put(&self, key: &str, outputs: &str, run_id: &str) -> Result<()> {
        sqlx::query("INSERT INTO stage_cache (cache_key, outputs, run_id, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (cache_key) DO NOTHING")
            .bind(key)
            .bind(outputs)
            .bind(run_id)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn add_lineage(&self, e: &LineageEdge) -> Result<()> {
        sqlx::query(
            "INSERT INTO lineage_edges (src_kind, src_id, dst_kind, dst_id, run_id, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (src_kind, src_id, dst_kind, dst_id) DO NOTHING",
        )
        .bind(&e.src_kind)
        .bind(&e.src_id)
        .bind(&e.dst_kind)
        .bind(&e.dst_id)
        .bind(&e.run_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Edges touching a run, either way.
    pub async fn lineage_of_run(&self, run_id: &str) -> Result<Vec<LineageEdge>> {
        sqlx::query(
            "SELECT src_kind, src_id, dst_kind, dst_id, run_id FROM lineage_edges \
             WHERE run_id = $1 OR (dst_kind = 'run' AND dst_id = $1) OR (src_kind = 'run' AND src_id = $1) \
             ORDER BY created_at, src_kind, dst_kind",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(LineageEdge {
                src_kind: r.try_get("src_kind")?,
                src_id: r.try_get("src_id")?,
                dst_kind: r.try_get("dst_kind")?,
                dst_id: r.try_get("dst_id")?,
                run_id: r.try_get("run_id")?,
            })
        })
        .collect()
    }
}

/// A pipeline registered for REST runs and schedules.
#[derive(Debug, Clone)]
pub struct PipelineRecord {
    pub name: String,
    pub spec: String,
    /// Where the spec's relative paths resolve.
    pub base_dir: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct ScheduleRecord {
    pub id: String,
    pub pipeline: String,
    pub cron: String,
    pub created_at: i64,
}

impl Store {
    pub async fn upsert_pipeline(&self, name: &str, spec: &str, base_dir: &str) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO pipelines (name, spec, base_dir, created_at, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, base_dir = excluded.base_dir, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(spec)
        .bind(base_dir)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.changed(Change::Pipeline { name: name.into() });
        Ok(())
    }

    pub async fn pipeline(&self, name: &str) -> Result<Option<PipelineRecord>> {
        let row = sqlx::query("SELECT name, spec, base_dir, created_at, updated_at FROM pipelines WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(pipeline_from_row).transpose()
    }

    pub async fn list_pipelines(&self) -> Result<Vec<PipelineRecord>> {
        sqlx::query("SELECT name, spec, base_dir, created_at, updated_at FROM pipelines ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(pipeline_from_row)
            .collect()
    }

    pub async fn add_schedule(&self, pipeline: &str, cron: &str) -> Result<ScheduleRecord> {
        let rec = ScheduleRecord {
            id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            pipeline: pipeline.to_string(),
            cron: cron.to_string(),
            created_at: now_ms(),
        };
        sqlx::query("INSERT INTO schedules (id, pipeline, cron, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&rec.id)
            .bind(&rec.pipeline)
            .bind(&rec.cron)
            .bind(rec.created_at)
            .execute(&self.pool)
            .await?;
        Ok(rec)
    }

    pub async fn list_schedules(&self) -> Result<Vec<ScheduleRecord>> {
        sqlx::query("SELECT id, pipeline, cron, created_at FROM schedules ORDER BY created_at")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(ScheduleRecord {
                    id: r.try_get("id")?,
                    pipeline: r.try_get("pipeline")?,
                    cron: r.try_get("cron")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    pub async fn remove_schedule(&self, id: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM schedules WHERE id = $1").bind(id).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(super::StoreError::NotFound(format!("schedule `{id}`")));
        }
        Ok(())
    }

    /// Claim one tick of a schedule. Exactly one caller gets `true` per
    /// (schedule, tick), whichever process it is in: the primary key decides.
    pub async fn claim_tick(&self, schedule_id: &str, tick: i64) -> Result<bool> {
        let done =
            sqlx::query("INSERT INTO schedule_fires (schedule_id, tick, fired_at) VALUES ($1, $2, $3) ON CONFLICT (schedule_id, tick) DO NOTHING")
                .bind(schedule_id)
                .bind(tick)
                .bind(now_ms())
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn set_tick_run(&self, schedule_id: &str, tick: i64, run_id: &str) -> Result<()> {
        sqlx::query("UPDATE schedule_fires SET run_id = $1 WHERE schedule_id = $2 AND tick = $3")
            .bind(run_id)
            .bind(schedule_id)
            .bind(tick)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// (tick, run id) of every fire of a schedule, oldest first.
    pub async fn schedule_fires(&self, schedule_id: &str) -> Result<Vec<(i64, Option<String>)>> {
        sqlx::query("SELECT tick, run_id FROM schedule_fires WHERE schedule_id = $1 ORDER BY tick")
            .bind(schedule_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("tick")?, r.try_get("run_id")?)))
            .collect()
    }
}

fn pipeline_from_row(r: &sqlx::any::AnyRow) -> Result<PipelineRecord> {
    Ok(PipelineRecord {
        name: r.try_get("name")?,
        spec: r.try_get("spec")?,
        base_dir: r.try_get("base_dir")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::both_backends;

    both_backends!(cache_first_writer_wins, |store| {
        let run = store.create_run(crate::NewRun { experiment: "e".into(), name: "r".into(), parent: None, source: "t".into() }).await.unwrap();
        assert_eq!(store.cache_get("k").await.unwrap(), None);
        store.cache_put("k", "{\"a\":1}", &run).await.unwrap();
        store.cache_put("k", "{\"a\":2}", &run).await.unwrap();
        assert_eq!(store.cache_get("k").await.unwrap().as_deref(), Some("{\"a\":1}"));
        let edge =
            LineageEdge { src_kind: "dataset".into(), src_id: "d@1".into(), dst_kind: "run".into(), dst_id: run.clone(), run_id: Some(run.clone()) };
        store.add_lineage(&edge).await.unwrap();
        store.add_lineage(&edge).await.unwrap();
        assert_eq!(store.lineage_of_run(&run).await.unwrap(), vec![edge]);
    });

    both_backends!(a_tick_fires_once, |store| {
        store.upsert_pipeline("p", "name = \"p\"", "/").await.unwrap();
        let s = store.add_schedule("p", "0 2 * * *").await.unwrap();
        assert!(store.claim_tick(&s.id, 1000).await.unwrap());
        assert!(!store.claim_tick(&s.id, 1000).await.unwrap(), "the second claimant of a tick loses");
        assert!(store.claim_tick(&s.id, 2000).await.unwrap());
        assert_eq!(store.schedule_fires(&s.id).await.unwrap().len(), 2);
        store.remove_schedule(&s.id).await.unwrap();
        assert!(store.list_schedules().await.unwrap().is_empty());
    });
}
