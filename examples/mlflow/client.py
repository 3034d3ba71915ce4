"""Log to Kiln with the unmodified MLflow client.

    kiln serve &
    MLFLOW_TRACKING_URI=http://127.0.0.1:8080 python client.py

Prints the run id as JSON; fails (non-zero exit) if Kiln answers
differently from an MLflow tracking server.
"""
import json
import os
import pathlib
import tempfile

import mlflow
from mlflow.tracking import MlflowClient

mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:8080"))
mlflow.set_experiment("mlflow-compat")
with mlflow.start_run(run_name="compat") as run:
    mlflow.log_param("alpha", 0.5)
    mlflow.log_params({"model": "ridge", "layers": 3})
    for step in range(5):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    mlflow.log_metrics({"accuracy": 0.91, "f1": 0.88})
    mlflow.set_tag("team", "ml-core")
    files = pathlib.Path(tempfile.mkdtemp())
    (files / "notes.txt").write_text("hello from mlflow")
    (files / "model").mkdir()
    (files / "model" / "weights.bin").write_bytes(bytes(range(256)) * 40)
    mlflow.log_artifact(str(files / "notes.txt"))
    mlflow.log_artifacts(str(files / "model"), artifact_path="model")
    run_id = run.info.run_id
    with mlflow.start_run(run_name="child", nested=True) as child:
        mlflow.log_metric("fold_accuracy", 0.9)
        child_id = child.info.run_id

client = MlflowClient()
history = client.get_metric_history(run_id, "loss")
assert [m.step for m in history] == [0, 1, 2, 3, 4], history
assert abs(history[-1].value - 0.2) < 1e-12, history

found = mlflow.search_runs(
    experiment_names=["mlflow-compat"],
    filter_string="metrics.accuracy > 0.9 and params.model = 'ridge' and attributes.run_name = 'compat'",
    order_by=["metrics.f1 DESC"],
    output_format="list",
)
assert [r.info.run_id for r in found] == [run_id], found
none = mlflow.search_runs(experiment_names=["mlflow-compat"], filter_string="metrics.accuracy > 0.95", output_format="list")
assert none == [], none

got = client.get_run(run_id)
assert got.info.status == "FINISHED", got.info
assert got.data.params["alpha"] == "0.5", got.data.params
assert got.data.metrics["loss"] == 0.2, got.data.metrics
assert got.data.tags["team"] == "ml-core", got.data.tags

listed = sorted((f.path, f.is_dir) for f in client.list_artifacts(run_id))
assert listed == [("model", True), ("notes.txt", False)], listed
inner = [(f.path, f.file_size) for f in client.list_artifacts(run_id, "model")]
assert inner == [("model/weights.bin", 10240)], inner
local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="notes.txt")
assert pathlib.Path(local).read_text() == "hello from mlflow"

# Model registry: register two versions, alias one, move stages.
client.create_registered_model("compat-model")
v1 = client.create_model_version("compat-model", source=f"runs:/{run_id}/model", run_id=run_id)
v2 = client.create_model_version("compat-model", source=f"runs:/{run_id}/model", run_id=run_id)
assert (v1.version, v2.version) in [(1, 2), ("1", "2")], (v1.version, v2.version)
client.set_registered_model_alias("compat-model", "champion", v2.version)
assert str(client.get_model_version_by_alias("compat-model", "champion").version) == "2"
client.transition_model_version_stage("compat-model", v1.version, "Production")
client.transition_model_version_stage("compat-model", v2.version, "Production", archive_existing_versions=True)
assert client.get_model_version("compat-model", v1.version).current_stage == "Archived"
latest = client.get_latest_versions("compat-model", stages=["Production"])
assert [str(v.version) for v in latest] == ["2"], latest
model = client.get_registered_model("compat-model")
assert model.aliases == {"champion": "2"} or model.aliases == {"champion": 2}, model.aliases
try:
    client.create_registered_model("compat-model")
    raise SystemExit("registering a model twice must fail")
except mlflow.exceptions.MlflowException as e:
    assert e.error_code == "RESOURCE_ALREADY_EXISTS", e.error_code

# MLflow's errors come back as MLflow exceptions.
try:
    client.log_param(run_id, "alpha", 0.7)
    raise SystemExit("changing a logged param must fail")
except mlflow.exceptions.MlflowException as e:
    assert e.error_code == "INVALID_PARAMETER_VALUE", e.error_code

print(json.dumps({"run_id": run_id, "child_id": child_id}))
