//! Data versioning through the real binary: add, pointers, status,
//! checkout, list, show, and the bad inputs the issue names.

use crate::support::{Kiln, repo_root};
use std::path::Path;

fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

fn read_pointer(path: &Path) -> toml::Value {
    toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_csv_is_versioned_profiled_and_restored_from_its_pointer() {
    let k = Kiln::new();
    std::fs::create_dir(k.path().join("data")).unwrap();
    let csv = k.path().join("data/cancer.csv");
    let original = std::fs::read(repo_root().join("examples/quickstart/breast_cancer.csv")).unwrap();
    std::fs::write(&csv, &original).unwrap();

    let added = k.run(&["data", "add", "data/cancer.csv", "--json"]).ok().json();
    assert_eq!((added["name"].as_str(), added["version"].as_i64(), added["created"].as_bool()), (Some("cancer"), Some(1), Some(true)));
    assert_eq!(added["hash"], blake3_hex(&original).as_str());
    let pointer_file = k.path().join("data/cancer.csv.kiln");
    let pointer = read_pointer(&pointer_file);
    assert_eq!(pointer["hash"].as_str(), Some(blake3_hex(&original).as_str()));
    assert_eq!(pointer["path"].as_str(), Some("cancer.csv"));
    assert_eq!(pointer["size"].as_integer(), Some(original.len() as i64));
    assert_eq!(std::fs::read_to_string(k.path().join("data/.gitignore")).unwrap(), "/cancer.csv\n");

    // The profile: 569 rows, 31 columns; the target column is 0/1.
    let shown = k.run(&["data", "show", "cancer", "--json"]).ok().json();
    assert_eq!(shown["profile"]["rows"], 569);
    let columns = shown["profile"]["columns"].as_array().unwrap();
    assert_eq!(columns.len(), 31);
    assert_eq!(shown["schema"]["columns"].as_array().unwrap().len(), 31);
    let text = k.run(&["data", "show", "cancer@1"]).ok().stdout;
    assert!(text.contains("569") && text.contains("mean_radius"), "{text}");

    // Same bytes again: the same version; status is clean (exit 0).
    let again = k.run(&["data", "add", "data/cancer.csv", "--json"]).ok().json();
    assert_eq!((again["version"].as_i64(), again["created"].as_bool(), again["new_blobs"].as_i64()), (Some(1), Some(false), Some(0)));
    let status = k.run(&["data", "status", "--json"]).ok().json();
    assert_eq!(status[0]["state"], "unchanged");
    let v1_pointer = std::fs::read_to_string(&pointer_file).unwrap();

    // Edit the data: status says modified (exit 1); adding makes version 2.
    // (a copy of the first data row appended)
    let text = String::from_utf8(original.clone()).unwrap();
    let first_row = text.lines().nth(1).unwrap();
    let edited = format!("{text}{first_row}\n").into_bytes();
    std::fs::write(&csv, &edited).unwrap();
    let status = k.run(&["data", "status", "--json"]);
    assert_eq!(status.code, 1, "a change makes status exit 1");
    assert_eq!(status.json()[0]["state"], "modified");
    let v2 = k.run(&["data", "add", "data/cancer.csv", "--json"]).ok().json();
    assert_eq!(v2["version"], 2);
    assert_eq!(read_pointer(&pointer_file)["version"].as_integer(), Some(2));
    let list = k.run(&["data", "list", "--json"]).ok().json();
    assert_eq!((list[0]["latest"]["version"].as_i64(), list[0]["versions"].as_i64()), (Some(2), Some(2)));

    // Go back to version 1 the git way: restore the pointer, then checkout.
    std::fs::write(&pointer_file, &v1_pointer).unwrap();
    let out = k.run(&["data", "checkout", "--json"]).ok().json();
    assert_eq!(out[0]["restored"], 1);
    assert_eq!(std::fs::read(&csv).unwrap(), original);
    assert_eq!(k.run(&["data", "status", "--json"]).ok().json()[0]["state"], "unchanged");

    // A missing file comes back too, hard-linked when asked.
    std::fs::remove_file(&csv).unwrap();
    assert_eq!(k.run(&["data", "status", "--json"]).json()[0]["state"], "missing");
    k.run(&["data", "checkout", "data/cancer.csv", "--hardlink"]).ok();
    assert_eq!(std::fs::read(&csv).unwrap(), original);
    use std::os::unix::fs::MetadataExt;
    let blob = k.path().join(".kiln/blobs").join(&blake3_hex(&original)[..2]).join(&blake3_hex(&original)[2..]);
    assert_eq!(std::fs::metadata(&csv).unwrap().ino(), std::fs::metadata(&blob).unwrap().ino());
    assert!(std::fs::metadata(&blob).unwrap().permissions().readonly(), "blobs are read-only");

    // Two versions' profiles compare.
    let diff = k.run(&["data", "diff", "cancer@1", "cancer@2"]).ok().stdout;
    assert!(diff.contains("cancer@1") && diff.contains("cancer@2"), "{diff}");
}

#[test]
fn a_directory_is_versioned_file_by_file() {
    let k = Kiln::new();
    let root = k.path().join("images");
    for i in 0..60 {
        let sub = root.join(format!("class{}", i % 3));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("img{i}.bin")), format!("pixels of image {i}").repeat(i + 1)).unwrap();
    }
    // Two files with the same bytes are stored once.
    std::fs::write(root.join("dup-a.bin"), "same").unwrap();
    std::fs::write(root.join("dup-b.bin"), "same").unwrap();
    let added = k.run(&["data", "add", "images", "--json"]).ok().json();
    assert_eq!((added["kind"].as_str(), added["files"].as_i64(), added["new_blobs"].as_i64()), (Some("dir"), Some(62), Some(61)));
    assert_eq!(k.run(&["data", "status", "images", "--json"]).ok().json()[0]["state"], "unchanged");

    std::fs::write(root.join("class0/img0.bin"), "retouched").unwrap();
    std::fs::remove_file(root.join("class1/img1.bin")).unwrap();
    std::fs::write(root.join("class2/new.bin"), "new").unwrap();
    let status = k.run(&["data", "status", "--json"]).json();
    assert_eq!(status[0]["state"], "modified");
    assert_eq!(status[0]["detail"], "1 modified, 1 missing, 1 added");

    // Unrecorded changes are not overwritten without --force.
    let refused = k.run(&["data", "checkout", "images"]).fails();
    assert!(refused.stderr.contains("img0.bin") && refused.stderr.contains("--force"), "{}", refused.stderr);
    let out = k.run(&["data", "checkout", "images", "--force", "--json"]).ok().json();
    assert_eq!((out[0]["restored"].as_i64(), out[0]["removed"].as_i64()), (Some(2), Some(1)));
    assert_eq!(std::fs::read_to_string(root.join("class0/img0.bin")).unwrap(), "pixels of image 0");
    assert!(!root.join("class2/new.bin").exists());
    assert_eq!(k.run(&["data", "status", "--json"]).ok().json()[0]["state"], "unchanged");
}

