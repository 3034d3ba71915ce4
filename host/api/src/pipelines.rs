//! Pipelines over REST: register, list, queue a run, watch it, cancel it.

use super::ApiError;
use crate::app::App;
use crate::pipeline::{self, Outputs, RunRequest};
use crate::store::{Change, JobStatus, RunStatus, StageRecord};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::Stream;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::convert::Infallible;
use tokio::sync::broadcast;

/// `POST /api/v1/pipelines` with the TOML text as the body.
pub async fn register(State(app): State<App>, body: String) -> Result<(StatusCode, Json<Value>), ApiError> {
    let root = app.workspace.root().to_path_buf();
    let p = pipeline::register(&app, &body, "request body", &root).await?;
    let stages: Vec<&str> = p.stages.iter().map(|s| s.name.as_str()).collect();
    Ok((StatusCode::CREATED, Json(json!({"name": p.name, "stages": stages}))))
}

pub async fn list(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    let list = app.store.list_pipelines().await?;
    Ok(Json(json!(list.iter().map(|p| json!({"name": p.name, "updated_at": p.updated_at, "base_dir": p.base_dir})).collect::<Vec<_>>())))
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    /// `{"train.c": 0.5}` or `["train.c=0.5"]`
    #[serde(default)]
    set: Option<Value>,
    #[serde(default)]
    no_cache: bool,
    #[serde(default)]
    force: Vec<String>,
}

/// `POST /api/v1/pipelines/{name}/runs` → 202 with the run's id.
pub async fn submit(State(app): State<App>, Path(name): Path<String>, body: Option<Json<SubmitBody>>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let set = match body.set {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "`set` items must be \"STAGE.PARAM=VALUE\" strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(Value::Object(map)) => {
            map.into_iter().map(|(k, v)| format!("{k}={}", if let Value::String(s) = &v { format!("{s:?}") } else { v.to_string() })).collect()
        }
        Some(_) => return Err(ApiError::new(StatusCode::BAD_REQUEST, "`set` must be an object or a list")),
    };
    let request = RunRequest { pipeline: name, set, no_cache: body.no_cache, force: body.force };
    let id = pipeline::submit(&app, &request).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"id": id, "status": "queued"}))))
}

/// The run's state as clients see it: queued, running, succeeded, failed, cancelled.
async fn run_state(app: &App, id: &str) -> Result<Value, ApiError> {
    let run = app.store.get_run(id).await?;
    let job = app.store.job_for_run(id).await?;
    let status = match &job {
        Some(j) => j.status,
        None => JobStatus::of_run(run.summary.status),
    };
    let stages: Vec<Value> = run.stages.iter().map(stage_json).collect();
    Ok(json!({
        "id": run.summary.id,
        "pipeline": run.summary.experiment,
        "status": status,
        "attempts": job.as_ref().map(|j| j.attempts),
        "error": job.as_ref().and_then(|j| j.error.clone()).or(run.error.clone()),
        "start_time": run.summary.start_time,
        "end_time": run.summary.end_time,
        "params": run.summary.params,
        "metrics": run.summary.metrics,
        "stages": stages,
    }))
}

fn stage_json(s: &StageRecord) -> Value {
    let metrics: BTreeMap<String, f64> = serde_json::from_str::<Outputs>(&s.outputs).map(|o| o.metrics).unwrap_or_default();
    json!({
        "stage": s.stage,
        "status": s.status,
        "started_at": s.started_at,
        "ended_at": s.ended_at,
        "attempts": s.attempts,
        "peak_memory": s.peak_memory,
        "error": s.error,
        "metrics": metrics,
    })
}

pub async fn status(State(app): State<App>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(run_state(&app, &id).await?))
}

/// `POST /api/v1/pipeline-runs/{id}/cancel`
pub async fn cancel(State(app): State<App>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let job =
        app.store.job_for_run(&id).await?.ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("no queued run `{id}` (only runs queued through the API can be cancelled)"))
        })?;
    if !app.store.cancel_job(&job.id).await? {
        return Err(ApiError::new(StatusCode::CONFLICT, format!("run `{id}` already ended ({})", job.status)));
    }
    // A queued run never starts; a running one is stopped by its worker at
    // its next heartbeat.
    if job.status == JobStatus::Queued {
        app.store.finish_run(&id, RunStatus::Killed, Some("cancelled")).await?;
    }
    Ok(Json(json!({"id": id, "status": "cancelled"})))
}

