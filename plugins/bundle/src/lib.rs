//! `bundle`: a deployer that writes a deployment as a folder another
//! machine can serve with `kiln serve --bundle DIR`, no database needed.
//!
//! It sees two directories, both handed over by the host: the version's
//! files, read-only, at `/artifacts` (`model.bin`, `plugin.wasm`,
//! `version.json`), and the directory the operator granted, at `/out`.
//! The bundle goes to `/out/FOLDER` (the deployment's name unless
//! `folder` says otherwise). Each file is written under a temporary name
//! and renamed, the manifest last, so a server reading the folder sees the
//! old bundle or the new one, never half of one.

use kiln_sdk::{DeployOutcome, DeployRequest, Deployer, Description, Params, PluginError, Result};
use std::path::{Component, Path, PathBuf};

pub const MANIFEST: &str = "kiln-bundle.json";
pub const FORMAT: &str = "kiln-bundle/1";
const ARTIFACTS: &str = "/artifacts";
const OUT: &str = "/out";

pub struct Bundle;

impl Deployer for Bundle {
    fn describe() -> Description {
        Description {
            name: "bundle".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: "Writes a self-contained folder (model, plugin, manifest) for `kiln serve --bundle DIR`".into(),
            params_schema: serde_json::json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "folder": {"type": "string", "minLength": 1, "maxLength": 255,
                               "description": "the folder inside the granted directory (default: the deployment's name)"}
                }
            }),
        }
    }

    fn deploy(request: DeployRequest, params: Params) -> Result<DeployOutcome> {
        let folder = params.str_or("folder", &request.deployment)?.to_string();
        let relative = check_folder(&folder)?;
        if !Path::new(OUT).is_dir() {
            return Err(PluginError::unsupported(
                "no directory was granted to write the bundle in; deploy with --allow-dir DIR (or `kiln plugin grant bundle --allow-dir DIR`)",
            ));
        }
        let version_text = read_to_string(&Path::new(ARTIFACTS).join("version.json"))?;
        let mut manifest: serde_json::Value =
            serde_json::from_str(&version_text).map_err(|e| PluginError::internal(format!("the host's version.json: {e}")))?;
        let digest = manifest["model"]["digest"].as_str().unwrap_or_default();
        if digest != request.model_digest {
            return Err(PluginError::internal(format!("the model in /artifacts is {digest}, the request names {}", request.model_digest)));
        }
        let object = manifest.as_object_mut().ok_or_else(|| PluginError::internal("the host's version.json is not an object"))?;
        object.insert("format".into(), FORMAT.into());
        object.insert("files".into(), serde_json::json!({"model": "model.bin", "plugin": "plugin.wasm"}));
        object.insert("written_by".into(), format!("bundle {}", env!("CARGO_PKG_VERSION")).into());

        let dest = Path::new(OUT).join(&relative);
        std::fs::create_dir_all(&dest).map_err(|e| io("creating", &dest, e))?;
        for file in ["model.bin", "plugin.wasm"] {
            replace_with_copy(&Path::new(ARTIFACTS).join(file), &dest.join(file))?;
        }
        let text = serde_json::to_string_pretty(&manifest).map_err(|e| PluginError::internal(e.to_string()))?;
        replace_with_bytes(&dest.join(MANIFEST), text.as_bytes())?;
        Ok(DeployOutcome { status: "written".into(), endpoint: None, manifest: text })
    }
}

/// `folder` must stay below the granted directory. The sandbox would
/// refuse anything else anyway; this says so in words.
fn check_folder(folder: &str) -> Result<PathBuf> {
    let path = Path::new(folder);
    if path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        Ok(path.to_path_buf())
    } else {
        Err(PluginError::invalid_params("folder", format!("`{folder}` must be a relative path inside the granted directory, without `..`")))
    }
}

fn io(doing: &str, path: &Path, e: std::io::Error) -> PluginError {
    PluginError::internal(format!("{doing} {}: {e}", path.display()))
}

fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| io("reading", path, e))
}

fn temporary(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    dest.with_file_name(name)
}

fn replace_with_copy(from: &Path, dest: &Path) -> Result<()> {
    let tmp = temporary(dest);
    std::fs::copy(from, &tmp).map_err(|e| io("writing", &tmp, e))?;
    std::fs::rename(&tmp, dest).map_err(|e| io("renaming to", dest, e))
}

fn replace_with_bytes(dest: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temporary(dest);
    std::fs::write(&tmp, bytes).map_err(|e| io("writing", &tmp, e))?;
    std::fs::rename(&tmp, dest).map_err(|e| io("renaming to", dest, e))
}

kiln_sdk::export_deployer!(Bundle);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_stays_below_the_granted_directory() {
        assert!(check_folder("churn").is_ok());
        assert!(check_folder("team/churn").is_ok());
        for bad in ["../x", "/etc", "a/../../b"] {
            assert!(check_folder(bad).is_err(), "{bad}");
        }
    }
}
