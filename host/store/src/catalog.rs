//! An in-memory catalog of the active runs, for run search on SQLite.
//!
//! A filtered, ordered search over a thousand runs costs a few milliseconds
//! in SQL (a correlated lookup per run and condition, then the rows of the
//! page's runs, each crossing from sqlx's thread one at a time); over a
//! snapshot in memory it is microseconds.
//!
//! Staying current: the group writer patches every tracking write it
//! commits (metrics, params, tags) into the snapshot before it acknowledges
//! the write. Everything else (a run created, renamed, finished or deleted,
//! here or in another process) is another connection's commit, which
//! changes SQLite's `PRAGMA data_version` as seen on the writer's
//! connection; the snapshot carries the value it was read at, so a search
//! that finds a different one answers from SQL and starts one rebuild in
//! the background.
//!
//! The evaluation here mirrors the SQL of `search.rs` on SQLite (LIKE is
//! case-blind for ASCII, text compares bytewise, NULLs sort last, ties go
//! by start time, newest first, then id); where it could not be exact
//! (LIKE on a number) it declines and SQL answers. A test runs every kind
//! of filter and ordering both ways and compares.

use super::group::TrackingWrite;
use super::runs::{MetricPoint, RunView};
use super::search::SearchQuery;
use super::{Backend, Result, Store};
use kiln_types::filter::{Entity, Filter, Op, OrderBy, Value};
use sqlx::Row;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// Above this many active runs the catalog is not kept (memory, and the
/// copy a patch makes of the run list); SQL answers.
const MAX_RUNS: usize = 20_000;
/// Rebuilds start at most this often, however busy the writes.
const MIN_REBUILD_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Default)]
pub(crate) struct Catalog {
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    /// The writer's own writes, in commit order, kept a while for a rebuild
    /// that reads the tables while they land (see `rebuild_catalog`).
    patches: std::sync::Mutex<PatchLog>,
    rebuilding: AtomicBool,
    last_rebuild: std::sync::Mutex<Option<Instant>>,
    /// The renderer `search_rendered` was first called with: a rebuild
    /// writes every run with it, so no search pays for that.
    renderer: OnceLock<Renderer>,
}

#[derive(Default)]
struct PatchLog {
    /// Patches sent so far.
    sent: u64,
    /// The last few, numbered from `sent - log.len() + 1`.
    log: std::collections::VecDeque<Patch>,
}

const PATCHES_KEPT: usize = 4096;

/// What one committed tracking write changed in its run, as the catalog
/// sees it: the latest point of each metric key, params, tags.
struct Patch {
    run_id: String,
    latest: Vec<MetricPoint>,
    params: Vec<(String, String)>,
    tags: Vec<(String, String)>,
}

impl Patch {
    fn of(w: &TrackingWrite) -> Self {
        let latest = w.latest().into_iter().cloned().collect();
        Patch { run_id: w.run_id.clone(), latest, params: w.params.clone(), tags: w.tags.clone() }
    }
}

#[derive(Clone)]
struct Snapshot {
    /// The writer's connection and its `data_version` when this was read.
    stamp: (u64, i64),
    runs: Vec<Arc<Entry>>,
    index: Arc<HashMap<String, usize>>,
    /// Per metric, param and tag key: where each run holds it (an index
    /// into its view's list; `MISSING` if it does not), so a search looks a
    /// key up once, not once per run.
    columns: HashMap<(Kind, String), Arc<Vec<u32>>>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Metric,
    Param,
    Tag,
}

const MISSING: u32 = u32::MAX;

impl Snapshot {
    /// Point run `i`'s entries in every column at its keys.
    fn index_run(&mut self, i: usize) {
        let n = self.runs.len();
        let v = &self.runs[i].view;
        let keys = v
            .metrics
            .iter()
            .map(|m| (Kind::Metric, &m.key))
            .chain(v.params.iter().map(|p| (Kind::Param, &p.0)))
            .chain(v.tags.iter().map(|t| (Kind::Tag, &t.0)));
        let mut at = [0u32; 3];
        for (kind, key) in keys {
            let slot = &mut at[kind as usize];
            let col = self.columns.entry((kind, key.clone())).or_insert_with(|| Arc::new(vec![MISSING; n]));
            Arc::make_mut(col)[i] = *slot;
            *slot += 1;
        }
    }

