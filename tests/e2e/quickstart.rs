//! The quickstart, as a new user runs it.

use crate::support::{Kiln, repo_root};

fn quickstart_pipeline() -> String {
    repo_root().join("examples/quickstart/pipeline.toml").display().to_string()
}

#[test]
fn quickstart_trains_evaluates_and_detects_drift() {
    let k = Kiln::new();
    let out = k.run(&["run", &quickstart_pipeline()]).ok();
    assert!(k.path().join(".kiln/kiln.db").exists(), "the first command creates the workspace here");
    assert!(k.path().join(".kiln/blobs").is_dir());
    let text = out.stdout;
    let line =
        |stage: &str| text.lines().find(|l| l.trim_start().starts_with(stage)).unwrap_or_else(|| panic!("no `{stage}` line in\n{text}")).to_string();
    assert!(line("drift_holdout").contains("ran"));
    assert!(text.contains("drift_holdout    no drift"), "{text}");
    assert!(text.contains("drift_shifted    DRIFT"), "{text}");

    let runs = k.run(&["runs", "list", "--json"]).ok().json();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run["status"], "FINISHED");
    assert_eq!(run["params"]["train.model"], "logistic");
    let accuracy = run["metrics"]["evaluate.accuracy"].as_f64().unwrap();
    // Reference: scikit-learn's logistic regression scores 0.979 (5-fold CV).
    assert!(accuracy > 0.95, "holdout accuracy {accuracy}");
    assert!(run["metrics"]["evaluate.roc_auc"].as_f64().unwrap() > 0.98);
    assert_eq!(run["metrics"]["drift_shifted.dataset_drift"], 1.0);
    assert_eq!(run["metrics"]["drift_holdout.dataset_drift"], 0.0);

    let id = run["id"].as_str().unwrap();
    let show = k.run(&["runs", "show", &id[..8]]).ok().stdout;
    assert!(show.contains("evaluate.accuracy") && show.contains("train/model.bin"), "{show}");
    let detail = k.run(&["runs", "show", id, "--json"]).ok().json();
    assert_eq!(detail["stages"].as_array().unwrap().len(), 5, "every stage recorded, the gate included");
    assert!(detail["lineage"].as_array().unwrap().iter().any(|e| e["dst_kind"] == "model"));
}

#[test]
fn second_run_reuses_cached_stages_and_set_reruns_only_what_changed() {
    let k = Kiln::new();
    k.run(&["run", &quickstart_pipeline()]).ok();
    let again = k.run(&["run", &quickstart_pipeline(), "--json"]).ok().json();
    let statuses: Vec<(&str, &str)> =
        again["stages"].as_array().unwrap().iter().map(|s| (s["stage"].as_str().unwrap(), s["status"].as_str().unwrap())).collect();
    for (stage, status) in &statuses {
        if *stage != "quality_gate" {
            assert_eq!(*status, "cached", "{stage} in {statuses:?}");
        }
    }
    let changed = k.run(&["run", &quickstart_pipeline(), "--set", "train.c=0.5", "--json"]).ok().json();
    let status =
        |name: &str| changed["stages"].as_array().unwrap().iter().find(|s| s["stage"] == name).unwrap()["status"].as_str().unwrap().to_string();
    assert_eq!(status("train"), "ran");
    assert_eq!(status("evaluate"), "ran", "downstream of the changed stage");
    assert_eq!(status("drift_holdout"), "cached");
    assert_eq!(status("drift_shifted"), "cached");
}

#[test]
fn failed_gate_skips_downstream_and_exits_non_zero() {
    let k = Kiln::new();
    let src = std::fs::read_to_string(quickstart_pipeline()).unwrap();
    let src = src
        .replace("path = \"breast_cancer", &format!("path = \"{}/examples/quickstart/breast_cancer", repo_root().display()))
        .replace("evaluate.accuracy >= 0.9", "evaluate.accuracy >= 0.9999")
        + "\n[stages.after_gate]\nuses = \"ks\"\nneeds = [\"quality_gate\"]\nreference = \"cancer.train\"\ncurrent = \"cancer.test\"\n";
    let p = k.write("strict.toml", &src);
    let out = k.run(&["run", p.to_str().unwrap()]).fails();
    assert!(out.stdout.contains("gate failed"), "{}", out.stdout);
    assert!(out.stdout.lines().any(|l| l.contains("after_gate") && l.contains("skipped")), "{}", out.stdout);
    let runs = k.run(&["runs", "list", "--json"]).ok().json();
    assert_eq!(runs[0]["status"], "FAILED");
}

