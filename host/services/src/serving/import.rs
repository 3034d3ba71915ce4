//! `kiln models import`: a model trained outside Kiln becomes a version
//! the `onnx` plugin serves. The file is an ONNX model, or a folder that
//! MLflow saved with an `onnx` flavour (its `MLmodel` names the file and may
//! carry the input columns).

use super::signature::{Input, Kind, Signature};
use crate::app::App;
use crate::plugins::{self, LimitOverrides};
use crate::registry;
use crate::store::{NewVersion, StoreError, VersionRecord};
use anyhow::{Context, Result, anyhow, bail};
use std::path::{Component, Path, PathBuf};

/// ONNX files larger than this are refused before they are read whole.
pub const MAX_MODEL_BYTES: u64 = 1 << 30;

/// What an import found at the path it was given.
struct Found {
    file: PathBuf,
    /// Input columns from MLflow's signature, when it names them.
    columns: Option<Vec<String>>,
}

/// The scalar at `path` (`["flavors", "onnx", "data"]`) of an MLmodel file,
/// as MLflow writes it: two-space block mappings, scalars plain or
/// single-quoted and folded over several lines (a line break in a flow
/// scalar is a space). Enough YAML for the two fields read here.
fn mlmodel_field(text: &str, path: &[&str]) -> Option<String> {
    let mut depth = 0;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if indent < depth * 2 {
            return None;
        }
        if indent != depth * 2 {
            continue;
        }
        let Some((key, value)) = trimmed.split_once(':') else { continue };
        if key != path[depth] {
            continue;
        }
        if depth + 1 < path.len() {
            depth += 1;
            continue;
        }
        let mut value = value.trim().to_string();
        while let Some(next) = lines.peek() {
            let more = next.len() - next.trim_start().len() > indent && !next.trim().is_empty();
            // An empty value opens a block, which is not a scalar to fold.
            if !more || value.is_empty() {
                break;
            }
            value.push(' ');
            value.push_str(next.trim());
            lines.next();
        }
        let unquoted = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')).map(|v| v.replace("''", "'"));
        return Some(unquoted.unwrap_or(value));
    }
    None
}

/// The column names of MLflow's column-based signature, if it is one.
fn signature_columns(inputs: &str) -> Option<Vec<String>> {
    let specs: Vec<serde_json::Value> = serde_json::from_str(inputs).ok()?;
    specs.iter().map(|s| s["name"].as_str().map(String::from)).collect()
}

fn find(path: &Path) -> Result<Found> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    if meta.is_file() {
        return Ok(Found { file: path.to_path_buf(), columns: None });
    }
    let mlmodel = path.join("MLmodel");
    let text = std::fs::read_to_string(&mlmodel)
        .with_context(|| format!("{} is a folder without an MLmodel file: give an .onnx file or a model folder MLflow saved", path.display()))?;
    let (data, columns) = onnx_flavour(&text).map_err(|e| anyhow!("{}: {e}", mlmodel.display()))?;
    Ok(Found { file: path.join(data), columns })
}

/// The ONNX file an MLmodel names (a path inside its folder) and the
/// columns of its signature, if it names them.
fn onnx_flavour(text: &str) -> Result<(PathBuf, Option<Vec<String>>)> {
    let Some(data) = mlmodel_field(text, &["flavors", "onnx", "data"]) else {
        let flavors: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("flavors:"))
            .skip(1)
            .take_while(|l| l.starts_with(' ') || l.is_empty())
            .filter(|l| l.len() > 2 && !l[2..].starts_with(' '))
            .map(|l| l.trim().trim_end_matches(':'))
            .collect();
        bail!(
            "the model has no `onnx` flavour (its flavours: {}); Kiln serves ONNX models — convert it (skl2onnx, torch.onnx) and log it with mlflow.onnx",
            if flavors.is_empty() { "none".to_string() } else { flavors.join(", ") }
        );
    };
    let inside = PathBuf::from(&data);
    if data.is_empty() || !inside.components().all(|c| matches!(c, Component::Normal(_))) {
        bail!("flavors.onnx.data is `{data}`, which is not a file inside the model folder");
    }
    let columns = mlmodel_field(text, &["signature", "inputs"]).and_then(|s| signature_columns(&s));
    Ok((inside, columns))
}

