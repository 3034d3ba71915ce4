//! A direct evaluator for a graph that is one `ai.onnx.ml`
//! TreeEnsembleClassifier (what skl2onnx makes of a random forest or
//! gradient-boosted trees). tract runs such a graph at ~0.7 ms a row for
//! 100 trees of depth 10 natively, and ten times that in Wasm; walking flat
//! node arrays takes a few microseconds. It is used only when it agrees
//! with tract on probe rows made from the model's own thresholds (see
//! `lib.rs`), so a configuration read differently here falls back to tract
//! rather than answering differently.

use std::collections::HashMap;
use tract_onnx::pb;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
    Leaf,
}

#[derive(Debug, Clone)]
struct Node {
    mode: Mode,
    feature: usize,
    threshold: f32,
    missing_goes_true: bool,
    /// Indexes into `Ensemble::nodes`.
    when_true: usize,
    when_false: usize,
    /// This leaf's (class, weight) pairs: `Ensemble::weights[start..end]`.
    weights: (usize, usize),
}

#[derive(Debug, Clone)]
pub struct Ensemble {
    nodes: Vec<Node>,
    roots: Vec<usize>,
    weights: Vec<(usize, f64)>,
    pub classes: usize,
    /// Scores start here (per class).
    base: Vec<f64>,
    /// Only one class carries weights and there are two labels: the other
    /// class's probability is one minus it (ONNX's binary layout).
    binary_complement: Option<usize>,
    pub features: usize,
}

fn attr<'a>(node: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn ints(node: &pb::NodeProto, name: &str) -> Result<Vec<i64>, String> {
    attr(node, name).map(|a| a.ints.clone()).ok_or_else(|| format!("TreeEnsembleClassifier has no `{name}`"))
}

fn floats(node: &pb::NodeProto, name: &str) -> Result<Vec<f32>, String> {
    attr(node, name).map(|a| a.floats.clone()).ok_or_else(|| format!("TreeEnsembleClassifier has no `{name}`"))
}

/// Operators that change nothing a prediction depends on.
const PASSTHROUGH: &[&str] = &["Identity", "Cast"];

impl Ensemble {
    /// The graph's ensemble, if the graph is one TreeEnsembleClassifier
    /// (with only casts and identities around it) this evaluator reads;
    /// `None` (use tract) for anything else.
    pub fn of(graph: &pb::GraphProto, features: usize) -> Option<Ensemble> {
        let mut trees = graph.node.iter().filter(|n| n.op_type == "TreeEnsembleClassifier");
        let node = trees.next()?;
        if trees.next().is_some() || graph.node.iter().any(|n| n.op_type != "TreeEnsembleClassifier" && !PASSTHROUGH.contains(&n.op_type.as_str())) {
            return None;
        }
        let post = attr(node, "post_transform").map(|a| String::from_utf8_lossy(&a.s).into_owned()).unwrap_or_else(|| "NONE".into());
        if post != "NONE" || attr(node, "nodes_values_as_tensor").is_some() || attr(node, "class_weights_as_tensor").is_some() {
            return None;
        }
        Ensemble::read(node, features).ok()
    }

