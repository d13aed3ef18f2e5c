"""Tasks that score cell embeddings against the dataset's labels (czbenchmarks v0.10 parameters).

* ``clustering``: Leiden (igraph flavour, 2 iterations, resolution 1, seeded) on a 15-NN graph of the
  embedding; ``adjusted_rand_index``, ``normalized_mutual_info`` (scikit-learn).
* ``embedding``: ``silhouette_score`` = scib-metrics' ``silhouette_label`` (rescaled to [0, 1]).
* ``label_prediction``: see :mod:`.label_prediction`.
* ``integration``: ``entropy_per_cell`` of the batch labels, ``batch_silhouette`` (scib-metrics'
  ``silhouette_batch`` of the batches within each cell label).
* ``cross_species``: the embeddings of several datasets of different organisms made by one model,
  stacked; ``entropy_per_cell`` of the species, ``batch_silhouette`` with species as batch.

Every task takes ``seeds`` (default: ``[random_seed]``) and repeats its seed-dependent parts for each
(:mod:`.seeds`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from .constants import RANDOM_SEED
from .label_prediction import label_prediction_task
from .metrics import entropy_per_cell, leiden_clusters, leiden_partitions, silhouette_batch, silhouette_label
from .seeds import combine_seeds, over_seeds
from .types import MetricResult, TaskNotApplicable


@dataclass
class ComputedMetric(MetricResult):
    """A metric with how it was computed: ``computation`` is written next to ``params`` as the metric
    entry's ``computation`` (``method`` ``exact`` | ``approximate`` | ``sampled`` and its numbers, see
    :func:`.metrics.knn` and :func:`.metrics.silhouette_label`). ``params`` stay the reference's, so
    results group by metric and params as before."""

    computation: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        out = super().to_dict()
        if self.computation:
            out["computation"] = dict(self.computation)
        return out

__all__ = [
    "ComputedMetric", "MetricResult", "TASKS", "clustering_task", "embedding_task", "integration_task", "label_prediction_task",
    "cross_species_task", "run_embedding_task", "run_cross_species_task", "leiden_clusters", "silhouette_label",
]


def _seeds(random_seed: int, seeds: Optional[Sequence[int]]) -> List[int]:
    return list(seeds) if seeds else [random_seed]


def _not_exact(metrics: List[MetricResult]) -> bool:
    """Whether a metric was estimated (sampled cells, approximate kNN): then it depends on the seed."""
    return any(getattr(m, "computation", {}).get("method", "exact") != "exact" for m in metrics)


def clustering_task(embedding: np.ndarray, labels: np.ndarray, random_seed: int = RANDOM_SEED,
                    seeds: Optional[Sequence[int]] = None, **_: Any) -> List[MetricResult]:
    """ARI and NMI between the labels and Leiden clusters of the embedding (one Leiden run per seed on one
    kNN graph)."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    graph: Dict[str, Any] = {}
    partitions = leiden_partitions(embedding, _seeds(random_seed, seeds), record=graph)
    return combine_seeds([[  # both scores rest on the kNN graph: its method is theirs
        ComputedMetric("adjusted_rand_index", adjusted_rand_score(labels, clusters), computation=graph),
        ComputedMetric("normalized_mutual_info", normalized_mutual_info_score(labels, clusters), computation=graph),
    ] for clusters in partitions])


def embedding_task(embedding: np.ndarray, labels: np.ndarray, random_seed: int = RANDOM_SEED,
                   seeds: Optional[Sequence[int]] = None, **_: Any) -> List[MetricResult]:
    """Silhouette of the labels in the embedding, rescaled to [0, 1] (repeated per seed only when sampled)."""
    def run(seed: int) -> List[MetricResult]:
        record: Dict[str, Any] = {}
        value = silhouette_label(embedding, labels, random_seed=seed, record=record)
        return [ComputedMetric("silhouette_score", value, computation=record)]

    return over_seeds(run, _seeds(random_seed, seeds), _not_exact)


def _mixing_metrics(embedding: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                    random_seed: int, seeds: Optional[Sequence[int]] = None) -> List[MetricResult]:
    """``entropy_per_cell`` of ``groups`` among neighbours and ``batch_silhouette`` of ``groups`` within labels
    (each repeated per seed only when estimated)."""
    def entropy(seed: int) -> List[MetricResult]:
        record: Dict[str, Any] = {}
        value = entropy_per_cell(embedding, groups, random_seed=seed, record=record)
        return [ComputedMetric("entropy_per_cell", value, computation=record)]

    def asw(seed: int) -> List[MetricResult]:
        record: Dict[str, Any] = {}
        value = silhouette_batch(embedding, labels, groups, random_seed=seed, record=record)
        return [ComputedMetric("batch_silhouette", value, computation=record)]

    chosen = _seeds(random_seed, seeds)
    return over_seeds(entropy, chosen, _not_exact) + over_seeds(asw, chosen, _not_exact)


def integration_task(
    embedding: np.ndarray, labels: np.ndarray, batch: Optional[np.ndarray] = None,
    random_seed: int = RANDOM_SEED, seeds: Optional[Sequence[int]] = None, **_: Any,
) -> List[MetricResult]:
    """Batch mixing: entropy of batches among each cell's neighbours; batch ASW within labels."""
    if batch is None:
        raise ValueError("the integration task needs a batch column (samplesheet column batch_key)")
    return _mixing_metrics(embedding, labels, batch, random_seed, seeds)


