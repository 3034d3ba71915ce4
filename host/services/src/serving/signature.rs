//! A model's signature: the input columns it was trained on, in order,
//! with their kinds. Kept with the version (`model_versions.signature`)
//! so a served model can refuse a request with the wrong columns by name
//! before the sandbox sees it.

use crate::dataset::{Column, ColumnData, Table};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Numbers (MLflow's `double`).
    Double,
    /// Categories (MLflow's `string`).
    String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Kind,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    /// Empty: unknown (a model trained before signatures were kept), and
    /// any columns go to the plugin.
    #[serde(default)]
    pub inputs: Vec<Input>,
    /// The target column it was trained to predict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Where the training data came from (`dataset NAME@VERSION` or a path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trained_on: Option<String>,
}

impl Signature {
    /// The signature of a model trained on `features`.
    pub fn of(features: &Table, target: Option<&Column>, trained_on: Option<String>) -> Self {
        let inputs = features
            .columns
            .iter()
            .map(|c| Input {
                name: c.name.clone(),
                kind: match c.data {
                    ColumnData::Numeric(_) => Kind::Double,
                    ColumnData::Categorical(_) => Kind::String,
                },
            })
            .collect();
        Signature { inputs, target: target.map(|t| t.name.clone()), trained_on }
    }

    /// Parse what a version keeps (`{}` for none).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Signature::default());
        }
        serde_json::from_str(text).map_err(|e| format!("the model's signature is not readable: {e}"))
    }

    pub fn kind_of(&self, column: &str) -> Option<Kind> {
        self.inputs.iter().find(|i| i.name == column).map(|i| i.kind)
    }
}
