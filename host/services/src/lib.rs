//! `kiln-services`: what the CLI and the REST API both call — pipelines,
//! the tracking rules, the plugin registry, data versioning, blobs,
//! workers and schedules — over the sandbox (`kiln-runtime`) and the
//! metadata store (`kiln-store`). No HTTP here: that is `kiln-api`.
//!
//! The code map is in ARCHITECTURE.md at the repository root.

pub mod app;
pub mod blobs;
pub mod data;
pub mod dataset;
pub mod invalid;
pub mod limits;
pub mod listen;
pub mod output;
pub mod pipeline;
/// The plugin sandbox, a crate of its own: only it knows wasmtime.
pub use kiln_runtime as runtime;
pub mod plugins;
pub mod records;
pub mod registry;
pub mod scheduler;
/// Metadata in SQL, a crate of its own: only it knows SQL.
pub use kiln_store as store;
pub mod tracking;
pub mod views;
pub mod worker;
pub mod workspace;

/// Where `build.rs` put the fixture plugins (misbehaving components for
/// the tests and benches).
#[doc(hidden)]
pub const FIXTURE_DIR: &str = env!("KILN_FIXTURE_DIR");
