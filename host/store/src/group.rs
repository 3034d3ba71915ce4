//! Group commit for tracking writes.
//!
//! SQLite has one writer. With a lock per call, a thousand clients logging
//! metrics queue on `busy_timeout` and the unlucky ones time out ("database
//! is locked"). Instead, every metric/param/tag write is queued to one
//! writer task, which applies all the writes waiting at that moment in one
//! transaction and then acknowledges each caller. Each write is guarded
//! (its run must exist and be active, its params must not change) and runs
//! inside its own savepoint, so a bad one fails alone and the rest of its
//! group still commits. A caller
//! hears back only after the commit: an acknowledged write is durable
//! (WAL, `synchronous = NORMAL`: it survives the process being killed).
//!
//! PostgreSQL takes the same path; one transaction per group is cheaper
//! there too.

use super::catalog::Catalog;
use super::runs::MetricPoint;
use super::{Backend, Result, StoreError};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Connection, Row};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use tokio::sync::{mpsc, oneshot};

/// One caller's write: applied all or nothing.
#[derive(Debug, Default)]
pub(crate) struct TrackingWrite {
    pub run_id: String,
    pub metrics: Vec<MetricPoint>,
    pub params: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
}

impl TrackingWrite {
    /// The latest point of each metric key in this write, by key: the
    /// highest (step, timestamp), the later one on a tie. What the write
    /// leaves in `latest_metrics` (where an older stored point loses too).
    pub(crate) fn latest(&self) -> Vec<&MetricPoint> {
        let mut latest: HashMap<&str, &MetricPoint> = HashMap::new();
        for p in &self.metrics {
            let slot = latest.entry(p.key.as_str()).or_insert(p);
            if (p.step, p.timestamp) >= (slot.step, slot.timestamp) {
                *slot = p;
            }
        }
        let mut latest: Vec<&MetricPoint> = latest.into_values().collect();
        // A stable order: two groups upserting the same keys lock rows alike.
        latest.sort_by(|a, b| a.key.cmp(&b.key));
        latest
    }
}

struct Pending {
    write: TrackingWrite,
    done: oneshot::Sender<Result<()>>,
}

enum Job {
    Write(Pending),
    /// Where the writer's connection stands, for the run catalog.
    Probe(oneshot::Sender<Result<Stamp>>),
}

/// The writer's view of the database: which connection (a new one after
/// a failure), its `data_version` (which changes when any *other*
/// connection commits: the writer's own commits leave it alone, and reach
/// the run catalog as patches), and how many patches it has sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub epoch: u64,
    pub version: i64,
    pub patches: u64,
}

/// The queue in front of the writer task.
#[derive(Clone)]
pub(crate) struct GroupWriter {
    queue: mpsc::Sender<Job>,
}

/// Writes per transaction: enough to amortise the commit, small enough
/// that one transaction does not hold the lock for long.
const MAX_GROUP_WRITES: usize = 512;
const MAX_GROUP_METRICS: usize = 50_000;

impl GroupWriter {
    pub(crate) fn spawn(pool: AnyPool, backend: Backend, catalog: Arc<Catalog>) -> Self {
        // Bounded: beyond this many waiting writes, callers wait to enqueue
        // (backpressure) instead of growing memory without limit.
        let (queue, rx) = mpsc::channel(16_384);
        tokio::spawn(writer(pool, backend, catalog, rx));
        GroupWriter { queue }
    }

    pub(crate) async fn write(&self, write: TrackingWrite) -> Result<()> {
        let (done, ack) = oneshot::channel();
        self.queue.send(Job::Write(Pending { write, done })).await.map_err(|_| stopped())?;
        ack.await.map_err(|_| stopped())?
    }

