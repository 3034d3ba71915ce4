//! `metrics`: scores predictions against actual values.
//!
//! Classification: accuracy, precision, recall, F1 (binary for two classes,
//! macro-averaged otherwise), ROC AUC and log loss when the predictions carry
//! `proba:<label>` columns, and the confusion matrix in the report.
//! Regression: RMSE, MAE and R².

use kiln_sdk::{Column, Description, Evaluation, Evaluator, Params, PluginError, Result, Table};

pub struct Metrics;

impl Evaluator for Metrics {
    fn describe() -> Description {
        Description {
            name: "metrics".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Classification and regression metrics (accuracy, F1, ROC AUC, log loss, RMSE, R², ...)".into(),
            params_schema: serde_json::json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "task": {"enum": ["auto", "classification", "regression"], "default": "auto",
                             "description": "auto: classification when the predictions carry class probabilities"},
                    "positive_label": {"type": "number", "default": 1,
                                       "description": "the positive class for binary precision, recall, F1 and ROC AUC"}
                }
            }),
        }
    }

    fn evaluate(actual: Column, predictions: Table, params: Params) -> Result<Evaluation> {
        let y = actual.as_numeric()?;
        let pred = predictions
            .column("prediction")
            .ok_or_else(|| PluginError::invalid_column("prediction", "predictions have no `prediction` column"))?
            .as_numeric()?;
        if y.len() != pred.len() {
            return Err(PluginError::invalid_input(format!("{} actual values but {} predictions", y.len(), pred.len())));
        }
        if y.is_empty() {
            return Err(PluginError::invalid_input("nothing to evaluate: no rows"));
        }
        let probas: Vec<(f64, &[f64])> = predictions
            .columns
            .iter()
            .filter_map(|c| {
                let label = c.name.strip_prefix("proba:")?.parse::<f64>().ok()?;
                Some((label, c.as_numeric().ok()?))
            })
            .collect();
        let task = params.str_or("task", "auto")?;
        match task {
            "regression" => Ok(regression(y, pred)),
            "classification" => classification(y, pred, &probas, params.f64_or("positive_label", 1.0)?),
            "auto" if !probas.is_empty() => classification(y, pred, &probas, params.f64_or("positive_label", 1.0)?),
            "auto" => Ok(regression(y, pred)),
            other => Err(PluginError::invalid_params("task", format!("unknown task `{other}`"))),
        }
    }
}

kiln_sdk::export_evaluator!(Metrics);

fn regression(y: &[f64], pred: &[f64]) -> Evaluation {
    let n = y.len() as f64;
    let mean = y.iter().sum::<f64>() / n;
    let sse: f64 = y.iter().zip(pred).map(|(a, p)| (a - p).powi(2)).sum();
    let sst: f64 = y.iter().map(|a| (a - mean).powi(2)).sum();
    let mae = y.iter().zip(pred).map(|(a, p)| (a - p).abs()).sum::<f64>() / n;
    let r2 = if sst > 0.0 { 1.0 - sse / sst } else { f64::NAN };
    Evaluation {
        metrics: vec![("rmse".into(), (sse / n).sqrt()), ("mae".into(), mae), ("r2".into(), r2)],
        report: serde_json::json!({"task": "regression", "rows": y.len()}),
    }
}

fn classification(y: &[f64], pred: &[f64], probas: &[(f64, &[f64])], positive: f64) -> Result<Evaluation> {
    let mut labels: Vec<f64> = y.iter().chain(pred).copied().filter(|v| !v.is_nan()).collect();
    labels.extend(probas.iter().map(|(l, _)| *l));
    labels.sort_by(f64::total_cmp);
    labels.dedup();
    let index = |v: f64| labels.iter().position(|l| *l == v);
    let k = labels.len();
    let mut confusion = vec![vec![0u64; k]; k];
    for (a, p) in y.iter().zip(pred) {
        if let (Some(i), Some(j)) = (index(*a), index(*p)) {
            confusion[i][j] += 1;
        }
    }
    let n = y.len() as f64;
    let correct: u64 = (0..k).map(|i| confusion[i][i]).sum();
    let mut metrics = vec![("accuracy".to_string(), correct as f64 / n)];

    let prf = |c: usize| {
        let tp = confusion[c][c] as f64;
        let fp: f64 = (0..k).filter(|&i| i != c).map(|i| confusion[i][c] as f64).sum();
        let fn_: f64 = (0..k).filter(|&j| j != c).map(|j| confusion[c][j] as f64).sum();
        let precision = if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 };
        let recall = if tp + fn_ > 0.0 { tp / (tp + fn_) } else { 0.0 };
        let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
        (precision, recall, f1)
    };
    let binary = k <= 2;
    let (precision, recall, f1) = if binary {
        match index(positive) {
            Some(c) => prf(c),
            None => (0.0, 0.0, 0.0),
        }
    } else {
        let all: Vec<_> = (0..k).map(prf).collect();
        let avg = |f: fn(&(f64, f64, f64)) -> f64| all.iter().map(f).sum::<f64>() / k as f64;
        (avg(|t| t.0), avg(|t| t.1), avg(|t| t.2))
    };
    metrics.push(("precision".into(), precision));
    metrics.push(("recall".into(), recall));
    metrics.push(("f1".into(), f1));

    if !probas.is_empty() {
        let proba_of = |label: f64| probas.iter().find(|(l, _)| *l == label).map(|(_, p)| *p);
        // ROC AUC: binary on the positive class, one-vs-rest macro average otherwise.
        let aucs: Vec<f64> = if binary {
            proba_of(positive).map(|p| roc_auc(y, p, positive)).into_iter().flatten().collect()
        } else {
            labels.iter().filter_map(|l| proba_of(*l).and_then(|p| roc_auc(y, p, *l))).collect()
        };
        if !aucs.is_empty() {
            metrics.push(("roc_auc".into(), aucs.iter().sum::<f64>() / aucs.len() as f64));
        }
        // Log loss, clipped like scikit-learn so a confident mistake is finite.
        let eps = 1e-15;
        let mut loss = 0.0;
        for (row, a) in y.iter().enumerate() {
            let p =
                proba_of(*a).ok_or_else(|| PluginError::invalid_column(format!("proba:{a}"), format!("no probability column for class {a}")))?[row];
            loss -= p.clamp(eps, 1.0 - eps).ln();
        }
        metrics.push(("log_loss".into(), loss / n));
    }
    Ok(Evaluation {
        metrics,
        report: serde_json::json!({
            "task": "classification",
            "rows": y.len(),
            "labels": labels,
            "confusion_matrix": confusion,
        }),
    })
}

