//! Plugins that misbehave on purpose are contained: each failure fails its
//! stage with a clear error, the other stages and the host carry on.

use crate::support::{Kiln, fixture, tiny_csv};
use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// Run a pipeline with one misbehaving stage and one healthy independent
/// stage; return the JSON result.
fn run_mode(k: &Kiln, mode: &str, extra: &str) -> serde_json::Value {
    k.write("d.csv", &tiny_csv());
    let p = k.write(
        &format!("{mode}.toml"),
        &format!(
            "name = \"sandbox\"\n[inputs.d]\npath = \"d.csv\"\ntarget = \"y\"\n\
             [stages.bad]\nuses = \"misbehave\"\ndata = \"d\"\nwith = {{ mode = \"{mode}\"{extra} }}\ntimeout = \"2s\"\nmemory = \"64MiB\"\n\
             [stages.healthy]\nuses = \"linear\"\ndata = \"d\"\n"
        ),
    );
    let out = k.run(&["run", p.to_str().unwrap(), "--json", "--no-cache"]);
    let v = out.json();
    let healthy = v["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "healthy").unwrap();
    assert_eq!(healthy["status"], "ran", "the healthy stage is unaffected: {v}");
    v
}

fn bad_stage(v: &serde_json::Value) -> (String, String) {
    let s = v["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "bad").unwrap();
    (s["status"].as_str().unwrap().to_string(), s["error"].as_str().unwrap_or("").to_string())
}

fn kiln_with_fixture() -> Kiln {
    let k = Kiln::new();
    k.run(&["plugin", "add", &fixture("misbehave")]).ok();
    k
}

#[test]
fn a_spinning_plugin_is_stopped_at_its_deadline() {
    let k = kiln_with_fixture();
    let started = Instant::now();
    let v = run_mode(&k, "loop", "");
    let (status, error) = bad_stage(&v);
    assert_eq!(status, "failed");
    assert!(error.starts_with("plugin misbehave@0.1.0 timed out after 2s"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(60), "the run ended instead of spinning forever");
    assert_eq!(v["succeeded"], false);
}

#[test]
fn a_memory_hog_hits_its_cap() {
    let k = kiln_with_fixture();
    let v = run_mode(&k, "hog", "");
    let (status, error) = bad_stage(&v);
    assert_eq!(status, "failed");
    assert!(error.contains("ran out of memory") && error.contains("the cap is 67108864 bytes"), "{error}");
}

#[test]
fn a_trap_fails_the_stage_with_the_panic_message() {
    let k = kiln_with_fixture();
    let (status, error) = bad_stage(&run_mode(&k, "trap", ""));
    assert_eq!(status, "failed");
    assert!(error.contains("trapped") && error.contains("misbehave fixture panicked on purpose"), "{error}");
}

#[test]
fn files_are_out_of_reach() {
    let k = kiln_with_fixture();
    let secret = k.write("secret.txt", "do not read");
    let extra = format!(", path = \"{}\"", secret.display());
    let (status, error) = bad_stage(&run_mode(&k, "read-file", &extra));
    assert_eq!(status, "failed");
    assert!(error.contains("was refused") && !error.contains("BREACHED"), "{error}");
}

#[test]
fn sockets_are_out_of_reach() {
    let k = kiln_with_fixture();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (status, error) = bad_stage(&run_mode(&k, "socket", &format!(", addr = \"{addr}\"")));
    assert_eq!(status, "failed");
    assert!(error.contains("was refused") && !error.contains("BREACHED"), "{error}");
    // And nothing reached the listener.
    match listener.accept() {
        Ok((mut s, _)) => {
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            panic!("the plugin connected to {addr}");
        }
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
    }
}

#[test]
fn the_environment_is_empty() {
    let k = kiln_with_fixture();
    let (_, error) = bad_stage(&run_mode(&k, "env", ""));
    assert!(error.contains("environment variables visible: 0"), "{error}");
}

#[test]
fn output_that_breaks_the_contract_is_refused() {
    let k = kiln_with_fixture();
    k.write("d.csv", &tiny_csv());
    let p = k.write(
        "bad.toml",
        "name = \"contract\"\n[inputs.d]\npath = \"d.csv\"\ntarget = \"y\"\n\
         [stages.train]\nuses = \"misbehave\"\ndata = \"d\"\nwith = { mode = \"bad-output\" }\n\
         [stages.evaluate]\nuses = \"metrics\"\nmodel = \"train\"\ndata = \"d\"\n",
    );
    let v = k.run(&["run", p.to_str().unwrap(), "--json"]).fails().json();
    let eval = v["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "evaluate").unwrap();
    assert_eq!(eval["status"], "failed");
    let error = eval["error"].as_str().unwrap();
    assert!(error.contains("breaks the contract") && error.contains("59 values but the table says 60 rows"), "{error}");
}

#[test]
fn plugin_logs_and_output_reach_the_run_log_and_live_metrics_are_recorded() {
    let k = kiln_with_fixture();
    let v = run_mode(&k, "log", "");
    assert_eq!(bad_stage(&v).0, "ran");
    let id = v["run_id"].as_str().unwrap();
    let detail = k.run(&["runs", "show", id, "--json", "--logs"]).ok().json();
    let logs: Vec<String> =
        detail["logs"].as_array().unwrap().iter().map(|l| format!("{} {}", l["level"].as_str().unwrap(), l["message"].as_str().unwrap())).collect();
    for expected in ["info hello from the sandbox", "stdout printed to stdout", "stderr printed to stderr"] {
        assert!(logs.iter().any(|l| l == expected), "`{expected}` in {logs:?}");
    }
    assert_eq!(detail["metrics"]["bad.fixture_metric"], 1.5);
}

#[test]
fn a_failing_stage_is_retried_as_asked_and_records_its_attempts() {
    let k = kiln_with_fixture();
    k.write("d.csv", &tiny_csv());
    let p = k.write(
        "retry.toml",
        "name = \"retry\"\n[inputs.d]\npath = \"d.csv\"\ntarget = \"y\"\n\
         [stages.bad]\nuses = \"misbehave\"\ndata = \"d\"\nwith = { mode = \"trap\" }\nretries = 2\n",
    );
    let v = k.run(&["run", p.to_str().unwrap(), "--json"]).fails().json();
    let run = k.run(&["runs", "show", v["run_id"].as_str().unwrap(), "--json", "--logs"]).ok().json();
    let stage = &run["stages"][0];
    assert_eq!((stage["status"].as_str(), stage["attempts"].as_i64()), (Some("failed"), Some(3)), "{stage}");
    assert!(stage["error"].as_str().unwrap().contains("trapped"), "{stage}");
    let lines: Vec<&str> =
        run["logs"].as_array().unwrap().iter().filter_map(|l| l["message"].as_str()).filter(|m| m.starts_with("attempt ")).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
}
