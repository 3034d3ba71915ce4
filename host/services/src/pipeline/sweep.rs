//! Parameter sweeps: grid or random search over stage params, one child run
//! per combination under a parent run that reports the best by a metric.
//!
//! ```toml
//! [sweep]
//! method = "grid"                 # or "random"
//! metric = "evaluate.accuracy"
//! goal = "maximize"               # or "minimize"
//! max_runs = 20                   # random: how many; grid: a cap
//! seed = 0                        # random only
//!
//! [sweep.params]
//! "train.c" = [0.01, 0.1, 1.0]                       # a list: every value (grid) or a pick (random)
//! "train.alpha" = { min = 0.001, max = 10, log = true }   # random only: a range
//! ```

use super::spec::{Action, Stage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSweep {
    #[serde(default = "default_method")]
    method: String,
    metric: String,
    #[serde(default = "default_goal")]
    goal: String,
    max_runs: Option<usize>,
    #[serde(default)]
    seed: u64,
    params: BTreeMap<String, toml::Value>,
}

fn default_method() -> String {
    "grid".into()
}
fn default_goal() -> String {
    "maximize".into()
}

/// The most combinations one sweep runs (each is a child run, and every
/// one is checked before the first starts).
pub const MAX_SWEEP_RUNS: usize = 10_000;

fn check_max_runs(n: usize) -> Result<(), String> {
    if n == 0 || n > MAX_SWEEP_RUNS {
        return Err(format!("a sweep runs 1 to {MAX_SWEEP_RUNS} combinations, not {n}"));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    Values(Vec<Value>),
    Range { min: f64, max: f64, log: bool, integer: bool },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    pub random: bool,
    /// `stage.metric`
    pub metric: String,
    pub maximize: bool,
    pub max_runs: Option<usize>,
    pub seed: u64,
    /// `stage.param` → domain
    pub params: BTreeMap<String, Domain>,
}

impl Sweep {
    pub fn from_raw(raw: RawSweep, stages: &[Stage]) -> Result<Self, String> {
        let random = match raw.method.as_str() {
            "grid" => false,
            "random" => true,
            other => return Err(format!("method must be \"grid\" or \"random\", got \"{other}\"")),
        };
        let maximize = match raw.goal.as_str() {
            "maximize" => true,
            "minimize" => false,
            other => return Err(format!("goal must be \"maximize\" or \"minimize\", got \"{other}\"")),
        };
        let stage_of = |key: &str| -> Result<(), String> {
            let (stage, rest) = key.split_once('.').ok_or_else(|| format!("`{key}` is not STAGE.NAME"))?;
            if rest.is_empty() || !stages.iter().any(|s| s.name == stage) {
                return Err(format!("`{key}` names no stage `{stage}`"));
            }
            Ok(())
        };
        stage_of(&raw.metric)?;
        if raw.params.is_empty() {
            return Err("`params` names nothing to sweep".into());
        }
        let mut params = BTreeMap::new();
        for (key, v) in raw.params {
            stage_of(&key)?;
            let stage = key.split_once('.').unwrap().0;
            if stages.iter().any(|s| s.name == stage && matches!(s.action, Action::Gate { .. })) {
                return Err(format!("`{key}`: `{stage}` is a gate and has no params"));
            }
            let domain = match v {
                toml::Value::Array(items) if !items.is_empty() => {
                    Domain::Values(items.iter().map(|i| serde_json::to_value(i).unwrap_or(Value::Null)).collect())
                }
                toml::Value::Table(t) => {
                    let num = |k: &str| t.get(k).and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)));
                    let (min, max) = match (num("min"), num("max")) {
                        (Some(a), Some(b)) if a < b => (a, b),
                        _ => return Err(format!("`{key}`: a range needs numbers `min` < `max`")),
                    };
                    let log = t.get("log").and_then(|v| v.as_bool()).unwrap_or(false);
                    if log && min <= 0.0 {
                        return Err(format!("`{key}`: a log range needs min > 0"));
                    }
                    if !random {
                        return Err(format!("`{key}`: a range needs method = \"random\"; a grid takes a list of values"));
                    }
                    let integer = t.get("min").is_some_and(|v| v.is_integer()) && t.get("max").is_some_and(|v| v.is_integer());
                    Domain::Range { min, max, log, integer }
                }
                _ => return Err(format!("`{key}` must be a non-empty list of values or a range {{ min, max }}")),
            };
            params.insert(key, domain);
        }
        if random && raw.max_runs.is_none() {
            return Err("method = \"random\" needs `max_runs`".into());
        }
        if let Some(n) = raw.max_runs {
            check_max_runs(n).map_err(|e| format!("max_runs: {e}"))?;
        }
        Ok(Sweep { random, metric: raw.metric, maximize, max_runs: raw.max_runs, seed: raw.seed, params })
    }

    /// The combinations to run, each `stage.param` → value: at most
    /// `max_runs` (the command line's, else the file's) and never more than
    /// [`MAX_SWEEP_RUNS`]. A grid is enumerated, not built whole, so a cap
    /// of 1 on a grid of 10^12 costs one combination.
    pub fn combinations(&self, max_runs: Option<usize>) -> Result<Vec<BTreeMap<String, Value>>, String> {
        let cap = max_runs.or(self.max_runs);
        if let Some(c) = cap {
            check_max_runs(c)?;
        }
        if self.random {
            let mut rng = StdRng::seed_from_u64(self.seed);
            return Ok((0..cap.unwrap_or(10))
                .map(|_| {
                    self.params
                        .iter()
                        .map(|(k, d)| {
                            let v = match d {
                                Domain::Values(vs) => vs[rng.random_range(0..vs.len())].clone(),
                                Domain::Range { min, max, log, integer } => {
                                    let u: f64 = rng.random();
                                    let x = if *log { (min.ln() + u * (max.ln() - min.ln())).exp() } else { min + u * (max - min) };
                                    if *integer { Value::from(x.round() as i64) } else { Value::from(x) }
                                }
                            };
                            (k.clone(), v)
                        })
                        .collect()
                })
                .collect());
        }
        let axes: Vec<(&String, &Vec<Value>)> = self
            .params
            .iter()
            .filter_map(|(k, d)| match d {
                Domain::Values(values) => Some((k, values)),
                Domain::Range { .. } => None,
            })
            .collect();
        // None: more than usize can count.
        let total = axes.iter().try_fold(1usize, |n, (_, v)| n.checked_mul(v.len()));
        let n = match (cap, total) {
            (Some(c), t) => t.map_or(c, |t| t.min(c)),
            (None, Some(t)) if t <= MAX_SWEEP_RUNS => t,
            (None, t) => {
                let t = t.map_or_else(|| "more combinations than can be counted".to_string(), |t| format!("{t} combinations"));
                return Err(format!(
                    "the grid has {t}, more than the {MAX_SWEEP_RUNS} a sweep runs; set `max_runs` (or --max-runs) to run the first ones"
                ));
            }
        };
        // Combination i in the order of nested loops, the last param
        // varying fastest.
        Ok((0..n)
            .map(|mut i| {
                let mut combo = BTreeMap::new();
                for (k, values) in axes.iter().rev() {
                    combo.insert((*k).clone(), values[i % values.len()].clone());
                    i /= values.len();
                }
                combo
            })
            .collect())
    }

    /// Whether `a` beats `b` for this sweep's goal.
    pub fn better(&self, a: f64, b: f64) -> bool {
        if a.is_nan() {
            return false;
        }
        if b.is_nan() {
            return true;
        }
        if self.maximize { a > b } else { a < b }
    }
}

