"""What the Python benchmarks (tracking.py, data.py) share: finding the
kiln binary and a peer's executable, and how a figure is printed."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def kiln_binary() -> Path:
    """KILN_BIN (default target/release/kiln, relative to the repository)."""
    p = Path(os.environ.get("KILN_BIN", "target/release/kiln"))
    if not p.is_absolute() and not p.exists():
        p = ROOT / p
    p = p.resolve()
    if not p.is_file():
        sys.exit(f"no kiln binary at {p}: build it (cargo build --release -p kiln) or set KILN_BIN")
    return p


def peer_binary(name: str, env_var: str, venv_hint: str) -> str:
    """A peer's executable: $env_var, else beside the running venv's python
    (not resolved: the venv's python is a symlink), else on PATH."""
    if os.environ.get(env_var):
        return os.environ[env_var]
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        sys.exit(f"no `{name}` executable: run this with {venv_hint}")
    return found


def fmt(v) -> str:
    """A figure for a report table: thousands separated, about three
    significant digits, "-" for none."""
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return f"{v:,}"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"
