//! Side-by-side comparison of runs.

use crate::store::RunSummary;
use serde::Serialize;
use std::collections::BTreeSet;

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub runs: Vec<String>,
    /// Param name, value per run, and whether the values differ.
    pub params: Vec<(String, Vec<Option<String>>, bool)>,
    /// Metric name, value per run, and the index of the best run.
    pub metrics: Vec<(String, Vec<Option<f64>>, Option<usize>)>,
}

/// Whether smaller is better for a metric, from its name (loss, error,
/// RMSE, MAE, MSE, drift share); larger otherwise.
pub fn lower_is_better(name: &str) -> bool {
    let n = name.rsplit('.').next().unwrap_or(name).to_ascii_lowercase();
    ["loss", "error", "rmse", "mae", "mse", "drift"].iter().any(|k| n.contains(k))
}

pub fn compare(runs: &[RunSummary]) -> Comparison {
    let param_keys: BTreeSet<&String> = runs.iter().flat_map(|r| r.params.keys()).collect();
    let params = param_keys
        .into_iter()
        .map(|k| {
            let values: Vec<Option<String>> = runs.iter().map(|r| r.params.get(k).cloned()).collect();
            let differs = values.iter().any(|v| *v != values[0]);
            (k.clone(), values, differs)
        })
        .collect();
    let metric_keys: BTreeSet<&String> = runs.iter().flat_map(|r| r.metrics.keys()).collect();
    let metrics = metric_keys
        .into_iter()
        .map(|k| {
            let values: Vec<Option<f64>> = runs.iter().map(|r| r.metrics.get(k).copied().filter(|v| !v.is_nan())).collect();
            let lower = lower_is_better(k);
            let best = values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (i, v)))
                .reduce(|a, b| if (lower && b.1 < a.1) || (!lower && b.1 > a.1) { b } else { a })
                .map(|(i, _)| i);
            (k.clone(), values, best)
        })
        .collect();
    Comparison { runs: runs.iter().map(|r| r.id.clone()).collect(), params, metrics }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RunStatus;
    use std::collections::BTreeMap;

    fn run(id: &str, params: &[(&str, &str)], metrics: &[(&str, f64)]) -> RunSummary {
        RunSummary {
            id: id.into(),
            experiment: "e".into(),
            name: id.into(),
            status: RunStatus::Finished,
            start_time: 0,
            end_time: None,
            source: String::new(),
            parent_run_id: None,
            params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn differences_and_best_values() {
        let c = compare(&[
            run("a", &[("c", "1"), ("model", "x")], &[("evaluate.accuracy", 0.9), ("evaluate.log_loss", 0.3)]),
            run("b", &[("c", "2"), ("model", "x")], &[("evaluate.accuracy", 0.95), ("evaluate.log_loss", 0.2)]),
        ]);
        assert_eq!(c.params.iter().map(|p| (p.0.as_str(), p.2)).collect::<Vec<_>>(), [("c", true), ("model", false)]);
        assert_eq!(
            c.metrics.iter().map(|m| (m.0.as_str(), m.2)).collect::<Vec<_>>(),
            [("evaluate.accuracy", Some(1)), ("evaluate.log_loss", Some(1))]
        );
        assert!(lower_is_better("train.train_loss") && !lower_is_better("evaluate.r2"));
    }
}
