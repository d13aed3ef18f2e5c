"""Baselines that run as the model BASELINE."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np


def seurat_hvg_mask(mean: np.ndarray, var: np.ndarray, n_top_genes: int, n_bins: int = 20) -> np.ndarray:
    """The ``n_top_genes`` highly variable genes of scanpy's seurat flavour, from per-gene statistics.

    ``mean`` and ``var`` (unbiased) are those of ``expm1`` of the log-normalised values, as
    ``scanpy.pp.highly_variable_genes(flavor="seurat", n_top_genes=...)`` computes them; the rest is that
    function's own rule (log dispersion, normalised within 20 equal-width bins of the log mean, a bin of
    one gene set to 1, the ``n_top_genes`` largest kept), so the same genes are chosen
    (``tests/test_baselines.py`` compares the two). It needs only these 2 × genes numbers, not the matrix.
    """
    import pandas as pd

    mean = np.array(mean, dtype=np.float64)
    mean[mean == 0] = 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        dispersion = np.asarray(var, dtype=np.float64) / mean
        dispersion[dispersion == 0] = np.nan
        dispersion = np.log(dispersion)
    frame = pd.DataFrame({"means": np.log1p(mean), "dispersions": dispersion})
    frame["mean_bin"] = pd.cut(frame["means"], bins=n_bins)
    stats = frame.groupby("mean_bin", observed=True)["dispersions"].agg(avg="mean", dev="std")
    alone = stats["dev"].isnull()  # one gene in its bin: its normalised dispersion becomes 1
    stats.loc[alone, "dev"] = stats.loc[alone, "avg"]
    stats.loc[alone, "avg"] = 0
    stats = stats.loc[frame["mean_bin"]].set_index(frame.index)
    normalised = ((frame["dispersions"] - stats["avg"]) / stats["dev"]).to_numpy()
    finite = normalised[~np.isnan(normalised)]
    if finite.size == 0:
        return np.zeros(mean.size, dtype=bool)
    cutoff = np.sort(finite)[::-1][min(n_top_genes, finite.size) - 1]
    return np.nan_to_num(normalised, nan=-np.inf) >= cutoff


def pca_baseline(counts: Any, n_top_genes: int = 3000, n_pcs: int = 50, seed: int = 42,
                 chunk_rows: Optional[int] = None) -> Tuple[np.ndarray, Dict[str, Any]]:
    """PCA on HVGs: normalize_total, log1p, ``n_top_genes`` HVGs (seurat flavour), ``n_pcs`` PCs.

    ``counts`` is an AnnData (its ``X``) or a matrix, in memory or on disk (backed sparse, HDF5 dense).
    It is read in ``chunk_rows``-row slices (default ``ROW_BLOCK_ROWS``), three times: the library sizes (for normalize_total's
    median target), the per-gene mean and variance (for the HVGs), then the HVG columns of the
    log-normalised values, written straight into one preallocated CSR. Memory is that HVG matrix plus a
    slice, never the whole expression matrix nor scanpy's copies of it (``bench/bench_pipeline_scale.py``).
    The embedding equals scanpy's whole-matrix pipeline on the same data (``tests/test_baselines.py``).

    Small datasets get ``min(n_top_genes, n_genes)`` HVGs and ``min(n_pcs, n_cells - 1, n_hvgs - 1)`` PCs;
    the numbers used are returned with the embedding.
    """
    import anndata as ad
    import scanpy as sc
    import scipy.sparse as sp

    from czbenchmarks.datasets.inputs import ROW_BLOCK_ROWS, row_blocks

    chunk_rows = chunk_rows or ROW_BLOCK_ROWS
    matrix = counts.X if isinstance(counts, ad.AnnData) else counts
    n_cells, n_genes = matrix.shape

    def log_normalised(target_sum):
        for start, block in row_blocks(matrix, chunk_rows):
            part = ad.AnnData(X=block)
            sc.pp.normalize_total(part, target_sum=target_sum)
            sc.pp.log1p(part)
            yield start, part.X

    # Pass 1: normalize_total's target, the median library size (float32). scanpy 1.11 takes the median
    # over all cells for a CSR matrix (over the non-empty ones only for a dense one): the blocks are CSR.
    sizes = np.concatenate([np.asarray(block.sum(axis=1, dtype=np.float64)).ravel().astype(np.float32)
                            for _, block in row_blocks(matrix, chunk_rows)] or [np.ones(1, np.float32)])
    target_sum = np.median(sizes)

    # Pass 2: per-gene sums of expm1(log1p(normalised)) and of its (float32) squares, as scanpy's
    # sparse mean/variance; the non-zeros per gene size pass 3's arrays exactly.
    sums = np.zeros(n_genes)
    squares = np.zeros(n_genes)
    nonzeros = np.zeros(n_genes, dtype=np.int64)
    hvgs = min(n_top_genes, n_genes)
    select_hvgs = hvgs < n_genes
    for _, block in log_normalised(target_sum):
        nonzeros += np.bincount(block.indices, minlength=n_genes)
        if select_hvgs:
            values = np.expm1(block.data)
            sums += np.bincount(block.indices, weights=values, minlength=n_genes)
            np.multiply(values, values, out=values)  # squared in float32, summed in float64, as scanpy
            squares += np.bincount(block.indices, weights=values, minlength=n_genes)
    if select_hvgs:
        mean = sums / n_cells
        var = squares / n_cells - mean ** 2
        if n_cells > 1:
            var *= n_cells / (n_cells - 1)
        keep = seurat_hvg_mask(mean, var, hvgs)
    else:
        keep = np.ones(n_genes, dtype=bool)
    columns = np.flatnonzero(keep)

    # Pass 3: the kept columns of the log-normalised values, into one CSR of the exact size.
    data = np.empty(int(nonzeros[columns].sum()), dtype=np.float32)
    indices = np.empty(data.size, dtype=np.int32)
    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    filled = 0
    for start, block in log_normalised(target_sum):
        part = block[:, columns] if select_hvgs else block
        stop = filled + part.nnz
        data[filled:stop] = part.data
        indices[filled:stop] = part.indices
        indptr[start + 1: start + 1 + part.shape[0]] = part.indptr[1:] + filled
        filled = stop
    work = ad.AnnData(X=sp.csr_matrix((data, indices, indptr), shape=(n_cells, columns.size)))
    comps = min(n_pcs, work.n_obs - 1, work.n_vars - 1)
    sc.pp.pca(work, n_comps=comps, random_state=seed)
    return np.asarray(work.obsm["X_pca"], dtype=np.float32), {"n_hvgs": int(hvgs), "n_pcs": int(comps)}
