//! One decision tree grown on binned features.

use crate::binning::{Bins, MISSING};
use rand::{SeedableRng, rngs::SmallRng, seq::index::sample};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy)]
pub enum Task {
    Classification { classes: usize },
    Regression,
}

pub struct TreeParams {
    pub max_depth: usize,
    pub min_samples_leaf: usize,
    pub max_features: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tree {
    nodes: Vec<Node>,
    /// Leaf values, `width` per leaf: class probabilities or the mean.
    values: Vec<f64>,
    width: usize,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum Node {
    /// Rows with `x[feature] <= threshold` (or missing) go left.
    Split {
        feature: u32,
        threshold: f64,
        left: u32,
        right: u32,
    },
    Leaf {
        value: u32,
    },
}

/// Weighted impurity × weight of a set of rows, from its total weight and
/// sums (class weights, or [Σw·y, Σw·y²] for regression): Gini for
/// classes, the sum of squared errors for regression.
fn cost(task: Task, weight: f64, sums: impl Iterator<Item = f64>) -> f64 {
    if weight <= 0.0 {
        return 0.0;
    }
    match task {
        Task::Classification { .. } => weight - sums.map(|s| s * s).sum::<f64>() / weight,
        Task::Regression => {
            let mut it = sums;
            let (sy, syy) = (it.next().unwrap_or(0.0), it.next().unwrap_or(0.0));
            syy - sy * sy / weight
        }
    }
}

impl Tree {
    pub fn grow(binned: &[Vec<u8>], bins: &Bins, y: &[f64], weights: &[u32], task: Task, p: &TreeParams, seed: u64) -> Tree {
        let mut rng = SmallRng::seed_from_u64(seed);
        let width = match task {
            Task::Classification { classes } => classes,
            Task::Regression => 2,
        };
        let mut rows: Vec<u32> = (0..y.len() as u32).filter(|&r| weights[r as usize] > 0).collect();
        let mut tree = Tree { nodes: Vec::new(), values: Vec::new(), width: if matches!(task, Task::Regression) { 1 } else { width } };
        tree.nodes.push(Node::Leaf { value: 0 });
        // (node index, row range, depth)
        let mut stack = vec![(0usize, 0usize, rows.len(), 0usize)];
        let d = binned.len();
        // Flat per-bin histograms, allocated once per tree: the split search
        // is the hot loop and must not allocate.
        let mut hist_w = vec![0f64; 256];
        let mut hist_n = vec![0usize; 256];
        let mut hist_s = vec![0f64; 256 * width];
        let mut total_s = vec![0f64; width];
        let mut left_s = vec![0f64; width];
        let add = |sums: &mut [f64], y: f64, w: f64| match task {
            Task::Classification { .. } => sums[y as usize] += w,
            Task::Regression => {
                sums[0] += w * y;
                sums[1] += w * y * y;
            }
        };
        while let Some((node, lo, hi, depth)) = stack.pop() {
            total_s.iter_mut().for_each(|s| *s = 0.0);
            let mut total_w = 0.0;
            for &r in &rows[lo..hi] {
                let w = weights[r as usize] as f64;
                total_w += w;
                add(&mut total_s, y[r as usize], w);
            }
            let total_n = hi - lo;
            let parent_cost = cost(task, total_w, total_s.iter().copied());
            let can_split = depth < p.max_depth && total_n >= 2 * p.min_samples_leaf && parent_cost > 1e-12;
            let mut best: Option<(f64, usize, u8)> = None;
            if can_split {
                for f in sample(&mut rng, d, p.max_features.min(d)) {
                    let col = &binned[f];
                    hist_w.iter_mut().for_each(|v| *v = 0.0);
                    hist_n.iter_mut().for_each(|v| *v = 0);
                    hist_s.iter_mut().for_each(|v| *v = 0.0);
                    let mut max_bin = 0u8;
                    for &r in &rows[lo..hi] {
                        let b = col[r as usize];
                        let w = weights[r as usize] as f64;
                        max_bin = max_bin.max(b);
                        hist_w[b as usize] += w;
                        hist_n[b as usize] += 1;
                        add(&mut hist_s[b as usize * width..(b as usize + 1) * width], y[r as usize], w);
                    }
                    let (mut left_w, mut left_n) = (0.0, 0usize);
                    left_s.iter_mut().for_each(|v| *v = 0.0);
                    for b in 0..max_bin as usize {
                        if hist_n[b] == 0 {
                            continue;
                        }
                        left_w += hist_w[b];
                        left_n += hist_n[b];
                        left_s.iter_mut().zip(&hist_s[b * width..(b + 1) * width]).for_each(|(a, s)| *a += s);
                        if left_n < p.min_samples_leaf || total_n - left_n < p.min_samples_leaf {
                            continue;
                        }
                        let right = total_s.iter().zip(&left_s).map(|(t, l)| t - l);
                        let gain = parent_cost - cost(task, left_w, left_s.iter().copied()) - cost(task, total_w - left_w, right);
                        if gain > 1e-12 && best.is_none_or(|(g, _, _)| gain > g) {
                            best = Some((gain, f, b as u8));
                        }
                    }
                }
            }
            match best {
                Some((_, f, b)) => {
                    let col = &binned[f];
                    let slice = &mut rows[lo..hi];
                    let mut split = 0;
                    for i in 0..slice.len() {
                        if col[slice[i] as usize] <= b {
                            slice.swap(i, split);
                            split += 1;
                        }
                    }
                    let threshold = if b == MISSING { f64::NEG_INFINITY } else { bins.edges[f][b as usize - 1] };
                    let left = tree.nodes.len();
                    tree.nodes.push(Node::Leaf { value: 0 });
                    tree.nodes.push(Node::Leaf { value: 0 });
                    tree.nodes[node] = Node::Split { feature: f as u32, threshold, left: left as u32, right: left as u32 + 1 };
                    stack.push((left + 1, lo + split, hi, depth + 1));
                    stack.push((left, lo, lo + split, depth + 1));
                }
                None => {
                    let value = (tree.values.len() / tree.width) as u32;
                    match task {
                        Task::Classification { .. } => tree.values.extend(total_s.iter().map(|s| s / total_w)),
                        Task::Regression => tree.values.push(total_s[0] / total_w),
                    }
                    tree.nodes[node] = Node::Leaf { value };
                }
            }
        }
        tree
    }

    /// The leaf values for one row of raw feature values.
    pub fn leaf(&self, row: &[f64]) -> &[f64] {
        let mut i = 0;
        loop {
            match self.nodes[i] {
                Node::Split { feature, threshold, left, right } => {
                    let v = row[feature as usize];
                    i = if v.is_nan() || v <= threshold { left as usize } else { right as usize };
                }
                Node::Leaf { value } => {
                    let start = value as usize * self.width;
                    return &self.values[start..start + self.width];
                }
            }
        }
    }

    #[cfg(test)]
    pub fn depth(&self) -> usize {
        fn walk(t: &Tree, i: usize) -> usize {
            match t.nodes[i] {
                Node::Split { left, right, .. } => 1 + walk(t, left as usize).max(walk(t, right as usize)),
                Node::Leaf { .. } => 0,
            }
        }
        walk(self, 0)
    }
}
