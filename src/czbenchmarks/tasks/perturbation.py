"""Perturbation task and its control baselines (czbenchmarks v0.10 ``PerturbationTask``).

Prediction file (written by perturbation models and by the control baselines): an h5ad whose ``X``
holds predicted expression, one or more rows per predicted condition, ``obs['condition']`` naming
the condition of each row, ``var_names`` the dataset's genes, provenance JSON in
``uns['czbenchmarks']['json']``. A condition predicted by a single row is read as that prediction
for every control cell (the reference's baselines tiled their vector that way).

For each **test** condition of the dataset (``split == "test"``, not ``ctrl``):

* ``avg_ctrl`` / ``avg_truth`` / ``avg_pred``: mean expression of control cells / true cells / predicted rows;
* DE genes of truth and of prediction vs control: scanpy ``rank_genes_groups(method="wilcoxon")``;
* metrics (params ``subset``): ``mean_squared_error`` (sklearn, truth vs pred means) and
  ``pearson_correlation`` (scipy, of the deltas to control) on all genes and on the top 20 / 100 DE
  genes of the truth; ``jaccard`` of the top 20 / 100 DE gene sets of prediction and truth.

Every metric is reported per condition (``params.condition``) and as the mean over conditions
(``condition: "MEAN"``). Test conditions without a prediction are listed in ``missing_conditions``
and left out of the means (the MEAN entries then say so in their ``note``); a file predicting no
test condition is an error.

cell-eval's metrics (``cell_eval_*``, :mod:`.cell_eval_metrics`) follow czbenchmarks' on the same
conditions and predictions; the document's ``cell_eval`` entry says what they rest on (version, scale,
the VCC score's baseline) or why they are missing. No part of the task is random: with several seeds
(:mod:`.seeds`) it is computed once.

Memory: the dataset and the prediction file are opened backed; only the control cells stay in
memory, and one condition's truth and predicted rows are read, scored and dropped at a time
(float32 unless stored as float64; means in float64), so scoring memory does not grow with the
number of conditions.
"""

from __future__ import annotations

import json
from collections import abc
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from ..constants import PROVENANCE_UNS_KEY
from .constants import CONTROL_CONDITION, PERTURBATION_TOP_N, RANDOM_SEED
from .metrics import jaccard
from .types import MetricResult

PREDICTION_CONDITION_KEY = "condition"
BASELINE_TYPES = ("control_mean", "control_median")


def _dense(matrix) -> np.ndarray:
    import scipy.sparse as sp

    return np.asarray(matrix.toarray() if sp.issparse(matrix) else matrix, dtype=np.float64)


def _as_float(matrix) -> np.ndarray:
    """A dense float block: float64 stays float64, anything else becomes float32.

    Means are always taken in float64 (:func:`_column_mean`), so keeping float32 storage gives the
    same values as a float64 copy at half the memory.
    """
    import scipy.sparse as sp

    block = matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)
    return block if block.dtype == np.float64 else block.astype(np.float32, copy=False)


def _column_mean(matrix: np.ndarray) -> np.ndarray:
    return matrix.mean(axis=0, dtype=np.float64)


