#!/usr/bin/env python3
"""Benchmark: the PCA baseline's peak memory and time, streamed vs scanpy's whole-matrix pipeline.

Baseline: the previous implementation (before commit ``a85262d``), scanpy's own pipeline on the whole
matrix in memory — ``read_h5ad``, ``normalize_total``, ``log1p``, ``highly_variable_genes(flavor="seurat",
n_top_genes=3000)``, subset, ``pca(n_comps=50)``. Ours: ``czbenchmarks.tasks.baselines.pca_baseline``
on the backed file (three passes of 20,000-row slices, see its docstring). Each side runs in a fresh
process; its peak RSS is the child's ``ru_maxrss``, its CPU time ``ru_utime + ru_stime``. Where both
run, the embeddings are compared (max |Δ|) and the HVG sets must be equal.

Run: ``python bench/bench_pca_baseline.py --h5ad /tmp/scale_1e4.h5ad /tmp/scale_1e5.h5ad``
(files from ``bench/make_scale_dataset.py``); ``--ours_only`` for sizes the baseline cannot hold
(10⁶ x 30,000: scanpy's pipeline needs ~29 GiB). Writes ``bench/out/bench_pca_baseline.json``.
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

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"

CHILD = r"""
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
t0 = time.perf_counter()
import numpy as np
import anndata as ad
path, side, out = sys.argv[1], sys.argv[2], sys.argv[3]
if side == "scanpy":
    import scanpy as sc
    work = ad.read_h5ad(path)
    work.X = work.X.astype(np.float32, copy=False)
    sc.pp.normalize_total(work)
    sc.pp.log1p(work)
    sc.pp.highly_variable_genes(work, n_top_genes=3000)
    hvg = work.var["highly_variable"].to_numpy()
    work = work[:, hvg].copy()
    sc.pp.pca(work, n_comps=50, random_state=42)
    embedding = work.obsm["X_pca"]
else:
    from czbenchmarks.tasks.baselines import pca_baseline
    backed = ad.read_h5ad(path, backed="r")
    embedding, info = pca_baseline(backed.X, n_top_genes=3000, n_pcs=50, seed=42)
np.save(out, np.asarray(embedding, dtype=np.float32))
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall_s": time.perf_counter() - t0, "cpu_s": usage.ru_utime + usage.ru_stime,
                  "peak_rss_mib": usage.ru_maxrss / 1024}))
"""


def run_side(path: Path, side: str, out: Path, timeout: int) -> dict:
    load = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), side, str(out)],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:], "returncode": proc.returncode, "load_average_before": load}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load_average_before"] = load
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--h5ad", type=Path, nargs="+", required=True)
    parser.add_argument("--ours_only", action="store_true", help="skip scanpy's whole-matrix pipeline")
    parser.add_argument("--timeout", type=int, default=3600)
    args = parser.parse_args()
    import h5py
    import numpy as np

    OUT.mkdir(parents=True, exist_ok=True)
    record_path = OUT / "bench_pca_baseline.json"
    records = json.loads(record_path.read_text()) if record_path.exists() else {}
    for path in args.h5ad:
        with h5py.File(path, "r") as handle:
            n_cells, n_genes = (int(v) for v in handle["X"].attrs["shape"])
            nnz = int(handle["X"]["data"].shape[0])
        entry = {"n_cells": n_cells, "n_genes": n_genes, "nnz": nnz, "h5ad_gib": path.stat().st_size / 2**30,
                 "csr_gib": (nnz * 8 + n_cells * 8) / 2**30, "cores": os.cpu_count(),
                 "date": time.strftime("%Y-%m-%d %H:%M")}
        with tempfile.TemporaryDirectory() as tmp:
            sides = ["ours"] + ([] if args.ours_only else ["scanpy"])
            for side in sides:
                entry[side] = run_side(path, side, Path(tmp) / f"{side}.npy", args.timeout)
                print(f"{n_cells:,} cells, {side}: {entry[side]}", flush=True)
            if all("error" not in entry[s] for s in sides) and len(sides) == 2:
                ours, theirs = (np.load(Path(tmp) / f"{s}.npy") for s in sides)
                entry["max_abs_diff"] = float(np.abs(ours - theirs).max())
                entry["max_abs_value"] = float(np.abs(theirs).max())
                entry["peak_rss_ratio_scanpy_over_ours"] = entry["scanpy"]["peak_rss_mib"] / entry["ours"]["peak_rss_mib"]
                print(f"max |diff| {entry['max_abs_diff']:.2e} of values up to {entry['max_abs_value']:.1f}; "
                      f"peak RSS scanpy / ours {entry['peak_rss_ratio_scanpy_over_ours']:.2f}x", flush=True)
        records[str(n_cells)] = entry
        record_path.write_text(json.dumps(records, indent=2))


if __name__ == "__main__":
    main()
