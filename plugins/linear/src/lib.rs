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
                          "description": "logistic: inverse regularisation strength, as scikit-learn's C"},
                    "max_iter": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 100},
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
            "ols" => ols::fit(&x, y, 0.0),
            "ridge" => ols::fit(&x, y, params.f64_or("alpha", 1.0)?),
            "logistic" => {
                let c = params.f64_or("c", 1.0)?;
                let max_iter = params.u64_or("max_iter", 100)? as usize;
                let tol = params.f64_or("tol", 1e-8)?;
                logistic::fit(&x, y, c, max_iter, tol)?
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
                let pred = probs
                    .iter()
                    .map(|p| classes[p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)])
                    .collect();
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
                features
                    .column(name)
                    .ok_or_else(|| PluginError::invalid_column(name, format!("the model needs column `{name}`")))?
                    .as_numeric()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((0..features.rows)
            .map(|r| {
                cols.iter()
                    .enumerate()
                    .map(|(j, c)| if c[r].is_nan() { 0.0 } else { (c[r] - self.means[j]) / self.scales[j] })
                    .collect()
            })
            .collect())
    }
}

/// Row-major standardised design matrix, with the means and scales used.
fn standardise(features: &Table) -> Result<(Vec<Vec<f64>>, Vec<f64>, Vec<f64>)> {
    let cols = features.numeric_columns()?;
    let mut means = Vec::with_capacity(cols.len());
    let mut scales = Vec::with_capacity(cols.len());
    for c in &cols {
        let present: Vec<f64> = c.iter().copied().filter(|v| !v.is_nan()).collect();
        let n = present.len().max(1) as f64;
        let mean = present.iter().sum::<f64>() / n;
        let var = present.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        means.push(mean);
        // A constant column keeps scale 1 so it standardises to zeros.
        scales.push(if var > 0.0 { var.sqrt() } else { 1.0 });
    }
    let x = (0..features.rows)
        .map(|r| {
            cols.iter()
                .enumerate()
                .map(|(j, c)| if c[r].is_nan() { 0.0 } else { (c[r] - means[j]) / scales[j] })
                .collect()
        })
        .collect();
    Ok((x, means, scales))
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
}
