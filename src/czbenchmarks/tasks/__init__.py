"""Benchmark tasks, their metrics and the baselines.

Task names (``TASK_NAMES``): ``clustering``, ``embedding``, ``label_prediction``, ``integration``
(one embedding each), ``cross_species`` (one model's embeddings of several organisms) and
``perturbation`` (predicted expression). Heavy libraries are imported inside the functions.
"""

from .constants import EMBEDDING_TASKS, MULTI_DATASET_TASK_NAMES, PERTURBATION_TASKS, TASK_NAMES
from .types import MetricResult

__all__ = ["EMBEDDING_TASKS", "MULTI_DATASET_TASK_NAMES", "PERTURBATION_TASKS", "TASK_NAMES", "MetricResult"]
