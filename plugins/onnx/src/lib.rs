//! `onnx`: serves ONNX models inside the sandbox, with tract (a pure-Rust
//! ONNX runtime). A model trained elsewhere (scikit-learn through
//! skl2onnx, PyTorch's exporter) is imported with `kiln models import`;
//! this plugin does not train.
//!
//! The model takes one float tensor `[N, F]`: the request's columns, in the
//! order the version's signature gives. Its outputs are read by type: an
//! integer tensor is the predicted label, a float `[N, C]` tensor beside it
//! the class probabilities, and a float tensor alone a regression value.

mod trees;

use kiln_sdk::{Column, Description, Model, Params, PluginError, Result, Table, Trainer};
use std::sync::Arc;
use tract_onnx::pb;
use tract_onnx::prelude::*;

pub struct Onnx;

/// ONNX's element types this plugin reads (onnx.proto's `DataType`).
const FLOAT: i32 = 1;
const INT64: i32 = 7;
const DOUBLE: i32 = 11;

/// Operators that skl2onnx emits by default and tract cannot run, with
/// what to do instead.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("ZipMap", "export without it: skl2onnx's `options={id(model): {'zipmap': False}}`"),
    ("TreeEnsembleRegressor", "tract has no TreeEnsembleRegressor yet; export a classifier or a linear model"),
];

pub struct OnnxModel {
    bytes: Vec<u8>,
    plan: Arc<TypedSimplePlan>,
    /// Columns the input tensor takes.
    features: usize,
    /// What each output is.
    label: Option<usize>,
    probabilities: Option<usize>,
    value: Option<usize>,
    /// The classifier's labels, in probability-column order.
    classes: Vec<f64>,
    /// The graph is one tree ensemble, evaluated directly (checked against
    /// tract when loaded).
    ensemble: Option<trees::Ensemble>,
}

fn bad_model(message: impl std::fmt::Display) -> PluginError {
    PluginError::invalid_input(format!("the ONNX model cannot be served: {message}"))
}

/// The integer class labels of the classifier node, if there is one.
fn class_labels(graph: &pb::GraphProto) -> Result<Vec<f64>> {
    for node in &graph.node {
        for attr in &node.attribute {
            match attr.name.as_str() {
                "classlabels_int64s" | "classlabels_ints" => return Ok(attr.ints.iter().map(|&c| c as f64).collect()),
                "classlabels_strings" => {
                    return Err(bad_model(format!(
                        "{} `{}` has string class labels; Kiln's predictions are numbers, so train it on integer labels",
                        node.op_type, node.name
                    )));
                }
                _ => {}
            }
        }
    }
    Ok(Vec::new())
}

fn elem_type(v: &pb::ValueInfoProto) -> Option<i32> {
    match v.r#type.as_ref()?.value.as_ref()? {
        pb::type_proto::Value::TensorType(t) => Some(t.elem_type),
    }
}

fn dims(v: &pb::ValueInfoProto) -> Vec<Option<i64>> {
    let Some(pb::type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) else { return Vec::new() };
    let Some(shape) = &t.shape else { return Vec::new() };
    shape
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) => Some(*v),
            _ => None,
        })
        .collect()
}

