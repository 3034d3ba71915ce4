//! Serving: a model a pipeline trained is registered, deployed and
//! answers MLflow's scoring protocol from warm sandboxed instances; bad
//! requests get a 4xx naming what is wrong, and an instance that traps,
//! hangs or runs out of memory is replaced while the deployment keeps
//! answering.

use crate::support::{Kiln, Process, fixture, http, repo_root};
use serde_json::{Value, json};

/// (status, headers we read, body) of a prediction request.
struct Answer {
    status: u16,
    version: Option<String>,
    body: Value,
}

fn invoke(server: &Process, deployment: &str, content_type: &str, body: &str) -> Answer {
    let mut resp =
        http().post(&format!("{}/deployments/{deployment}/invocations", server.url)).header("content-type", content_type).send(body).unwrap();
    let status = resp.status().as_u16();
    let version = resp.headers().get("x-kiln-model-version").and_then(|v| v.to_str().ok()).map(String::from);
    let text = resp.body_mut().read_to_string().unwrap();
    Answer { status, version, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
}

/// The quickstart's rows as MLflow's `dataframe_split`, without the target.
fn cancer_rows(n: usize) -> (Value, Vec<i64>) {
    let text = std::fs::read_to_string(repo_root().join("examples/quickstart/breast_cancer.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let target = header.iter().position(|h| *h == "benign").unwrap();
    let columns: Vec<&str> = header.iter().enumerate().filter(|(i, _)| *i != target).map(|(_, h)| *h).collect();
    let mut data = Vec::new();
    let mut labels = Vec::new();
    for line in lines.take(n) {
        let fields: Vec<f64> = line.split(',').map(|f| f.parse().unwrap()).collect();
        labels.push(fields[target] as i64);
        data.push(fields.iter().enumerate().filter(|(i, _)| *i != target).map(|(_, v)| *v).collect::<Vec<f64>>());
    }
    (json!({"columns": columns, "data": data}), labels)
}

/// The status of a request that declares a 40 MiB body and sends none:
/// the server answers before reading it (a client sending it would see the
/// connection closed under it).
fn declared_too_large(server: &Process, deployment: &str) -> u16 {
    use std::io::{Read, Write};
    let authority = server.url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(authority).unwrap();
    write!(
        s,
        "POST /deployments/{deployment}/invocations HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        40 << 20
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    String::from_utf8_lossy(&head[9..12]).parse().unwrap()
}

#[test]
fn a_trained_model_is_registered_deployed_and_answers_mlflows_scoring_protocol() {
    let k = Kiln::new();
    let pipeline = repo_root().join("examples/quickstart/pipeline.toml").display().to_string();
    let run = k.run(&["run", &pipeline, "--json"]).ok().json();
    let run_id = run["run_id"].as_str().unwrap().to_string();

    // Only a stage that trained a model registers; the version knows its
    // plugin and the 30 columns it was trained on.
    let refused = k.run(&["models", "register", &run_id, "evaluate", "cancer"]).fails();
    assert!(refused.stderr.contains("stage `evaluate` of run") && refused.stderr.contains("stages with a model: train"), "{}", refused.stderr);
    let v = k.run(&["models", "register", &run_id, "train", "cancer", "--alias", "champion", "--json"]).ok().json();
    assert_eq!(v["version"], 1);
    assert_eq!(v["signature"]["inputs"].as_array().unwrap().len(), 30, "{v}");
    assert_eq!(v["signature"]["target"], "benign");
    assert!(v["signature"]["trained_on"].as_str().unwrap().ends_with("breast_cancer.csv, train split"), "{v}");
    assert!(v["plugin_digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(v["source"], format!("runs:/{run_id}/train"));

    let bad = k.run(&["deploy", "web", "--model", "cancer"]).fails();
    assert!(bad.stderr.contains("MODEL@VERSION"), "{}", bad.stderr);
    let d = k.run(&["deploy", "web", "--model", "cancer@champion", "--max-rows", "50", "--json"]).ok().json();
    assert_eq!((d["version"].as_i64(), d["model_ref"].as_str()), (Some(1), Some("champion")));
    let listed = k.run(&["deployments", "list", "--json"]).ok().json();
    assert_eq!(listed[0]["name"], "web");
    let shown = k.run(&["deployments", "show", "web", "--json"]).ok().json();
    assert_eq!(
        (shown["deployment"]["version"].as_i64(), shown["version"]["signature"]["inputs"][0]["name"].as_str()),
        (Some(1), Some("mean_radius")),
        "{shown}"
    );
    let text = k.run(&["deployments", "show", "web"]).ok().stdout;
    assert!(text.contains("cancer version 1 (deployed as cancer@champion)") && text.contains("mean_radius"), "{text}");

    let server = k.serve(&["--workers", "0", "--no-scheduler"]);
    let (split, labels) = cancer_rows(40);
    let answer = invoke(&server, "web", "application/json", &json!({"dataframe_split": split}).to_string());
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.version.as_deref(), Some("1"));
    let predicted: Vec<i64> = answer.body["predictions"].as_array().unwrap().iter().map(|p| p.as_i64().unwrap()).collect();
    let right = predicted.iter().zip(&labels).filter(|(p, l)| p == l).count();
    // The holdout accuracy is 0.97; these are training rows.
    assert!(right >= 36, "{right} of 40 right: {predicted:?} vs {labels:?}");

    // The same rows as records, as columns and as CSV answer the same.
    let columns: Vec<String> = split["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    let rows = split["data"].as_array().unwrap();
    let records: Vec<Value> =
        rows.iter().map(|r| Value::Object(columns.iter().cloned().zip(r.as_array().unwrap().iter().cloned()).collect())).collect();
    let csv = std::iter::once(columns.join(","))
        .chain(rows.iter().map(|r| r.as_array().unwrap().iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",")))
        .collect::<Vec<_>>()
        .join("\n");
    for (content_type, body) in [
        ("application/json", json!({"dataframe_records": records}).to_string()),
        ("application/json", json!({"instances": records}).to_string()),
        ("application/json; charset=utf-8", json!({"inputs": rows}).to_string()),
        ("text/csv", csv),
    ] {
        let again = invoke(&server, "web", content_type, &body);
        assert_eq!(again.status, 200, "{content_type}: {}", again.body);
        assert_eq!(again.body["predictions"], answer.body["predictions"], "{content_type}");
    }

    // Requests that do not fit the model are refused by name.
    let mut wrong = split.clone();
    wrong["columns"][3] = json!("mean_areaa");
    let refused = invoke(&server, "web", "application/json", &json!({"dataframe_split": wrong}).to_string());
    assert_eq!((refused.status, refused.body["column"].as_str()), (400, Some("mean_areaa")), "{}", refused.body);
    assert!(refused.body["message"].as_str().unwrap().contains("is not an input of this model"), "{}", refused.body);
    let mut short = records[0].clone();
    short.as_object_mut().unwrap().remove("mean_area");
    let refused = invoke(&server, "web", "application/json", &json!({"dataframe_records": [short]}).to_string());
    assert_eq!((refused.status, refused.body["column"].as_str()), (400, Some("mean_area")), "{}", refused.body);
    let mut typed = records[0].clone();
    typed["mean_area"] = json!("large");
    let refused = invoke(&server, "web", "application/json", &json!({"dataframe_records": [typed]}).to_string());
    assert_eq!((refused.status, refused.body["column"].as_str()), (400, Some("mean_area")), "{}", refused.body);
    let (many, _) = cancer_rows(51);
    let refused = invoke(&server, "web", "application/json", &json!({"dataframe_split": many}).to_string());
    assert_eq!(refused.status, 400);
    assert!(refused.body["message"].as_str().unwrap().contains("at most 50 per request"), "{}", refused.body);
    let refused = invoke(&server, "web", "application/x-www-form-urlencoded", "a=1");
    assert_eq!(refused.status, 415, "{}", refused.body);
    assert_eq!(invoke(&server, "nowhere", "application/json", "{}").status, 404);
    assert_eq!(declared_too_large(&server, "web"), 413);

    // The same over REST: a second deployment of the same model, a served
    // version that cannot be deleted, and the deployment gone when deleted.
    let api = format!("{}/api/v1", server.url);
    let mut created = http()
        .post(&format!("{api}/deployments"))
        .header("content-type", "application/json")
        .send(json!({"name": "web2", "model": "cancer@1", "instances": 1}).to_string())
        .unwrap();
    assert_eq!(created.status().as_u16(), 201, "{}", created.body_mut().read_to_string().unwrap());
    assert_eq!(invoke(&server, "web2", "application/json", &json!({"dataframe_split": split}).to_string()).status, 200);
    let mut shown = http().get(&format!("{api}/deployments/web2")).call().unwrap();
    let shown: Value = serde_json::from_str(&shown.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(shown["serving"]["idle_instances"], 1, "{shown}");
    let mut refused = http().delete(&format!("{}/api/2.0/mlflow/model-versions/delete?name=cancer&version=1", server.url)).call().unwrap();
    let text = refused.body_mut().read_to_string().unwrap();
    assert!(refused.status().as_u16() == 400 && text.contains("served by deployment `web`"), "{text}");
    assert_eq!(http().delete(&format!("{api}/deployments/web2")).call().unwrap().status().as_u16(), 200);
    assert_eq!(invoke(&server, "web2", "application/json", &json!({"dataframe_split": split}).to_string()).status, 404);
    let mut model = http().get(&format!("{api}/models/cancer")).call().unwrap();
    let model: Value = serde_json::from_str(&model.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(model["aliases"], json!([["champion", 1]]), "{model}");

    // A version MLflow's API registered is not one Kiln can serve.
    let mlflow = format!("{}/api/2.0/mlflow", server.url);
    for (endpoint, body) in
        [("registered-models/create", json!({"name": "skl"})), ("model-versions/create", json!({"name": "skl", "source": "s3://b/model"}))]
    {
        let resp = http().post(&format!("{mlflow}/{endpoint}")).header("content-type", "application/json").send(body.to_string()).unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    }
    let refused = k.run(&["deploy", "skl", "--model", "skl@1"]).fails();
    assert!(refused.stderr.contains("registered through MLflow's API"), "{}", refused.stderr);
}

#[test]
fn a_served_instance_that_traps_hangs_or_runs_out_of_memory_is_replaced_and_the_deployment_keeps_answering() {
    let k = Kiln::new();
    k.run(&["plugin", "add", "--memory", "64MiB", &fixture("misbehave")]).ok();
    let mut csv = String::from("x,trigger,y\n");
    for i in 0..20 {
        csv.push_str(&format!("{i},0,{}\n", i % 2));
    }
    k.write("d.csv", &csv);
    let stage = |mode: &str| {
        format!(
            "name = \"m\"\n[inputs.d]\npath = \"d.csv\"\ntarget = \"y\"\n[stages.fit]\nuses = \"misbehave\"\ndata = \"d\"\nwith = {{ mode = \"{mode}\" }}\n"
        )
    };
    let failed = k.write("trap.toml", &stage("trap"));
    let run = k.run(&["run", failed.to_str().unwrap(), "--json"]).fails().json();
    let refused = k.run(&["models", "register", run["run_id"].as_str().unwrap(), "fit", "m"]).fails();
    assert!(refused.stderr.contains("is FAILED: only a finished run's model is registered"), "{}", refused.stderr);
    let ok = k.write("count.toml", &stage("count"));
    let run = k.run(&["run", ok.to_str().unwrap(), "--json"]).ok().json();
    k.run(&["models", "register", run["run_id"].as_str().unwrap(), "fit", "m"]).ok();
    k.run(&["deploy", "echo", "--model", "m@1", "--instances", "1", "--timeout", "1s"]).ok();
    let server = k.serve(&["--workers", "0", "--no-scheduler"]);

    let predict =
        |trigger: i64| invoke(&server, "echo", "application/json", &json!({"dataframe_records": [{"x": 1, "trigger": trigger}]}).to_string());
    // A `count` model answers how many predictions its instance has made:
    // the model is loaded once and the instance reused.
    let count = |trigger: i64| -> i64 {
        let a = predict(trigger);
        assert_eq!(a.status, 200, "{}", a.body);
        a.body["predictions"][0].as_i64().unwrap()
    };
    assert_eq!((count(0), count(0), count(0)), (1, 2, 3));
    for (trigger, status, says) in [(1, 500, "panicked"), (2, 504, "timed out"), (3, 500, "ran out of memory")] {
        let failed = predict(trigger);
        assert_eq!(failed.status, status, "trigger {trigger}: {}", failed.body);
        assert!(failed.body["message"].as_str().unwrap().contains(says), "trigger {trigger}: {}", failed.body);
        assert_eq!(count(0), 1, "after trigger {trigger} a fresh instance answers");
    }
    // The plugin's own refusal is the client's error, and the instance stays.
    let refused = predict(4);
    assert_eq!((refused.status, refused.body["column"].as_str()), (400, Some("trigger")), "{}", refused.body);
    assert!(refused.body["message"].as_str().unwrap().contains("trigger 4 refuses this input"), "{}", refused.body);
    assert_eq!(count(0), 3, "the instance that refused the input answers on");
    let mut shown = http().get(&format!("{}/api/v1/deployments/echo", server.url)).call().unwrap();
    let shown: Value = serde_json::from_str(&shown.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(shown["serving"]["replaced_instances"], 3, "{shown}");
    assert_eq!(shown["serving"]["idle_instances"], 1, "{shown}");
}

#[test]
fn a_pipeline_registers_its_model_only_when_every_gate_passes() {
    let k = Kiln::new();
    k.write("d.csv", &crate::support::tiny_csv());
    k.run(&["data", "add", "d.csv", "--name", "tinyd"]).ok();
    let pipeline = |gate: &str, extra: &str| {
        format!(
            "name = \"reg\"\n[inputs.d]\ndataset = \"tinyd\"\ntarget = \"y\"\n\
             [stages.train]\nuses = \"linear\"\ndata = \"d\"\nwith = {{ model = \"logistic\" }}\nregister = \"tiny\"\n{extra}\n\
             [stages.evaluate]\nuses = \"metrics\"\nmodel = \"train\"\ndata = \"d\"\n\
             [stages.gate]\ncheck = \"evaluate.accuracy >= {gate}\"\n"
        )
    };
    let passing = k.write("pass.toml", &pipeline("0", "alias = \"challenger\""));
    let out = k.run(&["run", passing.to_str().unwrap(), "--json"]).ok().json();
    assert_eq!(out["registered"], json!([{"stage": "train", "model": "tiny", "version": 1, "alias": "challenger"}]), "{out}");
    let failing = k.write("fail.toml", &pipeline("2", ""));
    let out = k.run(&["run", failing.to_str().unwrap(), "--json"]).fails().json();
    assert_eq!(out["registered"], json!([]), "a run whose gate failed registers nothing");
    let shown = k.run(&["models", "show", "tiny", "--json"]).ok().json();
    assert_eq!(shown["versions"].as_array().unwrap().len(), 1, "{shown}");
    assert_eq!(shown["aliases"], json!([["challenger", 1]]));
    assert_eq!(shown["versions"][0]["signature"]["inputs"], json!([{"name": "x1", "type": "double"}, {"name": "x2", "type": "double"}]));
    assert_eq!(shown["versions"][0]["signature"]["trained_on"], "dataset tinyd@1", "the dataset version it was trained on");

    // Mistakes are reported with their line, before anything runs.
    let alias_alone = k.write("a.toml", &pipeline("0", "").replace("register = \"tiny\"", "alias = \"x\""));
    let refused = k.run(&["run", alias_alone.to_str().unwrap()]).fails();
    assert!(refused.stderr.contains("a.toml:") && refused.stderr.contains("`alias` needs `register"), "{}", refused.stderr);
    let on_evaluator = k.write(
        "e.toml",
        &pipeline("0", "")
            .replace("register = \"tiny\"\n", "")
            .replace("data = \"d\"\n[stages.gate]", "data = \"d\"\nregister = \"x\"\n[stages.gate]"),
    );
    let refused = k.run(&["run", on_evaluator.to_str().unwrap()]).fails();
    assert!(refused.stderr.contains("makes no model to `register`"), "{}", refused.stderr);
    assert_eq!(k.run(&["models", "show", "tiny", "--json"]).ok().json()["versions"].as_array().unwrap().len(), 1);
}
