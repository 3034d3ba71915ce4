//! The local hash cache: path → (stamp, hash). It lets `status` and `add`
//! recognise an unchanged file by its size, mtime and inode without reading
//! it. It is this machine's knowledge of its own files, so it lives in
//! `.kiln/data/state.json`, not in the (possibly shared) database.

use super::hashing::{HashError, Stamp, hash_file, stamp};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct State {
    file: PathBuf,
    entries: Mutex<HashMap<String, (Stamp, String)>>,
    dirty: std::sync::atomic::AtomicBool,
}

impl State {
    pub fn load(kiln_dir: &Path) -> Self {
        let file = kiln_dir.join("data").join("state.json");
        // A missing or unreadable cache only costs re-hashing.
        let entries = std::fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        State { file, entries: Mutex::new(entries), dirty: false.into() }
    }

    /// The hash of `path`: from the cache when its stamp is unchanged,
    /// else read (and remembered).
    pub fn hash(&self, path: &Path, progress: &dyn Fn(u64)) -> Result<(String, Stamp), HashError> {
        let key = path.to_string_lossy().into_owned();
        let now = stamp(path)?;
        if let Some((s, h)) = self.entries.lock().unwrap().get(&key) {
            if *s == now {
                progress(now.size);
                return Ok((h.clone(), now));
            }
        }
        let (hash, s) = hash_file(path, progress)?;
        self.remember(path, s, &hash);
        Ok((hash, s))
    }

    /// The cached hash if the file's stamp still matches, without reading.
    pub fn cached(&self, path: &Path, now: &Stamp) -> Option<String> {
        let key = path.to_string_lossy();
        self.entries.lock().unwrap().get(key.as_ref()).filter(|(s, _)| s == now).map(|(_, h)| h.clone())
    }

    pub fn remember(&self, path: &Path, stamp: Stamp, hash: &str) {
        self.entries.lock().unwrap().insert(path.to_string_lossy().into_owned(), (stamp, hash.to_string()));
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Write the cache back (atomically) if anything was learned.
    pub fn save(&self) -> Result<()> {
        if !self.dirty.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let dir = self.file.parent().unwrap();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = self.file.with_extension(format!("tmp-{}", std::process::id()));
        let bytes = serde_json::to_vec(&*self.entries.lock().unwrap())?;
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.file).with_context(|| format!("writing {}", self.file.display()))?;
        Ok(())
    }
}