def cross_species_task(
    embeddings: Sequence[np.ndarray], labels: Sequence[np.ndarray], organisms: Sequence[str],
    random_seed: int = RANDOM_SEED, seeds: Optional[Sequence[int]] = None,
) -> List[MetricResult]:
    """Stack the embeddings of several organisms; species mixing (entropy) and species ASW within labels."""
    dims = {e.shape[1] for e in embeddings}
    if len(dims) != 1:
        raise ValueError(f"cross-species needs embeddings of one width; got widths {sorted(dims)}")
    if len(set(organisms)) < 2:
        raise ValueError(f"cross-species needs datasets of 2+ organisms; got {sorted(set(organisms))}")
    stacked = np.vstack(embeddings)
    all_labels = np.concatenate([np.asarray(lab).astype(str) for lab in labels])
    species = np.concatenate([[org] * len(e) for e, org in zip(embeddings, organisms)])
    return _mixing_metrics(stacked, all_labels, species, random_seed, seeds)


TASKS: Dict[str, Callable[..., List[MetricResult]]] = {
    "clustering": clustering_task,
    "embedding": embedding_task,
    "label_prediction": label_prediction_task,
    "integration": integration_task,
}


def _scored_cells(obs: pd.DataFrame, embedding: np.ndarray, label_key: str, embedded: Optional[np.ndarray],
                  batch_key: str = "") -> np.ndarray:
    """Cells that were embedded and have a label (and a batch when asked)."""
    for key in filter(None, (label_key, batch_key)):
        if key not in obs.columns:
            raise ValueError(f"column '{key}' not found in obs (columns: {', '.join(map(str, obs.columns))})")
    if embedded is None:
        embedded = ~np.isnan(embedding).any(axis=1)
    keep = np.asarray(embedded, dtype=bool) & ~pd.isna(obs[label_key]).to_numpy()
    if batch_key:
        keep &= ~pd.isna(obs[batch_key]).to_numpy()
    return keep


def run_embedding_task(
    task: str,
    obs: pd.DataFrame,
    embedding: np.ndarray,
    label_key: str,
    seed: int = RANDOM_SEED,
    embedded: Optional[np.ndarray] = None,
    batch_key: str = "",
    seeds: Optional[Sequence[int]] = None,
) -> Dict[str, Any]:
    """Score one embedding with one task; cells the model could not embed are left out and counted.
    ``seeds`` (default ``[seed]``): the seeds the task's seed-dependent parts run with."""
    if task not in TASKS:
        raise ValueError(f"unknown embedding task '{task}'; known tasks: {', '.join(sorted(TASKS))}")
    if task == "integration" and not batch_key:
        raise ValueError("the integration task needs a batch column: set batch_key in the samplesheet")
    batch_key = batch_key if task == "integration" else ""
    keep = _scored_cells(obs, embedding, label_key, embedded, batch_key)
    if keep.sum() < 3:
        raise ValueError(f"only {int(keep.sum())} labelled, embedded cells: too few to score")
    labels = obs[label_key].astype(str).to_numpy()[keep]
    batch = obs[batch_key].astype(str).to_numpy()[keep] if batch_key else None
    # A sparse raw-expression X is not copied when every cell is scored.
    scored = embedding if keep.all() else embedding[keep]
    metrics = TASKS[task](scored, labels, batch=batch, random_seed=seed, seeds=seeds)
    params: Dict[str, Any] = {"label_key": label_key}
    if batch_key:
        params["batch_key"] = batch_key
    return {
        "task": task,
        "seed": seed,
        "params": params,
        "n_cells": int(len(obs)),
        "n_cells_scored": int(keep.sum()),
        "metrics": [m.to_dict() for m in metrics],
    }


def run_cross_species_task(
    parts: Sequence[Dict[str, Any]], label_key: str, seed: int = RANDOM_SEED, seeds: Optional[Sequence[int]] = None,
) -> Dict[str, Any]:
    """Score ``parts`` (dicts with ``obs``, ``embedding``, ``organism``, ``dataset`` and optional ``embedded``)."""
    embeddings, labels, organisms = [], [], []
    n_cells = 0
    for part in parts:
        obs, emb = part["obs"], part["embedding"]
        n_cells += len(obs)
        try:
            keep = _scored_cells(obs, emb, label_key, part.get("embedded"))
        except ValueError as err:
            raise ValueError(f"dataset '{part['dataset']}': {err}") from None
        embeddings.append(emb[keep])
        labels.append(obs[label_key].astype(str).to_numpy()[keep])
        organisms.append(str(part["organism"]))
    shared = set.intersection(*(set(map(str, part_labels)) for part_labels in labels)) if labels else set()
    if len(shared) < 2:
        raise TaskNotApplicable(
            f"cross-species needs the label column harmonised across the group: obs['{label_key}'] shares "
            f"{len(shared)} label(s) across {', '.join(str(p['dataset']) for p in parts)} (needs 2+)"
            + (f": {sorted(shared)}" if shared else ""))
    metrics = cross_species_task(embeddings, labels, organisms, random_seed=seed, seeds=seeds)
    return {
        "task": "cross_species",
        "seed": seed,
        "params": {"label_key": label_key, "organisms": sorted(set(organisms)), "n_shared_labels": len(shared)},
        "n_cells": n_cells,
        "n_cells_scored": int(sum(len(e) for e in embeddings)),
        "metrics": [m.to_dict() for m in metrics],
    }
