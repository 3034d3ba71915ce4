//! Rollouts: a canary takes its share of a deployment's requests (the same
//! version for the same route key), its policy promotes it by itself and
//! moves the alias, a canary that breaks is rolled back on the spot while
//! the request is answered by the stable version, a shadow sees every
//! request and never answers, and every change is in the history. Two
//! servers on one PostgreSQL route from the same rollout and decide it
//! once.

use crate::support::{Kiln, Process, fixture, http, postgres_database, wait_for};
use serde_json::{Value, json};

/// (status, version header, route header, body) of one prediction.
fn predict(server: &Process, key: Option<&str>, trigger: i64) -> (u16, String, String, Value) {
    let mut req = http().post(&format!("{}/deployments/echo/invocations", server.url)).header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("x-kiln-route-key", k);
    }
    let mut resp = req.send(json!({"dataframe_records": [{"x": 1, "trigger": trigger}]}).to_string()).unwrap();
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let (version, route) = (header("x-kiln-model-version"), header("x-kiln-route"));
    let status = resp.status().as_u16();
    let body = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap_or(Value::Null);
    (status, version, route, body)
}

fn rest(server: &Process, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("{}/api/v1/deployments/echo{path}", server.url);
    let mut resp = match (method, body) {
        ("GET", _) => http().get(&url).call().unwrap(),
        ("PUT", Some(b)) => http().put(&url).header("content-type", "application/json").send(b.to_string()).unwrap(),
        ("DELETE", _) => http().delete(&url).call().unwrap(),
        (_, b) => http().post(&url).header("content-type", "application/json").send(b.unwrap_or(json!({})).to_string()).unwrap(),
    };
    (resp.status().as_u16(), serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap_or(Value::Null))
}

/// Model `m`: version 1 a `linear` model, versions 2 and 3 `misbehave`
/// count models (a `trigger` of 1 panics them; linear does not care), all
/// on the columns x and trigger. Deployed as `echo` following `m@champion`.
fn three_versions(k: &Kiln) {
    k.run(&["plugin", "add", "--memory", "64MiB", &fixture("misbehave")]).ok();
    let mut csv = String::from("x,trigger,y\n");
    for i in 0..20 {
        csv.push_str(&format!("{i},0,{}\n", i % 2));
    }
    k.write("d.csv", &csv);
    let pipeline = |uses: &str, with: &str| {
        format!("name = \"m\"\n[inputs.d]\npath = \"d.csv\"\ntarget = \"y\"\n[stages.fit]\nuses = \"{uses}\"\ndata = \"d\"\nwith = {{ {with} }}\n")
    };
    for (file, uses, with) in [("lin.toml", "linear", "model = \"logistic\""), ("count.toml", "misbehave", "mode = \"count\"")] {
        let path = k.write(file, &pipeline(uses, with));
        let run = k.run(&["run", path.to_str().unwrap(), "--json"]).ok().json();
        let id = run["run_id"].as_str().unwrap().to_string();
        k.run(&["models", "register", &id, "fit", "m"]).ok();
        if uses == "misbehave" {
            k.run(&["models", "register", &id, "fit", "m"]).ok();
        }
    }
    k.run(&["models", "alias", "m", "1", "champion"]).ok();
    k.run(&["deploy", "echo", "--model", "m@champion", "--instances", "1"]).ok();
}

