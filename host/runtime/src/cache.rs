//! The on-disk cache of compiled components.
//!
//! Compiling a plugin with Cranelift takes hundreds of milliseconds;
//! loading the serialised machine code takes well under one. Entries are
//! keyed by the plugin's digest and by the engine's compatibility hash, so
//! a new wasmtime or different engine settings never load stale code.

use super::error::RuntimeError;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

pub fn entry_path(engine: &Engine, cache_dir: &Path, digest: &str) -> PathBuf {
    let mut h = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let file = digest.replace(':', "-");
    cache_dir.join(format!("{:016x}", h.finish())).join(format!("{file}.cwasm"))
}

pub fn load_or_compile(engine: &Engine, cache_dir: &Path, digest: &str, bytes: &[u8]) -> Result<Component, RuntimeError> {
    let path = entry_path(engine, cache_dir, digest);
    if path.exists() {
        // SAFETY: the file was written by `Component::serialize` below into
        // the workspace's private cache, under a name that pins both the
        // plugin digest and this engine's compatibility hash. Deserialising
        // is unsafe only for untrusted bytes; a corrupt entry fails to load
        // and is recompiled.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => return Ok(c),
            Err(e) => tracing::warn!("ignoring unusable cache entry {}: {e:#}", path.display()),
        }
    }
    let component = Component::new(engine, bytes).map_err(|e| RuntimeError::Invalid(format!("{e:#}")))?;
    if let Err(e) = store(&component, &path) {
        // A read-only workspace still runs plugins, just without the cache.
        tracing::warn!("could not cache compiled component at {}: {e}", path.display());
    }
    Ok(component)
}

fn store(component: &Component, path: &Path) -> Result<(), RuntimeError> {
    let err = |e: &dyn std::fmt::Display| RuntimeError::Cache(e.to_string());
    let compiled = component.serialize().map_err(|e| err(&e))?;
    let dir = path.parent().unwrap();
    std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), uuid::Uuid::new_v4()));
    std::fs::write(&tmp, compiled).map_err(|e| err(&e))?;
    std::fs::rename(&tmp, path).map_err(|e| err(&e))
}
