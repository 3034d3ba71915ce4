//! Pointer files: the small `PATH.kiln` a user commits to git in place of
//! the data it names (as DVC's `.dvc` files).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const EXTENSION: &str = "kiln";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pointer {
    /// The dataset name and version this content was registered as.
    pub name: String,
    pub version: i64,
    /// The data's path, relative to the pointer's folder.
    pub path: String,
    /// `file` or `dir`.
    pub kind: String,
    /// BLAKE3 of the file, or of the directory's manifest.
    pub hash: String,
    pub size: u64,
    pub files: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PointerError {
    #[error("cannot read pointer file {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("pointer file {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write pointer file {path}: {error}")]
    Write { path: PathBuf, error: std::io::Error },
}

/// `data/iris.csv` → `data/iris.csv.kiln`.
pub fn pointer_path(data: &Path) -> PathBuf {
    let mut name = data.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(EXTENSION);
    data.with_file_name(name)
}

impl Pointer {
    pub fn read(path: &Path) -> Result<Self, PointerError> {
        // A pointer is a few lines; a FIFO or a huge file named `*.kiln`
        // is refused, not waited on or read whole.
        let text = crate::files::read_text(path, 1 << 20).map_err(|source| PointerError::Read { path: path.into(), error: source })?;
        // toml's messages carry the line and column of the problem.
        let p: Pointer = toml::from_str(&text).map_err(|e| PointerError::Invalid { path: path.into(), message: e.to_string() })?;
        let invalid = |message: String| PointerError::Invalid { path: path.into(), message };
        if p.hash.len() != 64 || !p.hash.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(invalid(format!("`hash` must be 64 hex characters (a BLAKE3 hash), got {:?}", p.hash)));
        }
        if p.kind != "file" && p.kind != "dir" {
            return Err(invalid(format!("`kind` must be \"file\" or \"dir\", got {:?}", p.kind)));
        }
        if p.path.is_empty() || p.path.contains('/') || p.path == ".." || p.path == "." {
            return Err(invalid(format!("`path` must name an entry beside the pointer file, got {:?}", p.path)));
        }
        Ok(p)
    }

    /// Write atomically (temporary file, then rename): a reader sees the
    /// old pointer or the new one, never half of one.
    pub fn write(&self, path: &Path) -> Result<(), PointerError> {
        let err = |source| PointerError::Write { path: path.into(), error: source };
        let body = toml::to_string(self).map_err(|e| err(std::io::Error::other(e)))?;
        let text = format!(
            "# Kiln data pointer: commit this file to git. `kiln data checkout` restores\n\
             # the data it names; `kiln data pull` fetches it from a remote.\n{body}"
        );
        let tmp = path.with_extension(format!("{EXTENSION}.tmp-{}", std::process::id()));
        std::fs::write(&tmp, text).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            err(e)
        })
    }

    /// Where the data lives, given where the pointer file is.
    pub fn data_path(&self, pointer_file: &Path) -> PathBuf {
        pointer_file.parent().unwrap_or(Path::new(".")).join(&self.path)
    }
}

/// Add `/<entry>` to the `.gitignore` beside `data` unless it is there.
pub fn ignore_in_git(data: &Path) -> std::io::Result<()> {
    let dir = data.parent().unwrap_or(Path::new("."));
    let entry = format!("/{}", data.file_name().unwrap_or_default().to_string_lossy());
    let file = dir.join(".gitignore");
    let existing = match std::fs::read_to_string(&file) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    if existing.lines().any(|l| l.trim() == entry) {
        return Ok(());
    }
    let mut text = existing;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&entry);
    text.push('\n');
    std::fs::write(&file, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Pointer {
        Pointer { name: "iris".into(), version: 2, path: "iris.csv".into(), kind: "file".into(), hash: "ab".repeat(32), size: 10, files: 1 }
    }

    #[test]
    fn round_trip_and_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("iris.csv");
        let ptr = pointer_path(&data);
        assert_eq!(ptr.file_name().unwrap(), "iris.csv.kiln");
        sample().write(&ptr).unwrap();
        assert_eq!(Pointer::read(&ptr).unwrap(), sample());
        assert_eq!(sample().data_path(&ptr), data);

        let text = std::fs::read_to_string(&ptr).unwrap().replace(&"ab".repeat(32), "not-a-hash");
        std::fs::write(&ptr, text).unwrap();
        let e = Pointer::read(&ptr).unwrap_err().to_string();
        assert!(e.contains("iris.csv.kiln") && e.contains("not-a-hash"), "{e}");
        std::fs::write(&ptr, "name = \"iris\"\nversion = \"two\"\n").unwrap();
        let e = Pointer::read(&ptr).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("version"), "{e}");
    }

    #[test]
    fn gitignore_gets_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".gitignore"), "target").unwrap();
        let data = dir.path().join("iris.csv");
        ignore_in_git(&data).unwrap();
        ignore_in_git(&data).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join(".gitignore")).unwrap(), "target\n/iris.csv\n");
    }
}
