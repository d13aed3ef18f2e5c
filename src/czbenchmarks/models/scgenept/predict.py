"""Perturbation prediction from control cells, condition selection, and the prediction file.

The reference (``pred_perturb_from_ctrl``) drew as many control cells as it was given, with
replacement, from an unseeded ``np.random.randint``, set the perturbation flag of each perturbed
gene, and predicted every drawn cell. Here the draw is seeded per condition from the run seed and
the condition name (``SeedSequence([seed, crc32(condition)])``), so a condition's prediction does
not depend on which other conditions were requested, and the drawn control cells are recorded.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

from .variants import parse_condition

logger = logging.getLogger(__name__)


@dataclass
class ConditionCheck:
    """Which conditions can be predicted and why the others cannot."""

    predictable: List[str] = field(default_factory=list)
    skipped: Dict[str, str] = field(default_factory=dict)


def check_conditions(conditions: Iterable[str], dataset_genes: Sequence[str],
                     vocab: Optional[Iterable[str]] = None) -> ConditionCheck:
    """Split conditions into predictable ones and the others (with the reason).

    A perturbed gene must be one of the dataset's genes (its flag is set at that position) and,
    when ``vocab`` is given, in the model's vocabulary (otherwise its token is ``<pad>`` and the
    model cannot tell which gene was perturbed). ``ctrl`` is always predictable.
    """
    genes = set(dataset_genes)
    known = set(vocab) if vocab is not None else None
    result = ConditionCheck()
    for condition in conditions:
        targets = parse_condition(condition)
        not_measured = [g for g in targets if g not in genes]
        not_in_vocab = [g for g in targets if known is not None and g in genes and g not in known]
        if not_measured:
            result.skipped[condition] = f"gene(s) {', '.join(not_measured)} not among the dataset's genes"
        elif not_in_vocab:
            result.skipped[condition] = f"gene(s) {', '.join(not_in_vocab)} not in the model's vocabulary"
        else:
            result.predictable.append(condition)
    return result


def dataset_test_conditions(obs, condition_key: str, split_key: str) -> List[str]:
    """The dataset's test conditions (``split == 'test'``, not ``ctrl``), sorted."""
    conditions = obs[condition_key].astype(str)
    return sorted(set(conditions[obs[split_key].astype(str) == "test"]) - {"ctrl"})


def requested_conditions(gene_pert: str, obs, condition_key: str, split_key: str) -> List[str]:
    """Conditions named by ``--gene_pert``: a comma/space separated list; empty or ``test``: the test conditions."""
    names = [part for part in str(gene_pert or "").replace(",", " ").split() if part]
    if not names or names == ["test"]:
        return dataset_test_conditions(obs, condition_key, split_key)
    return list(dict.fromkeys(names))


def condition_rng(seed: int, condition: str) -> np.random.Generator:
    """The generator of one condition's control-cell draw."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(condition.encode())]))


@dataclass
class PredictionResult:
    """Predicted expression rows with the condition and drawn control cell of each row."""

    conditions: List[str]
    control_cells: List[str]
    rows: np.ndarray  # (n_rows, n_genes) float32


def _rows(matrix, index: np.ndarray) -> np.ndarray:
    import scipy.sparse as sp

    block = matrix[index]
    return np.asarray(block.toarray() if sp.issparse(block) else block, dtype=np.float32)


def predict_conditions(
    loaded: Any,
    control_X,
    control_names: Sequence[str],
    gene_symbols: Sequence[str],
    conditions: Sequence[str],
    seed: int,
    pool_size: int = 0,
    batch_size: int = 64,
) -> PredictionResult:
    """Predict each condition from ``pool_size`` control cells drawn with replacement (seeded).

    Args:
        loaded: a :class:`~.network.LoadedScGenePT`.
        control_X: control cells x dataset genes (dense or sparse), the model's input values.
        control_names: obs names of the control cells.
        gene_symbols: the dataset's gene symbols, in dataset order (the model's input tokens;
            genes missing from the vocabulary get the ``<pad>`` token, as in scGenePT).
        conditions: conditions to predict (``G+ctrl``, ``G1+G2`` or ``ctrl``).
        seed: run seed; each condition's draw uses :func:`condition_rng`.
        pool_size: control cells per condition (0: as many as there are control cells).
        batch_size: cells per forward pass.
    """
    import torch

    n_ctrl = control_X.shape[0]
    if n_ctrl == 0:
        raise ValueError("no control cells to predict from")
    pool = int(pool_size) if pool_size and pool_size > 0 else n_ctrl
    symbols = [str(s) for s in gene_symbols]
    position = {}
    for index, symbol in enumerate(symbols):
        position.setdefault(symbol, index)  # the first occurrence, like list.index in the reference
    tokens = torch.tensor([loaded.vocab.get(s, loaded.pad_id) for s in symbols], dtype=torch.long,
                          device=loaded.device)
    device_type = "cuda" if str(loaded.device).startswith("cuda") else "cpu"
    out_rows: List[np.ndarray] = []
    out_conditions: List[str] = []
    out_controls: List[str] = []
    names = np.asarray([str(n) for n in control_names])
    for condition in conditions:
        flags = torch.zeros(len(symbols), dtype=torch.long, device=loaded.device)
        for gene in parse_condition(condition):
            if gene not in position:
                raise ValueError(f"cannot predict '{condition}': gene {gene} is not among the dataset's genes")
            flags[position[gene]] = 1
        drawn = condition_rng(seed, condition).integers(0, n_ctrl, size=pool)
        for start in range(0, pool, batch_size):
            index = drawn[start:start + batch_size]
            values = torch.from_numpy(_rows(control_X, index)).to(loaded.device)
            batch = len(index)
            with torch.no_grad(), torch.autocast(device_type=device_type, dtype=torch.float16,
                                                 enabled=device_type == "cuda"):
                pred = loaded.network(tokens.expand(batch, -1), values, flags.expand(batch, -1))
            out_rows.append(pred.float().cpu().numpy())
        out_conditions += [condition] * pool
        out_controls += names[drawn].tolist()
        logger.info("scGenePT: predicted %s from %d control cells", condition, pool)
    rows = np.concatenate(out_rows, axis=0) if out_rows else np.zeros((0, len(symbols)), dtype=np.float32)
    return PredictionResult(conditions=out_conditions, control_cells=out_controls, rows=rows.astype(np.float32))


def prediction_anndata(result: PredictionResult, var_names: Sequence[str], provenance: Dict[str, Any]):
    """The prediction file the perturbation task reads (its ``prediction_output`` format).

    One row per predicted cell: ``X`` predicted expression, ``obs['condition']``,
    ``obs['control_cell']`` (the drawn control cell), ``var_names`` the dataset's genes in the
    dataset's order, provenance JSON in ``uns['czbenchmarks']``.
    """
    from ...tasks.perturbation import prediction_output

    out = prediction_output(result.conditions, result.rows, var_names, provenance)
    out.obs["control_cell"] = list(result.control_cells)
    return out