    /// The writer's stamp, taken after every write queued before this call
    /// has been committed and patched into the catalog.
    pub(crate) async fn probe(&self) -> Result<Stamp> {
        let (done, answer) = oneshot::channel();
        self.queue.send(Job::Probe(done)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the store's writer has stopped (the server is shutting down)".into())
}

async fn writer(pool: AnyPool, backend: Backend, catalog: Arc<Catalog>, mut rx: mpsc::Receiver<Job>) {
    let mut group = Vec::with_capacity(MAX_GROUP_WRITES);
    let mut probes = Vec::new();
    let mut conn: Option<sqlx::pool::PoolConnection<sqlx::Any>> = None;
    let mut epoch = 0u64;
    while let Some(first) = rx.recv().await {
        // Probes are answered after this group: they see its writes.
        let take = |job: Job, group: &mut Vec<Pending>, probes: &mut Vec<_>| match job {
            Job::Write(p) => {
                let n = p.write.metrics.len();
                group.push(p);
                n
            }
            Job::Probe(p) => {
                probes.push(p);
                0
            }
        };
        let mut metrics = take(first, &mut group, &mut probes);
        while group.len() < MAX_GROUP_WRITES && metrics < MAX_GROUP_METRICS {
            match rx.try_recv() {
                Ok(job) => metrics += take(job, &mut group, &mut probes),
                Err(_) => break,
            }
        }
        // The writer keeps one connection (its prepared statements stay
        // warm); one that failed mid-transaction is closed, not reused.
        if conn.is_none() {
            conn = match pool.acquire().await {
                Ok(c) => {
                    epoch += 1;
                    Some(c)
                }
                Err(e) => {
                    let message = e.to_string();
                    for p in group.drain(..) {
                        let _ = p.done.send(Err(StoreError::Unavailable(format!("writing to the database failed: {message}"))));
                    }
                    for p in probes.drain(..) {
                        let _ = p.send(Err(StoreError::Unavailable(format!("the writer has no connection: {message}"))));
                    }
                    continue;
                }
            };
        }
        let results = if group.is_empty() { Ok(Vec::new()) } else { commit_group(conn.as_mut().expect("acquired above"), backend, &group).await };
        if results.is_err()
            && let Some(c) = conn.take()
        {
            let _ = c.detach().close().await;
        }
        match results {
            Ok(results) => {
                // The catalog hears of the writes before their callers do:
                // a client that searches after its write sees it.
                if backend == Backend::Sqlite {
                    catalog.applied(group.iter().zip(&results).filter(|(_, r)| r.is_ok()).map(|(p, _)| &p.write));
                }
                for (p, r) in group.drain(..).zip(results) {
                    let _ = p.done.send(r);
                }
            }
            Err(e) => {
                tracing::warn!(writes = group.len(), "group commit failed: {e}");
                let message = e.to_string();
                for p in group.drain(..) {
                    let _ = p.done.send(Err(StoreError::Unavailable(format!("writing to the database failed: {message}"))));
                }
            }
        }
        for p in probes.drain(..) {
            let stamp = match conn.as_mut() {
                Some(c) => match sqlx::query("PRAGMA data_version").fetch_one(&mut **c).await {
                    Ok(row) => row.try_get::<i64, _>(0).map(|version| Stamp { epoch, version, patches: catalog.patches() }).map_err(StoreError::from),
                    Err(e) => Err(e.into()),
                },
                None => Err(StoreError::Unavailable("the writer's connection failed".into())),
            };
            let _ = p.send(stamp);
        }
    }
}

/// Apply a group in one transaction; the outer error means nothing of the
/// group was committed, the inner results are per write.
///
/// On SQLite each write is one round trip to sqlx's connection thread:
/// its statements travel as one multi-statement query (sqlx binds `$n`
/// by number in every statement of it), and a write of its own group
/// carries `BEGIN IMMEDIATE` and `COMMIT` too. Those round trips, not
/// SQLite, were most of a single `log-metric` call's time.
async fn commit_group(conn: &mut AnyConnection, backend: Backend, group: &[Pending]) -> Result<Vec<Result<()>>> {
    let writes: Vec<Encoded> = group.iter().map(|p| Encoded::new(&p.write, backend)).collect();
    match backend {
        Backend::Sqlite if writes.len() == 1 => {
            let w = &writes[0];
            if let Err(e) = w.check() {
                return Ok(vec![Err(e)]);
            }
            match sqlx::query(AssertSqlSafe(SQLITE_SOLE.as_str())).bind_all(w).fetch_all(&mut *conn).await {
                Ok(rows) => Ok(vec![w.verdict(rows.first())]),
                Err(e) => {
                    rollback(conn, "ROLLBACK").await;
                    Err(e.into())
                }
            }
        }
        Backend::Sqlite => {
            sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await?;
            let mut results = Vec::with_capacity(writes.len());
            for w in &writes {
                if let Err(e) = w.check() {
                    results.push(Err(e));
                    continue;
                }
                match sqlx::query(AssertSqlSafe(SQLITE_MEMBER.as_str())).bind_all(w).fetch_all(&mut *conn).await {
                    Ok(rows) => results.push(w.verdict(rows.first())),
                    Err(e) => {
                        // Undo what of this write got in; the rest of the
                        // group stands.
                        rollback(conn, "ROLLBACK TO w; RELEASE w").await;
                        results.push(Err(e.into()));
                    }
                }
            }
            if let Err(e) = sqlx::raw_sql("COMMIT").execute(&mut *conn).await {
                rollback(conn, "ROLLBACK").await;
                return Err(e.into());
            }
            Ok(results)
        }
        Backend::Postgres => {
            // No multi-statement queries with binds on PostgreSQL: the same
            // statements one by one, each write in a savepoint.
            let mut tx = conn.begin().await?;
            let mut results = Vec::with_capacity(writes.len());
            for w in &writes {
                if let Err(e) = w.check() {
                    results.push(Err(e));
                    continue;
                }
                let mut savepoint = tx.begin().await?;
                match apply_postgres(&mut savepoint, w).await {
                    Ok(Ok(())) => {
                        savepoint.commit().await?;
                        results.push(Ok(()));
                    }
                    Ok(Err(e)) | Err(e) => {
                        savepoint.rollback().await?;
                        results.push(Err(e));
                    }
                }
            }
            tx.commit().await?;
            Ok(results)
        }
    }
}

async fn rollback(conn: &mut AnyConnection, sql: &'static str) {
    if let Err(e) = sqlx::raw_sql(sql).execute(&mut *conn).await {
        tracing::warn!("{sql} after a failed write: {e}");
    }
}

async fn apply_postgres(conn: &mut AnyConnection, w: &Encoded<'_>) -> Result<Result<()>> {
    let rows = sqlx::query(AssertSqlSafe(statements(Backend::Postgres)[0].as_str())).bind_all(w).fetch_all(&mut *conn).await?;
    let verdict = w.verdict(rows.first());
    if verdict.is_err() {
        return Ok(verdict);
    }
    for (sql, needed) in statements(Backend::Postgres)[1..].iter().zip([
        !w.write.params.is_empty(),
        !w.write.metrics.is_empty(),
        !w.write.metrics.is_empty(),
        !w.write.tags.is_empty(),
    ]) {
        if needed {
            sqlx::query(AssertSqlSafe(sql.as_str())).bind_all(w).execute(&mut *conn).await?;
        }
    }
    Ok(Ok(()))
}

/// One write as bind values: the run, its points packed into one blob,
/// and each other kind of row as one JSON array that the database unpacks
/// itself (`json_each` on SQLite, `json_array_elements` on PostgreSQL).
/// One bind per kind, whatever the batch size, instead of six per point.
struct Encoded<'a> {
    write: &'a TrackingWrite,
    /// Every point, packed, grouped by key (see `history.rs`)…
    packed: Vec<u8>,
    /// …and where each key's chunk lies in it: `[[key, points, from, bytes], …]`
    /// (`from` counts from 1, as SQL's substring does).
    chunks: String,
    /// `[[key, step, timestamp, value, is_nan], …]`, the latest point of
    /// each key in this write.
    latest: String,
    /// `[[key, value], …]`, the last value of each key.
    tags: String,
    params: String,
}

impl<'a> Encoded<'a> {
    fn new(write: &'a TrackingWrite, backend: Backend) -> Self {
        let latest = write.latest();
        // PostgreSQL refuses an upsert that touches a row twice: one tag per key.
        let mut tags: Vec<&(String, String)> = Vec::with_capacity(write.tags.len());
        for t in write.tags.iter().rev() {
            if !tags.iter().any(|s| s.0 == t.0) {
                tags.push(t);
            }
        }
        tags.reverse();
        // One chunk per key (keys in the order they first came), its
        // points in the order they came.
        let mut slot: HashMap<&str, usize> = HashMap::new();
        let mut keys: Vec<(&str, Vec<&MetricPoint>)> = Vec::new();
        for p in &write.metrics {
            let i = *slot.entry(p.key.as_str()).or_insert_with(|| {
                keys.push((p.key.as_str(), Vec::new()));
                keys.len() - 1
            });
            keys[i].1.push(p);
        }
        let mut packed = Vec::with_capacity(write.metrics.len() * 24);
        let mut chunks = String::from("[");
        for (i, (key, points)) in keys.iter().enumerate() {
            let from = packed.len();
            super::history::pack(points.iter().copied(), &mut packed);
            if i > 0 {
                chunks.push(',');
            }
            chunks.push('[');
            push_json_str(&mut chunks, key);
            chunks.push_str(&format!(",{},{},{}]", points.len(), from + 1, packed.len() - from));
        }
        chunks.push(']');
        Encoded {
            write,
            packed,
            chunks,
            latest: points_json(latest.into_iter(), backend),
            tags: pairs_json(tags.into_iter()),
            params: pairs_json(write.params.iter()),
        }
    }

