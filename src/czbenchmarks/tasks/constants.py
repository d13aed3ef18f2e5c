"""Task parameters, as in czbenchmarks' ``tasks/constants.py`` (v0.10)."""

from __future__ import annotations

from ..constants import RANDOM_SEED

__all__ = [
    "RANDOM_SEED", "N_FOLDS", "MIN_CLASS_SIZE", "FLAVOR", "KEY_ADDED", "OBSM_KEY", "N_ITERATIONS",
    "N_NEIGHBORS", "ENTROPY_N_NEIGHBORS", "PERTURBATION_TOP_N", "CONTROL_CONDITION",
    "EMBEDDING_TASKS", "PERTURBATION_TASKS", "MULTI_DATASET_TASK_NAMES", "TASK_NAMES",
]

N_FOLDS = 5
MIN_CLASS_SIZE = 10
FLAVOR = "igraph"
KEY_ADDED = "leiden"
OBSM_KEY = "emb"
N_ITERATIONS = 2
#: scanpy's default neighbourhood size for the Leiden graph.
N_NEIGHBORS = 15
#: Neighbours (self included) per cell for ``entropy_per_cell`` (the reference's HNSW k).
ENTROPY_N_NEIGHBORS = 200
#: Top-N differentially expressed genes scored by the perturbation task.
PERTURBATION_TOP_N = (20, 100)
CONTROL_CONDITION = "ctrl"

#: Tasks that score one cell embedding of one dataset.
EMBEDDING_TASKS = ("clustering", "embedding", "label_prediction", "integration")
#: Tasks that score predicted expression of a perturbation dataset.
PERTURBATION_TASKS = ("perturbation",)
#: Tasks that join one model's outputs over several datasets.
MULTI_DATASET_TASK_NAMES = frozenset({"cross_species"})
TASK_NAMES = (*EMBEDDING_TASKS, "cross_species", *PERTURBATION_TASKS)
