#!/usr/bin/env python3
"""Benchmark: Geneformer inference script (tiny checkpoint, CPU) on 700 real and up to 50,000 synthetic cells.

For each dataset size, ``bin/geneformer_model.py`` runs in pipeline mode in its own process and we
record: wall time of the whole script, the time it spent reading + tokenizing + embedding
(``run_info.inference_seconds``), cells per second over that time, and the process's peak RSS
(``ru_maxrss`` of a one-child wrapper). The synthetic data are Poisson counts over the test
data's 700 genes, written to a sparse h5ad in chunks (never a dense matrix of all cells). Because
X is streamed in row batches, peak RSS should stay near flat while cells grow 70-fold.

Usage: python bench/bench_geneformer.py [--cells 700,5000,50000] [--variant Geneformer-V2-316M] [--threads 1]
Writes bench/out/geneformer_bench.{json,md} (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TEST_H5AD = ROOT / "assets" / "test" / "pbmc68k_test.h5ad"
SCRIPT = ROOT / "bin" / "geneformer_model.py"
WEIGHTS = ROOT / "assets" / "test" / "weights" / "geneformer"
OUT = ROOT / "bench" / "out"

# Runs `argv` as the only child and prints its peak RSS (KiB on Linux) as the last line.
RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.run(sys.argv[1:]).returncode\n"
    "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, flush=True)\n"
    "sys.exit(rc)\n"
)


def synthetic_h5ad(path: Path, n_cells: int, chunk: int = 5_000, seed: int = 0) -> Path:
    """Poisson counts (gamma-distributed gene rates) over the test data's genes, appended chunk by chunk."""
    import anndata as ad
    import h5py
    import pandas as pd
    import scipy.sparse as sp
    from anndata.io import sparse_dataset, write_elem

    var = ad.read_h5ad(TEST_H5AD, backed="r").var[["feature_name", "ensembl_id"]].copy()
    rng = np.random.default_rng(seed)
    rates = rng.gamma(0.3, 2.0, len(var))

    def block(n: int):
        return sp.csr_matrix(rng.poisson(rates, size=(n, len(var))).astype(np.float32))

    first = min(chunk, n_cells)
    ad.AnnData(block(first), obs=pd.DataFrame(index=[f"c{i}" for i in range(first)]), var=var).write_h5ad(path)
    with h5py.File(path, "a") as handle:
        matrix = sparse_dataset(handle["X"])
        for start in range(first, n_cells, chunk):
            matrix.append(block(min(chunk, n_cells - start)))
        del handle["obs"]
        obs = pd.DataFrame({"cell_type": pd.Categorical(rng.choice(["a", "b", "c"], n_cells))},
                           index=[f"c{i}" for i in range(n_cells)])
        write_elem(handle, "obs", obs)
    return path


def run_once(h5ad: Path, variant: str, workdir: Path, threads: int) -> Dict[str, Any]:
    output = workdir / f"{h5ad.stem}.{variant}.out.h5ad"
    cmd = [
        sys.executable, "-c", RSS_WRAPPER, sys.executable, str(SCRIPT), "--input", str(h5ad), "--output", str(output),
        "--dataset_id", h5ad.stem, "--organism", "homo_sapiens", "--weights_dir", str(WEIGHTS / variant),
        "--model_variant", variant, "--device", "cpu",
    ]
    # Pinned intra-op threads: on a shared CPU box torch's default (all cores) mostly spins.
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{h5ad.name}: inference failed:\n{proc.stderr[-3000:]}")
    rss_kb = int(proc.stdout.strip().splitlines()[-1].split()[-1])
    import anndata as ad

    out = ad.read_h5ad(output, backed="r")
    provenance = json.loads(out.uns["czbenchmarks"]["json"])
    info = provenance["run_info"]
    n_cells = int(out.n_obs)
    out.file.close()
    output.unlink()
    return {
        "dataset": h5ad.stem,
        "variant": variant,
        "n_cells": n_cells,
        "wall_s": round(wall, 2),
        "inference_s": info["inference_seconds"],
        "cells_per_s": round(n_cells / max(info["inference_seconds"], 1e-9), 1),
        "peak_rss_mb": round(rss_kb / 1024, 1),
        "embedded": n_cells - provenance["n_dropped_cells"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", default="700,5000,50000",
                        help="comma-separated sizes; 700 = the real test data, others synthetic")
    parser.add_argument("--variant", default="Geneformer-V2-316M")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for the inference process")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    work = OUT / "data"
    work.mkdir(exist_ok=True)
    rows: List[Dict[str, Any]] = []
    for n in [int(x) for x in args.cells.split(",")]:
        if n == 700:
            h5ad = TEST_H5AD
        else:
            h5ad = work / f"synthetic_{n}.h5ad"
            if not h5ad.exists():
                synthetic_h5ad(h5ad, n)
        row = run_once(h5ad, args.variant, work, args.threads)
        rows.append(row)
        print(f"  {row['dataset']}: {row['n_cells']} cells, {row['cells_per_s']} cells/s, "
              f"peak RSS {row['peak_rss_mb']} MB", flush=True)
    header = ["dataset", "n_cells", "wall_s", "inference_s", "cells_per_s", "peak_rss_mb", "embedded"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(r[h]) for h in header) + " |" for r in rows]
    table = "\n".join(lines)
    growth = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"] if rows else float("nan")
    summary = (f"variant {args.variant} (tiny checkpoint), CPU {platform.machine()}, {args.threads} thread(s), "
               f"{os.cpu_count()} cores visible; "
               f"peak RSS x{growth:.2f} from {rows[0]['n_cells']} to {rows[-1]['n_cells']} cells")
    print(table)
    print(summary)
    (OUT / "geneformer_bench.json").write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))
    (OUT / "geneformer_bench.md").write_text(table + "\n\n" + summary + "\n")


if __name__ == "__main__":
    main()
