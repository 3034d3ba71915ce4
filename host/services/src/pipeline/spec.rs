//! The pipeline file: parsing and checking, with errors that point at the
//! file and line.
//!
//! ```toml
//! name = "quickstart"
//!
//! [inputs.cancer]
//! path = "breast_cancer.csv"
//! target = "benign"
//! split = { test_size = 0.25, seed = 42, stratify = true }
//!
//! [stages.train]
//! uses = "linear"            # name, name@version or sha256:<digest>
//! data = "cancer.train"
//! with = { model = "logistic" }
//!
//! [stages.evaluate]
//! uses = "metrics"
//! model = "train"
//! data = "cancer.test"
//!
//! [stages.quality]
//! check = "evaluate.accuracy >= 0.9"
//! ```

use super::gate::Expr;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// A failing stage is tried at most this many more times (each try may
/// take its whole deadline).
pub const MAX_RETRIES: u32 = 10;

/// The largest pipeline file read.
const MAX_SPEC_BYTES: u64 = 16 << 20;

/// A spec error: where, and what.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct SpecError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub description: String,
    /// Folder relative data paths resolve against.
    pub base_dir: PathBuf,
    /// For a registered pipeline (run by the server for any REST client):
    /// the workspace root, which its `path` inputs may not leave, symlinks
    /// included. `None` for a file run from the command line, which reads
    /// what its user can.
    pub confine: Option<PathBuf>,
    pub source: String,
    pub file: String,
    pub inputs: BTreeMap<String, Input>,
    /// In file order.
    pub stages: Vec<Stage>,
    pub sweep: Option<super::sweep::Sweep>,
}

#[derive(Debug, Clone)]
pub struct Input {
    pub name: String,
    /// The CSV file read: the `path` given, or for a `dataset` input the
    /// version's blob (set by `prepare`).
    pub path: PathBuf,
    /// `path` as written in the file (what messages show).
    pub given: String,
    /// `dataset = "NAME@VERSION"` as written (`NAME` or `NAME@latest` for
    /// the latest version).
    pub dataset: Option<String>,
    /// The dataset version read, once known: from `dataset`, or from the
    /// pointer file beside a tracked `path` whose content matches it.
    pub version: Option<(String, i64)>,
    pub line: usize,
    pub target: Option<String>,
    pub columns: Option<Vec<String>>,
    pub exclude: Vec<String>,
    pub categorical: Vec<String>,
    pub split: Option<SplitSpec>,
}

#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    pub test_size: f64,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub stratify: bool,
}

/// Which part of an input a stage reads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DataRef {
    pub input: String,
    pub part: Part,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    All,
    Train,
    Test,
}

impl std::fmt::Display for DataRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.part {
            Part::All => write!(f, "{}", self.input),
            Part::Train => write!(f, "{}.train", self.input),
            Part::Test => write!(f, "{}.test", self.input),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    pub line: usize,
    pub action: Action,
    /// Upstream stages: explicit `needs` plus the ones `model` and `check` name.
    pub needs: Vec<String>,
    pub timeout: Option<Duration>,
    pub memory: Option<u64>,
    pub retries: u32,
    /// `register = "MODEL"` (and `alias`): a trainer stage's model becomes
    /// the next version of MODEL when the run finishes with every gate
    /// passed.
    pub register: Option<Register>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Register {
    pub model: String,
    pub alias: Option<String>,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub enum Action {
    /// Call a plugin.
    Plugin { uses: String, uses_line: usize, params: serde_json::Value, slots: Slots },
    /// A gate over upstream metrics.
    Gate { check: Expr, text: String },
}

/// The data and models a plugin stage reads; which are required depends on
/// the plugin's kind, checked once the plugin is resolved.
#[derive(Debug, Clone, Default)]
pub struct Slots {
    pub data: Option<(DataRef, usize)>,
    pub model: Option<(String, usize)>,
    pub reference: Option<(DataRef, usize)>,
    pub current: Option<(DataRef, usize)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    inputs: BTreeMap<String, RawInput>,
    #[serde(default)]
    stages: BTreeMap<String, RawStage>,
    sweep: Option<toml::Spanned<super::sweep::RawSweep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    path: Option<Spanned<String>>,
    dataset: Option<Spanned<String>>,
    target: Option<String>,
    columns: Option<Vec<String>>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    categorical: Vec<String>,
    split: Option<Spanned<SplitSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    uses: Option<Spanned<String>>,
    check: Option<Spanned<String>>,
    #[serde(default)]
    with: toml::Table,
    data: Option<Spanned<String>>,
    model: Option<Spanned<String>>,
    reference: Option<Spanned<String>>,
    current: Option<Spanned<String>>,
    #[serde(default)]
    needs: Vec<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    memory: Option<Spanned<String>>,
    #[serde(default)]
    retries: u32,
    register: Option<Spanned<String>>,
    alias: Option<Spanned<String>>,
}

fn line_at(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())].matches('\n').count() + 1
}

