//! Pipeline input loading beside pandas (run with host/benches/run.sh):
//! two CSV files of 100,000 rows × 20 numeric columns (about 39 MB each),
//! read into the tables stages get, by the reader pipelines use
//! (`dataset::read`), and by `pandas.read_csv` on the same files; then the
//! same data as Snappy Parquet, beside `pandas.read_parquet` (pyarrow).
//!
//! Medians of 5; no assertion on time anywhere.

use kiln::dataset::read::{self, Format, Purpose, ReadOptions};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

const ROWS: usize = 100_000;
const COLUMNS: usize = 20;
const REPEATS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn row(name: &str, kiln: &str, peer: &str, ratio: &str) {
    println!("{name:<52} {kiln:>14} {peer:>26} {ratio:>18}");
}

/// A deterministic generator (xorshift), so both files are the same on
/// every run.
fn values(seed: u64) -> impl Iterator<Item = f64> {
    let mut s = seed;
    std::iter::repeat_with(move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64 * 100.0 - 50.0
    })
}

fn write_csv(path: &Path, seed: u64) {
    let mut out = String::with_capacity(40 << 20);
    out.push_str(&(0..COLUMNS).map(|c| format!("x{c}")).collect::<Vec<_>>().join(","));
    out.push('\n');
    let mut v = values(seed);
    for _ in 0..ROWS {
        for c in 0..COLUMNS {
            if c > 0 {
                out.push(',');
            }
            write!(out, "{}", v.next().unwrap()).unwrap();
        }
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

fn write_parquet(csv: &Path, parquet: &Path) {
    use parquet::arrow::ArrowWriter;
    use parquet::basic::Compression;
    use parquet::file::properties::WriterProperties;
    let frame = read::read(read::open(csv).unwrap(), csv, Format::Csv { delimiter: b',' }, ReadOptions::default()).unwrap();
    let batch = arrow_array::RecordBatch::try_new(frame.schema.clone(), frame.columns).unwrap();
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(parquet).unwrap(), Arc::clone(&frame.schema), Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// What a pipeline does with an input: read it into the stage's table.
fn kiln_read(paths: &[PathBuf], format: Format) -> f64 {
    let t = Instant::now();
    for p in paths {
        let options = ReadOptions { purpose: Purpose::Pipeline, ..Default::default() };
        let frame = read::read(read::open(p).unwrap(), p, format, options).unwrap();
        let table = read::to_table(frame, p, &[]).unwrap();
        assert_eq!((table.rows, table.columns.len()), (ROWS, COLUMNS));
    }
    t.elapsed().as_secs_f64()
}

/// pandas on the same files, timed inside Python: medians of `REPEATS`.
fn pandas(python: &str, function: &str, paths: &[PathBuf]) -> Option<f64> {
    let files: Vec<String> = paths.iter().map(|p| format!("{:?}", p.display().to_string())).collect();
    let script = format!(
        "import time, statistics, pandas\nfiles = [{}]\nt = []\nfor _ in range({REPEATS}):\n    s = time.perf_counter()\n    \
         for f in files:\n        df = pandas.{function}(f)\n        assert df.shape == ({ROWS}, {COLUMNS})\n    \
         t.append(time.perf_counter() - s)\nprint(statistics.median(t))\n",
        files.join(", ")
    );
    let out = Command::new(python).args(["-c", &script]).output().ok()?;
    if !out.status.success() {
        eprintln!("pandas.{function} failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let csvs: Vec<PathBuf> = (0..2).map(|i| dir.path().join(format!("d{i}.csv"))).collect();
    for (i, p) in csvs.iter().enumerate() {
        write_csv(p, 0x9E37_79B9_7F4A_7C15 + i as u64);
    }
    let parquets: Vec<PathBuf> = csvs.iter().map(|p| p.with_extension("parquet")).collect();
    for (c, p) in csvs.iter().zip(&parquets) {
        write_parquet(c, p);
    }
    let mb = |paths: &[PathBuf]| paths.iter().map(|p| std::fs::metadata(p).unwrap().len()).sum::<u64>() as f64 / 1e6;
    println!("Pipeline inputs: 2 files × {ROWS} rows × {COLUMNS} numeric columns ({:.0} MB CSV, {:.0} MB Parquet)", mb(&csvs), mb(&parquets));
    row("", "kiln", "pandas", "");
    let python = std::env::var("KILN_BENCH_PYTHON").ok();
    for (name, paths, format, function) in [
        ("read two CSV files into tables", &csvs, Format::Csv { delimiter: b',' }, "read_csv"),
        ("read the same as Parquet (Snappy)", &parquets, Format::Parquet, "read_parquet"),
    ] {
        kiln_read(paths, format);
        let kiln = median((0..REPEATS).map(|_| kiln_read(paths, format)).collect());
        let peer = python.as_deref().and_then(|py| pandas(py, function, paths));
        let (peer_text, ratio) = match peer {
            Some(p) => (format!("{:.3} s ({function})", p), format!("{:.2}× pandas", p / kiln)),
            None => ("(no KILN_BENCH_PYTHON)".to_string(), String::new()),
        };
        row(name, &format!("{kiln:.3} s"), &peer_text, &ratio);
    }
}
