#!/usr/bin/env bash
# The whole test suite: formatting and clippy (warnings are errors), then
# plugin and SDK unit tests (native), host unit tests
# (store tests on SQLite and PostgreSQL), and the end-to-end tests that drive
# the real `kiln` binary with real Wasm plugins.
source "$(dirname "$0")/../.ci/lib.sh"
ensure_rust
ensure_postgres
export KILN_TEST_POSTGRES_URL="${KILN_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"

# Databases left by earlier runs of the tests.
psql -q -h 127.0.0.1 -U postgres -d test -Atc \
    "SELECT 'DROP DATABASE IF EXISTS ' || datname || ';' FROM pg_database WHERE datname LIKE 'kiln_test_%' OR datname LIKE 'kiln_e2e_%'" \
    2>/dev/null | psql -q -h 127.0.0.1 -U postgres -d test >/dev/null 2>&1 || true

say "cargo fmt --check"
cargo fmt --all --check
say "cargo clippy -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

say "cargo test --workspace"
cargo test --workspace "$@"
