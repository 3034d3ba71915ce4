//! The plugin registry service: register, list, resolve, remove, and the
//! first-party plugins bundled into the binary.

use crate::app::App;
use crate::runtime::{Limits, LoadedPlugin};
use crate::store::{PluginRecord, StoreError, now_ms};
use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

macro_rules! bundled {
    ($($name:literal),*) => {
        &[$(($name, include_bytes!(concat!(env!("OUT_DIR"), "/kiln_plugin_", $name, ".wasm")))),*]
    };
}

/// First-party plugins, built for wasm32-wasip2 by build.rs.
pub const BUNDLED: &[(&str, &[u8])] = bundled!("linear", "forest", "metrics", "ks", "bundle", "webhook");

/// First-party plugins registered the first time they are named, not in
/// every new workspace: `onnx` carries an ONNX runtime (megabytes to
/// compile), which only `kiln models import` needs.
pub const ON_DEMAND: &[(&str, &[u8])] = bundled!("onnx");

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Per-plugin limits set at registration.
#[derive(Debug, Clone, Copy, Default)]
pub struct LimitOverrides {
    pub timeout: Option<Duration>,
    pub memory_bytes: Option<u64>,
}

/// Check and register a component. Nothing is stored unless every check
/// passes: it is a component, targets a known world and WIT version,
/// imports nothing outside the allowed set, and `describe` answers sanely.
pub async fn add(app: &App, bytes: &[u8], bundled: bool, limits: LimitOverrides) -> Result<(PluginRecord, bool)> {
    let digest = sha256_digest(bytes);
    // One compile: loading checks the component and classifies it.
    let loaded = app.runtime()?.load(&digest, bytes)?;
    let info = loaded.info.clone();
    let d = app.runtime()?.describe(&loaded, &Limits { timeout: Duration::from_secs(30), memory_bytes: 256 << 20 }).await?;
    let record = PluginRecord {
        digest,
        name: d.name,
        version: d.version,
        kind: d.kind.to_string(),
        wit_version: info.wit_version,
        summary: d.summary,
        params_schema: d.params_schema.to_string(),
        imports: info.imports,
        blob: String::new(),
        size: bytes.len() as i64,
        bundled,
        timeout_ms: limits.timeout.map(|t| t.as_millis() as i64),
        memory_bytes: limits.memory_bytes.map(|m| m as i64),
        created_at: now_ms(),
    };
    if bundled {
        // A newer kiln bundles new bytes under the same name@version. The
        // old row stays (runs and models reference its digest) under a
        // version that says which build it was: `0.1.0+<digest prefix>`.
        for old in app.store.plugins_named(&record.name).await? {
            if old.version == record.version && old.digest != record.digest && old.bundled {
                let retired = format!("{}+{}", old.version, &old.digest[7..19]);
                app.store.set_plugin_version(&old.digest, &retired).await?;
            }
        }
    }
    // Blob first: a row never points at a missing blob.
    let blob = app.blobs.put(bytes)?;
    let record = PluginRecord { blob, ..record };
    let inserted = app.store.insert_plugin(&record).await?;
    Ok((record, inserted))
}

/// Register the bundled plugins that are not registered yet.
pub async fn ensure_bundled(app: &App) -> Result<()> {
    register_bundled(app, BUNDLED).await
}

/// Register those of `plugins` (bundled ones) not registered yet.
async fn register_bundled(app: &App, plugins: &[(&str, &[u8])]) -> Result<()> {
    // One registration at a time in this process: `serve` registers in the
    // background while a request may ask for a bundled plugin.
    static REGISTERING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = REGISTERING.lock().await;
    for (name, bytes) in plugins {
        let digest = sha256_digest(bytes);
        if app.store.plugin_by_digest(&digest).await?.is_none() {
            add(app, bytes, true, LimitOverrides::default()).await.with_context(|| format!("registering the bundled `{name}` plugin"))?;
        }
    }
    Ok(())
}

