//! Metric history: points stored in chunks, one row per metric key per
//! write (`metric_chunks`), each holding its points packed as 24 bytes
//! (step, timestamp, value bits; little-endian). A 1,000-point batch is one
//! row to write and one to read; a history is read by decoding its chunks
//! and sorting the points in memory.
//!
//! Why not a row per point: on SQLite through sqlx, every row read crosses
//! from the driver's thread to ours one at a time, and every row written is
//! an index entry plus a float parsed from text; at 100,000 points that was
//! most of a read or a write. The latest value per key stays a row
//! (`latest_metrics`) because search filters and sorts on it.

use super::runs::MetricPoint;
use super::{Backend, Result, Store, StoreError};
use sqlx::{AssertSqlSafe, Row};

const POINT: usize = 24;

/// One key's points of one write, packed.
pub(crate) fn pack<'p>(points: impl Iterator<Item = &'p MetricPoint>, out: &mut Vec<u8>) {
    for p in points {
        out.extend_from_slice(&p.step.to_le_bytes());
        out.extend_from_slice(&p.timestamp.to_le_bytes());
        out.extend_from_slice(&p.value.to_bits().to_le_bytes());
    }
}

/// One point of a metric's history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistoryPoint {
    pub step: i64,
    pub timestamp: i64,
    pub value: f64,
}

