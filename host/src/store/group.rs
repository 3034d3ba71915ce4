//! Group commit for tracking writes.
//!
//! SQLite has one writer. With a lock per call, a thousand clients logging
//! metrics queue on `busy_timeout` and the unlucky ones time out ("database
//! is locked"). Instead, every metric/param/tag write is queued to one
//! writer task, which applies all the writes waiting at that moment in one
//! transaction and then acknowledges each caller. Each write runs inside
//! its own savepoint, so a bad one (an unknown run, a param that would
//! change) fails alone and the rest of its group still commits. A caller
//! hears back only after the commit: an acknowledged write is durable
//! (WAL, `synchronous = NORMAL`: it survives the process being killed).
//!
//! PostgreSQL takes the same path; one transaction per group is cheaper
//! there too.

use super::runs::MetricPoint;
use super::{Backend, Result, StoreError};
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Connection, Row};
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};

/// One caller's write: applied all or nothing.
#[derive(Debug, Default)]
pub(crate) struct TrackingWrite {
    pub run_id: String,
    pub metrics: Vec<MetricPoint>,
    pub params: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
}

struct Pending {
    write: TrackingWrite,
    done: oneshot::Sender<Result<()>>,
}

/// The queue in front of the writer task.
#[derive(Clone)]
pub(crate) struct GroupWriter {
    queue: mpsc::Sender<Pending>,
}

/// Writes per transaction: enough to amortise the commit, small enough
/// that one transaction does not hold the lock for long.
const MAX_GROUP_WRITES: usize = 512;
const MAX_GROUP_METRICS: usize = 50_000;

impl GroupWriter {
    pub(crate) fn spawn(pool: AnyPool, backend: Backend) -> Self {
        // Bounded: beyond this many waiting writes, callers wait to enqueue
        // (backpressure) instead of growing memory without limit.
        let (queue, rx) = mpsc::channel(16_384);
        tokio::spawn(writer(pool, backend, rx));
        GroupWriter { queue }
    }

    pub(crate) async fn write(&self, write: TrackingWrite) -> Result<()> {
        let (done, ack) = oneshot::channel();
        let stopped = || StoreError::Conflict("the store's writer has stopped (the server is shutting down)".into());
        self.queue.send(Pending { write, done }).await.map_err(|_| stopped())?;
        ack.await.map_err(|_| stopped())?
    }
}

async fn writer(pool: AnyPool, backend: Backend, mut rx: mpsc::Receiver<Pending>) {
    let mut group = Vec::with_capacity(MAX_GROUP_WRITES);
    while let Some(first) = rx.recv().await {
        let mut metrics = first.write.metrics.len();
        group.push(first);
        while group.len() < MAX_GROUP_WRITES && metrics < MAX_GROUP_METRICS {
            match rx.try_recv() {
                Ok(p) => {
                    metrics += p.write.metrics.len();
                    group.push(p);
                }
                Err(_) => break,
            }
        }
        let results = commit_group(&pool, backend, &group).await;
        match results {
            Ok(results) => {
                for (p, r) in group.drain(..).zip(results) {
                    let _ = p.done.send(r);
                }
            }
            Err(e) => {
                tracing::warn!(writes = group.len(), "group commit failed: {e}");
                let message = e.to_string();
                for p in group.drain(..) {
                    let _ = p.done.send(Err(StoreError::Conflict(format!("writing to the database failed: {message}"))));
                }
            }
        }
    }
}

/// Apply a group in one transaction; the outer error means nothing of the
/// group was committed, the inner results are per write.
async fn commit_group(pool: &AnyPool, backend: Backend, group: &[Pending]) -> Result<Vec<Result<()>>> {
    let mut conn = pool.acquire().await?;
    let mut tx = match backend {
        Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => conn.begin().await?,
    };
    let mut results = Vec::with_capacity(group.len());
    if group.len() == 1 {
        // Nothing to isolate from: skip the savepoint.
        results.push(apply(&mut tx, &group[0].write).await);
        if results[0].is_err() {
            tx.rollback().await?;
            return Ok(results);
        }
    } else {
        for p in group {
            let mut savepoint = tx.begin().await?;
            match apply(&mut savepoint, &p.write).await {
                Ok(()) => {
                    savepoint.commit().await?;
                    results.push(Ok(()));
                }
                Err(e) => {
                    savepoint.rollback().await?;
                    results.push(Err(e));
                }
            }
        }
    }
    tx.commit().await?;
    Ok(results)
}