    /// What can be refused before the database is asked: one param key
    /// given two values.
    fn check(&self) -> Result<()> {
        let params = &self.write.params;
        for (i, (key, value)) in params.iter().enumerate() {
            if let Some((_, other)) = params[..i].iter().find(|(k, v)| k == key && v != value) {
                return Err(StoreError::Conflict(format!(
                    "param `{key}` is given twice in one write (`{other}` and `{value}`); params cannot change"
                )));
            }
        }
        Ok(())
    }

    /// The write's outcome from the first statement's row: the run's
    /// lifecycle stage (none: no such run) and the first param that would
    /// change. Either one means the guarded inserts wrote nothing.
    fn verdict(&self, report: Option<&AnyRow>) -> Result<()> {
        let run = &self.write.run_id;
        let Some(row) = report else {
            return Err(StoreError::Db(sqlx::Error::Protocol("the write's report row is missing".into())));
        };
        let stage: Option<String> = row.try_get(0)?;
        match stage.as_deref() {
            None => return Err(StoreError::NotFound(format!("run `{run}`"))),
            Some("active") => {}
            Some(stage) => return Err(StoreError::RunNotActive { run: run.clone(), stage: stage.to_string() }),
        }
        let key: Option<String> = row.try_get(1)?;
        if let Some(key) = key {
            let (old, new): (String, String) = (row.try_get(2)?, row.try_get(3)?);
            return Err(StoreError::Conflict(format!("param `{key}` of run {run} is already `{old}`; params cannot change (tried `{new}`)")));
        }
        Ok(())
    }
}

trait BindAll<'q> {
    fn bind_all(self, w: &'q Encoded<'q>) -> Self;
}

