//! Experiments and run search, compare, delete from the CLI.

use crate::support::{Kiln, repo_root};

fn two_runs(k: &Kiln) -> (String, String) {
    let p = repo_root().join("examples/quickstart/pipeline.toml");
    let a = k.run(&["run", p.to_str().unwrap(), "--json", "--set", "train.c=0.01"]).ok().json()["run_id"].as_str().unwrap().to_string();
    let b = k.run(&["run", p.to_str().unwrap(), "--json", "--set", "train.c=10"]).ok().json()["run_id"].as_str().unwrap().to_string();
    (a, b)
}

#[test]
fn search_orders_filters_and_pages() {
    let k = Kiln::new();
    let (a, b) = two_runs(&k);
    let out = k
        .run(&[
            "runs",
            "search",
            "metrics.evaluate.accuracy > 0.5 and params.train.model = 'logistic'",
            "--order-by",
            "metrics.evaluate.log_loss ASC",
            "--json",
        ])
        .ok()
        .json();
    let ids: Vec<&str> = out["runs"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    // Stronger regularisation (c = 0.01) has the higher log loss here.
    assert_eq!(ids, [b.as_str(), a.as_str()]);
    let none = k.run(&["runs", "search", "params.train.c = '0.5' or metrics.evaluate.accuracy > 2", "--json"]).ok().json();
    assert!(none["runs"].as_array().unwrap().is_empty());
    let page = k.run(&["runs", "search", "--max-results", "1", "--json"]).ok().json();
    assert_eq!(page["runs"].as_array().unwrap().len(), 1);
    let token = page["next_page_token"].as_str().unwrap().to_string();
    let rest = k.run(&["runs", "search", "--max-results", "1", "--page-token", &token, "--json"]).ok().json();
    assert_eq!(rest["runs"].as_array().unwrap().len(), 1);
    assert!(rest["next_page_token"].is_null());
    let err = k.run(&["runs", "search", "metrics.evaluate.accuracy >> 1"]).fails().stderr;
    assert!(err.contains("invalid filter") && err.contains("column 28"), "{err}");
}

#[test]
fn compare_marks_differences_and_best_values() {
    let k = Kiln::new();
    let (a, b) = two_runs(&k);
    let out = k.run(&["runs", "compare", &a[..8], &b[..8]]).ok().stdout;
    assert!(out.lines().any(|l| l.trim_start().starts_with("* train.c")), "{out}");
    assert!(out.lines().any(|l| l.trim_start().starts_with("train.model")), "{out}");
    let json = k.run(&["runs", "compare", &a, &b, "--json"]).ok().json();
    let log_loss = json["metrics"].as_array().unwrap().iter().find(|m| m[0] == "evaluate.log_loss").unwrap();
    assert_eq!(log_loss[2], 1, "the lower log loss (run b) is best: {log_loss}");
}

#[test]
fn experiments_and_runs_can_be_renamed_deleted_and_restored() {
    let k = Kiln::new();
    let (a, _) = two_runs(&k);
    k.run(&["experiments", "create", "empty"]).ok();
    assert!(k.run(&["experiments", "create", "empty"]).fails().stderr.contains("already exists"));
    k.run(&["experiments", "rename", "quickstart", "cancer"]).ok();
    let list = k.run(&["experiments", "list", "--json"]).ok().json();
    let names: Vec<(&str, i64)> = list.as_array().unwrap().iter().map(|e| (e["name"].as_str().unwrap(), e["runs"].as_i64().unwrap())).collect();
    assert_eq!(names, [("cancer", 2), ("empty", 0)]);
    k.run(&["runs", "delete", &a[..8]]).ok();
    assert_eq!(k.run(&["runs", "list", "--json"]).ok().json().as_array().unwrap().len(), 1);
    k.run(&["runs", "restore", &a]).ok();
    k.run(&["experiments", "delete", "cancer"]).ok();
    assert!(k.run(&["runs", "list", "--json"]).ok().json().as_array().unwrap().is_empty());
    k.run(&["experiments", "restore", "cancer"]).ok();
    assert_eq!(k.run(&["runs", "list", "--json"]).ok().json().as_array().unwrap().len(), 2);
}
