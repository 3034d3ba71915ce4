//! The stage cache and lineage edges.

use super::{Result, Store, now_ms};
use serde::Serialize;
use sqlx::Row;

#[derive(Debug, Clone, Serialize, PartialEq)]
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
        sqlx::query(
            "INSERT INTO stage_cache (cache_key, outputs, run_id, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (cache_key) DO NOTHING",
        )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::both_backends;

    both_backends!(cache_first_writer_wins, |store| {
        let run = store
            .create_run(crate::store::NewRun { experiment: "e".into(), name: "r".into(), parent: None, source: "t".into() })
            .await
            .unwrap();
        assert_eq!(store.cache_get("k").await.unwrap(), None);
        store.cache_put("k", "{\"a\":1}", &run).await.unwrap();
        store.cache_put("k", "{\"a\":2}", &run).await.unwrap();
        assert_eq!(store.cache_get("k").await.unwrap().as_deref(), Some("{\"a\":1}"));
        let edge = LineageEdge {
            src_kind: "dataset".into(),
            src_id: "d@1".into(),
            dst_kind: "run".into(),
            dst_id: run.clone(),
            run_id: Some(run.clone()),
        };
        store.add_lineage(&edge).await.unwrap();
        store.add_lineage(&edge).await.unwrap();
        assert_eq!(store.lineage_of_run(&run).await.unwrap(), vec![edge]);
    });
}
