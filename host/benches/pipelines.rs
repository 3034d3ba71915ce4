//! Pipeline benchmarks, printed beside their peers (run with host/benches/run.sh).
//!
//! - engine overhead: a 100-stage pipeline of no-op plugin stages, run in
//!   process (every stage runs: instantiate, call, record), then all cached;
//! - the unchanged quickstart, all cached: `kiln run` (the release binary,
//!   process start included) vs `dvc repro` on an equivalent dvc.yaml;
//! - job claims per second with 4 workers on PostgreSQL (and on SQLite).
//!
//! Medians; no assertion on time anywhere.

use kiln::app::App;
use kiln::pipeline::{self, RunOptions, spec::Pipeline};
use kiln::workspace::Workspace;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn row(name: &str, kiln: &str, peer: &str, ratio: &str) {
    println!("{name:<52} {kiln:>14} {peer:>22} {ratio:>18}");
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

async fn noop_pipeline(repeats: usize) {
    let dir = tempfile::tempdir().unwrap();
    let app = App::open_at(Workspace::init(dir.path()).unwrap()).await.unwrap();
    let fixture = Path::new(kiln::FIXTURE_DIR).join("kiln_fixture_misbehave.wasm");
    kiln::plugins::add(&app, &std::fs::read(fixture).unwrap(), false, Default::default()).await.unwrap();
    std::fs::write(dir.path().join("d.csv"), "x,y\n1,0\n2,1\n3,0\n4,1\n").unwrap();
    let mut spec = String::from("name = \"noop\"\n[inputs.d]\npath = \"d.csv\"\ntarget = \"y\"\n");
    for i in 0..100 {
        // A chain of ten independent ten-stage lines: parallel and sequential work.
        let needs = if i % 10 == 0 { String::new() } else { format!("needs = [\"s{}\"]\n", i - 1) };
        spec.push_str(&format!("[stages.s{i}]\nuses = \"misbehave\"\ndata = \"d\"\nwith = {{ mode = \"ok\" }}\n{needs}"));
    }
    let path = dir.path().join("noop.toml");
    std::fs::write(&path, spec).unwrap();
    let mut cold = Vec::new();
    let mut cached = Vec::new();
    for _ in 0..repeats {
        for no_cache in [true, false] {
            let t = Instant::now();
            let p = Pipeline::load(&path).unwrap();
            let prepared = pipeline::prepare(&app, p).await.unwrap();
            let run = pipeline::execute(&app, prepared, RunOptions { jobs: 4, no_cache, ..Default::default() }, None, |_| {}).await.unwrap();
            assert!(run.succeeded());
            let s = t.elapsed().as_secs_f64();
            if no_cache { cold.push(s) } else { cached.push(s) }
        }
    }
    row("100 no-op plugin stages, all run (in process)", &format!("{:.0} ms", median(cold) * 1e3), "goal < 1000 ms", "");
    row("100 no-op plugin stages, all cached (in process)", &format!("{:.0} ms", median(cached) * 1e3), "", "");
}

fn time_cmd(mut c: Command) -> f64 {
    let t = Instant::now();
    let out = c.output().unwrap();
    assert!(out.status.success(), "{:?}: {}{}", c, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    t.elapsed().as_secs_f64()
}

fn quickstart_vs_dvc(repeats: usize) {
    let kiln_bin = repo().join("target/release/kiln");
    if !kiln_bin.exists() {
        println!("(skipping kiln vs dvc: build target/release/kiln first; host/benches/run.sh does)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    for f in ["pipeline.toml", "breast_cancer.csv", "breast_cancer_shifted.csv"] {
        std::fs::copy(repo().join("examples/quickstart").join(f), work.join(f)).unwrap();
    }
    let kiln = || {
        let mut c = Command::new(&kiln_bin);
        c.args(["run", "pipeline.toml"]).current_dir(work).env_remove("KILN_HOME").env_remove("KILN_DATABASE_URL");
        c
    };
    time_cmd(kiln());
    let k: Vec<f64> = (0..repeats).map(|_| time_cmd(kiln())).collect();
    let km = median(k);

    let dvc = std::env::var("KILN_BENCH_PYTHON").ok().map(|p| Path::new(&p).parent().unwrap().join("dvc")).filter(|p| p.exists());
    let Some(dvc) = dvc else {
        row("quickstart re-run, nothing changed (CLI)", &format!("{:.0} ms", km * 1e3), "dvc not installed", "");
        return;
    };
    // The same DAG for DVC: train, evaluate, two drift checks, each a
    // Python command with the data, params and script as deps.
    let python = std::env::var("KILN_BENCH_PYTHON").unwrap();
    std::fs::write(work.join("params.yaml"), "train:\n  c: 1.0\ndrift:\n  threshold: 0.01\n").unwrap();
    std::fs::write(work.join("stage.py"), "import sys, json\nopen(sys.argv[1], 'w').write(json.dumps({'ok': 1}))\n").unwrap();
    let dvc_yaml = format!(
        "stages:\n  train:\n    cmd: {py} stage.py model.json\n    deps: [breast_cancer.csv, stage.py]\n    params: [train.c]\n    outs: [model.json]\n\
         \x20 evaluate:\n    cmd: {py} stage.py eval.json\n    deps: [model.json, breast_cancer.csv, stage.py]\n    metrics: [eval.json]\n\
         \x20 drift_holdout:\n    cmd: {py} stage.py drift1.json\n    deps: [breast_cancer.csv, stage.py]\n    params: [drift.threshold]\n    outs: [drift1.json]\n\
         \x20 drift_shifted:\n    cmd: {py} stage.py drift2.json\n    deps: [breast_cancer.csv, breast_cancer_shifted.csv, stage.py]\n    params: [drift.threshold]\n    outs: [drift2.json]\n",
        py = python
    );
    std::fs::write(work.join("dvc.yaml"), dvc_yaml).unwrap();
    let git = |args: &[&str]| {
        Command::new("git").args(args).current_dir(work).output().unwrap();
    };
    git(&["init", "-q"]);
    let run_dvc = |args: &[&str]| {
        let mut c = Command::new(&dvc);
        c.args(args).current_dir(work).env("DVC_NO_ANALYTICS", "1");
        c
    };
    time_cmd(run_dvc(&["init", "-q"]));
    time_cmd(run_dvc(&["repro", "-q"]));
    let d: Vec<f64> = (0..repeats).map(|_| time_cmd(run_dvc(&["repro", "-q"]))).collect();
    let dm = median(d);
    row(
        "quickstart re-run, nothing changed (CLI, process start incl.)",
        &format!("{:.0} ms", km * 1e3),
        &format!("dvc repro {:.0} ms", dm * 1e3),
        &format!("dvc/kiln {:.1}x", dm / km),
    );
}

async fn claims(url: &str, label: &str, jobs: usize) {
    let store = kiln::store::Store::connect(url).await.unwrap();
    for _ in 0..jobs {
        store.enqueue_job("bench", "{}", None).await.unwrap();
    }
    let t = Instant::now();
    let mut handles = Vec::new();
    for w in 0..4 {
        let s = store.clone();
        handles.push(tokio::spawn(async move {
            let mut n = 0;
            while let Some(j) = s.claim_job(&format!("w{w}"), 60_000).await.unwrap() {
                s.finish_job(&j.id, &format!("w{w}"), kiln::store::JobStatus::Succeeded, None).await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap();
    }
    assert_eq!(total, jobs);
    let rate = jobs as f64 / t.elapsed().as_secs_f64();
    row(&format!("job claim + finish, 4 workers, {label}"), &format!("{rate:.0} jobs/s"), "", "");
}

async fn postgres_url() -> Option<String> {
    use sqlx::Executor;
    let admin = std::env::var("KILN_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&admin).await.ok()?;
    let name = format!("kiln_bench_{}", uuid::Uuid::new_v4().simple());
    pool.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.ok()?;
    Some(format!("{}/{name}", admin.rsplit_once('/').unwrap().0))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    println!("kiln pipeline benchmarks, medians of 5 runs\n");
    row("benchmark", "kiln", "peer", "ratio");
    noop_pipeline(5).await;
    tokio::task::block_in_place(|| quickstart_vs_dvc(5));
    match postgres_url().await {
        Some(url) => claims(&url, "PostgreSQL", 2000).await,
        None => println!("(PostgreSQL not reachable: skipping the claim benchmark on it)"),
    }
    let dir = tempfile::tempdir().unwrap();
    claims(&format!("sqlite://{}?mode=rwc", dir.path().join("q.db").display()), "SQLite", 2000).await;
}