/// The files of a version MLflow's API registered, as (path inside the
/// model folder, blob), when Kiln holds them: a run's artifacts
/// (`runs:/RUN/PATH`, `mlflow-artifacts:/EXP/RUN/artifacts/PATH`) or a
/// logged model's (`models:/m-ID`, `mlflow-artifacts:/EXP/models/m-ID/artifacts`).
async fn version_files(app: &App, source: &str) -> Result<Vec<(String, String)>> {
    enum Owner {
        Run(String),
        Model(String),
    }
    let outside = || anyhow!("its files are at `{source}`, which this Kiln does not hold");
    let (owner, prefix) = if let Some(rest) = source.strip_prefix("runs:/") {
        let (run, path) = rest.split_once('/').unwrap_or((rest, ""));
        (Owner::Run(run.to_string()), path.to_string())
    } else if let Some(id) = source.strip_prefix("models:/").filter(|id| id.starts_with("m-") && !id.contains('/')) {
        (Owner::Model(id.to_string()), String::new())
    } else if let Some(rest) = source.strip_prefix("mlflow-artifacts:") {
        let parts: Vec<&str> = rest.trim_matches('/').splitn(5, '/').collect();
        match parts.as_slice() {
            [_, "models", id, "artifacts", rest @ ..] if id.starts_with("m-") => (Owner::Model(id.to_string()), rest.join("/")),
            [_, run, "artifacts", rest @ ..] => (Owner::Run(run.to_string()), rest.join("/")),
            _ => return Err(outside()),
        }
    } else {
        return Err(outside());
    };
    let all: Vec<(String, String)> = match owner {
        Owner::Run(run) => app.store.get_run(&run).await.map_err(|_| outside())?.artifacts.into_iter().map(|a| (a.path, a.blob)).collect(),
        Owner::Model(id) => app.store.logged_model_artifacts(&id).await?.into_iter().map(|(p, b, _)| (p, b)).collect(),
    };
    let base = prefix.trim_matches('/');
    Ok(all
        .into_iter()
        .filter_map(|(path, blob)| {
            let rel = if base.is_empty() { Some(path.as_str()) } else { path.strip_prefix(base).and_then(|r| r.strip_prefix('/')) };
            rel.map(|r| (r.to_string(), blob.clone()))
        })
        .collect())
}

/// Load `bytes` with the `onnx` plugin in the sandbox: the model is served
/// only if this works. The plugin's record, for the version.
async fn check_loads(app: &App, bytes: &[u8]) -> Result<crate::store::PluginRecord> {
    let record = plugins::resolve(app, "onnx").await?;
    let plugin = plugins::load(app, &record)?;
    let limits = plugins::limits_for(&record, LimitOverrides::default());
    app.runtime()?.warm(&plugin, bytes, &limits).await?;
    Ok(record)
}

fn signature_of(columns: Option<Vec<String>>, trained_on: String) -> Result<String> {
    let signature = Signature {
        inputs: columns.unwrap_or_default().into_iter().map(|name| Input { name, kind: Kind::Double }).collect(),
        target: None,
        trained_on: Some(trained_on),
    };
    Ok(serde_json::to_string(&signature)?)
}

/// Make a version MLflow's API registered servable, if its files (held by
/// this Kiln) are an `onnx` flavour: the version gets the ONNX file as its
/// model and the `onnx` plugin to load it. The error says why not.
pub async fn adopt(app: &App, v: &VersionRecord) -> Result<VersionRecord> {
    let files = version_files(app, &v.source).await?;
    let (_, mlmodel) = files.iter().find(|(p, _)| p == "MLmodel").ok_or_else(|| anyhow!("`{}` holds no MLmodel file", v.source))?;
    let text = String::from_utf8(app.blobs.get(mlmodel)?).map_err(|_| anyhow!("its MLmodel file is not text"))?;
    let (data, columns) = onnx_flavour(&text)?;
    let data = data.to_string_lossy().into_owned();
    let (_, blob) = files.iter().find(|(p, _)| *p == data).ok_or_else(|| anyhow!("its MLmodel names `{data}`, which is not among its files"))?;
    let bytes = app.blobs.get(blob)?;
    let record = check_loads(app, &bytes).await.map_err(|e| anyhow!("{data}: {e:#}"))?;
    let signature = signature_of(columns, format!("MLflow model {}", v.source))?;
    Ok(app.store.set_version_model(&v.name, v.version, blob, &record.digest, &signature).await?)
}

