#!/usr/bin/env python3
"""Benchmark: peak memory of the raw-expression label-prediction baseline (EVALUATE, ``input_kind``
``expression``, task ``label_prediction``) on synthetic sparse counts.

The counts (``--n_cells`` x ``--n_genes``, about ``--nnz_per_cell`` non-zeros a cell, ``--n_labels`` cell
types each over-expressing its own gene programme on a Zipf-like background) are generated in chunks
straight into an h5ad with h5py and anndata's element writer, so the generator never holds the matrix.

Each measured run is a fresh Python process (``resource`` ``ru_maxrss`` of the child):

* ``sparse``: ``czbenchmarks.tasks.evaluate.evaluate`` as EVALUATE calls it — X stays CSR
  (``label_prediction.py``);
* ``dense``: the previous path — the same cross-validation on ``X.toarray()`` (float32), i.e. the
  reference's ``set_baseline``; only run with ``--dense`` (it needs ``n_cells x n_genes x 4`` bytes and more).

``--folds N`` scores only the first N of the 5 stratified folds (memory is per fold: folds run one after
another and free their copies; time scales by 5/N); ``--classifiers`` a subset of ``lr,knn,rf``. Writes ``bench/out/bench_label_prediction_<n>.json``.
Run: ``python bench/bench_label_prediction.py --n_cells 100000``.
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

OUT = Path(__file__).resolve().parent / "out"


def write_counts(path: Path, n_cells: int, n_genes: int, nnz_per_cell: int, n_labels: int, seed: int = 0,
                 chunk: int = 20_000) -> int:
    """Write a synthetic CSR count h5ad in row chunks; returns its number of non-zeros."""
    import anndata as ad
    import h5py
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    background = 1.0 / np.arange(1, n_genes + 1) ** 0.8
    background = rng.permutation(background)
    programmes = []
    for _ in range(n_labels):
        p = background.copy()
        p[rng.choice(n_genes, 200, replace=False)] *= 8.0  # the label's own genes
        programmes.append(np.cumsum(p / p.sum()))
    labels = rng.integers(0, n_labels, n_cells)
    tmp = path.with_name(path.name + ".part")
    nnz = 0
    with h5py.File(tmp, "w") as f:
        X = f.create_group("X")
        X.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": (n_cells, n_genes)})
        data = X.create_dataset("data", (0,), maxshape=(None,), dtype="float32", chunks=(1 << 18,))
        indices = X.create_dataset("indices", (0,), maxshape=(None,), dtype="int32", chunks=(1 << 18,))
        indptr = [np.zeros(1, dtype=np.int64)]
        for start in range(0, n_cells, chunk):
            stop = min(start + chunk, n_cells)
            draws = rng.poisson(nnz_per_cell * 1.15, stop - start)  # ~13% repeats merge into counts
            rows = np.repeat(np.arange(stop - start), draws)
            cols = np.empty(len(rows), dtype=np.int64)
            for lab in range(n_labels):
                sel = labels[start:stop][rows] == lab
                cols[sel] = np.searchsorted(programmes[lab], rng.random(int(sel.sum())))
            block = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, np.minimum(cols, n_genes - 1))),
                                  shape=(stop - start, n_genes))
            block.sum_duplicates()
            block.sort_indices()
            old = data.shape[0]
            data.resize((old + block.nnz,))
            indices.resize((old + block.nnz,))
            data[old:] = block.data
            indices[old:] = block.indices
            indptr.append(block.indptr[1:].astype(np.int64) + nnz)
            nnz += block.nnz
        X.create_dataset("indptr", data=np.concatenate(indptr))
        obs = pd.DataFrame({"cell_type": pd.Categorical([f"type_{i}" for i in labels])},
                           index=[f"cell_{i}" for i in range(n_cells)])
        var = pd.DataFrame(index=[f"ENSG{i:011d}" for i in range(n_genes)])
        ad.io.write_elem(f, "obs", obs)
        ad.io.write_elem(f, "var", var)
        for key in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
            ad.io.write_elem(f, key, {})
        f.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
    tmp.rename(path)
    return nnz


# One child process per measured path; prints wall times and the child's own peak RSS.
CHILD = r"""
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
t0 = time.perf_counter()
import numpy as np
path, mode, folds, names, max_cells = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(","), int(sys.argv[5])
from czbenchmarks.tasks import label_prediction as lp
if folds < 5:  # score the first `folds` folds only: the same code per fold
    from sklearn import model_selection
    class FirstFolds(model_selection.StratifiedKFold):
        def split(self, X, y=None, groups=None):
            for i, fold in enumerate(super().split(X, y, groups)):
                if i < folds:
                    yield fold
    model_selection.StratifiedKFold = FirstFolds
if names != list(lp.CLASSIFIERS):  # a subset of the classifiers
    every = lp.classifiers
    lp.classifiers = lambda *a, **k: {n: c for n, c in every(*a, **k).items() if n in names}
    lp.CLASSIFIERS = tuple(names)
times = {}
if mode == "sparse":
    from czbenchmarks.tasks.evaluate import evaluate
    doc = evaluate("label_prediction", [path], ["synthetic"], "baseline", label_key="cell_type",
                   variant="raw_expression", input_kind="expression", seed=42,
                   label_prediction_max_cells=max_cells)
    assert doc["status"] == "ok", doc.get("error")
    metrics = doc["metrics"]
