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

use crate::hashing::{HashError, Stamp, hash_file};
use anyhow::{Context, Result};
use std::collections::HashMap;

/// Entries by key; foldhash (already built for arrow) hashes the 10,000
/// keys of a `status` several times faster than the default SipHash.
type Map = HashMap<String, (Stamp, [u8; HASH_LEN]), foldhash::fast::RandomState>;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

const MAGIC: &[u8; 8] = b"KILNST01";
const HASH_LEN: usize = 64;

pub struct State {
    file: PathBuf,
    root: PathBuf,
    // Read on all cores at once by `status`: a read lock does not serialise them.
    entries: RwLock<Map>,
    dirty: std::sync::atomic::AtomicBool,
}

impl State {
    /// The cache of the workspace whose `.kiln` folder is `kiln_dir`.
    pub fn load(kiln_dir: &Path) -> Self {
        let file = kiln_dir.join("data").join("state.bin");
        let root = kiln_dir.parent().unwrap_or(Path::new("/"));
        let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        let entries = std::fs::read(&file).ok().and_then(|b| decode(&b)).unwrap_or_default();
        State { file, root, entries: RwLock::new(entries), dirty: false.into() }
    }

    /// The cache key of `path`: relative to the workspace root. Keys of
    /// the files in a folder are the folder's key, `/`, and their relative
    /// path (see [`View::holds`]).
    pub fn key(&self, path: &Path) -> String {
        path.strip_prefix(&self.root).unwrap_or(path).to_string_lossy().into_owned()
    }

    /// The hash of `path`, whose stamp is `now`: from the cache when the
    /// stamp is unchanged, else read (and remembered).
    pub fn hash(&self, path: &Path, now: Stamp, progress: &(dyn Fn(u64) + Sync)) -> Result<(String, Stamp), HashError> {
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
        let entries = self.entries.read().unwrap();
        let (_, h) = entries.get(&self.key(path)).filter(|(s, _)| s == now)?;
        Some(String::from_utf8_lossy(h).into_owned())
    }

    /// A read view for many lookups in a row (one lock for all of them).
    /// Drop it before anything is remembered.
    pub fn view(&self) -> View<'_> {
        View(self.entries.read().unwrap())
    }

    pub fn remember(&self, path: &Path, stamp: Stamp, hash: &str) {
        let Ok(hash) = <[u8; HASH_LEN]>::try_from(hash.as_bytes()) else { return };
        let key = self.key(path);
        self.entries.write().unwrap().insert(key, (stamp, hash));
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
        let bytes = encode(&self.entries.read().unwrap());
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.file).with_context(|| format!("writing {}", self.file.display()))?;
        Ok(())
    }
}

pub struct View<'a>(std::sync::RwLockReadGuard<'a, Map>);

impl View<'_> {
    /// Whether the file under `key`, whose stamp is `now`, holds `hash`;
    /// `None` when the cache cannot tell (no entry, or another stamp).
    pub fn holds(&self, key: &str, now: &Stamp, hash: &str) -> Option<bool> {
        self.0.get(key).filter(|(s, _)| s == now).map(|(_, h)| h == hash.as_bytes())
    }
}

/// MAGIC, then per entry: key length (u32 LE), key, size, mtime (ns),
/// inode (u64/i64 LE), and the 64-character hex hash.
fn encode(entries: &Map) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + entries.len() * (4 + 64 + 24 + HASH_LEN));
    out.extend_from_slice(MAGIC);
    for (key, (stamp, hash)) in entries {
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&stamp.size.to_le_bytes());
        out.extend_from_slice(&stamp.mtime_ns.to_le_bytes());
        out.extend_from_slice(&stamp.inode.to_le_bytes());
        out.extend_from_slice(hash);
    }
    out
}

fn decode(bytes: &[u8]) -> Option<Map> {
    let mut rest = bytes.strip_prefix(MAGIC)?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap());
    // An entry is about 100 bytes with a short path: one allocation for the map.
    let mut entries = Map::with_capacity_and_hasher(bytes.len() / 96, Default::default());
    while let Some(len) = take(4) {
        let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
        let key = std::str::from_utf8(take(len)?).ok()?.to_string();
        let size = word(take(8)?);
        let mtime_ns = word(take(8)?) as i64;
        let inode = word(take(8)?);
        let hash: [u8; HASH_LEN] = take(HASH_LEN)?.try_into().ok()?;
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
        let stamp = crate::hashing::stamp(&file).unwrap();
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