/// The line of a `[section.name]` header (or an inline key), for errors
/// about a whole stage or input.
fn header_line(source: &str, section: &str, name: &str) -> usize {
    let plain = format!("[{section}.{name}]");
    let quoted = format!("[{section}.\"{name}\"]");
    source
        .lines()
        .position(|l| {
            let t = l.trim();
            t.starts_with(&plain) || t.starts_with(&quoted)
        })
        .map(|i| i + 1)
        .unwrap_or(1)
}

impl Pipeline {
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let source = crate::limits::read_text(path, MAX_SPEC_BYTES).map_err(|e| SpecError {
            file: path.display().to_string(),
            line: 1,
            message: format!("cannot read the pipeline file: {e}"),
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
        Self::parse(&source, &path.display().to_string(), &base)
    }

    pub fn parse(source: &str, file: &str, base_dir: &Path) -> Result<Self, SpecError> {
        let err = |line: usize, message: String| SpecError { file: file.to_string(), line, message };
        let raw: RawPipeline = toml::from_str(source).map_err(|e| {
            let line = e.span().map(|s| line_at(source, s.start)).unwrap_or(0);
            err(line, e.message().to_string())
        })?;
        // The name is the experiment its runs land in.
        crate::tracking::check_experiment_name(&raw.name).map_err(|m| err(1, format!("`name`: {m}")))?;

        let mut inputs = BTreeMap::new();
        for (name, i) in raw.inputs {
            let line = header_line(source, "inputs", &name);
            check_name(&name).map_err(|m| err(line, format!("input `{name}`: {m}")))?;
            if let Some(split) = &i.split {
                let s = split.get_ref();
                if !(s.test_size > 0.0 && s.test_size < 1.0) {
                    return Err(err(
                        line_at(source, split.span().start),
                        format!("input `{name}`: split.test_size must be between 0 and 1, got {}", s.test_size),
                    ));
                }
            }
            let (path, given, dataset, path_line) = match (i.path, i.dataset) {
                (Some(p), None) => {
                    let l = line_at(source, p.span().start);
                    let given = p.into_inner();
                    if given.is_empty() || given.contains('\0') {
                        return Err(err(l, format!("input `{name}`: `path` must name a file")));
                    }
                    let path = PathBuf::from(&given);
                    (if path.is_absolute() { path } else { base_dir.join(path) }, given, None, l)
                }
                (None, Some(d)) => (PathBuf::new(), String::new(), Some(d.get_ref().clone()), line_at(source, d.span().start)),
                (Some(_), Some(_)) => return Err(err(line, format!("input `{name}`: give `path` or `dataset`, not both"))),
                (None, None) => {
                    return Err(err(line, format!("input `{name}` needs `path` (a CSV file) or `dataset` (NAME@VERSION, from `kiln data add`)")));
                }
            };
            inputs.insert(
                name.clone(),
                Input {
                    name,
                    path,
                    given,
                    dataset,
                    version: None,
                    line: path_line,
                    target: i.target,
                    columns: i.columns,
                    exclude: i.exclude,
                    categorical: i.categorical,
                    split: i.split.map(Spanned::into_inner),
                },
            );
        }

        let parse_ref = |v: &Spanned<String>, what: &str| -> Result<(DataRef, usize), SpecError> {
            let line = line_at(source, v.span().start);
            let text = v.get_ref();
            let (input, part) = match text.rsplit_once('.') {
                Some((i, "train")) => (i, Part::Train),
                Some((i, "test")) => (i, Part::Test),
                _ => (text.as_str(), Part::All),
            };
            let Some(spec) = inputs.get(input) else {
                let known: Vec<&str> = inputs.keys().map(String::as_str).collect();
                return Err(err(line, format!("{what} `{text}` names no input (inputs: {})", known.join(", "))));
            };
            if part != Part::All && spec.split.is_none() {
                return Err(err(line, format!("{what} `{text}` needs a split, but input `{input}` has no `split`")));
            }
            Ok((DataRef { input: input.to_string(), part }, line))
        };

        let names: BTreeSet<String> = raw.stages.keys().cloned().collect();
        let mut stages = Vec::new();
        for (name, s) in raw.stages {
            let line = header_line(source, "stages", &name);
            check_name(&name).map_err(|m| err(line, format!("stage `{name}`: {m}")))?;
            let mut needs = Vec::new();
            for n in &s.needs {
                let l = line_at(source, n.span().start);
                if !names.contains(n.get_ref()) {
                    return Err(err(l, format!("stage `{name}` needs `{}`, which is not a stage", n.get_ref())));
                }
                needs.push(n.get_ref().clone());
            }
            let timeout = match &s.timeout {
                Some(t) => Some(
                    crate::runtime::parse_duration(t.get_ref())
                        .map_err(|m| err(line_at(source, t.span().start), format!("stage `{name}`: timeout: {m}")))?,
                ),
                None => None,
            };
            let memory = match &s.memory {
                Some(m) => Some(
                    crate::runtime::parse_memory(m.get_ref())
                        .map_err(|msg| err(line_at(source, m.span().start), format!("stage `{name}`: memory: {msg}")))?,
                ),
                None => None,
            };
            let action = match (s.uses, s.check) {
                (Some(_), Some(c)) => {
                    return Err(err(line_at(source, c.span().start), format!("stage `{name}` has both `uses` and `check`; a gate is its own stage")));
                }
                (None, None) => return Err(err(line, format!("stage `{name}` needs `uses = \"PLUGIN\"` (or `check = \"...\"` for a gate)"))),
                (None, Some(check)) => {
                    let cl = line_at(source, check.span().start);
                    let expr = Expr::parse(check.get_ref()).map_err(|e| err(cl, format!("stage `{name}`: invalid check: {e}")))?;
                    for r in expr.stage_refs() {
                        if !names.contains(&r) {
                            return Err(err(cl, format!("stage `{name}`: the check refers to `{r}`, which is not a stage")));
                        }
                        if !needs.contains(&r) {
                            needs.push(r);
                        }
                    }
                    Action::Gate { text: check.into_inner(), check: expr }
                }
                (Some(uses), None) => {
                    let uses_line = line_at(source, uses.span().start);
                    let mut slots = Slots::default();
                    if let Some(d) = &s.data {
                        slots.data = Some(parse_ref(d, "data")?);
                    }
                    if let Some(d) = &s.reference {
                        slots.reference = Some(parse_ref(d, "reference")?);
                    }
                    if let Some(d) = &s.current {
                        slots.current = Some(parse_ref(d, "current")?);
                    }
                    if let Some(m) = &s.model {
                        let l = line_at(source, m.span().start);
                        if !names.contains(m.get_ref()) {
                            return Err(err(l, format!("stage `{name}`: model `{}` is not a stage", m.get_ref())));
                        }
                        if !needs.contains(m.get_ref()) {
                            needs.push(m.get_ref().clone());
                        }
                        slots.model = Some((m.get_ref().clone(), l));
                    }
                    let params =
                        serde_json::to_value(&s.with).map_err(|e| err(line, format!("stage `{name}`: `with` cannot be expressed as JSON: {e}")))?;
                    Action::Plugin { uses: uses.into_inner(), uses_line, params, slots }
                }
            };
            if s.retries > MAX_RETRIES {
                return Err(err(line, format!("stage `{name}`: retries is at most {MAX_RETRIES}, got {}", s.retries)));
            }
            let register = match (&s.register, &s.alias) {
                (None, None) => None,
                (None, Some(a)) => return Err(err(line_at(source, a.span().start), format!("stage `{name}`: `alias` needs `register = \"MODEL\"`"))),
                (Some(model), alias) => {
                    let l = line_at(source, model.span().start);
                    if !matches!(action, Action::Plugin { .. }) {
                        return Err(err(l, format!("stage `{name}`: a gate has no model to `register`")));
                    }
                    if model.get_ref().trim().is_empty() {
                        return Err(err(l, format!("stage `{name}`: `register` names the model to register, and is empty")));
                    }
                    if let Some(a) = alias {
                        crate::registry::check_alias(a.get_ref())
                            .map_err(|m| err(line_at(source, a.span().start), format!("stage `{name}`: alias: {m}")))?;
                    }
                    Some(Register { model: model.get_ref().clone(), alias: alias.as_ref().map(|a| a.get_ref().clone()), line: l })
                }
            };
            stages.push(Stage { name, line, action, needs, timeout, memory, retries: s.retries, register });
        }
        stages.sort_by_key(|s| s.line);
        let sweep = match raw.sweep {
            Some(raw_sweep) => {
                let line = line_at(source, raw_sweep.span().start);
                Some(super::sweep::Sweep::from_raw(raw_sweep.into_inner(), &stages).map_err(|m| err(line, format!("sweep: {m}")))?)
            }
            None => None,
        };
        let pipeline = Pipeline {
            name: raw.name,
            description: raw.description,
            base_dir: base_dir.to_path_buf(),
            confine: None,
            source: source.to_string(),
            file: file.to_string(),
            inputs,
            stages,
            sweep,
        };
        pipeline.check_acyclic()?;
        Ok(pipeline)
    }

    /// Refuse a cycle, naming it.
    fn check_acyclic(&self) -> Result<(), SpecError> {
        let index: BTreeMap<&str, usize> = self.stages.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
        // 0 = unvisited, 1 = on the current path, 2 = done.
        let mut state = vec![0u8; self.stages.len()];
        fn visit(i: usize, p: &Pipeline, index: &BTreeMap<&str, usize>, state: &mut [u8], path: &mut Vec<usize>) -> Option<Vec<usize>> {
            state[i] = 1;
            path.push(i);
            for n in &p.stages[i].needs {
                let j = index[n.as_str()];
                if state[j] == 1 {
                    let start = path.iter().position(|&k| k == j).unwrap();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(j);
                    return Some(cycle);
                }
                if state[j] == 0
                    && let Some(c) = visit(j, p, index, state, path)
                {
                    return Some(c);
                }
            }
            path.pop();
            state[i] = 2;
            None
        }
        for i in 0..self.stages.len() {
            if state[i] == 0
                && let Some(cycle) = visit(i, self, &index, &mut state, &mut Vec::new())
            {
                let names: Vec<&str> = cycle.iter().map(|&k| self.stages[k].name.as_str()).collect();
                return Err(SpecError {
                    file: self.file.clone(),
                    line: self.stages[cycle[0]].line,
                    message: format!("the stages form a cycle: {}", names.join(" -> ")),
                });
            }
        }
        Ok(())
    }

    /// Keep the `path` inputs inside `root` (see [`Pipeline::confine`]):
    /// checked when each is opened, beneath `root`.
    pub fn confine_to(&mut self, root: &Path) {
        self.confine = Some(root.to_path_buf());
    }

    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }

