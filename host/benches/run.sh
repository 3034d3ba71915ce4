#!/usr/bin/env bash
# Benchmarks beside their peers (scipy, scikit-learn, DVC), same data,
# same machine, same run. Creates its own venv for the peers.
#   host/benches/run.sh          full sizes
#   KILN_BENCH_QUICK=1 host/benches/run.sh   smaller, for a smoke test
source "$(dirname "$0")/../../.ci/lib.sh"
ensure_rust
venv="$KILN_ROOT/target/bench-venv"
if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv with numpy, scipy and scikit-learn"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q numpy scipy scikit-learn
fi
if [ ! -x "$venv/bin/dvc" ]; then
    say "installing DVC into $venv (the pipeline benchmark's peer)"
    "$venv/bin/pip" install -q dvc
fi
export KILN_BENCH_PYTHON="$venv/bin/python"
ensure_postgres
say "building the release kiln binary (the CLI benchmark runs it)"
cargo build --release -p kiln
say "cargo bench -p kiln (plugins, pipelines)"
cargo bench -p kiln --bench plugins
cargo bench -p kiln --bench pipelines
