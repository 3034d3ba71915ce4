//! Bad input over HTTP: MLflow's API answers with MLflow's status, error
//! code and message (mlflow/utils/validation.py, server/handlers.py), takes
//! NaN and ±Infinity as MLflow's client sends them and gives them back as
//! MLflow's server does; Kiln's `/api/v1` refuses the same bad names and
//! batches with a message that names the field and the value. Nothing a
//! refused request carried is stored.

use crate::support::{Kiln, Process, http};
use serde_json::{Value, json};

fn serve(k: &Kiln) -> Process {
    k.serve(&["--workers", "0", "--no-scheduler"])
}

fn send(url: &str, body: Option<&Value>) -> (u16, Value) {
    let agent = http();
    let mut resp = match body {
        Some(b) => agent.post(url).header("content-type", "application/json").send(b.to_string()),
        None => agent.get(url).call(),
    }
    .unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn mlflow_post(server: &Process, endpoint: &str, body: Value) -> (u16, Value) {
    send(&format!("{}/api/2.0/mlflow/{endpoint}", server.url), Some(&body))
}

fn mlflow_get(server: &Process, endpoint_and_query: &str) -> (u16, Value) {
    send(&format!("{}/api/2.0/mlflow/{endpoint_and_query}", server.url), None)
}

fn create_run(server: &Process) -> String {
    let (code, body) = mlflow_post(server, "runs/create", json!({"experiment_id": "0", "start_time": 1}));
    assert_eq!(code, 200, "{body}");
    body["run"]["info"]["run_id"].as_str().unwrap().to_string()
}

/// An MLflow error: the status, `error_code` and the exact message.
#[track_caller]
fn assert_mlflow_error((code, body): (u16, Value), status: u16, error_code: &str, message: &str) {
    assert_eq!(code, status, "{body}");
    assert_eq!(body["error_code"], error_code, "{body}");
    assert_eq!(body["message"], message, "{body}");
}

fn run_data(server: &Process, run: &str) -> Value {
    let (code, body) = mlflow_get(server, &format!("runs/get?run_id={run}"));
    assert_eq!(code, 200, "{body}");
    body["run"]["data"].clone()
}

/// `key → value` of a run's `data.metrics` / `data.params` / `data.tags`.
fn entries(data: &Value, kind: &str) -> std::collections::BTreeMap<String, Value> {
    data[kind].as_array().map(|a| a.iter().map(|e| (e["key"].as_str().unwrap().to_string(), e["value"].clone())).collect()).unwrap_or_default()
}

fn history(server: &Process, run: &str, key: &str) -> Vec<(i64, Value)> {
    let (code, body) = mlflow_get(server, &format!("metrics/get-history?run_id={run}&metric_key={key}"));
    assert_eq!(code, 200, "{body}");
    body["metrics"].as_array().unwrap().iter().map(|m| (m["step"].as_i64().unwrap(), m["value"].clone())).collect()
}

/// (name, version) of the versions a `model-versions/search` returns, in order.
fn version_order(server: &Process, search: Value) -> Vec<(String, String)> {
    let (code, body) = mlflow_post(server, "model-versions/search", search);
    assert_eq!(code, 200, "{body}");
    body["model_versions"].as_array().unwrap().iter().map(|v| (v["name"].as_str().unwrap().into(), v["version"].as_str().unwrap().into())).collect()
}

#[test]
fn nan_and_infinities_round_trip_through_the_mlflow_api_as_protobuf_json_strings() {
    let k = Kiln::new();
    let server = serve(&k);
    let run = create_run(&server);

    // As MLflow's client sends them: protobuf JSON strings for the doubles.
    for (step, value) in [json!("NaN"), json!("Infinity"), json!("-Infinity"), json!(1.5)].into_iter().enumerate() {
        let (code, body) =
            mlflow_post(&server, "runs/log-metric", json!({"run_id": run, "key": "loss", "value": value, "timestamp": 10, "step": step}));
        assert_eq!(code, 200, "{value}: {body}");
    }
    let batch = json!({"run_id": run, "metrics": [
        {"key": "gain", "value": "Infinity", "timestamp": 10, "step": 0},
        {"key": "gain", "value": "NaN", "timestamp": 10, "step": 1},
        {"key": "gain", "value": "-Infinity", "timestamp": 10, "step": 2},
        {"key": "last_nan", "value": "NaN", "timestamp": 10, "step": 0},
        {"key": "last_inf", "value": "Infinity", "timestamp": 10, "step": 0},
    ]});
    let (code, body) = mlflow_post(&server, "runs/log-batch", batch);
    assert_eq!(code, 200, "{body}");

    // Read back as MLflow's server writes doubles: "NaN", "Infinity", "-Infinity".
    assert_eq!(history(&server, &run, "loss"), [(0, json!("NaN")), (1, json!("Infinity")), (2, json!("-Infinity")), (3, json!(1.5))]);
    assert_eq!(history(&server, &run, "gain"), [(0, json!("Infinity")), (1, json!("NaN")), (2, json!("-Infinity"))]);
    let latest = entries(&run_data(&server, &run), "metrics");
    assert_eq!(latest["loss"], json!(1.5));
    assert_eq!(latest["gain"], json!("-Infinity"));
    assert_eq!(latest["last_nan"], json!("NaN"));
    assert_eq!(latest["last_inf"], json!("Infinity"));
    // runs/search shares runs/get's rendering.
    let (code, found) = mlflow_post(&server, "runs/search", json!({"experiment_ids": ["0"]}));
    assert_eq!(code, 200, "{found}");
    let found = entries(&found["runs"][0]["data"], "metrics");
    assert_eq!((&found["last_nan"], &found["gain"]), (&json!("NaN"), &json!("-Infinity")));
}

#[test]
fn bad_names_unknown_runs_and_oversized_batches_get_mlflows_codes_and_messages() {
    let k = Kiln::new();
    let server = serve(&k);
    let run = create_run(&server);
    let metric = |key: &str| json!({"run_id": run, "key": key, "value": 1.0, "timestamp": 10, "step": 0});
    let resolves = |value: &str, path: &str, to: &str| {
        format!(
            "Invalid value \"{value}\" for parameter '{path}' supplied: Names may be treated as files in certain cases, and must not resolve to other names when treated as such. This name would resolve to '{to}'"
        )
    };
    let characters = |json_value: &str, path: &str| {
        format!(
            "Invalid value {json_value} for parameter '{path}' supplied: Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colon(:) and slashes (/)."
        )
    };
    let bad = 400;
    let ipv = "INVALID_PARAMETER_VALUE";

    // Names that would be other names as file paths.
    assert_mlflow_error(mlflow_post(&server, "runs/log-metric", metric("a/../b")), bad, ipv, &resolves("a/../b", "name", "b"));
    assert_mlflow_error(mlflow_post(&server, "runs/log-metric", metric("/abs")), bad, ipv, &resolves("/abs", "name", "/abs"));
    assert_mlflow_error(mlflow_post(&server, "runs/log-metric", metric("a//b")), bad, ipv, &resolves("a//b", "name", "a/b"));
    assert_mlflow_error(
        mlflow_post(&server, "runs/log-parameter", json!({"run_id": run, "key": "..", "value": "1"})),
        bad,
        ipv,
        &resolves("..", "key", ".."),
    );
    assert_mlflow_error(
        mlflow_post(&server, "runs/set-tag", json!({"run_id": run, "key": "dir/", "value": "v"})),
        bad,
        ipv,
        &resolves("dir/", "key", "dir"),
    );
    // Characters outside MLflow's set (a backslash is a Windows path separator).
    assert_mlflow_error(
        mlflow_post(&server, "runs/log-parameter", json!({"run_id": run, "key": "a\\b", "value": "1"})),
        bad,
        ipv,
        &characters("\"a\\\\b\"", "key"),
    );
    assert_mlflow_error(mlflow_post(&server, "runs/log-metric", metric("f1@macro")), bad, ipv, &characters("\"f1@macro\"", "name"));
    assert_mlflow_error(
        mlflow_post(&server, "runs/set-tag", json!({"run_id": run, "key": "é!", "value": "v"})),
        bad,
        ipv,
        &characters("\"\\u00e9!\"", "key"),
    );

    // Length limits on names: 250 characters (not bytes).
    let long = "k".repeat(251);
    assert_mlflow_error(
        mlflow_post(&server, "runs/log-metric", metric(&long)),
        bad,
        ipv,
        "'Metric name' exceeds the maximum length of 250 characters",
    );
    assert_mlflow_error(
        mlflow_post(&server, "runs/log-parameter", json!({"run_id": run, "key": long, "value": "1"})),
        bad,
        ipv,
        "'Param key' exceeds the maximum length of 250 characters",
    );
    assert_mlflow_error(
        mlflow_post(&server, "runs/set-tag", json!({"run_id": run, "key": long, "value": "v"})),
        bad,
        ipv,
        "'key' exceeds the maximum length of 250 characters",
    );
    assert_mlflow_error(
        mlflow_post(&server, "experiments/set-experiment-tag", json!({"experiment_id": "0", "key": long, "value": "v"})),
        bad,
        ipv,
        "'key' exceeds the maximum length of 250 characters",
    );
    let wide = "é".repeat(250);
    assert_eq!(mlflow_post(&server, "runs/log-metric", metric(&wide)).0, 200, "250 two-byte characters are within the limit");

    // Values MLflow cannot read as a double, and missing fields.
    assert_mlflow_error(
        mlflow_post(&server, "runs/log-metric", json!({"run_id": run, "key": "m", "value": "abc", "timestamp": 10})),
        bad,
        ipv,
        "Invalid value \"abc\" for parameter 'value' supplied:  Hint: Value was of type 'str'. See the API docs for more information about request parameters.",
    );
    assert_mlflow_error(
        mlflow_post(&server, "runs/log-metric", json!({"run_id": run, "key": "m", "timestamp": 10})),
        bad,
        ipv,
        "Missing value for required parameter 'value'. See the API docs for more information about request parameters.",
    );
    assert_mlflow_error(
        mlflow_post(&server, "runs/log-metric", json!({"run_id": run, "key": "m", "value": 1, "timestamp": -1})),
        bad,
        ipv,
        "Invalid value -1 for parameter 'timestamp' supplied: metric 'm' (value=1.0). Timestamp must be a nonnegative long (64-bit integer) ",
    );

    // Unknown runs.
    let ghost = "0123456789abcdef0123456789abcdef";
    let nf = "RESOURCE_DOES_NOT_EXIST";
    let gone = format!("Run with id={ghost} not found");
    assert_mlflow_error(mlflow_post(&server, "runs/log-metric", json!({"run_id": ghost, "key": "m", "value": 1, "timestamp": 10})), 404, nf, &gone);
    assert_mlflow_error(mlflow_post(&server, "runs/log-parameter", json!({"run_id": ghost, "key": "p", "value": "1"})), 404, nf, &gone);
    assert_mlflow_error(mlflow_post(&server, "runs/set-tag", json!({"run_id": ghost, "key": "t", "value": "1"})), 404, nf, &gone);
    assert_mlflow_error(mlflow_post(&server, "runs/log-batch", json!({"run_id": ghost, "params": [{"key": "p", "value": "1"}]})), 404, nf, &gone);
    assert_mlflow_error(mlflow_get(&server, &format!("runs/get?run_id={ghost}")), 404, nf, &gone);
    assert_mlflow_error(mlflow_get(&server, &format!("metrics/get-history?run_id={ghost}&metric_key=m")), 404, nf, &gone);
    assert_mlflow_error(
        mlflow_post(&server, "runs/log-batch", json!({"run_id": "../etc", "metrics": []})),
        bad,
        ipv,
        "Invalid value \"../etc\" for parameter 'run_id' supplied.",
    );

    // Oversized batches, each limit on its own.
    let metrics = |n: usize| (0..n).map(|i| json!({"key": format!("bm{i}"), "value": i, "timestamp": 10, "step": 0})).collect::<Vec<_>>();
    let pairs = |prefix: &str, n: usize| (0..n).map(|i| json!({"key": format!("{prefix}{i}"), "value": "v"})).collect::<Vec<_>>();
    let limit = |n: usize, entity: &str, got: usize| {
        format!(
            "A batch logging request can contain at most {n} {entity}. Got {got} {entity}. Please split up {entity} across multiple requests and try again."
        )
    };
    assert_mlflow_error(
        mlflow_post(&server, "runs/log-batch", json!({"run_id": run, "metrics": metrics(1001)})),
        bad,
        ipv,
        &limit(1000, "metrics", 1001),
    );
    assert_mlflow_error(
        mlflow_post(&server, "runs/log-batch", json!({"run_id": run, "params": pairs("bp", 101)})),
        bad,
        ipv,
        &limit(100, "params", 101),
    );
    assert_mlflow_error(mlflow_post(&server, "runs/log-batch", json!({"run_id": run, "tags": pairs("bt", 101)})), bad, ipv, &limit(100, "tags", 101));
    assert_mlflow_error(
        mlflow_post(&server, "runs/log-batch", json!({"run_id": run, "metrics": metrics(1000), "params": pairs("bp", 1)})),
        bad,
        ipv,
        &limit(1000, "metrics, params, and tags", 1001),
    );
    // Bad entities inside a batch are named by their place in it.
    let mut two = metrics(2);
    two[1]["key"] = json!("a//b");
    assert_mlflow_error(
        mlflow_post(&server, "runs/log-batch", json!({"run_id": run, "metrics": two})),
        bad,
        ipv,
        &resolves("a//b", "metrics[1].name", "a/b"),
    );
    let mut tags = pairs("bt", 2);
    tags[1]["key"] = json!(long);
    assert_mlflow_error(
        mlflow_post(&server, "runs/log-batch", json!({"run_id": run, "tags": tags})),
        bad,
        ipv,
        "'tags[1].key' exceeds the maximum length of 250 characters",
    );
    assert_mlflow_error(
        mlflow_post(&server, "runs/log-batch", json!({"run_id": run, "params": [{"key": "d", "value": "1"}, {"key": "d", "value": "1"}]})),
        bad,
        ipv,
        "Duplicate parameter keys have been submitted: ['d']. Please ensure the request contains only one param value per param key.",
    );
    assert_mlflow_error(
        mlflow_post(
            &server,
            "runs/log-batch",
            json!({"run_id": run, "metrics": [{"key": "m", "value": "NaN", "timestamp": 10}, {"value": 1, "timestamp": 10}]}),
        ),
        bad,
        ipv,
        "Missing value for required parameter 'metrics[1].key'. See the API docs for more information about request parameters.",
    );

    // Names MLflow accepts are accepted; overlong param and tag values are
    // cut to the limit, as MLflow does by default (MLFLOW_TRUNCATE_LONG_VALUES).
    for key in ["a/b", "with space", "colon:ok", "ünïcödé", "a.b-c_d"] {
        assert_eq!(mlflow_post(&server, "runs/log-metric", metric(key)).0, 200, "{key}");
    }
    let (code, body) = mlflow_post(&server, "runs/log-parameter", json!({"run_id": run, "key": "long_param", "value": "x".repeat(6001)}));
    assert_eq!(code, 200, "{body}");
    let (code, body) = mlflow_post(&server, "runs/set-tag", json!({"run_id": run, "key": "long_tag", "value": "y".repeat(8001)}));
    assert_eq!(code, 200, "{body}");

    // Nothing any refused request carried was stored.
    let data = run_data(&server, &run);
    let metrics: Vec<String> = entries(&data, "metrics").into_keys().collect();
    let mut expected = vec!["a.b-c_d".to_string(), "a/b".into(), "colon:ok".into(), "with space".into(), "ünïcödé".into(), wide.clone()];
    expected.sort();
    assert_eq!(metrics, expected);
    let params = entries(&data, "params");
    assert_eq!(params.keys().collect::<Vec<_>>(), ["long_param"]);
    assert_eq!(params["long_param"].as_str().unwrap().len(), 6000);
    let tags = entries(&data, "tags");
    assert!(tags.keys().all(|t| t == "long_tag" || t.starts_with("mlflow.")), "{tags:?}");
    assert_eq!(tags["long_tag"].as_str().unwrap().len(), 8000);
}

#[test]
fn kilns_api_refuses_the_same_bad_input_naming_the_field_and_value() {
    let k = Kiln::new();
    let server = serve(&k);
    let api = format!("{}/api/v1", server.url);
    let (code, body) = send(&format!("{api}/experiments"), Some(&json!({"name": "exp"})));
    assert_eq!(code, 201, "{body}");
    let (code, body) = send(&format!("{api}/runs"), Some(&json!({"experiment": "exp", "name": "r"})));
    assert_eq!(code, 201, "{body}");
    let run = body["id"].as_str().unwrap().to_string();
    let log = |body: Value| send(&format!("{api}/runs/{run}/log"), Some(&body));
    #[track_caller]
    fn refused((code, body): (u16, Value), status: u16, parts: &[&str]) {
        assert_eq!(code, status, "{body}");
        let message = body["error"].as_str().unwrap_or_else(|| panic!("no `error` in {body}"));
        for p in parts {
            assert!(message.contains(p), "`{p}` is not in: {message}");
        }
    }
    let long = "k".repeat(251);
    let ok = json!({"key": "fine", "value": 1.0});

    refused(log(json!({"metrics": [ok.clone(), {"key": "a/../b", "value": 1.0}]})), 400, &["metrics[1].key", "\"a/../b\"", "\"b\""]);
    refused(log(json!({"metrics": [{"key": "/abs", "value": 1.0}]})), 400, &["metrics[0].key", "\"/abs\""]);
    refused(log(json!({"params": {"a\\b": "1"}})), 400, &["params key", "\"a\\\\b\"", "'\\\\'"]);
    refused(log(json!({"params": {"f1@macro": "1"}})), 400, &["params key", "\"f1@macro\"", "'@'"]);
    refused(log(json!({"tags": {"dir/": "v"}})), 400, &["tags key", "\"dir/\""]);
    refused(log(json!({"tags": {long.clone(): "v"}})), 400, &["tags key", "kkkk", "251 characters", "at most 250"]);
    refused(log(json!({"metrics": [{"key": "", "value": 1.0}]})), 400, &["metrics[0].key", "empty"]);
    refused(log(json!({"metrics": [{"key": "loss", "value": "NaN"}]})), 400, &["metric `loss`", "metrics[0].value", "\"NaN\""]);
    refused(log(json!({"metrics": [{"key": "loss", "value": "Infinity"}]})), 400, &["metrics[0].value", "\"Infinity\""]);
    refused(log(json!({"tags": {"t": 1}})), 400, &["tags.t", "integer"]);
    let many: Vec<Value> = (0..10_001).map(|i| json!({"key": format!("m{i}"), "value": 1.0})).collect();
    refused(log(json!({"metrics": many})), 400, &["at most 10000", "10001", "10001 metrics"]);
    refused(
        send(&format!("{api}/runs/0123456789abcdef0123456789abcdef/log"), Some(&json!({"metrics": [ok]}))),
        404,
        &["0123456789abcdef0123456789abcdef"],
    );

    // Names MLflow accepts are fine here too; nothing refused was stored.
    let (code, body) = log(json!({"metrics": [{"key": "a/b", "value": 1.0}, {"key": "ünï code:1", "value": 2.0}], "params": {"p.q": "1"}}));
    assert_eq!(code, 200, "{body}");
    let (code, shown) = send(&format!("{api}/runs/{run}"), None);
    assert_eq!(code, 200, "{shown}");
    let metrics: Vec<&String> = shown["metrics"].as_object().unwrap().keys().collect();
    assert_eq!(metrics, ["a/b", "ünï code:1"]);
    assert_eq!(shown["params"].as_object().unwrap().keys().collect::<Vec<_>>(), ["p.q"]);
    assert!(shown["tags"].as_object().is_none_or(|t| t.is_empty()), "{shown}");

    // A deleted run takes nothing until it is restored.
    let status = http().delete(&format!("{api}/runs/{run}")).call().unwrap().status().as_u16();
    assert_eq!(status, 200);
    refused(log(json!({"metrics": [{"key": "late", "value": 1.0}]})), 409, &[&run, "deleted", "restore"]);
    let (code, body) = send(&format!("{api}/runs/{run}/restore"), Some(&json!({})));
    assert_eq!(code, 200, "{body}");
    let (code, body) = log(json!({"metrics": [{"key": "late", "value": 1.0}]}));
    assert_eq!(code, 200, "{body}");
}

/// What MLflow's own REST tests (tests/tracking/test_rest_tracking.py and
/// test_model_registry.py, run against `kiln serve`) found Kiln answering
/// differently from MLflow's server.
#[test]
fn requests_refused_and_answered_as_mlflows_own_rest_tests_expect() {
    let k = Kiln::new();
    let server = serve(&k);
    let run = create_run(&server);
    let ipv = "INVALID_PARAMETER_VALUE";

    // A metric without a timestamp is refused, as MLflow's schema has it.
    let (code, body) = mlflow_post(&server, "runs/log-batch", json!({"run_id": run, "metrics": [{"key": "mae", "value": 2.5}]}));
    assert_eq!(code, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("Missing value for required parameter 'metrics[0].timestamp'"), "{body}");
    let (code, body) = mlflow_post(&server, "runs/log-metric", json!({"run_id": run, "key": "mae", "value": 2.5, "step": "foo", "timestamp": 1}));
    assert_eq!(code, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("Invalid value \"foo\" for parameter 'step' supplied"), "{body}");
    // A tag value or an experiment name of another type is named, not stored as text.
    let (code, body) = mlflow_post(&server, "runs/set-tag", json!({"run_id": run, "key": "t", "value": 41}));
    assert_eq!(code, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("Invalid value 41 for parameter 'value' supplied"), "{body}");
    assert!(!entries(&run_data(&server, &run), "tags").contains_key("t"), "a refused tag is not stored");
    let (code, body) = mlflow_post(&server, "experiments/create", json!({"name": 123}));
    assert_eq!(code, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("Invalid value 123 for parameter 'name' supplied"), "{body}");
    // Deleting a tag the run does not have: MLflow's words.
    assert_mlflow_error(
        mlflow_post(&server, "runs/delete-tag", json!({"run_id": run, "key": "fakeTag"})),
        404,
        "RESOURCE_DOES_NOT_EXIST",
        &format!("No tag with name: fakeTag in run with id {run}"),
    );

    // The same API under /ajax-api/, the prefix of MLflow's web UI; its
    // errors are MLflow's JSON there too.
    let (code, _) = mlflow_post(&server, "runs/log-metric", json!({"run_id": run, "key": "m", "value": 1.0, "timestamp": 1, "step": 0}));
    assert_eq!(code, 200);
    let (code, body) = send(&format!("{}/ajax-api/2.0/mlflow/metrics/get-history?run_id={run}&metric_key=m", server.url), None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["metrics"].as_array().unwrap().len(), 1, "{body}");
    let (code, body) = send(&format!("{}/ajax-api/2.0/mlflow/no-such/endpoint", server.url), None);
    assert_eq!((code, body["error_code"].as_str()), (404, Some("ENDPOINT_NOT_FOUND")), "{body}");
    assert_mlflow_error(
        mlflow_get(&server, "model-versions/get?name=m&version=something%20not%20correct"),
        400,
        ipv,
        "Parameter 'version' must be an integer, got 'something not correct'.",
    );

    // A single metric names its logged model and dataset (MLflow 3): the
    // model shows it, and a search by dataset finds only that model.
    let model = |name: &str| {
        let (code, body) = mlflow_post(&server, "logged-models", json!({"experiment_id": "0", "name": name}));
        assert_eq!(code, 200, "{body}");
        body["model"]["info"]["model_id"].as_str().unwrap().to_string()
    };
    let (measured, other) = (model("measured"), model("other"));
    let metric = json!({"run_id": run, "key": "acc", "value": 0.5, "timestamp": 1, "step": 1,
        "model_id": measured, "dataset_name": "dataset", "dataset_digest": "123"});
    assert_eq!(mlflow_post(&server, "runs/log-metric", metric).0, 200);
    let (code, body) = mlflow_get(&server, &format!("logged-models/{measured}"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["model"]["data"]["metrics"][0]["key"], "acc", "{body}");
    let found = |datasets: Value| {
        let (code, body) = mlflow_post(&server, "logged-models/search", json!({"experiment_ids": ["0"], "datasets": datasets}));
        assert_eq!(code, 200, "{body}");
        let mut ids: Vec<String> = body["models"].as_array().unwrap().iter().map(|m| m["info"]["model_id"].as_str().unwrap().to_string()).collect();
        ids.sort();
        ids
    };
    assert_eq!(found(json!([{"dataset_name": "dataset", "dataset_digest": "123"}])), vec![measured.clone()]);
    assert!(found(json!([{"dataset_name": "dataset", "dataset_digest": "456"}])).is_empty());
    let mut both = vec![measured, other];
    both.sort();
    assert_eq!(found(json!([])), both);

    // One metric of several runs (`get-history-bulk`, a UI route): by run
    // id, then time, step and value; at most max_results points in all.
    let second = create_run(&server);
    for (r, points) in [(&run, [(2, 0, 1.0), (1, 3, 2.0), (1, 2, 3.0)]), (&second, [(5, 0, 4.0), (4, 0, 5.0), (4, 0, 0.5)])] {
        for (timestamp, step, value) in points {
            let metric = json!({"run_id": r, "key": "bulk", "value": value, "timestamp": timestamp, "step": step});
            assert_eq!(mlflow_post(&server, "runs/log-metric", metric).0, 200);
        }
    }
    let bulk = |query: &str| send(&format!("{}/ajax-api/2.0/mlflow/metrics/get-history-bulk?{query}", server.url), None);
    let (code, body) = bulk(&format!("run_id={second}&run_id={run}&run_id=ghost&metric_key=bulk&max_results=5"));
    assert_eq!(code, 200, "{body}");
    let got: Vec<(String, i64, i64, f64)> = body["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (m["run_id"].as_str().unwrap().to_string(), m["timestamp"].as_i64().unwrap(), m["step"].as_i64().unwrap(), m["value"].as_f64().unwrap())
        })
        .collect();
    let (first, last) = if run < second { (&run, &second) } else { (&second, &run) };
    let expect_of = |r: &String| -> Vec<(String, i64, i64, f64)> {
        let points: &[(i64, i64, f64)] = if *r == run { &[(1, 2, 3.0), (1, 3, 2.0), (2, 0, 1.0)] } else { &[(4, 0, 0.5), (4, 0, 5.0), (5, 0, 4.0)] };
        points.iter().map(|&(t, s, v)| (r.clone(), t, s, v)).collect()
    };
    let mut expected = expect_of(first);
    expected.extend(expect_of(last).into_iter().take(2));
    assert_eq!(got, expected, "{body}");
    assert_mlflow_error(bulk("metric_key=bulk"), 400, ipv, "GetMetricHistoryBulk request must specify at least one run_id.");
    assert_mlflow_error(bulk(&format!("run_id={run}")), 400, ipv, "GetMetricHistoryBulk request must specify a metric_key.");

    // Model versions come last updated first by default, then by name.
    for name in ["b", "a"] {
        assert_eq!(mlflow_post(&server, "registered-models/create", json!({"name": name})).0, 200);
    }
    for name in ["b", "a", "b"] {
        let (code, body) = mlflow_post(&server, "model-versions/create", json!({"name": name, "source": "runs:/r/model", "run_id": "r"}));
        assert_eq!(code, 200, "{body}");
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    assert_eq!(version_order(&server, json!({})), [("b".into(), "2".into()), ("a".into(), "1".into()), ("b".into(), "1".into())]);
}

#[test]
fn version_sources_are_checked_and_the_ui_routes_served_as_mlflows_own_rest_tests_expect() {
    let k = Kiln::new();
    let root = k.dir.path().join("mlartifacts");
    let server = k.serve(&["--workers", "0", "--no-scheduler", "--default-artifact-root", root.to_str().unwrap()]);
    let ipv = "INVALID_PARAMETER_VALUE";
    let message = |(code, body): (u16, Value)| -> (u16, String) { (code, body["message"].as_str().unwrap_or("").to_string()) };

    // An experiment without a location gets one under the server's root;
    // a relative one is made absolute; a location or tags of the wrong
    // type are refused by name.
    let (code, body) = mlflow_post(&server, "experiments/create", json!({"name": "art"}));
    assert_eq!(code, 200, "{body}");
    let exp = body["experiment_id"].as_str().unwrap().to_string();
    let (_, body) = mlflow_get(&server, &format!("experiments/get?experiment_id={exp}"));
    assert_eq!(body["experiment"]["artifact_location"], format!("file://{}/{exp}", root.display()), "{body}");
    let (_, body) = mlflow_get(&server, "experiments/get?experiment_id=0");
    assert_eq!(body["experiment"]["artifact_location"], format!("file://{}/0", root.display()), "{body}");
    let (code, body) = mlflow_post(&server, "experiments/create", json!({"name": "here", "artifact_location": "my_location"}));
    assert_eq!(code, 200, "{body}");
    let (_, body) = mlflow_get(&server, &format!("experiments/get?experiment_id={}", body["experiment_id"].as_str().unwrap()));
    let here = std::fs::canonicalize(k.dir.path()).unwrap().join("my_location");
    assert!(
        [here.to_str().unwrap().to_string(), k.dir.path().join("my_location").display().to_string()]
            .contains(&body["experiment"]["artifact_location"].as_str().unwrap().to_string()),
        "{body}"
    );
    let (code, m) = message(mlflow_post(&server, "experiments/create", json!({"name": "x", "artifact_location": 9.0})));
    assert!(code == 400 && m.starts_with("Invalid value 9.0 for parameter 'artifact_location' supplied"), "{m}");
    let (code, m) = message(mlflow_post(&server, "experiments/create", json!({"name": "x", "tags": "5"})));
    assert!(code == 400 && m.starts_with("Invalid value \"5\" for parameter 'tags' supplied"), "{m}");

    // A local source must lie in the run's artifact directory, named by
    // run_id; any other URI must hold no relative reference, however
    // encoded (else a version could point a client at any server file).
    let (code, body) = mlflow_post(&server, "runs/create", json!({"experiment_id": exp, "start_time": 1}));
    assert_eq!(code, 200, "{body}");
    let run = body["run"]["info"]["run_id"].as_str().unwrap().to_string();
    let artifacts = body["run"]["info"]["artifact_uri"].as_str().unwrap().to_string();
    assert!(artifacts.starts_with(&format!("file://{}/{exp}/", root.display())), "{artifacts}");
    assert_eq!(mlflow_post(&server, "registered-models/create", json!({"name": "m"})).0, 200);
    let version = |source: &str, run_id: Option<&str>| {
        let mut body = json!({"name": "m", "source": source});
        if let Some(r) = run_id {
            body["run_id"] = json!(r);
        }
        message(mlflow_post(&server, "model-versions/create", body))
    };
    for ok in [artifacts.clone(), format!("{artifacts}/model"), format!("{artifacts}/model/.."), artifacts["file://".len()..].to_string()] {
        assert_eq!(version(&ok, Some(&run)).0, 200, "{ok}");
    }
    for local in [(artifacts.as_str(), None), ("/tmp", Some(run.as_str())), (&format!("{artifacts}/../../other"), Some(run.as_str()))] {
        let (code, m) = version(local.0, local.1);
        assert!(
            code == 400 && m.contains("To use a local path as a model version source, the run_id request parameter has to be specified"),
            "{local:?}: {m}"
        );
    }
    for ok in ["mlflow-artifacts:/models/foo///bar", "mlflow-artifacts://host:9000/models/artifact/..../", "s3://bucket/model"] {
        assert_eq!(version(ok, Some(&run)).0, 200, "{ok}");
    }
    for bad in [
        "http://host:9000/models/../../../",
        "mlflow-artifacts://host:9000/models/..%2f..%2fartifacts",
        "s3://bucket/a%00",
        "dbfs:/r/a%253f/..%252f..",
    ] {
        let (code, m) = version(bad, Some(&run));
        assert!(code == 400 && m.contains("If supplying a source as an http, https, local file path"), "{bad}: {m}");
    }

    // Versions made from a logged model are listed on it, in order.
    let (code, body) = mlflow_post(&server, "logged-models", json!({"experiment_id": exp, "name": "lm"}));
    assert_eq!(code, 200, "{body}");
    let model = body["model"]["info"]["model_id"].as_str().unwrap().to_string();
    let (code, body) = mlflow_post(&server, "registered-models/create", json!({"name": "from-model"}));
    assert_eq!(code, 200, "{body}");
    for _ in 0..2 {
        let (code, body) =
            mlflow_post(&server, "model-versions/create", json!({"name": "from-model", "source": format!("models:/{model}"), "model_id": model}));
        assert_eq!(code, 200, "{body}");
    }
    let (_, body) = mlflow_get(&server, &format!("logged-models/{model}"));
    let tag = body["model"]["info"]["tags"].as_array().unwrap().iter().find(|t| t["key"] == "mlflow.modelVersions").cloned();
    assert_eq!(tag.unwrap()["value"], r#"[{"name": "from-model", "version": 1}, {"name": "from-model", "version": 2}]"#, "{body}");

    // Versions by version number, then by name.
    let order = version_order(&server, json!({"order_by": ["version_number DESC"], "max_results": 3}));
    assert_eq!(order, [("m".into(), "7".into()), ("m".into(), "6".into()), ("m".into(), "5".into())]);

    // A deleted version's number is not given again, nor after a rename;
    // a `runs:/` source whose run another server holds is handed back as
    // it is, for the client to resolve there.
    let delete = http().delete(&format!("{}/api/2.0/mlflow/model-versions/delete?name=m&version=7", server.url)).call().unwrap();
    assert_eq!(delete.status().as_u16(), 200);
    let (code, body) = mlflow_post(&server, "model-versions/create", json!({"name": "m", "source": "runs:/ghost/model", "run_id": "ghost"}));
    assert_eq!((code, body["model_version"]["version"].as_str()), (200, Some("8")), "{body}");
    assert_eq!(mlflow_post(&server, "registered-models/rename", json!({"name": "m", "new_name": "m2"})).0, 200);
    let (code, body) = mlflow_post(&server, "model-versions/create", json!({"name": "m2", "source": "s3://bucket/model"}));
    assert_eq!((code, body["model_version"]["version"].as_str()), (200, Some("9")), "{body}");
    let (code, body) = mlflow_get(&server, "model-versions/get-download-uri?name=m2&version=8");
    assert_eq!((code, body["artifact_uri"].as_str()), (200, Some("runs:/ghost/model")), "{body}");
    // A copied version (`models:/NAME/V`) downloads from where the copied one does.
    let (code, body) = mlflow_post(&server, "model-versions/create", json!({"name": "m2", "source": "models:/m2/8"}));
    assert_eq!(code, 200, "{body}");
    let (code, body) = mlflow_get(&server, "model-versions/get-download-uri?name=m2&version=10");
    assert_eq!((code, body["artifact_uri"].as_str()), (200, Some("runs:/ghost/model")), "{body}");
    // Versions that name each other in a ring answer, not hang.
    for source in ["models:/m2/12", "models:/m2/11"] {
        assert_eq!(mlflow_post(&server, "model-versions/create", json!({"name": "m2", "source": source})).0, 200);
    }
    let (code, body) = mlflow_get(&server, "model-versions/get-download-uri?name=m2&version=11");
    assert_eq!(code, 200, "{body}");
    assert!(body["artifact_uri"].as_str().unwrap().starts_with("models:/m2/1"), "{body}");

    // The datasets an experiment's runs read (a UI route).
    let inputs = json!({"run_id": run, "datasets": [{"dataset": {"name": "d", "digest": "1", "source_type": "local", "source": "x"},
        "tags": [{"key": "mlflow.data.context", "value": "training"}]}]});
    assert_eq!(mlflow_post(&server, "runs/log-inputs", inputs).0, 200);
    let datasets = |body: Value| send(&format!("{}/ajax-api/2.0/mlflow/experiments/search-datasets", server.url), Some(&body));
    let (code, body) = datasets(json!({"experiment_ids": [exp]}));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["dataset_summaries"], json!([{"experiment_id": exp, "name": "d", "digest": "1", "context": "training"}]));
    assert_mlflow_error(datasets(json!({"experiment_ids": []})), 400, ipv, "SearchDatasets request must specify at least one experiment_id.");
    let many: Vec<String> = (0..21).map(|i| i.to_string()).collect();
    assert_mlflow_error(
        datasets(json!({"experiment_ids": many})),
        400,
        ipv,
        "SearchDatasets request cannot specify more than 20 experiment_ids. Received 21 experiment_ids.",
    );

    // The web UI's raw upload and download of a run's file: any content
    // type from a client without an Origin, refused from another site's page.
    let upload = |query: &str, body: &str, origin: Option<&str>| {
        let mut req = http().post(&format!("{}/ajax-api/2.0/mlflow/upload-artifact?{query}", server.url)).header("content-type", "text/plain");
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let mut resp = req.send(body).unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)))
    };
    let (_, body) = mlflow_post(&server, "runs/create", json!({"experiment_id": "0", "start_time": 1}));
    let proxied = body["run"]["info"]["run_id"].as_str().unwrap().to_string();
    assert_eq!(upload(&format!("run_uuid={proxied}&path=notes/a.txt"), "hello world", None).0, 200);
    assert_eq!(upload(&format!("run_uuid={proxied}&path=b.txt"), "from evil", Some("https://evil.example")).0, 415);
    assert_mlflow_error(upload("path=a.txt", "x", None), 400, ipv, "Request must specify run_uuid.");
    assert_mlflow_error(upload(&format!("run_uuid={proxied}"), "x", None), 400, ipv, "Request must specify path.");
    assert_mlflow_error(upload(&format!("run_uuid={proxied}&path=c.txt"), "", None), 400, ipv, "Request must specify data.");
    let (code, m) = message(upload(&format!("run_uuid={proxied}&path=../c.txt"), "x", None));
    assert!(code == 400 && m.starts_with("Invalid path"), "{m}");
    let (code, text) = crate::support::get(&format!("{}/get-artifact?run_uuid={proxied}&path=notes/a.txt", server.url));
    assert_eq!((code, text.as_str()), (200, "hello world"));
    let (code, _) = crate::support::get(&format!("{}/get-artifact?run_uuid={proxied}&path=b.txt", server.url));
    assert_eq!(code, 404, "the refused upload was not stored");
    // The proxy still keeps an empty file (clients log them).
    let put = http()
        .put(&format!("{}/api/2.0/mlflow-artifacts/artifacts/0/{proxied}/artifacts/empty.txt", server.url))
        .header("content-type", "application/octet-stream")
        .send("")
        .unwrap();
    assert_eq!(put.status().as_u16(), 200);
    let (code, text) = crate::support::get(&format!("{}/get-artifact?run_uuid={proxied}&path=empty.txt", server.url));
    assert_eq!((code, text.as_str()), (200, ""), "an empty file logged through the proxy is kept");

    // A logged model's file, as the UI reads it.
    let (_, body) = mlflow_post(&server, "logged-models", json!({"experiment_id": "0", "name": "served"}));
    let served = body["model"]["info"]["model_id"].as_str().unwrap().to_string();
    let put = http()
        .put(&format!("{}/api/2.0/mlflow-artifacts/artifacts/0/models/{served}/artifacts/MLmodel", server.url))
        .header("content-type", "application/octet-stream")
        .send(format!("model_id: {served}\n"))
        .unwrap();
    assert_eq!(put.status().as_u16(), 200);
    let (code, text) =
        crate::support::get(&format!("{}/ajax-api/2.0/mlflow/logged-models/{served}/artifacts/files?artifact_file_path=MLmodel", server.url));
    assert_eq!((code, text), (200, format!("model_id: {served}\n")));
}

