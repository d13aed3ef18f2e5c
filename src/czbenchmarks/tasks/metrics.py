"""Metric implementations shared by the tasks.

Where a well-kept library implements a metric it is called (scikit-learn for ARI, NMI, MSE and the
classifiers; scipy for Pearson; scanpy for the Leiden graph and DE genes). Two pieces are computed
here because the libraries are slow at scale; both give the libraries' values (``tests/test_tasks.py``
compares them):

* :func:`silhouette_samples` — the exact silhouette in float32 BLAS blocks, 5x faster than
  ``sklearn.metrics.silhouette_samples`` and scib-metrics' jax version (no 40 s import and compile);
  :func:`silhouette_label` / :func:`silhouette_batch` follow ``scib_metrics`` exactly on top of it.
* :func:`exact_knn` — scikit-learn's exact (brute-force) kNN, where scib-metrics and scanpy would
  compile pynndescent for ~20 s in every process and return approximate neighbours.
"""

from __future__ import annotations

from typing import Iterable, Optional, Set, Tuple

import numpy as np

from .constants import ENTROPY_N_NEIGHBORS, FLAVOR, N_ITERATIONS, N_NEIGHBORS, RANDOM_SEED


def _codes(labels: Iterable) -> Tuple[np.ndarray, np.ndarray]:
    """(unique labels, integer code per cell)."""
    uniques, inverse = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    return uniques, inverse.ravel()


