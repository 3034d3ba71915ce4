//! Least squares and ridge on standardised features.

use crate::{Fit, linalg};
use kiln_sdk::{PluginError, Result};

/// Minimise ‖y − Xw − b‖² + α‖w‖². With X centred (standardised), the
/// intercept is the mean of y and the weights solve (XᵀX + αI) w = Xᵀ(y − ȳ).
///
/// `target` names the target column in errors. Any finite α ≥ 0 works (a
/// huge α just shrinks the weights to zero); a target whose values are too
/// large for Xᵀ(y − ȳ) or the weights to be finite is an error, not a NaN
/// or infinite model.
pub fn fit(x: &[Vec<f64>], y: &[f64], alpha: f64, target: &str) -> Result<Fit> {
    if !(alpha.is_finite() && alpha >= 0.0) {
        return Err(PluginError::invalid_params("alpha", format!("`alpha` must be a finite number >= 0, got {alpha}")));
    }
    let d = x.first().map_or(0, Vec::len);
    let n = y.len() as f64;
    let mut mean_y = y.iter().sum::<f64>() / n;
    if !mean_y.is_finite() {
        // The sum of finite values overflowed; the mean itself cannot.
        mean_y = y.iter().map(|v| v / n).sum::<f64>();
    }
    let mut xtx = vec![0.0; d * d];
    let mut xty = vec![0.0; d];
    for (row, yi) in x.iter().zip(y) {
        for i in 0..d {
            xty[i] += row[i] * (yi - mean_y);
            for j in 0..=i {
                xtx[i * d + j] += row[i] * row[j];
            }
        }
    }
    if !mean_y.is_finite() || !xty.iter().all(|v| v.is_finite()) {
        return Err(PluginError::invalid_column(
            target,
            format!("target `{target}` has values too large in magnitude for least squares (its spread overflows a double); rescale it"),
        ));
    }
    for i in 0..d {
        for j in 0..i {
            xtx[j * d + i] = xtx[i * d + j];
        }
        xtx[i * d + i] += alpha;
    }
    let weights = linalg::solve_spd(&xtx, &xty, d).map_err(|e| {
        let message = format!("least squares with alpha = {alpha} on target `{target}` has no finite solution: {e}");
        if alpha > 0.0 { PluginError::invalid_params("alpha", message) } else { PluginError::invalid_input(message) }
    })?;
    Ok(Fit::Regression { weights, intercept: mean_y })
}
