//! `ks`: two-sample Kolmogorov–Smirnov drift detector.
//!
//! Per numeric feature: the statistic D = sup |F_ref − F_cur| and its
//! p-value, exact (lattice-path probability, as scipy's `method="exact"`)
//! when n·m ≤ 10⁷ and the asymptotic Kolmogorov distribution with
//! Stephens' small-sample correction otherwise. A feature drifts when its
//! p-value is below `threshold`; the dataset drifts when the share of drifted
//! features reaches `drift_share`.

use kiln_sdk::{Description, DriftDetector, DriftReport, FeatureDrift, Params, PluginError, Result, Table};

/// Above this many lattice cells the exact p-value costs more than it is worth.
const EXACT_LIMIT: f64 = 1e7;

pub struct Ks;

impl DriftDetector for Ks {
    fn describe() -> Description {
        Description {
            name: "ks".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Two-sample Kolmogorov–Smirnov test per numeric feature".into(),
            params_schema: serde_json::json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "threshold": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.05,
                                  "description": "a feature drifts when its p-value is below this"},
                    "drift_share": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5,
                                    "description": "the dataset drifts when this share of features drift"},
                    "columns": {"type": "array", "items": {"type": "string"},
                                "description": "features to test (default: every numeric column in both tables)"}
                }
            }),
        }
    }

    fn detect(reference: Table, current: Table, params: Params) -> Result<DriftReport> {
        let threshold = params.f64_or("threshold", 0.05)?;
        let share_needed = params.f64_or("drift_share", 0.5)?;
        let wanted: Option<Vec<String>> = match params.0.get("columns") {
            None => None,
            Some(_) => Some(params.to::<ColumnsParam>()?.columns),
        };
        let mut features = Vec::new();
        let names: Vec<String> = match &wanted {
            Some(cols) => cols.clone(),
            None => {
                reference.columns.iter().filter(|c| c.as_numeric().is_ok() && current.column(&c.name).is_some()).map(|c| c.name.clone()).collect()
            }
        };
        if names.is_empty() {
            return Err(PluginError::invalid_input("no numeric feature is present in both tables"));
        }
        let (mut reference, mut current) = (reference, current);
        for (i, name) in names.iter().enumerate() {
            let r = take_numeric(&mut reference, name, "reference")?;
            let c = take_numeric(&mut current, name, "current")?;
            let test = ks_2samp_owned(r, c)
                .ok_or_else(|| PluginError::invalid_column(name, format!("column `{name}` has no non-missing values on one side")))?;
            features.push(FeatureDrift {
                feature: name.clone(),
                statistic: test.statistic,
                p_value: Some(test.p_value),
                drifted: test.p_value < threshold,
            });
            kiln_sdk::progress(i as u64 + 1, names.len() as u64, name);
        }
        let drifted = features.iter().filter(|f| f.drifted).count();
        let drift_share = drifted as f64 / features.len() as f64;
        Ok(DriftReport { features, drift_share, dataset_drift: drift_share >= share_needed && drifted > 0 })
    }
}

#[derive(serde::Deserialize)]
struct ColumnsParam {
    columns: Vec<String>,
}

kiln_sdk::export_drift_detector!(Ks);

/// The outcome of one two-sample test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KsTest {
    pub statistic: f64,
    pub p_value: f64,
}

/// Move a numeric column out of the table (the plugin owns its input, so
/// the test sorts it in place instead of copying it).
fn take_numeric(table: &mut Table, name: &str, side: &str) -> Result<Vec<f64>> {
    let col = table
        .columns
        .iter_mut()
        .find(|c| c.name == name)
        .ok_or_else(|| PluginError::invalid_column(name, format!("{side} has no column `{name}`")))?;
    col.as_numeric()?;
    match std::mem::replace(&mut col.data, kiln_sdk::ColumnData::Numeric(Vec::new())) {
        kiln_sdk::ColumnData::Numeric(v) => Ok(v),
        kiln_sdk::ColumnData::Categorical(_) => unreachable!("checked numeric above"),
    }
}

/// Two-sided two-sample KS test; NaNs (missing values) are ignored.
/// `None` when either side has no values.
pub fn ks_2samp(a: &[f64], b: &[f64]) -> Option<KsTest> {
    ks_2samp_owned(a.to_vec(), b.to_vec())
}

