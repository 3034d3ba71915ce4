"""Serving the issue's seed model: a random forest (100 trees, depth 10, 20
features) behind `mlflow models serve` and behind Kiln, same run, same
machine, same load generator.

- mlflow: scikit-learn's RandomForestClassifier saved with `mlflow.sklearn`,
  served by `mlflow models serve -w 1 --env-manager local` (one uvicorn
  worker, its default).
- kiln onnx: the same fitted forest exported with skl2onnx (zipmap off) and
  imported with `kiln models import`, served by the bundled `onnx` plugin in
  its sandbox (2 warm instances).
- kiln forest: Kiln's own `forest` plugin trained on the same rows with the
  same sizes (its trees are not scikit-learn's, so its answers are compared
  by accuracy, not row by row).

Every figure is printed beside the peer's with the ratio. The load comes
from Python threads on keep-alive connections (http.client): at high rates
the client itself is the limit, the same limit for every server, so a
ratio there understates the faster server.

    KILN_BIN=target/release/kiln  target/mlflow-bench-venv/bin/python host/benches/serving_forest.py
    KILN_BENCH_QUICK=1  ...        shorter, for a smoke test
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from benchlib import fmt, kiln_binary, peer_binary  # noqa: E402  (beside this script)
from serving import free_port, latencies, p99, post, stop_all, throughput, wait_up  # noqa: E402

QUICK = os.environ.get("KILN_BENCH_QUICK", "") not in ("", "0")
KEEP = os.environ.get("KILN_BENCH_KEEP", "") not in ("", "0")
CALLS = 200 if QUICK else 2000
SECONDS = 2 if QUICK else 8
FEATURES = 20


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (MLflow's server is a
    uvicorn process under the mlflow CLI)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            todo += [int(c) for c in open(f"/proc/{p}/task/{p}/children").read().split()]
        except FileNotFoundError:
            pass
    return total / 1024


def main() -> None:
    kiln = kiln_binary()
    mlflow_bin = peer_binary("mlflow", "MLFLOW_BIN", "target/mlflow-bench-venv/bin/python (host/benches/run.sh makes it)")
    import mlflow
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from skl2onnx import to_onnx
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    x, y = make_classification(n_samples=6000, n_features=FEATURES, n_informative=10, random_state=0)
    x = x.astype(np.float32)
    columns = [f"f{i}" for i in range(FEATURES)]
    train, test = slice(0, 5000), slice(5000, None)
    model = RandomForestClassifier(n_estimators=100, max_depth=10, random_state=0, n_jobs=1).fit(x[train], y[train])
    work = Path(tempfile.mkdtemp(prefix="kiln-forest-bench-"))
    procs: dict[str, subprocess.Popen] = {}
    try:
        env = {**os.environ, "KILN_HOME": str(work / "kiln"), "NO_COLOR": "1"}

        def kiln_cmd(*args: str) -> str:
            return subprocess.run([kiln, *args], env=env, cwd=work, check=True, capture_output=True, text=True).stdout

        onx = to_onnx(model, x[:1], options={id(model): {"zipmap": False}}, target_opset={"": 15, "ai.onnx.ml": 3})
        (work / "forest.onnx").write_bytes(onx.SerializeToString())
        kiln_cmd("models", "import", "rf", str(work / "forest.onnx"), "--columns", ",".join(columns))
        kiln_cmd("deploy", "onnx", "--model", "rf@1", "--instances", "2")
        frame = pd.DataFrame(x[train], columns=columns)
        frame["y"] = y[train]
        frame.to_csv(work / "train.csv", index=False)
        (work / "forest.toml").write_text(
            'name = "forest"\n[inputs.d]\npath = "train.csv"\ntarget = "y"\n'
            '[stages.train]\nuses = "forest"\ndata = "d"\nwith = { n_estimators = 100, max_depth = 10 }\nregister = "native"\n'
        )
        kiln_cmd("run", str(work / "forest.toml"))
        kiln_cmd("deploy", "forest", "--model", "native@1", "--instances", "2")
        kiln_port = free_port()
        procs["kiln"] = subprocess.Popen([kiln, "serve", "--addr", f"127.0.0.1:{kiln_port}", "--workers", "0", "--no-scheduler"], env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=open(work / "kiln.log", "wb"), start_new_session=True)
        wait_up(kiln_port, "/health", 120, procs["kiln"])

        # MLflow 3.18 saves with skops and asks which types to trust.
        trusted = {"skops_trusted_types": ["sklearn.tree._tree.Tree"]} if "skops_trusted_types" in mlflow.sklearn.save_model.__code__.co_varnames else {}
        mlflow.sklearn.save_model(model, work / "model", input_example=pd.DataFrame(x[:2], columns=columns), **trusted)
        ml_port = free_port()
        venv_bin = str(Path(mlflow_bin).parent)
        ml_env = {**os.environ, "MLFLOW_TRACKING_URI": f"file://{work / 'mlruns'}", "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}"}
        procs["mlflow"] = subprocess.Popen([mlflow_bin, "models", "serve", "-m", str(work / "model"), "-p", str(ml_port), "-h", "127.0.0.1", "-w", "1", "--env-manager", "local"], env=ml_env, cwd=work, stdout=subprocess.DEVNULL, stderr=open(work / "mlflow.log", "wb"), start_new_session=True)
        wait_up(ml_port, "/ping", 180, procs["mlflow"])

        servers = {"kiln onnx": (kiln_port, "/deployments/onnx/invocations"), "kiln forest": (kiln_port, "/deployments/forest/invocations"), "mlflow": (ml_port, "/invocations")}
        holdout = {"dataframe_split": {"columns": columns, "data": x[test].tolist()}}
        answers = {}
        for name, (port, path) in servers.items():
            conn = http.client.HTTPConnection("127.0.0.1", port)
            answers[name] = post(conn, path, json.dumps(holdout).encode())
            conn.close()
        sk_labels = model.predict(x[test])
        sk_proba = model.predict_proba(x[test])[:, 1]
        onnx_labels = np.array([int(p) for p in answers["kiln onnx"]["predictions"]])
        onnx_proba = np.array([p["1"] for p in answers["kiln onnx"]["probabilities"]])
        same_classes = float((onnx_labels == sk_labels).mean())
        max_proba_diff = float(np.abs(onnx_proba - sk_proba).max())
        accuracy = {n: float((np.array([int(p) for p in a["predictions"]]) == y[test]).mean()) for n, a in answers.items()}

        one = json.dumps({"dataframe_split": {"columns": columns, "data": x[test][:1].tolist()}}).encode()
        hundred = json.dumps({"dataframe_split": {"columns": columns, "data": x[test][:100].tolist()}}).encode()
        results: dict[str, dict[str, float]] = {}
        for name, (port, path) in servers.items():
            log_line = f"{name}: {CALLS} one-row calls, then 1/8/64 connections and 100-row requests for {SECONDS}s each"
            print(f"[serving-forest-bench] {log_line}", flush=True)
            single = latencies(port, path, one, CALLS)
            r = {"one_row_median_ms": statistics.median(single), "one_row_p99_ms": p99(single)}
            for clients in (1, 8, 64):
                rate, tail = throughput(port, path, one, clients, SECONDS)
                r[f"rps_{clients}"], r[f"p99_{clients}"] = rate, tail
            rate, tail = throughput(port, path, hundred, 8, SECONDS)
            r["rows_per_s_100"], r["p99_100"] = rate * 100, tail
            r["rss_mib"] = rss_mib(procs["kiln" if name.startswith("kiln") else "mlflow"].pid)
            results[name] = r

        print(f"\nRandom forest, 100 trees, depth 10, {FEATURES} features (scikit-learn {__import__('sklearn').__version__}, mlflow {mlflow.__version__}, one uvicorn worker)")
        print(f"kiln onnx vs scikit-learn on {len(sk_labels)} holdout rows: same class on {same_classes:.1%}, largest probability difference {max_proba_diff:.2e}")
        print("holdout accuracy: " + ", ".join(f"{n} {a:.3f}" for n, a in accuracy.items()) + "\n")
        names = list(servers)
        print(f"{'measure':<34}" + "".join(f"{n:>13}" for n in names) + f"{'onnx/mlflow':>13}")
        rows = [("one_row_median_ms", "one row, median (ms), 1 conn", True), ("one_row_p99_ms", "one row, p99 (ms), 1 conn", True)]
        for c in (1, 8, 64):
            rows += [(f"rps_{c}", f"one-row requests/s, {c} conn", False), (f"p99_{c}", f"one-row p99 (ms), {c} conn", True)]
        rows += [("rows_per_s_100", "rows/s, 100-row requests, 8 conn", False), ("p99_100", "100-row p99 (ms), 8 conn", True), ("rss_mib", "server RSS after (MiB)", True)]
        for key, label, lower_better in rows:
            vals = [results[n][key] for n in names]
            k, m = results["kiln onnx"][key], results["mlflow"][key]
            ratio = m / k if lower_better else k / m
            print(f"{label:<34}" + "".join(f"{fmt(v):>13}" for v in vals) + f"{ratio:>12.1f}x")
        print("\n(ratio: how many times better Kiln's ONNX deployment is than mlflow; RSS for kiln is the one server holding both deployments)")
        print(json.dumps({"same_classes": same_classes, "max_proba_diff": max_proba_diff, "accuracy": accuracy, "results": results}))
    finally:
        stop_all(procs.values())
        if KEEP:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
