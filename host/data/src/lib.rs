//! `kiln-data`: the files and bytes under Kiln's data — content-addressed
//! blobs, the mechanics of data versioning (pointer files, hashing and its
//! cache, the walk of a folder, remotes), the one arrow-based reader of
//! CSV and Parquet that pipelines and profiles share, and profiles.
//!
//! It knows neither SQL nor Wasm: recording a version in the metadata
//! store is `kiln-services`' `data` module, over this crate.
//!
//! ```compile_fail
//! // The store is not a dependency of kiln-data: a data version is
//! // recorded by kiln-services, never from here.
//! use kiln_store::Store;
//! ```
//!
//! ```compile_fail
//! // Nor is the sandbox.
//! use kiln_runtime::Runtime;
//! ```

pub mod blobs;
pub mod dataset;
pub mod files;
pub mod hashing;
pub mod pointer;
pub mod profile;
pub mod remote;
pub mod state;
pub mod walk;

/// Files the unit tests read, each in a folder of its own that lives as
/// long as the returned guard.
#[cfg(test)]
mod test_files {
    use std::path::PathBuf;

    pub(crate) fn write(name: &str, content: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        (dir, path)
    }
}
