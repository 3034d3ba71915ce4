//! Kiln's own tracking REST API and its OpenAPI document.

use crate::support::{Kiln, get, http, post};
use serde_json::{Value, json};

fn send(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let agent = http();
    let mut resp = match (method, body) {
        ("PATCH", Some(b)) => agent.patch(url).header("content-type", "application/json").send(b.to_string()),
        ("DELETE", _) => agent.delete(url).call(),
        (_, Some(b)) => agent.post(url).header("content-type", "application/json").send(b.to_string()),
        (_, None) => agent.post(url).header("content-type", "application/json").send(""),
    }
    .unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Every (method, path template) the test calls must be in the document.
const CALLED: &[(&str, &str)] = &[
    ("post", "/api/v1/experiments"),
    ("get", "/api/v1/experiments"),
    ("patch", "/api/v1/experiments/{name}"),
    ("delete", "/api/v1/experiments/{name}"),
    ("post", "/api/v1/experiments/{name}/restore"),
    ("post", "/api/v1/runs"),
    ("get", "/api/v1/runs/{id}"),
    ("patch", "/api/v1/runs/{id}"),
    ("post", "/api/v1/runs/{id}/log"),
    ("get", "/api/v1/runs/{id}/metrics/{key}"),
    ("post", "/api/v1/runs/search"),
    ("put", "/api/v1/runs/{id}/artifacts/{path}"),
    ("get", "/api/v1/runs/{id}/artifacts/{path}"),
    ("get", "/api/v1/runs/{id}/artifacts"),
    ("get", "/api/v1/openapi.json"),
];

#[test]
fn tracking_over_kilns_own_api_is_documented_and_matches_the_cli() {
    let k = Kiln::new();
    let server = k.serve(&["--workers", "0", "--no-scheduler"]);
    let api = format!("{}/api/v1", server.url);

    let (code, doc) = get(&format!("{api}/openapi.json"));
    assert_eq!(code, 200);
    let doc: Value = serde_json::from_str(&doc).unwrap();
    for (method, path) in CALLED {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is not in openapi.json");
    }

    assert_eq!(send("POST", &format!("{api}/experiments"), Some(json!({"name": "exp"}))).0, 201);
    assert_eq!(send("POST", &format!("{api}/experiments"), Some(json!({"name": "exp"}))).0, 409);
    let (code, run) = send("POST", &format!("{api}/runs"), Some(json!({"experiment": "exp", "name": "r1"})));
    assert_eq!(code, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let (_, child) = send("POST", &format!("{api}/runs"), Some(json!({"experiment": "exp", "parent_run_id": id})));
    let batch = json!({
        "params": {"lr": 0.1, "model": "ridge"},
        "metrics": [{"key": "loss", "value": 0.9, "step": 0}, {"key": "loss", "value": 0.4, "step": 1}, {"key": "acc", "value": 0.93}],
        "tags": {"team": "ml"}
    });
    let (code, body) = send("POST", &format!("{api}/runs/{id}/log"), Some(batch));
    assert_eq!(code, 200, "{body}");
    let (code, body) = send("POST", &format!("{api}/runs/{id}/log"), Some(json!({"metrics": [{"key": "acc", "value": null}]})));
    assert_eq!(code, 400);
    assert!(body["error"].as_str().unwrap().contains("metric `acc` needs a finite number"), "{body}");
    let (code, body) = send("POST", &format!("{api}/runs/{id}/log"), Some(json!({"params": {"lr": 0.2}})));
    assert_eq!(code, 409, "a logged param cannot change: {body}");
    let (code, body) = send("POST", &format!("{api}/runs/{id}/log"), Some(json!({"tags": {"../x": "y"}})));
    assert_eq!(code, 400, "{body}");
    let (code, _) = send("PATCH", &format!("{api}/runs/{id}"), Some(json!({"status": "FINISHED"})));
    assert_eq!(code, 200);

    let (_, history) = get(&format!("{api}/runs/{id}/metrics/loss"));
    let history: Value = serde_json::from_str(&history).unwrap();
    assert_eq!(history.as_array().unwrap().iter().map(|p| p["value"].as_f64().unwrap()).collect::<Vec<_>>(), [0.9, 0.4]);

    let put = http().put(&format!("{api}/runs/{id}/artifacts/reports/summary.txt")).header("content-type", "text/plain").send("all good").unwrap();
    assert_eq!(put.status().as_u16(), 201);
    assert_eq!(get(&format!("{api}/runs/{id}/artifacts/reports/summary.txt")), (200, "all good".to_string()));
    assert!(get(&format!("{api}/runs/{id}/artifacts")).1.contains("reports/summary.txt"));

    let (code, found) = send("POST", &format!("{api}/runs/search"), Some(json!({"filter": "metrics.acc > 0.9 and params.model = 'ridge'"})));
    assert_eq!(code, 200);
    assert_eq!(found["runs"][0]["id"], id.as_str());
    let (code, err) = send("POST", &format!("{api}/runs/search"), Some(json!({"filter": "metrics.acc >> 1"})));
    assert_eq!(code, 400);
    assert!(err["error"].as_str().unwrap().contains("column 14"), "{err}");

    // The CLI sees what the API wrote.
    let shown = k.run(&["runs", "show", &id, "--json"]).ok().json();
    assert_eq!(
        (shown["status"].as_str(), shown["params"]["lr"].as_str(), shown["metrics"]["loss"].as_f64()),
        (Some("FINISHED"), Some("0.1"), Some(0.4))
    );
    assert_eq!(shown["tags"]["team"], "ml");
    let child = k.run(&["runs", "show", child["id"].as_str().unwrap(), "--json"]).ok().json();
    assert_eq!(child["parent_run_id"], id.as_str());

    assert_eq!(send("PATCH", &format!("{api}/experiments/exp"), Some(json!({"name": "renamed"}))).0, 200);
    assert_eq!(send("DELETE", &format!("{api}/experiments/renamed"), None).0, 200);
    assert!(k.run(&["runs", "list", "--json"]).ok().json().as_array().unwrap().is_empty());
    assert_eq!(send("POST", &format!("{api}/experiments/renamed/restore"), None).0, 200);
    let (_, list) = get(&format!("{api}/experiments"));
    assert!(list.contains("renamed"), "{list}");
    assert_eq!(post(&format!("{api}/runs/0123456789abcdef/log"), "application/json", "{}").0, 404);
}

#[test]
fn datasets_over_rest_upload_show_download_and_refuse_bad_files() {
    let k = Kiln::new();
    let server = k.serve(&["--workers", "0", "--no-scheduler"]);
    let api = format!("{}/api/v1", server.url);
    let (_, doc) = get(&format!("{api}/openapi.json"));
    let doc: Value = serde_json::from_str(&doc).unwrap();
    for (method, path) in [
        ("get", "/api/v1/datasets"),
        ("get", "/api/v1/datasets/{name}"),
        ("post", "/api/v1/datasets/{name}/versions"),
        ("get", "/api/v1/datasets/{name}/versions/{version}"),
        ("get", "/api/v1/datasets/{name}/versions/{version}/content"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is not in openapi.json");
    }

    let csv = "x,label\n1.5,a\n2.5,b\n3.5,a\n";
    let (code, body) = post(&format!("{api}/datasets/toy/versions?filename=toy.csv"), "text/csv", csv);
    assert_eq!(code, 201, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["version"]["version"].as_i64(), v["created"].as_bool()), (Some(1), Some(true)));
    assert_eq!(v["version"]["hash"], blake3::hash(csv.as_bytes()).to_hex().as_str());
    // The same bytes again: the same version, 200.
    let (code, body) = post(&format!("{api}/datasets/toy/versions?filename=toy.csv"), "text/csv", csv);
    assert_eq!(code, 200, "{body}");

    let (code, body) = get(&format!("{api}/datasets/toy/versions/latest"));
    assert_eq!(code, 200);
    let shown: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(shown["profile"]["rows"], 3);
    assert_eq!(shown["profile"]["columns"][0]["numeric"]["mean"], 2.5);
    assert_eq!(shown["profile"]["columns"][1]["text"]["top"][0], json!(["a", 2]));
    let (code, body) = get(&format!("{api}/datasets/toy/versions/1/content"));
    assert_eq!((code, body.as_str()), (200, csv));
    let (_, list) = get(&format!("{api}/datasets"));
    assert_eq!(serde_json::from_str::<Value>(&list).unwrap()[0]["latest"]["name"], "toy");
    // The CLI sees what REST stored.
    assert_eq!(k.run(&["data", "show", "toy@1", "--json"]).ok().json()["profile"]["rows"], 3);

    // A malformed CSV: 400 naming the upload and the line; nothing registered.
    let (code, body) = post(&format!("{api}/datasets/toy/versions?filename=broken.csv"), "text/csv", "x,label\n1,a\n2,b,c\n");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("broken.csv:3"), "{body}");
    let (_, versions) = get(&format!("{api}/datasets/toy"));
    assert_eq!(serde_json::from_str::<Value>(&versions).unwrap()["versions"].as_array().unwrap().len(), 1);
    for (url, want) in
        [(format!("{api}/datasets/toy/versions/7"), 404), (format!("{api}/datasets/toy/versions/x"), 400), (format!("{api}/datasets/nothing"), 404)]
    {
        assert_eq!(get(&url).0, want, "{url}");
    }
}
