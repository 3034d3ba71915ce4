//! The little dense linear algebra the linear models need.

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// How many times [`solve_spd`] retries Cholesky with a larger ridge. The
/// ridge starts at 1e-10 × the largest diagonal entry and grows tenfold per
/// retry, so the last retry adds 1e5 × that entry: any symmetric positive
/// semi-definite matrix is definite long before.
const MAX_JITTER_RETRIES: usize = 16;

/// Why [`solve_spd`] found no solution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SolveError {
    /// `A` or `b` holds an infinite or NaN entry, or the solution overflowed.
    NonFinite,
    /// Cholesky still failed with the largest ridge tried: `A` is not
    /// positive semi-definite.
    NotPositiveDefinite,
}

impl std::fmt::Display for SolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SolveError::NonFinite => write!(f, "the linear system has a non-finite (infinite or NaN) entry or solution"),
            SolveError::NotPositiveDefinite => write!(f, "the linear system is not positive definite"),
        }
    }
}

/// Solve `A x = b` for symmetric positive definite `A` (row-major, n × n) by
/// Cholesky. A tiny ridge is added on failure so a singular system (a
/// duplicated feature) still yields the minimum-norm-ish solution.
///
/// Never loops unboundedly: a non-finite `A` or `b` is an error at once (no
/// ridge can make an infinite or NaN pivot positive and finite), and the
/// ridge is retried at most [`MAX_JITTER_RETRIES`] times.
pub fn solve_spd(a: &[f64], b: &[f64], n: usize) -> Result<Vec<f64>, SolveError> {
    debug_assert_eq!(a.len(), n * n);
    debug_assert_eq!(b.len(), n);
    if !a.iter().chain(b).all(|v| v.is_finite()) {
        return Err(SolveError::NonFinite);
    }
    let scale = (0..n).map(|i| a[i * n + i].abs()).fold(0.0, f64::max).max(1.0);
    let mut jitter = 0.0;
    for _ in 0..=MAX_JITTER_RETRIES {
        if let Some(l) = cholesky(a, n, jitter) {
            // Forward then backward substitution.
            let mut y = vec![0.0; n];
            for i in 0..n {
                let s: f64 = (0..i).map(|k| l[i * n + k] * y[k]).sum();
                y[i] = (b[i] - s) / l[i * n + i];
            }
            let mut x = vec![0.0; n];
            for i in (0..n).rev() {
                let s: f64 = (i + 1..n).map(|k| l[k * n + i] * x[k]).sum();
                x[i] = (y[i] - s) / l[i * n + i];
            }
            if !x.iter().all(|v| v.is_finite()) {
                return Err(SolveError::NonFinite);
            }
            return Ok(x);
        }
        jitter = if jitter == 0.0 { 1e-10 * scale } else { jitter * 10.0 };
        if !jitter.is_finite() {
            break;
        }
    }
    Err(SolveError::NotPositiveDefinite)
}

fn cholesky(a: &[f64], n: usize, jitter: f64) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
            if i == j {
                let d = a[i * n + i] + jitter - s;
                if d <= 0.0 || !d.is_finite() {
                    return None;
                }
                l[i * n + i] = d.sqrt();
            } else {
                l[i * n + j] = (a[i * n + j] - s) / l[j * n + j];
            }
        }
    }
    Some(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_a_small_spd_system() {
        // [[4, 2], [2, 3]] x = [2, 1] -> x = [0.5, 0]
        let x = solve_spd(&[4.0, 2.0, 2.0, 3.0], &[2.0, 1.0], 2).unwrap();
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12, "{x:?}");
    }

    #[test]
    fn singular_system_gets_a_ridge() {
        // A duplicated feature: [[1, 1], [1, 1]] is only semi-definite.
        let x = solve_spd(&[1.0, 1.0, 1.0, 1.0], &[2.0, 2.0], 2).unwrap();
        assert!(x.iter().all(|v| v.is_finite()));
        assert!((x[0] + x[1] - 2.0).abs() < 1e-6, "{x:?}");
    }

    #[test]
    fn infinite_matrix_is_an_error_not_a_loop() {
        // Before the fix: the ridge became inf, every pivot inf, retried forever.
        let inf = f64::INFINITY;
        assert_eq!(solve_spd(&[inf, 0.0, 0.0, inf], &[1.0, 1.0], 2), Err(SolveError::NonFinite));
        assert_eq!(solve_spd(&[1.0, inf, inf, 1.0], &[1.0, 1.0], 2), Err(SolveError::NonFinite));
    }

    #[test]
    fn nan_matrix_or_rhs_is_an_error_not_a_loop() {
        // Before the fix: a NaN pivot fails every retry, whatever the ridge.
        let nan = f64::NAN;
        assert_eq!(solve_spd(&[1.0, nan, nan, 1.0], &[1.0, 1.0], 2), Err(SolveError::NonFinite));
        assert_eq!(solve_spd(&[1.0, 0.0, 0.0, 1.0], &[nan, 1.0], 2), Err(SolveError::NonFinite));
    }

    #[test]
    fn indefinite_matrix_gives_up_after_bounded_retries() {
        // Off-diagonals far larger than the diagonal: indefinite, and no ridge
        // up to 1e5 × the diagonal makes it definite.
        let a = [1.0, 1e20, 1e20, 1.0];
        assert_eq!(solve_spd(&a, &[1.0, 1.0], 2), Err(SolveError::NotPositiveDefinite));
    }

    #[test]
    fn overflowing_solution_is_an_error() {
        let tiny = 1e-300;
        assert_eq!(solve_spd(&[tiny, 0.0, 0.0, 1.0], &[1e300, 1.0], 2), Err(SolveError::NonFinite));
    }
}
