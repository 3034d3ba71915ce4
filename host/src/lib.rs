//! Kiln: an MLOps platform whose trainers, evaluators, drift detectors and
//! deployers are sandboxed WebAssembly components. This package is the
//! `kiln` binary, which joins the command line (`kiln-cli`) to the REST
//! API (`kiln-api`); the work is done by `kiln-services`. The library
//! re-exports them under the paths they had as one crate, for the
//! benches and end-to-end tests.
//!
//! The code map is in ARCHITECTURE.md at the repository root.

pub use kiln_api as api;
pub use kiln_cli as cli;
pub use kiln_services::*;
