//! The local hash cache: path → (stamp, hash). It lets `status` and `add`
//! recognise an unchanged file by its size, mtime and inode without reading
//! it. It is this machine's knowledge of its own files, so it lives in
//! `.kiln/data/state.bin`, not in the (possibly shared) database.
//!
//! Keys are paths relative to the workspace root (a moved workspace keeps
//! its cache; inodes stay). The file is a flat binary list, read in one go:
//! `status` over 10,000 files loads it in about a millisecond, where JSON
//! took several. A file that does not parse is ignored: a lost cache only
//! costs re-hashing.

use super::hashing::{HashError, Stamp, hash_file};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const MAGIC: &[u8; 8] = b"KILNST01";
const HASH_LEN: usize = 64;

pub struct State {
    file: PathBuf,
    root: PathBuf,
    entries: Mutex<HashMap<String, (Stamp, String)>>,
    dirty: std::sync::atomic::AtomicBool,
}

impl State {
    /// The cache of the workspace whose `.kiln` folder is `kiln_dir`.
    pub fn load(kiln_dir: &Path) -> Self {
        let file = kiln_dir.join("data").join("state.bin");
        let root = kiln_dir.parent().unwrap_or(Path::new("/"));
        let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        let entries = std::fs::read(&file).ok().and_then(|b| decode(&b)).unwrap_or_default();
        State { file, root, entries: Mutex::new(entries), dirty: false.into() }
    }

    fn key(&self, path: &Path) -> String {
        path.strip_prefix(&self.root).unwrap_or(path).to_string_lossy().into_owned()
    }

    /// The hash of `path`, whose stamp is `now`: from the cache when the
    /// stamp is unchanged, else read (and remembered).
    pub fn hash(&self, path: &Path, now: Stamp, progress: &dyn Fn(u64)) -> Result<(String, Stamp), HashError> {
        if let Some(h) = self.cached(path, &now) {
            progress(now.size);
            return Ok((h, now));
        }
        let (hash, s) = hash_file(path, progress)?;
        self.remember(path, s, &hash);
        Ok((hash, s))
    }

    /// The cached hash if the file's stamp still matches, without reading.
    pub fn cached(&self, path: &Path, now: &Stamp) -> Option<String> {
        let key = self.key(path);
        self.entries.lock().unwrap().get(&key).filter(|(s, _)| s == now).map(|(_, h)| h.clone())
    }

    pub fn remember(&self, path: &Path, stamp: Stamp, hash: &str) {
        let key = self.key(path);
        self.entries.lock().unwrap().insert(key, (stamp, hash.to_string()));
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
        let bytes = encode(&self.entries.lock().unwrap());
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.file).with_context(|| format!("writing {}", self.file.display()))?;
        Ok(())
    }
}

/// MAGIC, then per entry: key length (u32 LE), key, size, mtime (ns),
/// inode (u64/i64 LE), and the 64-character hex hash.
fn encode(entries: &HashMap<String, (Stamp, String)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + entries.len() * (4 + 64 + 24 + HASH_LEN));
    out.extend_from_slice(MAGIC);
    for (key, (stamp, hash)) in entries {
        if hash.len() != HASH_LEN {
            continue;
        }
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&stamp.size.to_le_bytes());
        out.extend_from_slice(&stamp.mtime_ns.to_le_bytes());
        out.extend_from_slice(&stamp.inode.to_le_bytes());
        out.extend_from_slice(hash.as_bytes());
    }
    out
}

fn decode(bytes: &[u8]) -> Option<HashMap<String, (Stamp, String)>> {
    let mut rest = bytes.strip_prefix(MAGIC)?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap());
    let mut entries = HashMap::new();
    while let Some(len) = take(4) {
        let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
        let key = std::str::from_utf8(take(len)?).ok()?.to_string();
        let size = word(take(8)?);
        let mtime_ns = word(take(8)?) as i64;
        let inode = word(take(8)?);
        let hash = std::str::from_utf8(take(HASH_LEN)?).ok()?.to_string();
        entries.insert(key, (Stamp { size, mtime_ns, inode }, hash));
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_round_trips_and_a_damaged_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let kiln = dir.path().join(".kiln");
        let file = dir.path().canonicalize().unwrap().join("data.csv");
        std::fs::write(&file, "a\n1\n").unwrap();
        let stamp = super::super::hashing::stamp(&file).unwrap();
        let state = State::load(&kiln);
        let (hash, _) = state.hash(&file, stamp, &|_| {}).unwrap();
        assert_eq!(hash, blake3::hash(b"a\n1\n").to_hex().as_str());
        state.save().unwrap();

        let again = State::load(&kiln);
        assert_eq!(again.cached(&file, &stamp), Some(hash.clone()));
        let moved = Stamp { size: stamp.size + 1, ..stamp };
        assert_eq!(again.cached(&file, &moved), None, "a different stamp is a miss");

        let bytes = std::fs::read(kiln.join("data/state.bin")).unwrap();
        std::fs::write(kiln.join("data/state.bin"), &bytes[..bytes.len() - 3]).unwrap();
        assert_eq!(State::load(&kiln).cached(&file, &stamp), None);
    }
}
