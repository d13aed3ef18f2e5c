"""Metric implementations shared by the tasks.

Where a well-kept library implements a metric it is called (scikit-learn for ARI, NMI, MSE and the
classifiers; scipy for Pearson; scanpy for the Leiden graph and DE genes). Two pieces are computed
here because the libraries are slow at scale; both give the libraries' values (``tests/test_tasks.py``
compares them):

* :func:`silhouette_samples` — the exact silhouette from cache-sized float32 distance tiles on all cores;
  :func:`silhouette_label` / :func:`silhouette_batch` follow ``scib_metrics`` exactly on top of it, without
  its jax import and compilation.
* :func:`exact_knn` — exact neighbours from the same tiles, re-ranked in float64: scikit-learn's brute-force
  result, where scib-metrics and scanpy would compile pynndescent for ~20 s in every process and return
  approximate neighbours.

``bench/bench_metrics.py`` measures both against scib-metrics' defaults.
"""

from __future__ import annotations

from typing import Iterable, Optional, Set, Tuple

import numpy as np

from .constants import ENTROPY_N_NEIGHBORS, FLAVOR, N_ITERATIONS, N_NEIGHBORS, RANDOM_SEED


def _codes(labels: Iterable) -> Tuple[np.ndarray, np.ndarray]:
    """(unique labels, integer code per cell)."""
    uniques, inverse = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    return uniques, inverse.ravel()


def _n_threads(n_threads: Optional[int] = None) -> int:
    """Worker threads: ``n_threads``, else ``$OMP_NUM_THREADS`` (EVALUATE sets it to the task's cpus), else the
    cores this process may use."""
    import os

    if n_threads:
        return int(n_threads)
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class _SquaredDistances:
    """Squared Euclidean distances between blocks of cells, each block one float32 matrix product.

    The cells are centred (distances do not change; float32 cancellation shrinks) and augmented so that
    ``left[i] @ right[j] = |x_i|^2 + |x_j|^2 - 2 x_i.x_j``: no elementwise passes to add the norms.
    """

    def __init__(self, X: np.ndarray) -> None:
        centred = np.asarray(X, dtype=np.float64)
        centred = centred - centred.mean(axis=0)
        sq = np.einsum("ij,ij->i", centred, centred)[:, None]
        ones = np.ones_like(sq)
        self.centred = centred
        self.left = np.ascontiguousarray(np.hstack([centred, sq, ones]), dtype=np.float32)
        self.right = np.ascontiguousarray(np.hstack([-2.0 * centred, ones, sq]), dtype=np.float32)
        self.n = centred.shape[0]

    def block(self, rows: slice, cols: slice) -> np.ndarray:
        """``rows x cols`` squared distances (float32, rounding residue below 0 clipped)."""
        out = self.left[rows] @ self.right[cols].T
        return np.maximum(out, 0.0, out=out)

    def rows_to_all(self, rows: slice, out: np.ndarray, block_cols: int = 8192) -> np.ndarray:
        """Squared distances of ``rows`` to every cell, into ``out``, unclipped (for ranking: residue below 0
        only occurs between near-identical cells). In column tiles, which BLAS packs into cache (one product
        against all cells runs ~1.5x slower)."""
        for col in range(0, self.n, block_cols):
            cols = slice(col, min(col + block_cols, self.n))
            np.matmul(self.left[rows], self.right[cols].T, out=out[:, cols])
        return out


