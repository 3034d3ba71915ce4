"""`kiln data` beside DVC, and beside the machine's own limits.

One run, one machine, the same data for both tools:

 1. `add` of one large file of random bytes (1 GiB): `kiln data add big.bin`
    vs `dvc add big.bin`, beside the physical limits measured in the same
    run: a plain sequential read (`cat big.bin > /dev/null`) and BLAKE3 on
    all cores (the `blake3` package, max_threads=AUTO, reading in 16 MiB
    chunks: the b3sum-style limit). For reference, also what a plain copy
    with fsync costs, since `add` stores a copy of the file.
 2. `add` of 10,000 files of 4 KiB in 100 folders of 100.
 3. `status` with nothing changed over those 10,000 files.

Page cache: the data is written once at the start, so it is in the page
cache from then on; every command is run once untimed first and all of them
are measured on that same warm cache (no reads from the disk). Every `add`
runs in a fresh workspace (`kiln init`; `git init` + `dvc init`, with a
fresh DVC cache and site cache), so each does the whole work; the data is
hard-linked into it (same inode, same cached pages; neither tool changes its
source: DVC replaces its workspace copy with a new file). Workspaces of the
many-files section are removed only at the end (see discard()). `sync` runs
before every timed command; the `sync` right after an `add` is timed
separately (Kiln fsyncs what it stores, DVC leaves its copies to
writeback). Kiln's and DVC's times are whole commands, process start
included. Figures are medians over the repeats, in rounds whose order
rotates.

    KILN_BIN=target/release/kiln  target/bench-venv/bin/python host/benches/data.py
    KILN_BENCH_QUICK=1  ...        64 MiB and 1,000 files, one repeat

Environment:
    KILN_BIN           the kiln binary (default target/release/kiln, relative
                       to the repository root)
    DVC_BIN            the dvc executable (default: beside sys.executable)
    KILN_BENCH_QUICK   1 for small sizes
    KILN_BENCH_KEEP    1 to keep the temporary folders
    TMPDIR             where the temporary folders go (its file system is
                       what is measured; it is printed)
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import blake3

from benchlib import fmt, kiln_binary, peer_binary  # noqa: E402  (beside this script)

ROOT = Path(__file__).resolve().parents[2]
QUICK = os.environ.get("KILN_BENCH_QUICK", "") not in ("", "0")
KEEP = os.environ.get("KILN_BENCH_KEEP", "") not in ("", "0")

GiB = 1 << 30
SIZES = {
    "big_bytes": GiB,
    "dirs": 100,
    "files_per_dir": 100,
    "small_bytes": 4096,
    "add_repeats": 3,
    "status_repeats": 5,
    "hash_chunk": 16 << 20,
}
if QUICK:
    SIZES.update(big_bytes=64 << 20, dirs=10, add_repeats=1)
N_FILES = SIZES["dirs"] * SIZES["files_per_dir"]

GOALS = {"add_big_pct_of_limit": 80.0, "add_files_times_dvc": 10.0, "status_ms": 50.0}


def log(msg: str) -> None:
    print(f"[data-bench] {msg}", file=sys.stderr, flush=True)


CHECKS: list[str] = []  # what a tool got wrong, printed under the table


def check(ok: bool, problem: str) -> bool:
    if not ok:
        CHECKS.append(problem)
        log(f"CHECK FAILED: {problem}")
    return ok


# ---- tools ------------------------------------------------------------------


def dvc_binary() -> str:
    return peer_binary("dvc", "DVC_BIN", "the bench venv's Python (host/benches/run.sh makes target/bench-venv)")


KILN_ENV = {k: v for k, v in os.environ.items() if k not in ("KILN_HOME", "KILN_DATABASE_URL")}
DVC_ENV = {**os.environ, "DVC_NO_ANALYTICS": "1"}


def run(argv: list, cwd: Path, env: dict | None = None, what: str = "") -> tuple[float, subprocess.CompletedProcess]:
    """Run a command to completion; returns (wall seconds, the process)."""
    t = time.perf_counter()
    p = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    return dt, p


def must(argv: list, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Untimed set-up; raises with the output on failure."""
    _, p = run(argv, cwd, env)
    if p.returncode != 0:
        raise RuntimeError(f"`{' '.join(map(str, argv))}` in {cwd} exited {p.returncode}\n{p.stdout.decode(errors='replace')}{p.stderr.decode(errors='replace')}")
    return p


