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
    Split { feature: u32, threshold: f64, left: u32, right: u32 },
    Leaf { value: u32 },
}

/// Weighted sufficient statistics of a set of rows.
#[derive(Clone)]
struct Stats {
    weight: f64,
    count: usize,
    /// Class weights, or [Σw·y, Σw·y²] for regression.
    sums: Vec<f64>,
}

impl Stats {
    fn new(width: usize) -> Self {
        Stats { weight: 0.0, count: 0, sums: vec![0.0; width] }
    }
    fn add(&mut self, task: Task, y: f64, w: f64) {
        self.weight += w;
        self.count += 1;
        match task {
            Task::Classification { .. } => self.sums[y as usize] += w,
            Task::Regression => {
                self.sums[0] += w * y;
                self.sums[1] += w * y * y;
            }
        }
    }
    fn sub(&self, other: &Stats) -> Stats {
        Stats {
            weight: self.weight - other.weight,
            count: self.count - other.count,
            sums: self.sums.iter().zip(&other.sums).map(|(a, b)| a - b).collect(),
        }
    }
    /// Weighted impurity × weight (Gini for classes, SSE for regression).
    fn cost(&self, task: Task) -> f64 {
        if self.weight <= 0.0 {
            return 0.0;
        }
        match task {
            Task::Classification { .. } => self.weight - self.sums.iter().map(|s| s * s).sum::<f64>() / self.weight,
            Task::Regression => self.sums[1] - self.sums[0] * self.sums[0] / self.weight,
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
        let mut hist = vec![Stats::new(width); 256];
        while let Some((node, lo, hi, depth)) = stack.pop() {
            let mut total = Stats::new(width);
            for &r in &rows[lo..hi] {
                total.add(task, y[r as usize], weights[r as usize] as f64);
            }
            let parent_cost = total.cost(task);
            let can_split = depth < p.max_depth && total.count >= 2 * p.min_samples_leaf && parent_cost > 1e-12;
            let mut best: Option<(f64, usize, u8)> = None;
            if can_split {
                for f in sample(&mut rng, d, p.max_features.min(d)) {
                    let col = &binned[f];
                    hist.iter_mut().for_each(|h| {
                        h.weight = 0.0;
                        h.count = 0;
                        h.sums.iter_mut().for_each(|s| *s = 0.0);
                    });
                    let mut max_bin = 0u8;
                    for &r in &rows[lo..hi] {
                        let b = col[r as usize];
                        max_bin = max_bin.max(b);
                        hist[b as usize].add(task, y[r as usize], weights[r as usize] as f64);
                    }
                    let mut left = Stats::new(width);
                    for b in 0..max_bin {
                        let h = &hist[b as usize];
                        if h.count == 0 {
                            continue;
                        }
                        left.weight += h.weight;
                        left.count += h.count;
                        left.sums.iter_mut().zip(&h.sums).for_each(|(a, s)| *a += s);
                        let right = total.sub(&left);
                        if left.count < p.min_samples_leaf || right.count < p.min_samples_leaf {
                            continue;
                        }
                        let gain = parent_cost - left.cost(task) - right.cost(task);
                        if gain > 1e-12 && best.is_none_or(|(g, _, _)| gain > g) {
                            best = Some((gain, f, b));
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
                        Task::Classification { .. } => tree.values.extend(total.sums.iter().map(|s| s / total.weight)),
                        Task::Regression => tree.values.push(total.sums[0] / total.weight),
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
