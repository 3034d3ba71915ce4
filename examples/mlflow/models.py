"""Log, register, search and load a scikit-learn model through Kiln with the
unmodified MLflow client, either major (2.x or 3.x).

    kiln serve &
    MLFLOW_TRACKING_URI=http://127.0.0.1:8080 python models.py

Prints what it saw as JSON on its last line; fails (non-zero exit) where
Kiln answers differently from an MLflow tracking server.
"""
import json
import os

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

MAJOR = int(mlflow.__version__.split(".")[0])
NAME = os.environ.get("KILN_MODEL_NAME", "iris-classifier")

mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:8080"))
client = MlflowClient()
for name in ["alpha", "beta", "gamma"]:
    if client.get_experiment_by_name(name) is None:
        client.create_experiment(name)

# Search honours the filter, the order and the page size.
alpha = mlflow.search_experiments(filter_string="name = 'alpha'")
assert [e.name for e in alpha] == ["alpha"], alpha
page = client.search_experiments(filter_string="name LIKE '%a'", order_by=["name DESC"], max_results=2)
assert [e.name for e in page] == ["gamma", "beta"], page
assert page.token, "a full page has a token for the next one"
rest = client.search_experiments(filter_string="name LIKE '%a'", order_by=["name DESC"], max_results=2, page_token=page.token)
assert [e.name for e in rest] == ["alpha"], rest
try:
    client.search_experiments(filter_string="garbage !!!")
    raise SystemExit("a filter that does not parse must be refused")
except mlflow.exceptions.MlflowException as e:
    assert e.error_code == "INVALID_PARAMETER_VALUE", e.error_code

X, y = load_iris(return_X_y=True)
mlflow.set_experiment("alpha")
with mlflow.start_run(run_name="train") as run:
    model = LogisticRegression(max_iter=500, C=0.5).fit(X, y)
    mlflow.log_params({"C": 0.5, "max_iter": 500})
    mlflow.log_metric("accuracy", float(model.score(X, y)))
    mlflow.log_input(mlflow.data.from_numpy(X, targets=y, name="iris"), context="training")
    if MAJOR >= 3:
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name=NAME)
        model_id = info.model_id
    else:
        info = mlflow.sklearn.log_model(model, artifact_path="model", registered_model_name=NAME)
        model_id = None
    run_id = run.info.run_id

inputs = client.get_run(run_id).inputs.dataset_inputs
assert [(i.dataset.name, {t.key: t.value for t in i.tags}.get("mlflow.data.context")) for i in inputs] == [("iris", "training")], inputs
# A search returns the same inputs as a get (MLflow's server loads them for
# every run of the page).
found = client.search_runs([run.info.experiment_id], filter_string="attributes.run_name = 'train'")
assert [r.info.run_id for r in found] == [run_id], found
assert [i.dataset.digest for i in found[0].inputs.dataset_inputs] == [i.dataset.digest for i in inputs], found[0].inputs
if MAJOR >= 3:
    # The logged model the run produced, in get and search alike.
    assert [o.model_id for o in client.get_run(run_id).outputs.model_outputs] == [model_id]
    assert [o.model_id for o in found[0].outputs.model_outputs] == [model_id]

# A second version by `register_model`, from the run's artifact path (both
# majors resolve `runs:/` themselves).
second = mlflow.register_model(f"runs:/{run_id}/model", NAME)
assert str(second.version) == "2", second

expected = model.predict(X[:5]).tolist()
if MAJOR >= 3:
    client.set_registered_model_alias(NAME, "champion", "2")
    uri = f"models:/{NAME}@champion"
    logged = mlflow.search_logged_models(filter_string=f"name = 'model'", output_format="list")
    assert [m.model_id for m in logged] == [model_id], logged
    assert client.get_logged_model(model_id).source_run_id == run_id
else:
    client.transition_model_version_stage(NAME, "2", "Production")
    uri = f"models:/{NAME}/Production"
loaded = mlflow.pyfunc.load_model(uri)
predicted = np.asarray(loaded.predict(X[:5])).tolist()
assert predicted == expected, (predicted, expected)

# The registry's everyday writes.
client.update_registered_model(NAME, description="iris, logistic regression")
client.set_registered_model_tag(NAME, "team", "ml-core")
client.update_model_version(NAME, "1", description="first")
client.set_model_version_tag(NAME, "1", "validated", "yes")
got = client.get_registered_model(NAME)
assert got.description == "iris, logistic regression" and got.tags == {"team": "ml-core"}, got
v1 = client.get_model_version(NAME, "1")
assert v1.description == "first" and v1.tags == {"validated": "yes"}, v1
client.delete_model_version_tag(NAME, "1", "validated")
assert client.get_model_version(NAME, "1").tags == {}
assert client.get_model_version_download_uri(NAME, "2").startswith("mlflow-artifacts:/")

found = client.search_registered_models(filter_string=f"name = '{NAME}'")
assert [m.name for m in found] == [NAME], found
assert client.search_registered_models(filter_string="name = 'nope'") == []
versions = client.search_model_versions(f"name = '{NAME}' and run_id = '{run_id}'", order_by=["version_number DESC"])
assert [str(v.version) for v in versions] == ["2", "1"], versions

renamed = NAME + "-renamed"
client.rename_registered_model(NAME, renamed)
assert str(client.get_model_version(renamed, "2").version) == "2"
client.delete_model_version(renamed, "1")
assert [str(v.version) for v in client.search_model_versions(f"name = '{renamed}'")] == ["2"]

print(json.dumps({"major": MAJOR, "run_id": run_id, "model_id": model_id, "model": renamed, "predicted": predicted}))