async fn apply(conn: &mut AnyConnection, w: &TrackingWrite) -> Result<()> {
    insert_params(conn, &w.run_id, &w.params).await?;
    insert_metrics(conn, &w.run_id, &w.metrics).await?;
    for (key, value) in &w.tags {
        sqlx::query(
            "INSERT INTO tags (run_id, key, value) VALUES ($1, $2, $3) ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
        )
        .bind(&w.run_id)
        .bind(key)
        .bind(value)
        .execute(&mut *conn)
        .await
        .map_err(|e| unknown_run(e, &w.run_id))?;
    }
    Ok(())
}

/// Params are immutable once logged (as in MLflow): logging the same value
/// again is fine, a different value is a conflict.
async fn insert_params(conn: &mut AnyConnection, run_id: &str, params: &[(String, String)]) -> Result<()> {
    for (key, value) in params {
        let existing = sqlx::query("SELECT value FROM params WHERE run_id = $1 AND key = $2")
            .bind(run_id)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
        match existing {
            Some(row) => {
                let old: String = row.try_get("value")?;
                if &old != value {
                    return Err(StoreError::Conflict(format!(
                        "param `{key}` of run {run_id} is already `{old}`; params cannot change (tried `{value}`)"
                    )));
                }
            }
            None => {
                sqlx::query("INSERT INTO params (run_id, key, value) VALUES ($1, $2, $3)")
                    .bind(run_id)
                    .bind(key)
                    .bind(value)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| unknown_run(e, run_id))?;
            }
        }
    }
    Ok(())
}

/// Rows per INSERT statement, largest first. A fixed set of statement
/// shapes keeps sqlx's prepared-statement cache warm; 128 rows × 6 binds
/// stays far below either database's bind limit.
const CHUNKS: [usize; 8] = [128, 64, 32, 16, 8, 4, 2, 1];

