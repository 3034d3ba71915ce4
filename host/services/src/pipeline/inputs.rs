//! Loading a pipeline's inputs: read each file once, select columns, split,
//! and hash what each stage will see (for cache keys and lineage).

use super::spec::{DataRef, Input, Part, Pipeline};
use crate::dataset::read::{Purpose, ReadOptions};
use crate::dataset::{self, Column, Table};
use anyhow::{Result, anyhow};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The table a stage receives: features, the target if the input names one.
#[derive(Debug)]
pub struct Dataset {
    pub features: Table,
    pub target: Option<Column>,
    /// BLAKE3 of features and target: a stage's cache key includes it.
    pub hash: String,
    /// Where it came from, for lineage.
    pub path: String,
    /// What a model trained on it records as its training data: the
    /// dataset version (`dataset cancer@2`) when the input names or
    /// matches one, else the file, and the split part.
    pub origin: String,
}

pub type Inputs = BTreeMap<DataRef, Arc<Dataset>>;

/// Open an input's file: a regular file of at most `limit` bytes, and for
/// a confined pipeline one inside the workspace (opened beneath it, so
/// neither `..` nor a symlink can lead out). Returns the file and what
/// messages call it.
pub fn open(pipeline: &Pipeline, spec: &Input, limit: u64) -> Result<(std::fs::File, PathBuf)> {
    let fail = |e: std::io::Error, shown: &Path| pipeline.error(spec.line, format!("input `{}`: cannot read `{}`: {e}", spec.name, shown.display()));
    let confine = pipeline.confine.as_ref().filter(|_| spec.dataset.is_none());
    let Some(root) = confine else {
        let file = crate::limits::open_regular(&spec.path, limit, Some("input_size")).map_err(|e| fail(e, &spec.path))?;
        return Ok((file, spec.path.clone()));
    };
    let shown = PathBuf::from(&spec.given);
    let outside = || pipeline.error(spec.line, super::spec::outside(&spec.name, &spec.given));
    let rel = spec.path.strip_prefix(root).map_err(|_| outside())?;
    let dir = cap_std::fs::Dir::open_ambient_dir(root, cap_std::ambient_authority()).map_err(|e| fail(e, Path::new(".")))?;
    let mut options = cap_std::fs::OpenOptions::new();
    options.read(true);
    // As in `limits::open_regular`: a FIFO must not block the open.
    cap_std::fs::OpenOptionsExt::custom_flags(&mut options, rustix::fs::OFlags::NONBLOCK.bits() as i32);
    let file = match dir.open_with(rel, &options) {
        Ok(f) => f.into_std(),
        // cap-std's word for a step out of the directory.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && e.to_string().contains("outside") => return Err(outside().into()),
        Err(e) => return Err(fail(e, &shown).into()),
    };
    crate::limits::check_regular(&file, limit, Some("input_size")).map_err(|e| fail(e, &shown))?;
    Ok((file, shown))
}

pub fn load(pipeline: &Pipeline, wanted: &BTreeSet<DataRef>, limit: u64) -> Result<Inputs> {
    let mut out = Inputs::new();
    for (name, spec) in &pipeline.inputs {
        let parts: Vec<Part> = wanted.iter().filter(|r| &r.input == name).map(|r| r.part).collect();
        if parts.is_empty() {
            continue;
        }
        let (file, shown) = open(pipeline, spec, limit)?;
        // A `.parquet`/`.pq`/`.tsv` input by its extension; anything else
        // is CSV, as it always was.
        let format = dataset::Format::of(&spec.path).unwrap_or(dataset::Format::Csv { delimiter: b',' });
        let options = ReadOptions { categorical: &spec.categorical, limit, purpose: Purpose::Pipeline };
        let frame = dataset::read::read(file, &shown, format, options)?;
        let table = dataset::read::to_table(frame, &shown, &spec.categorical)?;
        let table = select_columns(pipeline, spec, &shown, table)?;
        let (features, target) = match &spec.target {
            Some(t) => {
                let (f, t) = dataset::features_and_target(&table, t)
                    .map_err(|m| pipeline.error(spec.line, format!("input `{name}` ({}): {m}", shown.display())))?;
                (f, Some(t))
            }
            None => (table, None),
        };
        let split = spec.split.map(|s| {
            let stratify = if s.stratify { target.as_ref() } else { None };
            dataset::split_rows(features.rows, s.test_size, s.seed, stratify)
        });
        if spec.split.is_some_and(|s| s.stratify) && target.is_none() {
            return Err(pipeline.error(spec.line, format!("input `{name}`: `stratify = true` needs a `target`")).into());
        }
        for part in parts {
            let rows: Option<&[usize]> = match (part, &split) {
                (Part::All, _) => None,
                (Part::Train, Some(s)) => Some(&s.train),
                (Part::Test, Some(s)) => Some(&s.test),
                _ => unreachable!("the spec checked that parts imply a split"),
            };
            let (f, t) = match rows {
                None => (features.clone(), target.clone()),
                Some(idx) => (
                    dataset::take_rows(&features, idx),
                    target.as_ref().map(|t| dataset::take_rows(&Table { rows: features.rows, columns: vec![t.clone()] }, idx).columns.remove(0)),
                ),
            };
            if f.rows == 0 {
                return Err(pipeline.error(spec.line, format!("input `{name}`: the {part:?} part has no rows")).into());
            }
            let mut whole = f.clone();
            whole.columns.extend(t.clone());
            let hash = dataset::content_hash(&whole);
            let source = match &spec.version {
                Some((dataset, version)) => format!("dataset {dataset}@{version}"),
                None => shown.display().to_string(),
            };
            let origin = match part {
                Part::All => source,
                Part::Train => format!("{source}, train split"),
                Part::Test => format!("{source}, test split"),
            };
            out.insert(
                DataRef { input: name.clone(), part },
                Arc::new(Dataset { features: f, target: t, hash, path: shown.display().to_string(), origin }),
            );
        }
    }
    Ok(out)
}

fn select_columns(pipeline: &Pipeline, spec: &Input, shown: &Path, table: Table) -> Result<Table> {
    let names = table.names().iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for c in spec.columns.iter().flatten().chain(&spec.exclude) {
        if !names.contains(c) {
            return Err(anyhow!(pipeline.error(
                spec.line,
                format!("input `{}`: {} has no column `{c}` (columns: {})", spec.name, shown.display(), dataset::list_names(&names))
            )));
        }
    }
    let keep = |n: &str| {
        let selected = match &spec.columns {
            Some(cols) => cols.iter().any(|c| c == n) || spec.target.as_deref() == Some(n),
            None => true,
        };
        selected && !spec.exclude.iter().any(|c| c == n)
    };
    let rows = table.rows;
    Ok(Table { rows, columns: table.columns.into_iter().filter(|c| keep(&c.name)).collect() })
}
