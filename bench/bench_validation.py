#!/usr/bin/env python3
"""Benchmark the validation gate: time and peak RSS of VALIDATE on a large h5ad, against
loading the file fully into memory first (what czbenchmarks did: ``ad.read_h5ad`` then checks).

A synthetic sparse h5ad (default 1,000,000 cells x 30,000 genes, 400 stored values per cell:
4e8 values, a 3.2 GB file; 1,000 per cell would need ~17 GB of RAM to load fully) is generated chunk by chunk with h5py in anndata's on-disk layout, so generating it
never holds the matrix in memory. Each measurement runs in its own subprocess; its peak RSS
comes from ``os.wait4`` (that child's ``ru_maxrss``) and its check time from the child itself
(imports excluded, the same for both). Both modes call the same ``validate_pair`` with the scVI
model; the "full" mode only swaps the backed opener for ``ad.read_h5ad(path)``.

    python bench/bench_validation.py                 # generate, measure, write bench/out/, delete the file
    python bench/bench_validation.py --cells 200000  # smaller run
Results: bench/out/bench_validation.json (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


def mem_available_bytes() -> int:
    """MemAvailable from /proc/meminfo (0 when unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def generate(path: Path, n_cells: int, n_genes: int, nnz_per_cell: int, chunk_cells: int = 20_000,
             seed: int = 0) -> Dict[str, Any]:
    """Write a CSR h5ad chunk by chunk (anndata on-disk format 0.1.0); returns its description."""
    import h5py
    import numpy as np
    import pandas as pd
    from anndata.io import write_elem

    rng = np.random.default_rng(seed)
    step = n_genes // nnz_per_cell
    if step < 1:
        raise ValueError("nnz_per_cell must not exceed n_genes")
    total = n_cells * nnz_per_cell
    started = time.time()
    with h5py.File(path, "w") as handle:
        handle.attrs["encoding-type"] = "anndata"
        handle.attrs["encoding-version"] = "0.1.0"
        group = handle.create_group("X")
        group.attrs["encoding-type"] = "csr_matrix"
        group.attrs["encoding-version"] = "0.1.0"
        group.attrs["shape"] = np.array([n_cells, n_genes])
        data = group.create_dataset("data", shape=(total,), dtype=np.float32, chunks=(1 << 20,))
        indices = group.create_dataset("indices", shape=(total,), dtype=np.int32, chunks=(1 << 20,))
        group.create_dataset("indptr", data=np.arange(n_cells + 1, dtype=np.int64) * nnz_per_cell)
        columns = (np.arange(nnz_per_cell, dtype=np.int32) * step)[None, :]
        for start in range(0, n_cells, chunk_cells):
            rows = min(chunk_cells, n_cells - start)
            # Sorted, distinct columns per row: a random offset plus a fixed stride.
            offsets = rng.integers(0, step, size=(rows, 1), dtype=np.int32)
            lo, hi = start * nnz_per_cell, (start + rows) * nnz_per_cell
            indices[lo:hi] = (offsets + columns).ravel()
            data[lo:hi] = rng.integers(1, 16, size=rows * nnz_per_cell, dtype=np.uint8).astype(np.float32)
        categories = np.array(["T cell", "B cell", "NK cell", "monocyte", "dendritic cell"])
        obs = pd.DataFrame(
            {
                "cell_type": pd.Categorical.from_codes(rng.integers(0, len(categories), n_cells), categories),
                "dataset_id": pd.Categorical(["synthetic"] * n_cells),
                "assay": pd.Categorical(["10x 3' v3"] * n_cells),
                "suspension_type": pd.Categorical(["cell"] * n_cells),
                "donor_id": pd.Categorical.from_codes(rng.integers(0, 8, n_cells), [f"donor_{i}" for i in range(8)]),
            },
            index=pd.Index([f"cell_{i:07d}" for i in range(n_cells)]),
        )
        write_elem(handle, "obs", obs)
        del obs
        var = pd.DataFrame({"feature_name": [f"GENE{i}" for i in range(n_genes)]},
                           index=pd.Index([f"ENSG{i:011d}" for i in range(n_genes)]))
        write_elem(handle, "var", var)
        for name in ("uns", "obsm", "varm", "obsp", "varp", "layers"):
            write_elem(handle, name, {})
    return {"cells": n_cells, "genes": n_genes, "nnz_per_cell": nnz_per_cell, "nnz": total,
            "bytes": path.stat().st_size, "generate_s": round(time.time() - started, 1)}


def child(mode: str, path: str, result: str) -> None:
    """One measurement (run in a subprocess): validate_pair on the file, backed or fully loaded."""
    # Imports first, outside the timed region (identical for both modes).
    import anndata as ad  # noqa: F401
    import h5py  # noqa: F401
    import omegaconf  # noqa: F401
    import scipy.sparse  # noqa: F401

    import czbenchmarks.validation as validation

    if mode == "full":
        from czbenchmarks.datasets.h5ad import view_from_anndata

        # The reference: the whole file in memory, then the same checks on it.
        validation._read_view = lambda p, max_cells: view_from_anndata(ad.read_h5ad(p), max_cells, p)
    started = time.perf_counter()
    verdict = validation.validate_pair(
        dataset_id="synthetic", h5ad=Path(path), organism="homo_sapiens", label_key="cell_type",
        batch_keys=["donor_id"], model="scvi", model_script=ROOT / "bin" / "scvi_model.py", model_class="SCVI",
        model_config=ROOT / "containers" / "scvi" / "config.yaml",
        weights_mirror=str(ROOT / "assets" / "test" / "weights"),
    )
    elapsed = time.perf_counter() - started
    import resource

    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(result).write_text(json.dumps({"mode": mode, "check_s": elapsed, "verdict": verdict.verdict,
                                        "reasons": verdict.reasons, "self_peak_rss_mb": self_rss}))


def measure(mode: str, path: Path) -> Dict[str, Any]:
    """Run one mode in a fresh interpreter; wall time, check time and that child's peak RSS."""
    result = OUT / f".{mode}.json"
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", mode, "--path", str(path), "--result", str(result)])
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{mode} measurement failed with status {status}")
    doc = json.loads(result.read_text())
    result.unlink()
    doc.update(wall_s=wall, peak_rss_mb=usage.ru_maxrss / 1024)  # ru_maxrss is in KiB on Linux
    return doc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--genes", type=int, default=30_000)
    parser.add_argument("--nnz-per-cell", type=int, default=400,
                        help="stored values per cell (400: a 3.2 GB file whose full load peaks near 7 GB)")
    parser.add_argument("--workdir", type=Path, default=OUT, help="where the synthetic file is written")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic file")
    parser.add_argument("--repeat", type=int, default=1, help="measurements per mode (the best is reported)")
    parser.add_argument("--child", choices=["light", "full", "generate"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "generate":
        info = generate(Path(args.path), args.cells, args.genes, args.nnz_per_cell)
        Path(args.result).write_text(json.dumps(info))
        return 0
    if args.child:
        child(args.child, args.path, args.result)
        return 0

    OUT.mkdir(parents=True, exist_ok=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    # Fully loaded: float32 data + int32 indices, which scipy widens to int64 beside an int64 indptr.
    needed = args.cells * args.nnz_per_cell * 17
    available = mem_available_bytes()
    if available and needed * 1.5 > available:
        print(f"refusing: the full load needs ~{needed / 2**30:.1f} GiB, only {available / 2**30:.1f} GiB available; "
              f"lower --nnz-per-cell or --cells", file=sys.stderr)
        return 2
    path = args.workdir / f"synthetic_{args.cells}x{args.genes}.h5ad"
    try:
        print(f"generating {path} ...", flush=True)
        # Generated in a subprocess too: a forked child's ru_maxrss would include this process's
        # memory, so the measuring parent must stay small.
        info_file = OUT / ".generate.json"
        subprocess.run([sys.executable, __file__, "--child", "generate", "--path", str(path),
                        "--result", str(info_file), "--cells", str(args.cells), "--genes", str(args.genes),
                        "--nnz-per-cell", str(args.nnz_per_cell)], check=True)
        info = json.loads(info_file.read_text())
        info_file.unlink()
        print(json.dumps(info), flush=True)
        runs = {"light": [], "full": []}
        for _ in range(args.repeat):
            for mode in ("light", "full"):
                runs[mode].append(measure(mode, path))
                print(json.dumps(runs[mode][-1]), flush=True)
    finally:
        if not args.keep and path.exists():
            path.unlink()
    best = {mode: min(docs, key=lambda d: d["check_s"]) for mode, docs in runs.items()}
    light, full = best["light"], best["full"]
    summary = {
        "file": info,
        "light": light,
        "full": full,
        "ratio_check_time": full["check_s"] / light["check_s"],
        "ratio_wall_time": full["wall_s"] / light["wall_s"],
        "ratio_peak_rss": full["peak_rss_mb"] / light["peak_rss_mb"],
        "runs": runs,
        "cpu_count": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "python": sys.version.split()[0],
    }
    (OUT / "bench_validation.json").write_text(json.dumps(summary, indent=2))
    print(f"check time: backed {light['check_s']:.2f} s vs full {full['check_s']:.2f} s "
          f"-> {summary['ratio_check_time']:.1f}x less")
    print(f"process wall: {light['wall_s']:.2f} s vs {full['wall_s']:.2f} s -> {summary['ratio_wall_time']:.1f}x")
    print(f"peak RSS: backed {light['peak_rss_mb']:.0f} MiB vs full {full['peak_rss_mb']:.0f} MiB "
          f"-> {summary['ratio_peak_rss']:.1f}x less")
    return 0


if __name__ == "__main__":
    sys.exit(main())