fn insert_sql(table: &str, rows: usize, upsert: bool) -> String {
    let mut sql = format!("INSERT INTO {table} (run_id, key, step, timestamp, value, is_nan) VALUES ");
    for r in 0..rows {
        let b = r * 6;
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("(${}, ${}, ${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4, b + 5, b + 6));
    }
    if upsert {
        // The latest point per key wins: highest step, then newest
        // timestamp, then the later write.
        sql.push_str(
            " ON CONFLICT (run_id, key) DO UPDATE SET step = excluded.step, timestamp = excluded.timestamp, \
             value = excluded.value, is_nan = excluded.is_nan \
             WHERE excluded.step > latest_metrics.step \
                OR (excluded.step = latest_metrics.step AND excluded.timestamp >= latest_metrics.timestamp)",
        );
    }
    sql
}

async fn insert_rows(conn: &mut AnyConnection, table: &str, upsert: bool, run_id: &str, points: &[&MetricPoint]) -> Result<()> {
    let mut rest = points;
    while !rest.is_empty() {
        let n = CHUNKS.into_iter().find(|&c| c <= rest.len()).unwrap_or(1);
        let (chunk, tail) = rest.split_at(n);
        let sql = insert_sql(table, n, upsert);
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for p in chunk {
            // SQLite turns NaN into NULL, so NaN is a flag beside the value
            // (readers and search look at the flag first). The value is 0,
            // not NULL: sqlx's Any driver mis-encodes a NULL float for
            // PostgreSQL in a multi-row insert ("incorrect binary data
            // format").
            let (value, is_nan) = if p.value.is_nan() { (0.0, 1i64) } else { (p.value, 0i64) };
            q = q.bind(run_id).bind(&p.key).bind(p.step).bind(p.timestamp).bind(value).bind(is_nan);
        }
        q.execute(&mut *conn).await.map_err(|e| unknown_run(e, run_id))?;
        rest = tail;
    }
    Ok(())
}

/// Append the points to the history and keep `latest_metrics` current: only
/// the latest point of each key in this write needs the upsert.
async fn insert_metrics(conn: &mut AnyConnection, run_id: &str, points: &[MetricPoint]) -> Result<()> {
    if points.is_empty() {
        return Ok(());
    }
    let all: Vec<&MetricPoint> = points.iter().collect();
    insert_rows(conn, "metrics", false, run_id, &all).await?;
    let mut latest: HashMap<&str, &MetricPoint> = HashMap::new();
    for p in points {
        let slot = latest.entry(p.key.as_str()).or_insert(p);
        if (p.step, p.timestamp) >= (slot.step, slot.timestamp) {
            *slot = p;
        }
    }
    let mut latest: Vec<&MetricPoint> = latest.into_values().collect();
    // A stable order: two groups upserting the same keys lock rows alike.
    latest.sort_by(|a, b| a.key.cmp(&b.key));
    insert_rows(conn, "latest_metrics", true, run_id, &latest).await
}

/// A foreign-key failure on these tables means the run does not exist.
fn unknown_run(e: sqlx::Error, run_id: &str) -> StoreError {
    let fk = e.as_database_error().is_some_and(|d| d.is_foreign_key_violation() || d.message().contains("FOREIGN KEY"));
    if fk { StoreError::NotFound(format!("run `{run_id}`")) } else { StoreError::Db(e) }
}

#[cfg(test)]
mod tests {
    use super::super::testing::both_backends;
    use crate::store::{MetricPoint, NewRun, StoreError};

    both_backends!(concurrent_writes_share_commits_and_fail_alone, |store| {
        let run = store.create_run(NewRun { experiment: "e".into(), name: "r".into(), parent: None, source: "t".into() }).await.unwrap();
        store.log_params(&run, &[("lr".into(), "0.1".into())]).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..300i64 {
            let (store, run) = (store.clone(), run.clone());
            tasks.push(tokio::spawn(async move {
                match i % 100 {
                    // An unknown run and a param that would change fail alone.
                    7 => store.log_metrics("no-such-run", &[point("x", i)]).await,
                    13 => store.log_batch(&run, &[point("doomed", i)], &[("lr".into(), "0.2".into())], &[]).await,
                    _ => store.log_batch(&run, &[point(&format!("k{}", i % 5), i), point("all", i)], &[], &[(format!("t{i}"), "v".into())]).await,
                }
            }));
        }
        let mut ok = 0;
        for (i, t) in tasks.into_iter().enumerate() {
            match (i % 100, t.await.unwrap()) {
                (7, Err(StoreError::NotFound(m))) => assert!(m.contains("no-such-run"), "{m}"),
                (13, Err(StoreError::Conflict(m))) => assert!(m.contains("lr"), "{m}"),
                (7 | 13, r) => panic!("write {i} should have failed: {r:?}"),
                (_, r) => {
                    r.unwrap();
                    ok += 1;
                }
            }
        }
        assert_eq!(ok, 294);
        let all = store.metric_history(&run, "all").await.unwrap();
        assert_eq!(all.len(), 294, "every acknowledged point is stored once");
        assert!(store.metric_history(&run, "doomed").await.unwrap().is_empty(), "a failed batch leaves nothing behind");
        let detail = store.get_run(&run).await.unwrap();
        assert_eq!(detail.summary.params["lr"], "0.1");
        assert_eq!(detail.summary.metrics["all"], 299.0, "latest is the highest step");
        assert_eq!(detail.tags.len(), 294);
    });

    both_backends!(a_large_batch_keeps_history_and_latest, |store| {
        let run = store.create_run(NewRun { experiment: "e".into(), name: "r".into(), parent: None, source: "t".into() }).await.unwrap();
        // 1,000 points in shuffled step order, two keys, infinities and NaN.
        let mut points: Vec<MetricPoint> = (0..1000i64).map(|i| point(if i % 2 == 0 { "a" } else { "b" }, (i * 389) % 1000)).collect();
        points[10].value = f64::INFINITY;
        points[11].value = f64::NEG_INFINITY;
        points[12].value = f64::NAN;
        store.log_metrics(&run, &points).await.unwrap();
        let a = store.metric_history(&run, "a").await.unwrap();
        assert_eq!(a.len(), 500);
        assert!(a.windows(2).all(|w| w[0].step <= w[1].step));
        assert!(a.iter().any(|p| p.value == f64::INFINITY) && a.iter().any(|p| p.value.is_nan()));
        assert!(store.metric_history(&run, "b").await.unwrap().iter().any(|p| p.value == f64::NEG_INFINITY));
        let latest = store.latest_metrics(&run).await.unwrap();
        let max = |k: &str| points.iter().filter(|p| p.key == k).map(|p| p.step).max().unwrap();
        for m in &latest {
            assert_eq!(m.step, max(&m.key), "{}", m.key);
            assert_eq!(m.value, m.step as f64);
        }
    });

    fn point(key: &str, step: i64) -> MetricPoint {
        MetricPoint { key: key.into(), value: step as f64, step, timestamp: 1 }
    }
}