#[test]
fn init_creates_a_workspace_and_commands_find_it_from_subfolders() {
    let k = Kiln::new();
    k.run(&["init"]).ok();
    assert!(k.path().join(".kiln").is_dir());
    let sub = k.path().join("a/b");
    std::fs::create_dir_all(&sub).unwrap();
    let out = k.cmd(&["plugin", "list", "--json"]).current_dir(&sub).output().unwrap();
    assert!(out.status.success());
    assert!(!sub.join(".kiln").exists(), "found the workspace upwards instead of making a new one");
}

#[test]
fn a_grid_sweep_runs_child_runs_under_a_parent_that_names_the_best() {
    let k = Kiln::new();
    let src = std::fs::read_to_string(quickstart_pipeline())
        .unwrap()
        .replace("path = \"breast_cancer", &format!("path = \"{}/examples/quickstart/breast_cancer", repo_root().display()))
        + "\n[sweep]\nmetric = \"evaluate.log_loss\"\ngoal = \"minimize\"\n[sweep.params]\n\"train.c\" = [0.01, 1.0]\n";
    let p = k.write("sweep.toml", &src);
    let out = k.run(&["run", p.to_str().unwrap(), "--json"]).ok().json();
    let children = out["children"].as_array().unwrap();
    assert_eq!(children.len(), 2);
    let losses: Vec<f64> = children.iter().map(|c| c["metric"].as_f64().unwrap()).collect();
    let best = out["best"].as_u64().unwrap() as usize;
    assert_eq!(losses[best], losses.iter().cloned().fold(f64::INFINITY, f64::min), "the lowest log loss wins");
    let parent = k.run(&["runs", "show", out["parent_id"].as_str().unwrap(), "--json"]).ok().json();
    assert_eq!(parent["metrics"]["best.evaluate.log_loss"].as_f64().unwrap(), losses[best]);
    assert_eq!(parent["tags"]["kiln.best_run"], children[best]["run_id"]);
    let child = k.run(&["runs", "show", children[0]["run_id"].as_str().unwrap(), "--json"]).ok().json();
    assert_eq!(child["parent_run_id"], out["parent_id"]);
    assert_eq!(child["params"]["train.c"], "0.01");
    // The drift stages do not depend on train.c: the second child reuses them.
    let second = k.run(&["runs", "show", children[1]["run_id"].as_str().unwrap(), "--json"]).ok().json();
    let drift = second["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "drift_holdout").unwrap();
    assert_eq!(drift["status"], "cached");
}

/// Regression: a newer kiln bundles new bytes for linear@0.1.0; the
/// workspace must keep working (it failed with "already registered with
/// other bytes") and keep the old plugin for the runs that used it.
#[test]
fn upgraded_bundled_plugins_replace_the_old_ones_without_losing_them() {
    let k = Kiln::new();
    k.run(&["init"]).ok();
    let db = format!("sqlite://{}", k.path().join(".kiln/kiln.db").display());
    crate::support::pg_query(&db, "UPDATE plugins SET digest = 'sha256:00000000000000000000' WHERE name = 'linear'");
    let list = k.run(&["plugin", "list", "--json"]).ok().json();
    let linear: Vec<String> =
        list.as_array().unwrap().iter().filter(|p| p["name"] == "linear").map(|p| p["version"].as_str().unwrap().to_string()).collect();
    assert_eq!(linear, vec!["0.1.0+000000000000".to_string(), "0.1.0".to_string()]);
    assert!(!k.run(&["plugin", "inspect", "linear"]).ok().stdout.contains("sha256:0000"), "a bare name picks the current build");
}