impl OnnxModel {
    pub fn from_bytes(bytes: &[u8]) -> Result<OnnxModel> {
        let onnx = tract_onnx::onnx().with_ignore_output_types(true);
        let proto = onnx.proto_model_for_read(&mut &bytes[..]).map_err(|e| bad_model(format!("not an ONNX model: {e}")))?;
        let graph = proto.graph.as_ref().ok_or_else(|| bad_model("it has no graph"))?;
        if let Some((op, fix)) = graph.node.iter().find_map(|n| UNSUPPORTED.iter().find(|(op, _)| *op == n.op_type)) {
            return Err(bad_model(format!("it uses the operator {op}; {fix}")));
        }
        let initializers: std::collections::HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs: Vec<&pb::ValueInfoProto> = graph.input.iter().filter(|i| !initializers.contains(i.name.as_str())).collect();
        let [input] = inputs.as_slice() else {
            let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
            return Err(bad_model(format!(
                "it takes {} inputs ({}); Kiln serves models that take one [N, F] float tensor",
                names.len(),
                names.join(", ")
            )));
        };
        if !matches!(elem_type(input), Some(FLOAT | DOUBLE)) {
            return Err(bad_model(format!("its input `{}` is not a float tensor", input.name)));
        }
        let features = match dims(input).as_slice() {
            [_, Some(f)] if *f > 0 => *f as usize,
            other => return Err(bad_model(format!("its input `{}` has shape {other:?}; Kiln serves [N, F] with F fixed", input.name))),
        };
        let classes = class_labels(graph)?;
        let types: Vec<Option<i32>> = graph.output.iter().map(elem_type).collect();
        let label = types.iter().position(|t| *t == Some(INT64));
        let floats: Vec<usize> = types.iter().enumerate().filter(|(_, t)| matches!(t, Some(FLOAT | DOUBLE))).map(|(i, _)| i).collect();
        let (probabilities, value) = match (label, floats.first()) {
            (Some(_), p) => (p.copied(), None),
            (None, Some(v)) => (None, Some(*v)),
            (None, None) => return Err(bad_model("none of its outputs is a number tensor")),
        };

        let mut model = onnx.model_for_proto_model(&proto).map_err(|e| bad_model(format!("{e:#}")))?;
        let n = model.sym("N");
        let shape: TVec<TDim> = tvec!(n.into(), (features as i64).into());
        let fact = InferenceFact::dt_shape(f32::datum_type(), shape);
        model.set_input_fact(0, fact).map_err(|e| bad_model(format!("{e:#}")))?;
        let plan = model.into_optimized().and_then(|m| m.into_runnable()).map_err(|e| bad_model(format!("{e:#}")))?;
        let mut loaded = OnnxModel { bytes: bytes.to_vec(), plan, features, label, probabilities, value, classes, ensemble: None };
        if let Some(ensemble) = trees::Ensemble::of(graph, features).filter(|e| e.classes == loaded.classes.len())
            && loaded.agrees(&ensemble)?
        {
            loaded.ensemble = Some(ensemble);
        }
        Ok(loaded)
    }