impl<'q> BindAll<'q> for sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    fn bind_all(self, w: &'q Encoded<'q>) -> Self {
        self.bind(w.write.run_id.as_str())
            .bind(w.packed.as_slice())
            .bind(w.latest.as_str())
            .bind(w.tags.as_str())
            .bind(w.params.as_str())
            .bind(w.chunks.as_str())
    }
}

/// A point's value for the database to read back as a double: JSON has no
/// NaN (a flag beside the value says it; the value is 0, not NULL: sqlx's
/// Any driver mis-encodes a NULL float for PostgreSQL) nor infinities
/// (SQLite reads an overflowing 1e999 as infinity, PostgreSQL's float8
/// cast reads the string "Infinity").
fn points_json<'p>(points: impl Iterator<Item = &'p MetricPoint>, backend: Backend) -> String {
    let mut out = String::from("[");
    for (i, p) in points.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        push_json_str(&mut out, &p.key);
        let (value, is_nan) = if p.value.is_nan() { (0.0, 1) } else { (p.value, 0) };
        let value = match (value.is_finite(), value > 0.0, backend) {
            (true, ..) => serde_json::to_string(&value).expect("a finite double serialises"),
            (false, true, Backend::Sqlite) => "1e999".into(),
            (false, false, Backend::Sqlite) => "-1e999".into(),
            (false, true, Backend::Postgres) => "\"Infinity\"".into(),
            (false, false, Backend::Postgres) => "\"-Infinity\"".into(),
        };
        out.push_str(&format!(",{},{},{value},{is_nan}]", p.step, p.timestamp));
    }
    out.push(']');
    out
}

fn pairs_json<'p>(pairs: impl Iterator<Item = &'p (String, String)>) -> String {
    let mut out = String::from("[");
    for (i, (k, v)) in pairs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        push_json_str(&mut out, k);
        out.push(',');
        push_json_str(&mut out, v);
        out.push(']');
    }
    out.push(']');
    out
}

