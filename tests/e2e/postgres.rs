//! The same commands against PostgreSQL.

use crate::support::{Kiln, fixture, postgres_database, repo_root};

#[test]
fn quickstart_and_plugins_on_postgres() {
    let k = Kiln::with_database(postgres_database());
    let pipeline = repo_root().join("examples/quickstart/pipeline.toml");
    k.run(&["run", pipeline.to_str().unwrap()]).ok();
    assert!(!k.path().join(".kiln/kiln.db").exists(), "metadata went to PostgreSQL, not SQLite");
    let runs = k.run(&["runs", "list", "--json"]).ok().json();
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(runs[0]["status"], "FINISHED");
    assert!(runs[0]["metrics"]["evaluate.accuracy"].as_f64().unwrap() > 0.95);
    let again = k.run(&["run", pipeline.to_str().unwrap(), "--json"]).ok().json();
    assert!(again["stages"].as_array().unwrap().iter().any(|s| s["status"] == "cached"));
    k.run(&["plugin", "add", &fixture("misbehave")]).ok();
    assert!(k.run(&["plugin", "inspect", "misbehave"]).ok().stdout.contains("trainer"));
    k.run(&["plugin", "remove", "misbehave@0.1.0"]).ok();
}
