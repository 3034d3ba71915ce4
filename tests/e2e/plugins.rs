//! `kiln plugin`: list, add, inspect, remove, and what registration refuses.

use crate::support::{Kiln, fixture};

fn names(k: &Kiln) -> Vec<String> {
    let list = k.run(&["plugin", "list", "--json"]).ok().json();
    list.as_array().unwrap().iter().map(|p| format!("{}@{}", p["name"].as_str().unwrap(), p["version"].as_str().unwrap())).collect()
}

#[test]
fn bundled_plugins_are_listed() {
    let k = Kiln::new();
    let list = names(&k);
    for p in ["linear@0.1.0", "forest@0.1.0", "metrics@0.1.0", "ks@0.1.0"] {
        assert!(list.contains(&p.to_string()), "{p} in {list:?}");
    }
}

#[test]
fn add_inspect_and_remove_a_component() {
    let k = Kiln::new();
    let out = k.run(&["plugin", "add", &fixture("misbehave"), "--timeout", "5s", "--memory", "128MiB"]).ok();
    assert!(out.stdout.contains("Registered misbehave@0.1.0 (trainer, sha256:"), "{}", out.stdout);
    // Adding the same bytes again is harmless.
    assert!(k.run(&["plugin", "add", &fixture("misbehave")]).ok().stdout.contains("already registered"));

    let info = k.run(&["plugin", "inspect", "misbehave", "--json"]).ok().json();
    assert_eq!(info["kind"], "trainer");
    assert_eq!(info["wit_version"], "0.1.0");
    assert!(info["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(info["params_schema"]["required"][0], "mode");
    assert_eq!(info["memory_bytes"], 128 << 20);
    let imports: Vec<&str> = info["imports"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(imports.contains(&"kiln:plugin/host@0.1.0"), "{imports:?}");
    assert!(imports.iter().all(|i| i.starts_with("wasi:") || i.starts_with("kiln:plugin/")), "{imports:?}");
    let human = k.run(&["plugin", "inspect", "ks"]).ok().stdout;
    assert!(human.contains("kind:         drift-detector") && human.contains("\"threshold\""), "{human}");

    let err = k.run(&["plugin", "remove", "misbehave"]).fails();
    assert!(err.stderr.contains("say which version"), "{}", err.stderr);
    k.run(&["plugin", "remove", "misbehave@0.1.0"]).ok();
    assert!(!names(&k).contains(&"misbehave@0.1.0".to_string()));
}

#[test]
fn a_plugin_used_by_a_run_cannot_be_removed() {
    let k = Kiln::new();
    k.run(&["plugin", "add", &fixture("misbehave")]).ok();
    k.write("d.csv", &crate::support::tiny_csv());
    let p = k.write(
        "p.toml",
        "name = \"p\"\n[inputs.d]\npath = \"d.csv\"\ntarget = \"y\"\n[stages.t]\nuses = \"misbehave\"\ndata = \"d\"\nwith = { mode = \"ok\" }\n",
    );
    k.run(&["run", p.to_str().unwrap()]).ok();
    let out = k.run(&["plugin", "remove", "misbehave@0.1.0"]).fails();
    assert!(out.stderr.contains("still referenced"), "{}", out.stderr);
}

#[test]
fn registration_refuses_what_kiln_cannot_run_and_stores_nothing() {
    let k = Kiln::new();
    let before = names(&k);
    let text = k.write("notes.wasm", "this is not wasm");
    let core = k.dir.path().join("core.wasm");
    // A minimal core module: magic + version 1, no sections.
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let cases = [
        (text.display().to_string(), "not a WebAssembly file"),
        (core.display().to_string(), "core WebAssembly module, not a component"),
        (fixture("foreign-world"), "targets no Kiln world: it exports acme:other/thing@1.0.0"),
        (fixture("future-version"), "kiln:plugin@9.0.0, which this Kiln does not support (supported: 0.1.0)"),
        (fixture("bad-import"), "imports `acme:net/raw@1.0.0`, which is outside the allowed set"),
    ];
    for (file, expected) in cases {
        let out = k.run(&["plugin", "add", &file]).fails();
        assert!(out.stderr.contains(expected), "{file}: expected `{expected}` in\n{}", out.stderr);
        assert!(out.stderr.contains("was not registered"), "{}", out.stderr);
    }
    assert_eq!(names(&k), before, "nothing was registered");
    let missing = k.run(&["plugin", "add", "nope.wasm"]).fails();
    assert!(missing.stderr.contains("nope.wasm"), "{}", missing.stderr);
}
