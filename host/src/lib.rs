//! Kiln: an MLOps platform whose trainers, evaluators, drift detectors and
//! deployers are sandboxed WebAssembly components.
//!
//! The code map is in ARCHITECTURE.md at the repository root.

pub mod api;
pub mod app;
pub mod blobs;
pub mod cli;
pub mod data;
pub mod dataset;
pub mod invalid;
pub mod limits;
pub mod output;
pub mod pipeline;
/// The plugin sandbox, a crate of its own: only it knows wasmtime.
pub use kiln_runtime as runtime;
pub mod plugins;
pub mod scheduler;
/// Metadata in SQL, a crate of its own: only it knows SQL.
pub use kiln_store as store;
pub mod tracking;
pub mod workspace;
pub mod worker;
