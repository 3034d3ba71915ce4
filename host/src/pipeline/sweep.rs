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
        Ok(Sweep { random, metric: raw.metric, maximize, max_runs: raw.max_runs, seed: raw.seed, params })
    }

    /// The combinations to run, each `stage.param` → value.
    pub fn combinations(&self, max_runs: Option<usize>) -> Vec<BTreeMap<String, Value>> {
        let cap = max_runs.or(self.max_runs);
        if self.random {
            let mut rng = StdRng::seed_from_u64(self.seed);
            return (0..cap.unwrap_or(10))
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
                .collect();
        }
        let mut combos = vec![BTreeMap::new()];
        for (k, d) in &self.params {
            let Domain::Values(values) = d else { continue };
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.insert(k.clone(), v.clone());
                        c
                    })
                })
                .collect();
        }
        if let Some(cap) = cap {
            combos.truncate(cap);
        }
        combos
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
        let p = parse("[sweep]\nmetric = \"train.x\"\n[sweep.params]\n\"train.c\" = [1, 2, 3]\n\"train.model\" = [\"logistic\", \"ridge\"]\n").unwrap();
        let combos = p.sweep.as_ref().unwrap().combinations(None);
        assert_eq!(combos.len(), 6);
        assert_eq!(p.sweep.as_ref().unwrap().combinations(Some(4)).len(), 4, "--max-runs caps a grid");
    }

    #[test]
    fn random_is_seeded_and_respects_ranges() {
        let p = parse("[sweep]\nmethod = \"random\"\nmax_runs = 5\nmetric = \"train.x\"\ngoal = \"minimize\"\n[sweep.params]\n\"train.c\" = { min = 0.01, max = 100.0, log = true }\n\"train.max_iter\" = { min = 10, max = 20 }\n").unwrap();
        let s = p.sweep.unwrap();
        let a = s.combinations(None);
        assert_eq!(a, s.combinations(None), "same seed, same draws");
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
