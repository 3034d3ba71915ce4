//! `linear`: ordinary least squares, ridge and logistic regression on
//! standardised features.
//!
//! Features are standardised with the training mean and standard deviation;
//! a missing value (NaN) is imputed with the training mean. Logistic
//! regression minimises the same objective as scikit-learn's default
//! (`C · Σ log-loss + ½‖w‖²`, intercept unpenalised; multinomial for more
//! than two classes) by Newton's method with a backtracking line search.

mod linalg;
mod logistic;
mod ols;

use kiln_sdk::{Column, Description, Model, Params, PluginError, Result, Table, Trainer};
use serde::{Deserialize, Serialize};

pub struct Linear;

/// The largest `max_iter` the schema allows; the plugin checks it too.
const MAX_ITER: u64 = 10000;

/// A fitted linear model and the standardisation it was fitted under.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinearModel {
    pub features: Vec<String>,
    pub means: Vec<f64>,
    pub scales: Vec<f64>,
    pub fit: Fit,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Fit {
    /// y = w·x + b
    Regression { weights: Vec<f64>, intercept: f64 },
    /// One weight row and intercept per class; two classes use a single
    /// sigmoid row for the second class.
    Classification { classes: Vec<f64>, weights: Vec<Vec<f64>>, intercepts: Vec<f64> },
}

impl Trainer for Linear {
    type Model = LinearModel;

    fn describe() -> Description {
        Description {
            name: "linear".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Linear models: OLS, ridge and logistic regression with standardisation".into(),
            params_schema: serde_json::json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "model": {"enum": ["logistic", "ols", "ridge"], "default": "logistic"},
                    "alpha": {"type": "number", "minimum": 0, "default": 1.0,
                              "description": "ridge: L2 penalty on the standardised weights"},
                    "c": {"type": "number", "exclusiveMinimum": 0, "default": 1.0,
                          "description": "logistic: inverse regularisation strength, as scikit-learn's C; a huge C (up to 1e308) means no regularisation"},
                    "max_iter": {"type": "integer", "minimum": 1, "maximum": MAX_ITER, "default": 100},
                    "tol": {"type": "number", "exclusiveMinimum": 0, "default": 1e-8}
                }
            }),
        }
    }

    fn train(features: Table, target: Column, params: Params) -> Result<LinearModel> {
        let y = kiln_sdk::training_target(&features, &target)?;
        let (x, means, scales) = standardise(&features)?;
        let names = features.names().into_iter().map(String::from).collect();
        let fit = match params.str_or("model", "logistic")? {
            "ols" => ols::fit(&x, y, 0.0, &target.name)?,
            "ridge" => ols::fit(&x, y, params.f64_or("alpha", 1.0)?, &target.name)?,
            "logistic" => {
                let c = params.f64_or("c", 1.0)?;
                // Checked before the cast: on wasm32 `as usize` would truncate.
                let max_iter = params.u64_or("max_iter", 100)?;
                if !(1..=MAX_ITER).contains(&max_iter) {
                    return Err(PluginError::invalid_params("max_iter", format!("`max_iter` must be between 1 and {MAX_ITER}, got {max_iter}")));
                }
                let tol = params.f64_or("tol", 1e-8)?;
                logistic::fit(&x, y, c, max_iter as usize, tol)?
            }
            other => return Err(PluginError::invalid_params("model", format!("unknown model `{other}`"))),
        };
        Ok(LinearModel { features: names, means, scales, fit })
    }

    fn load(bytes: &[u8]) -> Result<LinearModel> {
        serde_json::from_slice(bytes).map_err(|e| PluginError::invalid_input(format!("not a linear model: {e}")))
    }
}

impl Model for LinearModel {
    fn predict(&self, features: Table) -> Result<Table> {
        let x = self.design(&features)?;
        match &self.fit {
            Fit::Regression { weights, intercept } => {
                let pred = x.iter().map(|row| linalg::dot(row, weights) + intercept).collect();
                Table::new(vec![Column::numeric("prediction", pred)])
            }
            Fit::Classification { classes, weights, intercepts } => {
                let probs: Vec<Vec<f64>> = x.iter().map(|row| logistic::probabilities(row, weights, intercepts)).collect();
                let pred = probs.iter().map(|p| classes[p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)]).collect();
                let mut cols = vec![Column::numeric("prediction", pred)];
                for (k, class) in classes.iter().enumerate() {
                    cols.push(Column::numeric(format!("proba:{class}"), probs.iter().map(|p| p[k]).collect()));
                }
                Table::new(cols)
            }
        }
    }

    fn save(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| PluginError::internal(e.to_string()))
    }
}