#[test]
fn bad_data_gets_clear_errors_and_nothing_half_done() {
    let k = Kiln::new();
    // A malformed CSV: refused with line and column, nothing registered.
    k.write("bad.csv", "a,b\n1,2\n3,4,5\n6,7\n");
    let e = k.run(&["data", "add", "bad.csv"]).fails().stderr;
    assert!(e.contains("bad.csv:3") && e.contains("--no-profile"), "{e}");
    assert!(!k.path().join("bad.csv.kiln").exists(), "no pointer for a refused add");
    assert_eq!(k.run(&["data", "list", "--json"]).ok().json(), serde_json::json!([]));
    // ... unless stored as opaque data.
    let added = k.run(&["data", "add", "bad.csv", "--no-profile", "--json"]).ok().json();
    assert_eq!(added["version"], 1);
    assert!(k.run(&["data", "show", "bad"]).ok().stdout.contains("--no-profile"));

    // A pointer edited by hand to a hash that does not exist.
    let pointer = k.path().join("bad.csv.kiln");
    let text = std::fs::read_to_string(&pointer).unwrap();
    let hash = read_pointer(&pointer)["hash"].as_str().unwrap().to_string();
    std::fs::write(&pointer, text.replace(&hash, &"0".repeat(64))).unwrap();
    std::fs::remove_file(k.path().join("bad.csv")).unwrap();
    let e = k.run(&["data", "checkout"]).fails().stderr;
    assert!(e.contains("bad.csv.kiln") && e.contains("not in the blob store"), "{e}");
    std::fs::write(&pointer, text.replace(&hash, "xyz")).unwrap();
    let e = k.run(&["data", "status"]).fails().stderr;
    assert!(e.contains("bad.csv.kiln") && e.contains("64 hex"), "{e}");

    // A symlink loop inside a directory.
    std::fs::create_dir_all(k.path().join("looped/inner")).unwrap();
    std::os::unix::fs::symlink("..", k.path().join("looped/inner/up")).unwrap();
    let e = k.run(&["data", "add", "looped"]).fails().stderr;
    assert!(e.contains("symlink loop") && e.contains("looped"), "{e}");
    assert!(!k.path().join("looped.kiln").exists());

    // Paths outside the workspace, and names that cannot be names.
    let e = k.run(&["data", "add", "/etc/hostname"]).fails().stderr;
    assert!(e.contains("outside the workspace"), "{e}");
    k.write("ok.csv", "a\n1\n");
    let e = k.run(&["data", "add", "ok.csv", "--name", "no/slashes"]).fails().stderr;
    assert!(e.contains("no/slashes"), "{e}");
    let e = k.run(&["data", "show", "ok@x"]).fails().stderr;
    assert!(e.contains("ok@x"), "{e}");
    let e = k.run(&["data", "show", "nothing"]).fails().stderr;
    assert!(e.contains("nothing"), "{e}");
}