    fn read(node: &pb::NodeProto, features: usize) -> Result<Ensemble, String> {
        let tree_ids = ints(node, "nodes_treeids")?;
        let node_ids = ints(node, "nodes_nodeids")?;
        let feature_ids = ints(node, "nodes_featureids")?;
        let values = floats(node, "nodes_values")?;
        let true_ids = ints(node, "nodes_truenodeids")?;
        let false_ids = ints(node, "nodes_falsenodeids")?;
        let modes = attr(node, "nodes_modes").map(|a| a.strings.clone()).ok_or("no nodes_modes")?;
        let missing = attr(node, "nodes_missing_value_tracks_true").map(|a| a.ints.clone()).unwrap_or_default();
        let n = tree_ids.len();
        if [node_ids.len(), feature_ids.len(), values.len(), true_ids.len(), false_ids.len(), modes.len()].iter().any(|l| *l != n) {
            return Err("node attributes of different lengths".into());
        }
        let labels = attr(node, "classlabels_int64s").map(|a| a.ints.len()).filter(|l| *l > 0).ok_or("no integer class labels")?;
        let index: HashMap<(i64, i64), usize> = (0..n).map(|i| ((tree_ids[i], node_ids[i]), i)).collect();
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let mode = match modes[i].as_slice() {
                b"BRANCH_LEQ" => Mode::Leq,
                b"BRANCH_LT" => Mode::Lt,
                b"BRANCH_GTE" => Mode::Gte,
                b"BRANCH_GT" => Mode::Gt,
                b"BRANCH_EQ" => Mode::Eq,
                b"BRANCH_NEQ" => Mode::Neq,
                b"LEAF" => Mode::Leaf,
                _ => return Err("unknown node mode".into()),
            };
            let child = |id: i64| if mode == Mode::Leaf { Some(0) } else { index.get(&(tree_ids[i], id)).copied() };
            let feature = feature_ids[i] as usize;
            if mode != Mode::Leaf && feature >= features {
                return Err(format!("node reads feature {feature} of {features}"));
            }
            nodes.push(Node {
                mode,
                feature,
                threshold: values[i],
                missing_goes_true: missing.get(i).is_some_and(|m| *m != 0),
                when_true: child(true_ids[i]).ok_or("a branch to a missing node")?,
                when_false: child(false_ids[i]).ok_or("a branch to a missing node")?,
                weights: (0, 0),
            });
        }
        // Leaves' weights, grouped per leaf.
        let class_trees = ints(node, "class_treeids")?;
        let class_nodes = ints(node, "class_nodeids")?;
        let class_ids = ints(node, "class_ids")?;
        let class_weights = floats(node, "class_weights")?;
        if [class_nodes.len(), class_ids.len(), class_weights.len()].iter().any(|l| *l != class_trees.len()) {
            return Err("class attributes of different lengths".into());
        }
        let mut per_leaf: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
        for k in 0..class_trees.len() {
            let leaf = *index.get(&(class_trees[k], class_nodes[k])).ok_or("a weight on a missing node")?;
            let class = class_ids[k] as usize;
            if class >= labels {
                return Err("a weight for a class past the labels".into());
            }
            per_leaf[leaf].push((class, class_weights[k] as f64));
        }
        let mut weights = Vec::new();
        for (i, w) in per_leaf.into_iter().enumerate() {
            nodes[i].weights = (weights.len(), weights.len() + w.len());
            weights.extend(w);
        }
        // A root is the node of its tree no branch points to.
        let mut pointed = vec![false; n];
        for node in nodes.iter().filter(|n| n.mode != Mode::Leaf) {
            pointed[node.when_true] = true;
            pointed[node.when_false] = true;
        }
        let roots: Vec<usize> = (0..n).filter(|i| !pointed[*i]).collect();
        let weighted: std::collections::BTreeSet<usize> = weights.iter().map(|(c, _)| *c).collect();
        let binary_complement = (labels == 2 && weighted.len() == 1).then(|| 1 - *weighted.iter().next().unwrap());
        let base = attr(node, "base_values").map(|a| a.floats.iter().map(|v| *v as f64).collect()).unwrap_or_else(|| vec![0.0; labels]);
        if base.len() != labels && binary_complement.is_none() {
            return Err("base values do not match the labels".into());
        }
        Ok(Ensemble { nodes, roots, weights, classes: labels, base, binary_complement, features })
    }

    /// Class scores (probabilities for a forest) of one row, into `out`.
    pub fn score(&self, row: &[f32], out: &mut [f64]) {
        out.fill(0.0);
        for (k, b) in self.base.iter().enumerate().take(out.len()) {
            out[k] = *b;
        }
        for &root in &self.roots {
            let mut at = root;
            loop {
                let node = &self.nodes[at];
                if node.mode == Mode::Leaf {
                    for &(class, w) in &self.weights[node.weights.0..node.weights.1] {
                        out[class] += w;
                    }
                    break;
                }
                let x = row[node.feature];
                let t = node.threshold;
                let go_true = if x.is_nan() {
                    node.missing_goes_true
                } else {
                    match node.mode {
                        Mode::Leq => x <= t,
                        Mode::Lt => x < t,
                        Mode::Gte => x >= t,
                        Mode::Gt => x > t,
                        Mode::Eq => x == t,
                        Mode::Neq => x != t,
                        Mode::Leaf => unreachable!(),
                    }
                };
                at = if go_true { node.when_true } else { node.when_false };
            }
        }
        if let Some(other) = self.binary_complement {
            out[other] = 1.0 - out[1 - other];
        }
    }

    /// Rows to check this evaluator against tract on: each feature just
    /// below, at and just above thresholds the trees split it on, so every
    /// comparison goes both ways somewhere.
    pub fn probe_rows(&self, count: usize) -> Vec<f32> {
        let mut by_feature: Vec<Vec<f32>> = vec![Vec::new(); self.features];
        for n in self.nodes.iter().filter(|n| n.mode != Mode::Leaf) {
            if by_feature[n.feature].len() < 64 {
                by_feature[n.feature].push(n.threshold);
            }
        }
        let mut rows = Vec::with_capacity(count * self.features);
        for r in 0..count {
            for (f, thresholds) in by_feature.iter().enumerate() {
                let v = if thresholds.is_empty() {
                    0.0
                } else {
                    let t = thresholds[(r * 7 + f * 3) % thresholds.len()];
                    match (r + f) % 3 {
                        0 => t,
                        1 => t - t.abs().max(1.0) * 1e-3,
                        _ => t + t.abs().max(1.0) * 1e-3,
                    }
                };
                rows.push(v);
            }
        }
        rows
    }
}
