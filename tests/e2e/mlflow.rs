//! The real MLflow client (mlflow-skinny from PyPI, in a venv this test
//! makes under target/) logs to `kiln serve`, and Kiln's CLI sees the same.

use crate::support::{Kiln, python_venv, repo_root};
use std::path::PathBuf;
use std::process::Command;

/// A Python with mlflow-skinny, created on first use.
fn mlflow_python() -> PathBuf {
    python_venv("mlflow-venv", "mlflow", &["mlflow-skinny"])
}

#[test]
fn the_mlflow_client_logs_to_kiln_and_kiln_sees_it() {
    let python = mlflow_python();
    let k = Kiln::new();
    let server = k.serve(&["--workers", "0", "--no-scheduler"]);
    let out = Command::new(python)
        .arg(repo_root().join("examples/mlflow/client.py"))
        .env("MLFLOW_TRACKING_URI", &server.url)
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "client.py failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let ids = serde_json::from_str::<serde_json::Value>(stdout.trim().lines().last().unwrap()).unwrap();
    let run_id = ids["run_id"].as_str().unwrap().to_string();
    let child = k.run(&["runs", "show", ids["child_id"].as_str().unwrap(), "--json"]).ok().json();
    assert_eq!(child["parent_run_id"], run_id.as_str(), "a nested MLflow run is a child run in Kiln");

    let run = k.run(&["runs", "show", &run_id, "--json"]).ok().json();
    assert_eq!(run["experiment"], "mlflow-compat");
    assert_eq!(run["status"], "FINISHED");
    assert_eq!(run["params"]["alpha"], "0.5");
    assert_eq!(run["params"]["layers"], "3");
    assert_eq!(run["metrics"]["loss"], 0.2);
    assert_eq!(run["metrics"]["accuracy"], 0.91);
    assert_eq!(run["tags"]["team"], "ml-core");
    let paths: Vec<&str> = run["artifacts"].as_array().unwrap().iter().map(|a| a["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["model/weights.bin", "notes.txt"]);
    let model = k.run(&["models", "show", "compat-model", "--json"]).ok().json();
    let stages: Vec<(i64, &str)> =
        model["versions"].as_array().unwrap().iter().map(|v| (v["version"].as_i64().unwrap(), v["stage"].as_str().unwrap())).collect();
    assert_eq!(stages, [(1, "Archived"), (2, "Production")]);
    assert_eq!(model["aliases"][0], serde_json::json!(["champion", 2]));
    assert_eq!(model["versions"][0]["run_id"], run_id.as_str());
    let found = k.run(&["runs", "search", "params.model = 'ridge' and metrics.loss < 0.5", "--json"]).ok().json();
    assert_eq!(found["runs"][0]["id"], run_id.as_str());
}