#[test]
fn pipelines_read_dataset_versions_and_record_which() {
    let k = Kiln::new();
    let csv = k.path().join("cancer.csv");
    std::fs::copy(repo_root().join("examples/quickstart/breast_cancer.csv"), &csv).unwrap();
    k.run(&["data", "add", "cancer.csv"]).ok();
    let stages = r#"
[stages.train]
uses = "linear"
data = "cancer.train"
with = { model = "logistic", c = 1.0 }

[stages.evaluate]
uses = "metrics"
model = "train"
data = "cancer.test"
"#;
    let by_version = k.write(
        "by_version.toml",
        &format!(
            "name = \"by-version\"\n[inputs.cancer]\ndataset = \"cancer@1\"\ntarget = \"benign\"\nsplit = {{ test_size = 0.25, seed = 1 }}\n{stages}"
        ),
    );
    let by_path = k.write(
        "by_path.toml",
        &format!(
            "name = \"by-path\"\n[inputs.cancer]\npath = \"cancer.csv\"\ntarget = \"benign\"\nsplit = {{ test_size = 0.25, seed = 1 }}\n{stages}"
        ),
    );
    let first = k.run(&["run", by_version.to_str().unwrap(), "--json"]).ok().json();
    // The file changes after version 1 was taken: the version still reads
    // the old bytes, and a run by path does not claim to have read v1.
    std::fs::write(&csv, std::fs::read_to_string(&csv).unwrap().lines().take(300).collect::<Vec<_>>().join("\n") + "\n").unwrap();
    let second = k.run(&["run", by_version.to_str().unwrap(), "--json"]).ok().json();
    let accuracy = |run: &serde_json::Value| {
        let stages = run["stages"].as_array().unwrap();
        stages.iter().find(|s| s["stage"] == "evaluate").unwrap()["metrics"]["accuracy"].as_f64().unwrap()
    };
    assert_eq!(accuracy(&first), accuracy(&second), "the same version gives the same data");
    k.run(&["run", by_path.to_str().unwrap(), "--json"]).ok();
    k.run(&["data", "add", "cancer.csv"]).ok();
    let third = k.run(&["run", by_path.to_str().unwrap(), "--json"]).ok().json();

    let v1 = k.run(&["data", "show", "cancer@1", "--json"]).ok().json();
    let v1_runs: Vec<&str> = v1["runs"].as_array().unwrap().iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    let id = |r: &serde_json::Value| r["run_id"].as_str().unwrap().to_string();
    let mut expected = vec![id(&first), id(&second)];
    expected.sort();
    assert_eq!(v1_runs, expected, "version 1 was read by exactly the two by-version runs");
    let v2 = k.run(&["data", "show", "cancer@2", "--json"]).ok().json();
    assert_eq!(v2["runs"][0]["run_id"], id(&third).as_str(), "a tracked path matching its pointer records that version");
    assert_eq!(v2["runs"].as_array().unwrap().len(), 1);

    // A version that does not exist is a pipeline error with file and line.
    let missing = k.write(
        "missing.toml",
        &format!("name = \"m\"\n[inputs.cancer]\ndataset = \"cancer@9\"\ntarget = \"benign\"\nsplit = {{ test_size = 0.25 }}\n{stages}"),
    );
    let e = k.run(&["run", missing.to_str().unwrap()]).fails().stderr;
    assert!(e.contains("missing.toml:3") && e.contains("version 9"), "{e}");
}