def _row_groups(labels: np.ndarray) -> Dict[str, np.ndarray]:
    """``{label: sorted row indices}`` in order of first appearance."""
    codes, uniques = pd.factorize(pd.Series(labels, dtype=object), sort=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    return {str(u): order[bounds[i]:bounds[i + 1]] for i, u in enumerate(uniques)}


def _read_rows(backed, index: np.ndarray) -> np.ndarray:
    """Rows ``index`` (sorted) of a backed AnnData's ``X``, as a dense float block; a run is read as a slice."""
    if len(index) and index[-1] - index[0] + 1 == len(index):
        block = backed.X[int(index[0]):int(index[-1]) + 1]
    else:
        block = backed[index].X
    return _as_float(block)


class _BackedRows(abc.Mapping):
    """``{name: rows}`` read on access from a backed AnnData (one group of rows in memory at a time)."""

    def __init__(self, backed, groups: Dict[str, np.ndarray]) -> None:
        self._backed = backed
        self._groups = groups

    def __getitem__(self, name: str) -> np.ndarray:
        return _read_rows(self._backed, self._groups[name])

    def __contains__(self, name: object) -> bool:
        return name in self._groups  # abc.Mapping's default would read the rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._groups)

    def __len__(self) -> int:
        return len(self._groups)

    def n_rows(self, name: str) -> int:
        """How many rows ``name`` has (no read)."""
        return int(len(self._groups[name]))

    def close(self) -> None:
        """Close the backed file."""
        file = getattr(self._backed, "file", None)
        if file is not None:
            file.close()


def load_perturbation_data(h5ad: Path, condition_key: str = "condition", split_key: str = "split"):
    """``(control AnnData, {test condition: truth matrix}, var_names)`` of a Perturb-seq dataset.

    The file is opened backed: the control cells are read into memory, each test condition's
    cells only when its entry of the mapping is accessed (dense, float32 unless stored as float64),
    so memory does not grow with the number of test conditions.
    """
    import anndata as ad

    from ..datasets.checks import perturbation_condition_problems, split_problems

    adata = ad.read_h5ad(h5ad, backed="r")
    for key, label in ((condition_key, "Condition"), (split_key, "Split")):
        if key not in adata.obs.columns:
            raise ValueError(f"{h5ad}: {label} key {key} not found in adata.obs")
    problems = split_problems(adata.obs[split_key]) + perturbation_condition_problems(adata.obs[condition_key])
    if problems:
        raise ValueError(f"{h5ad}: " + "; ".join(problems))
    conditions = adata.obs[condition_key].astype(str).to_numpy()
    splits = adata.obs[split_key].astype(str).to_numpy()
    test_conditions = sorted(set(conditions[splits == "test"]) - {CONTROL_CONDITION})
    if not test_conditions:
        raise ValueError(f"{h5ad}: no test conditions: no cells with {split_key} == 'test' outside '{CONTROL_CONDITION}'")
    control_rows = np.flatnonzero(conditions == CONTROL_CONDITION)
    if len(control_rows) == 0:
        raise ValueError(f"{h5ad}: no control cells ({condition_key} == '{CONTROL_CONDITION}')")
    ctrl = adata[control_rows].to_memory()
    groups = _row_groups(conditions)
    truth = _BackedRows(adata, {c: groups[c] for c in test_conditions})
    return ctrl, truth, adata.var_names.astype(str)


def control_baseline(ctrl_X, baseline_type: str = "control_median") -> np.ndarray:
    """The reference's perturbation baselines: mean or median expression of the control cells."""
    X = _dense(ctrl_X)
    if baseline_type == "control_mean":
        return X.mean(axis=0)
    if baseline_type == "control_median":
        return np.median(X, axis=0)
    raise ValueError(f"unknown perturbation baseline '{baseline_type}'; choose from {', '.join(BASELINE_TYPES)}")


def prediction_output(conditions: Sequence[str], rows: np.ndarray, var_names: Sequence[str], provenance: Dict[str, Any]):
    """An AnnData in the prediction file format (one row per entry of ``conditions``)."""
    import anndata as ad

    rows = np.asarray(rows, dtype=np.float32)
    obs = pd.DataFrame({PREDICTION_CONDITION_KEY: list(conditions)}, index=[f"pred_{i}" for i in range(len(rows))])
    out = ad.AnnData(X=rows, obs=obs, var=pd.DataFrame(index=[str(v) for v in var_names]))
    out.uns[PROVENANCE_UNS_KEY] = {"json": json.dumps(provenance, sort_keys=True, default=str)}
    return out


def read_prediction(path: Path) -> Tuple[Mapping[str, np.ndarray], pd.Index, Dict[str, Any]]:
    """``({condition: rows}, var_names, provenance)`` of a prediction file.

    The file is opened backed: a condition's rows are read when its entry is accessed (float32
    unless stored as float64), so neither this nor scoring holds all predictions at once.
    """
    import anndata as ad

    pred = ad.read_h5ad(path, backed="r")
    if PREDICTION_CONDITION_KEY not in pred.obs.columns:
        pred.file.close()
        raise ValueError(f"{path}: not a perturbation prediction (no obs['{PREDICTION_CONDITION_KEY}'])")
    provenance = json.loads(pred.uns.get(PROVENANCE_UNS_KEY, {}).get("json", "{}"))
    conditions = pred.obs[PREDICTION_CONDITION_KEY].astype(str).to_numpy()
    return _BackedRows(pred, _row_groups(conditions)), pred.var_names.astype(str), provenance


def _de_table(ctrl: np.ndarray, other: np.ndarray, var_names: pd.Index, group: str) -> pd.DataFrame:
    """scanpy Wilcoxon DE of ``other`` vs control, sorted by score (descending)."""
    import anndata as ad
    import scanpy as sc

    X = np.vstack([ctrl, other]).astype(np.float32, copy=False)
    obs = pd.DataFrame({"condition": ["ctrl"] * len(ctrl) + [group] * len(other)},
                       index=[f"c{i}" for i in range(len(X))])
    obs["condition"] = obs["condition"].astype("category")
    adata = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=var_names))
    verbosity = sc.settings.verbosity
    sc.settings.verbosity = 0  # the "use log data" hint: the reference ran it on X as stored, as here
    try:
        sc.tl.rank_genes_groups(adata, groupby="condition", groups=[group], reference="ctrl", method="wilcoxon")
    finally:
        sc.settings.verbosity = verbosity
    df = sc.get.rank_genes_groups_df(adata, group=group)
    return df.sort_values("scores", ascending=False, kind="stable")