/// Register the ONNX model at `path` as the next version of `name` (made if
/// new), served by the bundled `onnx` plugin. The model is loaded in the
/// sandbox first: one that does not load is not registered. `columns`
/// names the input tensor's columns in order (else MLflow's signature's,
/// else requests are taken in the order they give).
pub async fn import(app: &App, name: &str, path: &Path, columns: Option<Vec<String>>, alias: Option<&str>) -> Result<VersionRecord> {
    if let Some(a) = alias {
        registry::check_alias(a).map_err(|e| anyhow!(e))?;
    }
    let found = find(path)?;
    let size = std::fs::metadata(&found.file).with_context(|| format!("{}", found.file.display()))?.len();
    if size > MAX_MODEL_BYTES {
        bail!("{} is {size} bytes; Kiln imports models of at most {MAX_MODEL_BYTES} bytes", found.file.display());
    }
    let bytes = std::fs::read(&found.file).with_context(|| format!("reading {}", found.file.display()))?;
    let record = check_loads(app, &bytes).await.map_err(|e| anyhow!("{}: {e:#}", found.file.display()))?;

    let columns = columns.or(found.columns);
    if let Some(c) = &columns {
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = c.iter().find(|c| !seen.insert(c.as_str())) {
            bail!("column `{dup}` is named twice");
        }
        if c.iter().any(|c| c.trim().is_empty()) {
            bail!("a column name is empty");
        }
    }
    let signature = signature_of(columns, format!("imported from {}", found.file.display()))?;
    let blob = app.blobs.put(&bytes)?;
    match app.store.model(name).await {
        Ok(_) => {}
        Err(StoreError::NotFound(_)) => {
            app.store.create_model(name, "").await?;
        }
        Err(e) => return Err(e.into()),
    }
    let absolute = std::path::absolute(&found.file).unwrap_or(found.file.clone());
    let source = format!("file://{}", absolute.display());
    let new = NewVersion { source: &source, blob: &blob, plugin_digest: &record.digest, signature: &signature, ..Default::default() };
    let version = app.store.create_version_from(name, &new).await?;
    if let Some(a) = alias {
        app.store.set_alias(name, a, version.version).await?;
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MLMODEL: &str = "artifact_path: model\nflavors:\n  onnx:\n    code: null\n    providers:\n    - CPUExecutionProvider\n    data: model.onnx\n    onnx_version: 1.17.0\n  python_function:\n    data: other.onnx\n    loader_module: mlflow.onnx\nsignature:\n  inputs: '[{\"type\": \"double\", \"name\": \"a\"}, {\"type\":\n    \"double\", \"name\": \"it''s\"}]'\n  outputs: null\n";

    #[test]
    fn mlflows_model_file_names_the_onnx_file_and_the_columns() {
        assert_eq!(mlmodel_field(MLMODEL, &["flavors", "onnx", "data"]).as_deref(), Some("model.onnx"));
        assert_eq!(mlmodel_field(MLMODEL, &["flavors", "python_function", "data"]).as_deref(), Some("other.onnx"));
        assert_eq!(mlmodel_field(MLMODEL, &["flavors", "sklearn", "data"]), None);
        let inputs = mlmodel_field(MLMODEL, &["signature", "inputs"]).unwrap();
        assert_eq!(signature_columns(&inputs), Some(vec!["a".to_string(), "it's".to_string()]));
        // A tensor signature names no columns.
        assert_eq!(signature_columns(r#"[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 30]}}]"#), None);

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("MLmodel"), MLMODEL.replace("data: model.onnx", "data: ../../etc/passwd")).unwrap();
        let refused = find(dir.path()).err().unwrap().to_string();
        assert!(refused.contains("not a file inside the model folder"), "{refused}");
        std::fs::write(dir.path().join("MLmodel"), "flavors:\n  sklearn:\n    pickled_model: model.pkl\n  python_function:\n    x: 1\n").unwrap();
        let refused = find(dir.path()).err().unwrap().to_string();
        assert!(refused.contains("no `onnx` flavour (its flavours: sklearn, python_function)"), "{refused}");
    }
}