    pub fn error(&self, line: usize, message: impl Into<String>) -> SpecError {
        SpecError { file: self.file.clone(), line, message: message.into() }
    }

    /// Set one stage param to a value.
    pub fn set_param(&mut self, stage: &str, param: &str, value: serde_json::Value) -> Result<(), String> {
        let names: Vec<String> = self.stages.iter().map(|s| s.name.clone()).collect();
        let s = self.stages.iter_mut().find(|s| s.name == stage).ok_or_else(|| format!("no stage `{stage}` (stages: {})", names.join(", ")))?;
        match &mut s.action {
            Action::Plugin { params, .. } => {
                params.as_object_mut().unwrap().insert(param.to_string(), value);
                Ok(())
            }
            Action::Gate { .. } => Err(format!("`{stage}` is a gate and has no params")),
        }
    }

    /// Apply `--set stage.param=value` overrides (value parsed as TOML, so
    /// `8`, `0.5`, `true` and `"text"` keep their types; a bare word is text).
    pub fn apply_override(&mut self, assignment: &str) -> Result<(), String> {
        let (key, value) = assignment.split_once('=').ok_or_else(|| format!("`--set {assignment}`: expected STAGE.PARAM=VALUE"))?;
        let (stage, param) = key.trim().split_once('.').ok_or_else(|| format!("`--set {assignment}`: expected STAGE.PARAM=VALUE"))?;
        if assignment.contains(['\n', '\r']) {
            return Err(format!("`--set {}`: the value holds a line break; one --set sets one param", assignment.escape_debug()));
        }
        let value = value.trim();
        let parsed: serde_json::Value = match toml::from_str::<toml::Table>(&format!("v = {value}")) {
            Ok(t) => serde_json::to_value(&t["v"]).map_err(|e| e.to_string())?,
            Err(_) => serde_json::Value::String(value.to_string()),
        };
        self.set_param(stage, param, parsed).map_err(|e| format!("`--set {assignment}`: {e}"))
    }
}