#[cfg(test)]
mod tests {
    use super::super::spec::Pipeline;
    use std::path::Path;

    fn parse(sweep: &str) -> Result<Pipeline, String> {
        let src = format!(
            "name = \"s\"\n[inputs.d]\npath = \"d.csv\"\ntarget = \"y\"\n[stages.train]\nuses = \"linear\"\ndata = \"d\"\n[stages.g]\ncheck = \"train.x > 0\"\n{sweep}"
        );
        Pipeline::parse(&src, "s.toml", Path::new(".")).map_err(|e| e.to_string())
    }

    #[test]
    fn grid_is_the_cartesian_product() {
        let p =
            parse("[sweep]\nmetric = \"train.x\"\n[sweep.params]\n\"train.c\" = [1, 2, 3]\n\"train.model\" = [\"logistic\", \"ridge\"]\n").unwrap();
        let combos = p.sweep.as_ref().unwrap().combinations(None).unwrap();
        assert_eq!(combos.len(), 6);
        assert_eq!(combos[1]["train.c"], 1);
        assert_eq!(combos[1]["train.model"], "ridge", "the last param varies fastest");
        assert_eq!(p.sweep.as_ref().unwrap().combinations(Some(4)).unwrap().len(), 4, "--max-runs caps a grid");
    }

