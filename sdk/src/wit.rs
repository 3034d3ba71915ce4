//! The generated `kiln:plugin@0.1.0` bindings and their conversions to the
//! SDK's plain types. Only compiled for Wasm.
//!
//! Each world gets its own bindings module so a plugin exports exactly one
//! kind; `types` and `host` are generated once (in `trainer_world`) and
//! shared. With `pub_export_macro` the custom sections emitted here describe
//! imports only; each export macro adds its world's exports in the plugin.

use crate::{
    Column, ColumnData, DeployOutcome, DeployRequest, Description, DriftReport, ErrorCode, Evaluation, LogLevel, PluginError, PluginKind, Table,
};

pub mod trainer_world {
    wit_bindgen::generate!({
        path: "../wit/v0.1.0",
        world: "trainer-plugin",
        pub_export_macro: true,
        export_macro_name: "export_trainer_world",
        default_bindings_module: "kiln_sdk::wit::trainer_world",
        runtime_path: "kiln_sdk::__private::wit_bindgen::rt",
    });
}

pub mod evaluator_world {
    wit_bindgen::generate!({
        path: "../wit/v0.1.0",
        world: "evaluator-plugin",
        pub_export_macro: true,
        export_macro_name: "export_evaluator_world",
        default_bindings_module: "kiln_sdk::wit::evaluator_world",
        runtime_path: "kiln_sdk::__private::wit_bindgen::rt",
        with: {
            "kiln:plugin/types@0.1.0": crate::wit::trainer_world::kiln::plugin::types,
            "kiln:plugin/host@0.1.0": crate::wit::trainer_world::kiln::plugin::host,
        },
    });
}

pub mod drift_detector_world {
    wit_bindgen::generate!({
        path: "../wit/v0.1.0",
        world: "drift-detector-plugin",
        pub_export_macro: true,
        export_macro_name: "export_drift_detector_world",
        default_bindings_module: "kiln_sdk::wit::drift_detector_world",
        runtime_path: "kiln_sdk::__private::wit_bindgen::rt",
        with: {
            "kiln:plugin/types@0.1.0": crate::wit::trainer_world::kiln::plugin::types,
            "kiln:plugin/host@0.1.0": crate::wit::trainer_world::kiln::plugin::host,
        },
    });
}

pub mod deployer_world {
    wit_bindgen::generate!({
        path: "../wit/v0.1.0",
        world: "deployer-plugin",
        pub_export_macro: true,
        export_macro_name: "export_deployer_world",
        default_bindings_module: "kiln_sdk::wit::deployer_world",
        runtime_path: "kiln_sdk::__private::wit_bindgen::rt",
        with: {
            "kiln:plugin/types@0.1.0": crate::wit::trainer_world::kiln::plugin::types,
            "kiln:plugin/host@0.1.0": crate::wit::trainer_world::kiln::plugin::host,
        },
    });
}

use trainer_world::kiln::plugin::host as h;
use trainer_world::kiln::plugin::types as t;

pub(crate) fn host_log(level: LogLevel, message: &str) {
    let level = match level {
        LogLevel::Trace => h::LogLevel::Trace,
        LogLevel::Debug => h::LogLevel::Debug,
        LogLevel::Info => h::LogLevel::Info,
        LogLevel::Warn => h::LogLevel::Warn,
        LogLevel::Error => h::LogLevel::Error,
    };
    h::log(level, message);
}

pub(crate) fn host_progress(done: u64, total: u64, message: &str) {
    h::progress(done, total, message);
}

pub(crate) fn host_report_metric(name: &str, value: f64, step: u64) {
    h::report_metric(name, value, step);
}

/// Used by the export macros.
pub fn describe(d: Description, kind: PluginKind) -> t::Description {
    t::Description {
        name: d.name,
        version: d.version,
        kind: match kind {
            PluginKind::Trainer => t::PluginKind::Trainer,
            PluginKind::Evaluator => t::PluginKind::Evaluator,
            PluginKind::DriftDetector => t::PluginKind::DriftDetector,
            PluginKind::Deployer => t::PluginKind::Deployer,
        },
        summary: d.summary,
        params_schema: d.params_schema.to_string(),
    }
}

impl From<t::Column> for Column {
    fn from(c: t::Column) -> Self {
        let data = match c.data {
            t::ColumnData::Numeric(v) => ColumnData::Numeric(v),
            t::ColumnData::Categorical(v) => ColumnData::Categorical(v),
        };
        Column { name: c.name, data }
    }
}

impl From<Column> for t::Column {
    fn from(c: Column) -> Self {
        let data = match c.data {
            ColumnData::Numeric(v) => t::ColumnData::Numeric(v),
            ColumnData::Categorical(v) => t::ColumnData::Categorical(v),
        };
        t::Column { name: c.name, data }
    }
}

impl From<t::Table> for Table {
    fn from(t: t::Table) -> Self {
        Table { rows: t.rows as usize, columns: t.columns.into_iter().map(Into::into).collect() }
    }
}

impl From<Table> for t::Table {
    fn from(t: Table) -> Self {
        t::Table { rows: t.rows as u32, columns: t.columns.into_iter().map(Into::into).collect() }
    }
}

impl From<PluginError> for t::PluginError {
    fn from(e: PluginError) -> Self {
        let code = match e.code {
            ErrorCode::InvalidParams => t::ErrorCode::InvalidParams,
            ErrorCode::InvalidInput => t::ErrorCode::InvalidInput,
            ErrorCode::Unsupported => t::ErrorCode::Unsupported,
            ErrorCode::Internal => t::ErrorCode::Internal,
        };
        t::PluginError { code, message: e.message, field: e.field }
    }
}

impl From<Evaluation> for evaluator_world::exports::kiln::plugin::evaluator::Evaluation {
    fn from(e: Evaluation) -> Self {
        Self { metrics: e.metrics.into_iter().map(|(name, value)| t::Metric { name, value }).collect(), report: e.report.to_string() }
    }
}

impl From<DriftReport> for drift_detector_world::exports::kiln::plugin::drift_detector::DriftReport {
    fn from(r: DriftReport) -> Self {
        use drift_detector_world::exports::kiln::plugin::drift_detector::FeatureDrift;
        Self {
            features: r
                .features
                .into_iter()
                .map(|f| FeatureDrift { feature: f.feature, statistic: f.statistic, p_value: f.p_value, drifted: f.drifted })
                .collect(),
            drift_share: r.drift_share,
            dataset_drift: r.dataset_drift,
        }
    }
}

impl From<deployer_world::exports::kiln::plugin::deployer::DeployRequest> for DeployRequest {
    fn from(r: deployer_world::exports::kiln::plugin::deployer::DeployRequest) -> Self {
        DeployRequest {
            deployment: r.deployment,
            model_name: r.model_name,
            model_version: r.model_version,
            model_digest: r.model_digest,
            traffic_percent: r.traffic_percent,
        }
    }
}

impl From<DeployOutcome> for deployer_world::exports::kiln::plugin::deployer::DeployOutcome {
    fn from(o: DeployOutcome) -> Self {
        Self { status: o.status, endpoint: o.endpoint, manifest: o.manifest }
    }
}
