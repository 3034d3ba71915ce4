//! `kiln data push/pull` against a real S3-protocol server: moto's server
//! (from PyPI, in a venv under target/), started by this test on a free
//! port. Kiln talks to it through object_store exactly as it would to AWS,
//! signing every request; the test reads the bucket back over plain HTTP.

use crate::support::{Kiln, Run, free_port, http, python_venv, wait_for};
use std::process::{Child, Command, Stdio};

struct Moto {
    child: Child,
    url: String,
    python: std::path::PathBuf,
}

impl Moto {
    /// Run `code` with boto3 (installed with moto) and an S3 client `s3`
    /// for this server: how the test changes the bucket behind Kiln's back.
    fn boto(&self, code: &str) {
        let script = format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\n{code}\n",
            self.url
        );
        let out = Command::new(&self.python).args(["-c", &script]).output().unwrap();
        assert!(out.status.success(), "boto3 failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto() -> Moto {
    let python = python_venv("moto-venv", "moto.server", &["moto[server]>=5,<6"]);
    let port = free_port();
    let child = Command::new(&python)
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting moto's server");
    let url = format!("http://127.0.0.1:{port}");
    let moto = Moto { child, url, python };
    wait_for(60, "moto's server", || http().get(&moto.url).call().ok().map(|_| ()));
    moto
}

/// `kiln ARGS` with test credentials in the environment, where a user's
/// AWS credentials live.
fn kiln_s3(k: &Kiln, args: &[&str]) -> Run {
    k.cmd(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("running kiln")
        .into()
}

fn object(moto: &Moto, key: &str) -> (u16, Vec<u8>) {
    let mut r = http().get(&format!("{}/{key}", moto.url)).call().unwrap();
    (r.status().as_u16(), r.body_mut().with_config().limit(u64::MAX).read_to_vec().unwrap())
}

#[test]
fn push_and_pull_through_an_s3_remote_verify_and_move_only_what_is_missing() {
    let moto = moto();
    moto.boto("s3.create_bucket(Bucket='kiln-test')");
    let config = format!("[remotes.s3]\nurl = \"s3://kiln-test/team/data\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n", moto.url);

    let a = Kiln::new();
    a.write("kiln.toml", &config);
    a.write("table.csv", "x,y\n1,2\n3,4\n");
    // 20 MiB of varied bytes: more than one 8 MiB part, so a multipart upload.
    let big: Vec<u8> = (0..20u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::create_dir_all(a.path().join("docs/sub")).unwrap();
    std::fs::write(a.path().join("docs/big.bin"), &big).unwrap();
    for (f, text) in [("docs/a.txt", "alpha"), ("docs/sub/b.txt", "beta"), ("docs/sub/c.txt", "alpha")] {
        a.write(f, text);
    }
    a.run(&["data", "add", "table.csv"]).ok();
    a.run(&["data", "add", "docs"]).ok();

    // table, the manifest, big, alpha, beta: five distinct blobs.
    let pushed = kiln_s3(&a, &["data", "push", "--json"]).ok().json();
    assert_eq!((pushed["blobs"].as_i64(), pushed["copied"].as_i64()), (Some(5), Some(5)), "{pushed}");
    assert!(pushed["bytes"].as_u64().unwrap() > 20 << 20);
    let again = kiln_s3(&a, &["data", "push", "--json"]).ok().json();
    assert_eq!(again["copied"], 0, "only what the remote lacks is sent");
    // The objects sit under the URL's prefix, in the blob store's layout.
    let big_id = blake3::hash(&big).to_hex().to_string();
    let (code, body) = object(&moto, &format!("kiln-test/team/data/{}/{}", &big_id[..2], &big_id[2..]));
    assert_eq!(code, 200);
    assert!(body == big, "the multipart upload holds the file's exact bytes");

    // Another clone of the repository: pointers and kiln.toml only.
    let b = Kiln::new();
    for f in ["kiln.toml", "table.csv.kiln", "docs.kiln"] {
        std::fs::copy(a.path().join(f), b.path().join(f)).unwrap();
    }
    let pulled = kiln_s3(&b, &["data", "pull", "--json"]).ok().json();
    assert_eq!(pulled["transfer"]["copied"], 5, "{pulled}");
    assert_eq!(std::fs::read_to_string(b.path().join("table.csv")).unwrap(), "x,y\n1,2\n3,4\n");
    assert!(std::fs::read(b.path().join("docs/big.bin")).unwrap() == big);
    assert_eq!(std::fs::read_to_string(b.path().join("docs/sub/c.txt")).unwrap(), "alpha");
    let status = b.run(&["data", "status", "--json"]).ok().json();
    assert!(status.as_array().unwrap().iter().all(|s| s["state"] == "unchanged"), "{status}");
    let again = kiln_s3(&b, &["data", "pull", "--json"]).ok().json();
    assert_eq!(again["transfer"]["copied"], 0, "nothing is fetched twice");

    // A corrupt object (overwritten behind Kiln's back) is refused and not stored.
    let c = Kiln::new();
    for f in ["kiln.toml", "table.csv.kiln"] {
        std::fs::copy(a.path().join(f), c.path().join(f)).unwrap();
    }
    let hash = blake3::hash(b"x,y\n1,2\n3,4\n").to_hex().to_string();
    moto.boto(&format!("s3.put_object(Bucket='kiln-test', Key='team/data/{}/{}', Body=b'x,y\\n1,2\\n3,5\\n')", &hash[..2], &hash[2..]));
    let e = kiln_s3(&c, &["data", "pull"]).fails().stderr;
    assert!(e.contains("corrupt") && e.contains(&hash) && e.contains("s3://kiln-test/team/data"), "{e}");
    assert!(!c.path().join(".kiln/blobs").join(&hash[..2]).join(&hash[2..]).exists());
    assert!(!c.path().join("table.csv").exists());

    // A bucket that does not exist: an error naming the remote, nothing half-done.
    let d = Kiln::new();
    d.write("kiln.toml", &config.replace("kiln-test", "no-such-bucket"));
    d.write("t.csv", "a\n1\n");
    d.run(&["data", "add", "t.csv"]).ok();
    let e = kiln_s3(&d, &["data", "push"]).fails().stderr;
    assert!(e.contains("remote `s3`") && e.contains("s3://no-such-bucket/team/data"), "{e}");
}