def out_of(p: subprocess.CompletedProcess) -> str:
    return (p.stdout + p.stderr).decode(errors="replace").strip()


def files_under(d: Path, skip: tuple[str, ...] = ()) -> list[Path]:
    out = []
    for base, dirs, names in os.walk(d):
        dirs[:] = [x for x in dirs if x not in skip]
        out.extend(Path(base) / n for n in names)
    return out


# ---- data -------------------------------------------------------------------


def write_big(path: Path, size: int) -> None:
    step = 64 << 20
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(step, left)
            f.write(os.urandom(n))
            left -= n


def write_files(d: Path) -> list[str]:
    rels = []
    for i in range(SIZES["dirs"]):
        sub = d / f"d{i:03}"
        sub.mkdir(parents=True)
        for j in range(SIZES["files_per_dir"]):
            (sub / f"f{j:03}.bin").write_bytes(os.urandom(SIZES["small_bytes"]))
            rels.append(f"d{i:03}/f{j:03}.bin")
    return rels


def link_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of src into dst (same inodes: same cached pages)."""
    for base, _dirs, names in os.walk(src):
        rel = Path(base).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for n in names:
            os.link(Path(base) / n, dst / rel / n)


def page_cache_pct(path: Path) -> float | None:
    """How much of a file is in the page cache (util-linux fincore), if known."""
    if not shutil.which("fincore"):
        return None
    try:
        p = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES,SIZE", str(path)], capture_output=True, text=True)
        res, size = (int(x) for x in p.stdout.split())
        return 100.0 * res / size if size else None
    except (ValueError, OSError):
        return None


# ---- workspaces -------------------------------------------------------------


def kiln_blobs(ws: Path) -> set[str]:
    """Blob ids in a Kiln workspace's store (.kiln/blobs/ab/cdef…)."""
    root = ws / ".kiln" / "blobs"
    return {f"{p.parent.name}{p.name}" for p in files_under(root, skip=(".tmp",)) if p.parent != root}


def dvc_cache(ws: Path) -> list[Path]:
    return files_under(ws / ".dvc" / "cache")


def kiln_workspace(ws: Path, kiln: Path) -> None:
    ws.mkdir(parents=True)
    # The counterpart of `dvc init`, untimed: the add then finds its store.
    must([kiln, "init"], ws, KILN_ENV)
    if not (ws / ".kiln").is_dir():
        raise RuntimeError(f"`kiln init` did not create {ws / '.kiln'} (is there a .kiln folder above it, or KILN_HOME set?)")


def dvc_workspace(ws: Path, dvc: str) -> None:
    """A fresh git + DVC repository. DVC's site cache (its hash index) is
    under DVC_SITE_CACHE_DIR, set in main() to a folder of this run; DVC
    keys it by the repository's path, so no workspace sees another's."""
    ws.mkdir(parents=True)
    must(["git", "init", "-q"], ws)
    must([dvc, "init", "-q"], ws, DVC_ENV)
    # No analytics or update checks in timed commands.
    must([dvc, "config", "--local", "core.analytics", "false"], ws, DVC_ENV)
    must([dvc, "config", "--local", "core.check_update", "false"], ws, DVC_ENV)


def timed_then_sync(argv: list, cwd: Path, env: dict) -> tuple[float, float, subprocess.CompletedProcess]:
    os.sync()  # nothing earlier left to write back while this runs
    dt, p = run(argv, cwd, env)
    t = time.perf_counter()
    os.sync()
    return dt, time.perf_counter() - t, p


def discard(path: Path) -> None:
    """Remove a used workspace of the big-file section at once (it holds
    GiBs but only a few dozen inodes). The many-files workspaces are only
    removed at the end: on ext4 without a journal, the kernel will not reuse
    an inode freed in the last minute or more (recently_deleted()), and
    creating thousands of files right after deleting thousands gets several
    times slower, for whichever tool runs next."""
    if not KEEP:
        shutil.rmtree(path, ignore_errors=True)


# ---- measurements -----------------------------------------------------------


def rounds(tasks: dict, repeats: int) -> dict[str, list]:
    """Run every task once untimed (warm-up), then `repeats` timed rounds in
    rotating order. A task is called with (label, last) and returns its
    figures (a dict); returns name -> list of the timed rounds' dicts."""
    names = list(tasks)
    got: dict[str, list] = {n: [] for n in names}
    for r in range(repeats + 1):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            label = "warm" if r == 0 else f"r{r}"
            fig = tasks[n](label, r == repeats)
            if r > 0:
                got[n].append(fig)
            log(f"  {label} {n}: " + ", ".join(f"{k} {v:.3f}" for k, v in fig.items() if isinstance(v, float)))
    return got