def _pearson(x: np.ndarray, y: np.ndarray, scale: float = 1.0) -> MetricResult:
    """scipy's Pearson r; undefined (None) when an input is constant up to float32 rounding of ``scale``."""
    from scipy.stats import pearsonr

    tol = 1e-5 * max(1.0, scale)
    if len(x) < 2 or np.ptp(x) <= tol or np.ptp(y) <= tol:
        return MetricResult("pearson_correlation", None, note="undefined: a constant input (e.g. zero predicted change)")
    return MetricResult("pearson_correlation", float(pearsonr(x, y).statistic))


def condition_metrics(
    ctrl: np.ndarray, truth: np.ndarray, pred: np.ndarray, var_names: pd.Index,
    top_n: Sequence[int] = PERTURBATION_TOP_N,
) -> List[MetricResult]:
    """The reference's 8 metrics for one condition (order as the reference)."""
    from sklearn.metrics import mean_squared_error

    if pred.shape[0] == 1:
        pred = np.repeat(pred, len(ctrl), axis=0)
    avg_ctrl = pd.Series(_column_mean(ctrl), index=var_names)
    avg_truth = pd.Series(_column_mean(truth), index=var_names)
    avg_pred = pd.Series(_column_mean(pred), index=var_names)
    de_truth = _de_table(ctrl, truth, var_names, "truth")
    de_pred = _de_table(ctrl, pred, var_names, "pred")
    genes = set(var_names)

    def scored(subset: str, chosen: Sequence[str]) -> List[MetricResult]:
        chosen = list(chosen)
        mse = MetricResult("mean_squared_error", mean_squared_error(avg_truth[chosen], avg_pred[chosen]), {"subset": subset})
        pearson = _pearson((avg_truth[chosen] - avg_ctrl[chosen]).to_numpy(),
                           (avg_pred[chosen] - avg_ctrl[chosen]).to_numpy(), scale=float(avg_ctrl.abs().max()))
        pearson.params = {"subset": subset}
        return [mse, pearson]

    metrics = scored("all", list(var_names))
    for n in top_n:
        top = [g for g in de_truth["names"].astype(str).head(n) if g in genes]
        metrics += scored(f"top{n}", top)
    for n in top_n:
        value = jaccard(set(de_pred["names"].astype(str).head(n)), set(de_truth["names"].astype(str).head(n)))
        metrics.append(MetricResult("jaccard", value, {"subset": f"top{n}"}))
    return metrics