    /// Apply one of the writer's writes, as its SQL did: latest metrics by
    /// (step, timestamp), params only where absent, tags replaced.
    fn apply(&mut self, p: &Patch) {
        let Some(&i) = self.index.get(&p.run_id) else {
            return;
        };
        let old = &self.runs[i];
        let mut view = old.view.clone();
        // Only a new key moves the run's slots in the columns; new values
        // for known keys (the usual write) leave the columns alone.
        let keys = (view.metrics.len(), view.params.len(), view.tags.len());
        for m in &p.latest {
            match view.metrics.binary_search_by(|x| x.key.as_str().cmp(&m.key)) {
                Ok(j) => {
                    let cur = &view.metrics[j];
                    if m.step > cur.step || (m.step == cur.step && m.timestamp >= cur.timestamp) {
                        view.metrics[j] = m.clone();
                    }
                }
                Err(j) => view.metrics.insert(j, m.clone()),
            }
        }
        for (key, value) in &p.params {
            if let Err(j) = view.params.binary_search_by(|x| x.0.as_str().cmp(key)) {
                view.params.insert(j, (key.clone(), value.clone()));
            }
        }
        for (key, value) in &p.tags {
            match view.tags.binary_search_by(|x| x.0.as_str().cmp(key)) {
                Ok(j) => view.tags[j].1 = value.clone(),
                Err(j) => view.tags.insert(j, (key.clone(), value.clone())),
            }
        }
        let moved = keys != (view.metrics.len(), view.params.len(), view.tags.len());
        self.runs[i] = Arc::new(Entry { view, experiment: old.experiment.clone(), rendered: OnceLock::new() });
        if moved {
            self.index_run(i);
        }
    }
}

struct Entry {
    view: RunView,
    experiment: String,
    /// The run as a caller rendered it (`search_rendered`), kept while the
    /// snapshot lives: the renderer, and its bytes.
    rendered: OnceLock<(Renderer, Arc<[u8]>)>,
}

/// How a caller writes a run (MLflow's JSON, say).
pub type Renderer = fn(&RunView) -> Vec<u8>;

impl Catalog {
    fn current(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many patches the writer has sent.
    pub(crate) fn patches(&self) -> u64 {
        self.patches.lock().unwrap_or_else(|p| p.into_inner()).sent
    }

    /// The writer committed these writes: keep the snapshot current.
    pub(crate) fn applied<'w>(&self, writes: impl Iterator<Item = &'w TrackingWrite>) {
        let mut log = self.patches.lock().unwrap_or_else(|p| p.into_inner());
        let mut snap = self.current().map(|s| (*s).clone());
        for w in writes {
            let patch = Patch::of(w);
            if let Some(s) = snap.as_mut() {
                s.apply(&patch);
            }
            log.sent += 1;
            log.log.push_back(patch);
            if log.log.len() > PATCHES_KEPT {
                log.log.pop_front();
            }
        }
        if let Some(s) = snap {
            *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(s));
        }
    }

    /// Publish a rebuilt snapshot, bringing it up to the writes committed
    /// since `seen` patches: applying a patch twice changes nothing, so
    /// a write the rebuild's reads already saw may be applied again.
    fn publish(&self, mut snap: Snapshot, seen: u64) {
        let log = self.patches.lock().unwrap_or_else(|p| p.into_inner());
        let first = log.sent - log.log.len() as u64 + 1;
        if seen + 1 < first {
            // More writes landed during the rebuild than are kept: drop it.
            return;
        }
        for p in log.log.iter().skip((seen + 1 - first) as usize) {
            snap.apply(p);
        }
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(snap));
    }
}

