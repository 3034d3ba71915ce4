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
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Backtracking halves the Newton step at most this many times (down to
/// t ≈ 1e-15); a step that still does not lower the objective means the fit
/// is at the objective's numerical floor.
const MAX_HALVINGS: usize = 50;

/// Minimise C · Σᵢ −log p(yᵢ | xᵢ) + ½ Σ_k ‖w_k‖² (intercepts unpenalised).
///
/// The objective is computed divided by max(C, 1), as a·L + b·½‖w‖² with
/// (a, b) = (C, 1) for C < 1 and (1, 1/C) for C ≥ 1. That is the same
/// minimiser, but no term grows with C, so every finite C > 0 (up to
/// f64::MAX, "no regularisation") keeps the gradient and Hessian finite on
/// standardised features. Unscaled, C · L overflowed to infinity once C was
/// large (C = 1e308), and the Cholesky of an infinite Hessian was retried
/// forever.
///
/// Every loop is bounded (`max_iter` Newton steps of at most
/// [`MAX_HALVINGS`] halvings each), and a non-finite gradient, Hessian or
/// Newton step is a typed error at once rather than a NaN model.
pub fn fit(x: &[Vec<f64>], y: &[f64], c: f64, max_iter: usize, tol: f64) -> Result<Fit> {
    if !(c.is_finite() && c > 0.0) {
        return Err(PluginError::invalid_params("c", format!("`c` must be a finite number > 0, got {c}")));
    }
    if !(tol.is_finite() && tol > 0.0) {
        return Err(PluginError::invalid_params("tol", format!("`tol` must be a finite number > 0, got {tol}")));
    }
    let mut classes: Vec<f64> = y.to_vec();
    classes.sort_by(f64::total_cmp);
    classes.dedup();
    if classes.len() < 2 {
        return Err(PluginError::invalid_input(format!("logistic regression needs at least two classes in the target, found {}", classes.len())));
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
    let scale = ObjectiveScale::for_c(c);
    let failed = |iter: usize, what: &str| {
        PluginError::invalid_params("c", format!("logistic regression with c = {c} failed at Newton iteration {}: {what}", iter + 1))
    };
    let mut theta = vec![0.0; p];
    let mut loss = objective(x, &labels, &theta, k, d, scale);
    if !loss.is_finite() {
        return Err(PluginError::invalid_input("logistic regression: the objective is not finite at zero weights (are the features finite?)"));
    }
    for iter in 0..max_iter {
        let (grad, hess) = gradient_hessian(x, &labels, &theta, k, d, scale);
        if !grad.iter().chain(&hess).all(|v| v.is_finite()) {
            return Err(failed(iter, "the gradient or Hessian is not finite"));
        }
        let step = linalg::solve_spd(&hess, &grad, p).map_err(|e| failed(iter, &e.to_string()))?;
        let mut accepted = None;
        let mut t = 1.0;
        for _ in 0..=MAX_HALVINGS {
            let next: Vec<f64> = theta.iter().zip(&step).map(|(a, s)| a - t * s).collect();
            let l = objective(x, &labels, &next, k, d, scale);
            if l.is_finite() && l <= loss && next.iter().all(|v| v.is_finite()) {
                accepted = Some((next, l));
                break;
            }
            t *= 0.5;
        }
        let Some((next, l)) = accepted else {
            // No step along a descent direction lowers the objective: it is
            // already as low as floating point can tell.
            kiln_sdk::log(kiln_sdk::LogLevel::Info, &format!("logistic regression converged to numerical precision after {iter} iterations"));
            return Ok(unpack(&theta, k, d, classes));
        };
        let improvement = loss - l;
        theta = next;
        loss = l;
        // Mean log-loss plus the penalty on the scale of C · Σ log-loss.
        let reported = loss / (scale.loss * y.len() as f64);
        if reported.is_finite() {
            kiln_sdk::report_metric("train_loss", reported, iter as u64);
        }
        if improvement <= tol * loss.abs().max(1.0) {
            return Ok(unpack(&theta, k, d, classes));
        }
    }
    kiln_sdk::log(kiln_sdk::LogLevel::Warn, &format!("logistic regression stopped after max_iter = {max_iter} iterations"));
    Ok(unpack(&theta, k, d, classes))
}

/// The coefficients of the scaled objective `loss · L + penalty · ½‖w‖²`.
#[derive(Debug, Clone, Copy)]
struct ObjectiveScale {
    loss: f64,
    penalty: f64,
}

impl ObjectiveScale {
    /// C · L + ½‖w‖², divided by max(C, 1). Both coefficients are in (0, 1]
    /// for every finite C > 0 (1 / f64::MAX is a positive subnormal).
    fn for_c(c: f64) -> Self {
        if c < 1.0 { ObjectiveScale { loss: c, penalty: 1.0 } } else { ObjectiveScale { loss: 1.0, penalty: 1.0 / c } }
    }
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

fn objective(x: &[Vec<f64>], labels: &[usize], theta: &[f64], k: usize, d: usize, scale: ObjectiveScale) -> f64 {
    let mut loss = 0.0;
    for (row, &l) in x.iter().zip(labels) {
        let p = row_probs(row, theta, k, d)[l];
        // `f64::max` would turn a NaN probability into 1e-300: keep it NaN so
        // the line search rejects the step.
        if p.is_nan() {
            return f64::NAN;
        }
        loss -= p.max(1e-300).ln();
    }
    let penalty: f64 = (0..k).map(|r| theta[r * (d + 1)..r * (d + 1) + d].iter().map(|w| w * w).sum::<f64>()).sum();
    scale.loss * loss + scale.penalty * 0.5 * penalty
}

fn gradient_hessian(x: &[Vec<f64>], labels: &[usize], theta: &[f64], k: usize, d: usize, scale: ObjectiveScale) -> (Vec<f64>, Vec<f64>) {
    let c = scale.loss;
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
            grad[idx] += scale.penalty * theta[idx];
            hess[idx * p + idx] += scale.penalty;
        }
        // The softmax is invariant to a shift of all intercepts: keep the
        // Hessian definite along that direction.
        let b = a * (d + 1) + d;
        hess[b * p + b] += 1e-8;
    }
    (grad, hess)
}
