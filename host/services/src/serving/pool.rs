//! Warm instances per deployment: each holds the deployed model already
//! loaded ([`WarmModel`]), so a request pays for `predict` only.
//!
//! A pool has `instances` permits. A request takes a permit (waiting at
//! most [`QUEUE_WAIT`]), then an idle instance or a new one, and gives the
//! instance back unless it is spent (it trapped, timed out, ran out of
//! memory or broke the output contract): a spent instance is dropped and a
//! fresh one is made on a later request, so one bad request costs one
//! instance, never the others' answers. A request dropped mid-call (the
//! client went away) drops the instance it held, for the same reason.

use super::signature::Signature;
use super::stats::Role;
use super::{ServeError, Served};
use crate::app::App;
use crate::dataset::Table;
use crate::runtime::{Limits, LoadedPlugin, WarmModel};
use crate::store::DeploymentRecord;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long a request waits for a free instance before a 503.
pub const QUEUE_WAIT: Duration = Duration::from_secs(10);

/// One deployment's instances of one version.
pub struct Pool {
    pub deployment: DeploymentRecord,
    pub signature: Signature,
    plugin: Arc<LoadedPlugin>,
    model: Arc<Vec<u8>>,
    limits: Limits,
    /// Instances at most, busy and idle: the deployment's `instances`.
    size: usize,
    permits: Semaphore,
    idle: Mutex<Vec<WarmModel>>,
    /// Instances in existence, idle and busy.
    live: AtomicUsize,
    /// Instances thrown away after a failure.
    replaced: AtomicU64,
}

impl Pool {
    pub fn new(deployment: DeploymentRecord, signature: Signature, plugin: Arc<LoadedPlugin>, model: Vec<u8>, limits: Limits) -> Self {
        let size = deployment.instances.max(1) as usize;
        Pool {
            deployment,
            signature,
            plugin,
            model: Arc::new(model),
            limits,
            size,
            permits: Semaphore::new(size),
            idle: Mutex::new(Vec::with_capacity(size)),
            live: AtomicUsize::new(0),
            replaced: AtomicU64::new(0),
        }
    }

    /// Whether this pool still serves what `current` says.
    pub fn serves(&self, current: &DeploymentRecord) -> bool {
        let d = &self.deployment;
        (d.model_name.as_str(), d.version, d.instances, d.timeout_ms, d.max_rows)
            == (current.model_name.as_str(), current.version, current.instances, current.timeout_ms, current.max_rows)
    }

    /// Fill the pool with loaded instances up to its size (at start-up and
    /// after a deploy, so the first requests do not pay for loading).
    ///
    /// Each instance is made holding a permit, as a request would: a
    /// request that comes while the pool fills waits for a loaded instance
    /// rather than making one of its own that the pool would then have no
    /// room for (a model that keeps state between calls would see its
    /// instance swapped under it).
    pub async fn warm_up(&self, app: &App) -> Result<(), ServeError> {
        loop {
            let Ok(_permit) = self.permits.acquire().await else { return Ok(()) };
            if self.live.load(Ordering::Acquire) >= self.size {
                return Ok(());
            }
            let instance = self.instantiate(app).await?;
            self.give_back(instance);
        }
    }

    /// Keep an instance for the next request, unless the pool already
    /// holds as many as it may.
    fn give_back(&self, instance: WarmModel) {
        let mut idle = self.idle.lock().unwrap();
        if idle.len() < self.size {
            idle.push(instance);
        } else {
            self.live.fetch_sub(1, Ordering::AcqRel);
        }
    }

    async fn instantiate(&self, app: &App) -> Result<WarmModel, ServeError> {
        let runtime = app.runtime().map_err(|e| ServeError::Unavailable(format!("{e:#}")))?;
        let instance = runtime.warm(&self.plugin, &self.model, &self.limits).await.map_err(|e| ServeError::Load(self.label(), e))?;
        self.live.fetch_add(1, Ordering::AcqRel);
        Ok(instance)
    }

    fn label(&self) -> String {
        format!("{} version {}", self.deployment.model_name, self.deployment.version)
    }

