"""Baselines that run as the model BASELINE."""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np


def pca_baseline(adata, n_top_genes: int = 3000, n_pcs: int = 50, seed: int = 42,
                 private: bool = False) -> Tuple[np.ndarray, Dict[str, Any]]:
    """PCA on HVGs: normalize_total, log1p, ``n_top_genes`` HVGs (seurat flavour), ``n_pcs`` PCs.

    ``private=True`` says ``adata`` is the caller's throw-away object, worked on in place (no copy).

    Small datasets get ``min(n_top_genes, n_genes)`` HVGs and ``min(n_pcs, n_cells - 1, n_hvgs - 1)`` PCs;
    the numbers used are returned with the embedding.
    """
    import scanpy as sc

    if getattr(adata, "isbacked", False):
        work = adata.to_memory()
    else:
        work = adata if private else adata.copy()
    work.X = work.X.astype(np.float32, copy=False)  # the working copy is ours: no second one
    sc.pp.normalize_total(work)
    sc.pp.log1p(work)
    hvgs = min(n_top_genes, work.n_vars)
    if hvgs < work.n_vars:
        sc.pp.highly_variable_genes(work, n_top_genes=hvgs)
        work = work[:, work.var["highly_variable"].to_numpy()].copy()
    comps = min(n_pcs, work.n_obs - 1, work.n_vars - 1)
    sc.pp.pca(work, n_comps=comps, random_state=seed)
    return np.asarray(work.obsm["X_pca"], dtype=np.float32), {"n_hvgs": int(hvgs), "n_pcs": int(comps)}
