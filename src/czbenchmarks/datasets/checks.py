"""Data checks shared by ``SingleCellDataset._validate`` and the pipeline's VALIDATE stage.

They work on in-memory and on backed (``backed="r"``) AnnData alike, reading at most
``max_cells`` rows of X, so that validating a million-cell file costs a few reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

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
    """The reference's message for a dataset without organism-prefixed gene IDs."""
    return (
        f"Dataset does not contain valid gene names. Gene names must start with {organism.prefix} "
        f"and be stored in either adata.var_names or adata.var['{ENSEMBL_ID_COLUMN}']."
    )


def gene_prefix_detail(var_names: pd.Index, var: pd.DataFrame, organism: Organism) -> str:
    """A short example of the offending gene names, e.g. ``700 of 700 var_names lack 'ENSG', e.g. 'CD3E'``."""
    prefix = organism.prefix
    names = pd.Index(var_names.astype(str))
    bad = names[~names.str.startswith(prefix)]
    detail = f"{len(bad)} of {len(names)} var_names lack '{prefix}'"
    if len(bad):
        detail += f", e.g. {bad[0]!r}"
    if ENSEMBL_ID_COLUMN in var.columns:
        column = pd.Index(var[ENSEMBL_ID_COLUMN].astype(str))
        bad_column = column[~column.str.startswith(prefix)]
        detail += f"; var['{ENSEMBL_ID_COLUMN}'] has {len(bad_column)} without it"
        if len(bad_column):
            detail += f", e.g. {bad_column[0]!r}"
    else:
        detail += f"; no var['{ENSEMBL_ID_COLUMN}'] column"
    return detail


def sample_rows(matrix: Any, max_cells: int = 2000) -> Tuple[np.ndarray, int]:
    """Return the stored values of up to ``max_cells`` evenly spread rows of X, and how many rows were read.

    Works on dense arrays, scipy sparse matrices and anndata's backed sparse datasets.
    """
    n_rows = matrix.shape[0]
    if n_rows == 0 or max_cells <= 0:
        return np.empty(0, dtype=np.float64), 0
    count = min(n_rows, max_cells)
    # A few contiguous blocks read far faster than scattered rows from HDF5.
    n_blocks = min(count, 8)
    if count == n_rows:
        block = -(-count // n_blocks)  # ceil: every row once
        starts = np.arange(0, n_rows, block)
    else:
        block = count // n_blocks  # floor: never more than max_cells
        starts = np.unique(np.linspace(0, n_rows - block, n_blocks).astype(int))
    values = []
    rows_read = 0
    for start in starts:
        part = matrix[int(start): min(int(start) + block, n_rows)]
        rows_read += part.shape[0]
        data = part.data if hasattr(part, "data") and not isinstance(part, np.ndarray) else np.asarray(part)
        values.append(np.asarray(data).ravel())
    return np.concatenate(values), rows_read


#: Problems of :func:`count_problems` that mean the file is broken (not merely "not raw counts").
BROKEN_VALUE_PROBLEMS = ("NaN", "infinite", "negative")


def count_problems(values: np.ndarray) -> List[str]:
    """Why these matrix values are not raw counts (empty list: they look like raw counts).

    NaN, infinite and negative values are problems of the file itself (see
    :func:`is_broken_value_problem`); non-integer values only mean the matrix is normalised.
    """
    problems: List[str] = []
    if values.size == 0:
        return problems
    values = np.asarray(values)
    if values.dtype.kind in "biu":  # integer storage: raw counts unless negative
        if values.dtype.kind == "i" and (values < 0).any():
            problems.append("X contains negative values")
        return problems
    values = values.astype(np.float64, copy=False)
    if np.isnan(values).any():
        problems.append("X contains NaN values")
    if np.isinf(values).any():
        problems.append("X contains infinite values")
    finite = values[np.isfinite(values)]
    if finite.size and (finite < 0).any():
        problems.append("X contains negative values")
    if finite.size and not np.all(np.mod(finite, 1) == 0):
        problems.append("X contains non-integer values (log-normalised or scaled data, not raw counts)")
    return problems


def is_broken_value_problem(problem: str) -> bool:
    """True for the :func:`count_problems` entries that make a dataset unusable for any model."""
    return any(word in problem for word in BROKEN_VALUE_PROBLEMS)


def distinct_strings(values: pd.Series) -> List[str]:
    """The distinct values of a column as strings; cheap for categoricals (no per-row strings)."""
    unique = pd.unique(values) if not isinstance(values.dtype, pd.CategoricalDtype) else values.unique()
    return [str(v) for v in unique]


def perturbation_condition_problems(conditions: pd.Series) -> List[str]:
    """Conditions that are neither ``ctrl``, ``G+ctrl`` nor ``G1+G2`` (one message, up to 5 shown)."""
    bad = []
    for condition in distinct_strings(conditions):
        if condition == "ctrl":
            continue
        parts = condition.split("+")
        if len(parts) != 2 or not all(part.strip() for part in parts) or condition.strip() != condition:
            bad.append(condition)
    if not bad:
        return []
    shown = ", ".join(repr(b) for b in sorted(bad)[:5])
    more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
    return [
        f"Invalid perturbation condition format: {shown}{more}. "
        "Must be 'ctrl', '{gene}+ctrl', or '{gene1}+{gene2}'"
    ]


def split_problems(splits: pd.Series) -> List[str]:
    """Split values other than ``train``, ``test`` and ``val``."""
    invalid = sorted(set(distinct_strings(splits)) - PERTURBATION_SPLITS)
    return [f"Invalid split value(s): {invalid}. Allowed: ['test', 'train', 'val']"] if invalid else []