    /// Whether `ensemble` gives tract's probabilities (within 1e-5) on
    /// probe rows made from the model's thresholds.
    fn agrees(&self, ensemble: &trees::Ensemble) -> Result<bool> {
        let Some(p) = self.probabilities else { return Ok(false) };
        let rows = 64;
        let probe = ensemble.probe_rows(rows);
        let input = Tensor::from_shape(&[rows, self.features], &probe).map_err(|e| PluginError::internal(format!("{e:#}")))?;
        let outputs = self.plan.run(tvec!(input.into_tvalue())).map_err(|e| bad_model(format!("it fails on a probe row: {e:#}")))?;
        let expected = as_f64(&outputs[p])?;
        if expected.len() != rows * ensemble.classes {
            return Ok(false);
        }
        let mut got = vec![0.0; ensemble.classes];
        for r in 0..rows {
            ensemble.score(&probe[r * self.features..(r + 1) * self.features], &mut got);
            if got.iter().zip(&expected[r * ensemble.classes..]).any(|(g, e)| (g - e).abs() > 1e-5) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Probabilities, row-major `[rows, classes]`.
    fn probabilities_of(&self, columns: &[&[f64]], rows: usize) -> Result<Vec<f64>> {
        if let Some(ensemble) = &self.ensemble {
            let mut out = vec![0.0; rows * ensemble.classes];
            let mut row = vec![0f32; self.features];
            for r in 0..rows {
                for (f, c) in columns.iter().enumerate() {
                    row[f] = c[r] as f32;
                }
                ensemble.score(&row, &mut out[r * ensemble.classes..(r + 1) * ensemble.classes]);
            }
            return Ok(out);
        }
        let outputs = self.run(columns, rows)?;
        as_f64(&outputs[self.probabilities.expect("a classifier with probabilities")])
    }

    fn run(&self, columns: &[&[f64]], rows: usize) -> Result<TVec<TValue>> {
        let mut flat = Vec::with_capacity(rows * self.features);
        for r in 0..rows {
            flat.extend(columns.iter().map(|c| c[r] as f32));
        }
        let input = Tensor::from_shape(&[rows, self.features], &flat).map_err(|e| PluginError::internal(format!("{e:#}")))?;
        self.plan.run(tvec!(input.into_tvalue())).map_err(|e| PluginError::internal(format!("the ONNX model failed: {e:#}")))
    }
}

fn as_f64(t: &Tensor) -> Result<Vec<f64>> {
    let t = t.cast_to::<f64>().map_err(|e| PluginError::internal(format!("reading an output: {e:#}")))?;
    Ok(t.try_as_plain_ram()
        .map_err(|e| PluginError::internal(format!("{e:#}")))?
        .as_slice::<f64>()
        .map_err(|e| PluginError::internal(format!("{e:#}")))?
        .to_vec())
}

impl Model for OnnxModel {
    fn predict(&self, features: Table) -> Result<Table> {
        let columns = features.numeric_columns()?;
        if columns.len() != self.features {
            return Err(PluginError::invalid_input(format!("the model takes {} columns, the request has {}", self.features, columns.len())));
        }
        let rows = features.rows;
        let mut out = Vec::new();
        match (self.label, self.value) {
            (Some(l), _) => match self.probabilities {
                Some(_) => {
                    let probs = self.probabilities_of(&columns, rows)?;
                    let per_row = probs.len().checked_div(rows).unwrap_or(0);
                    // skl2onnx lists the labels; an MLP's exporter may not.
                    let labels: Vec<f64> =
                        if self.classes.len() == per_row { self.classes.clone() } else { (0..per_row).map(|c| c as f64).collect() };
                    // The label is the most probable class, first on ties, as
                    // scikit-learn's predict takes it. Not tract's label
                    // output: tract 0.23.10 gives 0 for every row of a
                    // TreeEnsembleClassifier whose probabilities are right.
                    let predicted = (0..rows)
                        .map(|r| {
                            let row = &probs[r * per_row..(r + 1) * per_row];
                            let best = (0..per_row).fold(0, |b, k| if row[k] > row[b] { k } else { b });
                            labels.get(best).copied().unwrap_or(f64::NAN)
                        })
                        .collect();
                    out.push(Column::numeric("prediction", predicted));
                    for (k, class) in labels.iter().enumerate() {
                        out.push(Column::numeric(format!("proba:{class}"), (0..rows).map(|r| probs[r * per_row + k]).collect()));
                    }
                }
                None => out.push(Column::numeric("prediction", as_f64(&self.run(&columns, rows)?[l])?)),
            },
            (None, Some(v)) => {
                let values = as_f64(&self.run(&columns, rows)?[v])?;
                if values.len() != rows {
                    return Err(PluginError::internal(format!("the model gave {} values for {rows} rows", values.len())));
                }
                out.push(Column::numeric("prediction", values));
            }
            (None, None) => unreachable!("from_bytes found an output"),
        }
        Table::new(out)
    }

    fn save(&self) -> Result<Vec<u8>> {
        Ok(self.bytes.clone())
    }
}

impl Trainer for Onnx {
    type Model = OnnxModel;

    fn describe() -> Description {
        Description {
            name: "onnx".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary:
                "Serves ONNX models (scikit-learn via skl2onnx: trees, linear models, MLPs) in the sandbox; import them with `kiln models import`"
                    .into(),
            params_schema: serde_json::json!({"type": "object", "additionalProperties": false, "properties": {}}),
        }
    }

    fn train(_: Table, _: Column, _: Params) -> Result<OnnxModel> {
        Err(PluginError::unsupported("the onnx plugin does not train: import a model with `kiln models import NAME model.onnx`"))
    }

    fn load(bytes: &[u8]) -> Result<OnnxModel> {
        OnnxModel::from_bytes(bytes)
    }
}

kiln_sdk::export_trainer!(Onnx);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_not_an_onnx_model_is_refused_with_the_reason() {
        let Err(e) = Onnx::load(b"not onnx at all") else { panic!("loaded garbage") };
        assert!(e.message.contains("not an ONNX model"), "{}", e.message);
        let Err(e) = Onnx::train(Table::new(vec![]).unwrap(), Column::numeric("y", vec![]), Params::from_json(serde_json::json!({}))) else {
            panic!()
        };
        assert!(e.message.contains("kiln models import"), "{}", e.message);
    }
}
