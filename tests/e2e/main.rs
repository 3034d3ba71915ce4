//! End-to-end tests: the real `kiln` binary, real SQLite and PostgreSQL,
//! real Wasm plugins (fixtures that misbehave on purpose included).

mod api;
mod artifacts;
mod bad_input;
mod data;
mod deployers;
mod hardening;
mod live;
mod load;
mod mlflow;
mod mlflow_validation;
mod onnx;
mod plugins;
mod postgres;
mod quickstart;
mod reference;
mod rollouts;
mod s3;
mod sandbox;
mod server;
mod serving;
mod support;
mod tracking;