#[test]
fn push_and_pull_through_a_folder_remote_move_only_what_is_missing() {
    let remote = tempfile::tempdir().unwrap();
    let config = format!("[remotes.shared]\nurl = \"{}\"\n", remote.path().display());
    let a = Kiln::new();
    let e = a.run(&["data", "push"]).fails().stderr;
    assert!(e.contains("no remote is configured") && e.contains("kiln.toml"), "{e}");
    a.write("kiln.toml", &config);
    a.write("table.csv", "x,y\n1,2\n3,4\n");
    std::fs::create_dir_all(a.path().join("docs/sub")).unwrap();
    for (f, text) in [("docs/a.txt", "alpha"), ("docs/sub/b.txt", "beta"), ("docs/sub/c.txt", "alpha")] {
        a.write(f, text);
    }
    a.run(&["data", "add", "table.csv"]).ok();
    a.run(&["data", "add", "docs"]).ok();
    // table, the manifest, alpha, beta: four distinct blobs.
    let pushed = a.run(&["data", "push", "--json"]).ok().json();
    assert_eq!((pushed["blobs"].as_i64(), pushed["copied"].as_i64()), (Some(4), Some(4)));
    let again = a.run(&["data", "push", "--json"]).ok().json();
    assert_eq!(again["copied"], 0, "only what the remote lacks is sent");

    // Another checkout of the same git repository: pointers and kiln.toml only.
    let b = Kiln::new();
    for f in ["kiln.toml", "table.csv.kiln", "docs.kiln"] {
        std::fs::copy(a.path().join(f), b.path().join(f)).unwrap();
    }
    assert_eq!(b.run(&["data", "status", "--json"]).json()[0]["state"], "missing");
    let pulled = b.run(&["data", "pull", "--json"]).ok().json();
    assert_eq!(pulled["transfer"]["copied"], 4);
    assert_eq!(std::fs::read_to_string(b.path().join("table.csv")).unwrap(), "x,y\n1,2\n3,4\n");
    assert_eq!(std::fs::read_to_string(b.path().join("docs/sub/c.txt")).unwrap(), "alpha");
    let status = b.run(&["data", "status", "--json"]).ok().json();
    assert!(status.as_array().unwrap().iter().all(|s| s["state"] == "unchanged"), "{status}");

    // A corrupt blob on the remote is refused and not stored.
    let c = Kiln::new();
    for f in ["kiln.toml", "table.csv.kiln"] {
        std::fs::copy(a.path().join(f), c.path().join(f)).unwrap();
    }
    let hash = read_pointer(&c.path().join("table.csv.kiln"))["hash"].as_str().unwrap().to_string();
    std::fs::write(remote.path().join(&hash[..2]).join(&hash[2..]), "x,y\n1,2\n3,5\n").unwrap();
    let e = c.run(&["data", "pull"]).fails().stderr;
    assert!(e.contains("corrupt") && e.contains(&hash), "{e}");
    assert!(!c.path().join(".kiln/blobs").join(&hash[..2]).join(&hash[2..]).exists());
    assert!(!c.path().join("table.csv").exists());
}

