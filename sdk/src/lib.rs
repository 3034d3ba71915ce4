//! `kiln-sdk`: write a Kiln plugin as plain Rust.
//!
//! A plugin is a type that implements one of [`Trainer`], [`Evaluator`],
//! [`DriftDetector`] or [`Deployer`], plus one export macro line:
//!
//! ```ignore
//! struct Mean;
//! impl kiln_sdk::Evaluator for Mean { /* describe, evaluate */ }
//! kiln_sdk::export_evaluator!(Mean);
//! ```
//!
//! Built for `wasm32-wasip2` the macro produces the component exports of the
//! `kiln:plugin@0.1.0` world for that kind. Built natively it produces
//! nothing, so the plugin's logic is unit-tested with plain `cargo test`;
//! [`testing`] captures what the plugin logs and reports.
#![deny(missing_docs)]

// The generated bindings name their runtime by the path plugins see.
extern crate self as kiln_sdk;

mod host_calls;
mod params;
mod table;
pub mod testing;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod wit;

pub use host_calls::{LogLevel, log, progress, report_metric};
pub use params::Params;
pub use table::{Column, ColumnData, Table, training_target};

/// Re-exports the export macros rely on; not part of the public API.
#[doc(hidden)]
pub mod __private {
    #[cfg(target_arch = "wasm32")]
    pub use wit_bindgen;
}

/// The version of the WIT package this SDK targets.
pub const WIT_VERSION: &str = "0.1.0";

/// The result type every plugin call returns.
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

/// What `describe` returns: shown by `kiln plugin inspect`, and the params
/// schema is enforced by the host before any call.
#[derive(Debug, Clone)]
pub struct Description {
    /// Plugin name, as pipelines refer to it.
    pub name: String,
    /// Semantic version of the plugin.
    pub version: String,
    /// One line saying what it does.
    pub summary: String,
    /// JSON Schema of the params object.
    pub params_schema: serde_json::Value,
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

/// A trained model owned by the plugin.
pub trait Model: 'static {
    /// Predict a batch: a numeric `prediction` column, and for classifiers a
    /// `proba:<label>` column per class.
    fn predict(&self, features: Table) -> Result<Table>;
    /// Serialise the model; the host stores the bytes and hands them to
    /// [`Trainer::load`] later.
    fn save(&self) -> Result<Vec<u8>>;
}

/// A plugin that trains models.
pub trait Trainer {
    /// The model type it trains.
    type Model: Model;
    /// Name, version, summary and params schema.
    fn describe() -> Description;
    /// Train on `features` to predict `target`.
    fn train(features: Table, target: Column, params: Params) -> Result<Self::Model>;
    /// Rebuild a model from bytes that [`Model::save`] produced.
    fn load(bytes: &[u8]) -> Result<Self::Model>;
}

/// Scalar metrics and a JSON report of an evaluation.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    /// Named scalar metrics.
    pub metrics: Vec<(String, f64)>,
    /// Anything that is not a scalar, e.g. a confusion matrix.
    pub report: serde_json::Value,
}

/// A plugin that scores predictions.
pub trait Evaluator {
    /// Name, version, summary and params schema.
    fn describe() -> Description;
    /// Score `predictions` (as a trainer's model produced them) against `actual`.
    fn evaluate(actual: Column, predictions: Table, params: Params) -> Result<Evaluation>;
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

/// A plugin that detects drift between two samples.
pub trait DriftDetector {
    /// Name, version, summary and params schema.
    fn describe() -> Description;
    /// Compare `current` with `reference`.
    fn detect(reference: Table, current: Table, params: Params) -> Result<DriftReport>;
}

/// What the host asks a deployer to deploy.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    /// Deployment name.
    pub deployment: String,
    /// Registered model name.
    pub model_name: String,
    /// Model version number.
    pub model_version: u32,
    /// `sha256:<hex>` of the model bytes.
    pub model_digest: String,
    /// Share of traffic, 0 to 100.
    pub traffic_percent: u8,
}

/// What a deployer produced.
#[derive(Debug, Clone)]
pub struct DeployOutcome {
    /// Short status word.
    pub status: String,
    /// Where the deployment answers, if known.
    pub endpoint: Option<String>,
    /// The manifest or plan for the target platform.
    pub manifest: String,
}

/// A plugin that deploys model versions to a platform.
pub trait Deployer {
    /// Name, version, summary and params schema.
    fn describe() -> Description;
    /// Produce a deployment for `request`.
    fn deploy(request: DeployRequest, params: Params) -> Result<DeployOutcome>;
}

