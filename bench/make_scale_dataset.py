#!/usr/bin/env python3
"""Write a large, realistic synthetic h5ad by resampling real counts, chunk by chunk.

Each synthetic cell joins two real cells:

* a **labelled** PBMC cell of the project's test data (``assets/test/pbmc68k_test.h5ad``: 700 real
  10x cells × 700 genes, counts rebuilt from scanpy's pbmc68k_reduced; 10 cell types, 2 donors).
  Its counts give the cell its type (``cell_type``), its batch (``donor_id``) and the genes the test
  checkpoints know (the tiny scVI model is trained on exactly these 700 genes);
* a **background** cell of celltypist's sample (559 real 10x cells × 32,786 genes of raw counts,
  ``celltypist/data/samples/sample_cell_by_gene.csv``, symbols mapped to Ensembl IDs with the
  GENCODE v44 table of the same package; the ~14,000 it does not map get a
  placeholder ID ``ENSG9...``, their symbol in ``feature_name``). It fills the other ``--genes`` − 700 genes with real
  per-gene sparsity and library size (~94 % zeros).

Every non-zero count is redrawn as Poisson(count) (zeros dropped), so no two synthetic cells are
identical while the sparsity and library sizes stay those of 10x data. Rows are generated and
appended ``--chunk_cells`` at a time straight into the h5ad's CSR datasets with h5py; the whole matrix
is never in memory (peak ≈ one chunk + the two small real matrices). The file is written under a
temporary name and renamed when complete.

The celltypist counts come from its wheel, not an installed package:
``pip download celltypist==1.7.1 --no-deps -d /tmp/ct`` then ``--background /tmp/ct/celltypist-1.7.1-py3-none-any.whl``
(an installed ``celltypist`` is found without the flag).

Run: ``python bench/make_scale_dataset.py --cells 100000 --out /tmp/scale_1e5.h5ad``.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import sys
import time
import zipfile
from pathlib import Path
from typing import Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LABELLED = ROOT / "assets" / "test" / "pbmc68k_test.h5ad"
SAMPLE_COUNTS = "celltypist/data/samples/sample_cell_by_gene.csv"
GENE_TABLE = "celltypist/data/samples/GENCODEv44_Gene_id2name.csv"
#: IDs of real background genes GENCODE v44 does not map (no real Ensembl ID starts with ENSG9).
PLACEHOLDER_PREFIX = "ENSG9"


def _open_member(background: Path | None, member: str) -> io.BufferedIOBase:
    """A file of celltypist's data, from its wheel (``background``) or the installed package."""
    if background is not None and background.suffix == ".whl":
        return zipfile.ZipFile(background).open(member)
    if background is not None and background.is_dir():
        return open(background / Path(member).name, "rb")
    spec = importlib.util.find_spec("celltypist")
    if spec is None or spec.origin is None:
        raise SystemExit("make_scale_dataset: the background counts need celltypist 1.7.1's sample data: "
                         "pip download celltypist==1.7.1 --no-deps -d /tmp/ct and pass --background <the .whl>")
    return open(Path(spec.origin).parent.parent / member, "rb")


def load_background(background: Path | None, exclude: set, n_genes: int, seed: int) -> Tuple["object", np.ndarray, np.ndarray]:
    """celltypist's real counts (CSR, cells × genes) on ``n_genes`` genes whose ID or symbol is not in ``exclude``.

    Returns (counts, ensembl_ids, symbols). Genes are drawn at random among the mapped ones (seeded),
    so the background keeps the sample's gene-wise sparsity distribution.
    """
    import pandas as pd
    import scipy.sparse as sp

    with _open_member(background, GENE_TABLE) as handle:
        table = pd.read_csv(handle, header=None, names=["ensembl_id", "symbol"])
    table["ensembl_id"] = table["ensembl_id"].str.split(".").str[0]
    symbol_to_id = table.drop_duplicates("symbol").set_index("symbol")["ensembl_id"]
    with _open_member(background, SAMPLE_COUNTS) as handle:
        frame = pd.read_csv(handle, index_col=0)
    # Symbols GENCODE v44 does not know (old clone names such as RP11-...) keep their real counts
    # under a placeholder ID outside Ensembl's range (ENSG9...), so the gene count and sparsity stay
    # the sample's and every ID has the form the pipeline's checks ask for.
    ids = symbol_to_id.reindex(frame.columns)
    unmapped = ids.isna().to_numpy()
    placeholders = pd.Series([f"{PLACEHOLDER_PREFIX}{i:09d}" for i in range(int(unmapped.sum()))], index=ids.index[unmapped])
    ids = ids.fillna(placeholders)
    keep = (~ids.isin(exclude) & ~pd.Index(frame.columns).isin(exclude) & ~ids.duplicated()).to_numpy()
    columns = np.flatnonzero(keep)
    if len(columns) < n_genes:
        raise SystemExit(f"make_scale_dataset: the background has {len(columns)} mapped genes, fewer than "
                         f"the {n_genes} asked for (lower --genes)")
    rng = np.random.default_rng(seed + 1)
    columns = np.sort(rng.choice(columns, n_genes, replace=False))
    counts = sp.csr_matrix(frame.to_numpy(dtype=np.float32)[:, columns])
    return counts, ids.to_numpy()[columns].astype(str), frame.columns.to_numpy()[columns].astype(str)


