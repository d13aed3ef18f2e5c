#!/usr/bin/env python3
"""Benchmark: the kNN and silhouette metrics past their exact thresholds (``metrics.py``
``KNN_EXACT_MAX_CELLS``, ``SILHOUETTE_EXACT_MAX_CELLS``) against the exact O(n²) path.

Synthetic embedding as ``bench_metrics.py`` (50 dims, 10 labels, 3 batches, seeded). Measured in this
process (pynndescent's numba compilation is counted in its first call and reported apart):

* the exact path (``exact_knn`` for each k of ``--ks``, ``silhouette_label``, ``silhouette_batch``) at
  ``--exact_sizes`` cells, extrapolated to ``--n_cells`` by O(n²) (the constant from the largest size);
* the scaled path at ``--n_cells`` (thresholds forced to 0 so it runs whatever the size): pynndescent kNN
  and its recall@k on ``KNN_RECALL_SAMPLE`` cells, sampled silhouettes and their 95% intervals.

Writes ``bench/out/bench_metrics_scale_<n>.json``. Run: ``python bench/bench_metrics_scale.py --n_cells 1000000``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out"


def synthetic(n_cells: int, dims: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n_cells)
    batch = rng.integers(0, 3, n_cells)
    X = rng.normal(0, 2.0, size=(10, dims))[labels] + rng.normal(0, 0.5, size=(3, dims))[batch]
    X = (X + rng.normal(0, 1.0, size=(n_cells, dims))).astype(np.float32)
    return X, np.array([f"type_{i}" for i in labels]), np.array([f"batch_{i}" for i in batch])


CPU = {}  # step -> CPU seconds of this process (all threads): less sensitive to a busy machine than wall time


def timed(fn, *args, **kwargs):
    start, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    CPU[f"{fn.__name__}#{len(CPU)}"] = time.process_time() - cpu
    return out, time.perf_counter() - start


def main() -> None:
    from czbenchmarks.tasks import metrics

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n_cells", type=int, default=1_000_000)
    parser.add_argument("--dims", type=int, default=50)
    parser.add_argument("--ks", default="15,200", help="neighbour counts: the Leiden graph's, the entropy's")
    parser.add_argument("--exact_sizes", default="20000,40000")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    ks = [int(k) for k in args.ks.split(",")]
    report = {"n_cells": args.n_cells, "dims": args.dims, "ks": ks, "cores": len(os.sched_getaffinity(0)),
              "load_average_before": os.getloadavg()[0], "exact": {}, "constants": {
                  name: getattr(metrics, name) for name in ("KNN_EXACT_MAX_CELLS", "KNN_RECALL_SAMPLE",
                                                            "SILHOUETTE_EXACT_MAX_CELLS", "SILHOUETTE_SAMPLE_CELLS")}}
    for size in map(int, args.exact_sizes.split(",")):
        X, labels, batch = synthetic(size, args.dims)
        row = {f"knn_k{k}_s": timed(metrics.exact_knn, X, k, include_self=True)[1] for k in ks}
        row["silhouette_label_s"] = timed(metrics.silhouette_label, X, labels)[1]
        row["silhouette_batch_s"] = timed(metrics.silhouette_batch, X, labels, batch)[1]
        report["exact"][size] = row
        print(f"exact at {size:,}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()), flush=True)
    largest = max(report["exact"])
    factor = (args.n_cells / largest) ** 2
    report["exact_extrapolated_s"] = {k: v * factor for k, v in report["exact"][largest].items()}
    print(f"exact at {args.n_cells:,} (O(n^2) from {largest:,}): "
          + ", ".join(f"{k} {v / 60:.0f} min" for k, v in report["exact_extrapolated_s"].items()), flush=True)
    if len(report["exact"]) >= 2:  # a n^2 + b n through the two largest sizes (per-row work is O(n) too)
        small, big = sorted(report["exact"])[-2:]
        fit = {}
        for key in report["exact"][big]:
            A = np.array([[small**2, small], [big**2, big]], dtype=float)
            a, b = np.linalg.solve(A, [report["exact"][small][key], report["exact"][big][key]])
            fit[key] = float(a * args.n_cells**2 + b * args.n_cells)
        report["exact_fitted_s"] = fit
        print("exact, a n^2 + b n fit: " + ", ".join(f"{k} {v / 60:.0f} min" for k, v in fit.items()), flush=True)

    # numba compilation of pynndescent, paid once per process: timed on a small problem first
    _, t_compile = timed(metrics.approximate_knn, synthetic(2000, args.dims)[0], 15)
    X, labels, batch = synthetic(args.n_cells, args.dims)
    scaled = {"pynndescent_compile_s": t_compile}
    for k in ks:
        record = {}
        _, t_approx = timed(metrics.knn, X, k, include_self=True, max_exact_cells=0, record=record)
        scaled[f"knn_k{k}_s"], scaled[f"knn_k{k}"] = t_approx, record
        print(f"approximate kNN k={k} at {args.n_cells:,}: {t_approx:.0f} s, recall {record['recall_at_k']:.4f}",
              flush=True)
    sil_record, bat_record = {}, {}
    sil, t_sil = timed(metrics.silhouette_label, X, labels, max_exact_cells=0, record=sil_record)
    bat, t_bat = timed(metrics.silhouette_batch, X, labels, batch, max_exact_cells=0, record=bat_record)
    scaled.update({"silhouette_label_s": t_sil, "silhouette_label": sil, "silhouette_label_record": sil_record,
                   "silhouette_batch_s": t_bat, "silhouette_batch": bat, "silhouette_batch_record": bat_record})
    report["scaled"] = scaled
    print(f"sampled silhouette_label {t_sil:.1f} s {sil:.4f} ci95 {sil_record['ci95']}; "
          f"silhouette_batch {t_bat:.1f} s {bat:.4f} ci95 {bat_record['ci95']}", flush=True)
    report["cpu_s"] = CPU
    report["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report["load_average_after"] = os.getloadavg()[0]
    print(f"peak RSS {report['peak_rss_mib']:.0f} MiB")
    (OUT / f"bench_metrics_scale_{args.n_cells}.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
