//! Kiln: an MLOps platform whose trainers, evaluators, drift detectors and
//! deployers are sandboxed WebAssembly components. This crate is the
//! `kiln` binary's command line; the work is done by `kiln-services`, the
//! REST API by `kiln-api`, re-exported here under the paths they had when
//! they were one crate.
//!
//! The code map is in ARCHITECTURE.md at the repository root.

pub use kiln_api as api;
pub use kiln_services::*;

pub mod cli;
