"""Tasks that score a cell embedding against the dataset's labels.

Parameters and metric names follow czbenchmarks (v0.10): clustering = Leiden (igraph flavour,
2 iterations, resolution 1) on a 15-NN graph of the embedding, scored by ARI and NMI;
embedding = silhouette of the labels, rescaled to [0, 1] as scib-metrics' ``silhouette_label``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import pandas as pd

from ..constants import RANDOM_SEED


@dataclass
class MetricResult:
    """One metric value; ``params`` tell apart variants of the same metric (e.g. per classifier)."""

    metric_type: str
    value: float
    params: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def leiden_clusters(
    embedding: np.ndarray,
    seed: int = RANDOM_SEED,
    n_neighbors: int = 15,
    n_iterations: int = 2,
    resolution: float = 1.0,
) -> np.ndarray:
    """Leiden clusters of a kNN graph of the embedding (scanpy, seeded)."""
    import anndata as ad
    import scanpy as sc

    adata = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(embedding.shape[0])]))
    adata.obsm["emb"] = embedding
    sc.pp.neighbors(adata, use_rep="emb", n_neighbors=n_neighbors, random_state=seed)
    sc.tl.leiden(
        adata, flavor="igraph", n_iterations=n_iterations, resolution=resolution,
        random_state=seed, key_added="leiden", directed=False,
    )
    return adata.obs["leiden"].to_numpy()


def clustering_task(embedding: np.ndarray, labels: np.ndarray, seed: int = RANDOM_SEED, **_: Any) -> List[MetricResult]:
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    clusters = leiden_clusters(embedding, seed=seed)
    return [
        MetricResult("adjusted_rand_index", float(adjusted_rand_score(labels, clusters))),
        MetricResult("normalized_mutual_info", float(normalized_mutual_info_score(labels, clusters))),
    ]


def silhouette_label(embedding: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette width of the labels rescaled to [0, 1]: (asw + 1) / 2, as scib-metrics."""
    from sklearn.metrics import silhouette_samples

    return float((np.mean(silhouette_samples(embedding, labels)) + 1) / 2)


def embedding_task(embedding: np.ndarray, labels: np.ndarray, **_: Any) -> List[MetricResult]:
    return [MetricResult("silhouette_score", silhouette_label(embedding, labels))]


TASKS: Dict[str, Callable[..., List[MetricResult]]] = {
    "clustering": clustering_task,
    "embedding": embedding_task,
}


def run_embedding_task(
    task: str,
    obs: pd.DataFrame,
    embedding: np.ndarray,
    label_key: str,
    seed: int = RANDOM_SEED,
    embedded: Optional[np.ndarray] = None,
) -> Dict[str, Any]:
    """Score one embedding with one task; cells the model could not embed are left out and counted."""
    if task not in TASKS:
        raise ValueError(f"unknown task '{task}'; known tasks: {', '.join(sorted(TASKS))}")
    if label_key not in obs.columns:
        raise ValueError(f"label column '{label_key}' not found in obs")
    if embedded is None:
        embedded = ~np.isnan(embedding).any(axis=1)
    labels = obs[label_key].astype(str).to_numpy()
    keep = np.asarray(embedded, dtype=bool) & ~pd.isna(obs[label_key]).to_numpy()
    if keep.sum() < 3:
        raise ValueError(f"only {int(keep.sum())} labelled, embedded cells: too few to score")
    metrics = TASKS[task](embedding[keep], labels[keep], seed=seed)
    return {
        "task": task,
        "seed": seed,
        "params": {"label_key": label_key},
        "n_cells": int(len(obs)),
        "n_cells_scored": int(keep.sum()),
        "metrics": [m.to_dict() for m in metrics],
    }
