//! Bad input gets an error that names the file, line and field, and nothing
//! already stored is touched.

use crate::support::{Kiln, tiny_csv};

fn pipeline(k: &Kiln, csv: &str, with: &str) -> String {
    k.write("d.csv", csv);
    k.write(
        "p.toml",
        &format!("name = \"p\"\n[inputs.d]\npath = \"d.csv\"\ntarget = \"y\"\n[stages.train]\nuses = \"linear\"\ndata = \"d\"\nwith = {with}\n"),
    )
    .display()
    .to_string()
}

fn run_count(k: &Kiln) -> usize {
    k.run(&["runs", "list", "--json"]).ok().json().as_array().unwrap().len()
}

#[test]
fn ragged_and_non_numeric_csv_rows_name_file_line_and_column() {
    let k = Kiln::new();
    let p = pipeline(&k, "x1,x2,y\n1,2,0\n3,4\n", "{}");
    let err = k.run(&["run", &p]).fails().stderr;
    assert!(err.contains("d.csv:3: this row has 2 fields but the header has 3"), "{err}");
    let p = pipeline(&k, "x1,x2,y\n1,2,0\n3,four,1\n", "{}");
    let err = k.run(&["run", &p]).fails().stderr;
    assert!(err.contains("d.csv:3:") && err.contains("column `x2`") && err.contains("`four`"), "{err}");
    let p = pipeline(&k, "x1,x2,y\n", "{}");
    assert!(k.run(&["run", &p]).fails().stderr.contains("d.csv: the file has a header but no data rows"));
    assert_eq!(run_count(&k), 0, "nothing ran");
}

#[test]
fn params_that_break_the_schema_are_refused_before_anything_runs() {
    let k = Kiln::new();
    let p = pipeline(&k, &tiny_csv(), "{ c = -1 }");
    let err = k.run(&["run", &p]).fails().stderr;
    assert!(err.contains("p.toml:5: stage `train`: params for linear@0.1.0 are invalid: `c`"), "{err}");
    let p = pipeline(&k, &tiny_csv(), "{ modle = \"ols\" }");
    let err = k.run(&["run", &p]).fails().stderr;
    assert!(err.contains("modle"), "{err}");
    assert_eq!(run_count(&k), 0);
}

#[test]
fn spec_errors_name_the_line() {
    let k = Kiln::new();
    k.write("d.csv", &tiny_csv());
    let p =
        k.write("p.toml", "name = \"p\"\n[inputs.d]\npath = \"d.csv\"\ntarget = \"y\"\n[stages.train]\nuses = \"no-such-plugin\"\ndata = \"d\"\n");
    let err = k.run(&["run", p.to_str().unwrap()]).fails().stderr;
    assert!(err.contains("p.toml:6: stage `train`: no plugin named `no-such-plugin`"), "{err}");
    let p = k.write("q.toml", "name = \"p\"\n[inputs.d]\npath = \"d.csv\"\ntarget = \"nope\"\n[stages.train]\nuses = \"linear\"\ndata = \"d\"\n");
    let err = k.run(&["run", p.to_str().unwrap()]).fails().stderr;
    assert!(err.contains("q.toml:3: input `d`") && err.contains("no target column `nope`"), "{err}");
    let p = k.write("r.toml", "name = \"p\"\n[inputs.d]\npath = \"d.csv\"\ntarget = \"y\"\n[stages.eval]\nuses = \"metrics\"\ndata = \"d\"\n");
    let err = k.run(&["run", p.to_str().unwrap()]).fails().stderr;
    assert!(err.contains("r.toml:5: stage `eval`: a evaluator plugin (metrics) needs `model`"), "{err}");
}

#[test]
fn a_failed_run_leaves_earlier_runs_intact() {
    let k = Kiln::new();
    let good = pipeline(&k, &tiny_csv(), "{}");
    k.run(&["run", &good]).ok();
    let before = k.run(&["runs", "list", "--json"]).ok().json();
    let bad = pipeline(&k, "x1,x2,y\n1,2\n", "{}");
    k.run(&["run", &bad]).fails();
    let after = k.run(&["runs", "list", "--json"]).ok().json();
    assert_eq!(before, after);
}
