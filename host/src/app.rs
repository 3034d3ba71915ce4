//! The application context every service works in: the workspace, the
//! store, the blob store and the plugin runtime.

use crate::blobs::BlobStore;
use crate::runtime::Runtime;
use crate::store::Store;
use crate::workspace::Workspace;
use anyhow::{Context, Result};
use std::sync::Arc;

#[derive(Clone)]
pub struct App {
    pub workspace: Workspace,
    pub store: Store,
    pub blobs: BlobStore,
    pub runtime: Arc<Runtime>,
}

impl App {
    /// Open (creating it if asked) the workspace and everything in it.
    pub async fn open(create: bool) -> Result<Self> {
        let workspace = Workspace::locate(create)?;
        Self::open_at(workspace).await
    }

    pub async fn open_at(workspace: Workspace) -> Result<Self> {
        let store = Store::connect(&workspace.database_url()).await?;
        let blobs = BlobStore::new(workspace.blob_dir());
        let runtime = Arc::new(Runtime::new(workspace.component_cache_dir()).context("starting the plugin runtime")?);
        Ok(App { workspace, store, blobs, runtime })
    }
}
