//! Deployer plugins: `kiln deploy NAME --target PLUGIN` runs a deployer in
//! the sandbox with only what the operator granted. The first-party
//! `bundle` writes a folder that `kiln serve --bundle` serves elsewhere
//! with no database; a deployer that tries to reach further is stopped.

use crate::support::{Kiln, Process, fixture, http, tiny_csv};
use serde_json::{Value, json};
use std::path::Path;

/// A workspace with model `m` trained twice by `forest` (versions 1, 2).
fn trained() -> Kiln {
    let k = Kiln::new();
    k.write("d.csv", &tiny_csv());
    let p = k.write(
        "p.toml",
        "name = \"p\"\n[inputs.d]\npath = \"d.csv\"\ntarget = \"y\"\n[stages.fit]\nuses = \"forest\"\ndata = \"d\"\nregister = \"m\"\n",
    );
    for seed in [1, 2] {
        let p = p.to_str().unwrap();
        k.run(&["run", p, "--set", &format!("fit.seed={seed}"), "--set", "fit.n_estimators=20"]).ok();
    }
    k
}

fn predict(server: &Process, path: &str) -> (u16, Option<String>, Value) {
    let body = json!({"dataframe_records": [{"x1": 0.5, "x2": 3.0}, {"x1": 6.1, "x2": 1.0}, {"x1": 2.2, "x2": 9.0}]});
    let mut resp = http().post(&format!("{}{path}", server.url)).header("content-type", "application/json").send(body.to_string()).unwrap();
    let version = resp.headers().get("x-kiln-model-version").and_then(|v| v.to_str().ok()).map(String::from);
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (status, version, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("kiln-bundle.json")).unwrap()).unwrap()
}

#[test]
fn a_bundle_is_served_on_another_machine_with_no_database_and_follows_the_deployments_version() {
    let k = trained();
    std::fs::create_dir(k.path().join("out")).unwrap();
    let done = k.run(&["deploy", "web", "--model", "m@2", "--target", "bundle", "--allow-dir", "out", "--json"]).ok().json();
    assert_eq!((done["target"]["plugin"].as_str(), done["target"]["status"].as_str()), (Some("bundle"), Some("written")), "{done}");
    let bundle = k.path().join("out/web");
    let written = manifest(&bundle);
    assert_eq!((written["format"].as_str(), written["model"]["version"].as_i64()), (Some("kiln-bundle/1"), Some(2)), "{written}");
    assert_eq!(done["target"]["manifest"], written, "the plugin's answer is the manifest it wrote");
    let shown = k.run(&["deployments", "show", "web", "--json"]).ok().json();
    assert_eq!(shown["target"]["version"], 2, "{shown}");

    // Another machine: a folder with the bundle and nothing else, and a
    // database URL in the environment that must not be used.
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("web");
    std::fs::create_dir(&copy).unwrap();
    for f in ["kiln-bundle.json", "model.bin", "plugin.wasm"] {
        std::fs::copy(bundle.join(f), copy.join(f)).unwrap();
    }
    let mut there = Kiln::with_database("postgres://nobody@127.0.0.1:1/none".into());
    there.dir = elsewhere;
    let served_there = there.serve(&["--bundle", "web"]);
    let here = k.serve(&["--workers", "0", "--no-scheduler"]);
    let (status, version, answer) = predict(&served_there, "/invocations");
    assert_eq!((status, version.as_deref()), (200, Some("2")), "{answer}");
    assert_eq!(predict(&here, "/deployments/web/invocations").2, answer, "the bundle answers as the workspace's deployment does");
    assert_eq!(predict(&served_there, "/deployments/web/invocations").2, answer);
    // A bundle server writes nothing and serves nothing else.
    let (status, _, _) = predict(&served_there, "/api/v1/runs");
    assert_eq!(status, 404);
    assert!(!there.path().join(".kiln").exists(), "no workspace is made where a bundle is served");
    drop(served_there);

    // A new version of the deployment goes to its target too.
    let again = k.run(&["deploy", "web", "--model", "m@1"]).ok();
    assert!(again.stdout.contains("through bundle: written"), "{}", again.stdout);
    assert_eq!(manifest(&bundle)["model"]["version"], 1);
    let history = k.run(&["deploy", "history", "web", "--json"]).ok().json();
    let targets: Vec<i64> = history.as_array().unwrap().iter().filter(|e| e["action"] == "target").map(|e| e["version"].as_i64().unwrap()).collect();
    assert_eq!(targets, [2, 1], "{history}");
}