def med(figs: list[dict], key: str) -> float | None:
    vals = [f[key] for f in figs if f.get(key) is not None]
    return statistics.median(vals) if vals else None


def hash_file(path: Path, chunk: int) -> str:
    buf = bytearray(chunk)
    mv = memoryview(buf)
    h = blake3.blake3(max_threads=blake3.blake3.AUTO)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(mv[:n])
    return h.hexdigest()


def md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(16 << 20):
            h.update(chunk)
    return h.hexdigest()


def dvc_pointer(path: Path) -> dict:
    """The few fields of a .dvc file we check (YAML; stdlib has no parser)."""
    text = path.read_text()
    field = lambda k: (m.group(1) if (m := re.search(rf"^\s*-?\s*{k}:\s*(\S+)\s*$", text, re.M)) else None)
    return {"md5": field("md5"), "size": field("size"), "nfiles": field("nfiles")}


def dvc_cache_path(ws: Path, md5: str) -> Path:
    return ws / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def bench_big(tmp: Path, kiln: Path, dvc: str) -> dict:
    size = SIZES["big_bytes"]
    src = tmp / "src" / "big.bin"
    log(f"writing {size / GiB:.3g} GiB of random bytes to {src}")
    write_big(src, size)
    os.sync()
    expect_md5 = md5_file(src)
    seen_b3: set[str] = set()
    cache_pct: list[float] = []
    base = tmp / "big"

    def kiln_add_task(link: bool):
        def kiln_add(label, last):
            ws = base / f"kiln-{'link-' if link else ''}{label}"
            kiln_workspace(ws, kiln)
            os.link(src, ws / "big.bin")
            before = kiln_blobs(ws)
            pct = page_cache_pct(src)
            if pct is not None:
                cache_pct.append(pct)
            argv = [kiln, "data", "add", "big.bin"] + (["--hardlink"] if link else [])
            dt, sync_s, p = timed_then_sync(argv, ws, KILN_ENV)
            if check(p.returncode == 0, f"kiln data add big.bin ({label}) exited {p.returncode}: {out_of(p)}"):
                ptr = ws / "big.bin.kiln"
                if check(ptr.is_file(), f"kiln ({label}): no pointer {ptr.name}"):
                    ptr = tomllib.loads(ptr.read_text())
                    h = ptr.get("hash", "")
                    seen_b3.add(h)
                    check(ptr.get("size") == size, f"kiln ({label}): pointer size {ptr.get('size')}, file {size}")
                    new = kiln_blobs(ws) - before
                    check(new == {h}, f"kiln ({label}): {len(new)} new blobs under .kiln/blobs, expected 1 named {h}")
                    blob = ws / ".kiln" / "blobs" / h[:2] / h[2:]
                    check(blob.is_file() and blob.stat().st_size == size, f"kiln ({label}): blob {blob} missing or not {size} bytes")
                    if link:
                        check(blob.stat().st_ino == src.stat().st_ino, f"kiln --hardlink ({label}): the blob is not a link to big.bin")
            discard(ws)
            return {"s": dt, "sync_s": sync_s}

        return kiln_add

    def dvc_add_task(link: bool):
        def dvc_add(label, last):
            ws = base / f"dvc-{'link-' if link else ''}{label}"
            dvc_workspace(ws, dvc)
            if link:
                must([dvc, "config", "--local", "cache.type", "hardlink"], ws, DVC_ENV)
            os.link(src, ws / "big.bin")
            dt, sync_s, p = timed_then_sync([dvc, "add", "big.bin"], ws, DVC_ENV)
            if check(p.returncode == 0, f"dvc add big.bin ({label}) exited {p.returncode}: {out_of(p)}"):
                ptr = ws / "big.bin.dvc"
                if check(ptr.is_file(), f"dvc ({label}): no pointer {ptr.name}"):
                    f = dvc_pointer(ptr)
                    check(f["md5"] == expect_md5, f"dvc ({label}): pointer md5 {f['md5']}, file {expect_md5}")
                    cache = dvc_cache(ws)
                    check(len(cache) == 1 and cache[0] == dvc_cache_path(ws, expect_md5), f"dvc ({label}): {len(cache)} files in .dvc/cache, expected 1 named {expect_md5}")
                    check(bool(cache) and cache[0].stat().st_size == size, f"dvc ({label}): cached file not {size} bytes")
            discard(ws)
            return {"s": dt, "sync_s": sync_s}

        return dvc_add

    def read(label, last):
        os.sync()
        dt, p = run(["sh", "-c", 'cat "$1" > /dev/null', "sh", src], tmp)
        check(p.returncode == 0, f"cat big.bin exited {p.returncode}: {out_of(p)}")
        return {"s": dt}

    def hash_(label, last):
        os.sync()
        t = time.perf_counter()
        h = hash_file(src, SIZES["hash_chunk"])
        dt = time.perf_counter() - t
        seen_b3.add(h)
        return {"s": dt}

    def copy(label, last):
        dst = tmp / "copy.bin"
        os.sync()
        t = time.perf_counter()
        _, p = run(["cp", src, dst], tmp)
        fd = os.open(dst, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        dt = time.perf_counter() - t
        check(p.returncode == 0, f"cp big.bin exited {p.returncode}: {out_of(p)}")
        dst.unlink()
        return {"s": dt}

    log(f"add of one {size / GiB:.3g} GiB file: warm-up round + {SIZES['add_repeats']} timed")
    tasks = {"kiln": kiln_add_task(False), "dvc": dvc_add_task(False), "kiln_link": kiln_add_task(True), "dvc_link": dvc_add_task(True)}
    got = rounds({**tasks, "read": read, "hash": hash_, "copy": copy}, SIZES["add_repeats"])
    check(len(seen_b3) == 1, f"BLAKE3 of big.bin differs between kiln's pointers and blake3-py: {sorted(seen_b3)}")
    return {"got": got, "page_cache_pct_min": min(cache_pct) if cache_pct else None, "blake3": next(iter(seen_b3), None), "md5": expect_md5}


def bench_files(tmp: Path, kiln: Path, dvc: str) -> dict:
    src = tmp / "src" / "files"
    log(f"writing {N_FILES:,} files of {SIZES['small_bytes']} B to {src} ({SIZES['dirs']} folders of {SIZES['files_per_dir']})")
    rels = write_files(src)
    os.sync()
    b3 = {blake3.blake3((src / r).read_bytes()).hexdigest() for r in rels}
    md5 = {hashlib.md5((src / r).read_bytes()).hexdigest() for r in rels}
    check(len(b3) == N_FILES == len(md5), "the random files are not all distinct")
    base = tmp / "files"
    kept: dict[str, Path] = {}

    def kiln_add(label, last):
        ws = base / f"kiln-{label}"
        kiln_workspace(ws, kiln)
        link_tree(src, ws / "files")
        before = kiln_blobs(ws)
        dt, sync_s, p = timed_then_sync([kiln, "data", "add", "files"], ws, KILN_ENV)
        if check(p.returncode == 0, f"kiln data add files ({label}) exited {p.returncode}: {out_of(p)}"):
            ptr = ws / "files.kiln"
            if check(ptr.is_file(), f"kiln ({label}): no pointer {ptr.name}"):
                ptr = tomllib.loads(ptr.read_text())
                check(ptr.get("files") == N_FILES, f"kiln ({label}): pointer says {ptr.get('files')} files, expected {N_FILES}")
                new = kiln_blobs(ws) - before
                want = b3 | {ptr.get("hash", "")}
                check(
                    new == want,
                    f"kiln ({label}): {len(new)} new blobs under .kiln/blobs, expected {len(want)} "
                    f"({N_FILES} files + the manifest); {len(want - new)} missing, {len(new - want)} unexpected",
                )
        if last:
            kept["kiln"] = ws
        return {"s": dt, "sync_s": sync_s}

    def dvc_add(label, last):
        ws = base / f"dvc-{label}"
        dvc_workspace(ws, dvc)
        link_tree(src, ws / "files")
        dt, sync_s, p = timed_then_sync([dvc, "add", "files"], ws, DVC_ENV)
        if check(p.returncode == 0, f"dvc add files ({label}) exited {p.returncode}: {out_of(p)}"):
            ptr = ws / "files.dvc"
            if check(ptr.is_file(), f"dvc ({label}): no pointer {ptr.name}"):
                f = dvc_pointer(ptr)
                check(f["nfiles"] == str(N_FILES), f"dvc ({label}): pointer says nfiles {f['nfiles']}, expected {N_FILES}")
                cache = dvc_cache(ws)
                missing = [m for m in md5 if not dvc_cache_path(ws, m).is_file()]
                check(
                    len(cache) == N_FILES + 1 and not missing and (f["md5"] or "").endswith(".dir"),
                    f"dvc ({label}): {len(cache)} files in .dvc/cache, expected {N_FILES + 1} ({N_FILES} files + the .dir listing); "
                    f"{len(missing)} of the files' md5s missing",
                )
        if last:
            kept["dvc"] = ws
        return {"s": dt, "sync_s": sync_s}

    def read(label, last):
        os.sync()
        dt, p = run(["sh", "-c", 'find "$1" -type f -exec cat {} + > /dev/null', "sh", src], tmp)
        check(p.returncode == 0, f"reading the files exited {p.returncode}: {out_of(p)}")
        return {"s": dt}

    log(f"add of {N_FILES:,} files: warm-up round + {SIZES['add_repeats']} timed")
    got = rounds({"kiln": kiln_add, "dvc": dvc_add, "read": read}, SIZES["add_repeats"])
    return {"got": got, "kept": kept}


def bench_status(tmp: Path, kiln: Path, dvc: str, kept: dict[str, Path]) -> dict:
    def kiln_status(label, last):
        dt, p = run([kiln, "data", "status"], kept["kiln"], KILN_ENV)
        check(p.returncode == 0 and "unchanged" in out_of(p), f"kiln data status ({label}) exited {p.returncode} (1: changed): {out_of(p)[:500]}")
        return {"s": dt}

    def dvc_status(label, last):
        dt, p = run([dvc, "status"], kept["dvc"], DVC_ENV)
        check(p.returncode == 0 and "up to date" in out_of(p), f"dvc status ({label}) exited {p.returncode}: {out_of(p)[:500]}")
        return {"s": dt}

    def stat_floor(label, last):
        # Walk and stat every file for the size, mtime and inode `status` compares.
        dt, p = run(["sh", "-c", "find files -type f -printf '%s %T@ %i\\n' > /dev/null"], kept["kiln"])
        check(p.returncode == 0, f"find -printf exited {p.returncode}: {out_of(p)}")
        return {"s": dt}

    empty = tmp / "status-empty"
    kiln_workspace(empty / "kiln", kiln)
    dvc_workspace(empty / "dvc", dvc)

    def kiln_empty(label, last):
        dt, p = run([kiln, "data", "status"], empty / "kiln", KILN_ENV)
        check(p.returncode == 0, f"kiln data status, empty workspace ({label}) exited {p.returncode}: {out_of(p)[:500]}")
        return {"s": dt}

    def dvc_empty(label, last):
        dt, p = run([dvc, "status"], empty / "dvc", DVC_ENV)
        check(p.returncode == 0, f"dvc status, empty repository ({label}) exited {p.returncode}: {out_of(p)[:500]}")
        return {"s": dt}

    if "kiln" not in kept or "dvc" not in kept:
        check(False, "status: no workspace left from the add benchmark")
        return {"got": {}}
    log(f"status over {N_FILES:,} unchanged files: warm-up round + {SIZES['status_repeats']} timed")
    os.sync()
    got = rounds(
        {"kiln": kiln_status, "dvc": dvc_status, "stat": stat_floor, "kiln_empty": kiln_empty, "dvc_empty": dvc_empty}, SIZES["status_repeats"]
    )
    return {"got": got}


# ---- report -----------------------------------------------------------------


class Table:
    def __init__(self):
        self.rows: list[dict] = []

    def add(self, measure: str, unit: str, kiln=None, dvc=None, limit=None, higher_better: bool | None = None, ratio: str | None = None, **extra):
        """The ratio is how many times better Kiln is than DVC (from
        higher_better), unless given as text."""
        better_by = None
        if higher_better is not None and kiln and dvc:
            better_by = kiln / dvc if higher_better else dvc / kiln
        if ratio is None and better_by is not None:
            ratio = f"{better_by:.1f}×" if better_by >= 1 else f"{better_by:.2f}× (worse)"
        self.rows.append({"measure": measure, "unit": unit, "kiln": kiln, "dvc": dvc, "limit": limit, "kiln_better_by": better_by, "ratio": ratio, **extra})
        log(f"{measure} ({unit}): kiln {fmt(kiln)}  dvc {fmt(dvc)}  limit {fmt(limit)}  {ratio or ''}")

    def section(self, title: str):
        self.rows.append({"section": title})

    def print(self, out=sys.stdout):
        head = ["measure", "kiln", "dvc", "limit", "ratio"]
        lines = []
        for r in self.rows:
            if "section" in r:
                lines.append(("--", r["section"]))
            else:
                lines.append((f"{r['measure']} ({r['unit']})", fmt(r["kiln"]), fmt(r["dvc"]), fmt(r["limit"]), r["ratio"] or "-"))
        w = [max(len(head[i]), *(len(l[i]) for l in lines if l[0] != "--")) for i in range(5)]
        print(" | ".join([f"{head[0]:<{w[0]}}"] + [f"{head[i]:>{w[i]}}" for i in range(1, 5)]), file=out)
        print("-" * (sum(w) + 12), file=out)
        for l in lines:
            if l[0] == "--":
                print(f"  {l[1]}", file=out)
            else:
                print(" | ".join([f"{l[0]:<{w[0]}}"] + [f"{l[i]:>{w[i]}}" for i in range(1, 5)]), file=out)


def mount_of(path: Path) -> str | None:
    """The /proc/mounts line (type and options) of the mount holding path."""
    best = None
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, at, typ, opts = line.split()[:4]
            at = at.replace("\\040", " ")
            if (str(path) + "/").startswith(at.rstrip("/") + "/") and (best is None or len(at) > len(best[0])):
                best = (at, f"{typ} {opts} ({dev} on {at})")
    except (OSError, ValueError):
        return None
    if best and best[1].startswith("ext4"):
        # ext4 with or without a journal (stat -f calls both "ext2/ext3").
        dev = best[1].split("(")[1].split()[0]
        name = Path(os.path.realpath(dev)).name
        journal = any(p.name.startswith(name + "-") for p in Path("/proc/fs/jbd2").glob("*")) if Path("/proc/fs/jbd2").is_dir() else None
        return best[1] + ("" if journal is None else "; journal" if journal else "; NO journal")
    return best[1] if best else None


def machine(tmp: Path, kiln: Path, dvc: str) -> dict:
    def first_line(argv, env=None):
        try:
            p = subprocess.run(argv, capture_output=True, text=True, env=env)
            return (p.stdout or p.stderr).strip().splitlines()[0] if (p.stdout or p.stderr).strip() else None
        except OSError:
            return None

    cpu = None
    try:
        cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), None)
    except OSError:
        pass
    mem = None
    try:
        mem = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1]) / (1 << 20)
    except (OSError, StopIteration):
        pass
    return {
        "kiln_version": first_line([str(kiln), "--version"]),
        "kiln_bin": str(kiln),
        "kiln_bin_mtime": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(kiln.stat().st_mtime)),
        "kiln_build": "debug" if "debug" in kiln.parts else "release" if "release" in kiln.parts else None,
        "dvc_version": first_line([dvc, "--version"], DVC_ENV),
        "dvc_bin": dvc,
        "blake3_py_version": importlib.metadata.version("blake3"),
        "python": platform.python_version(),
        "fs_type": first_line(["stat", "-f", "-c", "%T", str(tmp)]),
        "mount": mount_of(tmp),
        "tmp_dir": str(tmp),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "mem_gib": mem,
        "kernel": platform.release(),
        "load_avg_start": os.getloadavg(),
        "quick": QUICK,
        "sizes": SIZES,
    }


