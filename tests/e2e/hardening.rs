//! Regression tests for what a hostile probe of `kiln serve` and the CLI
//! found: each is named for what it proves.

use crate::support::{Kiln, fixture, get, http, post, tiny_csv, wait_for};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn pipeline_reading(path: &str) -> String {
    format!("name = \"probe\"\n[inputs.d]\npath = \"{path}\"\ntarget = \"y\"\n[stages.train]\nuses = \"linear\"\ndata = \"d\"\n")
}

/// A raw HTTP/1.1 exchange, for requests a client library would not send.
fn raw(url: &str, request: &str) -> String {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn rest_pipeline_inputs_stay_inside_the_workspace() {
    let k = Kiln::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.csv"), "root:x:0:0,y\n1,0\n2,1\n").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.csv"), k.path().join("link.csv")).unwrap();
    std::fs::create_dir(k.path().join("sub")).unwrap();
    let server = k.serve(&["--workers", "0"]);
    let api = format!("{}/api/v1", server.url);
    let secret = outside.path().join("secret.csv").display().to_string();
    let escape = format!("../{}/secret.csv", outside.path().file_name().unwrap().to_string_lossy());
    for path in ["/etc/shadow", "/etc/passwd", "/nonexistent/x.csv", secret.as_str(), escape.as_str(), "link.csv", "sub/../../x.csv"] {
        let (code, body) = post(&format!("{api}/pipelines"), "application/toml", &pipeline_reading(path));
        assert_eq!(code, 400, "{path}: {body}");
        let message = json(&body)["error"].as_str().unwrap().to_string();
        assert!(message.contains(&format!("`{path}` is outside the workspace")), "{path}: {message}");
        assert!(!message.contains("root:"), "no file content in the message: {message}");
    }
    // Inside the workspace, registering works and lists no server folder.
    k.write("d.csv", &tiny_csv());
    let (code, body) = post(&format!("{api}/pipelines"), "application/toml", &pipeline_reading("d.csv"));
    assert_eq!(code, 201, "{body}");
    let (_, list) = get(&format!("{api}/pipelines"));
    assert!(!list.contains(&k.path().display().to_string()), "{list}");
}

#[test]
fn rest_inputs_are_regular_files_within_the_size_limit() {
    let k = Kiln::new();
    k.write("kiln.toml", "[limits]\ninput_size = \"1KiB\"\n");
    std::os::unix::fs::symlink("/dev/zero", k.path().join("zero.csv")).unwrap();
    rustix::fs::mknodat(rustix::fs::CWD, k.path().join("fifo.csv"), rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0).unwrap();
    k.write("big.csv", &format!("x,y\n{}", "1,0\n".repeat(1000)));
    let server = k.serve(&["--workers", "0"]);
    let api = format!("{}/api/v1", server.url);
    let cases = [("zero.csv", "outside the workspace"), ("fifo.csv", "FIFO"), ("big.csv", "over the limit of 1024 bytes")];
    for (path, expected) in cases {
        let (code, body) = post(&format!("{api}/pipelines"), "application/toml", &pipeline_reading(path));
        assert_eq!(code, 400, "{path}: {body}");
        assert!(body.contains(expected), "{path}: {body}");
    }
    // The CLI reading the same device is refused by kind, not read.
    k.write("z.toml", &pipeline_reading("/dev/zero"));
    let r = k.run(&["run", "z.toml"]).fails();
    assert!(r.stderr.contains("a character device"), "{}", r.stderr);
}

