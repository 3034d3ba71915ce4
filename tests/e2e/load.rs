//! 1,000 concurrent clients log metrics: every acknowledged metric is
//! stored, nothing is refused, and a SIGKILL mid-load loses nothing that
//! was acknowledged.

use crate::support::{Kiln, http};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn create_run(url: &str) -> String {
    let mut r = http()
        .post(&format!("{url}/api/2.0/mlflow/runs/create"))
        .header("content-type", "application/json")
        .send(r#"{"experiment_id": "0"}"#)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    v["run"]["info"]["run_id"].as_str().unwrap().to_string()
}

/// Run `clients` threads logging `c<i>` metrics with increasing steps until
/// `stop`; returns the acknowledged (client, step) pairs and the errors seen
/// while `errors_count` was true (what each was, for the failure message).
fn load(url: &str, run: &str, clients: usize, stop: Arc<AtomicBool>, errors_count: Arc<AtomicBool>) -> (Vec<(usize, i64)>, Vec<String>) {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let (url, run, stop, acked, errors, counting) =
                (url.to_string(), run.to_string(), stop.clone(), acked.clone(), errors.clone(), errors_count.clone());
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let agent = http();
                    let mut step = 0i64;
                    let mut mine = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let body = format!(r#"{{"run_id": "{run}", "key": "c{i}", "value": {step}, "step": {step}, "timestamp": 0}}"#);
                        // Reading each body to its end returns the connection
                        // to the agent's pool: a client keeps one keep-alive
                        // connection, as MLflow's does. (Dropped unread, every
                        // call opens a new connection, and 1,000 such clients
                        // exhaust the ephemeral ports: resets that say nothing
                        // about the server.)
                        let sent = agent
                            .post(&format!("{url}/api/2.0/mlflow/runs/log-metric"))
                            .header("content-type", "application/json")
                            .send(body)
                            .and_then(|mut r| Ok((r.status().as_u16(), r.body_mut().read_to_string()?)));
                        match sent {
                            Ok((200, _)) => {
                                mine.push((i, step));
                                step += 1;
                            }
                            other => {
                                if counting.load(Ordering::Relaxed) {
                                    let what = match other {
                                        Ok((status, body)) => format!("client {i} step {step}: HTTP {status}: {body}"),
                                        Err(e) => format!("client {i} step {step}: {e}"),
                                    };
                                    errors.lock().unwrap().push(what);
                                }
                                std::thread::sleep(Duration::from_millis(20));
                            }
                        }
                    }
                    acked.lock().unwrap().extend(mine);
                })
                .unwrap()
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let acked = Arc::try_unwrap(acked).unwrap().into_inner().unwrap();
    (acked, Arc::try_unwrap(errors).unwrap().into_inner().unwrap())
}

/// A fresh server compiles its bundled plugins in the background on both
/// cores; the load starts once that is done, so that what it measures is
/// the tracking path, not a machine with no core to spare.
fn wait_for_bundled_plugins(k: &Kiln) {
    let db = format!("sqlite://{}", k.path().join(".kiln/kiln.db").display());
    let bundled = 4;
    crate::support::wait_for(300, "the bundled plugins to be registered", || {
        let rows = crate::support::pg_query(&db, "SELECT CAST(COUNT(*) AS TEXT) FROM plugins WHERE bundled = 1");
        (rows[0][0].parse::<usize>().unwrap() >= bundled).then_some(())
    });
}

/// The (client, step) points stored in `run`, read back through the API
/// (MLflow's get-history, one call per client's metric).
fn stored(url: &str, run: &str, clients: usize) -> std::collections::HashSet<(usize, i64)> {
    let agent = http();
    let mut out = std::collections::HashSet::new();
    for i in 0..clients {
        let mut r = agent.get(&format!("{url}/api/2.0/mlflow/metrics/get-history?run_id={run}&metric_key=c{i}")).call().unwrap();
        let body = r.body_mut().read_to_string().unwrap();
        assert_eq!(r.status().as_u16(), 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        for m in v["metrics"].as_array().unwrap() {
            assert!(out.insert((i, m["step"].as_i64().unwrap())), "client {i}: a point stored twice: {m}");
        }
    }
    out
}

#[test]
fn a_thousand_clients_for_thirty_seconds_lose_nothing_and_a_sigkill_loses_nothing_acknowledged() {
    let k = Kiln::new();
    let server = k.serve(&["--workers", "0", "--no-scheduler"]);
    wait_for_bundled_plugins(&k);
    let run = create_run(&server.url);
    let stop = Arc::new(AtomicBool::new(false));
    let timer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(30));
            stop.store(true, Ordering::Relaxed);
        })
    };
    let started = Instant::now();
    let (acked, errors) = load(&server.url, &run, 1000, stop, Arc::new(AtomicBool::new(true)));
    timer.join().unwrap();
    eprintln!("1,000 clients: {} metrics acknowledged in {:?}, {} errors", acked.len(), started.elapsed(), errors.len());
    assert!(errors.is_empty(), "no client was refused (no 'database is locked'): {} errors, e.g. {:?}", errors.len(), &errors[..errors.len().min(5)]);
    let rows = stored(&server.url, &run, 1000);
    assert!(acked.len() > 1000, "{} metrics acknowledged in {:?}", acked.len(), started.elapsed());
    assert_eq!(rows.len(), acked.len(), "every acknowledged metric is stored, and only those");
    assert!(acked.iter().all(|a| rows.contains(a)));
    drop(server);

    // Kill the server mid-load: what was acknowledged survives.
    let mut server = k.serve(&["--workers", "0", "--no-scheduler"]);
    let run = create_run(&server.url);
    let stop = Arc::new(AtomicBool::new(false));
    let counting = Arc::new(AtomicBool::new(true));
    let url = server.url.clone();
    let loader = {
        let (stop, counting, run) = (stop.clone(), counting.clone(), run.clone());
        std::thread::spawn(move || load(&url, &run, 200, stop, counting))
    };
    std::thread::sleep(Duration::from_secs(4));
    counting.store(false, Ordering::Relaxed);
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (acked, errors) = loader.join().unwrap();
    assert!(errors.is_empty(), "errors before the kill: {:?}", &errors[..errors.len().min(5)]);
    // What a new server finds.
    let server = k.serve(&["--workers", "0", "--no-scheduler"]);
    let rows = stored(&server.url, &run, 200);
    assert!(!acked.is_empty());
    let lost: Vec<_> = acked.iter().filter(|a| !rows.contains(a)).collect();
    eprintln!("SIGKILL mid-load: {} acknowledged, {} stored, {} lost", acked.len(), rows.len(), lost.len());
    assert!(lost.is_empty(), "{} acknowledged metrics lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
}
