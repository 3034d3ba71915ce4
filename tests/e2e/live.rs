//! Live events: a running plugin's progress, metrics and log lines reach
//! watchers while its stage runs, through the store's change feed; idle
//! watchers cost the database nothing.

use crate::support::{Kiln, Process, fixture, post, postgres_database, tiny_csv};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A workspace with the misbehave fixture, `d.csv` and a one-stage pipeline
/// `live` whose stage `f` runs `with`.
fn workspace(k: &Kiln, with: &str) -> String {
    k.run(&["plugin", "add", &fixture("misbehave")]).ok();
    k.write("d.csv", &tiny_csv());
    format!("name = \"live\"\n[inputs.d]\npath = \"d.csv\"\ntarget = \"y\"\n[stages.f]\nuses = \"misbehave\"\ndata = \"d\"\nwith = {with}\n")
}

/// `kiln serve` with `KILN_LOG` set and its stderr counted: every line
/// sqlx logs for a statement (target `sqlx::query`) adds one.
fn serve_counting_queries(k: &Kiln) -> (Process, Arc<AtomicUsize>) {
    let mut child = k
        .cmd(&["serve", "--addr", "127.0.0.1:0"])
        .env("KILN_LOG", "warn,sqlx::query=debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_string();
    let queries = Arc::new(AtomicUsize::new(0));
    let (count, stderr) = (queries.clone(), child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("sqlx::query") {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (Process { child, url }, queries)
}

/// Open the run's event stream; returns the socket past the headers.
fn subscribe(url: &str, run: &str) -> BufReader<TcpStream> {
    let authority = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(authority).unwrap();
    write!(s, "GET /api/v1/pipeline-runs/{run}/events HTTP/1.1\r\nHost: {authority}\r\nAccept: text/event-stream\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.contains("200"), "{line}");
    while line != "\r\n" {
        line.clear();
        r.read_line(&mut line).unwrap();
    }
    r
}

/// `(event, data)` pairs until the stream ends.
fn read_events(r: &mut BufReader<TcpStream>) -> Vec<(String, String)> {
    let mut body = String::new();
    r.read_to_string(&mut body).ok();
    let mut events = Vec::new();
    let (mut event, mut data) = (String::new(), String::new());
    for line in body.lines() {
        if let Some(e) = line.strip_prefix("event: ") {
            event = e.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            data = d.to_string();
        } else if line.is_empty() && !event.is_empty() {
            events.push((std::mem::take(&mut event), std::mem::take(&mut data)));
        }
    }
    events
}

fn submit(url: &str, pipeline: &str) -> String {
    let (code, body) = post(&format!("{url}/api/v1/pipelines"), "application/toml", pipeline);
    assert_eq!(code, 201, "{body}");
    let (code, body) = post(&format!("{url}/api/v1/pipelines/live/runs"), "application/json", "{}");
    assert_eq!(code, 202, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_str().unwrap().to_string()
}

/// The stream is chunked; an event's lines may carry chunk-size lines
/// between them, which `read_events` skips as neither `event:` nor `data:`.
fn position(events: &[(String, String)], what: &str, contains: &str) -> usize {
    events
        .iter()
        .position(|(e, d)| e == what && d.contains(contains))
        .unwrap_or_else(|| panic!("no `{what}` event containing `{contains}` in {events:#?}"))
}

#[test]
fn progress_metrics_and_logs_stream_while_the_stage_runs() {
    let k = Kiln::new();
    let pipeline = workspace(&k, "{ mode = \"steps\", count = 8, ms = 400 }");
    let server = k.serve(&[]);
    let run = submit(&server.url, &pipeline);
    let events = read_events(&mut subscribe(&server.url, &run));
    // The stage's own record comes when it ends; everything it reported
    // while running must have reached the watcher before that.
    let ended = position(&events, "stage", "\"ran\"");
    assert!(position(&events, "progress", "\"done\":1") < ended, "{events:#?}");
    assert!(position(&events, "metrics", "f.step_metric") < ended, "{events:#?}");
    assert!(position(&events, "log", "step 1 of 8") < ended, "{events:#?}");
    assert!(position(&events, "status", "succeeded") > ended);
    // The live metrics are the run's history, one point per step.
    let history = k.run(&["runs", "show", &run, "--json"]).ok().json();
    assert_eq!(history["metrics"]["f.step_metric"], 8.0, "{history}");
}

#[test]
fn a_run_in_another_process_streams_through_postgres_notify() {
    let k = Kiln::with_database(postgres_database());
    let pipeline = workspace(&k, "{ mode = \"steps\", count = 6, ms = 400 }");
    // The server runs no worker: a separate `kiln worker` process runs the
    // pipeline, and the server hears of it only through LISTEN/NOTIFY.
    let server = k.serve(&["--workers", "0"]);
    let _worker = k.worker(&[]);
    let run = submit(&server.url, &pipeline);
    let events = read_events(&mut subscribe(&server.url, &run));
    let ended = position(&events, "stage", "\"ran\"");
    assert!(position(&events, "progress", "\"done\":1") < ended, "{events:#?}");
    assert!(position(&events, "log", "step 1 of 6") < ended, "{events:#?}");
    assert!(position(&events, "status", "succeeded") > ended);
}

#[test]
fn a_hundred_idle_watchers_cost_the_database_nothing() {
    let k = Kiln::new();
    // A stage that runs for a while and reports nothing: nothing changes.
    let pipeline = workspace(&k, "{ mode = \"spin\", ms = 8000 }");
    let (server, queries) = serve_counting_queries(&k);
    let run = submit(&server.url, &pipeline);
    let watchers: Vec<_> = (0..100).map(|_| subscribe(&server.url, &run)).collect();
    // Each watcher reads the run once when it connects; let those finish.
    std::thread::sleep(Duration::from_millis(1500));
    let before = queries.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(3));
    let during = queries.load(Ordering::SeqCst) - before;
    println!("statements in 3 s with 100 idle watchers: {during}");
    // Polling each 250 ms would be 100 × 12 × several statements; what is
    // left is the worker's lease heartbeat and SQLite's one
    // `data_version` probe per process every 250 ms.
    assert!(during <= 40, "{during} statements in 3 s with 100 idle watchers");
    drop(watchers);
}

#[test]
fn kiln_run_on_a_terminal_draws_a_progress_bar_per_running_stage() {
    let k = Kiln::new();
    let pipeline = workspace(&k, "{ mode = \"steps\", count = 6, ms = 300 }");
    k.write("live.toml", &pipeline);
    // `script` (util-linux) gives the command a pseudo-terminal, as a
    // person's shell would; without one, kiln run draws no bars.
    let command = format!("{} run live.toml", env!("CARGO_BIN_EXE_kiln"));
    let out = std::process::Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .current_dir(k.path())
        .env_remove("KILN_HOME")
        .env_remove("KILN_DATABASE_URL")
        .env("COLUMNS", "120")
        .output()
        .expect("util-linux `script` runs kiln under a pseudo-terminal");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(screen.contains("/6 steps"), "a bar counting the plugin's steps: {screen}");
    assert!(screen.contains("[=="), "a bar that fills: {screen}");
    // The stage's result line replaces its bar.
    assert!(screen.contains("Run ") && screen.contains("succeeded"), "{screen}");
    // Piped, the same run draws nothing.
    let piped = k.run(&["run", "live.toml"]).ok();
    assert!(!piped.stdout.contains("/6 steps") && !piped.stderr.contains("/6 steps"), "{}{}", piped.stdout, piped.stderr);
}