/// A registered version's files as MLflow's UI reads them
/// (`/model-versions/get-artifact`), MLflow's exact "Invalid path" for a
/// path that climbs out on every download and listing route (even one
/// reached through a doubled slash, which is redirected as MLflow's server
/// redirects it), and `--version-source-pattern`, MLflow's
/// `MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX`.
#[test]
fn version_files_are_served_bad_paths_refused_and_sources_held_to_the_servers_pattern() {
    let k = Kiln::new();
    // A pattern that is not a regular expression stops the server, by name.
    let out = k.cmd(&["serve", "--addr", "127.0.0.1:0", "--version-source-pattern", "(unclosed"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("`(unclosed` is not a regular expression"), "{stderr}");

    let server = k.serve(&["--workers", "0", "--no-scheduler", "--version-source-pattern", "^mlflow-artifacts:/"]);
    let ipv = "INVALID_PARAMETER_VALUE";
    let run = create_run(&server);
    let put = http()
        .put(&format!("{}/api/2.0/mlflow-artifacts/artifacts/0/{run}/artifacts/model/MLmodel", server.url))
        .header("content-type", "application/octet-stream")
        .send("flavors: {}\n")
        .unwrap();
    assert_eq!(put.status().as_u16(), 200);
    assert_eq!(mlflow_post(&server, "registered-models/create", json!({"name": "m"})).0, 200);
    assert_mlflow_error(
        mlflow_post(&server, "model-versions/create", json!({"name": "m", "source": "s3://bucket/model", "run_id": run})),
        400,
        ipv,
        "Invalid model version source: 's3://bucket/model'.",
    );
    let source = format!("mlflow-artifacts:/0/{run}/artifacts/model");
    let (code, body) = mlflow_post(&server, "model-versions/create", json!({"name": "m", "source": source, "run_id": run}));
    assert_eq!((code, body["model_version"]["version"].as_str()), (200, Some("1")), "{body}");

    let (code, text) = crate::support::get(&format!("{}/model-versions/get-artifact?name=m&version=1&path=MLmodel", server.url));
    assert_eq!((code, text.as_str()), (200, "flavors: {}\n"));
    let (code, _) = crate::support::get(&format!("{}/model-versions/get-artifact?name=m&version=1&path=absent", server.url));
    assert_eq!(code, 404);

    let exact = json!({"error_code": ipv, "message": "Invalid path"});
    for url in [
        format!("{}/api/2.0/mlflow/artifacts/list?run_id={run}&path=../path", server.url),
        format!("{}/get-artifact?run_id={run}&path=../path", server.url),
        format!("{}//model-versions/get-artifact?name=m&version=1&path=../path", server.url),
    ] {
        assert_eq!(send(&url, None), (400, exact.clone()), "{url}");
    }
    let moved = http()
        .get(&format!("{}//model-versions//get-artifact?name=m&version=1&path=MLmodel", server.url))
        .config()
        .max_redirects(0)
        .max_redirects_will_error(false)
        .build()
        .call()
        .unwrap();
    assert_eq!(moved.status().as_u16(), 308);
    assert_eq!(moved.headers()["location"], "/model-versions/get-artifact?name=m&version=1&path=MLmodel");
}
