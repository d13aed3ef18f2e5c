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

Both are O(n²). Above a size (the named constants below; ``bench/bench_metrics_scale.py`` measures
both paths) the metrics switch, and each metric records what it did (``method`` and its numbers, see
:func:`knn` and :func:`silhouette_label`):

* the Leiden graph uses pynndescent's approximate neighbours above :data:`KNN_EXACT_MAX_CELLS` cells, with
  ``recall_at_k`` against the exact neighbours of :data:`KNN_RECALL_SAMPLE` seeded random cells;
* ``entropy_per_cell``, a mean over cells, averages :data:`ENTROPY_SAMPLE_CELLS` seeded random cells'
  exact neighbourhoods (among all cells) above that size, with a 95% normal confidence interval;
* silhouettes above :data:`SILHOUETTE_EXACT_MAX_CELLS` cells (per label for the batch silhouette) average
  the exact silhouettes (against all cells) of :data:`SILHOUETTE_SAMPLE_CELLS` seeded random cells, with a
  95% normal confidence interval of that mean.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy as np

from .constants import ENTROPY_N_NEIGHBORS, FLAVOR, N_ITERATIONS, N_NEIGHBORS, RANDOM_SEED

#: Largest number of cells whose kNN is computed exactly (exact kNN is O(n²): at this size ~1.5 min for
#: k = 90 and ~3 min for k = 200 on 2 quiet cores, bench/README.md); above it, pynndescent's neighbours.
KNN_EXACT_MAX_CELLS = 200_000
#: Cells (seeded random) whose exact neighbours measure the approximate kNN's recall@k.
KNN_RECALL_SAMPLE = 1_000
#: Neighbours the approximate graph is built with at least (pynndescent's default); the first k are used.
APPROXIMATE_KNN_MIN_GRAPH = 30
#: Largest number of cells (per label for the batch silhouette) whose silhouette is computed over all
#: cells (O(n²): ~45 s at this size on 2 cores); above it, a seeded random sample of cells is averaged.
SILHOUETTE_EXACT_MAX_CELLS = 200_000
#: Cells (seeded random) whose exact silhouettes estimate the mean above the threshold.
SILHOUETTE_SAMPLE_CELLS = 10_000
#: Above :data:`KNN_EXACT_MAX_CELLS`, ``entropy_per_cell`` averages this many seeded random cells (exact neighbours).
ENTROPY_SAMPLE_CELLS = 10_000
#: 97.5% standard-normal quantile, for 95% confidence intervals.
_Z95 = 1.959963984540054


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

    def rows_to_all(self, rows, out: np.ndarray, block_cols: int = 8192) -> np.ndarray:
        """Squared distances of ``rows`` to every cell, into ``out``, unclipped (for ranking: residue below 0
        only occurs between near-identical cells). In column tiles, which BLAS packs into cache (one product
        against all cells runs ~1.5x slower)."""
        left = self.left[rows]
        for col in range(0, self.n, block_cols):
            cols = slice(col, min(col + block_cols, self.n))
            np.matmul(left, self.right[cols].T, out=out[:, cols])
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
    return _silhouette_from_sums(sums, codes, np.bincount(codes, minlength=n_labels))


