"""Write breast_cancer_shifted.csv: the same patients as measured by a
miscalibrated instrument, every size and texture feature 25% larger.

This is how the quickstart's drift-positive input was made; the CSV is
committed so the quickstart needs no Python. Re-run with `python3 make_shifted.py`.
"""
import csv
from pathlib import Path

here = Path(__file__).parent
with open(here / "breast_cancer.csv", newline="") as f:
    rows = list(csv.reader(f))
header, data = rows[0], rows[1:]
shifted = [name for name in header[:-1] if any(k in name for k in ("radius", "texture", "perimeter", "area"))]
idx = [header.index(name) for name in shifted]
with open(here / "breast_cancer_shifted.csv", "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(header)
    for row in data:
        row = list(row)
        for i in idx:
            row[i] = repr(round(float(row[i]) * 1.25, 6))
        w.writerow(row)
print(f"shifted {len(shifted)} of {len(header) - 1} features by +25%")