/// Resolve `name`, `name@version` or `sha256:<hex>`. A bare name picks the
/// highest version.
pub async fn resolve(app: &App, reference: &str) -> Result<PluginRecord> {
    if reference.starts_with("sha256:") {
        return app.store.plugin_by_digest(reference).await?.ok_or_else(|| anyhow::anyhow!("no plugin has the digest {reference}"));
    }
    let (name, version) = match reference.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (reference, None),
    };
    let mut candidates = app.store.plugins_named(name).await?;
    if candidates.is_empty() && BUNDLED.iter().any(|(n, _)| *n == name) {
        // A fresh workspace whose server is still registering its bundled
        // plugins in the background: wait for that.
        ensure_bundled(app).await?;
        candidates = app.store.plugins_named(name).await?;
    }
    if let Some(on_demand) = ON_DEMAND.iter().find(|(n, _)| *n == name)
        && !candidates.iter().any(|p| p.bundled)
    {
        register_bundled(app, std::slice::from_ref(on_demand)).await?;
        candidates = app.store.plugins_named(name).await?;
    }
    if candidates.is_empty() {
        let known: Vec<String> = app.store.list_plugins().await?.into_iter().map(|p| p.name).collect();
        bail!("no plugin named `{name}` is registered (known: {}); register one with `kiln plugin add FILE.wasm`", dedup(known).join(", "));
    }
    match version {
        Some(v) => candidates.into_iter().find(|p| p.version == v).ok_or_else(|| anyhow::anyhow!("`{name}` has no version {v}")),
        None => Ok(candidates.into_iter().max_by(|a, b| version_key(&a.version).cmp(&version_key(&b.version))).unwrap()),
    }
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

fn version_key(v: &str) -> Vec<u64> {
    v.split(['-', '+']).next().unwrap_or("").split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// Remove `name@version` (or a digest) if no run or model references it.
pub async fn remove(app: &App, reference: &str) -> Result<PluginRecord> {
    if !reference.contains('@') && !reference.starts_with("sha256:") {
        bail!("say which version to remove: `kiln plugin remove {reference}@VERSION`");
    }
    let record = resolve(app, reference).await?;
    app.store.delete_plugin(&record.digest).await.map_err(|e| match e {
        StoreError::Conflict(msg) => anyhow::anyhow!("cannot remove {}@{}: {msg}", record.name, record.version),
        other => other.into(),
    })?;
    Ok(record)
}

/// Compile (or fetch from cache) a registered plugin.
pub fn load(app: &App, record: &PluginRecord) -> Result<Arc<LoadedPlugin>> {
    let bytes = app.blobs.get(&record.blob).with_context(|| format!("reading plugin {}@{}", record.name, record.version))?;
    Ok(app.runtime()?.load(&record.digest, &bytes)?)
}

/// The limits a call to this plugin gets: the defaults, then what the
/// plugin was registered with, then the stage's own.
pub fn limits_for(record: &PluginRecord, stage: LimitOverrides) -> Limits {
    let mut l = Limits::default();
    if let Some(ms) = record.timeout_ms {
        l.timeout = Duration::from_millis(ms as u64);
    }
    if let Some(b) = record.memory_bytes {
        l.memory_bytes = b as u64;
    }
    if let Some(t) = stage.timeout {
        l.timeout = t;
    }
    if let Some(m) = stage.memory_bytes {
        l.memory_bytes = m;
    }
    l
}

/// Check params against the plugin's JSON Schema; the error names the field.
pub fn validate_params(record: &PluginRecord, params: &serde_json::Value) -> Result<(), String> {
    let schema: serde_json::Value = serde_json::from_str(&record.params_schema).map_err(|e| e.to_string())?;
    let validator = jsonschema::validator_for(&schema).map_err(|e| e.to_string())?;
    let errors: Vec<String> = validator
        .iter_errors(params)
        .map(|e| {
            let path = e.instance_path().to_string();
            let field = path.trim_start_matches('/').replace('/', ".");
            if field.is_empty() { e.to_string() } else { format!("`{field}`: {e}") }
        })
        .collect();
    if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
}