#[test]
fn deep_or_long_filters_are_refused_not_a_crash() {
    let k = Kiln::new();
    let server = k.serve(&["--workers", "0"]);
    let deep = format!("{}metrics.a > 1{}", "(".repeat(2000), ")".repeat(2000));
    let chain = |n: usize| (0..n).map(|i| format!("metrics.m{i} > 1")).collect::<Vec<_>>().join(" or ");
    for (filter, expected) in [(deep.clone(), "deeper than 32"), (chain(60_000), "more than 100"), (chain(999), "more than 100")] {
        let (code, body) =
            post(&format!("{}/api/v1/runs/search", server.url), "application/json", &serde_json::json!({"filter": filter}).to_string());
        assert_eq!(code, 400, "{body}");
        assert!(body.contains(expected), "{body}");
        let (code, body) =
            post(&format!("{}/api/2.0/mlflow/runs/search", server.url), "application/json", &serde_json::json!({"filter": filter}).to_string());
        assert_eq!(code, 400, "{body}");
        assert_eq!(json(&body)["error_code"], "INVALID_PARAMETER_VALUE");
    }
    // The largest filter allowed runs on the database.
    let (code, body) =
        post(&format!("{}/api/v1/runs/search", server.url), "application/json", &serde_json::json!({"filter": chain(100)}).to_string());
    assert_eq!(code, 200, "{body}");
    // A deep gate in a registered pipeline, and the CLI, are refused too.
    k.write("d.csv", &tiny_csv());
    let gate = format!("{}\n[stages.g]\ncheck = \"{}train.x > 1{}\"\n", pipeline_reading("d.csv"), "(".repeat(2000), ")".repeat(2000));
    let (code, body) = post(&format!("{}/api/v1/pipelines", server.url), "application/toml", &gate);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("deeper than 32"), "{body}");
    let r = k.run(&["runs", "search", &deep]).fails();
    assert!(r.stderr.contains("deeper than 32") && !r.stderr.contains("overflow"), "{}", r.stderr);
    assert_eq!(get(&format!("{}/api/v1/health", server.url)).0, 200, "the server is alive");
}

#[test]
fn cross_site_requests_are_refused() {
    let k = Kiln::new();
    k.write("d.csv", &tiny_csv());
    let server = k.serve(&["--workers", "0"]);
    let api = format!("{}/api/v1", server.url);
    // What a web page can send without a preflight.
    for ct in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let (code, body) = post(&format!("{api}/pipelines"), ct, &pipeline_reading("d.csv"));
        assert_eq!(code, 415, "{ct}: {body}");
        assert!(json(&body)["error"].as_str().unwrap().contains("application/json"), "{body}");
    }
    let (code, body) = post(&format!("{api}/datasets/d/versions?filename=d.csv"), "text/plain", &tiny_csv());
    assert_eq!(code, 415, "{body}");
    let addr = server.url.trim_start_matches("http://");
    let no_type =
        raw(&server.url, &format!("POST /api/v1/pipelines/probe/runs HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"));
    assert!(no_type.starts_with("HTTP/1.1 415"), "{no_type}");
    assert!(no_type.contains("x-request-id:"), "{no_type}");
    // DNS rebinding: the right address under another name.
    let rebound = raw(&server.url, "GET /api/v1/pipelines HTTP/1.1\r\nHost: rebind.evil.example\r\nConnection: close\r\n\r\n");
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    assert!(rebound.contains("not a name of this server"), "{rebound}");
    // No CORS grant, even to a preflight.
    let preflight = raw(
        &server.url,
        &format!(
            "OPTIONS /api/v1/pipelines HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://evil.example\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(!preflight.to_ascii_lowercase().contains("access-control-allow"), "{preflight}");
    // Nothing got registered.
    assert_eq!(get(&format!("{api}/pipelines")).1, "[]");
    // A name the operator allows is served.
    let named = k.serve(&["--workers", "0", "--allow-host", "kiln.internal"]);
    let ok = raw(&named.url, "GET /api/v1/health HTTP/1.1\r\nHost: kiln.internal:443\r\nConnection: close\r\n\r\n");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

#[test]
fn half_sent_requests_time_out_and_other_clients_are_served() {
    let k = Kiln::new();
    let server = k.serve(&["--workers", "0", "--header-timeout", "2s", "--max-connections", "256"]);
    let addr = server.url.trim_start_matches("http://").to_string();
    // 1,500 connections that send half a header and then nothing.
    let slow: Vec<TcpStream> = (0..1500)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: 127").unwrap();
            s
        })
        .collect();
    // Others are still served (past the limit, once the slow ones are cut).
    for _ in 0..5 {
        assert_eq!(get(&format!("{}/api/v1/health", server.url)).0, 200);
    }
    // The server closed every half-sent request.
    for mut s in slow {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = Vec::new();
        let r = s.read_to_end(&mut buf);
        assert!(r.is_ok() || r.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset), "{r:?}");
    }
    // A kept-alive connection left idle is closed too.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(format!("GET /api/v1/health HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut all = Vec::new();
    let _ = idle.read_to_end(&mut all);
    assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 200"), "answered, then closed when idle");
}

