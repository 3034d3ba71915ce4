//! The change feed: what the store committed, for whoever watches (the
//! run-events stream, the web UI, monitors), so that nobody polls.
//!
//! Every write method publishes a [`Change`] after its commit. In this
//! process that is a broadcast. Other processes learn of it too:
//! - on PostgreSQL the changes go out with `NOTIFY` (batched off the write
//!   path) and each process `LISTEN`s, so a worker on another machine and
//!   the server's streams see each other's changes;
//! - SQLite has no notifications, so while anyone subscribes, one task per
//!   process reads `PRAGMA data_version` (a counter in the WAL index, not a
//!   table read) every [`SQLITE_PROBE`] and publishes [`Change::Unknown`]
//!   when another connection committed; subscribers then re-read.
//!
//! Both listeners start on the first subscription, so a process that never
//! subscribes (the CLI, most tests) costs the database nothing extra.

use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Connection, Row};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{Notify, broadcast};

/// What changed. Committed changes name the thing to re-read; `Progress`
/// is the one ephemeral event: a running plugin's progress, never stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    Experiment {
        id: String,
    },
    /// A run's row: status, lifecycle stage, params, tags.
    Run {
        id: String,
    },
    Stage {
        run: String,
        stage: String,
    },
    Metrics {
        run: String,
    },
    Logs {
        run: String,
    },
    Artifacts {
        run: String,
    },
    Job {
        id: String,
    },
    Dataset {
        name: String,
    },
    /// A registered model, its versions, aliases or stages.
    Model {
        name: String,
    },
    Plugin {
        digest: String,
    },
    Pipeline {
        name: String,
    },
    /// A deployment's row: its versions, rollout and settings.
    Deployment {
        name: String,
    },
    Progress {
        run: String,
        stage: String,
        done: u64,
        total: u64,
        message: String,
    },
    /// Something changed that this process cannot name (another process
    /// wrote to the SQLite file, or the PostgreSQL listener reconnected and
    /// may have missed notifications): re-read what you show.
    Unknown,
}

impl Change {
    /// The run this change belongs to, if any.
    pub fn run(&self) -> Option<&str> {
        match self {
            Change::Run { id } => Some(id),
            Change::Stage { run, .. } | Change::Metrics { run } | Change::Logs { run } | Change::Artifacts { run } | Change::Progress { run, .. } => {
                Some(run)
            }
            _ => None,
        }
    }
}

/// How often a subscribed SQLite process looks for other processes' commits.
pub const SQLITE_PROBE: Duration = Duration::from_millis(250);
/// Changes a slow subscriber may fall behind by before it is told it
/// lagged (and should re-read everything).
const CAPACITY: usize = 4096;
const CHANNEL: &str = "kiln_changes";
/// PostgreSQL refuses a NOTIFY payload of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7000;
/// A progress message is cut to this many bytes on the feed.
const MAX_PROGRESS_MESSAGE: usize = 200;

#[derive(Clone)]
pub(crate) struct Feed {
    inner: Arc<Inner>,
}

struct Inner {
    tx: broadcast::Sender<Change>,
    url: String,
    postgres: bool,
    /// Tells this process's NOTIFYs from other processes'.
    origin: String,
    /// Changes waiting to be sent with NOTIFY (PostgreSQL), deduplicated.
    outbox: Mutex<Outbox>,
    wake: Arc<Notify>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    listening: std::sync::Once,
    /// The notifier is sending a batch it took from the outbox.
    sending: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Outbox {
    changes: Vec<Change>,
    seen: HashSet<Change>,
    notifier: bool,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    origin: String,
    changes: Vec<Change>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().map(std::mem::take).unwrap_or_default() {
            task.abort();
        }
    }
}

