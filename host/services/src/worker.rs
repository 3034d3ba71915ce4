//! A worker: claims pipeline-run jobs from the store's queue, runs them,
//! keeps its lease alive with heartbeats, and gives up a job it no longer
//! owns (cancelled, or reclaimed after its lease ran out).

use crate::app::App;
use crate::pipeline;
use crate::store::{Change, JobStatus, RunStatus};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Notify, watch};

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub id: String,
    /// How long a claim lasts without a heartbeat; a worker that dies is
    /// replaced this long after its last heartbeat.
    pub lease: Duration,
    /// How often to look for work when the queue is empty and the change
    /// feed says nothing: a new job wakes the worker at once; this catches
    /// a lease that ran out (its worker died), which no write announces.
    pub poll: Duration,
}

impl WorkerOptions {
    pub fn new(lease: Duration) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
        let id = format!("{host}-{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..6]);
        WorkerOptions { id, lease, poll: Duration::from_secs(1) }
    }
}

/// Work until `shutdown` turns true.
pub async fn run(app: App, options: WorkerOptions, mut shutdown: watch::Receiver<bool>) {
    tracing::info!(worker = %options.id, "worker started");
    let lease_ms = options.lease.as_millis() as i64;
    let mut changes = app.store.subscribe();
    while !*shutdown.borrow() {
        match app.store.claim_job(&options.id, lease_ms).await {
            Ok(Some(job)) => process(&app, &options, job).await,
            Ok(None) => {
                let job_changed = async {
                    loop {
                        match changes.recv().await {
                            Ok(Change::Job { .. } | Change::Unknown) | Err(RecvError::Lagged(_)) => return,
                            Ok(_) => {}
                            Err(RecvError::Closed) => return std::future::pending().await,
                        }
                    }
                };
                tokio::select! {
                    _ = job_changed => {}
                    _ = tokio::time::sleep(options.poll) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Err(e) => {
                tracing::warn!("claiming a job failed: {e}");
                tokio::time::sleep(options.poll).await;
            }
        }
    }
}

async fn process(app: &App, options: &WorkerOptions, job: crate::store::Job) {
    tracing::info!(worker = %options.id, job = %job.id, attempt = job.attempts, "running job");
    if job.kind != pipeline::PIPELINE_JOB {
        let _ = app.store.finish_job(&job.id, &options.id, JobStatus::Failed, Some(&format!("unknown job kind `{}`", job.kind))).await;
        return;
    }
    let lost = Arc::new(Notify::new());
    let heartbeat = {
        let (store, id, worker, lost) = (app.store.clone(), job.id.clone(), options.id.clone(), lost.clone());
        let lease_ms = options.lease.as_millis() as i64;
        let every = options.lease / 3;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match store.heartbeat_job(&id, &worker, lease_ms).await {
                    Ok(true) => {}
                    Ok(false) => {
                        lost.notify_one();
                        return;
                    }
                    // A database hiccup is not a lost lease; try again next beat.
                    Err(e) => tracing::warn!("heartbeat for job {id} failed: {e}"),
                }
            }
        })
    };
    let outcome = tokio::select! {
        r = pipeline::run_job(app, &job) => Some(r),
        _ = lost.notified() => None,
    };
    heartbeat.abort();
    match outcome {
        Some(Ok(run)) => {
            let status = if run.succeeded() { JobStatus::Succeeded } else { JobStatus::Failed };
            let error = run.results.iter().find(|r| !r.status.ok()).map(|r| format!("stage `{}` {}", r.name, r.status.word()));
            let _ = app.store.finish_job(&job.id, &options.id, status, error.as_deref()).await;
        }
        Some(Err(e)) => {
            let msg = format!("{e:#}");
            tracing::warn!(job = %job.id, "job failed: {msg}");
            if let Some(run) = &job.run_id {
                let _ = app.store.finish_run(run, RunStatus::Failed, Some(&msg)).await;
            }
            let _ = app.store.finish_job(&job.id, &options.id, JobStatus::Failed, Some(&msg)).await;
        }
        None => {
            // Dropping the run future stopped its stages (and their plugin
            // calls). If it was cancelled, say so on the run; if another
            // worker took it over, that worker owns the run now.
            if let Ok(Some(j)) = app.store.job(&job.id).await
                && j.status == JobStatus::Cancelled
                && let Some(run) = &job.run_id
            {
                let _ = app.store.finish_run(run, RunStatus::Killed, Some("cancelled")).await;
            }
            tracing::info!(job = %job.id, "job given up (cancelled or lease lost)");
        }
    }
}
