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

    /// The same from a raw `stat` (the directory walk's `fstatat`).
    pub fn of_stat(st: &rustix::fs::Stat) -> Self {
        Stamp { size: st.st_size as u64, mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec as i64, inode: st.st_ino }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("cannot read {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error(
        "{path} changed while it was being read (size, modification time or inode moved); nothing was recorded for it — run the command again once it is no longer being written"
    )]
    Changed { path: PathBuf },
}

pub fn stamp(path: &Path) -> Result<Stamp, HashError> {
    std::fs::metadata(path).map(|m| Stamp::of(&m)).map_err(|source| HashError::Read { path: path.into(), error: source })
}

/// Files at least this big are hashed on all cores; below it, one core
/// per file (many small files are spread over the cores instead).
const PARALLEL_FROM: u64 = 4 << 20;
/// A large file is hashed as BLAKE3 subtrees of at most this many bytes
/// (a power of two of chunks), each read and hashed by one core.
const LEAF: u64 = 2 << 20;
/// Each core reads its subtree in pieces this big: small enough to stay
/// in its cache between the read's copy and the hash.
const PIECE: usize = 256 << 10;

/// BLAKE3 of a file's bytes, and the stamp they were read under. A file
/// whose stamp moves during the read, or whose length differs from its
/// stamp, is refused: its hash would describe no version of it.
pub fn hash_file(path: &Path, progress: &(dyn Fn(u64) + Sync)) -> Result<(String, Stamp), HashError> {
    let (file, before) = open_stamped(path)?;
    if before.size < PARALLEL_FROM {
        let buf = read_whole(file, path, before)?;
        progress(buf.len() as u64);
        return Ok((blake3::hash(&buf).to_hex().to_string(), before));
    }
    let read_err = |source| HashError::Read { path: path.into(), error: source };
    let hash = match hash_tree(&file, before.size, progress) {
        Ok(h) => h,
        // The file ended early: it shrank while being read.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(HashError::Changed { path: path.into() }),
        Err(e) => return Err(read_err(e)),
    };
    let after = Stamp::of(&file.metadata().map_err(read_err)?);
    if after != before {
        return Err(HashError::Changed { path: path.into() });
    }
    Ok((hash.to_hex().to_string(), before))
}

/// `path` opened, and its stamp as it is open (the one its bytes are
/// checked against).
fn open_stamped(path: &Path) -> Result<(std::fs::File, Stamp), HashError> {
    let read_err = |source| HashError::Read { path: path.into(), error: source };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let before = Stamp::of(&file.metadata().map_err(read_err)?);
    Ok((file, before))
}

/// The rest of an open file whose stamp was `before`, refused if the
/// stamp moved or the length differs by the end of the read.
fn read_whole(mut file: std::fs::File, path: &Path, before: Stamp) -> Result<Vec<u8>, HashError> {
    let read_err = |source| HashError::Read { path: path.into(), error: source };
    let mut buf = Vec::with_capacity(before.size as usize);
    file.read_to_end(&mut buf).map_err(read_err)?;
    let after = Stamp::of(&file.metadata().map_err(read_err)?);
    if after != before || buf.len() as u64 != before.size {
        return Err(HashError::Changed { path: path.into() });
    }
    Ok(buf)
}

/// BLAKE3 of the first `size` bytes of `file` (more than one leaf), as a
/// tree: the two subtrees BLAKE3 defines are hashed on separate cores,
/// recursively, down to leaves that one core reads and hashes piece by
/// piece. Reading a whole buffer and then hashing it in parallel spent
/// more time copying pages out of the cache than hashing them (the copy
/// went to memory and was read back); here each piece is hashed while it
/// is still in the core's cache, and the copies run on all cores too.
fn hash_tree(file: &std::fs::File, size: u64, progress: &(dyn Fn(u64) + Sync)) -> std::io::Result<blake3::Hash> {
    use blake3::hazmat::{Mode, left_subtree_len, merge_subtrees_root};
    let split = left_subtree_len(size);
    let (left, right) = rayon::join(|| subtree(file, 0, split, progress), || subtree(file, split, size - split, progress));
    Ok(merge_subtrees_root(&left?, &right?, Mode::Hash))
}

fn subtree(file: &std::fs::File, offset: u64, len: u64, progress: &(dyn Fn(u64) + Sync)) -> std::io::Result<blake3::hazmat::ChainingValue> {
    use blake3::hazmat::{HasherExt, Mode, left_subtree_len, merge_subtrees_non_root};
    use std::os::unix::fs::FileExt;
    if len > LEAF {
        let split = left_subtree_len(len);
        let (left, right) = rayon::join(|| subtree(file, offset, split, progress), || subtree(file, offset + split, len - split, progress));
        return Ok(merge_subtrees_non_root(&left?, &right?, Mode::Hash));
    }
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; PIECE]);
    }
    BUF.with_borrow_mut(|buf| {
        let mut hasher = blake3::Hasher::new();
        hasher.set_input_offset(offset);
        let (mut at, end) = (offset, offset + len);
        while at < end {
            let want = PIECE.min((end - at) as usize);
            let n = match file.read_at(&mut buf[..want], at) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&buf[..n]);
            at += n as u64;
            progress(n as u64);
        }
        Ok(hasher.finalize_non_root())
    })
}

/// Files below this size are read whole into memory, hashed, and written
/// into the store from that buffer: one open and read per file instead
/// of a hashing pass and a copying pass.
pub const SMALL: u64 = 1 << 20;

/// A small file's bytes and the stamp they were read under, refused (as
/// in [`hash_file`]) if it changed during the read.
pub fn read_small(path: &Path) -> Result<(Vec<u8>, Stamp), HashError> {
    let (file, before) = open_stamped(path)?;
    Ok((read_whole(file, path, before)?, before))
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
        // The tree's shape changes at every power of two and at leaf and
        // piece edges: sizes either side of them.
        let p = PARALLEL_FROM as usize;
        let l = LEAF as usize;
        for size in [0usize, 5, p - 1, p, p + 1, p + 1023, p + l, 3 * l + PIECE + 17, 4 * p - 1, 4 * p + 1025, 9 * p + 3 * PIECE] {
            let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8 ^ (i >> 20) as u8).collect();
            let path = dir.path().join(format!("f{size}"));
            std::fs::write(&path, &bytes).unwrap();
            let seen = std::sync::atomic::AtomicU64::new(0);
            let (hash, stamp) = hash_file(&path, &|n| {
                seen.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            })
            .unwrap();
            assert_eq!(hash, blake3::hash(&bytes).to_hex().to_string(), "size {size}");
            assert_eq!((stamp.size, seen.into_inner()), (size as u64, size as u64));
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
        let appended = std::sync::atomic::AtomicBool::new(false);
        let grow = |_| {
            if !appended.swap(true, std::sync::atomic::Ordering::Relaxed) {
                use std::io::Write;
                std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"more").unwrap();
            }
        };
        let e = hash_file(&path, &grow).unwrap_err();
        assert!(matches!(e, HashError::Changed { .. }), "{e}");
    }

    #[test]
    fn a_file_shrinking_during_the_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shrinking");
        std::fs::write(&path, vec![1u8; (PARALLEL_FROM as usize) * 4]).unwrap();
        let cut = std::sync::atomic::AtomicBool::new(false);
        let shrink = |_| {
            if !cut.swap(true, std::sync::atomic::Ordering::Relaxed) {
                std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(PARALLEL_FROM).unwrap();
            }
        };
        let e = hash_file(&path, &shrink).unwrap_err();
        assert!(matches!(e, HashError::Changed { .. }), "{e}");
    }
}
