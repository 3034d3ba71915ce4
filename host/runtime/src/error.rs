//! What can go wrong when loading or calling a plugin.

use kiln_types::PluginKind;
use std::time::Duration;

/// A plugin failure, typed so callers can report it precisely.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("not a WebAssembly file (it does not start with the `\\0asm` magic bytes)")]
    NotWasm,
    #[error(
        "this is a core WebAssembly module, not a component; build for `wasm32-wasip2` \
         or wrap it with `wasm-tools component new`"
    )]
    CoreModule,
    #[error("not a valid component: {0}")]
    Invalid(String),
    #[error(
        "the component targets no Kiln world: it exports {exports}, but a plugin must export one of \
         kiln:plugin/trainer, kiln:plugin/evaluator, kiln:plugin/drift-detector or kiln:plugin/deployer"
    )]
    UnknownWorld { exports: String },
    #[error("the component targets kiln:plugin@{found}, which this Kiln does not support (supported: {supported})")]
    UnsupportedVersion { found: String, supported: String },
    #[error("the component imports `{import}`, which is outside the allowed set (WASI 0.2 and kiln:plugin/host; wasi:http for deployers only)")]
    ForbiddenImport { import: String },
    #[error("expected a {wanted:?} plugin, this one is a {found:?}")]
    WrongKind { wanted: PluginKind, found: PluginKind },
    #[error("timed out after {0:?} (the plugin's deadline)")]
    Timeout(Duration),
    #[error("ran out of memory: it asked for {requested} bytes, the cap is {cap} bytes")]
    OutOfMemory { requested: u64, cap: u64 },
    #[error("trapped: {0}")]
    Trap(String),
    #[error("returned output that breaks the contract: {0}")]
    BadOutput(String),
    #[error("{code}{}: {message}", field.as_ref().map(|f| format!(" in `{f}`")).unwrap_or_default())]
    Plugin { code: String, message: String, field: Option<String> },
    /// A capability the operator granted cannot be handed over (a
    /// directory that does not open).
    #[error("{0}")]
    Grant(String),
    #[error("compiled-component cache: {0}")]
    Cache(String),
}
