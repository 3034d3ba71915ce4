//! The DAG engine: runs stages once their upstream stages are done,
//! independent ones in parallel (bounded), skips what sits downstream of a
//! failure or a failed gate. It calls plugins only through
//! [`StageExecutor`], so its logic is tested without Wasm.

use super::spec::{Action, Pipeline, Stage};
use kiln_types::status::StageState;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

#[derive(Debug, Clone, PartialEq)]
pub enum StageStatus {
    /// The plugin ran and succeeded.
    Ran,
    /// Outputs were reused from an identical earlier run.
    Cached,
    /// Not run because something upstream failed.
    Skipped(String),
    /// A gate whose check held.
    GatePassed,
    /// A gate whose check did not hold.
    GateFailed(String),
    Failed(String),
}

impl StageStatus {
    /// As recorded (the reason, if any, goes in the stage's `error`).
    pub fn state(&self) -> StageState {
        match self {
            StageStatus::Ran => StageState::Ran,
            StageStatus::Cached => StageState::Cached,
            StageStatus::Skipped(_) => StageState::Skipped,
            StageStatus::GatePassed => StageState::Passed,
            StageStatus::GateFailed(_) => StageState::GateFailed,
            StageStatus::Failed(_) => StageState::Failed,
        }
    }
    pub fn word(&self) -> &'static str {
        self.state().as_str()
    }
    pub fn ok(&self) -> bool {
        self.state().ok()
    }
}

/// What a stage produced.
#[derive(Debug, Clone)]
pub struct StageResult {
    pub name: String,
    pub status: StageStatus,
    pub metrics: BTreeMap<String, f64>,
    /// Executor-defined outputs (model blob, report blob, ...), as JSON.
    pub outputs: serde_json::Value,
    pub elapsed: Duration,
    pub peak_memory: Option<u64>,
    pub attempts: u32,
    /// Plugin name@version, for display.
    pub plugin: Option<String>,
}

impl StageResult {
    pub fn new(name: &str, status: StageStatus) -> Self {
        StageResult {
            name: name.to_string(),
            status,
            metrics: BTreeMap::new(),
            outputs: serde_json::Value::Null,
            elapsed: Duration::ZERO,
            peak_memory: None,
            attempts: 0,
            plugin: None,
        }
    }
}

/// Runs one plugin stage given its upstream results.
pub trait StageExecutor: Send + Sync + 'static {
    fn execute(&self, stage: Stage, upstream: BTreeMap<String, StageResult>) -> impl Future<Output = StageResult> + Send;
}