fn push_json_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a string serialises"));
}

/// The statements of one write, in order: the report (run stage, first
/// conflicting param), then params, metric history, latest metrics and
/// tags, each guarded so that a refused write inserts nothing.
/// Binds: $1 run, $2 packed points, $3 latest points, $4 tags, $5 params,
/// $6 where each key's points lie in $2.
fn statements(backend: Backend) -> &'static [String; 5] {
    static SQLITE: LazyLock<[String; 5]> = LazyLock::new(|| build_statements(Backend::Sqlite));
    static POSTGRES: LazyLock<[String; 5]> = LazyLock::new(|| build_statements(Backend::Postgres));
    match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
    }
}

fn build_statements(backend: Backend) -> [String; 5] {
    let each = |n: u8| match backend {
        Backend::Sqlite => format!("json_each(${n}) j"),
        Backend::Postgres => format!("json_array_elements(${n}::json) AS j(value)"),
    };
    let conflicts = format!(
        "SELECT p.key AS key, p.value AS old, j.value->>1 AS new FROM {} JOIN params p ON p.run_id = $1 AND p.key = j.value->>0 \
         WHERE p.value <> j.value->>1",
        each(5)
    );
    let report = format!(
        "SELECT r.lifecycle_stage, c.key, c.old, c.new FROM (SELECT 1 AS one) o \
         LEFT JOIN runs r ON r.id = $1 LEFT JOIN ({conflicts} LIMIT 1) c ON 1 = 1"
    );
    let guard = format!("WHERE EXISTS (SELECT 1 FROM runs WHERE id = $1 AND lifecycle_stage = 'active') AND NOT EXISTS ({conflicts})");
    let point = "SELECT $1, j.value->>0, CAST(j.value->>1 AS BIGINT), CAST(j.value->>2 AS BIGINT), \
                 CAST(j.value->>3 AS DOUBLE PRECISION), CAST(j.value->>4 AS BIGINT)";
    let columns = "(run_id, key, step, timestamp, value, is_nan)";
    [
        report,
        format!(
            "INSERT INTO params (run_id, key, value) SELECT $1, j.value->>0, j.value->>1 FROM {} {guard} ON CONFLICT (run_id, key) DO NOTHING",
            each(5)
        ),
        format!(
            "INSERT INTO metric_chunks (run_id, key, points, data) \
             SELECT $1, j.value->>0, CAST(j.value->>1 AS BIGINT), {} FROM {} {guard}",
            match backend {
                Backend::Sqlite => "substr($2, j.value->>2, j.value->>3)",
                Backend::Postgres => "substring($2 FROM CAST(j.value->>2 AS INTEGER) FOR CAST(j.value->>3 AS INTEGER))",
            },
            each(6)
        ),
        // The latest point per key wins: highest step, then newest
        // timestamp, then the later write.
        format!(
            "INSERT INTO latest_metrics {columns} {point} FROM {} {guard} \
             ON CONFLICT (run_id, key) DO UPDATE SET step = excluded.step, timestamp = excluded.timestamp, \
             value = excluded.value, is_nan = excluded.is_nan \
             WHERE excluded.step > latest_metrics.step \
                OR (excluded.step = latest_metrics.step AND excluded.timestamp >= latest_metrics.timestamp)",
            each(3)
        ),
        format!(
            "INSERT INTO tags (run_id, key, value) SELECT $1, j.value->>0, j.value->>1 FROM {} {guard} \
             ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
            each(4)
        ),
    ]
}

/// A write that is its own group: one transaction, one round trip.
static SQLITE_SOLE: LazyLock<String> = LazyLock::new(|| format!("BEGIN IMMEDIATE; {}; COMMIT", statements(Backend::Sqlite).join("; ")));
/// A write in a group: its own savepoint inside the group's transaction.
static SQLITE_MEMBER: LazyLock<String> = LazyLock::new(|| format!("SAVEPOINT w; {}; RELEASE w", statements(Backend::Sqlite).join("; ")));

#[cfg(test)]
mod tests {
    use super::super::testing::both_backends;
    use crate::{MetricPoint, NewRun, StoreError};

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

