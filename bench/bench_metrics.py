#!/usr/bin/env python3
"""Benchmark: czbenchmarks-nf's embedding metrics vs scib-metrics' defaults on the same data.

Synthetic data: ``--n_cells`` (100,000) x ``--dims`` (50), 10 labels, 3 batches (seeded). Each side runs
in a fresh Python process, as an EVALUATE task does, and the wall time includes imports and any JIT
compilation (that is what every process pays):

* ours: ``czbenchmarks.tasks.metrics`` — ``silhouette_label``, ``silhouette_batch`` (cache-sized float32
  distance tiles on every core) and ``entropy_per_cell`` of the batches on ``exact_knn`` (same tiles,
  re-ranked in float64);
* scib-metrics 0.5.x defaults: ``scib_metrics.silhouette_label``, ``scib_metrics.silhouette_batch`` (jax)
  and the same entropy on ``scib_metrics.nearest_neighbors.pynndescent`` neighbours (its default kNN).

Both sides may use every core (jax and pynndescent do by default; ours follows ``$OMP_NUM_THREADS``, else
the usable cores). The load average before each side is recorded: compare runs on a quiet machine only.

Values must agree (silhouettes to 1e-4; the entropy to 1e-2, pynndescent being approximate). Writes
``bench/out/bench_metrics.json`` and prints the speed ratio. Run: ``python bench/bench_metrics.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from czbenchmarks.tasks.metrics import neighbourhood_entropy

OUT = Path(__file__).resolve().parent / "out"

OURS = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from czbenchmarks.tasks.metrics import exact_knn, silhouette_batch, silhouette_label
d = np.load(sys.argv[1]); X, labels, batch = d["X"], d["labels"], d["batch"]; k = int(sys.argv[2])
t1 = time.perf_counter()
out = {"silhouette_label": silhouette_label(X, labels)}
t2 = time.perf_counter()
out["silhouette_batch"] = silhouette_batch(X, labels, batch)
t3 = time.perf_counter()
_, idx = exact_knn(X, k, include_self=True)
t4 = time.perf_counter()
np.save(sys.argv[3], idx)
print(json.dumps({"values": out, "times": {"import": t1 - t0, "silhouette_label": t2 - t1,
                  "silhouette_batch": t3 - t2, "knn": t4 - t3}}))
"""

SCIB = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import scib_metrics
from scib_metrics.nearest_neighbors import pynndescent
d = np.load(sys.argv[1]); X, labels, batch = d["X"], d["labels"], d["batch"]; k = int(sys.argv[2])
t1 = time.perf_counter()
out = {"silhouette_label": float(scib_metrics.silhouette_label(X, labels))}
t2 = time.perf_counter()
out["silhouette_batch"] = float(scib_metrics.silhouette_batch(X, labels, batch))
t3 = time.perf_counter()
nn = pynndescent(X, n_neighbors=k, random_state=0, n_jobs=-1)
t4 = time.perf_counter()
np.save(sys.argv[3], nn.indices)
print(json.dumps({"values": out, "times": {"import": t1 - t0, "silhouette_label": t2 - t1,
                  "silhouette_batch": t3 - t2, "knn": t4 - t3}}))
"""


def synthetic(n_cells: int, dims: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n_cells)
    batch = rng.integers(0, 3, n_cells)
    centers = rng.normal(0, 2.0, size=(10, dims))
    shifts = rng.normal(0, 0.5, size=(3, dims))
    X = centers[labels] + shifts[batch] + rng.normal(0, 1.0, size=(n_cells, dims))
    return X.astype(np.float32), np.array([f"type_{i}" for i in labels]), np.array([f"batch_{i}" for i in batch])


def run_side(code: str, data: Path, k: int, idx_path: Path, timeout: int):
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, str(data), str(k), str(idx_path)],
                          capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    result["load_average_before"] = load_before
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n_cells", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=50)
    parser.add_argument("--k", type=int, default=90, help="neighbours for the entropy (scib Benchmarker default)")
    parser.add_argument("--timeout", type=int, default=7200)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    X, labels, batch = synthetic(args.n_cells, args.dims)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.npz"
        np.savez(data, X=X, labels=labels, batch=batch)
        ours = run_side(OURS, data, args.k, Path(tmp) / "ours.npy", args.timeout)
        print(f"ours: {ours['wall']:.1f} s {ours['times']}", flush=True)
        scib = run_side(SCIB, data, args.k, Path(tmp) / "scib.npy", args.timeout)
        print(f"scib-metrics: {scib['wall']:.1f} s {scib['times']}", flush=True)
        ours["values"]["entropy_per_cell"] = neighbourhood_entropy(np.load(Path(tmp) / "ours.npy"), batch)
        scib["values"]["entropy_per_cell"] = neighbourhood_entropy(np.load(Path(tmp) / "scib.npy"), batch)
    diffs = {k: abs(ours["values"][k] - scib["values"][k]) for k in ours["values"]}
    same = diffs["silhouette_label"] < 1e-4 and diffs["silhouette_batch"] < 1e-4 and diffs["entropy_per_cell"] < 1e-2
    ratio = scib["wall"] / ours["wall"]
    report = {
        "n_cells": args.n_cells, "dims": args.dims, "cores": os.cpu_count(), "labels": 10, "batches": 3, "k": args.k,
        "ours": ours, "scib_metrics": scib, "abs_diff": diffs, "same_values": same,
        "speed_ratio": ratio, "target_ratio": 5.0, "meets_target": bool(ratio >= 5.0 and same),
    }
    (OUT / "bench_metrics.json").write_text(json.dumps(report, indent=2))
    print(f"values: ours {ours['values']}\n        scib {scib['values']}\n        |diff| {diffs}")
    print(f"speed ratio (scib-metrics / ours, wall incl. imports): {ratio:.2f}x "
          f"({'meets' if report['meets_target'] else 'misses'} the 5x target; same values: {same})")


if __name__ == "__main__":
    main()