#: Prediction provenance facts (``run_info``) copied into the metrics document when present.
PREDICTION_FACTS = ("variant_finetune_dataset", "variant_dataset_mismatch", "pad_token_conditions")


def _mean_over_conditions(per_condition: List[MetricResult], n_test: int) -> List[MetricResult]:
    """Per (metric, subset): the mean over the conditions where it is defined."""
    means: List[MetricResult] = []
    seen: List[Tuple[str, str]] = []
    n_scored = len({m.params["condition"] for m in per_condition})
    partial = f"mean over the {n_scored} of {n_test} test conditions that have a prediction" if n_scored < n_test else ""
    for m in per_condition:
        key = (m.metric_type, m.params["subset"])
        if key in seen:
            continue
        seen.append(key)
        values = [x.value for x in per_condition if (x.metric_type, x.params["subset"]) == key and x.value is not None]
        note = "; ".join(n for n in ("" if values else "undefined for every condition", partial) if n)
        means.append(MetricResult(key[0], float(np.mean(values)) if values else None,
                                  {"condition": "MEAN", "subset": key[1]}, note=note))
    return means


def perturbation_mean_baseline(
    dataset_h5ad: Path, condition_key: str = "condition", split_key: str = "split",
) -> Tuple[Optional[np.ndarray], str]:
    """(vector, note) of the Virtual Cell Challenge's perturbation-mean baseline on the dataset's train split:
    the mean of the perturbation-level mean expressions (cell-eval's ``build_base_mean_adata``, control
    included) of the control cells and of every train-split condition, read one condition at a time.
    ``None`` and the reason when the train split has no perturbation."""
    import anndata as ad

    adata = ad.read_h5ad(dataset_h5ad, backed="r")
    try:
        conditions = adata.obs[condition_key].astype(str).to_numpy()
        splits = adata.obs[split_key].astype(str).to_numpy()
        train = sorted(set(conditions[splits == "train"]) - {CONTROL_CONDITION})
        if not train:
            return None, f"no train-split perturbation in {Path(dataset_h5ad).name} for the VCC baseline"
        groups = _row_groups(conditions)
        means = [_column_mean(_read_rows(adata, groups[c])) for c in (CONTROL_CONDITION, *train)]
    finally:
        adata.file.close()
    return np.mean(np.vstack(means), axis=0), ""


def _cell_eval_scorer(dataset_h5ad: Path, ctrl: np.ndarray, var_names: pd.Index, condition_key: str,
                      split_key: str):
    """A :class:`.cell_eval_metrics.CellEvalScorer` for this dataset (raises ImportError without cell-eval)."""
    from .cell_eval_metrics import CellEvalScorer, is_log1p
    from .metrics import _n_threads

    vector, note = perturbation_mean_baseline(dataset_h5ad, condition_key, split_key)
    return CellEvalScorer(ctrl, var_names, is_log1p(ctrl), vector, n_threads=_n_threads(), baseline_note=note)


