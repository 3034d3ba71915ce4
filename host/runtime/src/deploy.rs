//! Calling a deployer with the capabilities its operator granted.
//!
//! Every other plugin runs with nothing: no directory, no socket, no
//! variable. A deployer has to put something somewhere, so it may be
//! handed exactly what [`Grants`] names: one directory, read-write, as
//! `/out` (opened by wasmtime-wasi through cap-std, so no path the plugin
//! writes — `..`, an absolute path, a symlink — resolves outside it), and
//! the deployed version's own files, read-only, as `/artifacts`.
//! Outbound HTTP reaches the `host:port`s granted (`wasi:http`, checked
//! per request in [`super::http`]); raw sockets stay denied.

use super::bindings::v0_1_0 as v1;
use super::call::{self, CallReport};
use super::error::RuntimeError;
use super::limits::Limits;
use super::{LoadedPlugin, Runtime, WorldPre, convert, wrong_kind};
use kiln_types::PluginKind;
use std::path::PathBuf;
use v1::deployer::exports::kiln::plugin::deployer as w;
use wasmtime_wasi::{FsPerms, WasiCtx};

/// Where a deployer sees its granted directory.
pub const OUT_DIR: &str = "/out";
/// Where a deployer sees the deployed version's files.
pub const ARTIFACTS_DIR: &str = "/artifacts";

/// What a deployer may touch; nothing else is reachable.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Preopened read-write at [`OUT_DIR`].
    pub dir: Option<PathBuf>,
    /// Preopened read-only at [`ARTIFACTS_DIR`].
    pub artifacts: Option<PathBuf>,
    /// `host:port`s reachable through wasi:http (lower case).
    pub http: Vec<String>,
}

/// What the host asks a deployer to deploy.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    pub deployment: String,
    pub model_name: String,
    pub model_version: u32,
    /// `sha256:<hex>` of the model bytes.
    pub model_digest: String,
    pub traffic_percent: u8,
}

/// What a deployer made of it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployOutcome {
    pub status: String,
    pub endpoint: Option<String>,
    pub manifest: String,
}

/// Longest status word and manifest a deployer may return.
pub const MAX_STATUS: usize = 64;
pub const MAX_MANIFEST: usize = 1 << 20;

impl Runtime {
    /// Call `deploy` on a fresh instance that sees only `grants`.
    pub async fn deploy(
        &self,
        plugin: &LoadedPlugin,
        request: &DeployRequest,
        params: &str,
        grants: &Grants,
        limits: &Limits,
    ) -> Result<(DeployOutcome, CallReport), RuntimeError> {
        let WorldPre::Deployer(pre) = &plugin.pre else { return Err(wrong_kind(plugin, PluginKind::Deployer)) };
        let mut builder = WasiCtx::builder();
        if let Some(dir) = &grants.dir {
            builder
                .preopened_dir(dir, OUT_DIR, FsPerms::ReadWrite)
                .map_err(|e| RuntimeError::Grant(format!("the granted directory {} cannot be opened: {e:#}", dir.display())))?;
        }
        if let Some(dir) = &grants.artifacts {
            builder
                .preopened_dir(dir, ARTIFACTS_DIR, FsPerms::ReadOnly)
                .map_err(|e| RuntimeError::Grant(format!("the version's files at {} cannot be opened: {e:#}", dir.display())))?;
        }
        let mut store = call::store_with(&self.engine, limits, None, &mut builder);
        let deadline = store.data().deadline;
        store.data_mut().http_allowed = super::http::HttpAllowList { allowed: grants.http.clone(), deadline: Some(deadline) };
        let wit_request = w::DeployRequest {
            deployment: request.deployment.clone(),
            model_name: request.model_name.clone(),
            model_version: request.model_version,
            model_digest: request.model_digest.clone(),
            traffic_percent: request.traffic_percent,
        };
        let result = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.kiln_plugin_deployer().call_deploy(&mut store, &wit_request, params).await
        }
        .await;
        let out = call::settle(&mut store, result).await?.map_err(convert::plugin_error)?;
        let outcome = check(out)?;
        Ok((outcome, call::report(&mut store)))
    }
}

fn check(o: w::DeployOutcome) -> Result<DeployOutcome, RuntimeError> {
    if o.status.trim().is_empty() || o.status.len() > MAX_STATUS {
        return Err(RuntimeError::BadOutput(format!("the status must be a word of 1 to {MAX_STATUS} bytes, not {:?}", cut(&o.status))));
    }
    if o.manifest.len() > MAX_MANIFEST {
        return Err(RuntimeError::BadOutput(format!("the manifest is {} bytes; at most {MAX_MANIFEST} are kept", o.manifest.len())));
    }
    if o.endpoint.as_ref().is_some_and(|e| e.len() > 2048) {
        return Err(RuntimeError::BadOutput("the endpoint is longer than 2048 bytes".into()));
    }
    Ok(DeployOutcome { status: o.status, endpoint: o.endpoint, manifest: o.manifest })
}

fn cut(s: &str) -> String {
    s.chars().take(80).collect()
}