else:
    import anndata as ad
    a = ad.read_h5ad(path)
    X = a.X.toarray().astype(np.float32)
    metrics = [m.to_dict() for m in lp.label_prediction_task(X, a.obs["cell_type"].astype(str).to_numpy())]
times["total"] = time.perf_counter() - t0
usage = resource.getrusage(resource.RUSAGE_SELF)
times["cpu"] = usage.ru_utime + usage.ru_stime
print(json.dumps({"times": times, "metrics": metrics,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_child(path: Path, mode: str, folds: int, classifiers: str, timeout: int, max_cells: int = 0) -> dict:
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), mode, str(folds), classifiers, str(max_cells)],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out.update(wall_s=time.perf_counter() - start, load_average_before=load)
    return out


def score_existing(args) -> None:
    """The sparse path on an existing file (e.g. ``make_scale_dataset.py``'s 10⁶ cells), sampled or not."""
    import h5py

    with h5py.File(args.h5ad, "r") as handle:
        n_cells, n_genes = (int(v) for v in handle["X"].attrs["shape"])
        nnz = int(handle["X"]["data"].shape[0])
    report = {"h5ad": str(args.h5ad), "n_cells": n_cells, "n_genes": n_genes, "nnz": nnz, "nnz_per_cell": nnz / n_cells,
              "csr_mib": (nnz * 8 + n_cells * 8) / 2**20, "max_cells": args.max_cells, "folds_scored": args.folds,
              "classifiers": args.classifiers, "cores": os.cpu_count()}
    report["sparse"] = run_child(args.h5ad, "sparse", args.folds, args.classifiers, args.timeout, args.max_cells)
    computation = report["sparse"]["metrics"][0].get("computation", {})
    report["cells_scored"] = computation.get("cells", n_cells)
    print(f"{n_cells:,} cells ({report['cells_scored']:,} scored): peak {report['sparse']['peak_rss_mib']:.0f} MiB, "
          f"{report['sparse']['wall_s']:.0f} s, {report['sparse']['times']['cpu']:.0f} CPU-s", flush=True)
    name = f"bench_label_prediction_{n_cells}_max{args.max_cells}_{args.classifiers.replace(',', '')}_f{args.folds}.json"
    (OUT / name).write_text(json.dumps(report, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n_cells", type=int, default=100_000)
    parser.add_argument("--n_genes", type=int, default=30_000)
    parser.add_argument("--nnz_per_cell", type=int, default=500)
    parser.add_argument("--n_labels", type=int, default=10)
    parser.add_argument("--folds", type=int, default=5, help="score only the first N folds (1-5)")
    parser.add_argument("--classifiers", default="lr,knn,rf", help="a subset of lr,knn,rf (default all)")
    parser.add_argument("--dense", action="store_true", help="also run the old densifying path")
    parser.add_argument("--workdir", type=Path, default=None, help="where the h5ad goes (default: a temp dir)")
    parser.add_argument("--timeout", type=int, default=3600)
    parser.add_argument("--h5ad", type=Path, default=None,
                        help="score this dataset (cell_type labels, counts in X) instead of generating one")
    parser.add_argument("--max_cells", type=int, default=0,
                        help="--label_prediction_max_cells: score a stratified sample of this many cells (0: all)")
    args = parser.parse_args()
    if args.h5ad:
        score_existing(args)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        path = Path(tmp) / "counts.h5ad"
        t0 = time.perf_counter()
        nnz = write_counts(path, args.n_cells, args.n_genes, args.nnz_per_cell, args.n_labels)
        report = {"n_cells": args.n_cells, "n_genes": args.n_genes, "nnz": nnz, "nnz_per_cell": nnz / args.n_cells,
                  "h5ad_mib": path.stat().st_size / 2**20, "generate_s": time.perf_counter() - t0,
                  "folds_scored": args.folds, "classifiers": args.classifiers, "cores": os.cpu_count(), "csr_mib": (nnz * 8 + args.n_cells * 8) / 2**20}
        print(f"wrote {nnz:,} non-zeros ({report['h5ad_mib']:.0f} MiB) in {report['generate_s']:.0f} s", flush=True)
        report["sparse"] = run_child(path, "sparse", args.folds, args.classifiers, args.timeout)
        print(f"sparse: peak {report['sparse']['peak_rss_mib']:.0f} MiB, {report['sparse']['wall_s']:.0f} s", flush=True)
        if args.dense:
            report["dense"] = run_child(path, "dense", args.folds, args.classifiers, args.timeout)
            print(f"dense: peak {report['dense']['peak_rss_mib']:.0f} MiB, {report['dense']['wall_s']:.0f} s")
            values = [(a["value"], b["value"]) for a, b in zip(report["sparse"]["metrics"], report["dense"]["metrics"])]
            report["max_abs_diff"] = max(abs(a - b) for a, b in values)
            report["memory_ratio_dense_over_sparse"] = report["dense"]["peak_rss_mib"] / report["sparse"]["peak_rss_mib"]
            print(f"values max |diff| {report['max_abs_diff']:.2e}; "
                  f"dense / sparse peak RSS {report['memory_ratio_dense_over_sparse']:.2f}x")
    (OUT / f"bench_label_prediction_{args.n_cells}.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
