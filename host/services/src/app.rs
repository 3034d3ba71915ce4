//! The application context every service works in: the workspace, the
//! store, the blob store and the plugin runtime.

use crate::blobs::BlobStore;
use crate::runtime::Runtime;
use crate::store::Store;
use crate::workspace::Workspace;
use anyhow::{Context, Result};
use std::sync::{Arc, OnceLock};

#[derive(Clone)]
pub struct App {
    pub workspace: Workspace,
    pub store: Store,
    pub blobs: BlobStore,
    /// `[limits]` of the workspace's `kiln.toml`.
    pub limits: crate::limits::SizeLimits,
    /// Where MLflow clients write the artifacts of an experiment created
    /// without a location (`kiln serve --default-artifact-root`, as
    /// `mlflow server` has it): the experiment's location becomes
    /// `ROOT/<id>`. `None`: they upload through Kiln (`mlflow-artifacts:/`).
    pub default_artifact_root: Option<String>,
    /// Model versions MLflow clients create must have a source this
    /// matches ([`App::set_version_source_pattern`]).
    pub version_source_pattern: Option<regex::Regex>,
    /// Warm instances of the deployments this process serves.
    pub pools: Arc<crate::serving::pool::Pools>,
    /// What this process served, per deployment version, for rollouts.
    pub rollout_stats: Arc<crate::serving::stats::Recorder>,
    /// Started on first use (see [`App::runtime`]).
    runtime: Arc<OnceLock<Runtime>>,
}

impl App {
    /// Open (creating it if asked) the workspace and everything in it.
    pub async fn open(create: bool) -> Result<Self> {
        let workspace = Workspace::locate(create)?;
        Self::open_at(workspace).await
    }

    pub async fn open_at(workspace: Workspace) -> Result<Self> {
        let limits = crate::data::remote::Config::load(workspace.root())?.limits;
        let store = Store::connect(&workspace.database_url()).await?;
        let blobs = BlobStore::new(workspace.blob_dir());
        Ok(App {
            workspace,
            store,
            blobs,
            limits,
            default_artifact_root: None,
            version_source_pattern: None,
            pools: Default::default(),
            rollout_stats: Default::default(),
            runtime: Arc::new(OnceLock::new()),
        })
    }

    /// Only model versions whose source `pattern` finds a match in may be
    /// created, as MLflow's server allows with
    /// `MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX` (say, only
    /// `^s3://models-bucket/`).
    pub fn set_version_source_pattern(&mut self, pattern: &str) -> Result<()> {
        let compiled =
            regex::Regex::new(pattern).with_context(|| format!("the model-version source pattern `{pattern}` is not a regular expression"))?;
        self.version_source_pattern = Some(compiled);
        Ok(())
    }

    /// The plugin runtime, started the first time something runs a
    /// plugin: commands that run none (`kiln data`, `kiln runs`, …) skip
    /// the engine and its epoch-ticker thread. Two callers racing here may
    /// both build one; the loser's is dropped (its ticker stops).
    pub fn runtime(&self) -> Result<&Runtime> {
        if let Some(r) = self.runtime.get() {
            return Ok(r);
        }
        let r = Runtime::new(self.workspace.component_cache_dir()).context("starting the plugin runtime")?;
        Ok(self.runtime.get_or_init(|| r))
    }
}
