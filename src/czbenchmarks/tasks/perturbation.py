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
  ``PEARSON_CORRELATION`` (scipy, of the deltas to control) on all genes and on the top 20 / 100 DE
  genes of the truth; ``jaccard`` of the top 20 / 100 DE gene sets of prediction and truth.

Every metric is reported per condition (``params.condition``) and as the mean over conditions
(``condition: "MEAN"``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

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


def load_perturbation_data(h5ad: Path, condition_key: str = "condition", split_key: str = "split"):
    """``(control AnnData, {test condition: truth matrix}, var_names)`` of a Perturb-seq dataset."""
    import anndata as ad

    from ..datasets.checks import perturbation_condition_problems, split_problems

    adata = ad.read_h5ad(h5ad)
    for key, label in ((condition_key, "Condition"), (split_key, "Split")):
        if key not in adata.obs.columns:
            raise ValueError(f"{label} key {key} not found in adata.obs")
    problems = split_problems(adata.obs[split_key]) + perturbation_condition_problems(adata.obs[condition_key])
    if problems:
        raise ValueError("; ".join(problems))
    conditions = adata.obs[condition_key].astype(str).to_numpy()
    splits = adata.obs[split_key].astype(str).to_numpy()
    test_conditions = sorted(set(conditions[splits == "test"]) - {CONTROL_CONDITION})
    if not test_conditions:
        raise ValueError(f"no test conditions: no cells with {split_key} == 'test' outside '{CONTROL_CONDITION}'")
    ctrl = adata[conditions == CONTROL_CONDITION]
    if ctrl.n_obs == 0:
        raise ValueError(f"no control cells ({condition_key} == '{CONTROL_CONDITION}')")
    truth = {c: _dense(adata[conditions == c].X) for c in test_conditions}
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


def read_prediction(path: Path) -> Tuple[Dict[str, np.ndarray], pd.Index, Dict[str, Any]]:
    """``({condition: rows}, var_names, provenance)`` of a prediction file."""
    import anndata as ad

    pred = ad.read_h5ad(path)
    if PREDICTION_CONDITION_KEY not in pred.obs.columns:
        raise ValueError(f"{path}: not a perturbation prediction (no obs['{PREDICTION_CONDITION_KEY}'])")
    provenance = json.loads(pred.uns.get(PROVENANCE_UNS_KEY, {}).get("json", "{}"))
    X = _dense(pred.X)
    conditions = pred.obs[PREDICTION_CONDITION_KEY].astype(str).to_numpy()
    return {c: X[conditions == c] for c in pd.unique(conditions)}, pred.var_names.astype(str), provenance


def _de_table(ctrl: np.ndarray, other: np.ndarray, var_names: pd.Index, group: str) -> pd.DataFrame:
    """scanpy Wilcoxon DE of ``other`` vs control, sorted by score (descending)."""
    import anndata as ad
    import scanpy as sc

    X = np.vstack([ctrl, other]).astype(np.float32)
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
        return MetricResult("PEARSON_CORRELATION", None, note="undefined: a constant input (e.g. zero predicted change)")
    return MetricResult("PEARSON_CORRELATION", float(pearsonr(x, y).statistic))


def condition_metrics(
    ctrl: np.ndarray, truth: np.ndarray, pred: np.ndarray, var_names: pd.Index,
    top_n: Sequence[int] = PERTURBATION_TOP_N,
) -> List[MetricResult]:
    """The reference's 8 metrics for one condition (order as the reference)."""
    from sklearn.metrics import mean_squared_error

    if pred.shape[0] == 1:
        pred = np.repeat(pred, len(ctrl), axis=0)
    avg_ctrl = pd.Series(ctrl.mean(axis=0), index=var_names)
    avg_truth = pd.Series(truth.mean(axis=0), index=var_names)
    avg_pred = pd.Series(pred.mean(axis=0), index=var_names)
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


def run_perturbation_task(
    dataset_h5ad: Path, prediction_h5ad: Path, condition_key: str = "condition", split_key: str = "split",
    seed: int = RANDOM_SEED, top_n: Sequence[int] = PERTURBATION_TOP_N,
) -> Dict[str, Any]:
    """Score a prediction file against a dataset's test conditions (metrics JSON body)."""
    ctrl_adata, truth, var_names = load_perturbation_data(dataset_h5ad, condition_key, split_key)
    predictions, pred_genes, _ = read_prediction(prediction_h5ad)
    if list(pred_genes) != list(var_names):
        raise ValueError(
            f"prediction has {len(pred_genes)} genes, dataset has {len(var_names)}: predictions must use the "
            "dataset's genes in the dataset's order"
        )
    missing = [c for c in truth if c not in predictions]
    if missing:
        raise ValueError(f"no prediction for test condition(s) {', '.join(missing[:5])}")
    extra = sorted(set(predictions) - set(truth))
    ctrl = _dense(ctrl_adata.X)
    per_condition: List[MetricResult] = []
    for condition in truth:
        for m in condition_metrics(ctrl, truth[condition], predictions[condition], var_names, top_n):
            m.params = {"condition": condition, **m.params}
            per_condition.append(m)
    means: List[MetricResult] = []
    seen: List[Tuple[str, str]] = []
    for m in per_condition:
        key = (m.metric_type, m.params["subset"])
        if key in seen:
            continue
        seen.append(key)
        values = [x.value for x in per_condition if (x.metric_type, x.params["subset"]) == key and x.value is not None]
        note = "" if values else "undefined for every condition"
        means.append(MetricResult(key[0], float(np.mean(values)) if values else None,
                                  {"condition": "MEAN", "subset": key[1]}, note=note))
    return {
        "task": "perturbation",
        "seed": seed,
        "params": {"condition_key": condition_key, "split_key": split_key, "top_n": list(top_n),
                   "test_conditions": list(truth), "ignored_predictions": extra},
        "n_cells": int(ctrl.shape[0] + sum(len(t) for t in truth.values())),
        "n_cells_scored": int(sum(len(t) for t in truth.values())),
        "metrics": [m.to_dict() for m in means + per_condition],
    }


def write_control_baseline(
    dataset_h5ad: Path, output: Path, baseline_type: str, condition_key: str = "condition",
    split_key: str = "split", dataset_id: str = "", seed: int = RANDOM_SEED, extra_provenance: Optional[Dict] = None,
) -> None:
    """Write the control mean/median baseline's prediction for every test condition of a dataset."""
    from ..outputs import atomic_write_h5ad
    from ..provenance import software_versions, utc_now

    ctrl, truth, var_names = load_perturbation_data(dataset_h5ad, condition_key, split_key)
    vector = control_baseline(ctrl.X, baseline_type)
    conditions = list(truth)
    provenance = {
        "model": "baseline", "model_type": "BASELINE", "variant": baseline_type, "dataset": dataset_id,
        "seed": seed, "weights": {}, "software": software_versions(), "created": utc_now(),
        "run_info": {"n_control_cells": int(ctrl.n_obs), "conditions": conditions}, **(extra_provenance or {}),
    }
    out = prediction_output(conditions, np.tile(vector, (len(conditions), 1)), var_names, provenance)
    atomic_write_h5ad(out, Path(output))
