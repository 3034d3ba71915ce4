//! The job queue workers share: claimed with a lease, kept alive by
//! heartbeats, claimed again by another worker when the lease runs out.

use super::{Backend, Change, Result, Store, now_ms};
pub use kiln_types::status::JobStatus;
use sqlx::{AssertSqlSafe, Row};

#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub kind: String,
    pub payload: String,
    pub status: JobStatus,
    pub run_id: Option<String>,
    pub lease_owner: Option<String>,
    pub attempts: i64,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, kind, payload, status, run_id, lease_owner, attempts, error, created_at, updated_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<Job> {
    Ok(Job {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        payload: r.try_get("payload")?,
        status: super::runs::decode(r, "status", JobStatus::parse)?,
        run_id: r.try_get("run_id")?,
        lease_owner: r.try_get("lease_owner")?,
        attempts: r.try_get("attempts")?,
        error: r.try_get("error")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

impl Store {
    pub async fn enqueue_job(&self, kind: &str, payload: &str, run_id: Option<&str>) -> Result<String> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let now = now_ms();
        sqlx::query("INSERT INTO jobs (id, kind, payload, status, run_id, created_at, updated_at) VALUES ($1, $2, $3, 'queued', $4, $5, $6)")
            .bind(&id)
            .bind(kind)
            .bind(payload)
            .bind(run_id)
            .bind(now)
            .bind(now)
            .execute(&self.pool)
            .await?;
        self.changed(Change::Job { id: id.clone() });
        Ok(id)
    }

    /// Take the oldest queued job, or a running one whose lease expired (its
    /// worker died), and lease it to `worker` for `lease_ms`. On PostgreSQL
    /// `FOR UPDATE SKIP LOCKED` lets many workers claim at once without
    /// waiting on each other; SQLite has one writer, so the single UPDATE is
    /// atomic as it is.
    pub async fn claim_job(&self, worker: &str, lease_ms: i64) -> Result<Option<Job>> {
        let now = now_ms();
        let lock = if self.backend == Backend::Postgres { "FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE jobs SET status = 'running', lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1, updated_at = $3 \
             WHERE id = (SELECT id FROM jobs WHERE status = 'queued' OR (status = 'running' AND lease_expires_at < $3) \
                         ORDER BY created_at, id LIMIT 1 {lock}) \
             RETURNING {COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql)).bind(worker).bind(now + lease_ms).bind(now).fetch_optional(&self.pool).await?;
        let job = row.as_ref().map(from_row).transpose()?;
        if let Some(j) = &job {
            self.changed(Change::Job { id: j.id.clone() });
        }
        Ok(job)
    }

    /// Extend the lease. `false` means the job is no longer this worker's to
    /// run: cancelled, or claimed by another worker after the lease ran out.
    pub async fn heartbeat_job(&self, id: &str, worker: &str, lease_ms: i64) -> Result<bool> {
        let now = now_ms();
        let done = sqlx::query("UPDATE jobs SET lease_expires_at = $1, updated_at = $2 WHERE id = $3 AND lease_owner = $4 AND status = 'running'")
            .bind(now + lease_ms)
            .bind(now)
            .bind(id)
            .bind(worker)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Record the outcome, if the job is still this worker's.
    pub async fn finish_job(&self, id: &str, worker: &str, status: JobStatus, error: Option<&str>) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET status = $1, error = $2, lease_expires_at = NULL, updated_at = $3 \
             WHERE id = $4 AND lease_owner = $5 AND status = 'running'",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(now_ms())
        .bind(id)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            self.changed(Change::Job { id: id.into() });
        }
        Ok(done.rows_affected() == 1)
    }

    /// Cancel a queued or running job; `false` if it had already ended.
    pub async fn cancel_job(&self, id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'cancelled', lease_expires_at = NULL, updated_at = $1 WHERE id = $2 AND status IN ('queued', 'running')",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            self.changed(Change::Job { id: id.into() });
        }
        Ok(done.rows_affected() == 1)
    }

    pub async fn job(&self, id: &str) -> Result<Option<Job>> {
        let sql = AssertSqlSafe(format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"));
        sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?.as_ref().map(from_row).transpose()
    }

    pub async fn job_for_run(&self, run_id: &str) -> Result<Option<Job>> {
        let sql = AssertSqlSafe(format!("SELECT {COLUMNS} FROM jobs WHERE run_id = $1 ORDER BY created_at DESC LIMIT 1"));
        sqlx::query(sql).bind(run_id).fetch_optional(&self.pool).await?.as_ref().map(from_row).transpose()
    }

    pub async fn jobs_with_status(&self, status: JobStatus) -> Result<Vec<Job>> {
        let sql = AssertSqlSafe(format!("SELECT {COLUMNS} FROM jobs WHERE status = $1 ORDER BY created_at"));
        sqlx::query(sql).bind(status.as_str()).fetch_all(&self.pool).await?.iter().map(from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::JobStatus;
    use crate::testing::both_backends;

    both_backends!(claim_heartbeat_expire_reclaim, |store| {
        let id = store.enqueue_job("noop", "{}", None).await.unwrap();
        let job = store.claim_job("w1", 60_000).await.unwrap().expect("a queued job is claimed");
        assert_eq!((job.id.as_str(), job.status.as_str(), job.attempts), (id.as_str(), "running", 1));
        assert!(store.claim_job("w2", 60_000).await.unwrap().is_none(), "a leased job is not claimed twice");
        assert!(store.heartbeat_job(&id, "w1", 60_000).await.unwrap());
        assert!(!store.heartbeat_job(&id, "w2", 60_000).await.unwrap(), "only the owner renews");
        // The owner goes silent: an expired lease is claimed by another worker.
        assert!(store.heartbeat_job(&id, "w1", -1).await.unwrap());
        let again = store.claim_job("w2", 60_000).await.unwrap().expect("expired lease is reclaimed");
        assert_eq!((again.lease_owner.as_deref(), again.attempts), (Some("w2"), 2));
        assert!(!store.heartbeat_job(&id, "w1", 60_000).await.unwrap(), "the old owner learns it lost the job");
        assert!(!store.finish_job(&id, "w1", JobStatus::Succeeded, None).await.unwrap());
        assert!(store.finish_job(&id, "w2", JobStatus::Succeeded, None).await.unwrap());
        assert_eq!(store.job(&id).await.unwrap().unwrap().status, JobStatus::Succeeded);
        assert!(!store.cancel_job(&id).await.unwrap(), "a finished job cannot be cancelled");
    });

    both_backends!(concurrent_claims_take_distinct_jobs, |store| {
        for _ in 0..20 {
            store.enqueue_job("noop", "{}", None).await.unwrap();
        }
        let mut handles = Vec::new();
        for w in 0..4 {
            let s = store.clone();
            handles.push(tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(j) = s.claim_job(&format!("w{w}"), 60_000).await.unwrap() {
                    got.push(j.id);
                }
                got
            }));
        }
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.unwrap());
        }
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!((n, all.len()), (20, 20), "every job claimed exactly once");
    });
}
