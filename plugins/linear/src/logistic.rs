//! Regularised logistic regression by Newton's method.

use crate::{Fit, linalg};
use kiln_sdk::{PluginError, Result};

/// Class probabilities of one standardised row. Two classes are stored as a
/// single sigmoid row (for the second class).
pub fn probabilities(row: &[f64], weights: &[Vec<f64>], intercepts: &[f64]) -> Vec<f64> {
    if weights.len() == 1 {
        let p = sigmoid(linalg::dot(row, &weights[0]) + intercepts[0]);
        return vec![1.0 - p, p];
    }
    let z: Vec<f64> = weights.iter().zip(intercepts).map(|(w, b)| linalg::dot(row, w) + b).collect();
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 { 1.0 / (1.0 + (-z).exp()) } else { let e = z.exp(); e / (1.0 + e) }
}

/// Minimise C · Σᵢ −log p(yᵢ | xᵢ) + ½ Σ_k ‖w_k‖² (intercepts unpenalised).
pub fn fit(x: &[Vec<f64>], y: &[f64], c: f64, max_iter: usize, tol: f64) -> Result<Fit> {
    let mut classes: Vec<f64> = y.to_vec();
    classes.sort_by(f64::total_cmp);
    classes.dedup();
    if classes.len() < 2 {
        return Err(PluginError::invalid_input(format!(
            "logistic regression needs at least two classes in the target, found {}",
            classes.len()
        )));
    }
    if classes.len() > 100 {
        return Err(PluginError::invalid_input(format!(
            "the target has {} distinct values: is this a regression target? use model = \"ols\" or \"ridge\"",
            classes.len()
        )));
    }
    let d = x.first().map_or(0, Vec::len);
    // Rows of the parameter matrix: one for binary, one per class otherwise.
    let k = if classes.len() == 2 { 1 } else { classes.len() };
    let labels: Vec<usize> = y.iter().map(|v| classes.iter().position(|c| c == v).unwrap()).collect();
    let p = k * (d + 1);
    let mut theta = vec![0.0; p];
    let mut loss = objective(x, &labels, &theta, k, d, c);
    for iter in 0..max_iter {
        let (grad, hess) = gradient_hessian(x, &labels, &theta, k, d, c);
        let step = linalg::solve_spd(&hess, &grad, p);
        let mut t = 1.0;
        let mut next;
        loop {
            next = theta.iter().zip(&step).map(|(a, s)| a - t * s).collect::<Vec<_>>();
            let l = objective(x, &labels, &next, k, d, c);
            if l <= loss || t < 1e-10 {
                let improvement = loss - l;
                theta = next;
                loss = l;
                kiln_sdk::report_metric("train_loss", loss / (c * y.len() as f64), iter as u64);
                if improvement.abs() <= tol * loss.abs().max(1.0) {
                    return Ok(unpack(&theta, k, d, classes));
                }
                break;
            }
            t *= 0.5;
        }
    }
    kiln_sdk::log(kiln_sdk::LogLevel::Warn, &format!("logistic regression stopped after max_iter = {max_iter} iterations"));
    Ok(unpack(&theta, k, d, classes))
}

fn unpack(theta: &[f64], k: usize, d: usize, classes: Vec<f64>) -> Fit {
    let weights = (0..k).map(|r| theta[r * (d + 1)..r * (d + 1) + d].to_vec()).collect();
    let intercepts = (0..k).map(|r| theta[r * (d + 1) + d]).collect();
    Fit::Classification { classes, weights, intercepts }
}

fn row_probs(row: &[f64], theta: &[f64], k: usize, d: usize) -> Vec<f64> {
    let weights: Vec<Vec<f64>> = (0..k).map(|r| theta[r * (d + 1)..r * (d + 1) + d].to_vec()).collect();
    let intercepts: Vec<f64> = (0..k).map(|r| theta[r * (d + 1) + d]).collect();
    probabilities(row, &weights, &intercepts)
}

fn objective(x: &[Vec<f64>], labels: &[usize], theta: &[f64], k: usize, d: usize, c: f64) -> f64 {
    let mut loss = 0.0;
    for (row, &l) in x.iter().zip(labels) {
        let p = row_probs(row, theta, k, d);
        loss -= p[l].max(1e-300).ln();
    }
    let penalty: f64 = (0..k).map(|r| theta[r * (d + 1)..r * (d + 1) + d].iter().map(|w| w * w).sum::<f64>()).sum();
    c * loss + 0.5 * penalty
}

fn gradient_hessian(x: &[Vec<f64>], labels: &[usize], theta: &[f64], k: usize, d: usize, c: f64) -> (Vec<f64>, Vec<f64>) {
    let p = k * (d + 1);
    let mut grad = vec![0.0; p];
    let mut hess = vec![0.0; p * p];
    let mut xa = vec![1.0; d + 1];
    for (row, &l) in x.iter().zip(labels) {
        xa[..d].copy_from_slice(row);
        let probs = row_probs(row, theta, k, d);
        // Binary: the single row models the second class.
        let q: Vec<f64> = if k == 1 { vec![probs[1]] } else { probs };
        for a in 0..k {
            let target = if k == 1 { (l == 1) as u8 as f64 } else { (l == a) as u8 as f64 };
            let r = c * (q[a] - target);
            for i in 0..=d {
                grad[a * (d + 1) + i] += r * xa[i];
            }
            for b in 0..k {
                let w = c * if a == b { q[a] * (1.0 - q[a]) } else { -q[a] * q[b] };
                if w == 0.0 {
                    continue;
                }
                for i in 0..=d {
                    let wi = w * xa[i];
                    let base = (a * (d + 1) + i) * p + b * (d + 1);
                    for j in 0..=d {
                        hess[base + j] += wi * xa[j];
                    }
                }
            }
        }
    }
    for a in 0..k {
        for i in 0..d {
            let idx = a * (d + 1) + i;
            grad[idx] += theta[idx];
            hess[idx * p + idx] += 1.0;
        }
        // The softmax is invariant to a shift of all intercepts: keep the
        // Hessian definite along that direction.
        let b = a * (d + 1) + d;
        hess[b * p + b] += 1e-8;
    }
    (grad, hess)
}
