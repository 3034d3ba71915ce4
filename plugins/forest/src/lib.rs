//! `forest`: random forest classifier and regressor.
//!
//! Trees are grown on bootstrap samples with a random subset of features per
//! split, like scikit-learn's `RandomForest*`, but split search works on
//! pre-binned features (at most 256 quantile bins per feature, exact when a
//! feature has fewer distinct values), so each node costs O(rows) per
//! feature instead of a sort. Missing values (NaN) go to the left branch.

mod binning;
mod tree;

use binning::Bins;
use kiln_sdk::{Column, Description, Model, Params, PluginError, Result, Table, Trainer};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use serde::{Deserialize, Serialize};
use tree::{Task, Tree, TreeParams};

pub struct Forest;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForestModel {
    features: Vec<String>,
    /// Class labels for a classifier; empty for a regressor.
    classes: Vec<f64>,
    trees: Vec<Tree>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum TaskParam {
    Classification,
    Regression,
}

impl Trainer for Forest {
    type Model = ForestModel;

    fn describe() -> Description {
        Description {
            name: "forest".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Random forest classifier and regressor (bootstrap, random feature subsets, binned splits)".into(),
            params_schema: serde_json::json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "task": {"enum": ["classification", "regression"], "default": "classification"},
                    "n_estimators": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 100},
                    "max_depth": {"type": ["integer", "null"], "minimum": 1, "maximum": 64, "default": null},
                    "min_samples_leaf": {"type": "integer", "minimum": 1, "default": 1},
                    "max_features": {"type": ["number", "string"], "default": "auto",
                                     "description": "\"sqrt\", \"all\", a share in (0, 1], or \"auto\" (sqrt for classification, all for regression)"},
                    "seed": {"type": "integer", "minimum": 0, "default": 0}
                }
            }),
        }
    }

    fn train(features: Table, target: Column, params: Params) -> Result<ForestModel> {
        let y = kiln_sdk::training_target(&features, &target)?;
        let task = match params.str_or("task", "classification")? {
            "classification" => TaskParam::Classification,
            "regression" => TaskParam::Regression,
            other => return Err(PluginError::invalid_params("task", format!("unknown task `{other}`"))),
        };
        let n_estimators = params.u64_or("n_estimators", 100)? as usize;
        let max_depth = match params.0.get("max_depth") {
            None | Some(serde_json::Value::Null) => usize::MAX,
            Some(_) => params.u64_or("max_depth", 0)? as usize,
        };
        let min_samples_leaf = params.u64_or("min_samples_leaf", 1)?.max(1) as usize;
        let seed = params.u64_or("seed", 0)?;
        let cols = features.numeric_columns()?;
        let d = cols.len();
        let max_features = match params.0.get("max_features") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => match s.as_str() {
                "auto" => None,
                "sqrt" => Some(((d as f64).sqrt() as usize).max(1)),
                "all" => Some(d),
                other => return Err(PluginError::invalid_params("max_features", format!("unknown value `{other}`"))),
            },
            Some(v) => match v.as_f64() {
                Some(f) if f > 0.0 && f <= 1.0 => Some(((d as f64 * f).round() as usize).max(1)),
                _ => return Err(PluginError::invalid_params("max_features", format!("must be in (0, 1], got {v}"))),
            },
        };

        let (classes, encoded, tree_task) = match task {
            TaskParam::Classification => {
                let mut classes = y.to_vec();
                classes.sort_by(f64::total_cmp);
                classes.dedup();
                if classes.len() > 1000 {
                    return Err(PluginError::invalid_input(format!("the target has {} distinct values: use task = \"regression\"", classes.len())));
                }
                let enc: Vec<f64> = y.iter().map(|v| classes.iter().position(|c| c == v).unwrap() as f64).collect();
                let k = classes.len();
                (classes, enc, Task::Classification { classes: k })
            }
            TaskParam::Regression => (Vec::new(), y.to_vec(), Task::Regression),
        };
        let max_features = max_features.unwrap_or(match task {
            TaskParam::Classification => ((d as f64).sqrt() as usize).max(1),
            TaskParam::Regression => d,
        });

        let bins = Bins::fit(&cols);
        let binned = bins.transform(&cols);
        let tree_params = TreeParams { max_depth, min_samples_leaf, max_features };
        let mut rng = SmallRng::seed_from_u64(seed);
        let n = features.rows;
        let mut trees = Vec::with_capacity(n_estimators);
        let mut weights = vec![0u32; n];
        for t in 0..n_estimators {
            weights.iter_mut().for_each(|w| *w = 0);
            for _ in 0..n {
                weights[rng.random_range(0..n)] += 1;
            }
            let tree_seed = rng.random::<u64>();
            trees.push(Tree::grow(&binned, &bins, &encoded, &weights, tree_task, &tree_params, tree_seed));
            kiln_sdk::progress(t as u64 + 1, n_estimators as u64, "trees");
        }
        let features = features.names().into_iter().map(String::from).collect();
        Ok(ForestModel { features, classes, trees })
    }

    fn load(bytes: &[u8]) -> Result<ForestModel> {
        postcard::from_bytes(bytes).map_err(|e| PluginError::invalid_input(format!("not a forest model: {e}")))
    }
}

