//! Metadata storage: the only module that knows SQL.
//!
//! One schema runs on SQLite (the embedded default, WAL mode) and on
//! PostgreSQL (`KILN_DATABASE_URL=postgres://...`) through sqlx's `Any`
//! driver, so every query here is written once in the common dialect:
//! `$n` placeholders, text ids, BIGINT milliseconds, JSON as TEXT.
//!
//! Rows are not a wire format: they do not serialise, so nothing can send
//! one to a client by accident (`kiln_services::views` are the shapes
//! clients see). This does not compile:
//!
//! ```compile_fail
//! fn wire<T: serde::Serialize>() {}
//! wire::<kiln_store::RunDetail>();
//! ```
//!
//! while the change feed's events, meant to travel, do:
//!
//! ```
//! fn wire<T: serde::Serialize>() {}
//! wire::<kiln_store::Change>();
//! ```

mod catalog;
mod datasets;
mod deploy_targets;
mod deployments;
mod experiments;
mod feed;
mod group;
mod history;
mod jobs;
mod logged_models;
mod pipelines;
mod plugins;
mod registry;
mod runs;
mod search;

pub use datasets::{DatasetVersion, NewDatasetVersion};
pub use deploy_targets::DeployTargetRecord;
pub use deployments::{DeploymentEvent, DeploymentRecord, RolloutChange, RolloutStat, Target};
pub use experiments::ExperimentRecord;
pub use feed::{Change, SQLITE_PROBE};
pub use history::HistoryPoint;
pub use jobs::{Job, JobStatus};
pub use logged_models::{
    DatasetInput, DatasetSummary, LOGGED_MODEL_STATUSES, LoggedModelDetail, LoggedModelMetric, LoggedModelRecord, NewLoggedModel, RunIo,
};
pub use pipelines::{LineageEdge, PipelineRecord, ScheduleRecord};
pub use plugins::PluginRecord;
pub use registry::{ModelRecord, NewVersion, STAGES, VersionRecord};
pub use runs::{ArtifactRecord, LogRecord, MetricPoint, NewRun, RunDetail, RunStatus, RunSummary, RunView, StageRecord, StageState};
pub use search::SearchQuery;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, SqlSafeStr};
use std::borrow::Cow;
use std::time::Duration;

/// A store failure a caller may want to tell apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("run `{run}` is {stage}; only an active run can be logged to (restore it first)")]
    RunNotActive { run: String, stage: String },
    /// A value the store will not hold (a blank experiment name…): the
    /// caller's mistake.
    #[error("{0}")]
    Invalid(String),
    /// The database could not take a write (connection lost, disk full…):
    /// the server's fault, never the client's.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("cannot connect to the database at {url}: {error}")]
    Connect { url: String, error: sqlx::Error },
    // Not `#[from]`: that makes the inner error a `#[source]` too, and
    // `{:#}` would print it twice.
    #[error("migrating the database: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Db(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Db(e)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(e)
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database is behind the pool; the few statements that differ
/// (upserts are the same; locking for job claims is not) ask this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    writer: group::GroupWriter,
    catalog: std::sync::Arc<catalog::Catalog>,
    feed: feed::Feed,
}

pub(crate) fn migrator() -> Migrator {
    let migration = |version, name: &'static str, sql: &'static str| {
        Migration::new(version, Cow::Borrowed(name), MigrationType::Simple, sql.into_sql_str(), false)
    };
    let migrations = vec![
        migration(1, "init", include_str!("../migrations/0001_init.sql")),
        migration(2, "schedules", include_str!("../migrations/0002_schedules.sql")),
        migration(3, "registry source", include_str!("../migrations/0003_registry_source.sql")),
        migration(4, "datasets", include_str!("../migrations/0004_datasets.sql")),
        migration(5, "metric history index", include_str!("../migrations/0005_metric_history_index.sql")),
        migration(6, "metric chunks", include_str!("../migrations/0006_metric_chunks.sql")),
        migration(7, "registry and logged models", include_str!("../migrations/0007_registry_and_logged_models.sql")),
        migration(8, "model last version", include_str!("../migrations/0008_model_last_version.sql")),
        migration(9, "deployments", include_str!("../migrations/0009_deployments.sql")),
        migration(10, "rollouts", include_str!("../migrations/0010_rollouts.sql")),
        migration(11, "deploy targets", include_str!("../migrations/0011_deploy_targets.sql")),
    ];
    Migrator { migrations: Cow::Owned(migrations), ..Migrator::DEFAULT }
}