impl Store {
    /// Runs matching `q`, each written by `render`, and the offset of the
    /// next page: from the catalog when it is current (a run's bytes are
    /// written once per snapshot and then reused), else from SQL.
    pub async fn search_rendered(&self, q: &SearchQuery, render: Renderer) -> Result<(Vec<Arc<[u8]>>, Option<i64>)> {
        let _ = self.catalog.renderer.set(render);
        if let Some(snap) = self.fresh_catalog().await
            && let Some((hits, next)) = snap.hits(q)
        {
            let out = hits
                .into_iter()
                .map(|e| {
                    let (r, bytes) = e.rendered.get_or_init(|| (render, render(&e.view).into()));
                    if std::ptr::fn_addr_eq(*r, render) { bytes.clone() } else { render(&e.view).into() }
                })
                .collect();
            return Ok((out, next));
        }
        let (ids, next) = self.search_run_ids(q).await?;
        let mut views = self.run_views(&ids).await?;
        self.fill_io(&mut views).await?;
        Ok((views.iter().map(|v| render(v).into()).collect(), next))
    }

    /// The snapshot, if nothing was committed since it was read; if it is
    /// stale, a rebuild is started.
    async fn fresh_catalog(&self) -> Option<Arc<Snapshot>> {
        if self.backend != Backend::Sqlite {
            return None;
        }
        match self.writer.probe().await {
            Ok(stamp) => match self.catalog.current() {
                Some(snap) if snap.stamp == (stamp.epoch, stamp.version) => Some(snap),
                _ => {
                    self.start_rebuild();
                    None
                }
            },
            Err(e) => {
                tracing::warn!("run catalog: asking the writer: {e}");
                None
            }
        }
    }

    fn start_rebuild(&self) {
        {
            let mut last = self.catalog.last_rebuild.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < MIN_REBUILD_INTERVAL) {
                return;
            }
            if self.catalog.rebuilding.swap(true, AtomicOrdering::AcqRel) {
                return;
            }
            *last = Some(Instant::now());
        }
        let store = self.clone();
        tokio::spawn(async move {
            if let Err(e) = store.rebuild_catalog().await {
                tracing::warn!("run catalog: rebuilding: {e}");
            }
            store.catalog.rebuilding.store(false, AtomicOrdering::Release);
        });
    }

    /// Read every active run into a new snapshot, stamped with the writer's
    /// `data_version` read before any of it: if another connection commits
    /// while the rows are read, the stamp is already stale and the snapshot
    /// unused; the writer's own commits meanwhile are patched in.
    pub(super) async fn rebuild_catalog(&self) -> Result<()> {
        let started = Instant::now();
        let stamp = self.writer.probe().await?;
        let count: i64 = sqlx::query("SELECT COUNT(*) FROM runs WHERE lifecycle_stage = 'active'").fetch_one(&self.pool).await?.try_get(0)?;
        if count as usize > MAX_RUNS {
            *self.catalog.snapshot.write().unwrap_or_else(|p| p.into_inner()) = None;
            return Ok(());
        }
        let rows = sqlx::query(
            "SELECT r.id, r.name, r.experiment_id, r.user_id, r.status, r.start_time, r.end_time, r.lifecycle_stage, \
             r.parent_run_id, e.artifact_location, e.name AS experiment FROM runs r JOIN experiments e ON e.id = r.experiment_id \
             WHERE r.lifecycle_stage = 'active'",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut runs = Vec::with_capacity(rows.len());
        let mut index: HashMap<String, usize> = HashMap::with_capacity(rows.len());
        for r in &rows {
            let view = RunView::from_row(r)?;
            index.insert(view.id.clone(), runs.len());
            runs.push(Entry { view, experiment: r.try_get("experiment")?, rendered: OnceLock::new() });
        }
        let active =
            "SELECT x.run_id, x.key, x.value FROM {} x JOIN runs r ON r.id = x.run_id WHERE r.lifecycle_stage = 'active' ORDER BY x.run_id, x.key";
        for (table, is_params) in [("params", true), ("tags", false)] {
            let sql = active.replace("{}", table);
            for r in sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await? {
                if let Some(&i) = index.get(r.try_get::<&str, _>(0)?) {
                    let pair = (r.try_get(1)?, r.try_get(2)?);
                    if is_params { runs[i].view.params.push(pair) } else { runs[i].view.tags.push(pair) }
                }
            }
        }
        for r in sqlx::query(
            "SELECT m.run_id, m.key, m.step, m.timestamp, m.value, m.is_nan FROM latest_metrics m JOIN runs r ON r.id = m.run_id \
             WHERE r.lifecycle_stage = 'active' ORDER BY m.run_id, m.key",
        )
        .fetch_all(&self.pool)
        .await?
        {
            if let Some(&i) = index.get(r.try_get::<&str, _>(0)?) {
                runs[i].view.metrics.push(super::runs::metric_from_row(&r)?);
            }
        }
        for (id, io) in self.run_io("r.lifecycle_stage = 'active'", &[]).await? {
            if let Some(&i) = index.get(&id) {
                runs[i].view.io = io;
            }
        }
        let n = runs.len();
        let mut snap = Snapshot {
            stamp: (stamp.epoch, stamp.version),
            runs: runs.into_iter().map(Arc::new).collect(),
            index: Arc::new(index),
            columns: HashMap::new(),
        };
        for i in 0..n {
            snap.index_run(i);
        }
        self.catalog.publish(snap, stamp.patches);
        if let (Some(&render), Some(snap)) = (self.catalog.renderer.get(), self.catalog.current()) {
            for e in &snap.runs {
                let _ = e.rendered.set((render, render(&e.view).into()));
            }
        }
        tracing::debug!(runs = n, elapsed = ?started.elapsed(), "run catalog rebuilt");
        Ok(())
    }
}

