//! Where Kiln keeps its state: the nearest `.kiln/` folder upwards from the
//! current directory (as git finds `.git`), or the folder `KILN_HOME` names.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

pub const DIR_NAME: &str = ".kiln";

#[derive(Debug, Clone)]
pub struct Workspace {
    /// The `.kiln` folder itself.
    pub dir: PathBuf,
    /// Its own SQLite database whatever `KILN_DATABASE_URL` says (a
    /// private workspace, as `kiln serve --bundle` makes).
    pub own_database: bool,
}

impl Workspace {
    /// Find the workspace; with `create`, make `./.kiln` when there is none
    /// (as MLflow makes `mlruns` on first use).
    pub fn locate(create: bool) -> Result<Self> {
        if let Some(home) = std::env::var_os("KILN_HOME").filter(|v| !v.is_empty()) {
            let dir = PathBuf::from(home);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating KILN_HOME {}", dir.display()))?;
            return Ok(Workspace { dir, own_database: false });
        }
        let cwd = std::env::current_dir().context("reading the current directory")?;
        for ancestor in cwd.ancestors() {
            let candidate = ancestor.join(DIR_NAME);
            if candidate.is_dir() {
                return Ok(Workspace { dir: candidate, own_database: false });
            }
        }
        if !create {
            anyhow::bail!("no Kiln workspace here or above {}; run `kiln init` to create one", cwd.display());
        }
        Self::init(&cwd)
    }

    /// Create `<at>/.kiln`; an existing one is kept as it is.
    pub fn init(at: &Path) -> Result<Self> {
        let dir = at.join(DIR_NAME);
        std::fs::create_dir_all(dir.join("blobs")).with_context(|| format!("creating {}", dir.display()))?;
        let ignore = dir.join(".gitignore");
        if !ignore.exists() {
            // The workspace's state is not source: keep it out of git.
            std::fs::write(&ignore, "*\n").with_context(|| format!("writing {}", ignore.display()))?;
        }
        Ok(Workspace { dir, own_database: false })
    }

    /// A workspace of its own in `at` (created), which no environment
    /// variable points elsewhere.
    pub fn private(at: &Path) -> Result<Self> {
        Ok(Workspace { own_database: true, ..Self::init(at)? })
    }

    /// The folder the workspace belongs to (where relative paths resolve).
    pub fn root(&self) -> &Path {
        self.dir.parent().unwrap_or(&self.dir)
    }

    pub fn database_url(&self) -> String {
        match std::env::var("KILN_DATABASE_URL") {
            Ok(url) if !url.is_empty() && !self.own_database => url,
            _ => format!("sqlite://{}?mode=rwc", self.dir.join("kiln.db").display()),
        }
    }

    pub fn blob_dir(&self) -> PathBuf {
        self.dir.join("blobs")
    }

    pub fn component_cache_dir(&self) -> PathBuf {
        self.dir.join("cache").join("components")
    }
}