impl Store {
    /// Connect to `url` (`sqlite://path` or `postgres://...`) and bring the
    /// schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        install_default_drivers();
        let backend = if url.starts_with("postgres") { Backend::Postgres } else { Backend::Sqlite };
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30));
        if backend == Backend::Sqlite {
            // One writer at a time is SQLite's rule; a small pool of readers
            // plus busy_timeout lets concurrent writers wait, not fail.
            // No ping before handing out a connection: a file cannot hang
            // up, and the ping is a round trip to sqlx's connection thread
            // on every query.
            options = options.max_connections(4).test_before_acquire(false).after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    Ok(())
                })
            });
        } else {
            options = options.max_connections(8);
        }
        let pool = options.connect(url).await.map_err(|source| StoreError::Connect { url: redact(url), error: source })?;
        if backend == Backend::Sqlite {
            // WAL persists in the file; set it before the first write.
            pool.execute("PRAGMA journal_mode = WAL").await?;
        }
        migrator().run(&pool).await?;
        let catalog = std::sync::Arc::new(catalog::Catalog::default());
        let writer = group::GroupWriter::spawn(pool.clone(), backend, catalog.clone());
        let feed = feed::Feed::new(url, backend == Backend::Postgres);
        let store = Store { pool, backend, writer, catalog, feed };
        store.convert_legacy_metrics().await?;
        Ok(store)
    }

    /// A write transaction. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then
    /// writes fails with SQLITE_BUSY when another writer got in between,
    /// and busy_timeout cannot help it; an immediate one waits its turn.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Every change committed from now on, by this process or (through
    /// NOTIFY on PostgreSQL, `data_version` on SQLite) by another.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.feed.subscribe()
    }

    /// Wait (at most `limit`) until this process's changes have reached
    /// other processes (PostgreSQL's NOTIFY); call before exiting.
    pub async fn flush_changes(&self, limit: std::time::Duration) {
        self.feed.flush(limit).await
    }

    /// Changes made through this process only (no listener is started, no
    /// database is asked): for a process watching its own work.
    pub fn subscribe_local(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.feed.subscribe_local()
    }

    /// A running stage's progress, for the feed only: nothing is stored.
    pub fn publish_progress(&self, run: &str, stage: &str, done: u64, total: u64, message: &str) {
        self.changed(Change::Progress { run: run.into(), stage: stage.into(), done, total, message: message.into() });
    }

    /// Tell subscribers about a committed change.
    pub(crate) fn changed(&self, change: Change) {
        self.feed.publish(change, &self.pool);
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Hide a password in a database URL before it reaches a message.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod testing {
    //! Every store test runs against a fresh SQLite file and a fresh
    //! PostgreSQL database; PostgreSQL being down fails the test.
    use super::Store;

    pub const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/test";

    pub async fn sqlite() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("kiln.db").display());
        (Store::connect(&url).await.unwrap(), dir)
    }

    /// A new database on the test server, named uniquely.
    pub async fn postgres() -> Store {
        Store::connect(&postgres_url().await).await.unwrap()
    }

    /// The URL of a new, empty database on the test server.
    pub async fn postgres_url() -> String {
        use sqlx::Executor;
        let admin_url = std::env::var("KILN_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG.into());
        sqlx::any::install_default_drivers();
        let admin =
            sqlx::AnyPool::connect(&admin_url).await.unwrap_or_else(|e| panic!("PostgreSQL must be running at {admin_url} for the store tests: {e}"));
        let name = format!("kiln_test_{}", uuid::Uuid::new_v4().simple());
        admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap();
        admin.close().await;
        let base = admin_url.rsplit_once('/').unwrap().0;
        format!("{base}/{name}")
    }

    /// Run the same async test body on both backends.
    macro_rules! both_backends {
        ($name:ident, |$store:ident| $body:block) => {
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                #[tokio::test(flavor = "multi_thread")]
                async fn sqlite() {
                    let ($store, _dir) = crate::testing::sqlite().await;
                    $body
                }
                #[tokio::test(flavor = "multi_thread")]
                async fn postgres() {
                    let $store = crate::testing::postgres().await;
                    $body
                }
            }
        };
    }
    pub(crate) use both_backends;
}