/// Every blob under its name is whole: its bytes hash to the name.
fn assert_blobs_whole(k: &Kiln) {
    let root = k.path().join(".kiln/blobs");
    // A kill before the workspace was made leaves no blob store at all.
    let Ok(dirs) = std::fs::read_dir(&root) else { return };
    for dir in dirs.flatten() {
        let prefix = dir.file_name().to_string_lossy().into_owned();
        if prefix.len() != 2 {
            continue;
        }
        for blob in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let id = format!("{prefix}{}", blob.file_name().to_string_lossy());
            assert_eq!(blake3_hex(&std::fs::read(blob.path()).unwrap()), id, "a blob named for content it does not hold");
        }
    }
}

#[test]
fn an_interrupted_add_leaves_nothing_half_done_and_rerunning_completes_it() {
    let k = Kiln::new();
    // Enough work that the kills land in hashing, copying, the database
    // and the pointer: 2,000 small files and one of 32 MiB.
    std::fs::create_dir_all(k.path().join("set/many")).unwrap();
    for i in 0..2000 {
        std::fs::write(k.path().join(format!("set/many/{i}.txt")), format!("file {i}\n").repeat(400)).unwrap();
    }
    let big: Vec<u8> = (0..32u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    std::fs::write(k.path().join("set/big.bin"), &big).unwrap();

    // How long a whole add takes here, so that the kills below spread over
    // all of it (not an assertion: this machine's speed only places them).
    let started = std::time::Instant::now();
    k.run(&["data", "add", "set"]).ok();
    let whole = started.elapsed();
    std::fs::remove_dir_all(k.path().join(".kiln")).unwrap();
    std::fs::remove_file(k.path().join("set.kiln")).unwrap();
    std::fs::remove_file(k.path().join(".gitignore")).unwrap();

    for fraction in [0.05, 0.2, 0.4, 0.6, 0.75, 0.85, 0.9, 0.95, 0.98, 1.0] {
        let mut child = k.cmd(&["data", "add", "set"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(whole.mul_f64(fraction));
        let _ = child.kill(); // SIGKILL: no destructor, no cleanup runs
        child.wait().unwrap();
        assert_blobs_whole(&k);
        // A pointer, if written, is whole and names a version that exists.
        let pointer = k.path().join("set.kiln");
        if pointer.exists() {
            let p = read_pointer(&pointer);
            assert_eq!(p["name"].as_str(), Some("set"));
            let shown = k.run(&["data", "show", "set@1", "--json"]).ok().json();
            assert_eq!(shown["version"]["hash"].as_str(), p["hash"].as_str());
        }
        // The catalogue stays readable, with at most the one version.
        let listed = k.run(&["data", "list", "--json"]).ok().json();
        assert!(listed.as_array().unwrap().len() <= 1, "{listed}");
    }

    let added = k.run(&["data", "add", "set", "--json"]).ok().json();
    assert_eq!(added["version"], 1, "re-running completes the same version: {added}");
    assert_eq!(added["files"], 2001);
    assert_blobs_whole(&k);
    let tmp: Vec<_> = std::fs::read_dir(k.path().join(".kiln/blobs/.tmp")).unwrap().flatten().collect();
    assert!(tmp.is_empty(), "the killed runs' temporary files are swept: {tmp:?}");
    assert_eq!(k.run(&["data", "status", "--json"]).ok().json()[0]["state"], "unchanged");
    std::fs::remove_dir_all(k.path().join("set")).unwrap();
    k.run(&["data", "checkout", "set"]).ok();
    assert!(std::fs::read(k.path().join("set/big.bin")).unwrap() == big);
    assert_eq!(std::fs::read_to_string(k.path().join("set/many/1999.txt")).unwrap(), "file 1999\n".repeat(400));
}

#[test]
fn add_with_hardlink_stores_no_second_copy_and_protects_the_file() {
    use std::os::unix::fs::MetadataExt;
    let k = Kiln::new();
    std::fs::create_dir_all(k.path().join("set")).unwrap();
    k.write("set/a.bin", "alpha");
    k.write("set/b.bin", "beta");
    let added = k.run(&["data", "add", "set", "--hardlink", "--json"]).ok().json();
    assert_eq!(added["files"], 2);
    let id = blake3_hex(b"alpha");
    let blob = k.path().join(".kiln/blobs").join(&id[..2]).join(&id[2..]);
    let (file_meta, blob_meta) = (std::fs::metadata(k.path().join("set/a.bin")).unwrap(), std::fs::metadata(&blob).unwrap());
    assert_eq!(file_meta.ino(), blob_meta.ino(), "the blob is the file, linked");
    assert!(file_meta.permissions().readonly(), "the linked file is protected from in-place writes");
    assert_eq!(k.run(&["data", "status", "--json"]).ok().json()[0]["state"], "unchanged");
    // Replacing the file (as editors do) leaves the stored version whole.
    std::fs::remove_file(k.path().join("set/a.bin")).unwrap();
    k.write("set/a.bin", "changed");
    assert_eq!(k.run(&["data", "status", "--json"]).json()[0]["state"], "modified");
    assert_eq!(std::fs::read(&blob).unwrap(), b"alpha");
    k.run(&["data", "checkout", "set", "--force"]).ok();
    assert_eq!(std::fs::read_to_string(k.path().join("set/a.bin")).unwrap(), "alpha");
}

/// The quickstart's training data as Snappy Parquet, written from the
/// same reader pipelines use.
fn write_parquet(csv: &Path, parquet: &Path) {
    use kiln::dataset::read::{self, Format, ReadOptions};
    let frame = read::read(read::open(csv).unwrap(), csv, Format::Csv { delimiter: b',' }, ReadOptions::default()).unwrap();
    let batch = arrow_array::RecordBatch::try_new(frame.schema.clone(), frame.columns).unwrap();
    let props = parquet::file::properties::WriterProperties::builder().set_compression(parquet::basic::Compression::SNAPPY).build();
    let mut writer = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(parquet).unwrap(), batch.schema(), Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[test]
fn a_pipeline_reads_parquet_inputs_as_it_reads_csv() {
    let k = Kiln::new();
    let csv = k.path().join("cancer.csv");
    std::fs::copy(repo_root().join("examples/quickstart/breast_cancer.csv"), &csv).unwrap();
    write_parquet(&csv, &k.path().join("cancer.parquet"));
    let spec = |file: &str| {
        format!(
            "name = \"p\"\n[inputs.d]\npath = \"{file}\"\ntarget = \"benign\"\nsplit = {{ test_size = 0.25, seed = 7 }}\n\
             [stages.train]\nuses = \"linear\"\ndata = \"d.train\"\nwith = {{ model = \"logistic\" }}\n\
             [stages.evaluate]\nuses = \"metrics\"\nmodel = \"train\"\ndata = \"d.test\"\n"
        )
    };
    let mut accuracy = Vec::new();
    for file in ["cancer.csv", "cancer.parquet"] {
        let p = k.write("p.toml", &spec(file));
        let run = k.run(&["run", p.to_str().unwrap(), "--json"]).ok().json();
        let evaluate = run["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "evaluate").unwrap().clone();
        accuracy.push(evaluate["metrics"]["accuracy"].as_f64().unwrap());
    }
    assert!(accuracy[0] > 0.9, "{accuracy:?}");
    assert_eq!(accuracy[0], accuracy[1], "the same table from either format trains the same model");
}
