"""The task catalogue (``conf/tasks.yaml``): what each task scores and what it needs from a dataset.

The workflow routes by the same file (``lib/BenchmarkPlan.groovy``); here it answers the questions
that need the data: does this dataset's obs support the task (enough labelled classes, batches,
cells)? VALIDATE records each answer in the verdict as ``not_applicable``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

#: Where the catalogue lives in a checkout (the pipeline passes its own copy to VALIDATE).
DEFAULT_CATALOGUE = Path(__file__).resolve().parents[3] / "conf" / "tasks.yaml"


@dataclass(frozen=True)
class TaskSpec:
    """One catalogue entry."""

    name: str
    scores: str
    baselines: list[str] = field(default_factory=list)
    multi_dataset: bool = False
    needs: dict[str, Any] = field(default_factory=dict)


def load_catalogue(path: str | Path | None = None) -> dict[str, TaskSpec]:
    """Task name -> :class:`TaskSpec` from ``path`` (default: the checkout's ``conf/tasks.yaml``)."""
    import yaml

    source = Path(path) if path else DEFAULT_CATALOGUE
    doc = yaml.safe_load(source.read_text()) or {}
    return {
        name: TaskSpec(name=name, scores=str(spec.get("scores", "embedding")), baselines=list(spec.get("baselines") or []),
                       multi_dataset=bool(spec.get("multi_dataset", False)), needs=dict(spec.get("needs") or {}))
        for name, spec in (doc.get("tasks") or {}).items()
    }


def _usable_labels(values: pd.Series) -> pd.Series:
    """Labels as strings with empty and missing values dropped."""
    labels = values.dropna().astype(str)
    return labels[~labels.str.strip().isin(["", "nan", "NaN", "None", "unknown"])]


def not_applicable_reason(spec: TaskSpec, obs: pd.DataFrame, columns: Mapping[str, str]) -> str | None:
    """Why ``spec`` cannot score a dataset with this ``obs`` (``None``: it can).

    ``columns`` maps the samplesheet's column roles (``label_key``, ``batch_key``, ...) to the obs
    columns the dataset uses. Missing columns are the gate's errors, not this function's.
    """
    needs = spec.needs
    n_cells = len(obs)
    if needs.get("min_cells") and n_cells < int(needs["min_cells"]):
        return f"{spec.name} needs at least {needs['min_cells']} cells; the dataset has {n_cells}"
    label_key = columns.get("label_key") or ""
    if needs.get("min_label_classes") and label_key in obs.columns:
        counts = _usable_labels(obs[label_key]).value_counts()
        min_size = int(needs.get("min_class_size") or 1)
        classes = counts[counts >= min_size]
        if len(classes) < int(needs["min_label_classes"]):
            sized = f" with at least {min_size} cells" if min_size > 1 else ""
            return (f"{spec.name} needs {needs['min_label_classes']}+ classes{sized} in obs['{label_key}']; "
                    f"found {len(classes)} ({', '.join(f'{k}: {v}' for k, v in counts.head(5).items()) or 'no labels'})")
    batch_key = (columns.get("batch_key") or "").split(";")[0]
    if needs.get("min_batches") and batch_key in obs.columns:
        n_batches = _usable_labels(obs[batch_key]).nunique()
        if n_batches < int(needs["min_batches"]):
            return f"{spec.name} needs {needs['min_batches']}+ batches in obs['{batch_key}']; found {n_batches}"
    return None


def applicability(catalogue: Mapping[str, TaskSpec], tasks: Sequence[str], obs: pd.DataFrame,
                  columns: Mapping[str, str]) -> dict[str, str]:
    """Task -> reason, for each of ``tasks`` the dataset cannot support (the others are absent)."""
    reasons: dict[str, str] = {}
    for task in tasks:
        if task not in catalogue:
            continue
        reason = not_applicable_reason(catalogue[task], obs, columns)
        if reason:
            reasons[task] = reason
    return reasons
