"""A served model: Kiln's deployment beside `mlflow models serve`.

Both serve a logistic regression of the quickstart's breast-cancer data
(Kiln: the `linear` plugin trained by the quickstart pipeline, in its
sandbox; MLflow: scikit-learn's LogisticRegression saved with
`mlflow.sklearn`, served by `mlflow models serve -w 2 --env-manager local`;
Kiln's deployment keeps 2 instances). Both
get the SAME request bodies (MLflow's `dataframe_split`) over keep-alive
HTTP connections (http.client, stdlib), and every figure is printed beside
the peer's with the ratio; latencies are medians (and p99) over many calls.

    KILN_BIN=target/release/kiln  target/mlflow-bench-venv/bin/python host/benches/serving.py
    KILN_BENCH_QUICK=1  ...        fewer calls, for a smoke test

The models are not the same code, so their answers are compared too (the
share of rows on which they agree); what is measured is the serving path:
parsing the protocol, the model call, the answer.
"""
from __future__ import annotations

import csv
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchlib import fmt, kiln_binary, peer_binary  # noqa: E402  (beside this script)

ROOT = Path(__file__).resolve().parents[2]
QUICK = os.environ.get("KILN_BENCH_QUICK", "") not in ("", "0")
KEEP = os.environ.get("KILN_BENCH_KEEP", "") not in ("", "0")
CALLS = 200 if QUICK else 2000
BATCH_CALLS = 20 if QUICK else 200
CLIENTS = 8
LOAD_SECONDS = 3 if QUICK else 10