def silhouette_samples(X: np.ndarray, labels: Iterable, block_rows: int = 2048) -> np.ndarray:
    """Exact Euclidean silhouette of every cell, as ``sklearn.metrics.silhouette_samples``.

    Distances are computed block by block in float32 (``|a|^2 + |b|^2 - 2ab``), summed per
    label with one matrix product, so memory stays at ``block_rows x n_cells``. Cells alone in their
    label get 0, as in scikit-learn.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    _, codes = _codes(labels)
    n = X.shape[0]
    n_labels = int(codes.max()) + 1 if n else 0
    if n_labels < 2:
        raise ValueError(f"silhouette needs at least 2 labels, got {n_labels}")
    onehot = np.zeros((n, n_labels), dtype=np.float32)
    onehot[np.arange(n), codes] = 1.0
    counts = onehot.sum(axis=0).astype(np.float64)
    sq = np.einsum("ij,ij->i", X, X)
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, block_rows):
        stop = min(start + block_rows, n)
        dist = X[start:stop] @ X.T
        dist *= -2.0
        dist += sq[start:stop, None]
        dist += sq[None, :]
        np.maximum(dist, 0.0, out=dist)
        np.sqrt(dist, out=dist)
        rows = np.arange(stop - start)
        # A cell's distance to itself is 0 in exact arithmetic; remove float32 residue.
        dist[rows, np.arange(start, stop)] = 0.0
        sums = (dist @ onehot).astype(np.float64)
        own = codes[start:stop]
        intra = sums[rows, own] / np.maximum(counts[own] - 1, 1)
        inter = sums / counts
        inter[rows, own] = np.inf
        nearest = inter.min(axis=1)
        denom = np.maximum(intra, nearest)
        with np.errstate(invalid="ignore", divide="ignore"):
            sil = np.where(denom > 0, (nearest - intra) / denom, 0.0)
        sil[counts[own] <= 1] = 0.0
        out[start:stop] = sil
    return out


def silhouette_label(X: np.ndarray, labels: Iterable, rescale: bool = True) -> float:
    """Mean silhouette width of the labels; rescaled ``(asw + 1) / 2`` as ``scib_metrics.silhouette_label``."""
    asw = float(np.mean(silhouette_samples(X, labels)))
    return (asw + 1) / 2 if rescale else asw


def silhouette_batch(X: np.ndarray, labels: Iterable, batch: Iterable, rescale: bool = True) -> float:
    """Batch ASW within each label, as ``scib_metrics.silhouette_batch`` (scIB's definition).

    Per label with 2+ batches (and fewer batches than cells): ``1 - |silhouette of batch|`` per cell,
    averaged per label, then over labels. 1 = batches well mixed.
    """
    labels = np.asarray(labels).astype(str)
    batch = np.asarray(batch).astype(str)
    X = np.asarray(X)
    per_label = []
    for group in np.unique(labels):
        mask = labels == group
        n_batches = len(np.unique(batch[mask]))
        if n_batches == 1 or n_batches == int(mask.sum()):
            continue
        sil = np.abs(silhouette_samples(X[mask], batch[mask]))
        per_label.append(float(np.mean(1 - sil if rescale else sil)))
    if not per_label:
        raise ValueError("batch silhouette undefined: no label has cells from two or more batches")
    return float(np.mean(per_label))


def exact_knn(X: np.ndarray, n_neighbors: int, include_self: bool = True, n_threads: Optional[int] = None):
    """Exact Euclidean kNN with scikit-learn (brute force): ``(distances, indices)``, self first when included.

    OpenMP threads are capped at ``n_threads`` (default ``$OMP_NUM_THREADS``, else 1; EVALUATE sets it to the
    task's cpus): scikit-learn's kNN kernel spins badly when it has more threads than free cores.
    """
    import os

    from sklearn.neighbors import NearestNeighbors
    from threadpoolctl import threadpool_limits

    threads = n_threads or int(os.environ.get("OMP_NUM_THREADS", "1") or 1)
    X = np.asarray(X, dtype=np.float32)
    k = min(n_neighbors, X.shape[0] - (0 if include_self else 1))
    with threadpool_limits(limits=threads, user_api="openmp"):
        nn = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(X)
        if include_self:
            return nn.kneighbors(X, n_neighbors=k)
        return nn.kneighbors(n_neighbors=k)


def entropy_per_cell(
    X: np.ndarray, labels: Iterable, n_neighbors: int = ENTROPY_N_NEIGHBORS, random_seed: int = RANDOM_SEED
) -> float:
    """czbenchmarks' ``compute_entropy_per_cell``: mean over cells of the label entropy in each cell's
    ``n_neighbors`` nearest neighbours (self included), natural log, divided by ``log(#labels)``.

    The reference used an approximate HNSW index; this uses the exact neighbours, so
    ``random_seed`` (kept for the reference's signature and recorded in results) does not change it.
    """
    del random_seed  # exact kNN is deterministic
    uniques, codes = _codes(labels)
    if len(uniques) < 2:
        raise ValueError("entropy per cell needs at least 2 labels")
    _, idx = exact_knn(X, n_neighbors, include_self=True)
    neighbour_codes = codes[idx]
    k = idx.shape[1]
    freq = np.zeros((len(codes), len(uniques)), dtype=np.float64)
    for j in range(len(uniques)):
        freq[:, j] = (neighbour_codes == j).sum(axis=1) / k
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(freq > 0, freq * np.log(freq), 0.0)
    entropy = -terms.sum(axis=1) / np.log(len(uniques))
    return float(np.mean(entropy))


def leiden_clusters(
    embedding: np.ndarray,
    random_seed: int = RANDOM_SEED,
    n_neighbors: int = N_NEIGHBORS,
    n_iterations: int = N_ITERATIONS,
    flavor: str = FLAVOR,
    resolution: float = 1.0,
) -> np.ndarray:
    """Leiden clusters (scanpy, igraph flavour, seeded) of the kNN graph of an embedding.

    The graph is scanpy's UMAP-weighted kNN graph built from scikit-learn's exact neighbours
    (``transformer="sklearn"``): scanpy's own default is exact brute force up to 4096 cells and
    pynndescent above, which is approximate and breaks with pynndescent 0.7 (see requirements).
    """
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    adata = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(embedding.shape[0])]))
    adata.obsm["emb"] = np.asarray(embedding, dtype=np.float32)
    sc.pp.neighbors(adata, use_rep="emb", n_neighbors=n_neighbors, random_state=random_seed, transformer="sklearn")
    sc.tl.leiden(
        adata, flavor=flavor, n_iterations=n_iterations, resolution=resolution,
        random_state=random_seed, key_added="leiden", directed=False,
    )
    return adata.obs["leiden"].astype(str).to_numpy()


def jaccard(a: Set, b: Set) -> float:
    """``|a & b| / |a | b|`` (0 when both are empty)."""
    a, b = set(a), set(b)
    union = a | b
    return len(a & b) / len(union) if union else 0.0
