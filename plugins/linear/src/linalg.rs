//! The little dense linear algebra the linear models need.

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Solve `A x = b` for symmetric positive definite `A` (row-major, n × n) by
/// Cholesky. A tiny ridge is added on failure so a singular system (a
/// duplicated feature) still yields the minimum-norm-ish solution.
pub fn solve_spd(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut jitter = 0.0;
    loop {
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
            return x;
        }
        let scale = (0..n).map(|i| a[i * n + i].abs()).fold(0.0, f64::max).max(1.0);
        jitter = if jitter == 0.0 { 1e-10 * scale } else { jitter * 10.0 };
    }
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
