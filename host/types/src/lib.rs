//! `kiln-types`: the plain types the host and plugins share — the data
//! that crosses the plugin boundary (a columnar [`Table`]), what plugins
//! return ([`Evaluation`], [`DriftReport`]), their errors and kinds.
//!
//! Also the run search language (`filter`: its syntax tree, which the
//! store turns into SQL, and its parser) and the name rules the store
//! and the services share (`names`).
//!
//! No Wasm, no I/O, no database: the host's crates and the plugin SDK both
//! depend on it, so each of these has one definition.
#![deny(missing_docs)]

pub mod expr;
pub mod filter;
pub mod names;
pub mod records;
pub mod size;
pub mod status;
mod table;

pub use table::{Column, ColumnData, Table, training_target};

/// The result type of operations that fail with a [`PluginError`].
pub type Result<T> = std::result::Result<T, PluginError>;

/// What kind of plugin a component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// Trains models and predicts with them.
    Trainer,
    /// Scores predictions against actual values.
    Evaluator,
    /// Compares a current sample with a reference.
    DriftDetector,
    /// Turns a model version into a deployment.
    Deployer,
}

/// Why a plugin call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The params are wrong.
    InvalidParams,
    /// The data cannot be used.
    InvalidInput,
    /// Valid, but not supported by this plugin.
    Unsupported,
    /// Anything else.
    Internal,
}

/// An error a plugin returns to the host.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginError {
    /// The class of error.
    pub code: ErrorCode,
    /// A message for the user.
    pub message: String,
    /// The param or column the error is about.
    pub field: Option<String>,
}

impl PluginError {
    /// An error in the params, naming the offending field.
    pub fn invalid_params(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: ErrorCode::InvalidParams, message: message.into(), field: Some(field.into()) }
    }
    /// An error in the input data.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self { code: ErrorCode::InvalidInput, message: message.into(), field: None }
    }
    /// An error about one column of the input data.
    pub fn invalid_column(column: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: ErrorCode::InvalidInput, message: message.into(), field: Some(column.into()) }
    }
    /// Something this plugin does not do.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self { code: ErrorCode::Unsupported, message: message.into(), field: None }
    }
    /// Any other failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self { code: ErrorCode::Internal, message: message.into(), field: None }
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{:?} ({field}): {}", self.code, self.message),
            None => write!(f, "{:?}: {}", self.code, self.message),
        }
    }
}

impl std::error::Error for PluginError {}

impl PluginKind {
    /// The WIT name of the kind (`drift-detector`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Trainer => "trainer",
            PluginKind::Evaluator => "evaluator",
            PluginKind::DriftDetector => "drift-detector",
            PluginKind::Deployer => "deployer",
        }
    }
}

impl std::str::FromStr for PluginKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "trainer" => Ok(PluginKind::Trainer),
            "evaluator" => Ok(PluginKind::Evaluator),
            "drift-detector" => Ok(PluginKind::DriftDetector),
            "deployer" => Ok(PluginKind::Deployer),
            other => Err(format!("unknown plugin kind `{other}`")),
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Scalar metrics and a JSON report of an evaluation.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    /// Named scalar metrics.
    pub metrics: Vec<(String, f64)>,
    /// Anything that is not a scalar, e.g. a confusion matrix.
    pub report: serde_json::Value,
}

/// Drift of one feature.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureDrift {
    /// Column name.
    pub feature: String,
    /// The test statistic.
    pub statistic: f64,
    /// The p-value, where the test defines one.
    pub p_value: Option<f64>,
    /// Whether this feature is judged drifted.
    pub drifted: bool,
}

/// The outcome of a drift check.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftReport {
    /// One entry per feature tested.
    pub features: Vec<FeatureDrift>,
    /// Drifted features / features tested.
    pub drift_share: f64,
    /// Whether the dataset as a whole is judged drifted.
    pub dataset_drift: bool,
}