    #[test]
    fn huge_grids_and_caps_are_refused_or_enumerated_lazily() {
        // 10^12 combinations: a cap of 1 builds one, no cap is refused.
        let values = format!("[{}]", (0..1000).map(|i| i.to_string()).collect::<Vec<_>>().join(","));
        let grid = format!(
            "[sweep]\nmetric = \"train.x\"\n[sweep.params]\n\"train.a\" = {values}\n\"train.b\" = {values}\n\"train.c\" = {values}\n\"train.d\" = {values}\n"
        );
        let s = parse(&grid).unwrap().sweep.unwrap();
        assert_eq!(s.combinations(Some(1)).unwrap().len(), 1);
        let e = s.combinations(None).unwrap_err();
        assert!(e.contains("1000000000000 combinations") && e.contains("max_runs"), "{e}");
        assert!(s.combinations(Some(usize::MAX)).unwrap_err().contains("1 to 10000"));
        let e = parse("[sweep]\nmethod = \"random\"\nmax_runs = 18446744073709551615\nmetric = \"train.x\"\n[sweep.params]\n\"train.c\" = [1]\n")
            .unwrap_err();
        assert!(e.contains("max_runs: a sweep runs 1 to 10000"), "{e}");
    }

    #[test]
    fn random_is_seeded_and_respects_ranges() {
        let p = parse("[sweep]\nmethod = \"random\"\nmax_runs = 5\nmetric = \"train.x\"\ngoal = \"minimize\"\n[sweep.params]\n\"train.c\" = { min = 0.01, max = 100.0, log = true }\n\"train.max_iter\" = { min = 10, max = 20 }\n").unwrap();
        let s = p.sweep.unwrap();
        let a = s.combinations(None).unwrap();
        assert_eq!(a, s.combinations(None).unwrap(), "same seed, same draws");
        assert_eq!(a.len(), 5);
        for c in &a {
            let v = c["train.c"].as_f64().unwrap();
            assert!((0.01..=100.0).contains(&v));
            assert!(c["train.max_iter"].is_i64());
        }
        assert!(s.better(0.1, 0.2));
    }

    #[test]
    fn mistakes_name_the_line_and_key() {
        let e = parse("[sweep]\nmetric = \"nope.x\"\n[sweep.params]\n\"train.c\" = [1]\n").unwrap_err();
        assert!(e.contains("s.toml:10: sweep: `nope.x` names no stage `nope`"), "{e}");
        let e = parse("[sweep]\nmetric = \"train.x\"\n[sweep.params]\n\"g.c\" = [1]\n").unwrap_err();
        assert!(e.contains("gate"), "{e}");
        let e = parse("[sweep]\nmetric = \"train.x\"\n[sweep.params]\n\"train.c\" = { min = 1, max = 2 }\n").unwrap_err();
        assert!(e.contains("a range needs method = \"random\""), "{e}");
    }
}