/// `GET /api/v1/pipeline-runs/{id}/events`: server-sent events. `stage` when
/// a stage's state changes, `log` for each log line, `metrics` when the
/// run's latest metrics change (live metrics included), `progress` while a
/// plugin reports it, and a final `status` once the run has ended.
///
/// Nothing is polled: the stream waits on the store's change feed and
/// re-reads the run only when a change names it (or another process
/// changed something it cannot name), so an idle watcher costs the
/// database nothing.
pub async fn events(State(app): State<App>, Path(id): Path<String>) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // Subscribe before the first read, so no change falls between the two.
    let changes = app.store.subscribe();
    app.store.get_run(&id).await?;
    let cursor = Cursor {
        app,
        id,
        changes,
        seen: BTreeMap::new(),
        metrics: serde_json::Map::new(),
        log_seq: 0,
        pending: Default::default(),
        stale: true,
        done: false,
    };
    let stream = futures_util::stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(e) = c.pending.pop_front() {
                return Some((Ok(e), c));
            }
            if c.done {
                return None;
            }
            if c.stale {
                c.stale = false;
                c.reread().await;
                continue;
            }
            match c.changes.recv().await {
                Ok(Change::Progress { run, stage, done, total, message }) if run == c.id => {
                    let data = json!({"stage": stage, "done": done, "total": total, "message": message});
                    c.pending.push_back(Event::default().event("progress").data(data.to_string()));
                }
                Ok(change) => c.stale = change.run() == Some(c.id.as_str()) || matches!(change, Change::Job { .. } | Change::Unknown),
                // Fell behind the feed: whatever was missed is re-read.
                Err(broadcast::error::RecvError::Lagged(_)) => c.stale = true,
                Err(broadcast::error::RecvError::Closed) => {
                    c.done = true;
                    c.pending.push_back(Event::default().event("error").data("the server is shutting down"));
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Where one run-events stream stands.
struct Cursor {
    app: App,
    id: String,
    changes: broadcast::Receiver<Change>,
    /// Last status sent per stage.
    seen: BTreeMap<String, String>,
    /// Last metrics sent.
    metrics: serde_json::Map<String, Value>,
    log_seq: i64,
    pending: std::collections::VecDeque<Event>,
    /// The run changed since it was last read.
    stale: bool,
    done: bool,
}

impl Cursor {
    /// Read the run and queue an event for whatever differs from what was sent.
    async fn reread(&mut self) {
        let state = match run_state(&self.app, &self.id).await {
            Ok(s) => s,
            Err(e) => {
                self.done = true;
                self.pending.push_back(Event::default().event("error").data(e.message));
                return;
            }
        };
        for s in state["stages"].as_array().into_iter().flatten() {
            let name = s["stage"].as_str().unwrap_or("").to_string();
            let st = s["status"].as_str().unwrap_or("").to_string();
            if self.seen.get(&name) != Some(&st) {
                self.seen.insert(name, st);
                self.pending.push_back(Event::default().event("stage").data(s.to_string()));
            }
        }
        if let Ok(lines) = self.app.store.run_logs_after(&self.id, self.log_seq).await {
            for (seq, l) in lines {
                self.log_seq = seq;
                self.pending
                    .push_back(Event::default().event("log").data(json!({"stage": l.stage, "level": l.level, "message": l.message}).to_string()));
            }
        }
        if let Some(metrics) = state["metrics"].as_object() {
            let changed: serde_json::Map<String, Value> =
                metrics.iter().filter(|(k, v)| self.metrics.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect();
            if !changed.is_empty() {
                self.metrics.extend(changed.clone());
                self.pending.push_back(Event::default().event("metrics").data(Value::Object(changed).to_string()));
            }
        }
        let status = state["status"].as_str().unwrap_or("");
        if JobStatus::parse(status).is_some_and(JobStatus::is_final) {
            self.done = true;
            self.pending.push_back(Event::default().event("status").data(json!({"id": self.id, "status": status}).to_string()));
        }
    }
}
