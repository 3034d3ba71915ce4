"""Kiln's MLflow-compatible tracking server beside the real MLflow server.

Starts both on this machine in one run and sends them the SAME raw JSON
requests (MLflow's REST API, /api/2.0/mlflow/...) over one persistent
keep-alive HTTP connection each (http.client, stdlib), then prints every
figure beside the peer's and the ratio. Figures are medians over rounds
where a measure is repeated, since the machine is noisy.

    KILN_BIN=target/release/kiln  python host/benches/tracking.py
    KILN_BENCH_QUICK=1  ...        smaller sizes, for a smoke test

Run it with a Python that has `mlflow` installed (host/benches/run.sh makes
target/mlflow-bench-venv): the MLflow server is that venv's `mlflow server`,
and the last section drives both servers through `mlflow.tracking.MlflowClient`
to show the figure the Python client itself bounds.

Environment:
    KILN_BIN           the kiln binary (default target/release/kiln, relative
                       to the repository root)
    MLFLOW_BIN         the mlflow executable (default: beside sys.executable)
    KILN_BENCH_QUICK   1 for small sizes
    KILN_BENCH_KEEP    1 to keep the temporary workspaces and server logs
"""
from __future__ import annotations

import http.client
import importlib.metadata
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

from benchlib import fmt, kiln_binary, peer_binary  # noqa: E402  (beside this script)

ROOT = Path(__file__).resolve().parents[2]
QUICK = os.environ.get("KILN_BENCH_QUICK", "") not in ("", "0")
KEEP = os.environ.get("KILN_BENCH_KEEP", "") not in ("", "0")
API = "/api/2.0/mlflow"

# Sizes: (kiln, mlflow) where the two differ, because MLflow is slow enough
# that Kiln's count would take it many minutes. Every count used is printed.
SIZES = {
    "health_calls": (2000, 200),
    "log_metric_calls": (5000, 200),
    "log_metric_rounds": 5,
    "batch_requests": (30, 10),
    "batch_size": 1000,
    "history_points": 100_000,
    "history_page": 25_000,  # MLflow's client pages get-history by 25,000
    "history_reads": 3,
    "search_runs": 1000,
    "search_repeats": 15,
    "client_log_metric_calls": (1000, 100),
    "client_rounds": 5,
    "client_batch_requests": (20, 5),
    "idle_seconds": 10,
    "start_timeout": 600,
    "quiet_timeout": 180,
}
if QUICK:
    SIZES.update(
        health_calls=(200, 50),
        log_metric_calls=(500, 50),
        batch_requests=(5, 3),
        history_points=10_000,
        history_reads=2,
        search_runs=200,
        search_repeats=3,
        client_log_metric_calls=(100, 20),
        client_batch_requests=(3, 2),
        idle_seconds=5,
    )


def log(msg: str) -> None:
    print(f"[tracking-bench] {msg}", file=sys.stderr, flush=True)