impl Model for ForestModel {
    fn predict(&self, features: Table) -> Result<Table> {
        let cols = self
            .features
            .iter()
            .map(|name| {
                features.column(name).ok_or_else(|| PluginError::invalid_column(name, format!("the model needs column `{name}`")))?.as_numeric()
            })
            .collect::<Result<Vec<_>>>()?;
        let n = features.rows;
        let mut row = vec![0.0; cols.len()];
        if self.classes.is_empty() {
            let pred = (0..n)
                .map(|r| {
                    cols.iter().zip(row.iter_mut()).for_each(|(c, v)| *v = c[r]);
                    self.trees.iter().map(|t| t.leaf(&row)[0]).sum::<f64>() / self.trees.len() as f64
                })
                .collect();
            return Table::new(vec![Column::numeric("prediction", pred)]);
        }
        let k = self.classes.len();
        let mut probs = vec![vec![0.0; n]; k];
        let mut pred = Vec::with_capacity(n);
        for r in 0..n {
            cols.iter().zip(row.iter_mut()).for_each(|(c, v)| *v = c[r]);
            let mut acc = vec![0.0; k];
            for t in &self.trees {
                for (a, p) in acc.iter_mut().zip(t.leaf(&row)) {
                    *a += *p;
                }
            }
            let mut best = 0;
            for c in 0..k {
                probs[c][r] = acc[c] / self.trees.len() as f64;
                if acc[c] > acc[best] {
                    best = c;
                }
            }
            pred.push(self.classes[best]);
        }
        let mut out = vec![Column::numeric("prediction", pred)];
        for (c, p) in self.classes.iter().zip(probs) {
            out.push(Column::numeric(format!("proba:{c}"), p));
        }
        Table::new(out)
    }

    fn save(&self) -> Result<Vec<u8>> {
        postcard::to_allocvec(self).map_err(|e| PluginError::internal(e.to_string()))
    }
}

kiln_sdk::export_trainer!(Forest);

/// Deterministic synthetic classification data for tests and benchmarks:
/// `informative` of the `d` features carry class signal, the rest are noise.
pub fn synthetic_classification(n: usize, d: usize, informative: usize, seed: u64) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut cols = vec![Vec::with_capacity(n); d];
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let label = rng.random_range(0..2u32) as f64;
        let mut first = 0.0;
        for (j, col) in cols.iter_mut().enumerate() {
            let noise: f64 = (0..4).map(|_| rng.random::<f64>()).sum::<f64>() - 2.0;
            let signal = if j < informative { (label * 2.0 - 1.0) * 0.35 * (1.0 + (j % 3) as f64 * 0.2) } else { 0.0 };
            // A class-dependent interaction, so trees beat a linear model.
            let interaction = if j == 1 && informative > 1 { (label - 0.5) * first } else { 0.0 };
            let v = signal + noise + interaction;
            if j == 0 {
                first = v;
            }
            col.push(v);
        }
        y.push(label);
    }
    (cols, y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(cols: &[Vec<f64>]) -> Table {
        Table::new(cols.iter().enumerate().map(|(j, c)| Column::numeric(format!("f{j}"), c.clone())).collect()).unwrap()
    }

    #[test]
    fn learns_synthetic_classification_and_round_trips() {
        let (x, y) = synthetic_classification(1200, 10, 5, 1);
        let train: Vec<Vec<f64>> = x.iter().map(|c| c[..1000].to_vec()).collect();
        let test: Vec<Vec<f64>> = x.iter().map(|c| c[1000..].to_vec()).collect();
        let params = Params::from_json(serde_json::json!({"n_estimators": 30, "seed": 7}));
        let m = Forest::train(table(&train), Column::numeric("y", y[..1000].to_vec()), params.clone()).unwrap();
        let m = Forest::load(&m.save().unwrap()).unwrap();
        let pred = m.predict(table(&test)).unwrap();
        let p = pred.column("prediction").unwrap().as_numeric().unwrap();
        let acc = p.iter().zip(&y[1000..]).filter(|(a, b)| a == b).count() as f64 / 200.0;
        assert!(acc > 0.8, "accuracy {acc}");
        // Same seed, same forest.
        let again = Forest::train(table(&train), Column::numeric("y", y[..1000].to_vec()), params).unwrap();
        assert_eq!(again.save().unwrap(), m.save().unwrap());
    }

    #[test]
    fn regression_fits_a_step() {
        let x: Vec<f64> = (0..200).map(|i| i as f64).collect();
        let y: Vec<f64> = x.iter().map(|v| if *v < 100.0 { 1.0 } else { 5.0 }).collect();
        let params = Params::from_json(serde_json::json!({"task": "regression", "n_estimators": 10}));
        let m = Forest::train(table(std::slice::from_ref(&x)), Column::numeric("y", y), params).unwrap();
        let p = m.predict(table(&[vec![10.0, 150.0]])).unwrap();
        let p = p.column("prediction").unwrap().as_numeric().unwrap();
        assert!((p[0] - 1.0).abs() < 0.5 && (p[1] - 5.0).abs() < 0.5, "{p:?}");
    }

    #[test]
    fn max_depth_limits_the_tree() {
        let (x, y) = synthetic_classification(500, 4, 2, 3);
        let params = Params::from_json(serde_json::json!({"n_estimators": 3, "max_depth": 2}));
        let m = Forest::train(table(&x), Column::numeric("y", y), params).unwrap();
        assert!(m.trees.iter().all(|t| t.depth() <= 2));
    }
}