impl Snapshot {
    /// The search as views (the tests compare them with SQL's), or `None`
    /// where it cannot be answered exactly here.
    #[cfg(test)]
    fn search(&self, q: &SearchQuery) -> Option<(Vec<RunView>, Option<i64>)> {
        let (hits, next) = self.hits(q)?;
        Some((hits.into_iter().map(|e| e.view.clone()).collect(), next))
    }

    fn hits(&self, q: &SearchQuery) -> Option<(Vec<&Entry>, Option<i64>)> {
        for o in &q.order_by {
            if o.entity == Entity::Attribute && !is_attribute(&o.key) {
                return None;
            }
        }
        let plan = q.filter.as_ref().map(|f| self.plan(f));
        let mut hits: Vec<usize> = Vec::new();
        for (i, e) in self.runs.iter().enumerate() {
            if !q.experiments.is_empty() && !q.experiments.contains(&e.experiment) {
                continue;
            }
            if !q.experiment_ids.is_empty() && !q.experiment_ids.contains(&e.view.experiment_id) {
                continue;
            }
            if let Some(p) = &plan
                && !self.matches(i, p)?
            {
                continue;
            }
            hits.push(i);
        }
        let orders: Vec<(&OrderBy, Option<&[u32]>)> = q.order_by.iter().map(|o| (o, self.column(o.entity, &o.key))).collect();
        hits.sort_by(|&a, &b| {
            for (o, col) in &orders {
                let ord = self.order_key(a, o, *col).cmp_nulls_last(&self.order_key(b, o, *col), o.descending);
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            let (a, b) = (&self.runs[a].view, &self.runs[b].view);
            b.start_time.cmp(&a.start_time).then_with(|| a.id.cmp(&b.id))
        });
        let start = (q.offset.max(0) as usize).min(hits.len());
        let end = start.saturating_add(q.max_results.max(0) as usize).min(hits.len());
        let next = (end < hits.len()).then_some(q.offset + q.max_results);
        Some((hits[start..end].iter().map(|&i| &*self.runs[i]).collect(), next))
    }

    fn column(&self, entity: Entity, key: &str) -> Option<&[u32]> {
        let kind = match entity {
            Entity::Metric => Kind::Metric,
            Entity::Param => Kind::Param,
            Entity::Tag => Kind::Tag,
            Entity::Attribute => return None,
        };
        // A missing key is a column of MISSING: `None` here too.
        self.columns.get(&(kind, key.to_string())).map(|c| c.as_slice())
    }

    fn plan<'a>(&'a self, f: &'a Filter) -> Plan<'a> {
        match f {
            Filter::And(a, b) => Plan::And(Box::new(self.plan(a)), Box::new(self.plan(b))),
            Filter::Or(a, b) => Plan::Or(Box::new(self.plan(a)), Box::new(self.plan(b))),
            Filter::Compare { entity, key, op, value } => Plan::Compare { entity: *entity, key, op: *op, value, column: self.column(*entity, key) },
        }
    }

    /// Run `i`'s metric, param or tag through its column.
    fn metric(&self, i: usize, column: Option<&[u32]>) -> Option<f64> {
        let slot = *column?.get(i)?;
        (slot != MISSING).then(|| self.runs[i].view.metrics[slot as usize].value).filter(|v| !v.is_nan())
    }

    fn text(&self, i: usize, entity: Entity, column: Option<&[u32]>) -> Option<&str> {
        let slot = *column?.get(i)?;
        let v = &self.runs[i].view;
        (slot != MISSING).then(|| if entity == Entity::Param { v.params[slot as usize].1.as_str() } else { v.tags[slot as usize].1.as_str() })
    }

    /// Does run `i` match? `None`: not answerable exactly here.
    fn matches(&self, i: usize, p: &Plan) -> Option<bool> {
        // No NOT in the language: SQL's NULL (a missing end time) can be
        // false here, as WHERE treats it.
        match p {
            Plan::And(a, b) => Some(self.matches(i, a)? && self.matches(i, b)?),
            Plan::Or(a, b) => Some(self.matches(i, a)? || self.matches(i, b)?),
            Plan::Compare { entity, key, op, value, column } => match entity {
                Entity::Metric => {
                    let Value::Number(n) = value else { return None };
                    Some(self.metric(i, *column).is_some_and(|v| number_holds(v, *op, *n).unwrap_or(false)))
                }
                Entity::Param | Entity::Tag => match self.text(i, *entity, *column) {
                    Some(v) => text_holds(v, *op, value),
                    None => Some(false),
                },
                Entity::Attribute => {
                    let e = &self.runs[i];
                    let v = &e.view;
                    let text = match *key {
                        "status" => Some(v.status.as_str()),
                        "run_name" => Some(v.name.as_str()),
                        "run_id" => Some(v.id.as_str()),
                        "experiment" => Some(e.experiment.as_str()),
                        _ => None,
                    };
                    match (text, *key, value) {
                        (Some(t), ..) => text_holds(t, *op, value),
                        (None, "start_time", Value::Number(n)) => number_holds(v.start_time as f64, *op, *n),
                        (None, "end_time", Value::Number(n)) => match v.end_time {
                            Some(t) => number_holds(t as f64, *op, *n),
                            None => number_holds(0.0, *op, *n).map(|_| false),
                        },
                        _ => None,
                    }
                }
            },
        }
    }

    fn order_key(&self, i: usize, o: &OrderBy, column: Option<&[u32]>) -> Key<'_> {
        let e = &self.runs[i];
        let v = &e.view;
        match o.entity {
            Entity::Metric => Key::Number(self.metric(i, column)),
            Entity::Param | Entity::Tag => Key::Text(self.text(i, o.entity, column)),
            Entity::Attribute => match o.key.as_str() {
                "start_time" => Key::Int(Some(v.start_time)),
                "end_time" => Key::Int(v.end_time),
                "status" => Key::Text(Some(&v.status)),
                "run_name" => Key::Text(Some(&v.name)),
                "run_id" => Key::Text(Some(&v.id)),
                _ => Key::Text(Some(&e.experiment)),
            },
        }
    }
}