impl LinearModel {
    /// Standardised rows of `features`, columns matched by name.
    fn design(&self, features: &Table) -> Result<Vec<Vec<f64>>> {
        let cols = self
            .features
            .iter()
            .map(|name| {
                features.column(name).ok_or_else(|| PluginError::invalid_column(name, format!("the model needs column `{name}`")))?.as_numeric()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((0..features.rows)
            .map(|r| cols.iter().enumerate().map(|(j, c)| if c[r].is_nan() { 0.0 } else { (c[r] - self.means[j]) / self.scales[j] }).collect())
            .collect())
    }
}

/// A row-major design matrix, and the per-column means and scales it was
/// standardised with.
type Standardised = (Vec<Vec<f64>>, Vec<f64>, Vec<f64>);

/// Row-major standardised design matrix, with the means and scales used.
fn standardise(features: &Table) -> Result<Standardised> {
    let cols = features.numeric_columns()?;
    let mut means = Vec::with_capacity(cols.len());
    let mut scales = Vec::with_capacity(cols.len());
    for (name, c) in features.names().into_iter().zip(&cols) {
        let (mean, scale) = column_stats(name, c)?;
        means.push(mean);
        scales.push(scale);
    }
    let x = (0..features.rows)
        .map(|r| cols.iter().enumerate().map(|(j, c)| if c[r].is_nan() { 0.0 } else { (c[r] - means[j]) / scales[j] }).collect())
        .collect();
    Ok((x, means, scales))
}

/// Mean and standard deviation of the present (non-NaN) values of a feature
/// column, both finite, or an error naming the column. An infinite value, or
/// values spanning more than the largest double, would standardise to NaN,
/// and the solvers can do nothing with a NaN design matrix.
fn column_stats(name: &str, c: &[f64]) -> Result<(f64, f64)> {
    if let Some(row) = c.iter().position(|v| v.is_infinite()) {
        return Err(PluginError::invalid_column(name, format!("feature `{name}` is infinite at row {}; only NaN marks a missing value", row + 1)));
    }
    let present: Vec<f64> = c.iter().copied().filter(|v| !v.is_nan()).collect();
    let n = present.len().max(1) as f64;
    let mut mean = present.iter().sum::<f64>() / n;
    if !mean.is_finite() {
        // The sum of finite values overflowed; the mean itself cannot.
        mean = present.iter().map(|v| v / n).sum::<f64>();
    }
    let mut var = present.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let scale = if var.is_finite() {
        // A constant column keeps scale 1 so it standardises to zeros.
        if var > 0.0 { var.sqrt() } else { 1.0 }
    } else {
        // Squares of deviations beyond ~1e154 overflow: factor out the largest.
        let largest = present.iter().map(|v| (v - mean).abs()).fold(0.0, f64::max);
        var = present.iter().map(|v| ((v - mean) / largest).powi(2)).sum::<f64>() / n;
        largest * var.sqrt()
    };
    if !(mean.is_finite() && scale.is_finite() && scale > 0.0) {
        return Err(PluginError::invalid_column(
            name,
            format!("feature `{name}` has values too large in magnitude to standardise (their spread overflows a double); rescale it"),
        ));
    }
    Ok((mean, scale))
}

kiln_sdk::export_trainer!(Linear);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ols_recovers_exact_linear_relation() {
        let a: Vec<f64> = (0..50).map(|i| i as f64).collect();
        let b: Vec<f64> = (0..50).map(|i| ((i * 7) % 13) as f64).collect();
        let y: Vec<f64> = a.iter().zip(&b).map(|(a, b)| 3.0 * a - 2.0 * b + 5.0).collect();
        let t = Table::new(vec![Column::numeric("a", a), Column::numeric("b", b)]).unwrap();
        let params = Params::from_json(serde_json::json!({"model": "ols"}));
        let m = Linear::train(t.clone(), Column::numeric("y", y.clone()), params).unwrap();
        let pred = m.predict(t).unwrap();
        let p = pred.column("prediction").unwrap().as_numeric().unwrap();
        for (p, y) in p.iter().zip(&y) {
            assert!((p - y).abs() < 1e-8);
        }
    }

    #[test]
    fn logistic_separates_and_round_trips() {
        let x: Vec<f64> = (0..100).map(|i| i as f64 / 10.0).collect();
        let y: Vec<f64> = x.iter().map(|v| if *v > 5.0 { 1.0 } else { 0.0 }).collect();
        let t = Table::new(vec![Column::numeric("x", x)]).unwrap();
        let (m, calls) = kiln_sdk::testing::capture(|| Linear::train(t.clone(), Column::numeric("y", y.clone()), Params::default()));
        let m = m.unwrap();
        assert!(!calls.metrics().is_empty(), "reports the training loss per iteration");
        let m = Linear::load(&m.save().unwrap()).unwrap();
        let pred = m.predict(t).unwrap();
        let p = pred.column("prediction").unwrap().as_numeric().unwrap();
        let acc = p.iter().zip(&y).filter(|(a, b)| a == b).count() as f64 / y.len() as f64;
        assert!(acc > 0.95, "accuracy {acc}");
        assert!(pred.column("proba:1").is_some());
    }

    #[test]
    fn three_classes_use_softmax() {
        let x: Vec<f64> = (0..90).map(|i| i as f64).collect();
        let y: Vec<f64> = (0..90).map(|i| (i / 30) as f64).collect();
        let t = Table::new(vec![Column::numeric("x", x)]).unwrap();
        let m = Linear::train(t.clone(), Column::numeric("y", y.clone()), Params::from_json(serde_json::json!({"c": 100.0}))).unwrap();
        let pred = m.predict(t).unwrap();
        let p = pred.column("prediction").unwrap().as_numeric().unwrap();
        let acc = p.iter().zip(&y).filter(|(a, b)| a == b).count() as f64 / 90.0;
        assert!(acc > 0.9, "accuracy {acc}");
        let total: f64 = ["proba:0", "proba:1", "proba:2"].iter().map(|c| pred.column(c).unwrap().as_numeric().unwrap()[0]).sum();
        assert!((total - 1.0).abs() < 1e-9);
    }

    #[test]
    fn missing_column_at_predict_is_named() {
        let t = Table::new(vec![Column::numeric("x", vec![0., 1., 2., 3.])]).unwrap();
        let m = Linear::train(t, Column::numeric("y", vec![0., 0., 1., 1.]), Params::default()).unwrap();
        let other = Table::new(vec![Column::numeric("z", vec![1.0])]).unwrap();
        assert_eq!(m.predict(other).unwrap_err().field.as_deref(), Some("x"));
    }

    /// The separable data of `logistic_separates_and_round_trips`.
    fn separable() -> (Table, Column) {
        let x: Vec<f64> = (0..100).map(|i| i as f64 / 10.0).collect();
        let y: Vec<f64> = x.iter().map(|v| if *v > 5.0 { 1.0 } else { 0.0 }).collect();
        (Table::new(vec![Column::numeric("x", x)]).unwrap(), Column::numeric("y", y))
    }

    /// Overlapping classes: the unregularised maximum likelihood is finite.
    fn overlapping() -> (Table, Column) {
        let x: Vec<f64> = (0..100).map(|i| i as f64 / 10.0).collect();
        let y: Vec<f64> = (0..100).map(|i| if (i > 50) != (i % 7 == 0) { 1.0 } else { 0.0 }).collect();
        (Table::new(vec![Column::numeric("x", x)]).unwrap(), Column::numeric("y", y))
    }

    fn classification(m: &LinearModel) -> (&[Vec<f64>], &[f64]) {
        match &m.fit {
            Fit::Classification { weights, intercepts, .. } => (weights, intercepts),
            Fit::Regression { .. } => panic!("expected a classifier"),
        }
    }

    fn regression(m: &LinearModel) -> (&[f64], f64) {
        match &m.fit {
            Fit::Regression { weights, intercept } => (weights, *intercept),
            Fit::Classification { .. } => panic!("expected a regression"),
        }
    }

    fn all_finite(m: &LinearModel) -> bool {
        let params: Vec<f64> = match &m.fit {
            Fit::Regression { weights, intercept } => weights.iter().copied().chain([*intercept]).collect(),
            Fit::Classification { weights, intercepts, .. } => weights.iter().flatten().chain(intercepts).copied().collect(),
        };
        params.iter().chain(&m.means).chain(&m.scales).all(|v| v.is_finite())
    }

    #[test]
    fn huge_c_fails_fast_or_trains() {
        // Before the fix: C · Hessian overflowed to infinity, and solve_spd
        // retried Cholesky with an ever larger (infinite) ridge forever.
        for c in [1e308, f64::MAX] {
            let (t, y) = separable();
            let m = Linear::train(t.clone(), y.clone(), Params::from_json(serde_json::json!({"c": c}))).unwrap();
            assert!(all_finite(&m), "c = {c}: {:?}", m.fit);
            let pred = m.predict(t).unwrap();
            let p = pred.column("prediction").unwrap().as_numeric().unwrap();
            let y = y.as_numeric().unwrap();
            let acc = p.iter().zip(y).filter(|(a, b)| a == b).count() as f64 / y.len() as f64;
            assert!(acc > 0.95, "c = {c}: accuracy {acc}");
        }
    }

    #[test]
    fn huge_c_trains_multinomial_and_duplicated_features() {
        // Softmax over three classes, and a duplicated column whose Hessian
        // is singular without the (now 1e-308) penalty: the bounded ridge
        // in solve_spd handles it.
        let x: Vec<f64> = (0..90).map(|i| i as f64).collect();
        let y: Vec<f64> = (0..90).map(|i| (i / 30) as f64).collect();
        let t = Table::new(vec![Column::numeric("x", x.clone()), Column::numeric("x2", x)]).unwrap();
        let m = Linear::train(t.clone(), Column::numeric("y", y.clone()), Params::from_json(serde_json::json!({"c": 1e308}))).unwrap();
        assert!(all_finite(&m), "{:?}", m.fit);
        let pred = m.predict(t).unwrap();
        let p = pred.column("prediction").unwrap().as_numeric().unwrap();
        let acc = p.iter().zip(&y).filter(|(a, b)| a == b).count() as f64 / 90.0;
        assert!(acc > 0.9, "accuracy {acc}");
    }

    #[test]
    fn huge_c_is_unregularised_logistic_regression() {
        // With overlapping classes the unpenalised optimum is finite, so
        // c = 1e308 and c = 1e12 (penalty 1e-12) must agree closely.
        let (t, y) = overlapping();
        let fit = |c: f64| Linear::train(t.clone(), y.clone(), Params::from_json(serde_json::json!({"c": c}))).unwrap();
        let (huge, big) = (fit(1e308), fit(1e12));
        let ((wh, bh), (wb, bb)) = (classification(&huge), classification(&big));
        assert!((wh[0][0] - wb[0][0]).abs() < 1e-6 * wb[0][0].abs().max(1.0), "{wh:?} vs {wb:?}");
        assert!((bh[0] - bb[0]).abs() < 1e-6 * bb[0].abs().max(1.0), "{bh:?} vs {bb:?}");
    }

    #[test]
    fn scaled_objective_keeps_moderate_c_fits() {
        // c = 1 (unscaled) and c = 2 (scaled by 1/2): the weights grow with
        // c, as the penalty shrinks, and stay finite.
        let (t, y) = overlapping();
        let fit = |c: f64| Linear::train(t.clone(), y.clone(), Params::from_json(serde_json::json!({"c": c}))).unwrap();
        let (one, two) = (fit(1.0), fit(2.0));
        let (w1, w2) = (classification(&one).0[0][0], classification(&two).0[0][0]);
        assert!(w1 > 0.0 && w2 > w1 && w2.is_finite(), "{w1} {w2}");
    }

    #[test]
    fn tiny_c_trains_a_finite_model() {
        // The smallest positive double: all penalty, the weights stay zero.
        let (t, y) = separable();
        let m = Linear::train(t, y, Params::from_json(serde_json::json!({"c": 5e-324}))).unwrap();
        assert!(all_finite(&m), "{:?}", m.fit);
        assert!(classification(&m).0[0][0].abs() < 1e-300);
    }

    #[test]
    fn extreme_tol_is_bounded() {
        // A huge tol stops after one step; a tiny one after at most max_iter.
        for tol in [1e308, 5e-324] {
            let (t, y) = separable();
            let params = Params::from_json(serde_json::json!({"tol": tol, "max_iter": 10000}));
            let m = Linear::train(t, y, params).unwrap();
            assert!(all_finite(&m), "tol = {tol}: {:?}", m.fit);
        }
    }

    #[test]
    fn non_finite_c_or_tol_is_a_typed_error() {
        // JSON cannot carry them, but a direct caller can.
        let x = vec![vec![-1.0], vec![1.0]];
        let y = [0.0, 1.0];
        for c in [f64::INFINITY, f64::NAN, 0.0, -1.0] {
            let err = logistic::fit(&x, &y, c, 100, 1e-8).unwrap_err();
            assert_eq!((err.code, err.field.as_deref()), (kiln_sdk::ErrorCode::InvalidParams, Some("c")), "{err}");
        }
        for tol in [f64::INFINITY, f64::NAN, 0.0] {
            let err = logistic::fit(&x, &y, 1.0, 100, tol).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("tol"), "{err}");
        }
    }

