//! What a component is: which world it targets, which WIT version, what it
//! imports. Registration refuses anything Kiln cannot run safely.

use super::error::RuntimeError;
use kiln_types::PluginKind;
use wasmtime::Engine;
use wasmtime::component::Component;

/// WIT package versions this host has bindings for.
pub const SUPPORTED_WIT: &[&str] = &["0.1.0"];

/// WASI 0.2 interfaces a plugin may import. They are linked, but the
/// per-call context grants no directory, socket address or variable, so
/// importing them gives a plugin std's plumbing, not access.
const ALLOWED_WASI: &[&str] = &["wasi:cli/", "wasi:io/", "wasi:clocks/", "wasi:random/", "wasi:filesystem/", "wasi:sockets/"];

#[derive(Debug, Clone, serde::Serialize)]
pub struct ComponentInfo {
    pub kind: PluginKind,
    pub wit_version: String,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// Tell a component from a core module or a non-Wasm file by the header:
/// bytes 4..8 are the version and layer (`01 00 00 00` for a core module,
/// `0d 00 01 00` for a component).
pub fn check_header(bytes: &[u8]) -> Result<(), RuntimeError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(RuntimeError::NotWasm);
    }
    if bytes[6..8] == [0, 0] {
        return Err(RuntimeError::CoreModule);
    }
    Ok(())
}

pub fn classify(engine: &Engine, component: &Component) -> Result<ComponentInfo, RuntimeError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();

    let mut found = None;
    for name in &exports {
        let Some(rest) = name.strip_prefix("kiln:plugin/") else { continue };
        let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
        let kind = match iface {
            "trainer" => PluginKind::Trainer,
            "evaluator" => PluginKind::Evaluator,
            "drift-detector" => PluginKind::DriftDetector,
            "deployer" => PluginKind::Deployer,
            _ => continue,
        };
        if found.is_some() {
            return Err(RuntimeError::Invalid(format!(
                "it exports more than one Kiln interface ({}); a plugin has exactly one kind",
                exports.join(", ")
            )));
        }
        found = Some((kind, version.to_string()));
    }
    let Some((kind, wit_version)) = found else {
        let exports = if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") };
        return Err(RuntimeError::UnknownWorld { exports });
    };
    if !SUPPORTED_WIT.contains(&wit_version.as_str()) {
        return Err(RuntimeError::UnsupportedVersion {
            found: if wit_version.is_empty() { "(unversioned)".into() } else { wit_version },
            supported: SUPPORTED_WIT.join(", "),
        });
    }
    for import in &imports {
        // Only a deployer may ask for outbound HTTP; it gets what it was granted.
        let http = kind == PluginKind::Deployer && import.starts_with("wasi:http/") && import.contains("@0.2.");
        let allowed = http
            || ALLOWED_WASI.iter().any(|p| import.starts_with(p) && import.contains("@0.2."))
            || *import == format!("kiln:plugin/host@{wit_version}")
            || *import == format!("kiln:plugin/types@{wit_version}");
        if !allowed {
            return Err(RuntimeError::ForbiddenImport { import: import.clone() });
        }
    }
    Ok(ComponentInfo { kind, wit_version, imports, exports })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        assert!(matches!(check_header(b"hello world"), Err(RuntimeError::NotWasm)));
        assert!(matches!(check_header(b"\0asm\x01\0\0\0"), Err(RuntimeError::CoreModule)));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
