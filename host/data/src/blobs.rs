//! Content-addressed blob storage in a local folder.
//!
//! A blob's id is the BLAKE3 hash of its bytes (hex). Writes go to a
//! temporary file that is synced and then renamed into place, so a blob is
//! either absent or whole; reads re-hash and refuse a blob whose bytes no
//! longer match its id.

use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {0} is not in the blob store")]
    Missing(String),
    #[error("blob {id} is corrupt: its content hashes to {actual}")]
    Corrupt { id: String, actual: String },
    #[error("`{0}` is not a blob id (64 hex characters)")]
    BadId(String),
    #[error("blob store I/O at {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
}

#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        BlobStore { root: root.into() }
    }

    pub fn id_of(bytes: &[u8]) -> String {
        blake3::hash(bytes).to_hex().to_string()
    }

    fn path_of(&self, id: &str) -> Result<PathBuf, BlobError> {
        if id.len() != 64 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(BlobError::BadId(id.to_string()));
        }
        Ok(self.root.join(&id[..2]).join(&id[2..]))
    }

    /// Store `bytes`; returns the blob id. Storing existing content is a no-op.
    pub fn put(&self, bytes: &[u8]) -> Result<String, BlobError> {
        let id = Self::id_of(bytes);
        let path = self.path_of(&id)?;
        if path.exists() {
            return Ok(id);
        }
        let tmp = self.temp_dir()?.join(temp_name());
        let result = (|| {
            let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
            drop(f);
            let dir = path.parent().unwrap();
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            std::fs::rename(&tmp, &path).map_err(io(&path))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map(|()| id)
    }

    /// Where bytes are written before they are renamed into place under
    /// their id: one folder, so the leftovers of a killed process are
    /// found and swept (see [`sweep_orphans`]) and a prefix folder only
    /// ever holds whole blobs.
    fn temp_dir(&self) -> Result<PathBuf, BlobError> {
        let dir = self.root.join(".tmp");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(dir)
    }

    /// Read a blob and verify it against its id.
    pub fn get(&self, id: &str) -> Result<Vec<u8>, BlobError> {
        let path = self.path_of(id)?;
        let bytes = std::fs::read(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => BlobError::Missing(id.to_string()),
            _ => BlobError::Io { path: path.clone(), error: source },
        })?;
        let actual = Self::id_of(&bytes);
        if actual != id {
            return Err(BlobError::Corrupt { id: id.to_string(), actual });
        }
        Ok(bytes)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.path_of(id).map(|p| p.exists()).unwrap_or(false)
    }

    /// Where a stored blob's bytes are (for readers that want a file).
    pub fn file(&self, id: &str) -> Result<PathBuf, BlobError> {
        let path = self.path_of(id)?;
        if !path.exists() {
            return Err(BlobError::Missing(id.to_string()));
        }
        Ok(path)
    }

    /// A blob's size in bytes, without reading it.
    pub fn size(&self, id: &str) -> Result<u64, BlobError> {
        let path = self.path_of(id)?;
        std::fs::metadata(&path).map(|m| m.len()).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => BlobError::Missing(id.to_string()),
            _ => BlobError::Io { path: path.clone(), error: source },
        })
    }

    /// Remove what killed processes left in the temporary folder (a
    /// server killed mid-upload, a `kiln data add` killed mid-copy).
    pub fn sweep_temporary(&self) {
        sweep_orphans(&self.root.join(".tmp"));
    }

    /// A batch of files to copy in with one filesystem sync instead of an
    /// fsync per file (see [`Staging`]).
    pub fn staging(&self) -> Result<Staging, BlobError> {
        let dir = self.temp_dir()?;
        sweep_orphans(&dir);
        Ok(Staging { store: self.clone(), dir, staged: Default::default() })
    }

    /// Put a blob's bytes at `dest` (replacing what is there): a hard link
    /// when `hardlink` (instant, shares the read-only blob), else a copy.
    /// Written beside `dest` first and renamed, so `dest` is never half
    /// written.
    pub fn restore_to(&self, id: &str, dest: &Path, hardlink: bool) -> Result<(), BlobError> {
        let path = self.path_of(id)?;
        if !path.exists() {
            return Err(BlobError::Missing(id.to_string()));
        }
        let dir = dest.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let tmp = dir.join(format!(".kiln-tmp-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
        let result = (|| {
            if hardlink {
                std::fs::hard_link(&path, &tmp).map_err(io(&tmp))?;
            } else {
                // The copy is the user's file: created 0666 less the
                // umask, like any file a program writes (not the blob's
                // read-only mode, nor writable by everyone). io::copy
                // between files is copy_file_range: a reflink where the
                // filesystem shares extents.
                use std::os::unix::fs::OpenOptionsExt;
                let mut out = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o666).open(&tmp).map_err(io(&tmp))?;
                let mut src = std::fs::File::open(&path).map_err(io(&path))?;
                std::io::copy(&mut src, &mut out).map_err(io(&tmp))?;
            }
            std::fs::rename(&tmp, dest).map_err(io(dest))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Start a blob whose bytes arrive in pieces (an upload of any size):
    /// they go to a temporary file and into the hash as they come, so memory
    /// stays constant.
    pub fn writer(&self) -> Result<BlobWriter, BlobError> {
        let tmp = self.temp_dir()?.join(temp_name());
        let file = std::fs::File::create(&tmp).map_err(|source| BlobError::Io { path: tmp.clone(), error: source })?;
        Ok(BlobWriter { store: self.clone(), tmp, file: Some(file), hasher: blake3::Hasher::new(), size: 0 })
    }

    /// A blob's bytes in chunks, hashed on the way out: if the bytes on disk
    /// no longer match the id, the stream ends in an error instead of
    /// finishing (an HTTP response is then cut short, never completed with
    /// corrupt content).
    pub fn read_stream(&self, id: &str) -> Result<(u64, impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static), BlobError> {
        let path = self.path_of(id)?;
        let file = std::fs::File::open(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => BlobError::Missing(id.to_string()),
            _ => BlobError::Io { path: path.clone(), error: source },
        })?;
        let size = file.metadata().map_err(|source| BlobError::Io { path: path.clone(), error: source })?.len();
        struct Reading {
            file: std::fs::File,
            hasher: blake3::Hasher,
            id: String,
        }
        // `None` once the stream has ended (at the end of the bytes or
        // after an error).
        let state = Some(Reading { file, hasher: blake3::Hasher::new(), id: id.to_string() });
        let stream = futures_util::stream::unfold(state, |st| async move {
            let st = st?;
            let read = tokio::task::spawn_blocking(move || {
                use std::io::Read;
                let mut st = st;
                let mut buf = vec![0u8; 256 * 1024];
                let n = st.file.read(&mut buf)?;
                buf.truncate(n);
                st.hasher.update(&buf);
                Ok::<_, std::io::Error>((buf, st))
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
            match read {
                Ok((buf, st)) if buf.is_empty() => {
                    let actual = st.hasher.finalize().to_hex().to_string();
                    if actual == st.id {
                        return None;
                    }
                    let e = BlobError::Corrupt { id: st.id, actual };
                    Some((Err(std::io::Error::other(e.to_string())), None))
                }
                Ok((buf, st)) => Some((Ok(buf), Some(st))),
                Err(e) => Some((Err(e), None)),
            }
        });
        Ok((size, stream))
    }
}

/// A temporary file's name: `PID-…`, the owner's PID first for
/// [`sweep_orphans`].
fn temp_name() -> String {
    format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple())
}

/// The error of an I/O failure at `path`, for `map_err`.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BlobError {
    let path = path.to_path_buf();
    move |source| BlobError::Io { path, error: source }
}

/// Remove temporary files left in `dir` by processes that no longer run
/// (a killed `kiln data add`): they are named `PID-…`. A file of a live
/// process, or of a reused PID, is left alone; it is never visible as a
/// blob either way.
fn sweep_orphans(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.split_once('-')).and_then(|(p, _)| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Files copied into temporary files, then made durable together: one
/// `syncfs`, all renamed into place, one more `syncfs`. The order keeps the
/// invariant (a blob under its name is whole) with two syncs per batch
/// rather than one per file. Dropped without `commit`, it removes its
/// temporary files.
pub struct Staging {
    store: BlobStore,
    dir: PathBuf,
    staged: std::sync::Mutex<std::collections::HashMap<String, PathBuf>>,
}

impl Staging {
    /// The temporary file `id` is to be written to, or `None` when the
    /// store or this batch already has it (so it is written once).
    fn claim(&self, id: &str) -> Result<Option<PathBuf>, BlobError> {
        if self.store.path_of(id)?.exists() {
            return Ok(None);
        }
        let tmp = self.dir.join(temp_name());
        let mut staged = self.staged.lock().unwrap();
        if staged.contains_key(id) {
            return Ok(None);
        }
        staged.insert(id.to_string(), tmp.clone());
        Ok(Some(tmp))
    }

    /// Copy `src` (already hashed to `id`) in, unless the store or this
    /// batch has it; returns whether it was new. With `hardlink`, the blob
    /// is a hard link to `src` instead (no bytes copied), and `src` becomes
    /// read-only, since it now is the stored version: an in-place write
    /// would change the blob. A filesystem that cannot link (another
    /// device) gets a copy.
    pub fn stage_file(&self, id: &str, src: &Path, hardlink: bool) -> Result<bool, BlobError> {
        let Some(tmp) = self.claim(id)? else { return Ok(false) };
        let linked = hardlink && std::fs::hard_link(src, &tmp).is_ok();
        if !linked {
            std::fs::copy(src, &tmp).map_err(io(src))?;
        }
        let mut perms = std::fs::metadata(&tmp).map_err(io(&tmp))?.permissions();
        if !perms.readonly() {
            perms.set_readonly(true);
            std::fs::set_permissions(&tmp, perms).map_err(io(&tmp))?;
        }
        Ok(true)
    }

    /// Write `bytes` (already hashed to `id`) in, unless the store or this
    /// batch has it; returns whether it was new. Created read-only.
    pub fn stage_bytes(&self, id: &str, bytes: &[u8]) -> Result<bool, BlobError> {
        use std::os::unix::fs::OpenOptionsExt;
        let Some(tmp) = self.claim(id)? else { return Ok(false) };
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o444).open(&tmp).map_err(io(&tmp))?;
        file.write_all(bytes).map_err(io(&tmp))?;
        Ok(true)
    }

    pub fn commit(self) -> Result<(), BlobError> {
        let staged = std::mem::take(&mut *self.staged.lock().unwrap());
        if staged.is_empty() {
            return Ok(());
        }
        let sync = || -> Result<(), BlobError> {
            let d = std::fs::File::open(&self.dir).map_err(io(&self.dir))?;
            rustix::fs::syncfs(&d).map_err(|e| BlobError::Io { path: self.dir.clone(), error: e.into() })
        };
        sync()?;
        let mut made = std::collections::HashSet::new();
        for (id, tmp) in &staged {
            let dest = self.store.path_of(id)?;
            let parent = dest.parent().unwrap().to_path_buf();
            if made.insert(parent.clone()) {
                std::fs::create_dir_all(&parent).map_err(io(&parent))?;
            }
            std::fs::rename(tmp, &dest).map_err(io(&dest))?;
        }
        sync()
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        for tmp in self.staged.lock().unwrap().values() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// A blob being written; see [`BlobStore::writer`]. Dropped unfinished, it
/// removes its temporary file: no partial blob is ever visible.
pub struct BlobWriter {
    store: BlobStore,
    tmp: PathBuf,
    file: Option<std::fs::File>,
    hasher: blake3::Hasher,
    size: u64,
}

impl BlobWriter {
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        let file = self.file.as_mut().expect("a BlobWriter is not used after finish");
        file.write_all(chunk).map_err(|source| BlobError::Io { path: self.tmp.clone(), error: source })?;
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        Ok(())
    }

    /// Sync the bytes and move them into place; returns (blob id, size).
    pub fn finish(mut self) -> Result<(String, u64), BlobError> {
        let file = self.file.take().expect("finish is called once");
        file.sync_all().map_err(io(&self.tmp))?;
        drop(file);
        let id = self.hasher.finalize().to_hex().to_string();
        let path = self.store.path_of(&id)?;
        if !path.exists() {
            let dir = path.parent().unwrap();
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            std::fs::rename(&self.tmp, &path).map_err(io(&path))?;
        }
        Ok((id, self.size))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_verify() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::new(dir.path());
        let id = blobs.put(b"hello").unwrap();
        assert_eq!(blobs.put(b"hello").unwrap(), id);
        assert_eq!(blobs.get(&id).unwrap(), b"hello");
        // Flip the content on disk: the read must refuse it.
        std::fs::write(dir.path().join(&id[..2]).join(&id[2..]), b"jello").unwrap();
        assert!(matches!(blobs.get(&id), Err(BlobError::Corrupt { .. })));
        assert!(matches!(blobs.get(&"0".repeat(64)), Err(BlobError::Missing(_))));
        assert!(matches!(blobs.get("../etc/passwd"), Err(BlobError::BadId(_))));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn streamed_blobs_match_whole_ones_and_corruption_cuts_the_stream() {
        use futures_util::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::new(dir.path());
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut w = blobs.writer().unwrap();
        for chunk in data.chunks(65_537) {
            w.write(chunk).unwrap();
        }
        let (id, size) = w.finish().unwrap();
        assert_eq!((id.as_str(), size), (BlobStore::id_of(&data).as_str(), data.len() as u64));
        assert_eq!(blobs.size(&id).unwrap(), size);
        let (n, stream) = blobs.read_stream(&id).unwrap();
        let chunks: Vec<_> = stream.collect().await;
        assert_eq!(n, size);
        assert_eq!(chunks.into_iter().map(Result::unwrap).collect::<Vec<_>>().concat(), data);
        // An abandoned upload leaves nothing behind.
        let mut w = blobs.writer().unwrap();
        w.write(b"half").unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path().join(".tmp")).unwrap().count(), 0);
        // Corrupt the blob: the stream ends in an error.
        std::fs::write(dir.path().join(&id[..2]).join(&id[2..]), &data[1..]).unwrap();
        let (_, stream) = blobs.read_stream(&id).unwrap();
        let chunks: Vec<_> = stream.collect().await;
        assert!(chunks.last().unwrap().as_ref().is_err_and(|e| e.to_string().contains("corrupt")));
    }
}