/// [`ks_2samp`] on owned samples.
///
/// Values are sorted as order-preserving `u64` keys rather than with
/// `f64::total_cmp`: integer compares are cheaper, and markedly so in the
/// code Cranelift generates for Wasm.
pub fn ks_2samp_owned(a: Vec<f64>, b: Vec<f64>) -> Option<KsTest> {
    let mut a = sort_keys(a);
    let mut b = sort_keys(b);
    if a.is_empty() || b.is_empty() {
        return None;
    }
    radix_sort(&mut a);
    radix_sort(&mut b);
    let d = statistic(&a, &b);
    let (n, m) = (a.len(), b.len());
    let p = if (n as f64) * (m as f64) <= EXACT_LIMIT { exact_p(n, m, d) } else { asymptotic_p(n, m, d) };
    Some(KsTest { statistic: d, p_value: p.clamp(0.0, 1.0) })
}

/// LSD radix sort, a byte per pass, skipping bytes all keys share. It is
/// a handful of simple loops that Cranelift compiles about as well as LLVM
/// does, where a comparison sort leans on LLVM's branchless tricks (it ran
/// 1.7× slower in Wasm than natively; this runs near native speed).
fn radix_sort(keys: &mut Vec<u64>) {
    if keys.len() < 64 {
        keys.sort_unstable();
        return;
    }
    // Loops work on four keys per iteration: in Wasm every loop iteration
    // also checks the epoch deadline, so fewer iterations mean fewer checks.
    let mut counts = [[0u32; 256]; 8];
    let mut chunks = keys.chunks_exact(4);
    for c4 in &mut chunks {
        for &k in c4 {
            for (byte, c) in counts.iter_mut().enumerate() {
                c[((k >> (byte * 8)) & 0xff) as usize] += 1;
            }
        }
    }
    for &k in chunks.remainder() {
        for (byte, c) in counts.iter_mut().enumerate() {
            c[((k >> (byte * 8)) & 0xff) as usize] += 1;
        }
    }
    let n = keys.len() as u32;
    let mut buf = vec![0u64; keys.len()];
    for (byte, c) in counts.iter().enumerate() {
        if c.contains(&n) {
            continue;
        }
        let mut offsets = [0usize; 256];
        let mut sum = 0;
        for (o, &count) in offsets.iter_mut().zip(c.iter()) {
            *o = sum;
            sum += count as usize;
        }
        let shift = byte * 8;
        let mut chunks = keys.chunks_exact(4);
        for c4 in &mut chunks {
            for &k in c4 {
                let d = ((k >> shift) & 0xff) as usize;
                buf[offsets[d]] = k;
                offsets[d] += 1;
            }
        }
        for &k in chunks.remainder() {
            let d = ((k >> shift) & 0xff) as usize;
            buf[offsets[d]] = k;
            offsets[d] += 1;
        }
        std::mem::swap(keys, &mut buf);
    }
}

/// Keys whose unsigned order is the numeric order of the non-NaN values
/// (−0.0 and 0.0 map to the same key); NaNs are dropped. Reuses the buffer.
fn sort_keys(values: Vec<f64>) -> Vec<u64> {
    values
        .into_iter()
        .filter(|v| !v.is_nan())
        .map(|v| {
            let bits = (v + 0.0).to_bits();
            if bits >> 63 == 1 { !bits } else { bits | (1 << 63) }
        })
        .collect()
}

