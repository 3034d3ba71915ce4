# Shared set-up for the README's two commands and CI. Source it; it cds to
# the repository root and installs what the build needs.
set -euo pipefail
KILN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$KILN_ROOT"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo is not installed: install Rust (https://rustup.rs) and run this again" >&2
        exit 1
    fi
    for component in rustfmt clippy; do
        if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
            say "installing the $component Rust component (the test command checks formatting and lints)"
            rustup component add "$component"
        fi
    done
    if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
        say "installing the wasm32-wasip2 Rust target (plugins are built for it)"
        rustup target add wasm32-wasip2
    fi
}

# PostgreSQL at 127.0.0.1:5432 with trust auth, for the store's tests.
ensure_postgres() {
    if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        return
    fi
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        say "installing PostgreSQL (Debian package) for the tests"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    say "starting PostgreSQL"
    version="$(ls /etc/postgresql | sort -V | tail -n 1)"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do
        pg_isready -q -h 127.0.0.1 -p 5432 && return
        sleep 1
    done
    echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2
    exit 1
}
