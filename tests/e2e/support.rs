//! Run the real `kiln` binary in a throwaway workspace.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Kiln {
    pub dir: tempfile::TempDir,
    pub database_url: Option<String>,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "expected success\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
    pub fn fails(self) -> Self {
        assert_ne!(self.code, 0, "expected failure\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Kiln {
    /// A fresh workspace on SQLite (the default).
    pub fn new() -> Self {
        Kiln { dir: tempfile::tempdir().unwrap(), database_url: None }
    }

    /// A fresh workspace whose metadata lives in PostgreSQL.
    pub fn with_database(url: String) -> Self {
        Kiln { dir: tempfile::tempdir().unwrap(), database_url: Some(url) }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
        c.args(args)
            .current_dir(self.dir.path())
            .env_remove("KILN_HOME")
            .env_remove("KILN_DATABASE_URL")
            // `kiln serve` reads MLflow's source pattern from the environment.
            .env_remove("MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX")
            .env("NO_COLOR", "1");
        if let Some(url) = &self.database_url {
            c.env("KILN_DATABASE_URL", url);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.cmd(args).output().expect("running kiln").into()
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    }
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A fixture plugin built by host/build.rs.
pub fn fixture(name: &str) -> String {
    let file = format!("kiln_fixture_{}.wasm", name.replace('-', "_"));
    Path::new(kiln::FIXTURE_DIR).join(file).display().to_string()
}

/// A small classification CSV: two features and a binary target.
pub fn tiny_csv() -> String {
    let mut s = String::from("x1,x2,y\n");
    for i in 0..60 {
        let y = i % 2;
        s.push_str(&format!("{},{},{}\n", i as f64 / 10.0 + y as f64, (i * 7 % 11) as f64, y));
    }
    s
}

/// A fresh PostgreSQL database for one test (the server must be running).
pub fn postgres_database() -> String {
    let admin = std::env::var("KILN_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("kiln_e2e_{}", uuid::Uuid::new_v4().simple());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use sqlx::Executor;
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&admin).await.unwrap_or_else(|e| panic!("PostgreSQL must be running at {admin}: {e}"));
        pool.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap();
        pool.close().await;
    });
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}

/// A `kiln serve` (or `kiln worker`) process, killed on drop.
pub struct Process {
    pub child: std::process::Child,
    /// `http://127.0.0.1:PORT` for a server.
    pub url: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Kiln {
    /// Start `kiln serve --addr 127.0.0.1:0 ARGS` and wait until it listens.
    pub fn serve(&self, args: &[&str]) -> Process {
        use std::io::BufRead;
        let mut all = vec!["serve", "--addr", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut child =
            self.cmd(&all).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::inherit()).spawn().expect("starting kiln serve");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("no address in `{line}`")).to_string();
        Process { child, url }
    }

    /// Start `kiln worker ARGS`.
    pub fn worker(&self, args: &[&str]) -> Process {
        let mut all = vec!["worker"];
        all.extend_from_slice(args);
        let child = self.cmd(&all).stdout(std::process::Stdio::null()).spawn().expect("starting kiln worker");
        Process { child, url: String::new() }
    }
}

/// The Python of a venv under target/ holding `packages` (pip
/// requirement strings), made on first use; `module` is imported to
/// check that an existing venv is ready.
pub fn python_venv(name: &str, module: &str, packages: &[&str]) -> PathBuf {
    let venv = repo_root().join("target").join(name);
    let python = venv.join("bin/python");
    let ready = Command::new(&python).args(["-c", &format!("import {module}")]).output().is_ok_and(|o| o.status.success());
    if !ready {
        let ok = Command::new("python3").args(["-m", "venv"]).arg(&venv).status().unwrap().success();
        assert!(ok, "python3 -m venv {} failed", venv.display());
        let ok = Command::new(venv.join("bin/pip")).args(["install", "-q"]).args(packages).status().unwrap().success();
        assert!(ok, "pip install {packages:?} failed");
    }
    python
}

/// A free TCP port on 127.0.0.1 (for a server that cannot be asked to
/// pick its own and report it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An HTTP client that returns 4xx/5xx responses instead of errors.
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// (status, body) of a GET.
pub fn get(url: &str) -> (u16, String) {
    let mut r = http().get(url).call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

/// (status, body) of a POST.
pub fn post(url: &str, content_type: &str, body: &str) -> (u16, String) {
    let mut r = http().post(url).header("content-type", content_type).send(body).unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

/// Poll `f` every 100 ms until it returns `Some`, or panic after `secs`.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Rows of a query against a database (a test PostgreSQL database or a
/// workspace's SQLite file), as text columns.
pub fn pg_query(url: &str, sql: &'static str) -> Vec<Vec<String>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use sqlx::Row;
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(url).await.unwrap();
        let rows = sqlx::query(sql).fetch_all(&pool).await.unwrap();
        let out = rows.iter().map(|r| (0..r.len()).map(|i| r.try_get::<String, _>(i).unwrap_or_default()).collect()).collect();
        pool.close().await;
        out
    })
}
