//! Artifacts stream: an upload far larger than the server's memory use
//! goes through both APIs, comes back byte for byte, and the server's peak
//! resident memory stays well below the artifact's size.

use crate::support::{Kiln, http};
use std::io::Read;

const SIZE: u64 = 256 << 20;

/// SIZE bytes of a fixed pseudo-random pattern, produced on the fly.
struct Pattern {
    left: u64,
    state: u64,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left as usize);
        for b in &mut buf[..n] {
            self.state = self.state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            *b = (self.state >> 56) as u8;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn pattern() -> Pattern {
    Pattern { left: SIZE, state: 7 }
}

fn hash(mut r: impl Read) -> (blake3::Hash, u64) {
    let mut h = blake3::Hasher::new();
    let n = std::io::copy(&mut r, &mut h).unwrap();
    (h.finalize(), n)
}

/// Peak resident set of a process, in bytes (VmHWM).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
fn a_large_artifact_streams_through_both_apis() {
    let k = Kiln::new();
    let server = k.serve(&["--workers", "0", "--no-scheduler"]);
    let agent = http();
    let mut r = agent
        .post(&format!("{}/api/2.0/mlflow/runs/create", server.url))
        .header("content-type", "application/json")
        .send(r#"{"experiment_id": "0"}"#)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    let run = v["run"]["info"]["run_id"].as_str().unwrap().to_string();
    let expected = hash(pattern());

    let mlflow = format!("{}/api/2.0/mlflow-artifacts/artifacts/0/{run}/artifacts/big/weights.bin", server.url);
    let v1 = format!("{}/api/v1/runs/{run}/artifacts/big/copy.bin", server.url);
    for url in [&mlflow, &v1] {
        let mut body = pattern();
        let r = agent.put(url).send(ureq::SendBody::from_reader(&mut body)).unwrap();
        assert!(r.status().is_success(), "PUT {url}: {}", r.status());
        let mut r = agent.get(url).call().unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let got = hash(r.body_mut().with_config().limit(u64::MAX).reader());
        assert_eq!(got, expected, "{url} returns the bytes uploaded");
    }
    let run_json = k.run(&["runs", "show", &run, "--json"]).ok().json();
    let sizes: Vec<u64> = run_json["artifacts"].as_array().unwrap().iter().map(|a| a["size"].as_u64().unwrap()).collect();
    assert_eq!(sizes, [SIZE, SIZE]);
    let peak = peak_rss(server.child.id());
    assert!(peak < SIZE / 2, "the server's peak RSS was {} MiB for a {} MiB artifact", peak >> 20, SIZE >> 20);
    eprintln!("two {} MiB artifacts up and down; server peak RSS {} MiB", SIZE >> 20, peak >> 20);
}