impl Feed {
    pub(crate) fn new(url: &str, postgres: bool) -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Feed {
            inner: Arc::new(Inner {
                tx,
                url: url.to_string(),
                postgres,
                origin: uuid::Uuid::new_v4().simple().to_string(),
                outbox: Mutex::new(Outbox::default()),
                wake: Arc::new(Notify::new()),
                tasks: Mutex::new(Vec::new()),
                listening: std::sync::Once::new(),
                sending: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Publish a change this process committed (or a progress event).
    pub(crate) fn publish(&self, change: Change, pool: &AnyPool) {
        let change = match change {
            Change::Progress { run, stage, done, total, mut message } => {
                if message.len() > MAX_PROGRESS_MESSAGE {
                    let mut end = MAX_PROGRESS_MESSAGE;
                    while !message.is_char_boundary(end) {
                        end -= 1;
                    }
                    message.truncate(end);
                }
                Change::Progress { run, stage, done, total, message }
            }
            c => c,
        };
        // No receiver is not an error: nobody is watching.
        let _ = self.inner.tx.send(change.clone());
        if !self.inner.postgres {
            return;
        }
        let start_notifier = {
            let mut outbox = self.inner.outbox.lock().unwrap();
            if outbox.seen.insert(change.clone()) {
                outbox.changes.push(change);
            }
            !std::mem::replace(&mut outbox.notifier, true)
        };
        if start_notifier {
            let task = tokio::spawn(notifier(Arc::downgrade(&self.inner), self.inner.wake.clone(), pool.clone()));
            self.inner.tasks.lock().unwrap().push(task);
        }
        self.inner.wake.notify_one();
    }

    /// Wait (at most `limit`) until every change published so far has
    /// gone out to other processes: a process about to exit calls this, or
    /// its last changes (a run's final status) would never reach them.
    pub(crate) async fn flush(&self, limit: Duration) {
        use std::sync::atomic::Ordering;
        let deadline = tokio::time::Instant::now() + limit;
        while self.inner.postgres && tokio::time::Instant::now() < deadline {
            let idle = self.inner.outbox.lock().unwrap().changes.is_empty() && !self.inner.sending.load(Ordering::SeqCst);
            if idle {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Changes made by this process only, starting no listener: for a
    /// process that watches its own work (the CLI's progress bars).
    pub(crate) fn subscribe_local(&self) -> broadcast::Receiver<Change> {
        self.inner.tx.subscribe()
    }

    /// Every change from now on. A receiver that falls more than
    /// `CAPACITY` changes behind gets `RecvError::Lagged` and should re-read.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Change> {
        let rx = self.inner.tx.subscribe();
        self.inner.listening.call_once(|| {
            let weak = Arc::downgrade(&self.inner);
            let url = self.inner.url.clone();
            let task = if self.inner.postgres { tokio::spawn(listen_postgres(weak, url)) } else { tokio::spawn(probe_sqlite(weak, url)) };
            self.inner.tasks.lock().unwrap().push(task);
        });
        rx
    }
}

/// Sends what the outbox holds, a NOTIFY per payload-sized batch, off the
/// write path: a write never waits for it.
async fn notifier(inner: Weak<Inner>, wake: Arc<Notify>, pool: AnyPool) {
    loop {
        let Some(strong) = inner.upgrade() else { return };
        let changes = {
            let mut outbox = strong.outbox.lock().unwrap();
            outbox.seen.clear();
            let changes = std::mem::take(&mut outbox.changes);
            strong.sending.store(!changes.is_empty(), std::sync::atomic::Ordering::SeqCst);
            changes
        };
        if changes.is_empty() {
            // Not holding `inner` while waiting: the store may go away.
            drop(strong);
            wake.notified().await;
            continue;
        }
        for batch in payloads(&strong.origin, changes) {
            if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(&batch).execute(&pool).await {
                // Not dropped: other processes would wait for a change
                // that never comes. Put back and tried again shortly.
                tracing::warn!("publishing store changes to other processes failed (will retry): {e}");
                if let Ok(p) = serde_json::from_str::<Payload>(&batch) {
                    let mut outbox = strong.outbox.lock().unwrap();
                    for change in p.changes {
                        if outbox.seen.insert(change.clone()) {
                            outbox.changes.push(change);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        strong.sending.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The changes as JSON payloads under PostgreSQL's size limit.
fn payloads(origin: &str, changes: Vec<Change>) -> Vec<String> {
    let mut out = Vec::new();
    let mut batch: Vec<Change> = Vec::new();
    let mut size = 0;
    for change in changes {
        let len = serde_json::to_string(&change).map(|s| s.len() + 1).unwrap_or(0);
        if !batch.is_empty() && size + len > MAX_PAYLOAD {
            out.push(serde_json::to_string(&Payload { origin: origin.into(), changes: std::mem::take(&mut batch) }).unwrap_or_default());
            size = 0;
        }
        size += len;
        batch.push(change);
    }
    if !batch.is_empty() {
        out.push(serde_json::to_string(&Payload { origin: origin.into(), changes: batch }).unwrap_or_default());
    }
    out
}

/// Relays other processes' NOTIFYs into this process's broadcast.
async fn listen_postgres(inner: Weak<Inner>, url: String) {
    let mut listener = loop {
        match sqlx::postgres::PgListener::connect(&url).await {
            Ok(mut l) => match l.listen(CHANNEL).await {
                Ok(()) => {
                    // Whatever other processes changed before LISTEN took
                    // hold was not heard: subscribers re-read once.
                    if let Some(inner) = inner.upgrade() {
                        let _ = inner.tx.send(Change::Unknown);
                    }
                    break l;
                }
                Err(e) => tracing::warn!("listening for store changes failed: {e}"),
            },
            Err(e) => tracing::warn!("connecting to listen for store changes failed: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        if inner.strong_count() == 0 {
            return;
        }
    };
    loop {
        let next = listener.try_recv().await;
        let Some(inner) = inner.upgrade() else { return };
        match next {
            Ok(Some(note)) => {
                let Ok(payload) = serde_json::from_str::<Payload>(note.payload()) else { continue };
                if payload.origin == inner.origin {
                    continue;
                }
                for change in payload.changes {
                    let _ = inner.tx.send(change);
                }
            }
            // The connection dropped and came back: what was sent meanwhile
            // is lost, so everyone re-reads.
            Ok(None) => {
                let _ = inner.tx.send(Change::Unknown);
            }
            Err(e) => {
                tracing::warn!("the store change listener failed: {e}");
                let _ = inner.tx.send(Change::Unknown);
                drop(inner);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Publishes `Unknown` when another connection committed to the SQLite
/// file, while anyone subscribes. Its own connection: `data_version` only
/// moves for commits made by *other* connections.
async fn probe_sqlite(inner: Weak<Inner>, url: String) {
    let mut conn: Option<sqlx::AnyConnection> = None;
    let mut last: Option<i64> = None;
    loop {
        tokio::time::sleep(SQLITE_PROBE).await;
        let Some(strong) = inner.upgrade() else { return };
        if strong.tx.receiver_count() == 0 {
            continue;
        }
        if conn.is_none() {
            conn = sqlx::AnyConnection::connect(&url).await.ok();
            last = None;
        }
        let Some(c) = conn.as_mut() else { continue };
        match sqlx::query("PRAGMA data_version").fetch_one(&mut *c).await.and_then(|row| row.try_get::<i64, _>(0)) {
            Ok(version) => {
                // The first reading is a baseline: what changed before it
                // was not seen, so subscribers re-read once.
                if last != Some(version) {
                    let _ = strong.tx.send(Change::Unknown);
                }
                last = Some(version);
            }
            Err(e) => {
                tracing::warn!("probing the database for other processes' changes failed: {e}");
                conn = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::both_backends;
    use crate::{NewRun, Store};

    /// The next change that is not `Unknown`, or `Unknown` if that is all
    /// there is. A hang guard, not a timing assertion: changes arrive in
    /// milliseconds; ten seconds means never.
    async fn next(rx: &mut broadcast::Receiver<Change>, skip_unknown: bool) -> Change {
        loop {
            let c = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("no change arrived within 10 s").unwrap();
            if !(skip_unknown && c == Change::Unknown) {
                return c;
            }
        }
    }

    fn new_run() -> NewRun {
        NewRun { experiment: "feed".into(), name: "r".into(), source: "test".into(), parent: None }
    }

    both_backends!(a_subscriber_hears_each_committed_write, |store| {
        let mut rx = store.subscribe();
        let run = store.create_run(new_run()).await.unwrap();
        assert!(matches!(next(&mut rx, true).await, Change::Experiment { .. }));
        assert_eq!(next(&mut rx, true).await, Change::Run { id: run.clone() });
        let point = crate::MetricPoint { key: "loss".into(), value: 0.5, step: 1, timestamp: 1 };
        store.log_metrics(&run, &[point]).await.unwrap();
        assert_eq!(next(&mut rx, true).await, Change::Metrics { run: run.clone() });
        store.publish_progress(&run, "train", 3, 10, "trees");
        assert_eq!(
            next(&mut rx, true).await,
            Change::Progress { run: run.clone(), stage: "train".into(), done: 3, total: 10, message: "trees".into() }
        );
        // A refused write publishes nothing.
        assert!(store.update_run("no-such-run", None, None, Some("x")).await.is_err());
        store.finish_run(&run, crate::RunStatus::Finished, None).await.unwrap();
        assert_eq!(next(&mut rx, true).await, Change::Run { id: run });
    });

    #[tokio::test(flavor = "multi_thread")]
    async fn another_process_on_postgres_is_heard_through_notify() {
        let url = crate::testing::postgres_url().await;
        let watcher = Store::connect(&url).await.unwrap();
        let writer = Store::connect(&url).await.unwrap();
        let mut rx = watcher.subscribe();
        // LISTEN is issued by a task: write until something arrives, so
        // the listener is known to be in place.
        loop {
            writer.create_run(new_run()).await.unwrap();
            if tokio::time::timeout(Duration::from_millis(500), rx.recv()).await.is_ok() {
                break;
            }
        }
        let run = writer.create_run(new_run()).await.unwrap();
        loop {
            if next(&mut rx, true).await == (Change::Run { id: run.clone() }) {
                break;
            }
        }
        writer.publish_progress(&run, "train", 1, 2, "half");
        loop {
            if let Change::Progress { run: r, done, .. } = next(&mut rx, true).await {
                assert_eq!((r.as_str(), done), (run.as_str(), 1));
                break;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn another_process_on_sqlite_is_heard_as_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("kiln.db").display());
        let watcher = Store::connect(&url).await.unwrap();
        let writer = Store::connect(&url).await.unwrap();
        let mut rx = watcher.subscribe();
        // The probe's first reading says Unknown (what came before it was
        // not seen); after that, only another connection's commit does.
        assert_eq!(next(&mut rx, false).await, Change::Unknown);
        tokio::time::sleep(SQLITE_PROBE * 3).await;
        assert!(rx.try_recv().is_err(), "nothing changed, nothing heard");
        writer.create_run(new_run()).await.unwrap();
        assert_eq!(next(&mut rx, false).await, Change::Unknown);
    }

    #[test]
    fn payloads_stay_under_postgres_limit_and_keep_every_change() {
        let changes: Vec<Change> = (0..2000).map(|i| Change::Run { id: format!("run-{i:032}") }).collect();
        let out = payloads("me", changes.clone());
        assert!(out.len() > 1);
        let mut back = Vec::new();
        for p in &out {
            assert!(p.len() < 8000, "payload of {} bytes", p.len());
            back.extend(serde_json::from_str::<Payload>(p).unwrap().changes);
        }
        assert_eq!(back, changes);
    }
}
