//! The real MLflow client (mlflow-skinny from PyPI, in a venv this test
//! makes under target/) logs to `kiln serve`, and Kiln's CLI sees the same.

use crate::support::{Kiln, get, http, post, python_venv, repo_root};
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

/// Both client majors, each in a venv of its own with scikit-learn, run
/// examples/mlflow/models.py against `kiln serve`: log a model, register
/// it twice, move it by stage (MLflow 2) or alias (MLflow 3), load it back
/// with `mlflow.pyfunc.load_model` and predict, search experiments, models
/// and versions with filters, order and pages, and use the registry's
/// everyday writes. The script was first run against MLflow 3.17's own
/// server with both clients, where it passes.
#[test]
fn both_mlflow_majors_log_register_search_and_load_a_model() {
    let majors = [
        (2, python_venv("mlflow2-venv", "mlflow, sklearn, pandas", &["mlflow-skinny<3", "scikit-learn", "pandas"])),
        (3, python_venv("mlflow3-venv", "mlflow, sklearn", &["mlflow==3.17.*", "scikit-learn"])),
    ];
    for (major, python) in majors {
        let k = Kiln::new();
        let server = k.serve(&["--workers", "0", "--no-scheduler"]);
        let out = Command::new(&python)
            .arg(repo_root().join("examples/mlflow/models.py"))
            .env("MLFLOW_TRACKING_URI", &server.url)
            .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            .env("GIT_PYTHON_REFRESH", "quiet")
            .current_dir(k.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "models.py with MLflow {major} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        let seen: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
        assert_eq!(seen["major"], major);
        // Kiln's own view has the same versions, and the run behind them.
        let model = k.run(&["models", "show", seen["model"].as_str().unwrap(), "--json"]).ok().json();
        let versions: Vec<i64> = model["versions"].as_array().unwrap().iter().map(|v| v["version"].as_i64().unwrap()).collect();
        assert_eq!(versions, [2], "version 1 was deleted through MLflow's API");
        assert_eq!(model["versions"][0]["run_id"], seen["run_id"]);
        // MLflow 3's versions point at the logged model they were made from.
        assert_eq!(model["versions"][0]["model_id"], seen["model_id"]);
        // And Kiln lists MLflow 3's logged models as what they are: the run
        // that made each and the versions registered from it.
        let logged = k.run(&["models", "logged", "--json"]).ok().json();
        let logged = logged.as_array().unwrap();
        if major == 2 {
            assert!(logged.is_empty(), "MLflow 2 logs no model entities: {logged:?}");
        } else {
            let m = logged.iter().find(|m| m["id"] == seen["model_id"]).unwrap_or_else(|| panic!("{} not in {logged:?}", seen["model_id"]));
            assert_eq!(m["source_run_id"], seen["run_id"]);
            assert_eq!(m["status"], "READY");
            assert!(m["versions"].as_array().unwrap().contains(&serde_json::json!(format!("{}/2", seen["model"].as_str().unwrap()))), "{m}");
        }
    }
}

/// What an uploader says a file is does not decide what a browser is told:
/// the type comes from the name (MLflow's rules), downloads are
/// attachments and never sniffed, so an uploaded page cannot run script on
/// the server's origin.
#[test]
fn artifact_downloads_are_typed_by_name_attached_and_never_sniffed() {
    let k = Kiln::new();
    let server = k.serve(&["--workers", "0", "--no-scheduler"]);
    let api = format!("{}/api/2.0/mlflow", server.url);
    let (_, run) = post(&format!("{api}/runs/create"), "application/json", r#"{"experiment_id": "0"}"#);
    let run: serde_json::Value = serde_json::from_str(&run).unwrap();
    let id = run["run"]["info"]["run_id"].as_str().unwrap().to_string();
    let put = |path: &str, content_type: &str, body: &str| {
        let url = format!("{}/api/2.0/mlflow-artifacts/artifacts/0/{id}/artifacts/{path}", server.url);
        http().put(&url).header("content-type", content_type).send(body).unwrap().status().as_u16()
    };
    assert_eq!(put("page.html", "text/html", "<script>alert(1)</script>"), 200);
    assert_eq!(put("notes.txt", "text/html", "<script>alert(2)</script>"), 200);
    assert_eq!(put("dir/sub/MLmodel", "text/html", "flavors: {}"), 200);
    for (path, media) in [("page.html", "text/html"), ("notes.txt", "text/plain"), ("dir/sub/MLmodel", "text/plain")] {
        let url = format!("{}/api/2.0/mlflow-artifacts/artifacts/0/{id}/artifacts/{path}", server.url);
        let r = http().get(&url).call().unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let header = |h: &str| r.headers().get(h).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        assert_eq!(header("content-type"), media, "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert!(header("content-disposition").starts_with("attachment; filename="), "{path}: {}", header("content-disposition"));
    }
    // Kiln's own download route types the same way.
    let r = http().get(&format!("{}/api/v1/runs/{id}/artifacts/page.html", server.url)).call().unwrap();
    assert_eq!(r.headers().get("x-content-type-options").unwrap(), "nosniff");
    // A folder goes whole.
    let del = http().delete(&format!("{}/api/2.0/mlflow-artifacts/artifacts/0/{id}/artifacts/dir", server.url)).call().unwrap();
    assert_eq!(del.status().as_u16(), 200);
    let (status, _) = get(&format!("{}/api/2.0/mlflow-artifacts/artifacts/0/{id}/artifacts/dir/sub/MLmodel", server.url));
    assert_eq!(status, 404);
}

/// The edges MLflow's server draws: an unknown endpoint is a JSON
/// `ENDPOINT_NOT_FOUND` (MLflow 3.17's own server answers an HTML 404
/// page there; MLflow's clients read the JSON error), the default
/// experiment cannot be deleted, a deleted experiment takes no runs, and a
/// search filter that does not parse is refused with its column.
#[test]
fn unknown_endpoints_the_default_experiment_and_bad_filters_answer_as_mlflow_does() {
    let k = Kiln::new();
    let server = k.serve(&["--workers", "0", "--no-scheduler"]);
    let api = format!("{}/api/2.0/mlflow", server.url);
    let (status, body) = post(&format!("{api}/no-such/endpoint"), "application/json", "{}");
    assert_eq!(status, 404);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error_code"], "ENDPOINT_NOT_FOUND");
    assert!(body["message"].as_str().unwrap().contains("/api/2.0/mlflow/no-such/endpoint"), "{body}");

    let (status, body) = post(&format!("{api}/experiments/delete"), "application/json", r#"{"experiment_id": "0"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Cannot delete the default experiment"), "{body}");

    let (_, made) = post(&format!("{api}/experiments/create"), "application/json", r#"{"name": "gone"}"#);
    let gone = serde_json::from_str::<serde_json::Value>(&made).unwrap()["experiment_id"].as_str().unwrap().to_string();
    assert_eq!(post(&format!("{api}/experiments/delete"), "application/json", &format!(r#"{{"experiment_id": "{gone}"}}"#)).0, 200);
    let (status, body) = post(&format!("{api}/runs/create"), "application/json", &format!(r#"{{"experiment_id": "{gone}"}}"#));
    assert_eq!(status, 400);
    assert!(body.contains("must be in the 'active' state"), "{body}");

    // An experiment's own artifact location is kept and its runs' artifact
    // URIs lie under it (the client then writes there itself, as with
    // MLflow); a `runs:/` location is refused.
    let (status, made) =
        post(&format!("{api}/experiments/create"), "application/json", r#"{"name": "own", "artifact_location": "file:///tmp/own-artifacts"}"#);
    assert_eq!(status, 200, "{made}");
    let own = serde_json::from_str::<serde_json::Value>(&made).unwrap()["experiment_id"].as_str().unwrap().to_string();
    let (_, got) = get(&format!("{api}/experiments/get?experiment_id={own}"));
    assert!(got.contains(r#""artifact_location":"file:///tmp/own-artifacts""#), "{got}");
    let (_, run) = post(&format!("{api}/runs/create"), "application/json", &format!(r#"{{"experiment_id": "{own}"}}"#));
    let run: serde_json::Value = serde_json::from_str(&run).unwrap();
    let id = run["run"]["info"]["run_id"].as_str().unwrap();
    assert_eq!(run["run"]["info"]["artifact_uri"], format!("file:///tmp/own-artifacts/{id}/artifacts"));
    let (status, body) = post(&format!("{api}/experiments/create"), "application/json", r#"{"name": "bad", "artifact_location": "runs:/x/y"}"#);
    assert_eq!(status, 400);
    assert!(body.contains("cannot be a runs:/ URI"), "{body}");
    // A logged model's name goes into paths: MLflow's characters are refused.
    let (status, body) = post(&format!("{api}/logged-models"), "application/json", r#"{"experiment_id": "0", "name": "a/b"}"#);
    assert_eq!(status, 400);
    assert!(body.contains("Invalid model name"), "{body}");

    let (status, body) = post(&format!("{api}/experiments/search"), "application/json", r#"{"filter": "garbage !!!"}"#);
    assert_eq!(status, 400);
    assert!(body.contains("INVALID_PARAMETER_VALUE") && body.contains("column"), "{body}");
    let (status, body) = post(&format!("{api}/experiments/search"), "application/json", r#"{"filter": "name = 'Default'", "max_results": 1}"#);
    assert_eq!(status, 200);
    let names: Vec<String> = serde_json::from_str::<serde_json::Value>(&body).unwrap()["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["Default"]);
}

/// `metrics/get-history-bulk-interval`, what MLflow's UI charts read:
/// steps sampled across the runs (MLflow's algorithm, its numbers worked
/// out by MLflow 3.17's own code), each run's first and last step kept.
#[test]
fn metric_history_bulk_interval_samples_steps_as_mlflow_does() {
    let k = Kiln::new();
    let server = k.serve(&["--workers", "0", "--no-scheduler"]);
    let api = format!("{}/api/2.0/mlflow", server.url);
    let mut ids = Vec::new();
    for steps in [(0..1000).collect::<Vec<i64>>(), vec![5, 7, 999]] {
        let (_, run) = post(&format!("{api}/runs/create"), "application/json", r#"{"experiment_id": "0"}"#);
        let id = serde_json::from_str::<serde_json::Value>(&run).unwrap()["run"]["info"]["run_id"].as_str().unwrap().to_string();
        let metrics: Vec<serde_json::Value> =
            steps.iter().map(|s| serde_json::json!({"key": "loss", "value": *s as f64, "timestamp": 1000 + s, "step": s})).collect();
        let body = serde_json::json!({"run_id": id, "metrics": metrics}).to_string();
        assert_eq!(post(&format!("{api}/runs/log-batch"), "application/json", &body).0, 200);
        ids.push(id);
    }
    let url = format!("{api}/metrics/get-history-bulk-interval?run_ids={}&run_ids={}&metric_key=loss&max_results=10", ids[0], ids[1]);
    let (status, body) = get(&url);
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let of = |id: &str| -> Vec<i64> {
        body["metrics"].as_array().unwrap().iter().filter(|m| m["run_id"] == id).map(|m| m["step"].as_i64().unwrap()).collect()
    };
    assert_eq!(of(&ids[0]), [0, 5, 100, 200, 300, 400, 500, 600, 700, 800, 900, 999]);
    assert_eq!(of(&ids[1]), [5, 999]);
    // A step logged more than once answers with every point at it, oldest
    // first, as MLflow 3.17's server does (it samples steps, not points).
    let again = serde_json::json!({"run_id": ids[0], "metrics": [
        {"key": "loss", "value": 1.0, "timestamp": 5000, "step": 100},
        {"key": "loss", "value": 2.0, "timestamp": 1, "step": 100},
    ]});
    assert_eq!(post(&format!("{api}/runs/log-batch"), "application/json", &again.to_string()).0, 200);
    let (_, body) = get(&format!("{api}/metrics/get-history-bulk-interval?run_ids={}&metric_key=loss&max_results=10", ids[0]));
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let at_100: Vec<i64> =
        body["metrics"].as_array().unwrap().iter().filter(|m| m["step"] == 100).map(|m| m["timestamp"].as_i64().unwrap()).collect();
    assert_eq!(at_100, [1, 1100, 5000]);
    // Alone, the run samples 11 steps (0, 100, …, 900, 999); step 100 has three points.
    assert_eq!(body["metrics"].as_array().unwrap().len(), 13);
    let (status, body) = get(&format!("{api}/metrics/get-history-bulk-interval?run_ids={}&metric_key=loss&start_step=9", ids[0]));
    assert_eq!(status, 400);
    assert!(body.contains("both must be specified"), "{body}");
}