/// sup |F_a − F_b| over sorted samples. One flat loop over the merged
/// order (rather than a loop per run of tied values): in Wasm each loop
/// iteration also pays an epoch check. The difference is only measured
/// where the value changes, so ties move both CDFs together.
fn statistic(a: &[u64], b: &[u64]) -> f64 {
    let (n, m) = (a.len(), b.len());
    let (inv_n, inv_m) = (1.0 / n as f64, 1.0 / m as f64);
    let (mut i, mut j, mut d) = (0usize, 0usize, 0f64);
    let mut v = 0;
    while i < n && j < m {
        let (x, y) = (a[i], b[j]);
        v = x.min(y);
        i += (x == v) as usize;
        j += (y == v) as usize;
        let next = match (a.get(i), b.get(j)) {
            (Some(&p), Some(&q)) => p.min(q),
            (Some(&p), None) => p,
            (None, Some(&q)) => q,
            (None, None) => u64::MAX,
        };
        if next != v {
            d = d.max((i as f64 * inv_n - j as f64 * inv_m).abs());
        }
    }
    // One side ran out inside a run of ties: finish that run on the other
    // side before the last comparison. Past it the gap only shrinks.
    while i < n && a[i] == v {
        i += 1;
    }
    while j < m && b[j] == v {
        j += 1;
    }
    d.max((i as f64 * inv_n - j as f64 * inv_m).abs())
}

/// P(D ≥ d) under H0, counting monotone lattice paths from (0,0) to (n,m)
/// that leave the band |i/n − j/m| < d. Values are kept as path
/// probabilities (count / C(i+j, i)) so nothing overflows.
fn exact_p(n: usize, m: usize, d: f64) -> f64 {
    // Round d onto the lattice grid so floating error cannot move a boundary.
    // All products in f64: on wasm32 `usize` is 32 bits and n·m overflows it.
    let (nf, mf) = (n as f64, m as f64);
    let dq = (d * nf * mf).round() - 0.5;
    let inside = |i: usize, j: usize| (i as f64 * mf - j as f64 * nf).abs() < dq;
    let mut row = vec![0f64; m + 1];
    row[0] = 1.0;
    for j in 1..=m {
        row[j] = if inside(0, j) { row[j - 1] } else { 0.0 };
    }
    for i in 1..=n {
        row[0] = if inside(i, 0) { row[0] } else { 0.0 };
        for j in 1..=m {
            row[j] = if inside(i, j) {
                let t = (i + j) as f64;
                row[j] * (i as f64 / t) + row[j - 1] * (j as f64 / t)
            } else {
                0.0
            };
        }
    }
    1.0 - row[m]
}

/// Kolmogorov's limiting distribution with Stephens' correction.
fn asymptotic_p(n: usize, m: usize, d: f64) -> f64 {
    let (nf, mf) = (n as f64, m as f64);
    let en = (nf * mf / (nf + mf)).sqrt();
    let lambda = (en + 0.12 + 0.11 / en) * d;
    kolmogorov_sf(lambda)
}