/// Area under the ROC curve by the rank statistic (ties get average rank).
/// `None` when only one class is present.
pub fn roc_auc(y: &[f64], score: &[f64], positive: f64) -> Option<f64> {
    let mut idx: Vec<usize> = (0..y.len()).collect();
    idx.sort_by(|&a, &b| score[a].total_cmp(&score[b]));
    let mut ranks = vec![0f64; y.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && score[idx[j + 1]] == score[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for t in &idx[i..=j] {
            ranks[*t] = avg;
        }
        i = j + 1;
    }
    let pos = y.iter().filter(|v| **v == positive).count() as f64;
    let neg = y.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    let rank_sum: f64 = y.iter().zip(&ranks).filter(|(v, _)| **v == positive).map(|(_, r)| r).sum();
    Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(e: &Evaluation, name: &str) -> f64 {
        e.metrics.iter().find(|(n, _)| n == name).unwrap().1
    }

    #[test]
    fn binary_metrics_match_hand_computation() {
        let y = Column::numeric("y", vec![1., 1., 0., 0., 1.]);
        let preds = Table::new(vec![
            Column::numeric("prediction", vec![1., 0., 0., 1., 1.]),
            Column::numeric("proba:0", vec![0.2, 0.6, 0.9, 0.4, 0.1]),
            Column::numeric("proba:1", vec![0.8, 0.4, 0.1, 0.6, 0.9]),
        ])
        .unwrap();
        let e = Metrics::evaluate(y, preds, Params::default()).unwrap();
        assert!((get(&e, "accuracy") - 0.6).abs() < 1e-12);
        assert!((get(&e, "precision") - 2.0 / 3.0).abs() < 1e-12);
        assert!((get(&e, "recall") - 2.0 / 3.0).abs() < 1e-12);
        // Of the 3 × 2 positive/negative pairs, 5 rank the positive higher.
        assert!((get(&e, "roc_auc") - 5.0 / 6.0).abs() < 1e-12);
        // Mean of −ln p(actual class).
        let expected = -(0.8f64.ln() + 0.4f64.ln() + 0.9f64.ln() + 0.4f64.ln() + 0.9f64.ln()) / 5.0;
        assert!((get(&e, "log_loss") - expected).abs() < 1e-12);
        assert_eq!(e.report["confusion_matrix"], serde_json::json!([[1, 1], [1, 2]]));
    }

    #[test]
    fn regression_metrics() {
        let y = Column::numeric("y", vec![3., -0.5, 2., 7.]);
        let preds = Table::new(vec![Column::numeric("prediction", vec![2.5, 0.0, 2., 8.])]).unwrap();
        let e = Metrics::evaluate(y, preds, Params::default()).unwrap();
        // sklearn: r2_score = 0.9486081370449679, mae = 0.5, rmse = sqrt(0.375)
        assert!((get(&e, "r2") - 0.9486081370449679).abs() < 1e-12);
        assert!((get(&e, "mae") - 0.5).abs() < 1e-12);
        assert!((get(&e, "rmse") - 0.375f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn length_mismatch_is_an_input_error() {
        let y = Column::numeric("y", vec![1., 0.]);
        let preds = Table::new(vec![Column::numeric("prediction", vec![1.])]).unwrap();
        let err = Metrics::evaluate(y, preds, Params::default()).unwrap_err();
        assert!(err.message.contains("2 actual values but 1 predictions"));
    }
}
