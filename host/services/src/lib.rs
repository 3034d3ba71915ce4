//! `kiln-services`: what the CLI and the REST API both call — pipelines,
//! the tracking rules, the plugin registry, data versioning, workers and
//! schedules — over the sandbox (`kiln-runtime`), the metadata store
//! (`kiln-store`) and the data layer (`kiln-data`: blobs, files,
//! readers). No HTTP here: that is `kiln-api`.
//!
//! The code map is in ARCHITECTURE.md at the repository root.

pub mod app;
/// Content-addressed blobs, in `kiln-data`.
pub use kiln_data::blobs;
pub mod data;
/// The one reader of tabular files and table helpers, in `kiln-data`.
pub use kiln_data::dataset;
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
pub mod serving;
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
