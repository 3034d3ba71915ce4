//! `kiln serve`, `kiln worker` and schedules: pipelines run through REST by
//! workers sharing a job queue.

use crate::support::{Kiln, fixture, get, post, postgres_database, repo_root, tiny_csv, wait_for};
use serde_json::Value;

/// The quickstart pipeline, its data copied into `k`'s workspace (a
/// registered pipeline reads only inside the workspace).
fn quickstart_source(k: &Kiln) -> String {
    for f in ["breast_cancer.csv", "breast_cancer_shifted.csv"] {
        std::fs::copy(repo_root().join("examples/quickstart").join(f), k.path().join(f)).unwrap();
    }
    std::fs::read_to_string(repo_root().join("examples/quickstart/pipeline.toml")).unwrap()
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn register_run_and_watch_a_pipeline_over_rest() {
    let k = Kiln::new();
    let server = k.serve(&[]);
    let api = format!("{}/api/v1", server.url);
    assert_eq!(get(&format!("{api}/health")).0, 200);

    let (code, body) = post(&format!("{api}/pipelines"), "application/toml", &quickstart_source(&k));
    assert_eq!(code, 201, "{body}");
    assert_eq!(json(&body)["name"], "quickstart");
    let (_, list) = get(&format!("{api}/pipelines"));
    assert_eq!(json(&list)[0]["name"], "quickstart");

    let (code, body) = post(&format!("{api}/pipelines/quickstart/runs"), "application/json", r#"{"set": {"train.c": 0.5}}"#);
    assert_eq!(code, 202, "{body}");
    let id = json(&body)["id"].as_str().unwrap().to_string();

    // The event stream ends when the run does.
    let (code, events) = get(&format!("{api}/pipeline-runs/{id}/events"));
    assert_eq!(code, 200);
    assert!(events.contains("event: stage"), "{events}");
    assert!(events.contains(r#""status":"succeeded""#), "{events}");

    let (_, body) = get(&format!("{api}/pipeline-runs/{id}"));
    let run = json(&body);
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["params"]["train.c"], "0.5");
    let stages = run["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 5, "{run}");
    assert!(stages.iter().any(|s| s["stage"] == "quality_gate" && s["status"] == "passed"));
    assert!(run["metrics"]["evaluate.accuracy"].as_f64().unwrap() > 0.9);
    // The CLI sees the same run.
    let cli = k.run(&["runs", "show", &id, "--json"]).ok().json();
    assert_eq!(cli["params"]["train.c"], "0.5");
}

#[test]
fn rest_errors_are_clear() {
    let k = Kiln::new();
    let server = k.serve(&["--workers", "0"]);
    let api = format!("{}/api/v1", server.url);
    let bad = quickstart_source(&k).replace("uses = \"linear\"", "uses = \"lineer\"");
    let (code, body) = post(&format!("{api}/pipelines"), "application/toml", &bad);
    assert_eq!(code, 400);
    assert!(json(&body)["error"].as_str().unwrap().contains("request body:21: stage `train`: no plugin named `lineer`"), "{body}");
    let (code, body) = post(&format!("{api}/pipelines/nope/runs"), "application/json", "{}");
    assert_eq!(code, 404, "{body}");
    post(&format!("{api}/pipelines"), "application/toml", &quickstart_source(&k));
    let (code, body) = post(&format!("{api}/pipelines/quickstart/runs"), "application/json", r#"{"set": {"nope.c": 1}}"#);
    assert_eq!(code, 400);
    assert!(body.contains("no stage `nope`"), "{body}");
    let (code, _) = get(&format!("{api}/pipeline-runs/0123456789abcdef"));
    assert_eq!(code, 404);
}

#[test]
fn a_running_pipeline_can_be_cancelled() {
    let k = Kiln::new();
    k.run(&["plugin", "add", &fixture("misbehave")]).ok();
    k.write("d.csv", &tiny_csv());
    let server = k.serve(&["--lease", "1500ms"]);
    let api = format!("{}/api/v1", server.url);
    let spec = format!(
        "name = \"slow\"\n[inputs.d]\npath = \"{}\"\ntarget = \"y\"\n[stages.spin]\nuses = \"misbehave\"\ndata = \"d\"\nwith = {{ mode = \"spin\", ms = 60000 }}\n",
        k.path().join("d.csv").display()
    );
    assert_eq!(post(&format!("{api}/pipelines"), "application/toml", &spec).0, 201);
    let (_, body) = post(&format!("{api}/pipelines/slow/runs"), "application/json", "{}");
    let id = json(&body)["id"].as_str().unwrap().to_string();
    wait_for(30, "the run to start", || (json(&get(&format!("{api}/pipeline-runs/{id}")).1)["status"] == "running").then_some(()));
    let (code, body) = post(&format!("{api}/pipeline-runs/{id}/cancel"), "application/json", "");
    assert_eq!(code, 200, "{body}");
    wait_for(15, "the run to be marked killed", || {
        let run = k.run(&["runs", "show", &id, "--json"]).json();
        (run["status"] == "KILLED").then_some(())
    });
    assert_eq!(json(&get(&format!("{api}/pipeline-runs/{id}")).1)["status"], "cancelled");
    let (code, _) = post(&format!("{api}/pipeline-runs/{id}/cancel"), "application/json", "");
    assert_eq!(code, 409, "cancelling twice is a conflict");
}

/// Two workers share a queue on PostgreSQL; SIGKILL one mid-stage and the
/// other finishes the run, recording every stage exactly once.
#[test]
fn a_killed_workers_job_is_finished_by_another_without_duplicate_stages() {
    let k = Kiln::with_database(postgres_database());
    k.run(&["plugin", "add", &fixture("misbehave")]).ok();
    k.write("d.csv", &tiny_csv());
    let spec = k.write(
        "slow.toml",
        "name = \"slow\"\n[inputs.d]\npath = \"d.csv\"\ntarget = \"y\"\n\
         [stages.quick]\nuses = \"misbehave\"\ndata = \"d\"\nwith = { mode = \"ok\" }\n\
         [stages.slow]\nuses = \"misbehave\"\ndata = \"d\"\nneeds = [\"quick\"]\nwith = { mode = \"spin\", ms = 4000 }\n\
         [stages.after]\nuses = \"linear\"\ndata = \"d\"\nneeds = [\"slow\"]\n",
    );
    k.run(&["pipeline", "add", spec.to_str().unwrap()]).ok();
    let mut a = k.worker(&["--lease", "2s"]);
    let id = k.run(&["pipeline", "submit", "slow", "--json"]).ok().json()["id"].as_str().unwrap().to_string();
    // Wait until `quick` is recorded and `slow` is underway, then kill A.
    wait_for(60, "worker A to finish `quick`", || {
        let run = k.run(&["runs", "show", &id, "--json"]).json();
        run["stages"].as_array().unwrap().iter().any(|s| s["stage"] == "quick" && s["status"] == "ran").then_some(())
    });
    std::thread::sleep(std::time::Duration::from_millis(1000));
    a.child.kill().unwrap(); // SIGKILL
    a.child.wait().unwrap();
    let killed_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let quick_before =
        k.run(&["runs", "show", &id, "--json"]).json()["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "quick").unwrap().clone();

    let _b = k.worker(&["--lease", "2s"]);
    let run = wait_for(90, "worker B to finish the run", || {
        let run = k.run(&["runs", "show", &id, "--json"]).json();
        (run["status"] == "FINISHED").then_some(run)
    });
    let stages = run["stages"].as_array().unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 3, "one record per stage: {names:?}");
    assert!(stages.iter().all(|s| s["status"] == "ran"), "{stages:?}");
    let quick_after = stages.iter().find(|s| s["stage"] == "quick").unwrap();
    assert_eq!(quick_after, &quick_before, "B did not run `quick` again");
    let slow = stages.iter().find(|s| s["stage"] == "slow").unwrap();
    assert!(slow["started_at"].as_i64().unwrap() > killed_at, "B ran `slow` after A died");
}

/// Two servers on one PostgreSQL database: every tick of a schedule fires
/// exactly one run.
#[test]
fn a_schedule_fires_once_per_tick_with_two_servers() {
    let k = Kiln::with_database(postgres_database());
    let spec = k.write("q.toml", &quickstart_source(&k));
    k.run(&["pipeline", "add", spec.to_str().unwrap()]).ok();
    k.run(&["schedule", "add", "quickstart", "--cron", "*/2 * * * * *"]).ok();
    let s1 = k.serve(&[]);
    let s2 = k.serve(&[]);
    std::thread::sleep(std::time::Duration::from_secs(7));
    drop((s1, s2));
    // A fire creates its run at once (queued), so runs are counted whatever
    // their state.
    let runs = k.run(&["runs", "list", "--json"]).ok().json().as_array().unwrap().clone();
    let fires = crate::support::pg_query(k.database_url.as_ref().unwrap(), "SELECT CAST(tick AS TEXT), run_id FROM schedule_fires ORDER BY tick");
    assert!(fires.len() >= 2, "7 s of an every-2-s schedule fired {} times", fires.len());
    assert!(fires.iter().all(|f| !f[1].is_empty()), "every fire queued a run: {fires:?}");
    // One run per tick: a tick fired by both servers would add a second run.
    assert_eq!(runs.len(), fires.len(), "runs {runs:?} vs fires {fires:?}");
    let ticks: Vec<i64> = fires.iter().map(|f| f[0].parse().unwrap()).collect();
    assert!(ticks.windows(2).all(|w| w[1] - w[0] == 2000), "consecutive 2 s ticks: {ticks:?}");
}

/// Independent stages really run at the same time.
#[test]
fn parallel_branches_overlap() {
    let k = Kiln::new();
    k.run(&["plugin", "add", &fixture("misbehave")]).ok();
    k.write("d.csv", &tiny_csv());
    let p = k.write(
        "par.toml",
        "name = \"par\"\n[inputs.d]\npath = \"d.csv\"\ntarget = \"y\"\n\
         [stages.left]\nuses = \"misbehave\"\ndata = \"d\"\nwith = { mode = \"spin\", ms = 1500 }\n\
         [stages.right]\nuses = \"misbehave\"\ndata = \"d\"\nwith = { mode = \"spin\", ms = 1501 }\n",
    );
    let id = k.run(&["run", p.to_str().unwrap(), "--json"]).ok().json()["run_id"].as_str().unwrap().to_string();
    let run = k.run(&["runs", "show", &id, "--json"]).ok().json();
    let span = |n: &str| {
        let s = run["stages"].as_array().unwrap().iter().find(|s| s["stage"] == n).unwrap();
        (s["started_at"].as_i64().unwrap(), s["ended_at"].as_i64().unwrap())
    };
    let (l, r) = (span("left"), span("right"));
    assert!(l.0 < r.1 && r.0 < l.1, "left {l:?} and right {r:?} overlap");
}