pub enum Event<'a> {
    /// The run's id, before any stage starts (from `pipeline::execute`).
    Run(&'a str),
    Started(&'a Stage),
    Finished(&'a StageResult),
}

/// Run every stage; returns results in the pipeline's stage order.
pub async fn run<E: StageExecutor>(pipeline: &Pipeline, executor: Arc<E>, jobs: usize, mut on_event: impl FnMut(Event<'_>)) -> Vec<StageResult> {
    let jobs = jobs.max(1);
    let mut done: BTreeMap<String, StageResult> = BTreeMap::new();
    let mut running: BTreeSet<String> = BTreeSet::new();
    let mut task_stage: BTreeMap<tokio::task::Id, String> = BTreeMap::new();
    let mut set: JoinSet<StageResult> = JoinSet::new();
    loop {
        // Start (or settle without running) every stage whose needs are done.
        let mut progressed = true;
        while progressed {
            progressed = false;
            for stage in &pipeline.stages {
                if done.contains_key(&stage.name) || running.contains(&stage.name) {
                    continue;
                }
                if !stage.needs.iter().all(|n| done.contains_key(n)) {
                    continue;
                }
                if let Some(bad) = stage.needs.iter().find(|n| !done[*n].status.ok()) {
                    let r = StageResult::new(&stage.name, StageStatus::Skipped(format!("`{bad}` did not succeed")));
                    on_event(Event::Finished(&r));
                    done.insert(stage.name.clone(), r);
                    progressed = true;
                    continue;
                }
                match &stage.action {
                    Action::Gate { check, text } => {
                        let upstream: BTreeMap<String, BTreeMap<String, f64>> =
                            stage.needs.iter().map(|n| (n.clone(), done[n].metrics.clone())).collect();
                        let status = match check.eval(&upstream) {
                            Ok(true) => StageStatus::GatePassed,
                            Ok(false) => StageStatus::GateFailed(format!("`{text}` does not hold")),
                            Err(e) => StageStatus::Failed(format!("cannot evaluate `{text}`: {e}")),
                        };
                        let r = StageResult::new(&stage.name, status);
                        on_event(Event::Finished(&r));
                        done.insert(stage.name.clone(), r);
                        progressed = true;
                    }
                    Action::Plugin { .. } => {
                        if running.len() >= jobs {
                            continue;
                        }
                        on_event(Event::Started(stage));
                        let upstream = stage.needs.iter().map(|n| (n.clone(), done[n].clone())).collect();
                        let exec = executor.clone();
                        let owned = stage.clone();
                        running.insert(stage.name.clone());
                        let handle = set.spawn(async move {
                            let started = Instant::now();
                            let mut r = exec.execute(owned, upstream).await;
                            if r.elapsed.is_zero() {
                                r.elapsed = started.elapsed();
                            }
                            r
                        });
                        task_stage.insert(handle.id(), stage.name.clone());
                    }
                }
            }
        }
        let r = match set.join_next_with_id().await {
            Some(Ok((_, r))) => r,
            // A panicking executor must not lose its stage: fail it.
            Some(Err(e)) => {
                let name = task_stage.get(&e.id()).cloned().unwrap_or_default();
                tracing::error!("stage `{name}` task died: {e}");
                StageResult::new(&name, StageStatus::Failed(format!("internal error: {e}")))
            }
            None => break,
        };
        running.remove(&r.name);
        on_event(Event::Finished(&r));
        done.insert(r.name.clone(), r);
    }
    pipeline.stages.iter().filter_map(|s| done.remove(&s.name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::Mutex;

    /// Records when each stage ran; fails stages named `fail*`; reports
    /// metric `m` = 1.
    struct Fake {
        log: Mutex<Vec<(String, Instant, Instant)>>,
    }

    impl StageExecutor for Fake {
        async fn execute(&self, stage: Stage, _up: BTreeMap<String, StageResult>) -> StageResult {
            let start = Instant::now();
            tokio::time::sleep(Duration::from_millis(150)).await;
            self.log.lock().unwrap().push((stage.name.clone(), start, Instant::now()));
            let status = if stage.name.starts_with("fail") { StageStatus::Failed("boom".into()) } else { StageStatus::Ran };
            let mut r = StageResult::new(&stage.name, status);
            r.metrics.insert("m".into(), 1.0);
            r
        }
    }

    fn pipeline(stages: &str) -> Pipeline {
        let src = format!("name = \"t\"\n[inputs.d]\npath = \"d.csv\"\n{stages}");
        Pipeline::parse(&src, "t.toml", Path::new(".")).unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn independent_stages_overlap_and_dependents_wait() {
        let p = pipeline("[stages.a]\nuses = \"x\"\n[stages.b]\nuses = \"x\"\n[stages.c]\nuses = \"x\"\nneeds = [\"a\", \"b\"]\n");
        let fake = Arc::new(Fake { log: Mutex::new(Vec::new()) });
        let results = run(&p, fake.clone(), 4, |_| {}).await;
        assert!(results.iter().all(|r| r.status == StageStatus::Ran));
        let log = fake.log.lock().unwrap();
        let get = |n: &str| log.iter().find(|(s, _, _)| s == n).unwrap().clone();
        let (a, b, c) = (get("a"), get("b"), get("c"));
        assert!(a.1 < b.2 && b.1 < a.2, "a and b overlap in time");
        assert!(c.1 >= a.2 && c.1 >= b.2, "c starts after both finished");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn jobs_bound_is_respected() {
        let p = pipeline("[stages.a]\nuses = \"x\"\n[stages.b]\nuses = \"x\"\n");
        let fake = Arc::new(Fake { log: Mutex::new(Vec::new()) });
        run(&p, fake.clone(), 1, |_| {}).await;
        let log = fake.log.lock().unwrap();
        assert!(log[1].1 >= log[0].2, "with --jobs 1 the second starts after the first ends");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn failures_and_failed_gates_skip_downstream() {
        let p = pipeline(
            "[stages.fail1]\nuses = \"x\"\n[stages.after_fail]\nuses = \"x\"\nneeds = [\"fail1\"]\n\
             [stages.ok]\nuses = \"x\"\n[stages.gate]\ncheck = \"ok.m > 1\"\n[stages.deploy]\nuses = \"x\"\nneeds = [\"gate\"]\n\
             [stages.gate2]\ncheck = \"ok.m >= 1\"\n[stages.publish]\nuses = \"x\"\nneeds = [\"gate2\"]\n",
        );
        let fake = Arc::new(Fake { log: Mutex::new(Vec::new()) });
        let results = run(&p, fake, 4, |_| {}).await;
        let status = |n: &str| results.iter().find(|r| r.name == n).unwrap().status.clone();
        assert!(matches!(status("fail1"), StageStatus::Failed(_)));
        assert!(matches!(status("after_fail"), StageStatus::Skipped(_)));
        assert!(matches!(status("gate"), StageStatus::GateFailed(_)));
        assert!(matches!(status("deploy"), StageStatus::Skipped(_)));
        assert_eq!(status("gate2"), StageStatus::GatePassed);
        assert_eq!(status("publish"), StageStatus::Ran);
    }
}