/// A filter with each comparison's column looked up once.
enum Plan<'a> {
    And(Box<Plan<'a>>, Box<Plan<'a>>),
    Or(Box<Plan<'a>>, Box<Plan<'a>>),
    Compare { entity: Entity, key: &'a str, op: Op, value: &'a Value, column: Option<&'a [u32]> },
}

fn is_attribute(key: &str) -> bool {
    matches!(key, "status" | "run_name" | "run_id" | "start_time" | "end_time" | "experiment")
}

fn number_holds(v: f64, op: Op, n: f64) -> Option<bool> {
    Some(match op {
        Op::Eq => v == n,
        Op::Ne => v != n,
        Op::Lt => v < n,
        Op::Le => v <= n,
        Op::Gt => v > n,
        Op::Ge => v >= n,
        Op::Like | Op::ILike | Op::In | Op::NotIn => return None,
    })
}

fn text_holds(v: &str, op: Op, value: &Value) -> Option<bool> {
    let texts = |value: &Value| -> Option<Vec<String>> {
        match value {
            Value::List(items) => items.iter().map(|i| if let Value::Text(t) = i { Some(t.clone()) } else { None }).collect(),
            _ => None,
        }
    };
    Some(match (op, value) {
        (Op::In, list) => texts(list)?.iter().any(|t| t == v),
        (Op::NotIn, list) => !texts(list)?.iter().any(|t| t == v),
        (_, Value::Text(t)) => match op {
            Op::Eq => v == t,
            Op::Ne => v != t,
            Op::Lt => v < t.as_str(),
            Op::Le => v <= t.as_str(),
            Op::Gt => v > t.as_str(),
            Op::Ge => v >= t.as_str(),
            // SQLite's LIKE, and LOWER() on both sides for ILIKE: both
            // fold ASCII letters only.
            Op::Like | Op::ILike => like(v, t),
            Op::In | Op::NotIn => unreachable!("matched above"),
        },
        _ => return None,
    })
}

