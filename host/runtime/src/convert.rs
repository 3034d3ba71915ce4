//! Between the WIT types and the host's plain types, checking every value
//! a plugin returns against the contract.

use super::PluginDescription;
use super::bindings::v0_1_0 as v1;
use super::error::RuntimeError;
use kiln_types::{Column, ColumnData, DriftReport, Evaluation, FeatureDrift, PluginKind, Table};
use v1::types as t;

pub fn table_to_wit(table: Table) -> t::Table {
    t::Table { rows: table.rows as u32, columns: table.columns.into_iter().map(column_to_wit).collect() }
}

pub fn column_to_wit(c: Column) -> t::Column {
    let data = match c.data {
        ColumnData::Numeric(v) => t::ColumnData::Numeric(v),
        ColumnData::Categorical(v) => t::ColumnData::Categorical(v),
    };
    t::Column { name: c.name, data }
}

fn table_from_wit(table: t::Table) -> Result<Table, RuntimeError> {
    let rows = table.rows as usize;
    let columns: Vec<Column> = table
        .columns
        .into_iter()
        .map(|c| {
            let data = match c.data {
                t::ColumnData::Numeric(v) => ColumnData::Numeric(v),
                t::ColumnData::Categorical(v) => ColumnData::Categorical(v),
            };
            Column { name: c.name, data }
        })
        .collect();
    for c in &columns {
        if c.data.len() != rows {
            return Err(RuntimeError::BadOutput(format!("column `{}` has {} values but the table says {rows} rows", c.name, c.data.len())));
        }
    }
    Ok(Table { rows, columns })
}

pub fn plugin_error(e: t::PluginError) -> RuntimeError {
    let code = match e.code {
        t::ErrorCode::InvalidParams => "invalid params",
        t::ErrorCode::InvalidInput => "invalid input",
        t::ErrorCode::Unsupported => "unsupported",
        t::ErrorCode::Internal => "plugin error",
    };
    RuntimeError::Plugin { code: code.into(), message: e.message, field: e.field }
}

pub fn description(d: t::Description, exported: PluginKind) -> Result<PluginDescription, RuntimeError> {
    let kind = match d.kind {
        t::PluginKind::Trainer => PluginKind::Trainer,
        t::PluginKind::Evaluator => PluginKind::Evaluator,
        t::PluginKind::DriftDetector => PluginKind::DriftDetector,
        t::PluginKind::Deployer => PluginKind::Deployer,
    };
    if kind != exported {
        return Err(RuntimeError::BadOutput(format!("describe says {kind:?} but the component exports a {exported:?}")));
    }
    let valid_name =
        !d.name.is_empty() && d.name.len() <= 64 && d.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid_name {
        return Err(RuntimeError::BadOutput(format!("describe returned the name `{}`; a name is 1 to 64 of a-z, 0-9, - and _", d.name)));
    }
    if semver_like(&d.version).is_none() {
        return Err(RuntimeError::BadOutput(format!("describe returned the version `{}`, which is not MAJOR.MINOR.PATCH", d.version)));
    }
    let schema: serde_json::Value =
        serde_json::from_str(&d.params_schema).map_err(|e| RuntimeError::BadOutput(format!("the params schema is not JSON: {e}")))?;
    jsonschema::validator_for(&schema).map_err(|e| RuntimeError::BadOutput(format!("the params schema is not a valid JSON Schema: {e}")))?;
    Ok(PluginDescription { name: d.name, version: d.version, kind, summary: d.summary, params_schema: schema })
}

fn semver_like(v: &str) -> Option<()> {
    let core = v.split(['-', '+']).next()?;
    let parts: Vec<&str> = core.split('.').collect();
    (parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))).then_some(())
}

/// Predictions must have a numeric `prediction` column and one row per input row.
pub fn predictions(table: t::Table, expected_rows: usize) -> Result<Table, RuntimeError> {
    let table = table_from_wit(table)?;
    if table.rows != expected_rows {
        return Err(RuntimeError::BadOutput(format!("{} predictions for {expected_rows} input rows", table.rows)));
    }
    match table.column("prediction").map(|c| &c.data) {
        Some(ColumnData::Numeric(_)) => Ok(table),
        Some(_) => Err(RuntimeError::BadOutput("the `prediction` column is not numeric".into())),
        None => Err(RuntimeError::BadOutput("predictions have no `prediction` column".into())),
    }
}

pub fn evaluation(e: v1::evaluator::exports::kiln::plugin::evaluator::Evaluation) -> Result<Evaluation, RuntimeError> {
    let mut metrics = Vec::with_capacity(e.metrics.len());
    for m in e.metrics {
        if m.name.is_empty() || m.name.len() > 250 {
            return Err(RuntimeError::BadOutput(format!("metric name `{}` is empty or too long", m.name)));
        }
        if metrics.iter().any(|(n, _): &(String, f64)| *n == m.name) {
            return Err(RuntimeError::BadOutput(format!("metric `{}` is reported twice", m.name)));
        }
        metrics.push((m.name, m.value));
    }
    let report = if e.report.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&e.report).map_err(|err| RuntimeError::BadOutput(format!("the evaluation report is not JSON: {err}")))?
    };
    Ok(Evaluation { metrics, report })
}

pub fn drift_report(r: v1::drift_detector::exports::kiln::plugin::drift_detector::DriftReport) -> Result<DriftReport, RuntimeError> {
    if !(0.0..=1.0).contains(&r.drift_share) {
        return Err(RuntimeError::BadOutput(format!("drift share {} is outside [0, 1]", r.drift_share)));
    }
    let mut features = Vec::with_capacity(r.features.len());
    for f in r.features {
        if let Some(p) = f.p_value
            && !(0.0..=1.0).contains(&p)
        {
            return Err(RuntimeError::BadOutput(format!("p-value {p} of `{}` is outside [0, 1]", f.feature)));
        }
        features.push(FeatureDrift { feature: f.feature, statistic: f.statistic, p_value: f.p_value, drifted: f.drifted });
    }
    Ok(DriftReport { features, drift_share: r.drift_share, dataset_drift: r.dataset_drift })
}
