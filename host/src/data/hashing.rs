//! Hashing files with BLAKE3, refusing a file that changes underneath, and
//! the stamps (size, mtime, inode) that let `status` skip re-hashing.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What `status` compares to decide a file is unchanged without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i64,
    pub inode: u64,
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        Stamp { size: meta.len(), mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(), inode: meta.ino() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} changed while it was being read (size, modification time or inode moved); nothing was recorded for it — run the command again once it is no longer being written")]
    Changed { path: PathBuf },
}

pub fn stamp(path: &Path) -> Result<Stamp, HashError> {
    std::fs::metadata(path).map(|m| Stamp::of(&m)).map_err(|source| HashError::Read { path: path.into(), source })
}

/// Files at least this big are hashed on all cores; below it, one core
/// per file (many small files are spread over the cores instead).
const PARALLEL_FROM: u64 = 4 << 20;
const CHUNK: usize = 8 << 20;

/// BLAKE3 of a file's bytes, and the stamp they were read under. A file
/// whose stamp moves during the read, or whose length differs from its
/// stamp, is refused: its hash would describe no version of it.
pub fn hash_file(path: &Path, progress: &dyn Fn(u64)) -> Result<(String, Stamp), HashError> {
    let read_err = |source| HashError::Read { path: path.into(), source };
    let before = stamp(path)?;
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    let mut hasher = blake3::Hasher::new();
    let mut total = 0u64;
    if before.size >= PARALLEL_FROM {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = read_full(&mut file, &mut buf).map_err(read_err)?;
            if n == 0 {
                break;
            }
            hasher.update_rayon(&buf[..n]);
            total += n as u64;
            progress(n as u64);
        }
    } else {
        let mut buf = Vec::with_capacity(before.size as usize);
        file.read_to_end(&mut buf).map_err(read_err)?;
        hasher.update(&buf);
        total = buf.len() as u64;
        progress(total);
    }
    let after = stamp(path)?;
    if after != before || total != before.size {
        return Err(HashError::Changed { path: path.into() });
    }
    Ok((hasher.finalize().to_hex().to_string(), before))
}

/// Files below this size are read whole into memory, hashed, and written
/// into the store from that buffer: one open and read per file instead
/// of a hashing pass and a copying pass.
pub const SMALL: u64 = 1 << 20;

/// A small file's bytes and the stamp they were read under, refused (as
/// in [`hash_file`]) if it changed during the read.
pub fn read_small(path: &Path) -> Result<(Vec<u8>, Stamp), HashError> {
    let read_err = |source| HashError::Read { path: path.into(), source };
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    let before = Stamp::of(&file.metadata().map_err(read_err)?);
    let mut buf = Vec::with_capacity(before.size as usize);
    file.read_to_end(&mut buf).map_err(read_err)?;
    let after = Stamp::of(&file.metadata().map_err(read_err)?);
    if after != before || buf.len() as u64 != before.size {
        return Err(HashError::Changed { path: path.into() });
    }
    Ok((buf, before))
}

/// Fill `buf` unless the file ends first; returns the bytes read.
pub(crate) fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_files_hash_as_blake3_does() {
        let dir = tempfile::tempdir().unwrap();
        for size in [0usize, 5, (PARALLEL_FROM as usize) + CHUNK + 17] {
            let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let path = dir.path().join(format!("f{size}"));
            std::fs::write(&path, &bytes).unwrap();
            let seen = std::cell::Cell::new(0);
            let (hash, stamp) = hash_file(&path, &|n| seen.set(seen.get() + n)).unwrap();
            assert_eq!(hash, blake3::hash(&bytes).to_hex().to_string());
            assert_eq!((stamp.size, seen.get()), (size as u64, size as u64));
        }
        let e = hash_file(&dir.path().join("missing"), &|_| {}).unwrap_err().to_string();
        assert!(e.contains("missing") && e.contains("No such file"), "{e}");
    }

    #[test]
    fn a_file_growing_during_the_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("growing");
        std::fs::write(&path, vec![1u8; (PARALLEL_FROM as usize) * 4]).unwrap();
        // Append from the progress callback, i.e. in the middle of the read.
        let appended = std::cell::Cell::new(false);
        let grow = |_| {
            if !appended.replace(true) {
                use std::io::Write;
                std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"more").unwrap();
            }
        };
        let e = hash_file(&path, &grow).unwrap_err();
        assert!(matches!(e, HashError::Changed { .. }), "{e}");
    }
}
