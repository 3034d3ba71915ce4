#!/usr/bin/env bash
# Set up everything Kiln needs and run the quickstart end to end: build
# kiln (its first-party plugins are built for wasm32-wasip2 on the way),
# then train, evaluate, gate and check drift on the breast cancer data.
# State goes to .kiln/ at the repository root (SQLite + local blobs).
source "$(dirname "$0")/../../.ci/lib.sh"
ensure_rust

say "building kiln"
cargo build -p kiln
kiln="$KILN_ROOT/target/debug/kiln"

say "kiln run examples/quickstart/pipeline.toml"
"$kiln" run examples/quickstart/pipeline.toml

say "kiln runs list"
"$kiln" runs list --limit 5

say "kiln plugin list"
"$kiln" plugin list

echo
echo "Done. Try: $kiln runs show <RUN>   (or add --json)"
echo "     and:  $kiln run examples/quickstart/pipeline.toml --set train.c=0.1"