/// Export a [`Trainer`] as the `kiln:plugin/trainer` component export.
#[macro_export]
macro_rules! export_trainer {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::wit::trainer_world::exports::kiln::plugin::trainer as w;
            use $crate::wit::trainer_world::kiln::plugin::types as t;
            struct KilnExport;
            struct KilnModel(<$plugin as $crate::Trainer>::Model);
            impl w::GuestModel for KilnModel {
                fn predict(&self, features: t::Table) -> ::core::result::Result<t::Table, t::PluginError> {
                    $crate::Model::predict(&self.0, features.into()).map(Into::into).map_err(Into::into)
                }
                fn save(&self) -> ::core::result::Result<::std::vec::Vec<u8>, t::PluginError> {
                    $crate::Model::save(&self.0).map_err(Into::into)
                }
            }
            impl w::Guest for KilnExport {
                type Model = KilnModel;
                fn describe() -> t::Description {
                    $crate::wit::describe(<$plugin as $crate::Trainer>::describe(), $crate::PluginKind::Trainer)
                }
                fn train(features: t::Table, target: t::Column, params: ::std::string::String) -> ::core::result::Result<w::Model, t::PluginError> {
                    let params = $crate::Params::parse(&params)?;
                    let model = <$plugin as $crate::Trainer>::train(features.into(), target.into(), params)?;
                    Ok(w::Model::new(KilnModel(model)))
                }
                fn load(bytes: ::std::vec::Vec<u8>) -> ::core::result::Result<w::Model, t::PluginError> {
                    let model = <$plugin as $crate::Trainer>::load(&bytes)?;
                    Ok(w::Model::new(KilnModel(model)))
                }
            }
            $crate::wit::trainer_world::export_trainer_world!(KilnExport with_types_in $crate::wit::trainer_world);
        };
    };
}

/// Export an [`Evaluator`] as the `kiln:plugin/evaluator` component export.
#[macro_export]
macro_rules! export_evaluator {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::wit::evaluator_world::exports::kiln::plugin::evaluator as w;
            use $crate::wit::trainer_world::kiln::plugin::types as t;
            struct KilnExport;
            impl w::Guest for KilnExport {
                fn describe() -> t::Description {
                    $crate::wit::describe(<$plugin as $crate::Evaluator>::describe(), $crate::PluginKind::Evaluator)
                }
                fn evaluate(actual: t::Column, predictions: t::Table, params: ::std::string::String) -> ::core::result::Result<w::Evaluation, t::PluginError> {
                    let params = $crate::Params::parse(&params)?;
                    <$plugin as $crate::Evaluator>::evaluate(actual.into(), predictions.into(), params)
                        .map(Into::into)
                        .map_err(Into::into)
                }
            }
            $crate::wit::evaluator_world::export_evaluator_world!(KilnExport with_types_in $crate::wit::evaluator_world);
        };
    };
}

/// Export a [`DriftDetector`] as the `kiln:plugin/drift-detector` component export.
#[macro_export]
macro_rules! export_drift_detector {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::wit::drift_detector_world::exports::kiln::plugin::drift_detector as w;
            use $crate::wit::trainer_world::kiln::plugin::types as t;
            struct KilnExport;
            impl w::Guest for KilnExport {
                fn describe() -> t::Description {
                    $crate::wit::describe(<$plugin as $crate::DriftDetector>::describe(), $crate::PluginKind::DriftDetector)
                }
                fn detect(reference: t::Table, current: t::Table, params: ::std::string::String) -> ::core::result::Result<w::DriftReport, t::PluginError> {
                    let params = $crate::Params::parse(&params)?;
                    <$plugin as $crate::DriftDetector>::detect(reference.into(), current.into(), params)
                        .map(Into::into)
                        .map_err(Into::into)
                }
            }
            $crate::wit::drift_detector_world::export_drift_detector_world!(KilnExport with_types_in $crate::wit::drift_detector_world);
        };
    };
}

/// Export a [`Deployer`] as the `kiln:plugin/deployer` component export.
#[macro_export]
macro_rules! export_deployer {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::wit::deployer_world::exports::kiln::plugin::deployer as w;
            use $crate::wit::trainer_world::kiln::plugin::types as t;
            struct KilnExport;
            impl w::Guest for KilnExport {
                fn describe() -> t::Description {
                    $crate::wit::describe(<$plugin as $crate::Deployer>::describe(), $crate::PluginKind::Deployer)
                }
                fn deploy(request: w::DeployRequest, params: ::std::string::String) -> ::core::result::Result<w::DeployOutcome, t::PluginError> {
                    let params = $crate::Params::parse(&params)?;
                    <$plugin as $crate::Deployer>::deploy(request.into(), params).map(Into::into).map_err(Into::into)
                }
            }
            $crate::wit::deployer_world::export_deployer_world!(KilnExport with_types_in $crate::wit::deployer_world);
        };
    };
}
