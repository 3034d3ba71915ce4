//! Builds the first-party plugins and the test fixtures for `wasm32-wasip2`
//! and hands their paths to the host: first-party plugins are bundled into
//! the binary with `include_bytes!`, fixtures are found by the tests.
//!
//! The nested cargo uses its own target dir (`target/wasm-plugins`) because
//! the outer build holds the lock on the normal one.

use std::path::{Path, PathBuf};
use std::process::Command;

const BUNDLED: &[&str] = &["linear", "forest", "metrics", "ks", "onnx", "bundle", "webhook"];
const FIXTURES: &[&str] = &["misbehave", "foreign-world", "future-version", "bad-import", "nosy-deployer"];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    // host/services → the repository root.
    let root = manifest_dir.ancestors().nth(2).unwrap().to_path_buf();
    // The plugins' sources: their SDK, the types it re-exports, the WIT.
    for dir in ["wit", "sdk", "host/types", "plugins"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-changed=build.rs");

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // OUT_DIR is <target>/<profile>/build/kiln-services-<hash>/out.
    let target_dir = out_dir.ancestors().nth(4).unwrap().to_path_buf();
    let wasm_target_dir = target_dir.join("wasm-plugins");

    check_wasm_target();

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root).args(["build", "--profile", "plugin", "--target", "wasm32-wasip2", "--target-dir"]).arg(&wasm_target_dir);
    for name in BUNDLED {
        cmd.args(["-p", &format!("kiln-plugin-{name}")]);
    }
    for name in FIXTURES {
        cmd.args(["-p", &format!("kiln-fixture-{name}")]);
    }
    // Flags meant for the host build must not leak into the Wasm build.
    for var in ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR", "RUSTC_WORKSPACE_WRAPPER", "CARGO_PRIMARY_PACKAGE"]
    {
        cmd.env_remove(var);
    }
    // Wasm SIMD (128-bit) is part of the component model baseline wasmtime
    // runs; letting rustc use it lets generic code like sorts vectorise in
    // the plugins as they do natively.
    cmd.env("CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS", "-Ctarget-feature=+simd128");
    let output = cmd.output().expect("failed to run cargo to build the Wasm plugins");
    if !output.status.success() {
        panic!("building the Wasm plugins failed:\n{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    }

    let built = wasm_target_dir.join("wasm32-wasip2").join("plugin");
    for name in BUNDLED {
        let file = format!("kiln_plugin_{name}.wasm");
        copy(&built.join(&file), &out_dir.join(&file));
    }
    println!("cargo:rustc-env=KILN_FIXTURE_DIR={}", built.display());
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), to.display()));
}

fn check_wasm_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc).args(["--print", "target-libdir", "--target", "wasm32-wasip2"]).output();
    let ok = matches!(&out, Ok(o) if o.status.success()
        && Path::new(String::from_utf8_lossy(&o.stdout).trim()).exists());
    if !ok {
        panic!(
            "the wasm32-wasip2 Rust target is not installed; run `rustup target add wasm32-wasip2` \
             (the README's first command, examples/quickstart/run.sh, does this for you)"
        );
    }
}
