"""Data checks shared by ``SingleCellDataset._validate`` and the pipeline's VALIDATE stage.

They work on in-memory and on backed (``backed="r"``) AnnData alike, reading at most
``max_cells`` rows of X, so that validating a million-cell file costs a few reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np
import pandas as pd

from .types import Organism

ENSEMBL_ID_COLUMN = "ensembl_id"
PERTURBATION_SPLITS = frozenset({"train", "test", "val"})


@dataclass(frozen=True)
class GeneIds:
    """Where a dataset's organism-prefixed gene IDs live: ``var_names`` or a var column."""

    source: Optional[str]  # "var_names", "var['ensembl_id']" or None when neither fits
    ids: Optional[pd.Index]


def find_gene_ids(var_names: pd.Index, var: pd.DataFrame, organism: Organism) -> GeneIds:
    """Locate gene IDs carrying the organism's prefix without touching the AnnData.

    The reference rewrote ``adata.var_names`` in place when it fell back to
    ``var['ensembl_id']``; here the caller decides what to do with the answer.
    """
    prefix = organism.prefix
    names = pd.Index(var_names.astype(str))
    if names.str.startswith(prefix).all():
        return GeneIds("var_names", names)
    if ENSEMBL_ID_COLUMN in var.columns:
        column = pd.Index(var[ENSEMBL_ID_COLUMN].astype(str))
        if column.str.startswith(prefix).all():
            return GeneIds(f"var['{ENSEMBL_ID_COLUMN}']", column)
    return GeneIds(None, None)


def gene_name_error(organism: Organism) -> str:
    return (
        f"Dataset does not contain valid gene names. Gene names must start with {organism.prefix} "
        f"and be stored in either adata.var_names or adata.var['{ENSEMBL_ID_COLUMN}']."
    )


def sample_rows(matrix: Any, max_cells: int = 2000) -> Tuple[np.ndarray, int]:
    """Return the stored values of up to ``max_cells`` evenly spread rows of X, and how many rows were read.

    Works on dense arrays, scipy sparse matrices and anndata's backed sparse datasets.
    """
    n_rows = matrix.shape[0]
    if n_rows == 0:
        return np.empty(0, dtype=np.float64), 0
    count = min(n_rows, max_cells)
    # Contiguous blocks read far faster than scattered rows from HDF5.
    n_blocks = min(count, 8)
    block = max(1, count // n_blocks)
    starts = np.linspace(0, max(n_rows - block, 0), n_blocks).astype(int)
    values = []
    rows_read = 0
    for start in starts:
        part = matrix[int(start): int(start) + block]
        rows_read += part.shape[0]
        data = part.data if hasattr(part, "data") and not isinstance(part, np.ndarray) else np.asarray(part)
        values.append(np.asarray(data).ravel())
    return np.concatenate(values), rows_read


def count_problems(values: np.ndarray) -> list[str]:
    """Why these matrix values are not raw counts (empty list: they look like raw counts)."""
    problems = []
    if values.size == 0:
        return problems
    values = values.astype(np.float64, copy=False)
    if np.isnan(values).any():
        problems.append("X contains NaN values")
    finite = values[np.isfinite(values)]
    if finite.size and (finite < 0).any():
        problems.append("X contains negative values")
    if finite.size and not np.all(np.mod(finite, 1) == 0):
        problems.append("X contains non-integer values (log-normalised or scaled data, not raw counts)")
    return problems


def perturbation_condition_problems(conditions: pd.Series) -> list[str]:
    """Conditions that are neither ``ctrl``, ``G+ctrl`` nor ``G1+G2``."""
    bad = []
    for condition in pd.unique(conditions.astype(str)):
        if condition == "ctrl":
            continue
        parts = condition.split("+")
        if len(parts) != 2 or not all(parts):
            bad.append(condition)
    if not bad:
        return []
    shown = ", ".join(sorted(bad)[:5])
    return [
        f"Invalid perturbation condition format: {shown}. Must be 'ctrl', '{{gene}}+ctrl', or '{{gene1}}+{{gene2}}'"
    ]


def split_problems(splits: pd.Series) -> list[str]:
    invalid = sorted(set(pd.unique(splits.astype(str))) - PERTURBATION_SPLITS)
    return [f"Invalid split value(s): {invalid}"] if invalid else []
