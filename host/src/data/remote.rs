//! Remotes: where `kiln data push` sends blobs and `pull` fetches them,
//! configured in `kiln.toml` at the workspace root:
//!
//! ```toml
//! [remotes.backup]
//! url = "/mnt/shared/kiln-blobs"   # a folder (absolute, or relative to kiln.toml)
//!
//! [data]
//! remote = "backup"                # the default for push and pull
//! ```
//!
//! A remote holds blobs in the blob store's layout (`aa/bbbb…`), so it can
//! be read by any Kiln workspace. Transfers copy only what the other side
//! lacks, in parallel, and every byte is hashed on the way: a blob whose
//! content does not match its id is never stored on either side.

use crate::blobs::BlobStore;
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "kiln.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub remotes: BTreeMap<String, RemoteConfig>,
    #[serde(default)]
    pub data: DataConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    pub url: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// The remote `push` and `pull` use when none is named.
    pub remote: Option<String>,
}

impl Config {
    /// `kiln.toml` in `root`, or an empty config if there is none.
    pub fn load(root: &Path) -> Result<Self> {
        let file = root.join(CONFIG_FILE);
        match std::fs::read_to_string(&file) {
            Ok(text) => toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
        }
    }

    /// The remote called `name`, or the default one.
    pub fn remote(&self, root: &Path, name: Option<&str>) -> Result<Remote> {
        let name = match name.or(self.data.remote.as_deref()) {
            Some(n) => n,
            None if self.remotes.len() == 1 => self.remotes.keys().next().unwrap(),
            None if self.remotes.is_empty() => {
                bail!("no remote is configured: add one to {} ([remotes.NAME] url = \"/path/to/folder\")", root.join(CONFIG_FILE).display())
            }
            None => bail!(
                "several remotes are configured ({}); name one with --remote or set [data] remote = \"NAME\" in {CONFIG_FILE}",
                self.remotes.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        };
        let cfg = self.remotes.get(name).with_context(|| {
            format!("no remote `{name}` in {} (configured: {})", root.join(CONFIG_FILE).display(), self.remotes.keys().cloned().collect::<Vec<_>>().join(", "))
        })?;
        if cfg.url.contains("://") && !cfg.url.starts_with("file://") {
            bail!("remote `{name}`: `{}` is not supported yet; a remote is a folder path for now", cfg.url);
        }
        let path = PathBuf::from(cfg.url.trim_start_matches("file://"));
        let path = if path.is_absolute() { path } else { root.join(path) };
        Ok(Remote { name: name.to_string(), dir: path })
    }
}

/// A folder remote.
#[derive(Debug, Clone)]
pub struct Remote {
    pub name: String,
    pub dir: PathBuf,
}

impl Remote {
    fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(&id[..2]).join(&id[2..])
    }

    pub fn contains(&self, id: &str) -> bool {
        self.path_of(id).exists()
    }

    /// Copy a local blob to the remote, hashing it on the way; returns
    /// the bytes sent.
    pub fn push(&self, blobs: &BlobStore, id: &str) -> Result<u64> {
        let src = blobs.file(id)?;
        let dest = self.path_of(id);
        copy_verified(&src, &dest, id).with_context(|| format!("pushing {id} to remote `{}`", self.name))
    }

    /// Fetch a blob into the local store, hashing it on the way.
    pub fn pull(&self, blobs: &BlobStore, id: &str) -> Result<u64> {
        let src = self.path_of(id);
        if !src.exists() {
            bail!("remote `{}` ({}) does not have {id}", self.name, self.dir.display());
        }
        let mut writer = blobs.writer()?;
        let mut file = std::fs::File::open(&src).with_context(|| format!("reading {}", src.display()))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).with_context(|| format!("reading {}", src.display()))?;
            if n == 0 {
                break;
            }
            writer.write(&buf[..n])?;
        }
        let (got, size) = writer.finish()?;
        if got != id {
            bail!("remote `{}` holds corrupt data for {id} (its bytes hash to {got}); nothing was stored", self.name);
        }
        Ok(size)
    }
}

/// Copy `src` to `dest` through a temporary file beside it, hashing the
/// bytes; refuse (and leave nothing) if they do not hash to `id`.
fn copy_verified(src: &Path, dest: &Path, id: &str) -> Result<u64> {
    let dir = dest.parent().unwrap();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
    let result = (|| -> Result<u64> {
        let mut input = std::fs::File::open(src).with_context(|| format!("reading {}", src.display()))?;
        let mut output = std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            output.write_all(&buf[..n])?;
            total += n as u64;
        }
        output.sync_all()?;
        let got = hasher.finalize().to_hex().to_string();
        if got != id {
            bail!("{} is corrupt (its bytes hash to {got}); not sent", src.display());
        }
        std::fs::rename(&tmp, dest).with_context(|| format!("writing {}", dest.display()))?;
        Ok(total)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
