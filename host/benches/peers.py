"""The peers Kiln's plugin benchmarks compare against, on the same data.

Called by benches/plugins.rs with the bench venv's Python:
    peers.py ks DIR REPEATS      -> scipy.stats.ks_2samp per feature
    peers.py forest DIR REPEATS  -> sklearn RandomForestClassifier(n_jobs=1)
DIR holds raw little-endian f64 column-major matrices and shape.json.
Prints one JSON object: {"seconds": [...], ...}.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np


def load(d, name):
    shape = json.loads((d / "shape.json").read_text())[name]
    cols = np.fromfile(d / f"{name}.f64", dtype="<f8").reshape(shape[1], shape[0])
    return np.ascontiguousarray(cols.T)


def ks(d, repeats):
    from scipy.stats import ks_2samp

    ref, cur = load(d, "reference"), load(d, "current")
    times, pvals = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = [ks_2samp(ref[:, j], cur[:, j]) for j in range(ref.shape[1])]
        times.append(time.perf_counter() - t)
        pvals = [float(o.pvalue) for o in out]
    import scipy

    return {"seconds": times, "p_values": pvals, "version": f"scipy {scipy.__version__}"}


def forest(d, repeats):
    import sklearn
    from sklearn.ensemble import RandomForestClassifier

    xtr, xte = load(d, "x_train"), load(d, "x_test")
    ytr, yte = load(d, "y_train")[:, 0], load(d, "y_test")[:, 0]
    times, acc = [], None
    for r in range(repeats):
        m = RandomForestClassifier(n_estimators=100, max_depth=10, n_jobs=1, random_state=r)
        t = time.perf_counter()
        m.fit(xtr, ytr)
        times.append(time.perf_counter() - t)
        acc = float((m.predict(xte) == yte).mean())
    return {"seconds": times, "accuracy": acc, "version": f"scikit-learn {sklearn.__version__}"}


if __name__ == "__main__":
    what, d, repeats = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    print(json.dumps({"ks": ks, "forest": forest}[what](d, repeats)))