def log(msg: str) -> None:
    print(f"[serving-bench] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cancer() -> tuple[list[str], list[list[float]], list[int]]:
    with open(ROOT / "examples/quickstart/breast_cancer.csv") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    t = header.index("benign")
    columns = [c for i, c in enumerate(header) if i != t]
    data = [[float(v) for i, v in enumerate(r) if i != t] for r in rows[1:]]
    labels = [int(float(r[t])) for r in rows[1:]]
    return columns, data, labels


def wait_up(port: int, path: str, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the server on port {port} exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            c.getresponse().read()
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"nothing answered on port {port} within {timeout}s")


def post(conn: http.client.HTTPConnection, path: str, body: bytes) -> dict:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        sys.exit(f"{path} answered {r.status}: {data[:300]!r}")
    return json.loads(data)


def latencies(port: int, path: str, body: bytes, calls: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for _ in range(min(20, calls)):
        post(conn, path, body)
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        post(conn, path, body)
        out.append((time.perf_counter() - t) * 1000)
    conn.close()
    return out


def throughput(port: int, path: str, body: bytes, clients: int = CLIENTS, seconds: float = LOAD_SECONDS) -> tuple[float, float]:
    """Requests per second, and the p99 latency (ms) of those requests, with
    `clients` keep-alive connections for `seconds`."""
    times: list[list[float]] = [[] for _ in range(clients)]
    stop = time.perf_counter() + seconds

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            t = time.perf_counter()
            if t >= stop:
                break
            post(conn, path, body)
            times[i].append((time.perf_counter() - t) * 1000)
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [x for ts in times for x in ts]
    return len(every) / (time.perf_counter() - start), p99(every)


def stop_all(procs) -> None:
    """Stop the servers started in their own sessions (and their children)."""
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        p.wait()


def p99(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.99) - 1]


def main() -> None:
    kiln = kiln_binary()
    mlflow_bin = peer_binary("mlflow", "MLFLOW_BIN", "target/mlflow-bench-venv/bin/python (host/benches/run.sh makes it)")
    import mlflow
    import mlflow.sklearn  # the peer's own save format
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    columns, data, labels = cancer()
    work = Path(tempfile.mkdtemp(prefix="kiln-serving-bench-"))
    procs: list[subprocess.Popen] = []
    try:
        # Kiln: the quickstart trains it; register and deploy it.
        env = {**os.environ, "KILN_HOME": str(work / "kiln"), "NO_COLOR": "1"}
        run = json.loads(subprocess.run([kiln, "run", str(ROOT / "examples/quickstart/pipeline.toml"), "--json"], env=env, cwd=work, capture_output=True, check=True).stdout)
        subprocess.run([kiln, "models", "register", run["run_id"], "train", "cancer"], env=env, cwd=work, check=True, capture_output=True)
        subprocess.run([kiln, "deploy", "web", "--model", "cancer@1", "--instances", "2", "--max-rows", "1000"], env=env, cwd=work, check=True, capture_output=True)
        kiln_port = free_port()
        procs.append(subprocess.Popen([kiln, "serve", "--addr", f"127.0.0.1:{kiln_port}", "--workers", "0", "--no-scheduler"], env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=open(work / "kiln.log", "wb"), start_new_session=True))
        wait_up(kiln_port, "/health", 60, procs[-1])

        # MLflow: the same data, scikit-learn's logistic regression (scaled, as Kiln's plugin standardises).
        import pandas as pd

        frame = pd.DataFrame(data, columns=columns)
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(frame, labels)
        mlflow.sklearn.save_model(model, work / "model", input_example=frame.head(2))
        ml_port = free_port()
        # It starts uvicorn by name: the venv's bin must be on PATH.
        venv_bin = str(Path(mlflow_bin).parent)
        ml_env = {**os.environ, "MLFLOW_TRACKING_URI": f"file://{work / 'mlruns'}", "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}"}
        procs.append(subprocess.Popen([mlflow_bin, "models", "serve", "-m", str(work / "model"), "-p", str(ml_port), "-h", "127.0.0.1", "-w", "2", "--env-manager", "local"], env=ml_env, cwd=work, stdout=subprocess.DEVNULL, stderr=open(work / "mlflow.log", "wb"), start_new_session=True))
        wait_up(ml_port, "/ping", 180, procs[-1])

        servers = {"kiln": (kiln_port, "/deployments/web/invocations"), "mlflow": (ml_port, "/invocations")}
        one = json.dumps({"dataframe_split": {"columns": columns, "data": data[:1]}}).encode()
        batch = json.dumps({"dataframe_split": {"columns": columns, "data": (data * 2)[:1000]}}).encode()
        answers = {}
        for name, (port, path) in servers.items():
            conn = http.client.HTTPConnection("127.0.0.1", port)
            answers[name] = post(conn, path, json.dumps({"dataframe_split": {"columns": columns, "data": data}}).encode())["predictions"]
            conn.close()
        agree = sum(1 for a, b in zip(answers["kiln"], answers["mlflow"]) if int(a) == int(b)) / len(data)
        right = {n: sum(1 for p, l in zip(a, labels) if int(p) == l) / len(labels) for n, a in answers.items()}

        results = {}
        for name, (port, path) in servers.items():
            log(f"{name}: {CALLS} one-row calls, {BATCH_CALLS} 1,000-row calls, {CLIENTS} clients for {LOAD_SECONDS}s")
            single = latencies(port, path, one, CALLS)
            thousand = latencies(port, path, batch, BATCH_CALLS)
            rate, loaded_p99 = throughput(port, path, one)
            results[name] = {
                "one_row_median_ms": statistics.median(single),
                "one_row_p99_ms": p99(single),
                "batch_median_ms": statistics.median(thousand),
                "rows_per_s_batched": 1000 / (statistics.median(thousand) / 1000),
                "requests_per_s_8_clients": rate,
                "p99_ms_8_clients": loaded_p99,
            }
        # The same load on Kiln while a canary takes 10% of it (a second
        # version of the same model, judged by hand so it stays put): what
        # routing and counting per version cost.
        subprocess.run([kiln, "models", "register", run["run_id"], "train", "cancer"], env=env, cwd=work, check=True, capture_output=True)
        subprocess.run([kiln, "deploy", "web", "--canary", "cancer@2", "--percent", "10", "--manual"], env=env, cwd=work, check=True, capture_output=True)
        log(f"kiln with a 10% canary: {CLIENTS} clients for {LOAD_SECONDS}s")
        latencies(kiln_port, servers["kiln"][1], one, 200)  # load the canary's instances
        canary_rate, canary_p99 = throughput(kiln_port, servers["kiln"][1], one)
        results["kiln_canary"] = {"requests_per_s_8_clients": canary_rate, "p99_ms_8_clients": canary_p99}
        print(f"\nServing ({len(data)} rows, 30 features; kiln = linear plugin in its sandbox, mlflow = scikit-learn {__import__('sklearn').__version__} under mlflow {__import__('mlflow').__version__})")
        print(f"answers agree on {agree:.1%} of rows; accuracy on them: kiln {right['kiln']:.3f}, mlflow {right['mlflow']:.3f}\n")
        print(f"{'measure':<36} {'kiln':>10} {'mlflow':>10} {'ratio':>8}")
        for key, label, lower_better in [
            ("one_row_median_ms", "one row, median latency (ms)", True),
            ("one_row_p99_ms", "one row, p99 latency (ms)", True),
            ("batch_median_ms", "1,000 rows, median latency (ms)", True),
            ("rows_per_s_batched", "rows/s in 1,000-row requests", False),
            ("requests_per_s_8_clients", f"one-row requests/s, {CLIENTS} clients", False),
            ("p99_ms_8_clients", f"one-row p99 (ms), {CLIENTS} clients", True),
        ]:
            k, m = results["kiln"][key], results["mlflow"][key]
            ratio = m / k if lower_better else k / m
            print(f"{label:<36} {fmt(k):>10} {fmt(m):>10} {ratio:>7.1f}x")
        print("\n(ratio: how many times better Kiln is; below 1 means worse)")
        print(f"\n{'kiln, one-row requests, ' + str(CLIENTS) + ' clients':<36} {'stable':>10} {'+10% canary':>12} {'change':>8}")
        for key, label in [("requests_per_s_8_clients", "requests/s"), ("p99_ms_8_clients", "p99 (ms)")]:
            before, after = results["kiln"][key], results["kiln_canary"][key]
            print(f"{label:<36} {fmt(before):>10} {fmt(after):>12} {(after - before) / before:>+8.1%}")
        print(json.dumps({"agree": agree, "accuracy": right, "results": results}))
    finally:
        stop_all(procs)
        if KEEP:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
