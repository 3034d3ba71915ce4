//! Deploying through a deployer plugin (`kiln deploy NAME --target
//! PLUGIN`): the plugin gets the deployment's description, the version's
//! files read-only and, if the operator granted one, a directory to write
//! in ([`crate::runtime::Grants`]); what it answers is recorded with the
//! deployment and in its history.
//!
//! Grants come from two places: the deployment (`--allow-dir`) and the
//! plugin (`kiln plugin grant`), so an operator can trust a deployer once
//! for every deployment it makes. A deployment's directory wins over the
//! plugin's; a plugin has at most one.

use crate::app::App;
use crate::plugins::{self, LimitOverrides};
use crate::runtime::{DeployOutcome, DeployRequest, Grants};
use crate::store::{DeployTargetRecord, DeploymentRecord, PluginRecord};
use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file of the version's description in a deployer's `/artifacts`.
pub const VERSION_FILE: &str = "version.json";
pub const MODEL_FILE: &str = "model.bin";
pub const PLUGIN_FILE: &str = "plugin.wasm";

/// Capabilities granted to a deployer, as stored (JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GrantSet {
    /// An absolute directory, handed over read-write as `/out`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// `host:port`s it may send HTTP requests to (lower case).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<String>,
}

impl GrantSet {
    /// Check what an operator typed: the directory must exist; it is kept
    /// absolute so the grant means the same from any working directory.
    pub fn new(dir: Option<&Path>, http: &[String]) -> Result<Self> {
        let http = http.iter().map(|h| check_authority(h)).collect::<Result<Vec<_>>>()?;
        let dir = match dir {
            None => None,
            Some(d) => {
                let meta = std::fs::metadata(d).with_context(|| format!("--allow-dir {}", d.display()))?;
                if !meta.is_dir() {
                    bail!("--allow-dir {}: not a directory", d.display());
                }
                let abs = std::fs::canonicalize(d).with_context(|| format!("--allow-dir {}", d.display()))?;
                Some(abs.to_str().ok_or_else(|| anyhow!("--allow-dir {}: the path is not UTF-8", d.display()))?.to_string())
            }
        };
        Ok(GrantSet { dir, http })
    }

    fn parse(json: &str) -> Result<Self> {
        serde_json::from_str(json).with_context(|| format!("stored grants `{json}`"))
    }

    /// This deployment's grants over the plugin's.
    fn over(self, plugin: GrantSet) -> GrantSet {
        let mut http = self.http;
        for h in plugin.http {
            if !http.contains(&h) {
                http.push(h);
            }
        }
        GrantSet { dir: self.dir.or(plugin.dir), http }
    }
}

/// `HOST:PORT` as granted: a port, no scheme, no path, no wildcard.
fn check_authority(text: &str) -> Result<String> {
    let bad = || anyhow!("--allow-http `{text}` is not HOST:PORT (for example hooks.example.com:443 or 127.0.0.1:9000)");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 || host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || "-.:".contains(c)) {
        return Err(bad());
    }
    let host = host.to_ascii_lowercase();
    Ok(if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") })
}

/// What `kiln deploy … --target` asks for.
#[derive(Debug, Clone)]
pub struct TargetOptions {
    /// `name`, `name@version` or a digest.
    pub plugin: String,
    pub params: serde_json::Value,
    pub grants: GrantSet,
}