def write_scale_dataset(out: Path, n_cells: int, n_genes: int = 30_000, chunk_cells: int = 10_000,
                        seed: int = 0, background: Path | None = None) -> dict:
    """Write ``n_cells`` resampled cells × ``n_genes`` genes to ``out`` (CSR float32); returns a summary."""
    import anndata as ad
    import h5py
    import pandas as pd
    import scipy.sparse as sp

    started = time.perf_counter()
    labelled = ad.read_h5ad(LABELLED)
    labelled_counts = sp.csr_matrix(labelled.X, dtype=np.float32)
    n_background = n_genes - labelled.n_vars
    if n_background < 0:
        raise SystemExit(f"make_scale_dataset: --genes must be at least the {labelled.n_vars} labelled genes")
    exclude = set(labelled.var_names) | set(labelled.var["feature_name"].astype(str))
    bg_counts, bg_ids, bg_symbols = load_background(background, exclude, n_background, seed)
    rng = np.random.default_rng(seed)
    source = rng.integers(0, labelled.n_obs, n_cells)  # the labelled cell behind each synthetic cell
    partner = rng.integers(0, bg_counts.shape[0], n_cells)  # its background cell

    tmp = out.with_name(out.name + ".part")
    nnz = 0
    with h5py.File(tmp, "w") as f:
        X = f.create_group("X")
        X.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0", "shape": (n_cells, n_genes)})
        data = X.create_dataset("data", (0,), maxshape=(None,), dtype="float32", chunks=(1 << 18,))
        indices = X.create_dataset("indices", (0,), maxshape=(None,), dtype="int32", chunks=(1 << 18,))
        indptr = X.create_dataset("indptr", (n_cells + 1,), dtype="int64")
        indptr[0] = 0
        for start in range(0, n_cells, chunk_cells):
            stop = min(start + chunk_cells, n_cells)
            block = sp.hstack([labelled_counts[source[start:stop]], bg_counts[partner[start:stop]]], format="csr")
            block.data = rng.poisson(block.data).astype(np.float32)
            block.eliminate_zeros()
            block.sort_indices()
            old = data.shape[0]
            data.resize((old + block.nnz,))
            indices.resize((old + block.nnz,))
            data[old:] = block.data
            indices[old:] = block.indices
            indptr[start + 1:stop + 1] = block.indptr[1:].astype(np.int64) + nnz
            nnz += block.nnz
        source_obs = labelled.obs.iloc[source]
        obs = pd.DataFrame({column: pd.Categorical(source_obs[column].astype(str))
                            for column in ("cell_type", "donor_id", "assay", "suspension_type")},
                           index=pd.Index([f"cell_{i:07d}" for i in range(n_cells)]))
        obs["dataset_id"] = pd.Categorical(["scale_synthetic"] * n_cells)
        obs["source_cell"] = pd.Categorical(labelled.obs_names.to_numpy()[source])
        ids = np.concatenate([labelled.var_names.to_numpy().astype(str), bg_ids])
        var = pd.DataFrame({"feature_name": np.concatenate([labelled.var["feature_name"].to_numpy().astype(str), bg_symbols]),
                            "ensembl_id": ids}, index=pd.Index(ids))
        ad.io.write_elem(f, "obs", obs)
        ad.io.write_elem(f, "var", var)
        for key in ("obsm", "varm", "obsp", "varp", "layers"):
            ad.io.write_elem(f, key, {})
        ad.io.write_elem(f, "uns", {"scale_dataset": {"labelled_source": LABELLED.name, "background_source": SAMPLE_COUNTS,
                                                      "seed": seed, "resampling": "poisson per non-zero count"}})
        f.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
    tmp.rename(out)
    return {"path": str(out), "cells": n_cells, "genes": n_genes, "nnz": int(nnz), "nnz_per_cell": nnz / n_cells,
            "bytes": out.stat().st_size, "seconds": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    """Command line: write one dataset and print its summary."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, required=True)
    parser.add_argument("--genes", type=int, default=30_000)
    parser.add_argument("--chunk_cells", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--background", type=Path, default=None,
                        help="celltypist 1.7.1 wheel (or a folder with its two sample CSVs); default: the installed package")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    summary = write_scale_dataset(args.out, args.cells, args.genes, args.chunk_cells, args.seed, args.background)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
