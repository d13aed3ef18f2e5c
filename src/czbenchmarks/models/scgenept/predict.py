"""Perturbation prediction from control cells, condition selection, and the prediction file.

The reference (``pred_perturb_from_ctrl``) drew as many control cells as it was given, with
replacement, from an unseeded ``np.random.randint``, set the perturbation flag of each perturbed
gene, and predicted every drawn cell. Here the draw is seeded per condition from the run seed and
the condition name (``SeedSequence([seed, crc32(condition)])``), so a condition's prediction does
not depend on which other conditions were requested, and the drawn control cells are recorded.

Predictions stream: :func:`iter_predictions` yields one condition at a time and
:class:`PredictionWriter` appends it to the prediction h5ad, so memory holds one condition's rows
(``pool_size`` x genes, float32), whatever the number of conditions.
"""

from __future__ import annotations

import logging
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np

from .variants import parse_condition

logger = logging.getLogger(__name__)


@dataclass
class ConditionCheck:
    """Which conditions can be predicted, why the others cannot, and which use ``<pad>``.

    Attributes:
        predictable: conditions to predict, in request order.
        skipped: ``{condition: reason}`` of the others.
        pad_token: ``{condition: genes}`` of predictable conditions with a perturbed gene the
            vocabulary lacks; those genes' tokens are ``<pad>`` (their flags are still set).
    """

    predictable: List[str] = field(default_factory=list)
    skipped: Dict[str, str] = field(default_factory=dict)
    pad_token: Dict[str, List[str]] = field(default_factory=dict)


def check_conditions(conditions: Iterable[str], dataset_genes: Sequence[str],
                     vocab: Optional[Iterable[str]] = None) -> ConditionCheck:
    """Split conditions into predictable ones and the others (with the reason).

    The one rule is scGenePT's own (``gene_names.index(gene)`` in ``pred_perturb_from_ctrl``): a
    perturbed gene must be one of the dataset's genes, since its flag is set at that position.
    A gene the vocabulary lacks (e.g. GEARS' older symbols ``DARS``, ``TARS``, ``C3orf72`` where
    scGPT has ``DARS1``, ...) gets the ``<pad>`` token, as every unknown gene does in scGenePT;
    with ``vocab`` given, such conditions are listed in ``pad_token``. ``ctrl`` is always predictable.
    """
    genes = set(dataset_genes)
    known = set(vocab) if vocab is not None else None
    result = ConditionCheck()
    for condition in conditions:
        targets = parse_condition(condition)
        not_measured = [g for g in targets if g not in genes]
        if not_measured:
            result.skipped[condition] = f"gene(s) {', '.join(not_measured)} not among the dataset's genes"
            continue
        result.predictable.append(condition)
        padded = [g for g in targets if known is not None and g not in known]
        if padded:
            result.pad_token[condition] = padded
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


@dataclass
class ConditionPrediction:
    """One condition's predictions: ``rows[i]`` is predicted from control cell ``drawn[i]``."""

    condition: str
    drawn: np.ndarray  # (pool,) indices into the control cells
    rows: np.ndarray  # (pool, n_genes) float32


def _rows(matrix, index: np.ndarray) -> np.ndarray:
    import scipy.sparse as sp

    block = matrix[index]
    return np.asarray(block.toarray() if sp.issparse(block) else block, dtype=np.float32)


def pool_size_for(pool_size: int, n_control_cells: int) -> int:
    """Control cells drawn per condition: ``pool_size``, or every control cell when it is 0 (the reference)."""
    return int(pool_size) if pool_size and pool_size > 0 else int(n_control_cells)


def iter_predictions(
    loaded: Any,
    control_X,
    gene_symbols: Sequence[str],
    conditions: Sequence[str],
    seed: int,
    pool_size: int = 0,
    batch_size: int = 64,
) -> Iterator[ConditionPrediction]:
    """Predict each condition from ``pool_size`` control cells drawn with replacement (seeded), one at a time.

    Args:
        loaded: a :class:`~.network.LoadedScGenePT`.
        control_X: control cells x dataset genes (dense or sparse), the model's input values.
        gene_symbols: the dataset's gene symbols, in dataset order (the model's input tokens;
            genes missing from the vocabulary get the ``<pad>`` token, as in scGenePT).
        conditions: conditions to predict (``G+ctrl``, ``G1+G2`` or ``ctrl``).
        seed: run seed; each condition's draw uses :func:`condition_rng`.
        pool_size: control cells per condition (0: as many as there are control cells).
        batch_size: cells per forward pass.

    Raises:
        ValueError: no control cells, or a perturbed gene that is not among the dataset's genes.
    """
    import torch

    n_ctrl = control_X.shape[0]
    if n_ctrl == 0:
        raise ValueError("no control cells to predict from")
    pool = pool_size_for(pool_size, n_ctrl)
    symbols = [str(s) for s in gene_symbols]
    position: Dict[str, int] = {}
    for index, symbol in enumerate(symbols):
        position.setdefault(symbol, index)  # the first occurrence, like list.index in the reference
    tokens = torch.tensor([loaded.vocab.get(s, loaded.pad_id) for s in symbols], dtype=torch.long,
                          device=loaded.device)
    device_type = "cuda" if str(loaded.device).startswith("cuda") else "cpu"
    for condition in conditions:
        flags = torch.zeros(len(symbols), dtype=torch.long, device=loaded.device)
        for gene in parse_condition(condition):
            if gene not in position:
                raise ValueError(f"cannot predict '{condition}': gene {gene} is not among the dataset's genes")
            flags[position[gene]] = 1
        drawn = condition_rng(seed, condition).integers(0, n_ctrl, size=pool)
        rows = np.empty((pool, len(symbols)), dtype=np.float32)
        for start in range(0, pool, batch_size):
            index = drawn[start:start + batch_size]
            values = torch.from_numpy(_rows(control_X, index)).to(loaded.device)
            batch = len(index)
            with torch.no_grad(), torch.autocast(device_type=device_type, dtype=torch.float16,
                                                 enabled=device_type == "cuda"):
                pred = loaded.network(tokens.expand(batch, -1), values, flags.expand(batch, -1))
            rows[start:start + batch] = pred.float().cpu().numpy()
        logger.info("scGenePT: predicted %s from %d control cells", condition, pool)
        yield ConditionPrediction(condition=condition, drawn=drawn, rows=rows)


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
    """Every condition's predictions in memory (see :func:`iter_predictions`; pipeline runs stream instead)."""
    names = np.asarray([str(n) for n in control_names])
    out_rows: List[np.ndarray] = []
    out_conditions: List[str] = []
    out_controls: List[str] = []
    for item in iter_predictions(loaded, control_X, gene_symbols, conditions, seed, pool_size, batch_size):
        out_rows.append(item.rows)
        out_conditions += [item.condition] * len(item.drawn)
        out_controls += names[item.drawn].tolist()
    rows = np.concatenate(out_rows, axis=0) if out_rows else np.zeros((0, len(gene_symbols)), dtype=np.float32)
    return PredictionResult(conditions=out_conditions, control_cells=out_controls, rows=rows)


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


