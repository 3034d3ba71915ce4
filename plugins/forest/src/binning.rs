//! Quantile binning of numeric features (at most 255 value bins plus one
//! bin for missing values).

use serde::{Deserialize, Serialize};

pub const MISSING: u8 = 0;
const MAX_BINS: usize = 255;

/// Per feature, ascending upper edges: a value `v` falls in bin
/// `1 + (number of edges < v)`; bin 0 holds missing values.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bins {
    pub edges: Vec<Vec<f64>>,
}

impl Bins {
    pub fn fit(cols: &[&[f64]]) -> Self {
        let edges = cols
            .iter()
            .map(|c| {
                let mut v: Vec<f64> = c.iter().copied().filter(|x| !x.is_nan()).collect();
                v.sort_unstable_by(f64::total_cmp);
                v.dedup();
                if v.len() <= MAX_BINS {
                    // Exact: split halfway between consecutive distinct values.
                    v.windows(2).map(|w| w[0] + (w[1] - w[0]) / 2.0).collect()
                } else {
                    let mut e: Vec<f64> = (1..MAX_BINS)
                        .map(|q| {
                            let i = q * v.len() / MAX_BINS;
                            v[i - 1] + (v[i] - v[i - 1]) / 2.0
                        })
                        .collect();
                    e.dedup();
                    e
                }
            })
            .collect();
        Bins { edges }
    }

    /// Column-major bin indices.
    pub fn transform(&self, cols: &[&[f64]]) -> Vec<Vec<u8>> {
        cols.iter().zip(&self.edges).map(|(c, edges)| c.iter().map(|&v| bin_of(edges, v)).collect()).collect()
    }
}

pub fn bin_of(edges: &[f64], v: f64) -> u8 {
    if v.is_nan() {
        return MISSING;
    }
    (1 + edges.partition_point(|e| *e < v)) as u8
}