/// Q(λ) = 2 Σ (−1)^{k−1} exp(−2k²λ²).
fn kolmogorov_sf(lambda: f64) -> f64 {
    if lambda < 0.2 {
        return 1.0;
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let k = k as f64;
        let term = (-2.0 * k * k * lambda * lambda).exp();
        sum += if k as u64 % 2 == 1 { term } else { -term };
        if term < 1e-16 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_sdk::Column;

    #[test]
    fn radix_sort_sorts() {
        let mut state = 7u64;
        let mut v: Vec<u64> = (0..5000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state % 1000 + (1 << 40)
            })
            .collect();
        let mut expected = v.clone();
        expected.sort_unstable();
        radix_sort(&mut v);
        assert_eq!(v, expected);
        let mut keys = sort_keys(vec![3.5, -1.0, f64::NAN, -0.0, 0.0, -7.25, 1e300]);
        keys.sort_unstable();
        let back: Vec<f64> = keys.iter().map(|k| if k >> 63 == 1 { f64::from_bits(k & !(1 << 63)) } else { f64::from_bits(!k) }).collect();
        assert_eq!(back, vec![-7.25, -1.0, 0.0, 0.0, 3.5, 1e300]);
    }

    #[test]
    fn identical_samples_do_not_drift() {
        let a: Vec<f64> = (0..200).map(|i| i as f64).collect();
        let t = ks_2samp(&a, &a).unwrap();
        assert_eq!(t.statistic, 0.0);
        assert!((t.p_value - 1.0).abs() < 1e-12);
    }

    #[test]
    fn exact_p_matches_scipy() {
        // scipy.stats.ks_2samp([1,2,3,4,5], [6,7,8,9,10]) -> D=1, p=0.007936507936507936 (= 2/C(10,5))
        let t = ks_2samp(&[1., 2., 3., 4., 5.], &[6., 7., 8., 9., 10.]).unwrap();
        assert_eq!(t.statistic, 1.0);
        assert!((t.p_value - 2.0 / 252.0).abs() < 1e-12, "{}", t.p_value);
        // scipy.stats.ks_2samp([1,3,5,7,9],[2,4,6,8,10]) -> D=0.2, p=1.0
        let t = ks_2samp(&[1., 3., 5., 7., 9.], &[2., 4., 6., 8., 10.]).unwrap();
        assert!((t.statistic - 0.2).abs() < 1e-12);
        assert!((t.p_value - 1.0).abs() < 1e-9);
    }

    #[test]
    fn ties_across_and_within_samples() {
        // scipy.stats.ks_2samp([1], [1, 1, 2]).statistic == 1/3
        let t = ks_2samp(&[1.0], &[1.0, 1.0, 2.0]).unwrap();
        assert!((t.statistic - 1.0 / 3.0).abs() < 1e-12, "{}", t.statistic);
        // scipy.stats.ks_2samp([1, 2, 2, 3], [2, 2, 2, 4]).statistic == 0.25
        let t = ks_2samp(&[1.0, 2.0, 2.0, 3.0], &[2.0, 2.0, 2.0, 4.0]).unwrap();
        assert!((t.statistic - 0.25).abs() < 1e-12, "{}", t.statistic);
        // -0.0 and 0.0 are the same value.
        assert_eq!(ks_2samp(&[-0.0, 1.0], &[0.0, 1.0]).unwrap().statistic, 0.0);
    }

    #[test]
    fn statistic_matches_the_definition_on_tied_random_samples() {
        // D = max over every observed value v of |F_a(v) − F_b(v)|, by brute force.
        let brute = |a: &[f64], b: &[f64]| {
            let cdf = |s: &[f64], v: f64| s.iter().filter(|x| **x <= v).count() as f64 / s.len() as f64;
            a.iter().chain(b).map(|&v| (cdf(a, v) - cdf(b, v)).abs()).fold(0.0, f64::max)
        };
        let mut state = 99u64;
        let mut next = move |k: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % k) as f64
        };
        for round in 0..300 {
            let (n, m) = (1 + next(12) as usize, 1 + next(12) as usize);
            let a: Vec<f64> = (0..n).map(|_| next(6) - 2.0).collect();
            let b: Vec<f64> = (0..m).map(|_| next(6) - 2.0 + (round % 3) as f64 * 0.5).collect();
            let got = ks_2samp(&a, &b).unwrap().statistic;
            assert!((got - brute(&a, &b)).abs() < 1e-12, "a={a:?} b={b:?}: {got} vs {}", brute(&a, &b));
        }
    }

    #[test]
    fn exact_and_asymptotic_agree_for_moderate_samples() {
        // Both methods on n = m = 1000 with D = 0.06: the limit law is close.
        let exact = exact_p(1000, 1000, 0.06);
        let asym = asymptotic_p(1000, 1000, 0.06);
        assert!((exact - asym).abs() < 0.01, "exact {exact} asym {asym}");
    }

    #[test]
    fn shifted_sample_drifts_and_missing_values_are_ignored() {
        let a: Vec<f64> = (0..500).map(|i| (i as f64 * 0.37).sin()).collect();
        let mut b: Vec<f64> = a.iter().map(|v| v + 0.5).collect();
        b.push(f64::NAN);
        let reference = Table::new(vec![Column::numeric("x", a.clone()), Column::numeric("y", a.clone())]).unwrap();
        let current = Table::new(vec![Column::numeric("x", b), Column::numeric("y", a.iter().copied().chain([1.0]).collect())]).unwrap();
        let report = Ks::detect(reference, current, Params::default()).unwrap();
        assert!(report.features[0].drifted);
        assert!(!report.features[1].drifted);
        assert_eq!(report.drift_share, 0.5);
        assert!(report.dataset_drift);
    }

    #[test]
    fn unknown_column_is_named() {
        let t = Table::new(vec![Column::numeric("x", vec![1.0])]).unwrap();
        let params = Params::from_json(serde_json::json!({"columns": ["nope"]}));
        let err = Ks::detect(t.clone(), t, params).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("nope"));
    }
}