    both_backends!(deleted_runs_and_changed_params_write_nothing, |store| {
        let run = store.create_run(NewRun { experiment: "e".into(), name: "r".into(), parent: None, source: "t".into() }).await.unwrap();
        store.log_batch(&run, &[point("a", 1)], &[("lr".into(), "0.1".into())], &[("t".into(), "1".into())]).await.unwrap();
        // The same param again is fine; a changed one refuses the whole write.
        store.log_batch(&run, &[point("a", 2)], &[("lr".into(), "0.1".into())], &[]).await.unwrap();
        match store.log_batch(&run, &[point("a", 3)], &[("lr".into(), "0.2".into())], &[("t".into(), "2".into())]).await {
            Err(StoreError::Conflict(m)) => assert!(m.contains("`lr`") && m.contains("0.1") && m.contains("0.2"), "{m}"),
            other => panic!("a changed param must be refused: {other:?}"),
        }
        match store.log_params(&run, &[("x".into(), "1".into()), ("x".into(), "2".into())]).await {
            Err(StoreError::Conflict(m)) => assert!(m.contains("`x`"), "{m}"),
            other => panic!("one key given two values must be refused: {other:?}"),
        }
        assert_eq!(store.metric_history(&run, "a").await.unwrap().len(), 2);
        store.set_run_stage(&run, "deleted").await.unwrap();
        match store.log_metrics(&run, &[point("a", 4)]).await {
            Err(StoreError::RunNotActive { run: r, stage }) => assert_eq!((r.as_str(), stage.as_str()), (run.as_str(), "deleted")),
            other => panic!("a deleted run takes no metrics: {other:?}"),
        }
        assert!(matches!(store.log_batch(&run, &[], &[], &[]).await, Err(StoreError::RunNotActive { .. })));
        assert!(matches!(store.log_batch("nope", &[], &[], &[]).await, Err(StoreError::NotFound(_))));
        store.set_run_stage(&run, "active").await.unwrap();
        let detail = store.get_run(&run).await.unwrap();
        assert_eq!(store.metric_history(&run, "a").await.unwrap().len(), 2, "refused writes left nothing");
        assert_eq!((detail.summary.params["lr"].as_str(), detail.tags.len()), ("0.1", 1));
        assert_eq!(detail.summary.params.get("x"), None);
    });

    both_backends!(history_pages_are_exact_and_ordered, |store| {
        let run = store.create_run(NewRun { experiment: "e".into(), name: "r".into(), parent: None, source: "t".into() }).await.unwrap();
        let key = "odd \"key\"\n\\é";
        let values = [1.0 / 3.0, 0.1, -2.5e-300, 1e300, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 5e-324, 42.0, -0.0];
        // Logged in two writes, the second with the earlier steps.
        let points: Vec<MetricPoint> = values
            .iter()
            .enumerate()
            .map(|(i, v)| MetricPoint { key: key.into(), value: *v, step: i as i64, timestamp: 1_700_000_000_000 + i as i64 })
            .collect();
        store.log_metrics(&run, &points[5..]).await.unwrap();
        store.log_metrics(&run, &points[..5]).await.unwrap();
        let (all, more) = store.metric_history_page(&run, key, 0, i64::MAX).await.unwrap();
        assert!(!more);
        assert_eq!(all.len(), values.len());
        for (i, (got, want)) in all.iter().zip(values).enumerate() {
            assert_eq!((got.step, got.timestamp), (i as i64, 1_700_000_000_000 + i as i64));
            assert_eq!(got.value.to_bits(), want.to_bits(), "point {i}: the same double, bit for bit");
        }
        let page = |offset, limit| {
            let (store, run) = (store.clone(), run.clone());
            async move {
                let (points, more) = store.metric_history_page(&run, key, offset, limit).await.unwrap();
                (points.iter().map(|p| p.step).collect::<Vec<_>>(), more)
            }
        };
        assert_eq!(page(0, 4).await, (vec![0, 1, 2, 3], true));
        assert_eq!(page(8, 4).await, (vec![8, 9], false));
        assert_eq!(page(6, 4).await, (vec![6, 7, 8, 9], false), "a page that ends at the last point has no next");
        assert_eq!(store.metric_history_page(&run, "other", 0, 10).await.unwrap(), (vec![], false));
    });

    fn point(key: &str, step: i64) -> MetricPoint {
        MetricPoint { key: key.into(), value: step as f64, step, timestamp: 1 }
    }
}
