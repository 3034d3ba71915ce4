//! The first-party trainers, run as Wasm in the sandbox, land near
//! scikit-learn's reference figures on the same public datasets and the
//! same protocol (k-fold cross-validation, stratified for classification).

use crate::support::repo_root;
use kiln::dataset::{self, Column, ColumnData, Table};
use kiln::runtime::{Limits, Runtime};
use rand::SeedableRng;
use rand::seq::SliceRandom;

fn load(path: &str, target: &str) -> (Table, Column) {
    let t = dataset::read_table(&repo_root().join(path), &[]).unwrap();
    dataset::features_and_target(&t, target).unwrap()
}

/// Shuffled k folds; stratified when `stratify`.
fn folds(y: &[f64], k: usize, stratify: bool) -> Vec<Vec<usize>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut groups: Vec<Vec<usize>> = if stratify {
        let mut classes: Vec<f64> = y.to_vec();
        classes.sort_by(f64::total_cmp);
        classes.dedup();
        classes.iter().map(|c| (0..y.len()).filter(|&i| y[i] == *c).collect()).collect()
    } else {
        vec![(0..y.len()).collect()]
    };
    let mut out = vec![Vec::new(); k];
    let mut next = 0;
    for g in &mut groups {
        g.shuffle(&mut rng);
        for &i in g.iter() {
            out[next % k].push(i);
            next += 1;
        }
    }
    out
}

/// Mean of the per-fold score.
fn cross_validate(plugin: &str, params: &str, path: &str, target: &str, k: usize, stratify: bool, score: fn(&[f64], &[f64]) -> f64) -> f64 {
    let (x, y) = load(path, target);
    let ColumnData::Numeric(yv) = &y.data else { panic!() };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(cache.path().to_path_buf()).unwrap();
    let bytes = kiln::plugins::BUNDLED.iter().find(|(n, _)| *n == plugin).unwrap().1;
    let p = runtime.load(plugin, bytes).unwrap();
    let limits = Limits::default();
    let folds = folds(yv, k, stratify);
    let mut scores = Vec::new();
    for test in &folds {
        let train: Vec<usize> = (0..yv.len()).filter(|i| !test.contains(i)).collect();
        let ytr = Column::numeric("y", train.iter().map(|&i| yv[i]).collect());
        let yte: Vec<f64> = test.iter().map(|&i| yv[i]).collect();
        let (model, _) = rt.block_on(runtime.train(&p, dataset::take_rows(&x, &train), ytr, params, &limits, None)).unwrap();
        let (pred, _) = rt.block_on(runtime.predict(&p, &model, dataset::take_rows(&x, test), &limits, None)).unwrap();
        scores.push(score(pred.column("prediction").unwrap().as_numeric().unwrap(), &yte));
    }
    scores.iter().sum::<f64>() / scores.len() as f64
}

fn accuracy(p: &[f64], y: &[f64]) -> f64 {
    p.iter().zip(y).filter(|(a, b)| a == b).count() as f64 / y.len() as f64
}

fn r2(p: &[f64], y: &[f64]) -> f64 {
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    let sse: f64 = p.iter().zip(y).map(|(a, b)| (a - b).powi(2)).sum();
    let sst: f64 = y.iter().map(|b| (b - mean).powi(2)).sum();
    1.0 - sse / sst
}

const BREAST: &str = "examples/quickstart/breast_cancer.csv";
const IRIS: &str = "examples/datasets/iris.csv";
const DIABETES: &str = "examples/datasets/diabetes.csv";

#[test]
fn logistic_regression_matches_scikit_learn() {
    let bc = cross_validate("linear", r#"{"model":"logistic"}"#, BREAST, "benign", 5, true, accuracy);
    eprintln!("linear/logistic, breast cancer, 5-fold accuracy {bc:.3} (scikit-learn 0.979)");
    assert!((bc - 0.979).abs() <= 0.02, "breast cancer accuracy {bc:.3} vs 0.979");
    let iris = cross_validate("linear", r#"{"model":"logistic"}"#, IRIS, "species", 5, true, accuracy);
    eprintln!("linear/logistic, iris, 5-fold accuracy {iris:.3} (scikit-learn 0.960)");
    assert!((iris - 0.960).abs() <= 0.03, "iris accuracy {iris:.3} vs 0.960");
}

#[test]
fn random_forest_matches_scikit_learn() {
    let params = r#"{"n_estimators":100,"seed":0}"#;
    let bc = cross_validate("forest", params, BREAST, "benign", 5, true, accuracy);
    eprintln!("forest, breast cancer, 5-fold accuracy {bc:.3} (scikit-learn 0.965)");
    assert!((bc - 0.965).abs() <= 0.025, "breast cancer accuracy {bc:.3} vs 0.965");
    let iris = cross_validate("forest", params, IRIS, "species", 5, true, accuracy);
    eprintln!("forest, iris, 5-fold accuracy {iris:.3} (scikit-learn 0.940)");
    assert!((iris - 0.940).abs() <= 0.04, "iris accuracy {iris:.3} vs 0.940");
}

#[test]
fn least_squares_matches_scikit_learn() {
    let r2 = cross_validate("linear", r#"{"model":"ols"}"#, DIABETES, "progression", 10, false, r2);
    eprintln!("linear/ols, diabetes, 10-fold R² {r2:.3} (scikit-learn 0.484)");
    assert!((r2 - 0.484).abs() <= 0.03, "diabetes R² {r2:.3} vs 0.484");
}

/// The Wasm build of `ks` gives bit-for-bit the native result on samples
/// large enough to overflow 32-bit arithmetic (wasm32's `usize`): a
/// regression test for p-values computed from a wrapped n·m.
#[test]
fn ks_in_wasm_matches_native_on_large_samples() {
    use kiln_sdk::DriftDetector;
    let n: u64 = 100_000;
    let a: Vec<f64> = (0..n).map(|i| ((i * 7919) % n) as f64 / n as f64).collect();
    let b: Vec<f64> = (0..n).map(|i| ((i * 104_729) % n) as f64 / n as f64 + 0.02).collect();
    let reference = Table::new(vec![Column::numeric("x", a)]).unwrap();
    let current = Table::new(vec![Column::numeric("x", b)]).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(cache.path().to_path_buf()).unwrap();
    let bytes = kiln::plugins::BUNDLED.iter().find(|(n, _)| *n == "ks").unwrap().1;
    let p = runtime.load("ks", bytes).unwrap();
    let (wasm, _) = rt.block_on(runtime.detect(&p, reference.clone(), current.clone(), "{}", &Limits::default(), None)).unwrap();
    let native = kiln_plugin_ks::Ks::detect(reference, current, kiln_sdk::Params::default()).unwrap();
    assert_eq!(wasm, native);
    assert!(wasm.features[0].p_value.unwrap() < 1e-6, "a 0.02 shift over 100k rows is detected: {wasm:?}");
}