/// SQLite's LIKE without ESCAPE: `%` any run of characters, `_` one
/// character, ASCII letters equal whatever their case. Greedy with one
/// backtrack point (the last `%`), as glob matchers are; no allocation.
fn like(text: &str, pattern: &str) -> bool {
    let (t, p) = (text.as_bytes(), pattern.as_bytes());
    let next = |s: &str, i: usize| s[i..].chars().next().expect("inside the string");
    let (mut ti, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            let pc = next(pattern, pi);
            if pc == '%' {
                pi += 1;
                star = Some((pi, ti));
                continue;
            }
            let tc = next(text, ti);
            if pc == '_' || pc.eq_ignore_ascii_case(&tc) {
                ti += tc.len_utf8();
                pi += pc.len_utf8();
                continue;
            }
        }
        match star {
            // Let the last % take one more character and try again.
            Some((sp, st)) => {
                let st = st + next(text, st).len_utf8();
                star = Some((sp, st));
                (pi, ti) = (sp, st);
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&b| b == b'%')
}

/// One ordering's key of a run; `None` sorts last either way.
enum Key<'a> {
    Number(Option<f64>),
    Int(Option<i64>),
    Text(Option<&'a str>),
}

impl Key<'_> {
    fn is_null(&self) -> bool {
        matches!(self, Key::Number(None) | Key::Int(None) | Key::Text(None))
    }

    fn cmp_nulls_last(&self, other: &Self, descending: bool) -> Ordering {
        match (self.is_null(), other.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => {
                let o = match (self, other) {
                    (Key::Number(Some(a)), Key::Number(Some(b))) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
                    (Key::Int(Some(a)), Key::Int(Some(b))) => a.cmp(b),
                    (Key::Text(Some(a)), Key::Text(Some(b))) => a.cmp(b),
                    _ => Ordering::Equal,
                };
                if descending { o.reverse() } else { o }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RunStatus;
    use kiln_types::filter;

    /// Runs in two experiments with every kind of value search meets:
    /// missing and NaN metrics, infinities, mixed-case and non-ASCII text,
    /// equal start times, a run without an end, a deleted run.
    async fn seed(store: &Store) {
        let models = ["forest", "Forest", "linear", "knn", "forêt"];
        let teams = ["ml-core", "ML-edge", "data", "ml_ops", "plat%form"];
        let second = store.experiment_id("second").await.unwrap();
        for i in 0..40i64 {
            let id = store
                .create_run_in(if i % 3 == 0 { "0" } else { &second }, None, &format!("run-{:02}", i % 17), "u", 1_000 + i % 7, "t")
                .await
                .unwrap();
            let mut params = vec![("model".to_string(), models[i as usize % 5].to_string())];
            if i % 4 != 0 {
                params.push(("depth".into(), format!("{}", i % 9)));
            }
            let value = match i % 11 {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => f64::NEG_INFINITY,
                _ => ((i * 37) % 100) as f64 / 100.0,
            };
            let metrics = if i % 13 == 5 { vec![] } else { vec![MetricPoint { key: "accuracy".into(), value, step: 0, timestamp: 1 }] };
            store.log_batch(&id, &metrics, &params, &[("team".into(), teams[i as usize % 5].into())]).await.unwrap();
            if i % 5 != 0 {
                store.finish_run(&id, if i % 2 == 0 { RunStatus::Finished } else { RunStatus::Failed }, None).await.unwrap();
            }
            if i == 7 {
                store.set_run_stage(&id, "deleted").await.unwrap();
            }
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_catalog_answers_every_search_as_sql_does() {
        let (store, _dir) = crate::testing::sqlite().await;
        store.ensure_default_experiment().await.unwrap();
        seed(&store).await;
        store.rebuild_catalog().await.unwrap();
        let snap = store.catalog.current().unwrap();
        let filters = [
            "",
            "metrics.accuracy > 0.5",
            "metrics.accuracy <= 0.37 or metrics.accuracy = 0.74",
            "metrics.accuracy != 0.11",
            "metrics.accuracy >= -1000000 and params.model = 'forest'",
            "params.model LIKE 'f%'",
            "params.model ILIKE 'FOR%'",
            "params.model LIKE '_orest'",
            "params.model LIKE 'for_t'",
            "params.depth > '4'",
            "params.depth != '3'",
            "params.model IN ('knn', 'forêt')",
            "params.model NOT IN ('forest')",
            "tags.team LIKE 'ml%' and (params.model = 'linear' or metrics.accuracy < 0.2)",
            "tags.team LIKE 'plat\\%%'",
            "tags.team = 'ML-edge'",
            "attributes.status = 'RUNNING'",
            "attributes.status IN ('FAILED', 'RUNNING') and attributes.run_name LIKE 'run-1%'",
            "attributes.start_time > 1003",
            "attributes.end_time > 0",
            "attributes.end_time != 5",
            "attributes.experiment = 'second'",
        ];
        let orders: [&[&str]; 7] = [
            &[],
            &["metrics.accuracy DESC"],
            &["metrics.accuracy ASC"],
            &["params.depth DESC", "attributes.run_name"],
            &["tags.team", "metrics.accuracy DESC"],
            &["attributes.end_time DESC"],
            &["attributes.start_time", "attributes.status DESC"],
        ];
        let mut compared = 0;
        for f in filters {
            for order in orders {
                for (max_results, offset) in [(1000, 0), (4, 0), (4, 8)] {
                    let q = SearchQuery {
                        filter: filter::parse(f).unwrap(),
                        order_by: order.iter().map(|o| filter::parse_order_by(o).unwrap()).collect(),
                        max_results,
                        offset,
                        ..Default::default()
                    };
                    let (ids, next) = store.search_run_ids(&q).await.unwrap();
                    let (views, snap_next) = snap.search(&q).unwrap_or_else(|| panic!("declined `{f}` {order:?}"));
                    let got: Vec<&str> = views.iter().map(|v| v.id.as_str()).collect();
                    assert_eq!(
                        (got, snap_next),
                        (ids.iter().map(String::as_str).collect(), next),
                        "`{f}` ordered by {order:?}, page {max_results}@{offset}"
                    );
                    compared += 1;
                }
            }
        }
        assert_eq!(compared, filters.len() * orders.len() * 3);
        // And the rendering matches run_views field for field.
        let all = SearchQuery { max_results: 1000, ..Default::default() };
        let (ids, _) = store.search_run_ids(&all).await.unwrap();
        let sql_views = store.run_views(&ids).await.unwrap();
        let (views, _) = snap.search(&all).unwrap();
        assert_eq!(format!("{views:?}"), format!("{sql_views:?}"));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn tracking_writes_are_patched_in_and_other_commits_make_it_stale() {
        let (store, _dir) = crate::testing::sqlite().await;
        store.ensure_default_experiment().await.unwrap();
        seed(&store).await;
        let runs = store.search_run_ids(&SearchQuery { max_results: 1000, ..Default::default() }).await.unwrap().0;
        store.rebuild_catalog().await.unwrap();
        let fresh = |store: &Store| {
            let store = store.clone();
            async move {
                let stamp = store.writer.probe().await.unwrap();
                store.catalog.current().is_some_and(|s| s.stamp == (stamp.epoch, stamp.version))
            }
        };
        assert!(fresh(&store).await);
        // Tracking writes through the writer: new keys, a newer and an
        // older point, a param, tags replaced; from many tasks at once, so
        // that they share groups.
        let mut tasks = Vec::new();
        for (n, run) in runs.iter().enumerate().take(12) {
            let (store, run) = (store.clone(), run.clone());
            tasks.push(tokio::spawn(async move {
                let point = |key: &str, value: f64, step: i64| MetricPoint { key: key.into(), value, step, timestamp: 5 };
                store
                    .log_batch(
                        &run,
                        &[point("accuracy", 0.99, 10), point("fresh", n as f64, 0)],
                        &[(format!("p{n}"), "x".into())],
                        &[("team".into(), "ml-new".into())],
                    )
                    .await
                    .unwrap();
                store.log_metrics(&run, &[point("accuracy", 0.01, 3)]).await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(fresh(&store).await, "the writer's own commits leave the snapshot current");
        let snap = store.catalog.current().unwrap();
        let queries = [
            ("metrics.accuracy > 0.9", vec!["metrics.accuracy DESC"]),
            ("metrics.fresh >= 0", vec!["metrics.fresh DESC"]),
            ("tags.team = 'ml-new'", vec!["attributes.run_name"]),
            ("params.p3 = 'x' or params.p7 = 'x'", vec![]),
            ("", vec!["tags.team", "metrics.accuracy"]),
        ];
        for (f, order) in queries {
            let q = SearchQuery {
                filter: filter::parse(f).unwrap(),
                order_by: order.iter().map(|o| filter::parse_order_by(o).unwrap()).collect(),
                max_results: 1000,
                ..Default::default()
            };
            let (ids, _) = store.search_run_ids(&q).await.unwrap();
            let sql = store.run_views(&ids).await.unwrap();
            let (views, _) = snap.search(&q).unwrap();
            assert_eq!(format!("{views:?}"), format!("{sql:?}"), "`{f}`: the patched snapshot says what SQL says");
        }
        // Any other commit (a run finished, from the pool) makes it stale,
        // and the next search answers from SQL.
        store.finish_run(&runs[0], RunStatus::Killed, None).await.unwrap();
        assert!(!fresh(&store).await);
        let q = SearchQuery { filter: filter::parse("attributes.status = 'KILLED'").unwrap(), max_results: 10, ..Default::default() };
        let (found, _) = store.search_rendered(&q, |v| v.id.clone().into_bytes()).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(&*found[0], runs[0].as_bytes());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn rendered_runs_are_written_once_per_snapshot_and_match_sql() {
        let (store, _dir) = crate::testing::sqlite().await;
        store.ensure_default_experiment().await.unwrap();
        seed(&store).await;
        store.rebuild_catalog().await.unwrap();
        fn render(v: &RunView) -> Vec<u8> {
            format!("{} {:?} {:?} {}", v.id, v.params, v.tags, v.metrics.len()).into_bytes()
        }
        let q = SearchQuery { filter: filter::parse("tags.team LIKE 'ml%'").unwrap(), max_results: 5, offset: 2, ..Default::default() };
        let (first, next) = store.search_rendered(&q, render).await.unwrap();
        let (again, _) = store.search_rendered(&q, render).await.unwrap();
        assert!(!first.is_empty() && first.iter().zip(&again).all(|(a, b)| Arc::ptr_eq(a, b)), "the second search reuses the bytes");
        let (ids, sql_next) = store.search_run_ids(&q).await.unwrap();
        let sql: Vec<Vec<u8>> = store.run_views(&ids).await.unwrap().iter().map(render).collect();
        assert_eq!((first.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), next), (sql, sql_next));
    }

    #[test]
    fn like_is_sqlites() {
        assert!(like("Forest", "f%"));
        assert!(like("forêt", "for_t"));
        assert!(!like("FORÊT", "forêt"), "only ASCII letters fold");
        assert!(like("abc", "%%c"));
        assert!(like("", "%"));
        assert!(!like("", "_"));
        assert!(like("a%b", "a%b"));
        assert!(!like("ab", "a_b"));
        assert!(like("mississippi", "%iss%ppi"));
        assert!(!like("mississippi", "%iss%ppx"));
        assert!(like("ML-Core", "ml-%e"));
        assert!(like("äbc", "_b%"));
        assert!(!like("abc", "abcd%"));
    }
}
