//! Re-exports that make these crates part of the shared library: a crate
//! the binary then uses is linked from here, not copied into it.

pub use arrow_array;
pub use arrow_cast;
pub use arrow_csv;
pub use arrow_select;
pub use axum;
pub use clap;
pub use hyper;
pub use jsonschema;
pub use object_store;
pub use parquet;
pub use regex;
pub use reqwest;
pub use rustls;
pub use sqlx;
pub use tokio;
pub use wasmtime;
pub use wasmtime_wasi;