def run_perturbation_task(
    dataset_h5ad: Path, prediction_h5ad: Path, condition_key: str = "condition", split_key: str = "split",
    seed: int = RANDOM_SEED, top_n: Sequence[int] = PERTURBATION_TOP_N, cell_eval: bool = True,
) -> Dict[str, Any]:
    """Score a prediction file against a dataset's test conditions (metrics JSON body).

    Conditions are scored one at a time (its truth and predicted rows read, scored, dropped).
    Test conditions without a prediction are listed in ``missing_conditions`` and left out of
    the means; only a prediction file with no test condition at all is an error. ``cell_eval``: also
    cell-eval's metrics (a cell-eval failure leaves them undefined with the reason, never the task).
    """
    from .cell_eval_metrics import GuardedCellEval

    ctrl_adata, truth, var_names = load_perturbation_data(dataset_h5ad, condition_key, split_key)
    try:
        predictions, pred_genes, provenance = read_prediction(prediction_h5ad)
    except Exception:
        truth.close()
        raise
    try:
        if list(pred_genes) != list(var_names):
            raise ValueError(
                f"{prediction_h5ad}: prediction has {len(pred_genes)} genes, dataset has {len(var_names)}: "
                "predictions must use the dataset's genes in the dataset's order"
            )
        test_conditions = list(truth)
        scored = [c for c in test_conditions if c in predictions]
        missing = [c for c in test_conditions if c not in predictions]
        if not scored:
            raise ValueError(
                f"{prediction_h5ad}: no prediction for any of the {len(test_conditions)} test conditions of "
                f"{dataset_h5ad} (e.g. {', '.join(test_conditions[:5])})"
            )
        extra = sorted(set(predictions) - set(test_conditions))
        ctrl = _as_float(ctrl_adata.X)
        per_condition: List[MetricResult] = []
        cell_eval_run = GuardedCellEval(
            lambda: _cell_eval_scorer(dataset_h5ad, ctrl, var_names, condition_key, split_key)) if cell_eval else None
        for condition in scored:
            truth_rows, pred_rows = truth[condition], predictions[condition]
            for m in condition_metrics(ctrl, truth_rows, pred_rows, var_names, top_n):
                m.params = {"condition": condition, **m.params}
                per_condition.append(m)
            if cell_eval_run is not None:
                cell_eval_run.add(condition, truth_rows, pred_rows)
        partial = f"mean over the {len(scored)} of {len(test_conditions)} test conditions that have a prediction"
        cell_eval_entries, cell_eval_facts = (
            cell_eval_run.finish(partial if missing else "") if cell_eval_run is not None else ([], {}))
    finally:
        truth.close()
        predictions.close()
    run_info = provenance.get("run_info") or {}
    n_test_cells = sum(truth.n_rows(c) for c in test_conditions)
    return {
        "task": "perturbation",
        "seed": seed,
        "params": {"condition_key": condition_key, "split_key": split_key, "top_n": list(top_n),
                   "test_conditions": test_conditions, "ignored_predictions": extra},
        "n_cells": int(ctrl.shape[0] + n_test_cells),
        "n_cells_scored": int(sum(truth.n_rows(c) for c in scored)),
        "n_test_conditions": len(test_conditions),
        "n_conditions_scored": len(scored),
        "missing_conditions": missing,
        **{key: run_info[key] for key in PREDICTION_FACTS if key in run_info},
        **({"cell_eval": cell_eval_facts} if cell_eval else {}),
        "metrics": [m.to_dict() for m in _mean_over_conditions(per_condition, len(test_conditions)) + per_condition
                    + cell_eval_entries],
    }


def write_control_baseline(
    dataset_h5ad: Path, output: Path, baseline_type: str, condition_key: str = "condition",
    split_key: str = "split", dataset_id: str = "", seed: int = RANDOM_SEED, extra_provenance: Optional[Dict] = None,
) -> None:
    """Write the control mean/median baseline's prediction for every test condition of a dataset."""
    from ..outputs import atomic_write_h5ad
    from ..provenance import software_versions, utc_now

    ctrl, truth, var_names = load_perturbation_data(dataset_h5ad, condition_key, split_key)
    truth.close()  # only the condition names are needed
    vector = control_baseline(ctrl.X, baseline_type)
    conditions = list(truth)
    provenance = {
        "model": "baseline", "model_type": "BASELINE", "variant": baseline_type, "dataset": dataset_id,
        "seed": seed, "weights": {}, "software": software_versions(), "created": utc_now(),
        "run_info": {"n_control_cells": int(ctrl.n_obs), "conditions": conditions}, **(extra_provenance or {}),
    }
    out = prediction_output(conditions, np.tile(vector, (len(conditions), 1)), var_names, provenance)
    atomic_write_h5ad(out, Path(output))