def _for_row_blocks(n: int, block_rows: int, work, n_threads: Optional[int]) -> None:
    """Run ``work(start, stop)`` for every row block on a thread pool (numpy and BLAS release the GIL;
    BLAS itself is held to one thread per worker so the workers do not oversubscribe the cores)."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    starts = range(0, n, block_rows)
    threads = min(_n_threads(n_threads), len(starts)) or 1
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(lambda s: work(s, min(s + block_rows, n)), starts):
            pass


def silhouette_samples(
    X: np.ndarray, labels: Iterable, block: int = 512, n_threads: Optional[int] = None
) -> np.ndarray:
    """Exact Euclidean silhouette of every cell, as ``sklearn.metrics.silhouette_samples``.

    Distances are computed in ``block x block`` float32 tiles that stay in cache, each tile once for both of
    its sides (distances are symmetric), summed per label with matrix products into float64, on
    ``n_threads`` threads. Memory is ``n_cells x (dims + labels)`` plus one tile per thread. Cells alone in
    their label get 0, as in scikit-learn.
    """
    import threading

    _, codes = _codes(labels)
    n = len(codes)
    n_labels = int(codes.max()) + 1 if n else 0
    if n_labels < 2:
        raise ValueError(f"silhouette needs at least 2 labels, got {n_labels}")
    distances = _SquaredDistances(X)
    onehot = np.zeros((n, n_labels), dtype=np.float32)
    onehot[np.arange(n), codes] = 1.0
    sums = np.zeros((n, n_labels), dtype=np.float64)
    # Row block i adds into its own rows and into every later block's rows: one lock per block.
    locks = [threading.Lock() for _ in range(0, n, block)]

    def work(start: int, stop: int) -> None:
        # The block against itself: its rows only (both orders of each pair are in it).
        tile = distances.block(slice(start, stop), slice(start, stop))
        # A cell's distance to itself is 0 in exact arithmetic; remove float32 residue.
        np.fill_diagonal(tile, 0.0)
        np.sqrt(tile, out=tile)
        own = (tile @ onehot[start:stop]).astype(np.float64)
        for col in range(stop, n, block):
            col_stop = min(col + block, n)
            tile = distances.block(slice(start, stop), slice(col, col_stop))
            np.sqrt(tile, out=tile)
            own += tile @ onehot[col:col_stop]
            theirs = tile.T @ onehot[start:stop]
            with locks[col // block]:
                sums[col:col_stop] += theirs
        with locks[start // block]:
            sums[start:stop] += own

    _for_row_blocks(n, block, work, n_threads)
    counts = np.bincount(codes, minlength=n_labels).astype(np.float64)
    rows = np.arange(n)
    intra = sums[rows, codes] / np.maximum(counts[codes] - 1, 1)
    inter = sums / counts
    inter[rows, codes] = np.inf
    nearest = inter.min(axis=1)
    denom = np.maximum(intra, nearest)
    with np.errstate(invalid="ignore", divide="ignore"):
        sil = np.where(denom > 0, (nearest - intra) / denom, 0.0)
    sil[counts[codes] <= 1] = 0.0
    return sil


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


def exact_knn(
    X: np.ndarray,
    n_neighbors: int,
    include_self: bool = True,
    n_threads: Optional[int] = None,
    block_rows: Optional[int] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean kNN (brute force): ``(distances, indices)``, nearest first, as scikit-learn's
    ``NearestNeighbors(algorithm="brute").kneighbors``; with ``include_self`` each cell is its own first
    neighbour, without it the cell is left out.

    Candidates are chosen on float32 block distances (as :func:`silhouette_samples`), with a margin, and
    re-ranked on float64 distances, so the result is exact; neighbours at equal distance are ordered by
    index. Runs on ``n_threads`` threads (default ``$OMP_NUM_THREADS``, else the usable cores), each holding
    one ``block_rows x n_cells`` float32 block (default: about 64 MB). scikit-learn's own brute kNN gives
    the same neighbours several times slower (float64 upcast, one heap per row); scib-metrics and scanpy
    would compile pynndescent for ~20 s per process and return approximate neighbours.
    """
    import threading

    distances = _SquaredDistances(X)
    n = distances.n
    k = min(n_neighbors, n - (0 if include_self else 1))
    if k < 1:
        raise ValueError(f"kNN needs at least 2 cells, got {n}")
    n_candidates = min(k + (0 if include_self else 1) + 16, n)
    dist_out = np.empty((n, k), dtype=np.float64)
    idx_out = np.empty((n, k), dtype=np.int64)

    # A row's k-th distance is at most the k-th among every ``step``-th column: that bound picks a few
    # candidates per row with one comparison pass instead of a selection over all n columns.
    step = max(1, min(8, n // (8 * n_candidates)))
    block_rows = block_rows or max(16, min(256, (1 << 24) // n))
    per_thread = threading.local()

    def work(start: int, stop: int) -> None:
        if not hasattr(per_thread, "block"):
            per_thread.block = np.empty((block_rows, n), dtype=np.float32)
        rows = np.arange(stop - start)
        block = distances.rows_to_all(slice(start, stop), out=per_thread.block[: stop - start])
        # Self is placed first (include_self) or out of reach (not include_self) before selection.
        block[rows, rows + start] = -np.inf if include_self else np.inf
        if n_candidates < n:
            bound = np.partition(block[:, ::step], n_candidates - 1, axis=1)[:, n_candidates - 1]
            flat = np.flatnonzero(block <= bound[:, None])
            # Each row's survivors, left-aligned in a padded matrix (flat 1-D indexing: much faster than 2-D).
            row_of, col_of = np.divmod(flat, n)
            per_row = np.bincount(row_of, minlength=stop - start)
            width = int(per_row.max())
            slot = np.arange(len(flat)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
            target = row_of * width + slot
            near = np.full((stop - start, width), np.inf, dtype=np.float32)
            near.ravel()[target] = block.ravel()[flat]
            near_cols = np.zeros(near.shape, dtype=np.int64)
            near_cols.ravel()[target] = col_of
            chosen = np.argpartition(near, n_candidates - 1, axis=1)[:, :n_candidates]
            candidates = np.take_along_axis(near_cols, chosen, axis=1)
        else:
            candidates = np.broadcast_to(np.arange(n), (stop - start, n))
        candidates = np.sort(candidates, axis=1)
        diff = distances.centred[candidates] - distances.centred[start:stop, None, :]
        exact = np.einsum("ijk,ijk->ij", diff, diff)
        exact[candidates == (rows + start)[:, None]] = -np.inf if include_self else np.inf
        order = np.argsort(exact, axis=1, kind="stable")[:, :k]
        idx_out[start:stop] = np.take_along_axis(candidates, order, axis=1)
        dist_out[start:stop] = np.sqrt(np.maximum(np.take_along_axis(exact, order, axis=1), 0.0))

    _for_row_blocks(n, block_rows, work, n_threads)
    return dist_out, idx_out


def neighbourhood_entropy(indices: np.ndarray, labels: Iterable) -> float:
    """Mean over cells of the label entropy among each cell's neighbours (``indices``: one row per cell,
    self included), natural log, divided by ``log(#labels)``."""
    uniques, codes = _codes(labels)
    if len(uniques) < 2:
        raise ValueError("entropy per cell needs at least 2 labels")
    neighbour_codes = codes[indices]
    k = indices.shape[1]
    freq = np.zeros((len(codes), len(uniques)), dtype=np.float64)
    for j in range(len(uniques)):
        freq[:, j] = (neighbour_codes == j).sum(axis=1) / k
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(freq > 0, freq * np.log(freq), 0.0)
    entropy = -terms.sum(axis=1) / np.log(len(uniques))
    return float(np.mean(entropy))


def entropy_per_cell(
    X: np.ndarray, labels: Iterable, n_neighbors: int = ENTROPY_N_NEIGHBORS, random_seed: int = RANDOM_SEED
) -> float:
    """czbenchmarks' ``compute_entropy_per_cell``: :func:`neighbourhood_entropy` of the labels among each
    cell's ``n_neighbors`` nearest neighbours (self included).

    The reference used an approximate HNSW index; this uses the exact neighbours, so
    ``random_seed`` (kept for the reference's signature and recorded in results) does not change it.
    """
    del random_seed  # exact kNN is deterministic
    _, indices = exact_knn(X, n_neighbors, include_self=True)
    return neighbourhood_entropy(indices, labels)


class ExactKNNTransformer:
    """The kNN graph of :func:`exact_knn` as a scanpy ``transformer`` (``sc.pp.neighbors(transformer=...)``).

    Follows scikit-learn's ``KNeighborsTransformer`` protocol for the one call scanpy makes,
    ``fit_transform`` on the cells themselves: a CSR distance matrix with ``n_neighbors`` entries per row,
    the cell itself first (scanpy's ``n_neighbors`` counts the cell). scanpy's own choice would be exact
    brute force up to 4096 cells and pynndescent above (approximate, and broken with pynndescent 0.7).
    """

    def __init__(self, n_neighbors: int = N_NEIGHBORS, n_threads: Optional[int] = None) -> None:
        self.n_neighbors = n_neighbors
        self.n_threads = n_threads

    def get_params(self, deep: bool = True) -> dict:
        return {"n_neighbors": self.n_neighbors, "n_threads": self.n_threads}

    def set_params(self, **params) -> "ExactKNNTransformer":
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def fit(self, X: np.ndarray, y: None = None) -> "ExactKNNTransformer":
        self._fitted = X
        return self

    def transform(self, X: np.ndarray):
        if X is not getattr(self, "_fitted", None):
            raise ValueError("ExactKNNTransformer gives the graph of the fitted cells only: call fit_transform(X)")
        from scipy.sparse import csr_matrix

        distances, indices = exact_knn(X, self.n_neighbors, include_self=True, n_threads=self.n_threads)
        n, k = indices.shape
        return csr_matrix((distances.ravel(), indices.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n))

    def fit_transform(self, X: np.ndarray, y: None = None):
        return self.fit(X).transform(X)


def leiden_clusters(
    embedding: np.ndarray,
    random_seed: int = RANDOM_SEED,
    n_neighbors: int = N_NEIGHBORS,
    n_iterations: int = N_ITERATIONS,
    flavor: str = FLAVOR,
    resolution: float = 1.0,
) -> np.ndarray:
    """Leiden clusters (scanpy, igraph flavour, seeded) of scanpy's UMAP-weighted graph of the exact
    ``n_neighbors`` neighbours (:class:`ExactKNNTransformer`)."""
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    adata = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(embedding.shape[0])]))
    adata.obsm["emb"] = np.asarray(embedding, dtype=np.float32)
    sc.pp.neighbors(adata, use_rep="emb", random_state=random_seed, transformer=ExactKNNTransformer(n_neighbors))
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