#[test]
fn server_faults_are_500s_with_a_request_id_and_no_paths() {
    let k = Kiln::new();
    let server = k.serve(&["--workers", "0"]);
    // A file where the blob store's temporary folder should be: every
    // upload fails on the server's side.
    let tmp = k.path().join(".kiln/blobs/.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::write(&tmp, "in the way").unwrap();
    let mut r = http()
        .post(&format!("{}/api/v1/datasets/d/versions?filename=d.csv", server.url))
        .header("content-type", "text/csv")
        .send(tiny_csv())
        .unwrap();
    assert_eq!(r.status().as_u16(), 500);
    let id = r.headers().get("x-request-id").unwrap().to_str().unwrap().to_string();
    let body = r.body_mut().read_to_string().unwrap();
    assert!(body.contains(&id), "{body}");
    assert!(!body.contains(&k.path().display().to_string()) && !body.contains(".kiln"), "no path in {body}");
    // MLflow's artifact route says the same in MLflow's shape.
    let run = json(&post(&format!("{}/api/2.0/mlflow/runs/create", server.url), "application/json", r#"{"experiment_id":"0"}"#).1);
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_string();
    let mut r = http()
        .put(&format!("{}/api/2.0/mlflow-artifacts/artifacts/0/{run_id}/artifacts/a.txt", server.url))
        .header("content-type", "application/octet-stream")
        .send("x")
        .unwrap();
    assert_eq!(r.status().as_u16(), 500);
    let body = json(&r.body_mut().read_to_string().unwrap());
    assert_eq!(body["error_code"], "INTERNAL_ERROR");
    assert!(!body["message"].as_str().unwrap().contains(".kiln"), "{body}");
}

#[test]
fn every_error_body_is_json() {
    let k = Kiln::new();
    let server = k.serve(&["--workers", "0"]);
    // Just over axum's 2 MiB limit on a JSON body: all of it is sent
    // before the server answers (a body megabytes over would race the
    // client's writes against the server closing the connection).
    let big = format!("{{\"filter\": \"{}\"}}", "x".repeat((2 << 20) + 100));
    let cases: Vec<(String, &str, String, u16)> = vec![
        (format!("{}/api/v1/runs/search", server.url), "application/json", big, 413),
        (format!("{}/api/v1/experiments", server.url), "application/xml", "<name/>".into(), 415),
        (format!("{}/api/v1/experiments", server.url), "application/json", r#"{"name": 5}"#.into(), 422),
        (format!("{}/api/v1/no-such-route", server.url), "application/json", "{}".into(), 404),
    ];
    for (url, ct, body, status) in cases {
        let (code, text) = post(&url, ct, &body);
        assert_eq!(code, status, "{url}: {text}");
        assert!(json(&text)["error"].is_string(), "{url}: {text}");
    }
    let (code, text) = post(&format!("{}/api/2.0/mlflow/runs/create", server.url), "application/json", "{not json");
    assert_eq!(code, 400);
    assert!(json(&text)["error_code"].is_string(), "{text}");
}

#[test]
fn names_tokens_artifact_paths_and_params_are_checked_up_front() {
    let k = Kiln::new();
    k.write("d.csv", &tiny_csv());
    let server = k.serve(&["--workers", "0"]);
    let api = format!("{}/api/v1", server.url);
    assert_eq!(post(&format!("{api}/experiments"), "application/json", r#"{"name": "e"}"#).0, 201);
    for name in ["", "a\u{0}b", "line\nbreak", &"n".repeat(100_000)] {
        let r = http()
            .patch(&format!("{api}/experiments/e"))
            .header("content-type", "application/json")
            .send(serde_json::json!({"name": name}).to_string())
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{name:?}");
    }
    let (code, body) =
        post(&format!("{}/api/2.0/mlflow/runs/search", server.url), "application/json", r#"{"experiment_ids": ["0"], "page_token": "-1"}"#);
    assert_eq!(code, 400, "{body}");
    let run = json(&post(&format!("{api}/runs"), "application/json", r#"{"experiment": "e"}"#).1)["id"].as_str().unwrap().to_string();
    for path in [".", "a/./b", "a%00b", "a%0Ab", "a%5Cb"] {
        let r = http().put(&format!("{api}/runs/{run}/artifacts/{path}")).header("content-type", "text/plain").send("x").unwrap();
        assert_eq!(r.status().as_u16(), 400, "{path}");
    }
    // A run request whose params break the plugin's schema: refused now.
    assert_eq!(post(&format!("{api}/pipelines"), "application/toml", &pipeline_reading("d.csv")).0, 201);
    let (code, body) = post(&format!("{api}/pipelines/probe/runs"), "application/json", r#"{"set": {"train.c": "lots"}}"#);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("params for linear"), "{body}");
}

#[test]
fn a_server_sweeps_what_a_killed_upload_left() {
    let k = Kiln::new();
    k.run(&["init"]).ok();
    let tmp = k.path().join(".kiln/blobs/.tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    // PID 2^22 + 1 is above Linux's maximum: no such process.
    let stale = tmp.join("4194305-0123456789abcdef");
    std::fs::write(&stale, "half an upload").unwrap();
    let server = k.serve(&["--workers", "0"]);
    assert_eq!(get(&format!("{}/api/v1/health", server.url)).0, 200);
    assert!(!stale.exists(), "the stale temporary file is gone");
}

#[test]
fn wide_csv_uploads_cost_memory_in_proportion_to_their_size() {
    let k = Kiln::new();
    let server = k.serve(&["--workers", "0"]);
    let row = |n: usize, f: &dyn Fn(usize) -> String| (0..n).map(f).collect::<Vec<_>>().join(",");
    let wide = format!("{}\n{}\n", row(10_000, &|i| format!("c{i}")), row(10_000, &|i| (i % 7).to_string()));
    let (code, body) = post(&format!("{}/api/v1/datasets/wide/versions?filename=wide.csv", server.url), "text/csv", &wide);
    assert_eq!(code, 201, "{body}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let peak_kib: u64 = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(peak_kib < 400 << 10, "peak resident memory {peak_kib} KiB for a 60 KB upload (was 1.3 GB)");
    let wider = format!("{}\n{}\n", row(10_001, &|i| format!("c{i}")), row(10_001, &|_| "1".into()));
    let (code, body) = post(&format!("{}/api/v1/datasets/wider/versions?filename=wider.csv", server.url), "text/csv", &wider);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("at most 10000"), "{body}");
}

#[test]
fn data_add_refuses_links_out_of_the_workspace_and_special_files() {
    let k = Kiln::new();
    k.run(&["init"]).ok();
    std::os::unix::fs::symlink("/etc/passwd", k.path().join("pw.csv")).unwrap();
    let r = k.run(&["data", "add", "--no-profile", "pw.csv"]).fails();
    assert!(r.stderr.contains("outside the workspace"), "{}", r.stderr);
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("o.txt"), "o").unwrap();
    std::fs::create_dir(k.path().join("set")).unwrap();
    std::fs::write(k.path().join("set/a.txt"), "a").unwrap();
    std::os::unix::fs::symlink(outside.path(), k.path().join("set/linked")).unwrap();
    let r = k.run(&["data", "add", "set"]).fails();
    assert!(r.stderr.contains("set/linked is a symbolic link") && r.stderr.contains("outside the workspace"), "{}", r.stderr);
    rustix::fs::mknodat(rustix::fs::CWD, k.path().join("fifo.csv"), rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0).unwrap();
    let r = k.run(&["data", "add", "fifo.csv"]).fails();
    assert!(r.stderr.contains("FIFO"), "{}", r.stderr);
    let r = k.run(&["data", "add", "."]).fails();
    assert!(r.stderr.contains("the workspace's own folder"), "{}", r.stderr);
    assert!(!k.path().join("pw.csv.kiln").exists() && !k.path().join("set.kiln").exists(), "nothing was tracked");
}

#[test]
fn checkout_force_never_deletes_through_a_symlink() {
    let k = Kiln::new();
    k.run(&["init"]).ok();
    std::fs::create_dir_all(k.path().join("dd/sub")).unwrap();
    std::fs::write(k.path().join("dd/sub/a.txt"), "a").unwrap();
    k.run(&["data", "add", "dd"]).ok();
    let victim = tempfile::tempdir().unwrap();
    std::fs::write(victim.path().join("precious.txt"), "keep me").unwrap();
    std::fs::remove_dir_all(k.path().join("dd/sub")).unwrap();
    std::os::unix::fs::symlink(victim.path(), k.path().join("dd/sub")).unwrap();
    let r = k.run(&["data", "checkout"]).fails();
    assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);
    let status = k.run(&["data", "status"]);
    assert!(status.stderr.contains("outside the workspace") || status.stdout.contains("modified"), "{}{}", status.stdout, status.stderr);
    k.run(&["data", "checkout", "--force"]).ok();
    assert_eq!(std::fs::read_to_string(victim.path().join("precious.txt")).unwrap(), "keep me");
    assert!(!std::fs::symlink_metadata(k.path().join("dd/sub")).unwrap().file_type().is_symlink(), "the link became a folder");
    assert_eq!(std::fs::read_to_string(k.path().join("dd/sub/a.txt")).unwrap(), "a");
}

#[test]
fn restored_files_respect_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let k = Kiln::new();
    k.write("d.csv", &tiny_csv());
    k.run(&["data", "add", "d.csv"]).ok();
    std::fs::remove_file(k.path().join("d.csv")).unwrap();
    let bin = env!("CARGO_BIN_EXE_kiln");
    let out = std::process::Command::new("sh").arg("-c").arg(format!("umask 027 && '{bin}' data checkout")).current_dir(k.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mode = std::fs::metadata(k.path().join("d.csv")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "{mode:o}");
}

#[test]
fn cli_reports_bad_numbers_and_survives_closed_pipes() {
    let k = Kiln::new();
    k.write("d.csv", &tiny_csv());
    k.write("t.toml", &format!("{}timeout = \"99999999999999999999s\"\n", pipeline_reading("d.csv")));
    let r = k.run(&["run", "t.toml"]).fails();
    assert!(r.stderr.contains("too long a duration") && !r.stderr.contains("panicked"), "{}", r.stderr);
    let r = k.run(&["plugin", "add", "--timeout", "99999999999999999999s", &fixture("misbehave")]).fails();
    assert!(r.stderr.contains("too long a duration") && !r.stderr.contains("panicked"), "{}", r.stderr);
    let r = k.run(&["plugin", "add", "--memory", "1", &fixture("misbehave")]).fails();
    assert!(r.stderr.contains("between 16MiB and 4GiB"), "{}", r.stderr);
    k.write("ok.toml", &pipeline_reading("d.csv"));
    let r = k.run(&["run", "ok.toml", "--set", "train.c=1\nmodel=\"x\""]).fails();
    assert!(r.stderr.contains("line break"), "{}", r.stderr);
    // A closed pipe: the reader is gone before kiln writes.
    k.run(&["experiments", "create", "e"]).ok();
    let mut child = k.cmd(&["experiments", "list"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "quietly: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn experiments_list_shows_mlflows_default_experiment() {
    let k = Kiln::new();
    let server = k.serve(&["--workers", "0"]);
    assert_eq!(get(&format!("{}/api/2.0/mlflow/experiments/get?experiment_id=0", server.url)).0, 200);
    let r = k.run(&["experiments", "list"]).ok();
    assert!(r.stdout.contains("Default"), "{}", r.stdout);
}

#[test]
fn sweep_caps_never_build_the_whole_grid() {
    let k = Kiln::new();
    k.write("d.csv", &tiny_csv());
    let values = format!("[{}]", (0..1000).map(|i| format!("{}.0", i + 1)).collect::<Vec<_>>().join(", "));
    let grid = format!(
        "{}[stages.evaluate]\nuses = \"metrics\"\nmodel = \"train\"\ndata = \"d\"\n[sweep]\nmetric = \"evaluate.accuracy\"\n[sweep.params]\n\"train.c\" = {values}\n\"train.alpha\" = [0.0, 0.5, 1.0]\n\"train.max_iter\" = {values}\n\"train.tol\" = {values}\n",
        pipeline_reading("d.csv")
    );
    k.write("grid.toml", &grid);
    let r = k.run(&["run", "grid.toml", "--max-runs", "1", "--json"]);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let out = r.json();
    assert_eq!(out["children"].as_array().map(Vec::len), Some(1), "{out}");
    let r = k.run(&["run", "grid.toml"]).fails();
    assert!(r.stderr.contains("more than the 10000 a sweep runs"), "{}", r.stderr);
    k.write("random.toml", &grid.replace("[sweep]\n", "[sweep]\nmethod = \"random\"\nmax_runs = 18446744073709551615\n"));
    let r = k.run(&["run", "random.toml"]).fails();
    assert!(r.stderr.contains("a sweep runs 1 to 10000") && !r.stderr.contains("panicked"), "{}", r.stderr);
}

#[test]
fn plugin_add_refuses_devices_and_fifos() {
    let k = Kiln::new();
    let r = k.run(&["plugin", "add", "/dev/zero"]).fails();
    assert!(r.stderr.contains("character device"), "{}", r.stderr);
    rustix::fs::mknodat(rustix::fs::CWD, k.path().join("p.wasm"), rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0).unwrap();
    let r = k.run(&["plugin", "add", "p.wasm"]).fails();
    assert!(r.stderr.contains("FIFO"), "{}", r.stderr);
    k.write("kiln.toml", "[limits]\nplugin_size = \"1KiB\"\n");
    let r = k.run(&["plugin", "add", &fixture("misbehave")]).fails();
    assert!(r.stderr.contains("plugin_size"), "{}", r.stderr);
}

#[test]
fn an_interrupted_run_is_marked_killed() {
    let k = Kiln::new();
    k.run(&["plugin", "add", &fixture("misbehave")]).ok();
    k.write("d.csv", &tiny_csv());
    k.write(
        "slow.toml",
        "name = \"slow\"\n[inputs.d]\npath = \"d.csv\"\ntarget = \"y\"\n[stages.spin]\nuses = \"misbehave\"\ndata = \"d\"\nwith = { mode = \"spin\", ms = 120000 }\n",
    );
    for signal in [rustix::process::Signal::INT, rustix::process::Signal::TERM] {
        let child = k.cmd(&["run", "slow.toml"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let id = wait_for(60, "the run to start", || {
            let runs = k.run(&["runs", "list", "--json"]).json();
            runs.as_array().unwrap().iter().find(|r| r["status"] == "RUNNING").map(|r| r["id"].as_str().unwrap().to_string())
        });
        rustix::process::kill_process(rustix::process::Pid::from_raw(child.id() as i32).unwrap(), signal).unwrap();
        let out = child.wait_with_output().unwrap();
        let expected = if signal == rustix::process::Signal::INT { 130 } else { 143 };
        assert_eq!(out.status.code(), Some(expected), "{}", String::from_utf8_lossy(&out.stderr));
        let run = k.run(&["runs", "show", &id, "--json"]).ok().json();
        assert_eq!(run["status"], "KILLED", "{run}");
    }
}

#[test]
fn a_plugin_that_logs_in_a_loop_is_capped() {
    let k = Kiln::new();
    k.run(&["plugin", "add", &fixture("misbehave")]).ok();
    k.write("d.csv", &tiny_csv());
    k.write(
        "flood.toml",
        "name = \"flood\"\n[inputs.d]\npath = \"d.csv\"\ntarget = \"y\"\n[stages.f]\nuses = \"misbehave\"\ndata = \"d\"\nwith = { mode = \"log-flood\", count = 200000 }\n",
    );
    let id = k.run(&["run", "flood.toml", "--json"]).ok().json()["run_id"].as_str().unwrap().to_string();
    let run = k.run(&["runs", "show", &id, "--logs", "--json"]).ok().json();
    let logs = run["logs"].as_array().unwrap();
    assert!(logs.len() <= 10_001, "{} lines kept", logs.len());
    let note = logs.iter().find(|l| l["message"].as_str().unwrap().contains("were dropped")).expect("the drop is reported");
    assert!(note["message"].as_str().unwrap().starts_with("39"), "200,000 lines and 200,000 metrics, about 10,000 kept: {note}");
}

#[test]
fn cron_that_never_fires_or_has_seven_fields_is_refused() {
    let k = Kiln::new();
    for cron in ["0 0 30 2 *", "0 0 0 1 1 * 2030"] {
        let r = k.run(&["schedule", "add", "p", "--cron", cron]).fails();
        assert!(r.stderr.contains("never fires") || r.stderr.contains("it has 7"), "{cron}: {}", r.stderr);
    }
}

#[test]
fn linear_with_a_huge_c_trains_instead_of_spinning_to_its_deadline() {
    let k = Kiln::new();
    k.write("d.csv", &tiny_csv());
    // Before: the solver spun until the stage's deadline and failed with a
    // timeout; now it trains (an unregularised fit) or fails at once.
    k.write("p.toml", &format!("{}timeout = \"60s\"\nwith = {{ c = 1e308 }}\n", pipeline_reading("d.csv")));
    let out = k.run(&["run", "p.toml", "--json"]).ok().json();
    let train = &out["stages"][0];
    assert_eq!(train["status"], "ran", "{out}");
    assert!(train["metrics"]["train_loss"].as_f64().is_some_and(f64::is_finite), "{out}");
}

/// Siblings of the probe's findings: other files Kiln reads whole, other
/// unbounded counts.
#[test]
fn fifos_named_like_kiln_files_and_unbounded_counts_are_refused() {
    let k = Kiln::new();
    k.run(&["init"]).ok();
    let fifo = |name: &str| {
        rustix::fs::mknodat(rustix::fs::CWD, k.path().join(name), rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0).unwrap()
    };
    fifo("p.toml");
    let r = k.run(&["run", "p.toml"]).fails();
    assert!(r.stderr.contains("FIFO"), "{}", r.stderr);
    fifo("x.csv.kiln");
    // A walk of the workspace skips it; named, it is refused, not waited on.
    k.run(&["data", "status"]).ok();
    let r = k.run(&["data", "status", "x.csv.kiln"]).fails();
    assert!(r.stderr.contains("x.csv.kiln") && r.stderr.contains("FIFO"), "{}", r.stderr);
    k.write("d.csv", &tiny_csv());
    k.write("r.toml", &format!("{}retries = 4294967295\n", pipeline_reading("d.csv")));
    let r = k.run(&["run", "r.toml"]).fails();
    assert!(r.stderr.contains("retries is at most 10"), "{}", r.stderr);
    let server = k.serve(&["--workers", "0"]);
    let ids: Vec<String> = (0..1001).map(|i| i.to_string()).collect();
    let (code, body) =
        post(&format!("{}/api/2.0/mlflow/runs/search", server.url), "application/json", &serde_json::json!({"experiment_ids": ids}).to_string());
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("at most 1000 experiments"), "{body}");
}
