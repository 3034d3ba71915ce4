//! Seeded train/test splits, stratified by the target when asked.

use super::Column;
use super::ColumnData;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// Shuffle row indices with `seed` and hold out `test_size` of them. With a
/// `stratify` column each class keeps its share in both parts.
pub fn split_rows(rows: usize, test_size: f64, seed: u64, stratify: Option<&Column>) -> Split {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut groups: Vec<Vec<usize>> = match stratify.map(|c| &c.data) {
        None => vec![(0..rows).collect()],
        Some(ColumnData::Numeric(v)) => group_by(v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()),
        Some(ColumnData::Categorical(v)) => group_by(v.clone()),
    };
    let mut split = Split { train: Vec::new(), test: Vec::new() };
    for g in &mut groups {
        g.shuffle(&mut rng);
        let n_test = ((g.len() as f64) * test_size).round() as usize;
        split.test.extend_from_slice(&g[..n_test]);
        split.train.extend_from_slice(&g[n_test..]);
    }
    // Interleave classes again so neither part is sorted by class.
    split.train.shuffle(&mut rng);
    split.test.shuffle(&mut rng);
    split
}

fn group_by<K: Ord + Clone>(keys: Vec<K>) -> Vec<Vec<usize>> {
    let mut map = std::collections::BTreeMap::<K, Vec<usize>>::new();
    for (i, k) in keys.into_iter().enumerate() {
        map.entry(k).or_default().push(i);
    }
    map.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_stratified_split_keeps_class_shares() {
        let y = Column::numeric("y", (0..100).map(|i| if i < 80 { 0.0 } else { 1.0 }).collect());
        let s = split_rows(100, 0.25, 7, Some(&y));
        assert_eq!(s.test.len(), 25);
        assert_eq!(s.train.len(), 75);
        let ones = s.test.iter().filter(|&&i| i >= 80).count();
        assert_eq!(ones, 5, "20% of the test part is class 1, as in the whole");
        assert_eq!(s, split_rows(100, 0.25, 7, Some(&y)), "same seed, same split");
        assert_ne!(s, split_rows(100, 0.25, 8, Some(&y)));
        let mut all: Vec<usize> = s.train.iter().chain(&s.test).copied().collect();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
    }
}