def _silhouette_from_sums(sums: np.ndarray, codes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Silhouettes of cells from their summed distances to each label (``sums``: one row per cell, ``codes``
    their labels, ``counts`` the label sizes among all cells)."""
    counts = counts.astype(np.float64)
    rows = np.arange(len(codes))
    intra = sums[rows, codes] / np.maximum(counts[codes] - 1, 1)
    inter = sums / counts
    inter[rows, codes] = np.inf
    nearest = inter.min(axis=1)
    denom = np.maximum(intra, nearest)
    with np.errstate(invalid="ignore", divide="ignore"):
        sil = np.where(denom > 0, (nearest - intra) / denom, 0.0)
    sil[counts[codes] <= 1] = 0.0
    return sil


def silhouette_of_rows(
    X: np.ndarray, labels: Iterable, rows: np.ndarray, block: int = 256, n_threads: Optional[int] = None
) -> np.ndarray:
    """Exact silhouettes of the cells ``rows`` only, each against all cells (``len(rows) x n`` distances):
    equal to ``silhouette_samples(X, labels)[rows]``."""
    _, codes = _codes(labels)
    n_labels = int(codes.max()) + 1 if len(codes) else 0
    if n_labels < 2:
        raise ValueError(f"silhouette needs at least 2 labels, got {n_labels}")
    rows = np.asarray(rows, dtype=np.int64)
    distances = _SquaredDistances(X)
    onehot = np.zeros((distances.n, n_labels), dtype=np.float32)
    onehot[np.arange(distances.n), codes] = 1.0
    sums = np.zeros((len(rows), n_labels), dtype=np.float64)

    def work(start: int, stop: int) -> None:
        query = rows[start:stop]
        total = np.zeros((stop - start, n_labels), dtype=np.float64)
        for col in range(0, distances.n, 4 * block):
            cols = slice(col, min(col + 4 * block, distances.n))
            tile = np.maximum(distances.left[query] @ distances.right[cols].T, 0.0)
            own = (query >= cols.start) & (query < cols.stop)
            tile[np.flatnonzero(own), query[own] - cols.start] = 0.0  # self: 0, not float32 residue
            np.sqrt(tile, out=tile)
            total += tile @ onehot[cols]
        sums[start:stop] = total

    _for_row_blocks(len(rows), block, work, n_threads)
    return _silhouette_from_sums(sums, codes[rows], np.bincount(codes, minlength=n_labels))


def _sample(n: int, size: int, random_seed: int) -> np.ndarray:
    """``size`` distinct cells of ``n``, seeded, sorted."""
    return np.sort(np.random.default_rng(random_seed).choice(n, size=size, replace=False))


def _mean_silhouette(
    X: np.ndarray, labels: np.ndarray, max_exact_cells: Optional[int], sample_cells: Optional[int],
    random_seed: int,
) -> Tuple[float, float, Dict[str, Any]]:
    """(mean silhouette, its standard error (0 when exact), record) of ``labels`` in ``X``: exact up to
    ``max_exact_cells`` cells, else the mean of a seeded random sample's exact silhouettes."""
    n = len(labels)
    limit = SILHOUETTE_EXACT_MAX_CELLS if max_exact_cells is None else max_exact_cells
    if n <= limit:
        return float(np.mean(silhouette_samples(X, labels))), 0.0, {"method": "exact", "n_cells": n}
    size = min(n, SILHOUETTE_SAMPLE_CELLS if sample_cells is None else sample_cells)
    sil = silhouette_of_rows(X, labels, _sample(n, size, random_seed))
    se = float(np.std(sil, ddof=1) / np.sqrt(size) * np.sqrt(1 - size / n)) if size > 1 else 0.0
    return float(np.mean(sil)), se, {"method": "sampled", "n_cells": n, "n_sampled": size, "seed": random_seed}


def silhouette_label(
    X: np.ndarray, labels: Iterable, rescale: bool = True, random_seed: int = RANDOM_SEED,
    max_exact_cells: Optional[int] = None, sample_cells: Optional[int] = None,
    record: Optional[Dict[str, Any]] = None,
) -> float:
    """Mean silhouette width of the labels; rescaled ``(asw + 1) / 2`` as ``scib_metrics.silhouette_label``.

    Exact up to ``max_exact_cells`` (default :data:`SILHOUETTE_EXACT_MAX_CELLS`) cells; above, the mean of
    ``sample_cells`` (default :data:`SILHOUETTE_SAMPLE_CELLS`) random cells' exact silhouettes (seed
    ``random_seed``). ``record`` (a dict) receives ``method`` (``exact`` | ``sampled``), ``n_cells`` and, when
    sampled, ``n_sampled``, ``seed`` and ``ci95`` (the 95% normal interval of the estimate, on the returned
    scale).
    """
    labels = np.asarray(labels)
    asw, se, info = _mean_silhouette(X, labels, max_exact_cells, sample_cells, random_seed)
    value = (asw + 1) / 2 if rescale else asw
    if info["method"] == "sampled":
        half = _Z95 * se * (0.5 if rescale else 1.0)
        info["ci95"] = [value - half, value + half]
    if record is not None:
        record.update(info)
    return value


def silhouette_batch(
    X: np.ndarray, labels: Iterable, batch: Iterable, rescale: bool = True, random_seed: int = RANDOM_SEED,
    max_exact_cells: Optional[int] = None, sample_cells: Optional[int] = None,
    record: Optional[Dict[str, Any]] = None,
) -> float:
    """Batch ASW within each label, as ``scib_metrics.silhouette_batch`` (scIB's definition).

    Per label with 2+ batches (and fewer batches than cells): ``1 - |silhouette of batch|`` per cell,
    averaged per label, then over labels. 1 = batches well mixed. A label with more than
    ``max_exact_cells`` cells is estimated from a seeded sample as in :func:`silhouette_label`; ``record``
    then gets ``method: sampled``, the labels sampled, cells sampled and the ``ci95`` of the mean over labels.
    """
    labels = np.asarray(labels).astype(str)
    batch = np.asarray(batch).astype(str)
    X = np.asarray(X)
    limit = SILHOUETTE_EXACT_MAX_CELLS if max_exact_cells is None else max_exact_cells
    size = SILHOUETTE_SAMPLE_CELLS if sample_cells is None else sample_cells
    per_label, variances, sampled_labels, n_sampled = [], [], 0, 0
    for i, group in enumerate(np.unique(labels)):
        mask = labels == group
        n_batches = len(np.unique(batch[mask]))
        if n_batches == 1 or n_batches == int(mask.sum()):
            continue
        n_group = int(mask.sum())
        if n_group <= limit:
            sil = np.abs(silhouette_samples(X[mask], batch[mask]))
            variances.append(0.0)
        else:
            take = min(n_group, size)
            sil = np.abs(silhouette_of_rows(X[mask], batch[mask], _sample(n_group, take, random_seed + i)))
            variances.append(float(np.var(sil, ddof=1) / take * (1 - take / n_group)))
            sampled_labels += 1
            n_sampled += take
        per_label.append(float(np.mean(1 - sil if rescale else sil)))
    if not per_label:
        raise ValueError("batch silhouette undefined: no label has cells from two or more batches")
    value = float(np.mean(per_label))
    if record is not None:
        record.update({"method": "sampled" if sampled_labels else "exact", "n_cells": int(len(labels))})
        if sampled_labels:
            half = _Z95 * float(np.sqrt(np.sum(variances))) / len(per_label)
            record.update({"n_sampled": n_sampled, "labels_sampled": sampled_labels, "seed": random_seed,
                           "ci95": [value - half, value + half]})
    return value


def exact_knn(
    X: np.ndarray,
    n_neighbors: int,
    include_self: bool = True,
    n_threads: Optional[int] = None,
    block_rows: Optional[int] = None,
    rows: Optional[np.ndarray] = None,
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

    ``rows``: the neighbours of these cells only (among all cells), one output row each.
    """
    import threading

    distances = _SquaredDistances(X)
    n = distances.n
    n_query = n if rows is None else len(rows)
    k = min(n_neighbors, n - (0 if include_self else 1))
    if k < 1:
        raise ValueError(f"kNN needs at least 2 cells, got {n}")
    n_candidates = min(k + (0 if include_self else 1) + 16, n)
    dist_out = np.empty((n_query, k), dtype=np.float64)
    idx_out = np.empty((n_query, k), dtype=np.int64)

    # A row's k-th distance is at most the k-th among every ``step``-th column: that bound picks a few
    # candidates per row with one comparison pass instead of a selection over all n columns.
    step = max(1, min(8, n // (8 * n_candidates)))
    block_rows = block_rows or max(16, min(256, (1 << 24) // n))
    per_thread = threading.local()

    def work(start: int, stop: int) -> None:
        if not hasattr(per_thread, "block"):
            per_thread.block = np.empty((block_rows, n), dtype=np.float32)
        local = np.arange(stop - start)
        query = np.arange(start, stop) if rows is None else np.asarray(rows[start:stop], dtype=np.int64)
        block = distances.rows_to_all(slice(start, stop) if rows is None else query,
                                      out=per_thread.block[: stop - start])
        # Self is placed first (include_self) or out of reach (not include_self) before selection.
        block[local, query] = -np.inf if include_self else np.inf
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
        diff = distances.centred[candidates] - distances.centred[query][:, None, :]
        exact = np.einsum("ijk,ijk->ij", diff, diff)
        exact[candidates == query[:, None]] = -np.inf if include_self else np.inf
        order = np.argsort(exact, axis=1, kind="stable")[:, :k]
        idx_out[start:stop] = np.take_along_axis(candidates, order, axis=1)
        dist_out[start:stop] = np.sqrt(np.maximum(np.take_along_axis(exact, order, axis=1), 0.0))

    _for_row_blocks(n_query, block_rows, work, n_threads)
    return dist_out, idx_out


def approximate_knn(
    X: np.ndarray, n_neighbors: int, include_self: bool = True, random_seed: int = RANDOM_SEED,
    n_threads: Optional[int] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Approximate Euclidean kNN by pynndescent (NN-descent on random-projection trees, its defaults),
    ``(distances, indices)`` nearest first, shaped as :func:`exact_knn`'s. With ``include_self`` every cell is
    its own first neighbour (placed there when the search left it out)."""
    from pynndescent import NNDescent

    X = np.ascontiguousarray(X, dtype=np.float32)
    n = X.shape[0]
    k = min(n_neighbors, n - (0 if include_self else 1))
    # The graph is built with at least pynndescent's default 30 neighbours: a 15-NN graph built as such
    # recalls only ~0.89 of the true neighbours on 50-dim data (bench/bench_metrics_scale.py), one of 30 more.
    index = NNDescent(X, n_neighbors=max(k + (0 if include_self else 1), APPROXIMATE_KNN_MIN_GRAPH),
                      metric="euclidean", random_state=random_seed, n_jobs=_n_threads(n_threads), low_memory=True)
    indices, distances = index.neighbor_graph
    indices = np.asarray(indices, dtype=np.int64)
    distances = np.asarray(distances, dtype=np.float64)
    # Most rows come back as [self, others...]: taken as they are; the rest are rebuilt one by one.
    first = 0 if include_self else 1
    idx_out = np.ascontiguousarray(indices[:, first:first + k])
    dist_out = np.ascontiguousarray(distances[:, first:first + k])
    regular = (indices[:, 0] == np.arange(n)) & (indices >= 0).all(axis=1)
    for i in np.flatnonzero(~regular):  # drop self (and pynndescent's -1 padding), then put self first if asked
        keep = (indices[i] != i) & (indices[i] >= 0)
        others, others_d = indices[i][keep], distances[i][keep]
        if include_self:
            others, others_d = np.concatenate([[i], others]), np.concatenate([[0.0], others_d])
        m = min(k, len(others))
        idx_out[i, :m], dist_out[i, :m] = others[:m], others_d[:m]
        idx_out[i, m:], dist_out[i, m:] = (others[-1] if m else i), np.inf
    return dist_out, idx_out


def knn_recall(
    X: np.ndarray, indices: np.ndarray, include_self: bool = True, sample_cells: Optional[int] = None,
    random_seed: int = RANDOM_SEED,
) -> Tuple[float, int]:
    """(recall@k, cells sampled): the mean share of a seeded random sample's exact ``k`` neighbours
    (:func:`exact_knn`) that ``indices`` (one row per cell, ``k`` columns) found."""
    n, k = indices.shape
    size = min(n, KNN_RECALL_SAMPLE if sample_cells is None else sample_cells)
    rows = _sample(n, size, random_seed)
    _, exact = exact_knn(X, k, include_self=include_self, rows=rows)
    found = [len(np.intersect1d(exact[j], indices[row], assume_unique=True)) for j, row in enumerate(rows)]
    return float(np.sum(found) / (size * k)), size


def knn(
    X: np.ndarray, n_neighbors: int, include_self: bool = True, random_seed: int = RANDOM_SEED,
    max_exact_cells: Optional[int] = None, record: Optional[Dict[str, Any]] = None,
    n_threads: Optional[int] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Euclidean kNN, ``(distances, indices)``: :func:`exact_knn` up to ``max_exact_cells`` cells (default
    :data:`KNN_EXACT_MAX_CELLS`), :func:`approximate_knn` above. ``record`` (a dict) receives ``method``
    (``exact`` | ``approximate``), ``n_cells``, ``k`` and, when approximate, ``library``, ``seed``,
    ``recall_at_k`` and ``recall_sample`` (:func:`knn_recall`)."""
    n = int(np.shape(X)[0])
    limit = KNN_EXACT_MAX_CELLS if max_exact_cells is None else max_exact_cells
    if n <= limit:
        dist, idx = exact_knn(X, n_neighbors, include_self=include_self, n_threads=n_threads)
        info: Dict[str, Any] = {"method": "exact", "n_cells": n, "k": int(idx.shape[1])}
    else:
        from importlib.metadata import version

        dist, idx = approximate_knn(X, n_neighbors, include_self, random_seed, n_threads)
        recall, sampled = knn_recall(X, idx, include_self, random_seed=random_seed)
        info = {"method": "approximate", "n_cells": n, "k": int(idx.shape[1]),
                "library": f"pynndescent {version('pynndescent')}", "seed": random_seed,
                "recall_at_k": recall, "recall_sample": sampled}
    if record is not None:
        record.update(info)
    return dist, idx


def _entropy_codes(labels: Iterable) -> Tuple[int, np.ndarray]:
    """(number of labels, integer code per cell) for the entropy metrics, which need 2+ labels."""
    uniques, codes = _codes(labels)
    if len(uniques) < 2:
        raise ValueError("entropy per cell needs at least 2 labels")
    return len(uniques), codes


def _neighbourhood_entropies(indices: np.ndarray, codes: np.ndarray, n_labels: int) -> np.ndarray:
    """Per row of ``indices``: the label entropy among those neighbours, divided by ``log(n_labels)``."""
    neighbour_codes = codes[indices]
    k = indices.shape[1]
    freq = np.zeros((indices.shape[0], n_labels), dtype=np.float64)
    for j in range(n_labels):
        freq[:, j] = (neighbour_codes == j).sum(axis=1) / k
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(freq > 0, freq * np.log(freq), 0.0)
    return -terms.sum(axis=1) / np.log(n_labels)


def neighbourhood_entropy(indices: np.ndarray, labels: Iterable) -> float:
    """Mean over cells of the label entropy among each cell's neighbours (``indices``: one row per cell,
    self included), natural log, divided by ``log(#labels)``."""
    n_labels, codes = _entropy_codes(labels)
    return float(np.mean(_neighbourhood_entropies(indices, codes, n_labels)))


def entropy_per_cell(
    X: np.ndarray, labels: Iterable, n_neighbors: int = ENTROPY_N_NEIGHBORS, random_seed: int = RANDOM_SEED,
    max_exact_cells: Optional[int] = None, record: Optional[Dict[str, Any]] = None,
    sample_cells: Optional[int] = None,
) -> float:
    """czbenchmarks' ``compute_entropy_per_cell``: :func:`neighbourhood_entropy` of the labels among each
    cell's ``n_neighbors`` nearest neighbours (self included).

    The reference used an approximate HNSW index. Up to ``max_exact_cells`` (default
    :data:`KNN_EXACT_MAX_CELLS`) every cell's exact neighbours are used (``random_seed`` does not change the
    result). Above, the value is a mean over cells, so it is estimated from ``sample_cells`` (default
    :data:`ENTROPY_SAMPLE_CELLS`) seeded random cells, each with its exact neighbours among all cells: each
    sampled cell's term is the one the full computation has, where pynndescent's k = 200 graph would cost
    ~2,100 CPU-s at 10⁶ cells and recall 0.9996 (``bench/bench_metrics_scale.py``). ``record`` receives
    ``method`` (``exact`` | ``sampled``), ``n_cells``, ``k`` and, when sampled, ``n_sampled``, ``seed`` and
    ``ci95`` (the 95% normal interval of the mean, finite-population corrected).
    """
    n_labels, codes = _entropy_codes(labels)
    n = len(codes)
    limit = KNN_EXACT_MAX_CELLS if max_exact_cells is None else max_exact_cells
    if n <= limit:
        _, indices = knn(X, n_neighbors, include_self=True, random_seed=random_seed, max_exact_cells=limit,
                         record=record)
        return float(np.mean(_neighbourhood_entropies(indices, codes, n_labels)))
    size = min(n, ENTROPY_SAMPLE_CELLS if sample_cells is None else sample_cells)
    _, indices = exact_knn(X, n_neighbors, include_self=True, rows=_sample(n, size, random_seed))
    terms = _neighbourhood_entropies(indices, codes, n_labels)
    value = float(np.mean(terms))
    if record is not None:
        se = float(np.std(terms, ddof=1) / np.sqrt(size) * np.sqrt(1 - size / n)) if size > 1 else 0.0
        record.update({"method": "sampled", "n_cells": n, "k": int(indices.shape[1]), "n_sampled": size,
                       "seed": random_seed, "ci95": [value - _Z95 * se, value + _Z95 * se]})
    return value


class ExactKNNTransformer:
    """The kNN graph of :func:`knn` as a scanpy ``transformer`` (``sc.pp.neighbors(transformer=...)``):
    exact up to ``max_exact_cells`` (default :data:`KNN_EXACT_MAX_CELLS`), pynndescent above; what was
    done goes into ``record`` (a dict) when given.

    Follows scikit-learn's ``KNeighborsTransformer`` protocol for the one call scanpy makes,
    ``fit_transform`` on the cells themselves: a CSR distance matrix with ``n_neighbors`` entries per row,
    the cell itself first (scanpy's ``n_neighbors`` counts the cell). scanpy's own choice would be exact
    brute force up to 4096 cells and pynndescent above (approximate, and broken with pynndescent 0.7).
    """

    def __init__(self, n_neighbors: int = N_NEIGHBORS, n_threads: Optional[int] = None,
                 max_exact_cells: Optional[int] = None, random_seed: int = RANDOM_SEED,
                 record: Optional[Dict[str, Any]] = None) -> None:
        self.n_neighbors = n_neighbors
        self.n_threads = n_threads
        self.max_exact_cells = max_exact_cells
        self.random_seed = random_seed
        self.record = record

    def get_params(self, deep: bool = True) -> dict:
        return {"n_neighbors": self.n_neighbors, "n_threads": self.n_threads,
                "max_exact_cells": self.max_exact_cells, "random_seed": self.random_seed, "record": self.record}

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

        distances, indices = knn(X, self.n_neighbors, include_self=True, random_seed=self.random_seed,
                                 max_exact_cells=self.max_exact_cells, record=self.record,
                                 n_threads=self.n_threads)
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
    max_exact_cells: Optional[int] = None,
    record: Optional[Dict[str, Any]] = None,
) -> np.ndarray:
    """Leiden clusters (scanpy, igraph flavour, seeded) of scanpy's UMAP-weighted graph of the
    ``n_neighbors`` neighbours of :func:`knn` (:class:`ExactKNNTransformer`; exact up to
    ``max_exact_cells``), the kNN's method in ``record``."""
    return leiden_partitions(embedding, [random_seed], n_neighbors, n_iterations, flavor, resolution,
                             max_exact_cells, record)[0]


def leiden_partitions(
    embedding: np.ndarray,
    seeds: Sequence[int],
    n_neighbors: int = N_NEIGHBORS,
    n_iterations: int = N_ITERATIONS,
    flavor: str = FLAVOR,
    resolution: float = 1.0,
    max_exact_cells: Optional[int] = None,
    record: Optional[Dict[str, Any]] = None,
) -> List[np.ndarray]:
    """:func:`leiden_clusters` for each of ``seeds`` on one graph: the kNN graph is built once (with the
    first seed, which only matters above ``max_exact_cells``), Leiden is run once per seed."""
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    adata = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(embedding.shape[0])]))
    adata.obsm["emb"] = np.asarray(embedding, dtype=np.float32)
    graph = ExactKNNTransformer(n_neighbors, max_exact_cells=max_exact_cells, random_seed=seeds[0], record=record)
    sc.pp.neighbors(adata, use_rep="emb", random_state=seeds[0], transformer=graph)
    partitions = []
    for seed in seeds:
        sc.tl.leiden(
            adata, flavor=flavor, n_iterations=n_iterations, resolution=resolution,
            random_state=seed, key_added="leiden", directed=False,
        )
        partitions.append(adata.obs["leiden"].astype(str).to_numpy())
    return partitions


def jaccard(a: Set, b: Set) -> float:
    """``|a & b| / |a | b|`` (0 when both are empty)."""
    a, b = set(a), set(b)
    union = a | b
    return len(a & b) / len(union) if union else 0.0