fn history(k: &Kiln) -> Vec<(String, i64, String)> {
    let events = k.run(&["deploy", "history", "echo", "--json"]).ok().json();
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap().to_string(), e["version"].as_i64().unwrap(), e["reason"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn a_canary_takes_its_share_is_promoted_by_its_policy_and_a_canary_that_breaks_is_rolled_back_at_once() {
    let k = Kiln::new();
    three_versions(&k);
    let server = k.serve(&["--workers", "0", "--no-scheduler"]);
    assert_eq!(predict(&server, None, 0).1, "1");
    let (_, doc) = crate::support::get(&format!("{}/api/v1/openapi.json", server.url));
    let doc: Value = serde_json::from_str(&doc).unwrap();
    for (method, path) in [
        ("post", "/deployments/{name}/invocations"),
        ("get", "/api/v1/deployments/{name}"),
        ("get", "/api/v1/deployments/{name}/history"),
        ("post", "/api/v1/deployments/{name}/canary"),
        ("post", "/api/v1/deployments/{name}/promote"),
        ("post", "/api/v1/deployments/{name}/rollback"),
        ("put", "/api/v1/deployments/{name}/shadow"),
        ("delete", "/api/v1/deployments/{name}/shadow"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is not in openapi.json");
    }

    // A canary that panics on a request is rolled back then and there; the
    // client gets the stable version's answer.
    let refused = k.run(&["deploy", "echo", "--canary", "m@1", "--percent", "10"]).fails();
    assert!(refused.stderr.contains("a canary must be another version"), "{}", refused.stderr);
    let refused = k.run(&["deploy", "echo", "--canary", "m@2", "--percent", "120"]).fails();
    assert!(refused.stderr.contains("--percent must be more than 0 and at most 100, not 120"), "{}", refused.stderr);
    k.run(&["deploy", "echo", "--canary", "m@2", "--percent", "100"]).ok();
    let (status, version, route, body) = predict(&server, None, 0);
    assert_eq!((status, version.as_str(), route.as_str()), (200, "2", "canary"), "{body}");
    let (status, version, route, body) = predict(&server, None, 1);
    assert_eq!((status, version.as_str(), route.as_str()), (200, "1", "stable"), "the stable version answered: {body}");
    let shown = k.run(&["deployments", "show", "echo", "--json"]).ok().json();
    assert!(shown["deployment"]["canary"].is_null(), "{shown}");
    let (action, v, reason) = history(&k).pop().unwrap();
    assert_eq!((action.as_str(), v), ("rollback", 2));
    assert!(reason.contains("failed a request") && reason.contains("panicked"), "{reason}");
    assert_eq!(predict(&server, None, 0).1, "1", "its traffic is back on stable");

    // A 25% canary: a quarter of unkeyed requests, and one arm per key.
    // The latency bound is out of reach: this machine's load (other tests
    // running) must not decide a test of the split and the promotion.
    let started = k
        .run(&["deploy", "echo", "--canary", "m@3", "--percent", "25", "--promote-after-requests", "30", "--max-p99-ratio", "1000", "--json"])
        .ok()
        .json();
    assert_eq!((started["canary"]["version"].as_i64(), started["canary"]["percent"].as_f64()), (Some(3), Some(25.0)), "{started}");
    let versions: Vec<String> = (0..40).map(|_| predict(&server, None, 0).1).collect();
    let canary = versions.iter().filter(|v| *v == "3").count();
    assert!((8..=12).contains(&canary), "{canary} of 40 went to the canary: {versions:?}");
    assert_eq!(versions.iter().filter(|v| *v == "1").count(), 40 - canary);
    for user in ["ada", "grace", "alan", "edsger"] {
        let arms: std::collections::HashSet<String> = (0..5).map(|_| predict(&server, Some(user), 0).1).collect();
        assert_eq!(arms.len(), 1, "{user} saw {arms:?}");
    }
    // While it runs, the server counts each version's requests.
    let (_, shown) = rest(&server, "GET", "", None);
    let traffic = shown["traffic"].as_array().unwrap();
    assert_eq!(traffic.iter().map(|t| t["role"].as_str().unwrap()).collect::<Vec<_>>(), ["stable", "canary"], "{shown}");
    assert!(traffic.iter().all(|t| t["errors"] == 0 && t["p99_ms"].as_f64().unwrap() > 0.0), "{shown}");

    // Healthy after 30 canary requests: the policy promotes it and moves
    // the alias the deployment follows.
    let promoted = wait_for(30, "the policy to promote the canary", || {
        predict(&server, None, 0);
        history(&k).into_iter().find(|(a, _, _)| a == "promote")
    });
    assert_eq!(promoted.1, 3);
    assert!(promoted.2.contains("canary and") && promoted.2.contains("error rate 0.0000 vs stable 0.0000"), "{}", promoted.2);
    let model = k.run(&["models", "show", "m", "--json"]).ok().json();
    assert_eq!(model["aliases"], json!([["champion", 3]]), "{model}");
    let shown = k.run(&["deployments", "show", "echo", "--json"]).ok().json();
    assert_eq!((shown["deployment"]["version"].as_i64(), shown["deployment"]["model_ref"].as_str()), (Some(3), Some("champion")));
    assert_eq!(predict(&server, None, 0).1, "3");

    // A shadow sees every request and never answers; it is compared with
    // what was returned.
    let (status, body) = rest(&server, "PUT", "/shadow", Some(json!({"model": "m@1"})));
    assert_eq!(status, 200, "{body}");
    for _ in 0..10 {
        let (_, version, route, _) = predict(&server, None, 0);
        assert_eq!((version.as_str(), route.as_str()), ("3", "stable"));
    }
    let shadow = wait_for(10, "the shadow's counts", || {
        let (_, shown) = rest(&server, "GET", "", None);
        shown["traffic"].as_array().unwrap().iter().find(|t| t["role"] == "shadow" && t["requests"] == 10).cloned()
    });
    assert_eq!((shadow["version"].as_i64(), shadow["agreed"].as_i64()), (Some(1), Some(0)), "linear never answers a count: {shadow}");
    assert_eq!(rest(&server, "DELETE", "/shadow", None).0, 200);
    // Nothing to decide without a canary.
    let (status, body) = rest(&server, "POST", "/promote", None);
    assert_eq!(status, 409, "{body}");
    // A version in any role is not deleted from under the deployment.
    let (status, body) = rest(&server, "POST", "/canary", Some(json!({"model": "m@1", "percent": 5, "policy": {"auto": false}})));
    assert_eq!(status, 200, "{body}");
    let mut resp = http().delete(&format!("{}/api/2.0/mlflow/model-versions/delete?name=m&version=1", server.url)).call().unwrap();
    let text = resp.body_mut().read_to_string().unwrap();
    assert!(text.contains("served by deployment `echo`"), "{text}");
    let (status, body) = rest(&server, "POST", "/rollback", Some(json!({"reason": "not today"})));
    assert_eq!((status, body["canary"].is_null()), (200, true), "{body}");

    let actions: Vec<String> = history(&k).into_iter().map(|(a, _, _)| a).collect();
    assert_eq!(actions, ["deploy", "canary", "rollback", "canary", "promote", "shadow", "unshadow", "canary", "rollback"]);
    let text = k.run(&["deploy", "history", "echo"]).ok().stdout;
    assert!(text.contains("not today") && text.contains("promote"), "{text}");
}

#[test]
fn two_servers_on_one_postgres_route_the_same_rollout_and_decide_it_once() {
    let k = Kiln::with_database(postgres_database());
    three_versions(&k);
    let a = k.serve(&["--workers", "0", "--no-scheduler"]);
    let b = k.serve(&["--workers", "0", "--no-scheduler"]);
    let (status, body) =
        rest(&a, "POST", "/canary", Some(json!({"model": "m@2", "percent": 50, "policy": {"after_requests": 40, "max_p99_ratio": 1000}})));
    assert_eq!(status, 200, "{body}");
    // The same key gets the same version from either server.
    for user in ["ada", "grace", "alan"] {
        assert_eq!(predict(&a, Some(user), 0).1, predict(&b, Some(user), 0).1, "{user}");
    }
    // Both servers' requests count towards one decision, made once.
    let promoted = wait_for(60, "the canary's promotion", || {
        for _ in 0..5 {
            predict(&a, None, 0);
            predict(&b, None, 0);
        }
        history(&k).into_iter().find(|(a, _, _)| a == "promote")
    });
    assert_eq!(promoted.1, 2);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let decisions = history(&k).into_iter().filter(|(a, _, _)| a == "promote" || a == "rollback").count();
    assert_eq!(decisions, 1, "{:?}", history(&k));
    assert_eq!((predict(&a, None, 0).1, predict(&b, None, 0).1), ("2".into(), "2".into()));
}
