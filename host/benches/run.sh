#!/usr/bin/env bash
# Benchmarks beside their peers (scipy, scikit-learn, DVC, the MLflow
# tracking server), same data, same machine, same run. Creates its own venvs
# for the peers (MLflow in a venv of its own: its pins would fight the others).
#   host/benches/run.sh          full sizes
#   KILN_BENCH_QUICK=1 host/benches/run.sh   smaller, for a smoke test
source "$(dirname "$0")/../../.ci/lib.sh"
ensure_rust
venv="$KILN_ROOT/target/bench-venv"
if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv with numpy, scipy, scikit-learn and blake3"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q numpy scipy scikit-learn blake3 pandas pyarrow
fi
if [ ! -x "$venv/bin/dvc" ]; then
    say "installing DVC into $venv (the pipeline and data benchmarks' peer)"
    "$venv/bin/pip" install -q dvc
fi
if ! "$venv/bin/python" -c 'import pandas, pyarrow' 2>/dev/null; then
    say "installing pandas and pyarrow into $venv (the input-loading benchmark's peer)"
    "$venv/bin/pip" install -q pandas pyarrow
fi
if ! "$venv/bin/python" -c 'import blake3' 2>/dev/null; then
    say "installing blake3 into $venv (the data benchmark's hashing limit)"
    "$venv/bin/pip" install -q blake3
fi
export KILN_BENCH_PYTHON="$venv/bin/python"
mlflow_venv="$KILN_ROOT/target/mlflow-bench-venv"
if [ ! -x "$mlflow_venv/bin/mlflow" ]; then
    say "creating $mlflow_venv with mlflow (the tracking benchmark's peer)"
    python3 -m venv "$mlflow_venv"
    "$mlflow_venv/bin/pip" install -q mlflow
fi
if ! "$mlflow_venv/bin/python" -c 'import sklearn, pandas, skl2onnx' 2>/dev/null; then
    say "installing scikit-learn and skl2onnx into $mlflow_venv (the serving benchmarks' models)"
    "$mlflow_venv/bin/pip" install -q scikit-learn pandas skl2onnx onnx
fi
ensure_postgres
say "building the release kiln binary (the CLI benchmark runs it)"
cargo build --release -p kiln
say "cargo bench -p kiln (plugins, pipelines, inputs)"
cargo bench -p kiln --bench plugins
cargo bench -p kiln --bench pipelines
cargo bench -p kiln --bench inputs
say "tracking server beside MLflow's (host/benches/tracking.py)"
KILN_BIN="$KILN_ROOT/target/release/kiln" "$mlflow_venv/bin/python" host/benches/tracking.py
say "a served model beside mlflow models serve (host/benches/serving.py)"
KILN_BIN="$KILN_ROOT/target/release/kiln" "$mlflow_venv/bin/python" host/benches/serving.py
say "the seed's random forest beside mlflow models serve, as ONNX and as Kiln's forest (host/benches/serving_forest.py)"
KILN_BIN="$KILN_ROOT/target/release/kiln" "$mlflow_venv/bin/python" host/benches/serving_forest.py
say "kiln data beside DVC (host/benches/data.py)"
KILN_BIN="$KILN_ROOT/target/release/kiln" "$venv/bin/python" host/benches/data.py