class PredictionWriter:
    """Writes the prediction h5ad of :func:`prediction_anndata` one condition at a time.

    ``X`` is a resizable float32 HDF5 dataset that each :meth:`write` extends; ``obs`` (condition
    and drawn control cell per row, as categoricals), ``var`` and the provenance are written by
    :meth:`finish`, which then renames the file into place. Until then the file has a temporary
    name, and leaving a ``with`` block by an exception deletes it: a partial file never looks
    finished. Memory: the rows of one condition plus two int32 codes per written row.

    Args:
        path: the h5ad to write.
        var_names: the dataset's genes, in dataset order.
        control_names: obs names of the control cells (``drawn`` indices refer to them).
    """

    def __init__(self, path: Path, var_names: Sequence[str], control_names: Sequence[str]) -> None:
        import h5py

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp.h5ad")
        self._var_names = [str(v) for v in var_names]
        self._control_names = [str(n) for n in control_names]
        self._conditions: List[str] = []
        self._condition_codes: List[np.ndarray] = []
        self._control_codes: List[np.ndarray] = []
        self.n_rows = 0
        self._file = h5py.File(self._tmp, "w")
        self._file.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
        n_genes = max(1, len(self._var_names))
        chunk_rows = max(1, min(1024, (1 << 18) // n_genes))  # ~1 MiB chunks
        self._X = self._file.create_dataset("X", shape=(0, len(self._var_names)), maxshape=(None, len(self._var_names)),
                                            dtype=np.float32, chunks=(chunk_rows, n_genes))
        self._X.attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})

    def write(self, prediction: ConditionPrediction) -> None:
        """Append one condition's rows."""
        rows = np.asarray(prediction.rows, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != len(self._var_names) or len(rows) != len(prediction.drawn):
            raise ValueError(f"{prediction.condition}: {rows.shape} rows for {len(prediction.drawn)} drawn cells "
                             f"and {len(self._var_names)} genes")
        if prediction.condition in self._conditions:
            raise ValueError(f"{prediction.condition} written twice to {self.path}")
        start = self.n_rows
        self._X.resize(start + len(rows), axis=0)
        self._X[start:start + len(rows)] = rows
        self._condition_codes.append(np.full(len(rows), len(self._conditions), dtype=np.int32))
        self._control_codes.append(np.asarray(prediction.drawn, dtype=np.int32))
        self._conditions.append(prediction.condition)
        self.n_rows += len(rows)

    def finish(self, provenance: Dict[str, Any]) -> Path:
        """Write obs, var and provenance, close, and rename into place; returns the path."""
        import json

        import pandas as pd
        from anndata.io import write_elem

        from ...constants import PROVENANCE_UNS_KEY
        from ...tasks.perturbation import PREDICTION_CONDITION_KEY

        def codes(parts: List[np.ndarray]) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)

        control_codes = codes(self._control_codes)
        names = pd.Index(self._control_names)
        control = (pd.Categorical.from_codes(control_codes, names) if names.is_unique
                   else pd.Categorical(np.asarray(self._control_names, dtype=object)[control_codes]))
        obs = pd.DataFrame({
            PREDICTION_CONDITION_KEY: pd.Categorical.from_codes(codes(self._condition_codes), self._conditions),
            "control_cell": control.remove_unused_categories(),
        }, index=pd.Index([f"pred_{i}" for i in range(self.n_rows)]))
        write_elem(self._file, "obs", obs)
        write_elem(self._file, "var", pd.DataFrame(index=pd.Index(self._var_names)))
        write_elem(self._file, "uns", {PROVENANCE_UNS_KEY: {"json": json.dumps(provenance, sort_keys=True, default=str)}})
        for empty in ("obsm", "varm", "obsp", "varp", "layers"):
            write_elem(self._file, empty, {})
        self._file.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file."""
        if self._file.id.valid:
            self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "PredictionWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or self._file.id.valid:
            self.abort()  # an exception, or a block left without finish()
