#!/usr/bin/env python3
"""Benchmark bin/scgpt_model.py: cells/second and peak RSS on 700 real and N synthetic cells.

Runs the inference script as the pipeline does (a fresh process per input, tiny test checkpoint,
``--device auto``) and reads the peak resident set size of that process from ``wait4``. Since cells
are streamed in row slices, peak RSS should stay near-flat from 700 to 50,000 cells.

    python bench/bench_scgpt.py [--cells 50000] [--out bench/out]

The synthetic h5ad is written chunk by chunk (never whole in memory) with the test data's genes
and Poisson counts on ~200-400 genes per cell. Results go to ``<out>/bench_scgpt.json``.
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
from typing import Any, Dict

ROOT = Path(__file__).resolve().parents[1]
TEST_H5AD = ROOT / "assets" / "test" / "pbmc68k_test.h5ad"
WEIGHTS = ROOT / "assets" / "test" / "weights" / "scgpt" / "human"
SCRIPT = ROOT / "bin" / "scgpt_model.py"


def write_synthetic_h5ad(path: Path, n_cells: int, chunk: int = 5000, seed: int = 0) -> Path:
    """A sparse-count h5ad of ``n_cells`` cells over the test data's genes, written ``chunk`` rows at a time."""
    import anndata as ad
    import h5py
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp
    from anndata.io import sparse_dataset, write_elem

    template = ad.read_h5ad(TEST_H5AD, backed="r")
    var = template.var.copy()
    template.file.close()
    n_genes = len(var)
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(np.where(np.arange(n_cells) % 2 == 0, "a", "b"))},
        index=[f"syn-{i}" for i in range(n_cells)],
    )
    ad.AnnData(obs=obs, var=var).write_h5ad(path)  # obs/var only; X is appended below
    rng = np.random.default_rng(seed)
    rates = rng.gamma(0.6, 2.0, size=n_genes)  # a few highly expressed genes, many low
    with h5py.File(path, "r+") as handle:
        if "X" in handle:
            del handle["X"]
        for start in range(0, n_cells, chunk):
            rows = min(chunk, n_cells - start)
            n_expr = rng.integers(200, 400, size=rows)
            indptr = np.concatenate(([0], np.cumsum(n_expr)))
            indices = np.concatenate([np.sort(rng.choice(n_genes, k, replace=False)) for k in n_expr])
            data = (rng.poisson(rates[indices]) + 1).astype(np.float32)
            block = sp.csr_matrix((data, indices.astype(np.int32), indptr), shape=(rows, n_genes))
            if start == 0:
                write_elem(handle, "X", block)  # anndata makes sparse arrays resizable (maxshape None)
            else:
                sparse_dataset(handle["X"]).append(block)
    return path


def run_script(h5ad: Path, out: Path, extra: list[str]) -> Dict[str, Any]:
    """Run the inference script once; wall time, peak RSS (wait4) and what it recorded."""
    import anndata as ad

    cmd = [
        sys.executable, str(SCRIPT), "--input", str(h5ad), "--output", str(out), "--dataset_id", h5ad.stem,
        "--organism", "homo_sapiens", "--weights_dir", str(WEIGHTS), "--model_variant", "human", *extra,
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    log = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{log[-4000:]}")
    result = ad.read_h5ad(out)
    info = json.loads(result.uns["czbenchmarks"]["json"])["run_info"]
    n_cells = result.n_obs
    # ru_maxrss is in KiB on Linux.
    return {
        "n_cells": n_cells,
        "wall_seconds": round(wall, 2),
        "inference_seconds": info["inference_seconds"],
        "cells_per_second_inference": round(n_cells / info["inference_seconds"], 1),
        "cells_per_second_end_to_end": round(n_cells / wall, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "device": info["device"],
        "n_cells_subsampled": info["n_cells_subsampled"],
        "max_expressed_genes": info["max_expressed_genes"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=50_000, help="synthetic cells")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--chunk_size", type=int, default=2048)
    parser.add_argument("--num_threads", type=int, default=1, help="torch CPU threads (0: torch default)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    extra = ["--batch_size", str(args.batch_size), "--chunk_size", str(args.chunk_size), "--num_threads", str(args.num_threads)]
    synthetic = args.out / f"scgpt_synthetic_{args.cells}.h5ad"
    if not synthetic.exists():
        started = time.perf_counter()
        write_synthetic_h5ad(synthetic, args.cells)
        print(f"wrote {synthetic} in {time.perf_counter() - started:.1f}s", flush=True)
    report: Dict[str, Any] = {
        "checkpoint": "tiny test scGPT (assets/test/weights/scgpt/human: d_model 32, 2 layers)",
        "batch_size": args.batch_size,
        "chunk_size": args.chunk_size,
        "num_threads": args.num_threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "runs": {},
    }
    for name, h5ad in (("pbmc68k_700", TEST_H5AD), (f"synthetic_{args.cells}", synthetic)):
        result = run_script(h5ad, args.out / f"scgpt_{name}.out.h5ad", extra)
        report["runs"][name] = result
        print(name, json.dumps(result), flush=True)
    runs = list(report["runs"].values())
    report["peak_rss_growth_mib"] = round(runs[1]["peak_rss_mib"] - runs[0]["peak_rss_mib"], 1)
    (args.out / "bench_scgpt.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