#[test]
fn a_changed_bundle_is_refused_naming_the_file() {
    let k = trained();
    std::fs::create_dir(k.path().join("out")).unwrap();
    k.run(&["deploy", "web", "--model", "m@1", "--target", "bundle", "--allow-dir", "out", "--with", "folder=b"]).ok();
    let model = k.path().join("out/b/model.bin");
    let mut bytes = std::fs::read(&model).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&model, bytes).unwrap();
    let refused = k.run(&["serve", "--bundle", "out/b", "--addr", "127.0.0.1:0"]).fails();
    assert!(refused.stderr.contains("model.bin: its digest is sha256:"), "{}", refused.stderr);
    assert!(refused.stderr.contains("the bundle was changed after it was written"), "{}", refused.stderr);
    let refused = k.run(&["serve", "--bundle", "out", "--addr", "127.0.0.1:0"]).fails();
    assert!(refused.stderr.contains("is not a bundle"), "{}", refused.stderr);
}

#[test]
fn a_deployer_cannot_write_outside_its_directory_read_the_host_or_connect() {
    let k = trained();
    k.run(&["plugin", "add", &fixture("nosy-deployer")]).ok();
    k.run(&["deploy", "web", "--model", "m@1"]).ok();
    let granted = k.path().join("granted");
    let secret = k.path().join("secret");
    std::fs::create_dir_all(&granted).unwrap();
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("key"), "s3cret").unwrap();
    // A symlink planted in the granted directory, pointing out of it.
    std::os::unix::fs::symlink(&secret, granted.join("link")).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let outside = k.path().join("escaped.txt");
    let actions = json!([
        {"write": "/out/inside.txt"},
        {"write": "/out/../escaped.txt"},
        {"write": outside.to_str().unwrap()},
        {"read": "/etc/passwd"},
        {"read": "/out/link/key"},
        {"write": "/out/link/planted"},
        {"write": "/artifacts/model.bin"},
        {"list": "/artifacts"},
        {"connect": listener.local_addr().unwrap().to_string()},
    ]);
    let done = k
        .run(&["deploy", "web", "--target", "nosy-deployer", "--allow-dir", "granted", "--with", &format!("actions={actions}"), "--json"])
        .ok()
        .json();
    let report = done["target"]["manifest"].as_array().unwrap_or_else(|| panic!("{done}")).clone();
    let allowed: Vec<(&str, bool)> = report.iter().map(|r| (r["target"].as_str().unwrap(), r["ok"].as_bool().unwrap())).collect();
    let outside = outside.to_str().unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    assert_eq!(
        allowed,
        [
            ("/out/inside.txt", true),
            ("/out/../escaped.txt", false),
            (outside, false),
            ("/etc/passwd", false),
            ("/out/link/key", false),
            ("/out/link/planted", false),
            ("/artifacts/model.bin", false),
            ("/artifacts", true),
            (addr.as_str(), false),
        ],
        "{report:#?}"
    );
    // What the sandbox says is borne out on the host.
    assert!(granted.join("inside.txt").exists());
    assert!(!k.path().join("escaped.txt").exists());
    assert!(!secret.join("planted").exists());
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "nothing connected");
    assert_eq!(report[7]["got"], "model.bin,plugin.wasm,version.json", "the version's files, read-only, and nothing else");

    // With no directory granted, `bundle` says what to grant.
    let refused = k.run(&["deploy", "web", "--target", "bundle"]).fails();
    assert!(refused.stderr.contains("no directory was granted"), "{}", refused.stderr);
    assert!(refused.stderr.contains("--allow-dir"), "{}", refused.stderr);
}