/// The version's description a deployer reads from `/artifacts`, and a
/// bundle's manifest carries on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionFile {
    pub deployment: String,
    pub model: ModelPart,
    pub plugin: PluginPart,
    pub serving: ServingPart,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelPart {
    pub name: String,
    pub version: i64,
    /// `sha256:<hex>` of `model.bin`.
    pub digest: String,
    /// The input the model takes (`{"inputs": [...]}`).
    pub signature: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginPart {
    pub name: String,
    pub version: String,
    /// `sha256:<hex>` of `plugin.wasm`.
    pub digest: String,
    #[serde(default)]
    pub timeout_ms: Option<i64>,
    #[serde(default)]
    pub memory_bytes: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServingPart {
    pub instances: i64,
    #[serde(default)]
    pub timeout_ms: Option<i64>,
    #[serde(default)]
    pub max_rows: Option<i64>,
}

/// Grant `grants` to plugin `plugin` (a name) for all its deployments;
/// `None` takes them back.
pub async fn grant(app: &App, plugin: &str, grants: Option<&GrantSet>) -> Result<()> {
    let record = plugins::resolve(app, plugin).await?;
    if record.kind != "deployer" {
        bail!("{}@{} is a {}; capabilities are granted to deployers only", record.name, record.version, record.kind);
    }
    let json = grants.map(serde_json::to_string).transpose()?;
    app.store.set_plugin_grants(&record.name, json.as_deref()).await?;
    Ok(())
}

/// What plugin `name` was granted for all its deployments.
pub async fn plugin_grants(app: &App, name: &str) -> Result<GrantSet> {
    app.store.plugin_grants(name).await?.map(|g| GrantSet::parse(&g)).transpose().map(Option::unwrap_or_default)
}

/// Deploy deployment `name` (as the store has it) through `options`'
/// plugin and record what it answered.
pub async fn deploy_to(app: &App, name: &str, options: &TargetOptions) -> Result<(DeployTargetRecord, DeployOutcome)> {
    let d = app.store.deployment(name).await?;
    if d.canary.is_some() || d.shadow.is_some() {
        bail!(
            "deployment `{name}` runs a canary or a shadow; rollouts are `kiln serve`'s, so a deployment with \
             a target serves one version (end the rollout first with --promote, --rollback or --no-shadow)"
        );
    }
    let plugin = plugins::resolve(app, &options.plugin).await?;
    if plugin.kind != "deployer" {
        bail!("{}@{} is a {}, not a deployer; --target takes a deployer plugin", plugin.name, plugin.version, plugin.kind);
    }
    if !options.params.is_object() {
        bail!("the deployer's params must be a JSON object");
    }
    plugins::validate_params(&plugin, &options.params).map_err(|e| anyhow!("params of {}: {e}", plugin.name))?;
    let granted = options.grants.clone().over(plugin_grants(app, &plugin.name).await?);
    let (outcome, version) = call(app, &d, &plugin, &options.params, &granted).await?;
    let record = DeployTargetRecord {
        deployment: d.name.clone(),
        plugin_name: plugin.name.clone(),
        plugin_digest: plugin.digest.clone(),
        params: options.params.to_string(),
        grants: serde_json::to_string(&options.grants)?,
        model_name: d.model_name.clone(),
        version: version.model.version,
        status: outcome.status.clone(),
        endpoint: outcome.endpoint.clone(),
        manifest: outcome.manifest.clone(),
        updated_at: 0,
    };
    let reason = match &outcome.endpoint {
        Some(e) => format!("{}@{} says {} at {e}", plugin.name, plugin.version, outcome.status),
        None => format!("{}@{} says {}", plugin.name, plugin.version, outcome.status),
    };
    Ok((app.store.put_deploy_target(&record, &reason).await?, outcome))
}

/// Deploy `name` again where it was deployed last (after its version
/// changed), with the plugin, params and grants of then. `None`: it has
/// no target.
pub async fn redeploy(app: &App, name: &str) -> Result<Option<(DeployTargetRecord, DeployOutcome)>> {
    let Some(t) = app.store.deploy_target(name).await? else { return Ok(None) };
    let options = TargetOptions {
        plugin: t.plugin_digest.clone(),
        params: serde_json::from_str(&t.params).with_context(|| format!("the stored params of {name}'s target"))?,
        grants: GrantSet::parse(&t.grants)?,
    };
    deploy_to(app, name, &options).await.map(Some)
}

/// Call the deployer with the version's files in a fresh read-only folder.
async fn call(
    app: &App,
    d: &DeploymentRecord,
    plugin: &PluginRecord,
    params: &serde_json::Value,
    granted: &GrantSet,
) -> Result<(DeployOutcome, VersionFile)> {
    let version = app.store.version(&d.model_name, d.version).await?;
    let (trainer, model) = super::servable(app, &version).await?;
    let trainer_bytes = app.blobs.get(&trainer.blob).with_context(|| format!("reading plugin {}@{}", trainer.name, trainer.version))?;
    let described = VersionFile {
        deployment: d.name.clone(),
        model: ModelPart {
            name: version.name.clone(),
            version: version.version,
            digest: plugins::sha256_digest(&model),
            signature: serde_json::from_str(&version.signature).unwrap_or(serde_json::json!({})),
        },
        plugin: PluginPart {
            name: trainer.name.clone(),
            version: trainer.version.clone(),
            digest: trainer.digest.clone(),
            timeout_ms: trainer.timeout_ms,
            memory_bytes: trainer.memory_bytes,
        },
        serving: ServingPart { instances: d.instances, timeout_ms: d.timeout_ms, max_rows: d.max_rows },
    };
    let artifacts = Artifacts::write(app, &described, &model, &trainer_bytes)?;
    let request = DeployRequest {
        deployment: d.name.clone(),
        model_name: d.model_name.clone(),
        model_version: u32::try_from(d.version).unwrap_or(u32::MAX),
        model_digest: described.model.digest.clone(),
        traffic_percent: 100,
    };
    let grants = Grants { dir: granted.dir.as_ref().map(PathBuf::from), artifacts: Some(artifacts.0.clone()), http: granted.http.clone() };
    let loaded = plugins::load(app, plugin)?;
    let limits = plugins::limits_for(plugin, LimitOverrides::default());
    let (outcome, _report) = app
        .runtime()?
        .deploy(&loaded, &request, &params.to_string(), &grants, &limits)
        .await
        .map_err(|e| anyhow!("{}@{} failed to deploy `{}`: {e}", plugin.name, plugin.version, d.name))?;
    Ok((outcome, described))
}

/// A deployer's `/artifacts`: removed when the call is over.
struct Artifacts(PathBuf);

impl Artifacts {
    fn write(app: &App, described: &VersionFile, model: &[u8], plugin: &[u8]) -> Result<Self> {
        let dir = app.workspace.dir.join("tmp").join(format!("deploy-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let folder = Artifacts(dir);
        let write = |name: &str, bytes: &[u8]| {
            let path = folder.0.join(name);
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
        };
        write(MODEL_FILE, model)?;
        write(PLUGIN_FILE, plugin)?;
        write(VERSION_FILE, serde_json::to_string_pretty(described)?.as_bytes())?;
        Ok(folder)
    }
}

impl Drop for Artifacts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
