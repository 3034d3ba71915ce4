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
pub mod testing;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod wit;

pub use host_calls::{LogLevel, log, progress, report_metric};
pub use params::Params;
// The data and errors that cross the boundary are the host's types too:
// one definition, in kiln-types.
pub use kiln_types::{Column, ColumnData, DriftReport, ErrorCode, Evaluation, FeatureDrift, PluginError, PluginKind, Table, training_target};

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

/// A plugin that scores predictions.
pub trait Evaluator {
    /// Name, version, summary and params schema.
    fn describe() -> Description;
    /// Score `predictions` (as a trainer's model produced them) against `actual`.
    fn evaluate(actual: Column, predictions: Table, params: Params) -> Result<Evaluation>;
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
// rustfmt is not stable on these bodies (their indentation flips on
// every run), so they keep the layout written here.
#[rustfmt::skip]
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
// rustfmt is not stable on these bodies (their indentation flips on
// every run), so they keep the layout written here.
#[rustfmt::skip]
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
// rustfmt is not stable on these bodies (their indentation flips on
// every run), so they keep the layout written here.
#[rustfmt::skip]
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
// rustfmt is not stable on these bodies (their indentation flips on
// every run), so they keep the layout written here.
#[rustfmt::skip]
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