    #[test]
    fn max_iter_beyond_the_schema_is_rejected() {
        for max_iter in [0, MAX_ITER + 1, u64::MAX] {
            let (t, y) = separable();
            let err = Linear::train(t, y, Params::from_json(serde_json::json!({"max_iter": max_iter}))).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("max_iter"), "{err}");
        }
    }

    #[test]
    fn huge_alpha_shrinks_ridge_to_the_mean() {
        let (t, y) = overlapping();
        let mean = y.as_numeric().unwrap().iter().sum::<f64>() / 100.0;
        let m = Linear::train(t, y, Params::from_json(serde_json::json!({"model": "ridge", "alpha": f64::MAX}))).unwrap();
        assert!(all_finite(&m), "{:?}", m.fit);
        let (w, b) = regression(&m);
        assert!(w[0].abs() < 1e-300 && (b - mean).abs() < 1e-12, "{w:?} {b}");
    }

    #[test]
    fn non_finite_alpha_is_a_typed_error() {
        let x = vec![vec![-1.0], vec![1.0]];
        for alpha in [f64::INFINITY, f64::NAN, -1.0] {
            let err = ols::fit(&x, &[0.0, 1.0], alpha, "y").unwrap_err();
            assert_eq!(err.field.as_deref(), Some("alpha"), "{err}");
        }
    }

    #[test]
    fn infinite_feature_is_a_typed_error_not_a_hang() {
        // Before the fix: the mean became inf, the design matrix NaN, and
        // OLS retried Cholesky on NaN pivots forever; logistic likewise.
        for model in ["ols", "ridge", "logistic"] {
            let t = Table::new(vec![Column::numeric("a", vec![0.0, 1.0, f64::INFINITY, 3.0])]).unwrap();
            let err =
                Linear::train(t, Column::numeric("y", vec![0.0, 0.0, 1.0, 1.0]), Params::from_json(serde_json::json!({"model": model}))).unwrap_err();
            assert_eq!((err.code, err.field.as_deref()), (kiln_sdk::ErrorCode::InvalidInput, Some("a")), "{model}: {err}");
            assert!(err.message.contains("row 3"), "{err}");
        }
    }

    #[test]
    fn huge_finite_features_standardise() {
        // Squared deviations of 1e200 overflow: before the fix the scale was
        // inf and the feature standardised to all zeros (weight 0).
        let a: Vec<f64> = (0..50).map(|i| i as f64 * 1e200).collect();
        let y: Vec<f64> = (0..50).map(|i| 2.0 * i as f64 + 1.0).collect();
        let t = Table::new(vec![Column::numeric("a", a)]).unwrap();
        let m = Linear::train(t.clone(), Column::numeric("y", y.clone()), Params::from_json(serde_json::json!({"model": "ols"}))).unwrap();
        assert!(all_finite(&m), "{:?}", m);
        let pred = m.predict(t).unwrap();
        let p = pred.column("prediction").unwrap().as_numeric().unwrap();
        for (p, y) in p.iter().zip(&y) {
            assert!((p - y).abs() < 1e-8, "{p} vs {y}");
        }
    }

    #[test]
    fn feature_spanning_more_than_f64_max_is_a_typed_error() {
        let a = vec![f64::MAX, -f64::MAX, -f64::MAX, -f64::MAX];
        let t = Table::new(vec![Column::numeric("a", a)]).unwrap();
        let err = Linear::train(t, Column::numeric("y", vec![0.0, 0.0, 1.0, 1.0]), Params::default()).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("a"), "{err}");
    }

    #[test]
    fn target_whose_sum_overflows_still_trains() {
        // Before the fix: the mean was inf and the weights NaN.
        let t = Table::new(vec![Column::numeric("a", vec![0.0, 1.0, 2.0, 3.0])]).unwrap();
        let m = Linear::train(t, Column::numeric("y", vec![1e308; 4]), Params::from_json(serde_json::json!({"model": "ols"}))).unwrap();
        assert!(all_finite(&m), "{:?}", m.fit);
        assert_eq!(regression(&m), (&[0.0][..], 1e308));
    }

    #[test]
    fn target_too_large_for_least_squares_is_a_typed_error() {
        let t = Table::new(vec![Column::numeric("a", vec![0.0, 1.0, 2.0, 3.0])]).unwrap();
        let y = vec![-f64::MAX, f64::MAX, -f64::MAX, f64::MAX];
        let err = Linear::train(t, Column::numeric("y", y), Params::from_json(serde_json::json!({"model": "ols"}))).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("y"), "{err}");
    }
}
