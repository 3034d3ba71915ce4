//! Plugin benchmarks, printed beside their peers (run with host/benches/run.sh).
//!
//! - `ks` on 100k reference vs 100k current rows × 20 features: the Wasm
//!   plugin through the sandbox, the same Rust code native, scipy.
//! - per-call overhead: instantiate from `InstancePre` + `describe`; load
//!   of a cached compiled component.
//! - `forest` (100 trees, depth 10) on 1k × 20 and 100k × 20 synthetic
//!   classification data: fit time and holdout accuracy vs scikit-learn.
//!
//! Medians of repeated runs; ratios are what to read, since these machines
//! are noisy. No assertion on time anywhere.

use kiln::dataset::{Column, Table};
use kiln::runtime::{Limits, Runtime};
use kiln_sdk::{DriftDetector, Model, Params, Trainer};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn time<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed().as_secs_f64())
}

fn quick() -> bool {
    std::env::var("KILN_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Deterministic pseudo-normal columns (sum of uniforms), `shift` added.
fn normal_columns(rows: usize, cols: usize, seed: u64, shift: f64) -> Vec<Vec<f64>> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..cols).map(|j| (0..rows).map(|_| (0..4).map(|_| next()).sum::<f64>() - 2.0 + shift * (j % 2) as f64).collect()).collect()
}

fn table(cols: &[Vec<f64>]) -> Table {
    Table::new(cols.iter().enumerate().map(|(j, c)| Column::numeric(format!("f{j}"), c.clone())).collect()).unwrap()
}

