//! `kiln serve --bundle DIR`: serve the folder the `bundle` deployer
//! wrote, on a machine with no Kiln workspace and no database.
//!
//! The folder holds the model bytes, the trainer plugin's component and a
//! manifest (`kiln-bundle.json`) naming both by digest. Both are checked
//! against it, then registered in a private workspace in a temporary
//! folder (its own SQLite file, whatever `KILN_DATABASE_URL` says), so the
//! request path is the one `kiln serve` runs: the same pools, checks and
//! scoring protocol. The private workspace goes when the server stops.

use super::target::{MODEL_FILE, PLUGIN_FILE, VersionFile};
use crate::app::App;
use crate::plugins::{self, LimitOverrides};
use crate::store::{DeploymentRecord, NewVersion};
use crate::workspace::Workspace;
use anyhow::{Context, Result, anyhow, bail};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The manifest's file name and the format it declares.
pub const MANIFEST: &str = "kiln-bundle.json";
pub const FORMAT: &str = "kiln-bundle/1";

/// A bundle registered in a private workspace, ready to serve.
pub struct Opened {
    pub app: App,
    pub deployment: String,
    /// The private workspace's folder (removed on drop).
    scratch: PathBuf,
}

impl Drop for Opened {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

/// Check the bundle in `dir` and register what it holds.
pub async fn open(dir: &Path) -> Result<Opened> {
    let manifest_path = dir.join(MANIFEST);
    let text =
        std::fs::read_to_string(&manifest_path).with_context(|| format!("{} is not a bundle: reading {}", dir.display(), manifest_path.display()))?;
    let raw: serde_json::Value = serde_json::from_str(&text).map_err(|e| anyhow!("{}: line {}: {e}", manifest_path.display(), e.line()))?;
    match raw.get("format").and_then(|f| f.as_str()) {
        Some(FORMAT) => {}
        Some(other) => bail!("{}: format `{other}` is not one this Kiln reads ({FORMAT})", manifest_path.display()),
        None => bail!("{}: no `format` field; a bundle's manifest says `\"format\": \"{FORMAT}\"`", manifest_path.display()),
    }
    let manifest: VersionFile = serde_json::from_value(raw).map_err(|e| anyhow!("{}: {e}", manifest_path.display()))?;
    let model = read(dir, MODEL_FILE)?;
    let plugin = read(dir, PLUGIN_FILE)?;
    for (file, bytes, expected) in [(MODEL_FILE, &model, &manifest.model.digest), (PLUGIN_FILE, &plugin, &manifest.plugin.digest)] {
        let found = plugins::sha256_digest(bytes);
        if found != *expected {
            bail!("{}: its digest is {found}, the manifest says {expected}; the bundle was changed after it was written", dir.join(file).display());
        }
    }

    let scratch = std::env::temp_dir().join(format!("kiln-bundle-{}", uuid::Uuid::new_v4()));
    let workspace = Workspace::private(&scratch)?;
    let app = App::open_at(workspace).await?;
    let opened = Opened { app, deployment: manifest.deployment.clone(), scratch };
    let app = &opened.app;
    let limits = LimitOverrides {
        timeout: manifest.plugin.timeout_ms.map(|ms| Duration::from_millis(ms.max(0) as u64)),
        memory_bytes: manifest.plugin.memory_bytes.map(|b| b.max(0) as u64),
    };
    let (record, _) = plugins::add(app, &plugin, false, limits).await.with_context(|| format!("{}", dir.join(PLUGIN_FILE).display()))?;
    if record.kind != "trainer" {
        bail!("{}: a {}, not the trainer that loads the model", dir.join(PLUGIN_FILE).display(), record.kind);
    }
    let blob = app.blobs.put(&model)?;
    let m = &manifest.model;
    app.store.create_model(&m.name, "").await?;
    let source = format!("bundle:{}", dir.display());
    let signature = m.signature.to_string();
    let new = NewVersion {
        source: &source,
        blob: &blob,
        plugin_digest: &record.digest,
        signature: &signature,
        number: Some(m.version),
        ..Default::default()
    };
    let version = app.store.create_version_from(&m.name, &new).await?;
    let s = &manifest.serving;
    let d = DeploymentRecord {
        timeout_ms: s.timeout_ms,
        max_rows: s.max_rows,
        ..DeploymentRecord::new(
            &manifest.deployment,
            &m.name,
            &version.version.to_string(),
            version.version,
            s.instances.clamp(1, super::MAX_INSTANCES),
        )
    };
    app.store.put_deployment(&d, &format!("served from bundle {}", dir.display())).await?;
    Ok(opened)
}
