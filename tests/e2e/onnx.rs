//! ONNX models trained outside Kiln: scikit-learn models exported with
//! skl2onnx (a random forest, a logistic regression), imported as a file
//! and as a folder MLflow saved with an `onnx` flavour, served by the
//! bundled `onnx` plugin in the sandbox, answer what scikit-learn answers.
//! Models it cannot run are refused at import, with what to do.

use crate::support::{Kiln, http, python_venv, repo_root};
use serde_json::{Value, json};

/// Train on the quickstart's data in Python, export, and write the holdout
/// rows and scikit-learn's own answers for them.
const TRAIN: &str = r#"
import json, sys
import numpy as np, pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from skl2onnx import to_onnx
import mlflow.onnx

out = sys.argv[2]
frame = pd.read_csv(sys.argv[1])
y = frame.pop("benign").to_numpy()
x = frame.to_numpy(dtype=np.float32)
train, test = slice(0, 450), slice(450, None)
answers = {"columns": list(frame.columns), "rows": x[test].tolist()}
for name, model in [("forest", RandomForestClassifier(n_estimators=100, max_depth=10, random_state=0)),
                    ("logistic", LogisticRegression(max_iter=5000))]:
    model.fit(x[train], y[train])
    onx = to_onnx(model, x[:1], options={id(model): {"zipmap": False}}, target_opset={"": 15, "ai.onnx.ml": 3})
    with open(f"{out}/{name}.onnx", "wb") as f:
        f.write(onx.SerializeToString())
    answers[name] = {"labels": model.predict(x[test]).tolist(), "proba": model.predict_proba(x[test])[:, 1].tolist()}
    if name == "logistic":
        signature = mlflow.models.infer_signature(frame.iloc[train], model.predict(x[train]))
        mlflow.onnx.save_model(onx, f"{out}/mlflow-logistic", signature=signature, save_as_external_data=False)
    if name == "forest":
        # The default export, ending in ZipMap, which tract cannot run.
        zipped = to_onnx(model, x[:1], target_opset={"": 15, "ai.onnx.ml": 3})
        with open(f"{out}/zipmap.onnx", "wb") as f:
            f.write(zipped.SerializeToString())
json.dump(answers, open(f"{out}/answers.json", "w"))
"#;

/// Log the exported logistic model to a Kiln server with MLflow's client
/// and register it, as a user of MLflow would.
const LOG: &str = r#"
import sys, onnx, mlflow, mlflow.onnx, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
frame = pd.read_csv(sys.argv[2]).drop(columns=["benign"])
signature = mlflow.models.infer_signature(frame.head(5), [0] * 5)
with mlflow.start_run():
    mlflow.onnx.log_model(onnx.load(sys.argv[3]), "model", registered_model_name="from-mlflow", signature=signature, save_as_external_data=False)
"#;