def now_ms() -> int:
    return int(time.time() * 1000)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- processes --------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may hold spaces and parentheses.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def process_tree(pid: int) -> list[int]:
    kids, out, todo = _children_map(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of pid and all its live descendants."""
    total = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def wait_quiet(pids: dict[str, int], timeout: float, window: float = 1.0, below: float = 0.05, windows: int = 3) -> dict[str, float]:
    """Wait until every server's process tree uses under `below` of a core
    for `windows` windows in a row (MLflow keeps importing and spawning
    workers after its first 200); returns each one's seconds till then."""
    t0 = time.perf_counter()
    quiet_since: dict[str, float | None] = {n: None for n in pids}
    calm: dict[str, int] = {n: 0 for n in pids}
    last = {n: cpu_seconds(p) for n, p in pids.items()}
    while time.perf_counter() - t0 < timeout and any(c < windows for c in calm.values()):
        time.sleep(window)
        for n, p in pids.items():
            now = cpu_seconds(p)
            if now - last[n] < below * window:
                if calm[n] == 0:
                    quiet_since[n] = time.perf_counter() - t0 - window
                calm[n] += 1
            elif calm[n] < windows:
                calm[n] = 0
            last[n] = now
    return {n: (quiet_since[n] if calm[n] >= windows else None) for n in pids}


def _label(pid: int) -> str:
    """A short name for a process: the module after -m, else the program."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    argv = [a.decode(errors="replace") for a in argv if a]
    if "-c" in argv[:-1]:
        code = argv[argv.index("-c") + 1]
        return "multiprocessing worker" if "multiprocessing" in code else "python -c"
    if "-m" in argv[:-1]:
        return argv[argv.index("-m") + 1]
    if len(argv) > 1 and Path(argv[0]).name.startswith("python"):
        return Path(argv[1]).name
    return Path(argv[0]).name if argv else "?"


def memory(pid: int) -> dict:
    """RSS (and PSS, which splits shared pages) summed over pid and all its descendants."""
    pids = [p for p in process_tree(pid) if Path(f"/proc/{p}").exists()]
    rss = sum(_status_kb(p, "VmRSS") for p in pids)
    pss = [_pss_kb(p) for p in pids]
    labels: dict[str, int] = {}
    for p in pids:
        labels[_label(p)] = labels.get(_label(p), 0) + 1
    return {
        "rss_mb": rss / 1024,
        "pss_mb": sum(pss) / 1024 if pss and None not in pss else None,
        "processes": len(pids),
        "process_names": labels,
    }


class Server:
    def __init__(self, name: str, argv: list[str], cwd: Path, env: dict, health_paths: list[str], port: int):
        """health_paths: tried in order; a 404 moves on to the next."""
        self.name, self.argv, self.cwd, self.env = name, argv, cwd, env
        self.health_paths, self.port = list(health_paths), port
        self.proc: subprocess.Popen | None = None
        self.log_path = cwd / f"{name}-server.log"
        self.started_in: float | None = None

    def start(self, timeout: float) -> float:
        log(f"starting {self.name}: {' '.join(self.argv)}")
        logf = open(self.log_path, "wb")
        t0 = time.perf_counter()
        # Its own session and process group, so stop() can end it and every
        # worker it spawned.
        self.proc = subprocess.Popen(
            self.argv, cwd=self.cwd, env=self.env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True
        )
        logf.close()
        deadline = t0 + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before it was healthy\n{self.log_tail()}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", self.health_path)
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 404 and len(self.health_paths) > 1:
                    self.health_paths.pop(0)
                    continue
                if r.status == 200:
                    self.started_in = time.perf_counter() - t0
                    log(f"{self.name} healthy after {self.started_in:.2f}s (pid {self.proc.pid})")
                    return self.started_in
            except (OSError, http.client.HTTPException):
                pass
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{self.name} not healthy after {timeout}s\n{self.log_tail()}")
            time.sleep(0.02)

    @property
    def health_path(self) -> str:
        return self.health_paths[0]

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        pid = self.proc.pid
        tree = process_tree(pid) if self.proc.poll() is None else []
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        # Whatever is left of the group, or of the tree if a child left the
        # group, is killed outright.
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for p in tree:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log(f"{self.name} (pid {pid}) did not exit")
        self.proc = None


# ---- HTTP -------------------------------------------------------------------


class Conn(http.client.HTTPConnection):
    connects = 0

    def connect(self):
        Conn.connects += 1
        super().connect()
        # http.client writes the headers and the body of a POST in two
        # send()s; with Nagle on, the body waits for the server's delayed ACK
        # of the headers (tens of ms a request). requests/urllib3, curl and
        # Go's net/http all set TCP_NODELAY, and so do we.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Client:
    """One persistent keep-alive connection; raises on any non-200."""

    resent = 0  # requests sent again because the server had closed an idle connection

    def __init__(self, name: str, port: int):
        self.name, self.port = name, port
        self.conn = Conn("127.0.0.1", port, timeout=900)

    def fresh(self) -> None:
        # Servers close idle keep-alive connections (uvicorn after 5 s): each
        # timed loop starts on a new connection and keeps it.
        self.conn.close()
        self.conn = Conn("127.0.0.1", self.port, timeout=900)

    def request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            self.conn.request(method, path, body=body, headers=headers)
            r = self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closed the kept-alive connection before reading this
            # request (its idle timeout): send it once more on a new one.
            Client.resent += 1
            self.fresh()
            self.conn.request(method, path, body=body, headers=headers)
            r = self.conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"{method} {path} -> HTTP {r.status}: {data[:500].decode(errors='replace')}\nrequest: {(body or b'')[:300]!r}")
        return data

    def post(self, endpoint: str, obj) -> dict:
        return json.loads(self.request("POST", f"{API}/{endpoint}", dumps(obj)) or b"{}")

    def get(self, endpoint: str, params: dict) -> dict:
        return json.loads(self.request("GET", f"{API}/{endpoint}?{urllib.parse.urlencode(params)}") or b"{}")


def dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# ---- measurements -----------------------------------------------------------


def timed_calls(fn, bodies: list, rounds: int) -> tuple[float, list[float]]:
    """Call fn(body) for every body, in `rounds` equal rounds; returns the
    median of the rounds' calls/s and the per-round rates."""
    per = max(1, len(bodies) // rounds)
    rates = []
    for r in range(rounds):
        chunk = bodies[r * per : (r + 1) * per] if r < rounds - 1 else bodies[r * per :]
        if not chunk:
            continue
        t = time.perf_counter()
        for b in chunk:
            fn(b)
        rates.append(len(chunk) / (time.perf_counter() - t))
    return statistics.median(rates), rates


def create_run(c: Client, experiment_id: str, name: str, tags=None) -> str:
    body = {"experiment_id": experiment_id, "run_name": name, "start_time": now_ms()}
    if tags:
        body["tags"] = tags
    return c.post("runs/create", body)["run"]["info"]["run_id"]


def page_token(body: bytes) -> str | None:
    """The next_page_token of a response without parsing the rest of it.

    Timed loops read pages at the HTTP level: parsing a 7 MB answer with
    Python's json module is the client's cost, not the server's, and the
    same for both servers; it happens after the clock stops."""
    at = body.rfind(b'"next_page_token"')
    if at < 0:
        return None
    rest = body[at + len(b'"next_page_token"') :].lstrip().lstrip(b":").lstrip()
    token = json.JSONDecoder().raw_decode(rest.decode())[0]
    return token or None


def history_pages(c: Client, run: str, key: str) -> list[bytes]:
    """A metric's whole history as raw response bodies, paged as MLflow's
    client pages it."""
    bodies, token = [], None
    while True:
        params = {"run_id": run, "metric_key": key, "max_results": SIZES["history_page"]}
        if token:
            params["page_token"] = token
        body = c.request("GET", f"{API}/metrics/get-history?{urllib.parse.urlencode(params)}")
        bodies.append(body)
        token = page_token(body)
        if not token:
            return bodies


def get_history(c: Client, run: str, key: str) -> tuple[list[dict], int]:
    """A metric's whole history, parsed; (points, pages)."""
    bodies = history_pages(c, run, key)
    return [m for b in bodies for m in json.loads(b).get("metrics", [])], len(bodies)


CHECKS: list[str] = []  # what a server got wrong, printed under the table


def check_count(server: str, what: str, got: int, want: int) -> None:
    if got != want:
        CHECKS.append(f"{server}: {what}: {got} points stored, {want} sent")


def health_floor(c: Client, path: str, n: int) -> float:
    c.fresh()
    for _ in range(5):
        c.request("GET", path)
    rate, _ = timed_calls(lambda _b: c.request("GET", path), [None] * n, 5)
    return rate


def single_log_metric(c: Client, experiment_id: str, n: int) -> float:
    c.fresh()
    run = create_run(c, experiment_id, "single-log-metric")
    ts = now_ms()
    warm = [dumps({"run_id": run, "key": "warmup", "value": 0.5, "timestamp": ts, "step": i}) for i in range(5)]
    bodies = [dumps({"run_id": run, "key": "loss", "value": 1.0 / (i + 1), "timestamp": ts + i, "step": i}) for i in range(n)]
    c.fresh()
    for b in warm:
        c.request("POST", f"{API}/runs/log-metric", b)
    rate, _ = timed_calls(lambda b: c.request("POST", f"{API}/runs/log-metric", b), bodies, SIZES["log_metric_rounds"])
    check_count(c.name, "log-metric", len(get_history(c, run, "loss")[0]), n)
    return rate


def batch_bodies(run: str, key: str, start: int, size: int, ts: int) -> bytes:
    return dumps(
        {
            "run_id": run,
            "metrics": [{"key": key, "value": ((i * 7919) % 1000) / 1000.0, "timestamp": ts + i, "step": i} for i in range(start, start + size)],
        }
    )


def log_batch_throughput(c: Client, experiment_id: str, requests: int) -> float:
    size = SIZES["batch_size"]
    c.fresh()
    run = create_run(c, experiment_id, "log-batch")
    ts = now_ms()
    warm = batch_bodies(run, "warmup", 0, size, ts)
    bodies = [batch_bodies(run, "m", r * size, size, ts) for r in range(requests)]
    c.fresh()
    c.request("POST", f"{API}/runs/log-batch", warm)
    secs = []
    for b in bodies:
        t = time.perf_counter()
        c.request("POST", f"{API}/runs/log-batch", b)
        secs.append(time.perf_counter() - t)
    check_count(c.name, "log-batch", len(get_history(c, run, "m")[0]), requests * size)
    return size / statistics.median(secs)


def history(c: Client, experiment_id: str) -> dict:
    size, points = SIZES["batch_size"], SIZES["history_points"]
    c.fresh()
    run = create_run(c, experiment_id, "history")
    ts = now_ms()
    bodies = [batch_bodies(run, "loss", r * size, size, ts) for r in range(points // size)]
    c.fresh()
    t = time.perf_counter()
    for b in bodies:
        c.request("POST", f"{API}/runs/log-batch", b)
    write = time.perf_counter() - t
    reads, bodies = [], []
    for _ in range(SIZES["history_reads"]):
        c.fresh()
        t = time.perf_counter()
        bodies = history_pages(c, run, "loss")
        reads.append(time.perf_counter() - t)
    t = time.perf_counter()
    got = [m for b in bodies for m in json.loads(b).get("metrics", [])]
    parse = time.perf_counter() - t
    pages = len(bodies)
    steps = sorted(int(m["step"]) for m in got)
    ok = len(got) == points and steps == list(range(points))
    return {"write_s": write, "read_s": statistics.median(reads), "parse_s": parse, "points": len(got), "pages": pages, "complete": ok}


SEARCH_FILTER = "metrics.accuracy > 0.5 and params.model = 'forest' and tags.team LIKE 'ml%'"


def search_data(n: int) -> list[dict]:
    rng = random.Random(20240601)
    teams = ["ml-core", "ml-infra", "data", "platform"]
    # Distinct accuracies, so the order of the result is fully determined.
    accuracies = [a / 1e6 for a in rng.sample(range(1_000_000), n)]
    return [
        {"name": f"run-{i:05d}", "model": rng.choice(["forest", "linear"]), "accuracy": accuracies[i], "team": rng.choice(teams)}
        for i in range(n)
    ]


def search(c: Client, experiment_id: str, data: list[dict]) -> dict:
    c.fresh()
    t = time.perf_counter()
    for d in data:
        run = create_run(c, experiment_id, d["name"], tags=[{"key": "team", "value": d["team"]}])
        c.post(
            "runs/log-batch",
            {
                "run_id": run,
                "params": [{"key": "model", "value": d["model"]}],
                "metrics": [{"key": "accuracy", "value": d["accuracy"], "timestamp": now_ms(), "step": 0}],
            },
        )
    setup = time.perf_counter() - t
    body = {"experiment_ids": [experiment_id], "filter": SEARCH_FILTER, "order_by": ["metrics.accuracy DESC"], "max_results": 1000}

    def run_search() -> list[bytes]:
        pages, token = [], None
        while True:
            b = dict(body, page_token=token) if token else body
            pages.append(c.request("POST", f"{API}/runs/search", dumps(b)))
            token = page_token(pages[-1])
            if not token:
                return pages

    c.fresh()
    run_search()  # warm-up, untimed
    # A pause before timing, for both servers alike: Kiln rebuilds its
    # in-memory run catalog in the background after a search finds it
    # stale. The cost of a search that finds it stale is the next figure
    # ("right after a write").
    time.sleep(1.0)
    secs = []
    for _ in range(SIZES["search_repeats"]):
        t = time.perf_counter()
        pages = run_search()
        secs.append(time.perf_counter() - t)
    runs = [r for p in pages for r in json.loads(p).get("runs", [])]
    # The same search right after a write (a tag set on one of the runs):
    # a server that answers from memory must notice the change first.
    after_write = []
    for i in range(SIZES["search_repeats"]):
        c.post("runs/set-tag", {"run_id": run, "key": "touched", "value": str(i)})
        t = time.perf_counter()
        run_search()
        after_write.append(time.perf_counter() - t)

    def acc(r):
        return next((float(m["value"]) for m in r.get("data", {}).get("metrics", []) if m["key"] == "accuracy"), None)

    names = [r["info"].get("run_name") for r in runs]
    accs = [acc(r) for r in runs]
    return {
        "setup_s": setup,
        "search_s": statistics.median(secs),
        "search_each_s": secs,
        "search_after_write_s": statistics.median(after_write),
        "count": len(runs),
        "names": names,
        "sorted": accs == sorted(accs, reverse=True),
    }


def python_client(uri: str, experiment_id: str, calls: int, batch_requests: int) -> dict:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(experiment_id, run_name="python-client").info.run_id
    ts = now_ms()
    for i in range(5):
        client.log_metric(run, "warmup", 0.5, timestamp=ts, step=i)
    rate, _ = timed_calls(
        lambda i: client.log_metric(run, "loss", 1.0 / (i + 1), timestamp=ts + i, step=i), list(range(calls)), SIZES["client_rounds"]
    )
    size = SIZES["batch_size"]
    secs = []
    for r in range(batch_requests + 1):
        metrics = [Metric("m", ((i * 7919) % 1000) / 1000.0, ts + i, i) for i in range(r * size, (r + 1) * size)]
        t = time.perf_counter()
        client.log_batch(run, metrics=metrics)
        if r:  # the first is a warm-up
            secs.append(time.perf_counter() - t)
    return {"log_metric_per_s": rate, "log_batch_metrics_per_s": size / statistics.median(secs)}


# ---- report -----------------------------------------------------------------


class Table:
    def __init__(self):
        self.rows: list[dict] = []

    def add(self, measure: str, unit: str, kiln, mlflow, higher_better: bool | None, note: str = "", **extra):
        """higher_better None: a check, not a measure (no ratio)."""
        ratio = None
        if higher_better is not None and isinstance(kiln, (int, float)) and isinstance(mlflow, (int, float)) and kiln and mlflow:
            ratio = kiln / mlflow if higher_better else mlflow / kiln
        self.rows.append({"measure": measure, "unit": unit, "kiln": kiln, "mlflow": mlflow, "kiln_better_by": ratio, "higher_is_better": higher_better, "note": note, **extra})
        log(f"{measure} ({unit}): kiln {fmt(kiln)}  mlflow {fmt(mlflow)}" + (f"  ×{ratio:.1f}" if ratio else ""))

    def section(self, title: str):
        self.rows.append({"section": title})

    def print(self, out=sys.stdout):
        head = ["measure", "kiln", "mlflow", "kiln better by ×"]
        lines = []
        for r in self.rows:
            if "section" in r:
                lines.append(("--", r["section"]))
                continue
            ratio = r["kiln_better_by"]
            lines.append(
                (
                    f"{r['measure']} ({r['unit']})" + (f" [{r['note']}]" if r["note"] else ""),
                    fmt(r["kiln"]),
                    fmt(r["mlflow"]),
                    "-" if ratio is None else (f"{ratio:.1f}×" if ratio >= 1 else f"{ratio:.2f}× (worse)"),
                )
            )
        w = [max(len(head[i]), *(len(l[i]) for l in lines if l[0] != "--")) for i in range(4)]
        print(f"{head[0]:<{w[0]}} | {head[1]:>{w[1]}} | {head[2]:>{w[2]}} | {head[3]:>{w[3]}}", file=out)
        print("-" * (sum(w) + 9), file=out)
        for l in lines:
            if l[0] == "--":
                print(f"  {l[1]}", file=out)
            else:
                print(f"{l[0]:<{w[0]}} | {l[1]:>{w[1]}} | {l[2]:>{w[2]}} | {l[3]:>{w[3]}}", file=out)


# ---- main -------------------------------------------------------------------


def mlflow_binary() -> str:
    return peer_binary("mlflow", "MLFLOW_BIN", "the mlflow venv's Python (host/benches/run.sh makes it)")


def main() -> int:
    kiln_bin, mlflow_bin = kiln_binary(), mlflow_binary()
    try:
        mlflow_version = importlib.metadata.version("mlflow")
    except importlib.metadata.PackageNotFoundError:
        sys.exit("the `mlflow` package is not installed in this Python")
    # Fail fast in the Python-client section rather than retry with backoff.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")

    tmp = Path(tempfile.mkdtemp(prefix="kiln-tracking-bench-"))
    (tmp / "kiln").mkdir()
    (tmp / "mlflow").mkdir()
    kiln_port, mlflow_port = free_port(), free_port()
    while mlflow_port == kiln_port:
        mlflow_port = free_port()

    kiln_env = {k: v for k, v in os.environ.items() if k not in ("KILN_DATABASE_URL",)}
    kiln_env["KILN_HOME"] = str(tmp / "kiln" / ".kiln")  # a fresh workspace, created on start
    kiln_env.setdefault("RUST_LOG", "warn")
    kiln = Server(
        "kiln",
        [str(kiln_bin), "serve", "--addr", f"127.0.0.1:{kiln_port}", "--workers", "0", "--no-scheduler"],
        tmp / "kiln",
        kiln_env,
        ["/health", "/api/v1/health"],  # MLflow's path, if this Kiln serves it
        kiln_port,
    )
    mdir = tmp / "mlflow"
    mlflow = Server(
        "mlflow",
        [
            mlflow_bin, "server",
            "--backend-store-uri", f"sqlite:///{mdir / 'mlflow.db'}",
            "--default-artifact-root", str(mdir / "artifacts"),
            "--host", "127.0.0.1", "--port", str(mlflow_port),
        ],
        mdir,
        dict(os.environ),
        ["/health"],
        mlflow_port,
    )

    def on_term(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    t = Table()
    sizes = {k: v for k, v in SIZES.items()}
    info: dict = {"mlflow_version": mlflow_version, "kiln_bin": str(kiln_bin), "quick": QUICK, "sizes": sizes}
    try:
        log(f"sizes: {json.dumps(sizes)}{' (KILN_BENCH_QUICK)' if QUICK else ''}; temp dir {tmp}")
        # One after the other, each left to settle before the next starts, so
        # that neither competes with the other for the CPU; measuring starts
        # once both are quiet.
        quiet = {}
        k_start = kiln.start(SIZES["start_timeout"])
        quiet.update(wait_quiet({"kiln": kiln.proc.pid}, timeout=SIZES["quiet_timeout"]))
        m_start = mlflow.start(SIZES["start_timeout"])
        quiet.update(wait_quiet({"mlflow": mlflow.proc.pid}, timeout=SIZES["quiet_timeout"]))
        log(f"busy after healthy (s): {quiet}")
        kc, mc = Client("kiln", kiln_port), Client("mlflow", mlflow_port)
        try:
            info["kiln_version"] = json.loads(kc.request("GET", "/api/v1/health")).get("version")
        except (RuntimeError, ValueError):
            info["kiln_version"] = None

        t.section("server")
        t.add("start to healthy, fresh store", "s", k_start, m_start, False, note=f"spawn -> first 200 from GET {kiln.health_path} / {mlflow.health_path}")
        k_quiet, m_quiet = quiet["kiln"], quiet["mlflow"]
        t.add(
            "start to quiet (CPU under 5% of a core)",
            "s",
            None if k_quiet is None else k_start + k_quiet,
            None if m_quiet is None else m_start + m_quiet,
            False,
            note="workers still start after the first 200",
        )
        info["busy_after_healthy_s"] = quiet
        log(f"idling {SIZES['idle_seconds']}s more before reading memory")
        cpu0, t0 = (cpu_seconds(kiln.proc.pid), cpu_seconds(mlflow.proc.pid)), time.perf_counter()
        time.sleep(SIZES["idle_seconds"])
        cpu1, idle = (cpu_seconds(kiln.proc.pid), cpu_seconds(mlflow.proc.pid)), time.perf_counter() - t0
        km, mm = memory(kiln.proc.pid), memory(mlflow.proc.pid)
        t.add("idle CPU", "% of a core", 100 * (cpu1[0] - cpu0[0]) / idle, 100 * (cpu1[1] - cpu0[1]) / idle, None, note=f"over {idle:.0f} s")
        t.add("idle RSS, process + descendants", "MB", km["rss_mb"], mm["rss_mb"], False, note=f"processes: kiln {km['processes']}, mlflow {mm['processes']}")
        if km["pss_mb"] is not None and mm["pss_mb"] is not None:
            t.add("idle PSS, process + descendants", "MB", km["pss_mb"], mm["pss_mb"], False, note="shared pages split")
        info["idle_processes"] = {"kiln": km["process_names"], "mlflow": mm["process_names"]}
        log(f"processes: kiln {km['process_names']}, mlflow {mm['process_names']}")

        ke = kc.post("experiments/create", {"name": "bench"})["experiment_id"]
        me = mc.post("experiments/create", {"name": "bench"})["experiment_id"]

        t.section("raw HTTP, one keep-alive connection, same JSON to both")
        kn, mn = SIZES["health_calls"]
        t.add(
            "HTTP floor: GET health",
            "calls/s",
            health_floor(kc, kiln.health_path, kn),
            health_floor(mc, mlflow.health_path, mn),
            True,
            note=f"n={kn}/{mn}; GET {kiln.health_path} / {mlflow.health_path}: the client+HTTP overhead",
        )

        kn, mn = SIZES["log_metric_calls"]
        log(f"single log-metric: kiln {kn} calls, mlflow {mn} calls")
        t.add("runs/log-metric, sequential", "calls/s", single_log_metric(kc, ke, kn), single_log_metric(mc, me, mn), True, note=f"n={kn}/{mn}")

        kn, mn = SIZES["batch_requests"]
        log(f"log-batch: kiln {kn} requests, mlflow {mn} requests of {SIZES['batch_size']} metrics")
        t.add(f"runs/log-batch, {SIZES['batch_size']} metrics/request", "metrics/s", log_batch_throughput(kc, ke, kn), log_batch_throughput(mc, me, mn), True, note=f"requests={kn}/{mn}")

        pts = SIZES["history_points"]
        log(f"history: {pts} points of one metric")
        kh, mh = history(kc, ke), history(mc, me)
        t.add(f"write {pts:,} points of one metric (log-batch ×{pts // SIZES['batch_size']})", "s", kh["write_s"], mh["write_s"], False, note="one pass")
        t.add(f"read them back, metrics/get-history (paged by {SIZES['history_page']:,})", "s", kh["read_s"], mh["read_s"], False, note=f"pages {kh['pages']}/{mh['pages']}; HTTP level, bodies parsed after")
        t.add("  parsing those bodies with Python's json (client cost)", "s", kh["parse_s"], mh["parse_s"], None)
        t.add("  points returned", "count", kh["points"], mh["points"], None, note="complete" if kh["complete"] and mh["complete"] else "INCOMPLETE")
        info["history"] = {"kiln": kh, "mlflow": mh}
        for name, h in (("kiln", kh), ("mlflow", mh)):
            if not h["complete"]:
                CHECKS.append(f"{name}: get-history returned {h['points']} points (steps 0..{pts - 1} expected once each)")

        n = SIZES["search_runs"]
        data = search_data(n)
        expected = sorted(
            (d for d in data if d["accuracy"] > 0.5 and d["model"] == "forest" and d["team"].startswith("ml")), key=lambda d: -d["accuracy"]
        )
        log(f"search: creating {n} runs on each server")
        kse = kc.post("experiments/create", {"name": "search"})["experiment_id"]
        mse = mc.post("experiments/create", {"name": "search"})["experiment_id"]
        ks, ms = search(kc, kse, data), search(mc, mse, data)
        t.add(f"set up {n:,} runs (runs/create + log-batch each)", "s", ks["setup_s"], ms["setup_s"], False, note="one pass")
        t.add(f"runs/search over {n:,} runs, filtered + ordered", "s", ks["search_s"], ms["search_s"], False, note=f"median of {SIZES['search_repeats']}")
        t.add("  the same search right after a write", "s", ks["search_after_write_s"], ms["search_after_write_s"], False, note="a tag set first, each time")
        same = ks["names"] == ms["names"] == [d["name"] for d in expected]
        t.add("  runs returned", "count", ks["count"], ms["count"], None, note=f"expected {len(expected)}; " + ("same runs, same order" if same else "RESULTS DIFFER"))
        info["search"] = {
            "filter": SEARCH_FILTER,
            "expected": len(expected),
            "kiln_count": ks["count"],
            "mlflow_count": ms["count"],
            "same_runs_same_order": same,
            "kiln_sorted": ks["sorted"],
            "mlflow_sorted": ms["sorted"],
        }
        for name, r in (("kiln", ks), ("mlflow", ms)):
            if r["names"] != [d["name"] for d in expected]:
                CHECKS.append(f"{name}: runs/search returned {r['count']} runs, not the {len(expected)} expected in order")
        if not same:
            log(f"search results differ: kiln {ks['names'][:5]}…, mlflow {ms['names'][:5]}…, expected {[d['name'] for d in expected][:5]}…")

        km, mm = memory(kiln.proc.pid), memory(mlflow.proc.pid)
        t.add("RSS after the workload, process + descendants", "MB", km["rss_mb"], mm["rss_mb"], False)

        t.section("through the Python mlflow client (client-bound)")
        kn, mn = SIZES["client_log_metric_calls"]
        kbn, mbn = SIZES["client_batch_requests"]
        log(f"python client: log_metric kiln {kn}, mlflow {mn}; log_batch kiln {kbn}, mlflow {mbn} requests")
        kp = python_client(f"http://127.0.0.1:{kiln_port}", ke, kn, kbn)
        mp = python_client(f"http://127.0.0.1:{mlflow_port}", me, mn, mbn)
        t.add("MlflowClient.log_metric, sequential", "calls/s", kp["log_metric_per_s"], mp["log_metric_per_s"], True, note=f"n={kn}/{mn}")
        t.add(f"MlflowClient.log_batch, {SIZES['batch_size']} metrics/call", "metrics/s", kp["log_batch_metrics_per_s"], mp["log_batch_metrics_per_s"], True, note=f"calls={kbn}/{mbn}")
        info["http_connections_opened"] = Conn.connects
        info["requests_resent_after_idle_close"] = Client.resent
        info["check_failures"] = CHECKS
    except BaseException:
        for s in (kiln, mlflow):
            if s.proc is not None:
                log(f"--- last lines of the {s.name} server log ---\n{s.log_tail()}")
        raise
    finally:
        log("stopping the servers")
        kiln.stop()
        mlflow.stop()
        if KEEP:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(
        f"Kiln {info.get('kiln_version')} ({kiln_bin}) vs MLflow {mlflow_version} (`mlflow server`, default workers, SQLite), "
        f"same machine, same requests{'; QUICK sizes' if QUICK else ''}. Medians where repeated; n=kiln/mlflow."
    )
    t.print()
    for problem in CHECKS:
        print(f"CHECK FAILED: {problem}")
    print()
    print(json.dumps({"bench": "tracking", **info, "results": [r for r in t.rows if "section" not in r]}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
