#!/usr/bin/env bash
# Plugin benchmarks beside their peers (scipy, scikit-learn), same data,
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
export KILN_BENCH_PYTHON="$venv/bin/python"
say "cargo bench -p kiln --bench plugins (release build)"
cargo bench -p kiln --bench plugins