def main() -> int:
    kiln, dvc = kiln_binary(), dvc_binary()
    tmp = Path(tempfile.mkdtemp(prefix="kiln-data-bench-"))
    (tmp / "src").mkdir()
    # DVC's site cache (default /var/tmp/dvc) inside this run's folder, so
    # each run starts without one and leaves none behind.
    DVC_ENV["DVC_SITE_CACHE_DIR"] = str(tmp / "dvc-site")
    for anc in tmp.parents:
        if (anc / ".kiln").exists():
            sys.exit(f"{anc / '.kiln'} exists above the temporary folder {tmp}: kiln would use it; set TMPDIR elsewhere")

    def on_term(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    info = machine(tmp, kiln, dvc)
    log(f"{info['kiln_version']} ({kiln}); DVC {info['dvc_version']}; {info['fs_type']} at {tmp}; {info['cores']} cores; sizes {json.dumps(SIZES)}")
    t = Table()
    raw: dict = {}
    try:
        big = bench_big(tmp, kiln, dvc)
        files = bench_files(tmp, kiln, dvc)
        status = bench_status(tmp, kiln, dvc, files["kept"])
    finally:
        if KEEP:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    info["load_avg_end"] = os.getloadavg()
    mtime_end = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(kiln.stat().st_mtime))
    if mtime_end != info["kiln_bin_mtime"]:
        info["kiln_bin_mtime_end"] = mtime_end
        log(f"WARNING: {kiln} was rebuilt during the run ({info['kiln_bin_mtime']} -> {mtime_end}): figures may mix two binaries")

    # 1. one big file
    g = big["got"]
    size = SIZES["big_bytes"]
    gib = size / GiB
    size_s = f"{gib:g} GiB" if gib >= 1 else f"{size >> 20} MiB"
    ks, ds = med(g["kiln"], "s"), med(g["dvc"], "s")
    ksync, dsync = med(g["kiln"], "sync_s"), med(g["dvc"], "sync_s")
    read_s, hash_s, copy_s = med(g["read"], "s"), med(g["hash"], "s"), med(g["copy"], "s")
    rate = lambda s: gib / s if s else None
    k_rate, read_rate, hash_rate = rate(ks), rate(read_s), rate(hash_s)
    kl_s, dl_s = med(g["kiln_link"], "s"), med(g["dvc_link"], "s")
    kl_rate = rate(kl_s)
    pct = lambda r, limit: 100 * r / limit if r and limit else None
    pct_hash, pct_read = pct(k_rate, hash_rate), pct(k_rate, read_rate)
    link_pct_hash, link_pct_read = pct(kl_rate, hash_rate), pct(kl_rate, read_rate)
    # The read/hash limit: an add must both read and hash the file, so the
    # slower of the two bounds it (hashing on a warm cache, reading on a
    # cold one).
    limit_s = max(read_s, hash_s) if read_s and hash_s else None
    pct_limit, link_pct_limit = pct(k_rate, rate(limit_s)), pct(kl_rate, rate(limit_s))
    cache = big["page_cache_pct_min"]
    n = SIZES["add_repeats"]
    t.section(
        f"1. add one {size_s} file of random bytes; warm page cache (every command ran once untimed first"
        + (f"; big.bin {cache:.0f}% cached before each timed add" if cache is not None else "")
        + f"); median of {n}"
    )
    t.add(f"`kiln data add big.bin` / `dvc add big.bin`", "s", ks, ds, hash_s, higher_better=False)
    t.add("  the same as throughput", "GiB/s", k_rate, rate(ds), hash_rate, higher_better=True)
    t.add("  add, then `sync` (till on disk)", "s", ks + ksync if ks is not None else None, ds + dsync if ds is not None else None, None, higher_better=False)
    t.add("limit: sequential read, `cat big.bin > /dev/null`", "GiB/s", limit=read_rate)
    t.add(f"limit: BLAKE3, blake3-py max_threads=AUTO, {SIZES['hash_chunk'] >> 20} MiB reads", "GiB/s", limit=hash_rate)
    t.add("reference: `cp big.bin` + fsync (add stores a copy)", "GiB/s", limit=rate(copy_s))
    t.add("`kiln data add --hardlink` / `dvc add`, cache.type hardlink", "s", kl_s, dl_s, hash_s, higher_better=False)
    t.add("  the same as throughput", "GiB/s", kl_rate, rate(dl_s), hash_rate, higher_better=True)
    t.add("kiln add (copy) throughput / read-and-hash limit", "%", pct_limit, ratio="also writes the copy")
    t.add("kiln add --hardlink throughput / read-and-hash limit", "%", link_pct_limit, ratio=f"goal ≥{GOALS['add_big_pct_of_limit']:.0f}%")

    # 2. many small files
    g = files["got"]
    ks2, ds2 = med(g["kiln"], "s"), med(g["dvc"], "s")
    ksync2, dsync2 = med(g["kiln"], "sync_s"), med(g["dvc"], "sync_s")
    t.section(f"2. add {N_FILES:,} files of {SIZES['small_bytes'] >> 10} KiB ({SIZES['dirs']} folders × {SIZES['files_per_dir']}); warm; median of {n}")
    t.add("`kiln data add files` / `dvc add files`", "s", ks2, ds2, med(g["read"], "s"), higher_better=False)
    t.add("  the same as files per second", "files/s", N_FILES / ks2 if ks2 else None, N_FILES / ds2 if ds2 else None, N_FILES / med(g["read"], "s") if g["read"] else None, higher_better=True)
    t.add("  add, then `sync` (till on disk)", "s", ks2 + ksync2 if ks2 is not None else None, ds2 + dsync2 if ds2 is not None else None, None, higher_better=False)
    t.add("limit: read every file, `find files -type f -exec cat {} +`", "s", limit=med(g["read"], "s"))

    # 3. status
    g = status["got"]
    kst = med(g.get("kiln", []), "s")
    dst = med(g.get("dvc", []), "s")
    stat_s = med(g.get("stat", []), "s")
    ms = lambda s: 1000 * s if s is not None else None
    t.section(f"3. status, nothing changed, {N_FILES:,} files; warm (ran once untimed first); median of {SIZES['status_repeats']}")
    t.add("`kiln data status` / `dvc status`", "ms", ms(kst), ms(dst), ms(stat_s), higher_better=False)
    t.add("limit: stat every file, `find files -type f -printf '%s %T@ %i'`", "ms", limit=ms(stat_s))
    t.add(
        "reference: status of an empty workspace (start-up cost)",
        "ms",
        ms(med(g.get("kiln_empty", []), "s")),
        ms(med(g.get("dvc_empty", []), "s")),
        higher_better=False,
    )

    raw = {
        "big": {k: v for k, v in big.items()},
        "files": {"got": files["got"]},
        "status": status,
    }
    goals = {
        "add_big_pct_of_hash_limit": pct_hash,
        "add_big_pct_of_read_limit": pct_read,
        "add_big_link_pct_of_hash_limit": link_pct_hash,
        "add_big_link_pct_of_read_limit": link_pct_read,
        "add_big_pct_of_limit": pct_limit,
        "add_big_link_pct_of_limit": link_pct_limit,
        # Met by the mode that does the limit's work (read and hash); a
        # copy also writes the file, which the read/hash limit does not.
        "add_big_met": bool(link_pct_limit and link_pct_limit >= GOALS["add_big_pct_of_limit"]),
        "add_files_times_dvc": ds2 / ks2 if ks2 and ds2 else None,
        "add_files_met": bool(ks2 and ds2 and ds2 / ks2 >= GOALS["add_files_times_dvc"]),
        "status_ms": ms(kst),
        "status_met": bool(kst is not None and ms(kst) < GOALS["status_ms"]),
    }
    info["check_failures"] = CHECKS

    print()
    print(
        f"{info['kiln_version']} ({kiln}) vs DVC {info['dvc_version']}, same machine, same data, same run: "
        f"{info['fs_type']} ({info['mount']}), {info['cores']} cores ({info['cpu']}), load {info['load_avg_start'][0]:.1f} at the start"
        f"{'; QUICK sizes' if QUICK else ''}."
    )
    if info["kiln_build"] == "debug":
        print("NOTE: this kiln is a DEBUG build; its figures say little about a release build.")
    print("ratio: how many times better Kiln is than DVC (time: dvc/kiln; rate: kiln/dvc). limit: the machine's floor for the same work, measured in this run.")
    t.print()
    print()
    verdict = lambda ok: "met" if ok else "NOT MET"
    print(
        f"goal, add {size_s}: ≥{GOALS['add_big_pct_of_limit']:.0f}% of the read/hash limit (the slower of the two): "
        f"--hardlink {fmt(link_pct_limit)}%: {verdict(goals['add_big_met'])} "
        f"(default copy: {fmt(pct_limit)}%; a copy also writes {size_s}, see `cp` + fsync)"
    )
    print(f"goal, add {N_FILES:,} files: ≥{GOALS['add_files_times_dvc']:.0f}× faster than DVC: {fmt(goals['add_files_times_dvc'])}×: {verdict(goals['add_files_met'])}")
    print(f"goal, status over {N_FILES:,} files: under {GOALS['status_ms']:.0f} ms: {fmt(goals['status_ms'])} ms: {verdict(goals['status_met'])}")
    for problem in CHECKS:
        print(f"CHECK FAILED: {problem}")
    print()
    print(json.dumps({"bench": "data", **info, "goals": goals, "results": [r for r in t.rows if "section" not in r], "raw": raw}, default=str))
    return 1 if CHECKS else 0


if __name__ == "__main__":
    sys.exit(main())