fn write_matrix(dir: &Path, name: &str, cols: &[Vec<f64>], shapes: &mut serde_json::Map<String, serde_json::Value>) {
    let mut bytes = Vec::with_capacity(cols.len() * cols[0].len() * 8);
    for c in cols {
        for v in c {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    std::fs::write(dir.join(format!("{name}.f64")), bytes).unwrap();
    shapes.insert(name.into(), serde_json::json!([cols[0].len(), cols.len()]));
}

fn peer(what: &str, dir: &Path, repeats: usize) -> Option<serde_json::Value> {
    let python = std::env::var("KILN_BENCH_PYTHON").ok()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers.py");
    let out = std::process::Command::new(python).arg(script).args([what, dir.to_str().unwrap(), &repeats.to_string()]).output().ok()?;
    if !out.status.success() {
        eprintln!("peer {what} failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn row(name: &str, kiln: &str, other: &str, peer: &str, ratio: &str) {
    println!("{name:<44} {kiln:>14} {other:>14} {peer:>16} {ratio:>22}");
}

fn bundled(name: &str) -> &'static [u8] {
    kiln::plugins::BUNDLED.iter().find(|(n, _)| *n == name).unwrap().1
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let work = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    std::fs::create_dir_all(&work).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(cache.path().to_path_buf()).unwrap();
    let limits = Limits { timeout: Duration::from_secs(3600), memory_bytes: 4 << 30 };
    let repeats = if quick() { 3 } else { 5 };
    println!("kiln plugin benchmarks ({} mode), medians of {repeats} runs unless noted\n", if quick() { "quick" } else { "full" });
    row("benchmark", "kiln (wasm)", "same code", "peer", "ratio");
    row("", "", "native", "", "");

    // ---- KS -------------------------------------------------------------
    let rows = if quick() { 20_000 } else { 100_000 };
    let reference = normal_columns(rows, 20, 1, 0.0);
    let current = normal_columns(rows, 20, 2, 0.02);
    let dir = work.join("ks");
    std::fs::create_dir_all(&dir).unwrap();
    let mut shapes = serde_json::Map::new();
    write_matrix(&dir, "reference", &reference, &mut shapes);
    write_matrix(&dir, "current", &current, &mut shapes);
    std::fs::write(dir.join("shape.json"), serde_json::Value::Object(shapes).to_string()).unwrap();
    let ks_wasm = runtime.load("sha256:bench-ks", bundled("ks")).unwrap();
    let (ref_t, cur_t) = (table(&reference), table(&current));
    let mut wasm_times = Vec::new();
    let mut wasm_report = None;
    for _ in 0..repeats {
        let (r, s) = time(|| futures_lite_block(runtime.detect(&ks_wasm, ref_t.clone(), cur_t.clone(), "{}", &limits, None)));
        // Both sides clone the inputs inside the timing, so it cancels in the ratio.
        wasm_times.push(s);
        wasm_report = Some(r.unwrap().0);
    }
    let mut native_times = Vec::new();
    let mut native_report = None;
    for _ in 0..repeats {
        let (r, s) = time(|| kiln_plugin_ks::Ks::detect(ref_t.clone(), cur_t.clone(), Params::default()));
        native_times.push(s);
        native_report = Some(r.unwrap());
    }
    assert_eq!(wasm_report.as_ref().unwrap(), native_report.as_ref().unwrap(), "wasm and native agree exactly");
    let scipy = peer("ks", &dir, repeats);
    let (w, n) = (median(wasm_times), median(native_times));
    let (peer_s, peer_name, max_dp) = match &scipy {
        Some(v) => {
            let secs: Vec<f64> = v["seconds"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            let pv: Vec<f64> = v["p_values"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            let dp = pv.iter().zip(&wasm_report.as_ref().unwrap().features).map(|(a, f)| (a - f.p_value.unwrap()).abs()).fold(0.0, f64::max);
            (Some(median(secs)), v["version"].as_str().unwrap_or("scipy").to_string(), Some(dp))
        }
        None => (None, "scipy (not run)".into(), None),
    };
    row(
        &format!("ks {}k vs {}k rows x 20 features", rows / 1000, rows / 1000),
        &format!("{:.1} ms", w * 1e3),
        &format!("{:.1} ms", n * 1e3),
        &peer_s.map(|p| format!("{:.1} ms", p * 1e3)).unwrap_or("-".into()),
        &format!("wasm/native {:.2}x", w / n),
    );
    if let Some(p) = peer_s {
        row("", "", "", &peer_name, &format!("scipy/wasm {:.2}x", p / w));
    }
    if let Some(dp) = max_dp {
        println!("{:<44} max |p(kiln) - p(scipy)| over 20 features = {dp:.2e}", "");
    }

    if std::env::var("KILN_BENCH_ONLY").is_ok_and(|v| v == "ks") {
        return;
    }

    // ---- per-call overhead ------------------------------------------------
    let iters = if quick() { 200 } else { 2000 };
    let mut inst = Vec::with_capacity(iters);
    for _ in 0..iters {
        let (r, s) = time(|| futures_lite_block(runtime.instantiate_only(&ks_wasm, &limits)));
        r.unwrap();
        inst.push(s);
    }
    let mut desc = Vec::with_capacity(iters);
    for _ in 0..iters {
        let (r, s) = time(|| futures_lite_block(runtime.describe(&ks_wasm, &limits)));
        r.unwrap();
        desc.push(s);
    }
    row(&format!("instantiate from InstancePre ({iters}x)"), &format!("{:.1} us", median(inst) * 1e6), "", "goal <= 100 us", "");
    row("instantiate + describe() call", &format!("{:.1} us", median(desc) * 1e6), "", "goal <= 100 us", "");
    let mut loads = Vec::new();
    for _ in 0..20 {
        runtime.unload_all();
        let (r, s) = time(|| runtime.load("sha256:bench-ks", bundled("ks")));
        r.unwrap();
        loads.push(s);
    }
    row("load cached compiled component (20x)", &format!("{:.2} ms", median(loads) * 1e3), "", "goal <= 10 ms", "");
    let fresh = tempfile::tempdir().unwrap();
    let cold = Runtime::new(fresh.path().to_path_buf()).unwrap();
    let (_, compile) = time(|| cold.load("sha256:bench-ks", bundled("ks")).unwrap());
    row("first load: compile with Cranelift (1x)", &format!("{:.0} ms", compile * 1e3), "", "", "");

    // ---- forest -----------------------------------------------------------
    let forest = runtime.load("sha256:bench-forest", bundled("forest")).unwrap();
    let sizes: &[usize] = if quick() { &[1_000, 10_000] } else { &[1_000, 100_000] };
    for &n in sizes {
        let (x, y) = kiln_plugin_forest::synthetic_classification(n + n / 4, 20, 8, 42);
        let split = |c: &Vec<f64>| (c[..n].to_vec(), c[n..].to_vec());
        let (xtr, xte): (Vec<Vec<f64>>, Vec<Vec<f64>>) = x.iter().map(split).unzip();
        let (ytr, yte) = split(&y);
        let dir = work.join(format!("forest-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut shapes = serde_json::Map::new();
        write_matrix(&dir, "x_train", &xtr, &mut shapes);
        write_matrix(&dir, "x_test", &xte, &mut shapes);
        write_matrix(&dir, "y_train", std::slice::from_ref(&ytr), &mut shapes);
        write_matrix(&dir, "y_test", std::slice::from_ref(&yte), &mut shapes);
        std::fs::write(dir.join("shape.json"), serde_json::Value::Object(shapes).to_string()).unwrap();
        let reps = if n >= 100_000 { 3 } else { repeats };
        let mut fit = Vec::new();
        let mut native_fit = Vec::new();
        let mut acc = 0.0;
        let mut native_acc = 0.0;
        for r in 0..reps {
            let params = format!("{{\"n_estimators\": 100, \"max_depth\": 10, \"seed\": {r}}}");
            let (out, s) =
                time(|| futures_lite_block(runtime.train(&forest, table(&xtr), Column::numeric("y", ytr.clone()), &params, &limits, None)));
            fit.push(s);
            let model = out.unwrap().0;
            let (pred, _) = futures_lite_block(runtime.predict(&forest, &model, table(&xte), &limits, None)).unwrap();
            acc = accuracy(pred.column("prediction").unwrap().as_numeric().unwrap(), &yte);
            let p = Params::from_json(serde_json::from_str(&params).unwrap());
            let (m, s) = time(|| kiln_plugin_forest::Forest::train(table(&xtr), Column::numeric("y", ytr.clone()), p).unwrap());
            native_fit.push(s);
            native_acc = accuracy(m.predict(table(&xte)).unwrap().column("prediction").unwrap().as_numeric().unwrap(), &yte);
        }
        let sk = peer("forest", &dir, reps);
        let (w, nat) = (median(fit), median(native_fit));
        let label = format!("forest fit {}k x 20, 100 trees, depth 10", n / 1000);
        match &sk {
            Some(v) => {
                let secs = median(v["seconds"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect());
                row(&label, &format!("{:.2} s", w), &format!("{:.2} s", nat), &format!("{:.2} s", secs), &format!("sklearn/wasm {:.2}x", secs / w));
                let sk_acc = v["accuracy"].as_f64().unwrap();
                row(
                    "  holdout accuracy",
                    &format!("{:.3}", acc),
                    &format!("{:.3}", native_acc),
                    &format!("{:.3}", sk_acc),
                    &format!("diff {:+.1} points", (acc - sk_acc) * 100.0),
                );
            }
            None => {
                row(&label, &format!("{:.2} s", w), &format!("{:.2} s", nat), "-", "");
                row("  holdout accuracy", &format!("{:.3}", acc), &format!("{:.3}", native_acc), "-", "");
            }
        }
    }
    if let Some(v) = scipy {
        println!(
            "\npeers: {}; set KILN_BENCH_PYTHON to a Python with scipy and scikit-learn (host/benches/run.sh does)",
            v["version"].as_str().unwrap_or("")
        );
    }
}

fn accuracy(pred: &[f64], y: &[f64]) -> f64 {
    pred.iter().zip(y).filter(|(a, b)| a == b).count() as f64 / y.len() as f64
}

/// The bench drives async runtime calls from sync timing closures.
fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}