    /// Predict `features` (already checked against the signature) on a
    /// warm instance, waiting at most [`QUEUE_WAIT`] for one.
    pub async fn predict(&self, app: &App, features: Table, role: Role) -> Result<Served, ServeError> {
        let _permit = match tokio::time::timeout(QUEUE_WAIT, self.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            _ => {
                return Err(ServeError::Busy(format!(
                    "all {} instances of deployment `{}` stayed busy for {QUEUE_WAIT:?}",
                    self.deployment.instances, self.deployment.name
                )));
            }
        };
        self.predict_holding(app, features, role).await
    }

    /// As [`Pool::predict`] if an instance is free now; `None` if none is.
    pub async fn try_predict(&self, app: &App, features: Table) -> Option<Result<Served, ServeError>> {
        let _permit = self.permits.try_acquire().ok()?;
        Some(self.predict_holding(app, features, Role::Shadow).await)
    }

    async fn predict_holding(&self, app: &App, features: Table, role: Role) -> Result<Served, ServeError> {
        let idle = self.idle.lock().unwrap().pop();
        let instance = match idle {
            Some(i) => i,
            None => self.instantiate(app).await?,
        };
        // Counted out of `live` if this future is dropped mid-call.
        let mut held = Held { pool: self, instance: Some(instance) };
        let instance = held.instance.as_mut().expect("just put");
        let outcome = instance.predict(features).await;
        let instance = held.instance.take().expect("still held");
        if instance.is_spent() {
            self.live.fetch_sub(1, Ordering::AcqRel);
            let replaced = self.replaced.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(deployment = %self.deployment.name, replaced, "a served instance failed and was thrown away; a fresh one takes its place");
        } else {
            self.give_back(instance);
        }
        match outcome {
            Ok(predictions) => Ok(Served { model_name: self.deployment.model_name.clone(), version: self.deployment.version, role, predictions }),
            Err(e) => Err(ServeError::Predict(self.label(), e)),
        }
    }

    /// Instances thrown away after a failure, since the pool was made.
    pub fn replaced(&self) -> u64 {
        self.replaced.load(Ordering::Relaxed)
    }

    /// Instances loaded and waiting.
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap().len()
    }
}

/// An instance out of the pool, for the length of one call.
struct Held<'a> {
    pool: &'a Pool,
    instance: Option<WarmModel>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if self.instance.is_some() {
            self.pool.live.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The pools of every version of every deployment this process serves.
#[derive(Default)]
pub struct Pools {
    /// By (deployment, model, version).
    by_version: Mutex<HashMap<(String, String, i64), Arc<Pool>>>,
}

fn key(d: &DeploymentRecord) -> (String, String, i64) {
    (d.name.clone(), d.model_name.clone(), d.version)
}

impl Pools {
    /// The pool serving `current` (a deployment as one of its versions sees
    /// it), if one is made and still up to date.
    pub fn get(&self, current: &DeploymentRecord) -> Option<Arc<Pool>> {
        self.by_version.lock().unwrap().get(&key(current)).filter(|p| p.serves(current)).cloned()
    }

    /// Keep `pool` for its deployment's version; the pool it replaces is
    /// dropped once its last request ends.
    pub fn put(&self, pool: Arc<Pool>) -> Arc<Pool> {
        let mut map = self.by_version.lock().unwrap();
        // Two requests raced to make it: keep the first.
        if let Some(held) = map.get(&key(&pool.deployment)).filter(|p| p.serves(&pool.deployment)) {
            return held.clone();
        }
        map.insert(key(&pool.deployment), pool.clone());
        pool
    }

    pub fn remove(&self, name: &str) {
        self.by_version.lock().unwrap().retain(|(d, _, _), _| d != name);
    }

    /// Keep only the pools of versions that `deployments` (all of them)
    /// still serve in some role: a rolled-back canary's instances go.
    pub fn retain(&self, deployments: &[DeploymentRecord]) {
        let served: std::collections::HashSet<(String, String, i64)> = deployments
            .iter()
            .flat_map(|d| {
                let stable = Some((d.model_name.clone(), d.version));
                let others = [&d.canary, &d.shadow].into_iter().flatten().map(|t| (t.model_name.clone(), t.version));
                stable.into_iter().chain(others).map(|(m, v)| (d.name.clone(), m, v))
            })
            .collect();
        self.by_version.lock().unwrap().retain(|k, _| served.contains(k));
    }

    /// The pool of `d`'s version playing `role`, if this process made one.
    pub fn of_role(&self, d: &DeploymentRecord, role: Role) -> Option<Arc<Pool>> {
        self.get(&super::rollout::as_role(d, role)?)
    }
}
