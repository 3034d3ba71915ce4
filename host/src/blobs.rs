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
    #[error("blob store I/O at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
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
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| BlobError::Io { path: p, source }
        };
        let dir = path.parent().unwrap();
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(id)
    }

    /// Read a blob and verify it against its id.
    pub fn get(&self, id: &str) -> Result<Vec<u8>, BlobError> {
        let path = self.path_of(id)?;
        let bytes = std::fs::read(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => BlobError::Missing(id.to_string()),
            _ => BlobError::Io { path: path.clone(), source },
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
}