#[test]
fn rest_clients_deploy_with_what_the_operator_granted_the_plugin_and_cannot_grant_more() {
    let k = trained();
    std::fs::create_dir(k.path().join("bundles")).unwrap();
    let server = k.serve(&["--workers", "0", "--no-scheduler"]);
    let create = |body: Value| {
        let mut resp =
            http().post(&format!("{}/api/v1/deployments", server.url)).header("content-type", "application/json").send(body.to_string()).unwrap();
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap())
    };
    let body = json!({"name": "api", "model": "m@2", "target": {"plugin": "bundle"}});
    let (status, text) = create(body.clone());
    assert_eq!(status, 422, "nothing granted yet: {text}");
    assert!(text.contains("no directory was granted"), "{text}");
    let (status, text) = create(json!({"name": "api", "model": "m@2", "target": {"plugin": "bundle", "allow_dir": "/"}}));
    assert_eq!(status, 422, "a client cannot grant a directory: {text}");
    assert!(text.contains("unknown field `allow_dir`"), "{text}");

    k.run(&["plugin", "grant", "bundle", "--allow-dir", "bundles"]).ok();
    let (status, text) = create(body.clone());
    assert_eq!(status, 201, "{text}");
    let created: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(created["target"]["status"], "written", "{created}");
    assert_eq!(manifest(&k.path().join("bundles/api"))["model"]["version"], 2);
    let plugin_refused = k.run(&["plugin", "grant", "forest", "--allow-dir", "bundles"]).fails();
    assert!(plugin_refused.stderr.contains("deployers only"), "{}", plugin_refused.stderr);

    k.run(&["plugin", "grant", "bundle", "--revoke"]).ok();
    let (status, text) = create(body);
    assert_eq!(status, 422, "{text}");
}

/// A one-shot HTTP server on a free port: the body of each POST it gets
/// goes to the channel, and it answers 200.
fn hook_server() -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (addr, rx)
}

#[test]
fn the_webhook_deployer_reaches_only_the_hosts_it_was_granted() {
    let k = trained();
    k.run(&["deploy", "web", "--model", "m@2"]).ok();
    let (granted, posts) = hook_server();
    let (other, other_posts) = hook_server();
    let url = |addr: &str| format!("url=http://{addr}/deployed");

    let refused = k.run(&["deploy", "web", "--target", "webhook", "--with", &url(&granted)]).fails();
    assert!(refused.stderr.contains(&format!("the host refused to send to {granted}: it was not granted")), "{}", refused.stderr);
    let refused = k.run(&["deploy", "web", "--target", "webhook", "--with", &url(&other), "--allow-http", &granted]).fails();
    assert!(refused.stderr.contains(&format!("refused to send to {other}")), "{}", refused.stderr);
    let bad = k.run(&["deploy", "web", "--target", "webhook", "--with", &url(&granted), "--allow-http", "http://x/"]).fails();
    assert!(bad.stderr.contains("is not HOST:PORT"), "{}", bad.stderr);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(posts.try_recv().is_err() && other_posts.try_recv().is_err(), "nothing was sent before the grant");

    let done = k.run(&["deploy", "web", "--target", "webhook", "--with", &url(&granted), "--allow-http", &granted, "--json"]).ok().json();
    assert_eq!(done["target"]["status"], "notified", "{done}");
    let sent: Value = serde_json::from_str(&posts.recv_timeout(std::time::Duration::from_secs(10)).unwrap()).unwrap();
    assert_eq!((sent["deployment"].as_str(), sent["model"]["version"].as_i64()), (Some("web"), Some(2)), "{sent}");
    assert_eq!(sent["model"]["digest"], sent["version"]["model"]["digest"]);
    assert!(other_posts.try_recv().is_err());

    // It asks for wasi:http, which inspect.rs lets only a deployer import.
    let inspected = k.run(&["plugin", "inspect", "webhook", "--json"]).ok().json();
    assert!(inspected["imports"].as_array().unwrap().iter().any(|i| i.as_str().unwrap().starts_with("wasi:http/outgoing-handler")), "{inspected}");
}