fn predict(url: &str, deployment: &str, body: &Value) -> Value {
    let mut resp = http()
        .post(&format!("{url}/deployments/{deployment}/invocations"))
        .header("content-type", "application/json")
        .send(body.to_string())
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    assert_eq!(status, 200, "{deployment}: {text}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn scikit_learn_models_exported_to_onnx_are_imported_and_answer_as_scikit_learn_does() {
    let python = python_venv(
        "onnx-venv",
        "skl2onnx, mlflow.onnx, sklearn, onnxruntime",
        &["scikit-learn", "skl2onnx", "onnx", "onnxruntime", "mlflow-skinny<3", "pandas"],
    );
    let k = Kiln::new();
    let out = k.path().join("models");
    std::fs::create_dir_all(&out).unwrap();
    let csv = repo_root().join("examples/quickstart/breast_cancer.csv");
    let script = k.write("train.py", TRAIN);
    // In the workspace: MLflow leaves an `mlruns` folder where it runs.
    let trained = std::process::Command::new(&python).current_dir(k.path()).arg(&script).arg(&csv).arg(&out).output().unwrap();
    assert!(trained.status.success(), "{}", String::from_utf8_lossy(&trained.stderr));
    let answers: Value = serde_json::from_str(&std::fs::read_to_string(out.join("answers.json")).unwrap()).unwrap();
    let columns: Vec<String> = answers["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();

    // What tract cannot run is refused at import, saying how to export.
    let refused = k.run(&["models", "import", "zipped", out.join("zipmap.onnx").to_str().unwrap()]).fails();
    assert!(refused.stderr.contains("ZipMap") && refused.stderr.contains("'zipmap': False"), "{}", refused.stderr);
    k.write("junk.onnx", "not a model");
    let refused = k.run(&["models", "import", "junk", k.path().join("junk.onnx").to_str().unwrap()]).fails();
    assert!(refused.stderr.contains("junk.onnx") && refused.stderr.contains("not an ONNX model"), "{}", refused.stderr);
    assert!(k.run(&["models", "show", "zipped", "--json"]).fails().stderr.contains("zipped"), "nothing was registered");

    // A file, with its columns named; an MLflow folder names its own.
    let joined = columns.join(",");
    let forest = k
        .run(&["models", "import", "forest", out.join("forest.onnx").to_str().unwrap(), "--columns", &joined, "--alias", "champion", "--json"])
        .ok()
        .json();
    assert_eq!(forest["version"], 1);
    assert_eq!(forest["signature"]["inputs"].as_array().unwrap().len(), 30, "{forest}");
    let logistic = k.run(&["models", "import", "logistic", out.join("mlflow-logistic").to_str().unwrap(), "--json"]).ok().json();
    assert_eq!(logistic["signature"]["inputs"][0]["name"], "mean_radius", "from MLflow's signature: {logistic}");
    k.run(&["deploy", "forest", "--model", "forest@champion"]).ok();
    k.run(&["deploy", "logistic", "--model", "logistic@1"]).ok();
    let server = k.serve(&["--workers", "0", "--no-scheduler"]);

    let rows = answers["rows"].as_array().unwrap();
    let split = json!({"dataframe_split": {"columns": columns, "data": rows}});
    for name in ["forest", "logistic"] {
        let got = predict(&server.url, name, &split);
        let labels: Vec<i64> = got["predictions"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap() as i64).collect();
        let expected: Vec<i64> = answers[name]["labels"].as_array().unwrap().iter().map(|p| p.as_i64().unwrap()).collect();
        assert_eq!(labels, expected, "{name}: the same classes as scikit-learn on all {} holdout rows", rows.len());
        let probabilities = got["probabilities"].as_array().unwrap_or_else(|| panic!("{name}: {got}"));
        for (i, (p, want)) in probabilities.iter().zip(answers[name]["proba"].as_array().unwrap()).enumerate() {
            let (p, want) = (p["1"].as_f64().unwrap(), want.as_f64().unwrap());
            // float32 inside ONNX against scikit-learn's float64.
            assert!((p - want).abs() < 1e-5, "{name} row {i}: probability {p} vs scikit-learn's {want}");
        }
    }
    // A model an MLflow client logged with the onnx flavour and registered
    // is deployed as it is; its answers are the logistic model's.
    let script = k.write("log.py", LOG);
    let logged = std::process::Command::new(&python)
        .current_dir(k.path())
        .arg(&script)
        .arg(&server.url)
        .arg(&csv)
        .arg(out.join("logistic.onnx"))
        .output()
        .unwrap();
    assert!(logged.status.success(), "{}", String::from_utf8_lossy(&logged.stderr));
    let d = k.run(&["deploy", "mlf", "--model", "from-mlflow@1", "--json"]).ok().json();
    assert_eq!(d["version"], 1, "{d}");
    let shown = k.run(&["models", "show", "from-mlflow", "--json"]).ok().json();
    assert_eq!(shown["versions"][0]["signature"]["inputs"].as_array().unwrap().len(), 30, "{shown}");
    let from_mlflow = predict(&server.url, "mlf", &split);
    assert_eq!(from_mlflow["predictions"], predict(&server.url, "logistic", &split)["predictions"]);

    // The signature holds requests to the columns, by name.
    let mut wrong = split.clone();
    wrong["dataframe_split"]["columns"][0] = json!("radius");
    let mut resp = http()
        .post(&format!("{}/deployments/forest/invocations", server.url))
        .header("content-type", "application/json")
        .send(wrong.to_string())
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.body_mut().read_to_string().unwrap().contains("radius"));
}