/// The one message for a path a registered pipeline may not read: the
/// same whether or not the file exists, and never anything it holds.
pub fn outside(input: &str, given: &str) -> String {
    format!(
        "input `{input}`: `{given}` is outside the workspace; a registered pipeline reads files inside the workspace \
         (relative paths) or dataset versions (`dataset = \"NAME@VERSION\"`)"
    )
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok { Ok(()) } else { Err("names use letters, digits, `_` and `-` only".into()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "p"

[inputs.d]
path = "d.csv"
target = "y"
split = { test_size = 0.2, seed = 1, stratify = true }

[stages.train]
uses = "linear"
data = "d.train"
with = { c = 0.5 }

[stages.evaluate]
uses = "metrics"
model = "train"
data = "d.test"

[stages.gate]
check = "evaluate.accuracy >= 0.9"
"#;

    fn parse(src: &str) -> Result<Pipeline, SpecError> {
        Pipeline::parse(src, "p.toml", Path::new("/base"))
    }

    #[test]
    fn parses_inputs_stages_and_derived_needs() {
        let p = parse(GOOD).unwrap();
        assert_eq!(p.stages.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["train", "evaluate", "gate"]);
        assert_eq!(p.stage("evaluate").unwrap().needs, ["train"]);
        assert_eq!(p.stage("gate").unwrap().needs, ["evaluate"]);
        assert_eq!(p.inputs["d"].path, Path::new("/base/d.csv"));
    }

    #[test]
    fn unknown_input_names_the_line() {
        let src = GOOD.replace("data = \"d.test\"", "data = \"nope.test\"");
        let e = parse(&src).unwrap_err();
        assert_eq!(e.line, 17);
        assert!(e.to_string().starts_with("p.toml:17: data `nope.test` names no input"), "{e}");
    }

    #[test]
    fn cycles_are_named() {
        let src = GOOD.replace("uses = \"linear\"", "uses = \"linear\"\nneeds = [\"evaluate\"]");
        let e = parse(&src).unwrap_err();
        assert!(e.message.contains("cycle: train -> evaluate -> train"), "{e}");
    }

    #[test]
    fn toml_errors_and_unknown_keys_have_lines() {
        let e = parse("name = \"p\"\n[stages.a]\nuses = \"x\"\nbogus = 1\n").unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("bogus"), "{e}");
        let e = parse("name = \n").unwrap_err();
        assert_eq!(e.line, 1);
    }

    #[test]
    fn gate_expression_errors_point_at_the_check() {
        let src = GOOD.replace(">= 0.9", ">= ");
        let e = parse(&src).unwrap_err();
        assert_eq!(e.line, 20);
        assert!(e.message.contains("invalid check"), "{e}");
    }

    #[test]
    fn overrides_keep_types() {
        let mut p = parse(GOOD).unwrap();
        p.apply_override("train.c=2").unwrap();
        p.apply_override("train.model=ridge").unwrap();
        let Action::Plugin { params, .. } = &p.stage("train").unwrap().action else { panic!() };
        assert_eq!(params["c"], serde_json::json!(2));
        assert_eq!(params["model"], serde_json::json!("ridge"));
        assert!(p.apply_override("nope.c=1").unwrap_err().contains("no stage `nope`"));
    }
}
