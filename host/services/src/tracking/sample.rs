//! Sampling metric histories for charts, as MLflow's
//! `get-history-bulk-interval` does: at most `max_results` steps from the
//! steps the runs logged in a range, keeping each run's first and last
//! step. Every point logged at a sampled step is then shown.

/// The steps to show: `runs` holds each run's logged steps; `range` is
/// inclusive (both ends or neither; neither means from 0 to the last step).
pub fn sample_steps(runs: &[Vec<i64>], max_results: usize, range: Option<(i64, i64)>) -> Vec<i64> {
    let max_results = max_results.max(1);
    let mut all: Vec<i64> = runs.iter().flatten().copied().collect();
    all.sort_unstable();
    all.dedup();
    let (start, end) = range.unwrap_or((0, all.last().copied().unwrap_or(0)));
    let ends: Vec<i64> = runs
        .iter()
        .filter(|r| !r.is_empty())
        .flat_map(|r| [*r.iter().min().unwrap(), *r.iter().max().unwrap()])
        .filter(|s| (start..=end).contains(s))
        .collect();
    let from = all.partition_point(|s| *s < start);
    let to = all.partition_point(|s| *s <= end);
    let mut steps: Vec<i64> = if to - from <= max_results {
        all[from..to].to_vec()
    } else {
        let interval = (to - from) as f64 / max_results as f64;
        let mut picked: Vec<i64> = (0..max_results).map(|i| from + (i as f64 * interval) as usize).filter(|i| *i < to).map(|i| all[i]).collect();
        picked.push(all[to - 1]);
        picked
    };
    steps.extend(ends);
    steps.sort_unstable();
    steps.dedup();
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_sampled_with_each_runs_ends_kept() {
        let a: Vec<i64> = (0..1000).collect();
        let b: Vec<i64> = vec![5, 7, 999];
        let steps = sample_steps(&[a.clone(), b], 10, None);
        assert_eq!(steps, [0, 5, 100, 200, 300, 400, 500, 600, 700, 800, 900, 999]);
        // A range keeps only the ends inside it.
        assert_eq!(sample_steps(&[a], 3, Some((10, 20))), [10, 13, 17, 20]);
        assert_eq!(sample_steps(&[vec![3, 1, 2]], 10, None), [1, 2, 3]);
        assert!(sample_steps(&[], 10, None).is_empty());
    }
}
