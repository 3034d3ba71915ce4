//! Least squares and ridge on standardised features.

use crate::{Fit, linalg};

/// Minimise ‖y − Xw − b‖² + α‖w‖². With X centred (standardised), the
/// intercept is the mean of y and the weights solve (XᵀX + αI) w = Xᵀ(y − ȳ).
pub fn fit(x: &[Vec<f64>], y: &[f64], alpha: f64) -> Fit {
    let d = x.first().map_or(0, Vec::len);
    let n = y.len() as f64;
    let mean_y = y.iter().sum::<f64>() / n;
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
    for i in 0..d {
        for j in 0..i {
            xtx[j * d + i] = xtx[i * d + j];
        }
        xtx[i * d + i] += alpha;
    }
    let weights = linalg::solve_spd(&xtx, &xty, d);
    Fit::Regression { weights, intercept: mean_y }
}