fn unpack(data: &[u8], out: &mut Vec<HistoryPoint>) -> Result<()> {
    if !data.len().is_multiple_of(POINT) {
        return Err(StoreError::Db(sqlx::Error::Protocol(format!("a metric chunk of {} bytes is not whole points of {POINT}", data.len()))));
    }
    out.extend(data.chunks_exact(POINT).map(|c| {
        let word = |i: usize| u64::from_le_bytes(c[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        HistoryPoint { step: word(0) as i64, timestamp: word(1) as i64, value: f64::from_bits(word(2)) }
    }));
    Ok(())
}

/// History order: by step, then timestamp; the value breaks what ties are
/// left, so every page of a history sees the same order.
fn sort(points: &mut [HistoryPoint]) {
    points.sort_unstable_by(|a, b| (a.step, a.timestamp).cmp(&(b.step, b.timestamp)).then(a.value.total_cmp(&b.value)));
}

impl Store {
    /// Every point of one metric, in history order.
    async fn history_points(&self, run_id: &str, key: &str) -> Result<Vec<HistoryPoint>> {
        let rows =
            sqlx::query("SELECT points, data FROM metric_chunks WHERE run_id = $1 AND key = $2").bind(run_id).bind(key).fetch_all(&self.pool).await?;
        let total: i64 = rows.iter().map(|r| r.try_get::<i64, _>(0)).sum::<Result<i64, _>>()?;
        let mut points = Vec::with_capacity(total as usize);
        for r in &rows {
            unpack(r.try_get::<&[u8], _>(1)?, &mut points)?;
        }
        sort(&mut points);
        Ok(points)
    }

    /// Every point logged for one metric, by step.
    pub async fn metric_history(&self, run_id: &str, key: &str) -> Result<Vec<MetricPoint>> {
        Ok(self
            .history_points(run_id, key)
            .await?
            .into_iter()
            .map(|p| MetricPoint { key: key.to_string(), value: p.value, step: p.step, timestamp: p.timestamp })
            .collect())
    }

    /// Up to `limit` points of one metric's history from `offset`, in
    /// history order, and whether more follow.
    pub async fn metric_history_page(&self, run_id: &str, key: &str, offset: i64, limit: i64) -> Result<(Vec<HistoryPoint>, bool)> {
        let points = self.history_points(run_id, key).await?;
        let start = (offset.max(0) as usize).min(points.len());
        let end = start.saturating_add(limit.max(0) as usize).min(points.len());
        Ok((points[start..end].to_vec(), end < points.len()))
    }

    /// Move the rows of the table of one row per point (before migration
    /// 6) into chunks, one per run and key, and drop it. Runs once; a
    /// second process connecting at the same time finds the work done.
    pub(super) async fn convert_legacy_metrics(&self) -> Result<()> {
        let exists = match self.backend {
            Backend::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'metrics_legacy'",
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'metrics_legacy' AND table_schema = current_schema()"
            }
        };
        if sqlx::query(exists).fetch_one(&self.pool).await?.try_get::<i64, _>(0)? == 0 {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        // Checked again under the lock: another process may have done it.
        if self.backend == Backend::Postgres && sqlx::query("LOCK TABLE metrics_legacy IN ACCESS EXCLUSIVE MODE").execute(&mut *tx).await.is_err() {
            return Ok(());
        }
        if sqlx::query(exists).fetch_one(&mut *tx).await?.try_get::<i64, _>(0)? == 0 {
            return Ok(());
        }
        let rows = sqlx::query("SELECT run_id, key, step, timestamp, value, is_nan FROM metrics_legacy ORDER BY run_id, key, step, timestamp")
            .fetch_all(&mut *tx)
            .await?;
        let mut i = 0;
        while i < rows.len() {
            let (run, key): (String, String) = (rows[i].try_get(0)?, rows[i].try_get(1)?);
            let mut points = Vec::new();
            while i < rows.len() && rows[i].try_get::<&str, _>(0)? == run && rows[i].try_get::<&str, _>(1)? == key {
                points.push(super::runs::metric_from_row(&rows[i])?);
                i += 1;
            }
            let mut data = Vec::with_capacity(points.len() * POINT);
            pack(points.iter(), &mut data);
            sqlx::query("INSERT INTO metric_chunks (run_id, key, points, data) VALUES ($1, $2, $3, $4)")
                .bind(&run)
                .bind(&key)
                .bind(points.len() as i64)
                .bind(data)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(AssertSqlSafe("DROP TABLE metrics_legacy")).execute(&mut *tx).await?;
        tx.commit().await?;
        tracing::info!(points = rows.len(), "metric history moved into chunks");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store written before migration 6 (a row per point) keeps every
    /// point, NaN and infinities included, once a new Kiln opens it.
    async fn legacy_points_survive(url: &str) {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(url).await.unwrap();
        let mut old = super::super::migrator();
        old.migrations = std::borrow::Cow::Owned(old.migrations[..5].to_vec());
        old.run(&pool).await.unwrap();
        for sql in [
            "INSERT INTO experiments (id, name, created_at, updated_at) VALUES ('1', 'e', 0, 0)",
            "INSERT INTO runs (id, experiment_id, name, status, start_time) VALUES ('r1', '1', 'a', 'RUNNING', 0)",
            "INSERT INTO runs (id, experiment_id, name, status, start_time) VALUES ('r2', '1', 'b', 'RUNNING', 0)",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        let rows: [(&str, &str, i64, f64, i64); 6] = [
            ("r1", "loss", 2, 0.5, 0),
            ("r1", "loss", 0, f64::INFINITY, 0),
            ("r1", "loss", 1, 0.0, 1),
            ("r1", "acc", 0, 0.1, 0),
            ("r2", "loss", 0, -1.0 / 3.0, 0),
            ("r2", "loss", 5, f64::NEG_INFINITY, 0),
        ];
        for (run, key, step, value, is_nan) in rows {
            sqlx::query("INSERT INTO metrics (run_id, key, step, timestamp, value, is_nan) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(run)
                .bind(key)
                .bind(step)
                .bind(100 + step)
                .bind(value)
                .bind(is_nan)
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
        let store = Store::connect(url).await.unwrap();
        let loss = store.metric_history("r1", "loss").await.unwrap();
        let seen: Vec<(i64, i64, String)> = loss.iter().map(|p| (p.step, p.timestamp, format!("{}", p.value))).collect();
        assert_eq!(seen, [(0, 100, "inf".to_string()), (1, 101, "NaN".into()), (2, 102, "0.5".into())]);
        assert_eq!(store.metric_history("r1", "acc").await.unwrap()[0].value, 0.1);
        let r2: Vec<f64> = store.metric_history("r2", "loss").await.unwrap().iter().map(|p| p.value).collect();
        assert_eq!(r2, [-1.0 / 3.0, f64::NEG_INFINITY]);
        store.close().await;
        // Opening it again finds nothing left to convert.
        let store = Store::connect(url).await.unwrap();
        assert_eq!(store.metric_history("r1", "loss").await.unwrap().len(), 3);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn legacy_points_survive_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        legacy_points_survive(&format!("sqlite://{}?mode=rwc", dir.path().join("kiln.db").display())).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn legacy_points_survive_on_postgres() {
        legacy_points_survive(&crate::testing::postgres_url().await).await;
    }

    #[test]
    fn packing_round_trips_every_double_and_sorts_ties_the_same_way() {
        let values = [0.1, -0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 5e-324, f64::MAX, 1.0 / 3.0];
        let points: Vec<MetricPoint> = values
            .iter()
            .enumerate()
            .map(|(i, v)| MetricPoint { key: "k".into(), value: *v, step: 7 - i as i64 % 3, timestamp: -(i as i64) })
            .collect();
        let mut data = Vec::new();
        pack(points.iter(), &mut data);
        assert_eq!(data.len(), points.len() * POINT);
        let mut back = Vec::new();
        unpack(&data, &mut back).unwrap();
        for (p, q) in points.iter().zip(&back) {
            assert_eq!((p.step, p.timestamp, p.value.to_bits()), (q.step, q.timestamp, q.value.to_bits()));
        }
        let mut a = back.clone();
        let mut b: Vec<HistoryPoint> = back.into_iter().rev().collect();
        sort(&mut a);
        sort(&mut b);
        assert!(a.iter().zip(&b).all(|(x, y)| (x.step, x.timestamp, x.value.to_bits()) == (y.step, y.timestamp, y.value.to_bits())));
        assert!(a.windows(2).all(|w| (w[0].step, w[0].timestamp) <= (w[1].step, w[1].timestamp)));
        assert!(unpack(&data[..25], &mut Vec::new()).is_err(), "a torn chunk is an error, not garbage");
    }
}
