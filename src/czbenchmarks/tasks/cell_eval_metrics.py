"""cell-eval's perturbation metrics (Arc Institute's ``cell-eval``, the Virtual Cell Challenge's scorer) on
the perturbation task's predictions, one condition at a time.

cell-eval is called, not re-implemented: per test condition a small pair of AnnData (the control cells
and the condition's true cells; the same control cells and the condition's predicted rows) goes through
``cell_eval.MetricsEvaluator`` (its pdex Wilcoxon DE of each side against the control cells, FDR per
condition) and its metric pipeline. Emitted (``params.condition`` and ``MEAN``; ``params.cell_eval_metric``
names cell-eval's metric):

* ``cell_eval_overlap_at_n`` / ``cell_eval_precision_at_n``: cell-eval's ``overlap_at_N`` /
  ``precision_at_N`` (share of the true / predicted significant DE genes, FDR < 0.05, ranked by |log2 FC|,
  found on the other side);
* ``cell_eval_de_direction_match``: ``de_direction_match`` (share of the true significant DE genes whose
  predicted log2 fold change has the same sign);
* ``cell_eval_de_spearman_lfc_sig``: ``de_spearman_lfc_sig`` (Spearman correlation of true and predicted
  log2 fold changes over the true significant DE genes) -- the effect-size correlation;
* ``cell_eval_mae``: ``mae`` (mean absolute error of the pseudobulk expression);
* ``cell_eval_discrimination_score_l1``: ``discrimination_score_l1`` (1 - the normalised rank of the true
  effect among all scored conditions' true effects by L1 distance to the predicted effect; needs every
  condition, so computed at the end from the per-condition pseudobulks cell-eval made);
* ``cell_eval_vcc_score`` (``MEAN`` only): the Virtual Cell Challenge score, ``cell_eval.score_agg_metrics``
  of the prediction's mean ``mae``, ``discrimination_score_l1`` and ``overlap_at_N`` against a reference
  baseline's: each scaled so the baseline scores 0 and a perfect prediction 1 (clipped at 0), then averaged.
  The baseline is the VCC's perturbation-mean baseline (cell-eval's ``build_base_mean_adata``: the mean of
  the perturbation-level means, control included) taken over the dataset's **train** split, tiled to each
  test condition's cell count, scored on the same conditions in the same pass (one extra pdex per
  condition; the true cells' DE is reused).

Conventions: the predicted side's control cells are the real control cells (the VCC's layout); a condition
predicted by one row is that row repeated for each of the condition's true cells (the VCC's baseline
layout). cell-eval scores ``X`` as stored, like czbenchmarks' metrics: ``allow_discrete`` is set so it
never rescales a subset on its own, and pdex is told the scale (``is_log1p``: the dataset is log-normalised
unless its control cells are integer counts, by cell-eval's ``guess_is_lognorm``). cell-eval rejects
negative expression: predicted values below 0 (a regression model's output can dip below 0) are set to 0
for these metrics only, and counted (``negative_values_clipped``).

Memory: per condition, transient copies of the control block plus the condition's true and predicted rows
(our AnnData pairs, cell-eval's polars pseudobulk frames, pdex's per-group matrices: several copies, not
yet measured at scale; on the test data EVALUATE's peak RSS went from 405 to 502 MB) and cell-eval's DE
tables of one condition (``n_genes`` rows); across conditions only the pseudobulk vectors
(``n_conditions x n_genes`` per side) and the metric values are kept.
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .types import MetricResult

#: Our metric name -> cell-eval's (registry) metric, computed per condition.
PER_CONDITION = {
    "cell_eval_overlap_at_n": "overlap_at_N",
    "cell_eval_precision_at_n": "precision_at_N",
    "cell_eval_de_direction_match": "de_direction_match",
    "cell_eval_de_spearman_lfc_sig": "de_spearman_lfc_sig",
    "cell_eval_mae": "mae",
}
#: Computed across conditions from the pseudobulks.
DISCRIMINATION = ("cell_eval_discrimination_score_l1", "discrimination_score_l1")
#: The VCC score and the cell-eval metrics it scales (cell-eval's ``vcc`` profile).
VCC_SCORE = "cell_eval_vcc_score"
VCC_METRICS = ("mae", "discrimination_score_l1", "overlap_at_N")
METRIC_NAMES = (*PER_CONDITION, DISCRIMINATION[0], VCC_SCORE)
#: pert_col / control label of the small AnnData handed to cell-eval.
PERT_COL = "condition"
#: Control cells that decide the scale (counts or log-normalised).
IS_LOG1P_SAMPLE_CELLS = 2000


def cell_eval_version() -> str:
    from importlib.metadata import version

    return version("cell-eval")


@contextmanager
def _quiet() -> Iterator[None]:
    """cell-eval and pdex log every step at INFO/WARNING (e.g. "output directory exists" per condition), and
    cell-eval 0.8.2 uses polars' deprecated string cache (a DeprecationWarning per call)."""
    import warnings

    loggers = [logging.getLogger(n) for n in ("cell_eval", "pdex")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def is_log1p(ctrl_X) -> bool:
    """Whether expression is log-normalised (not integer counts), by cell-eval's own guess on control cells."""
    import anndata as ad
    from cell_eval.utils import guess_is_lognorm

    sample = ctrl_X[:IS_LOG1P_SAMPLE_CELLS]  # the first cells tell counts from log-normalised values
    return bool(guess_is_lognorm(ad.AnnData(X=sample), validate=False))


def _pair_adata(ctrl: np.ndarray, rows: np.ndarray, condition: str, var_names: Sequence[str]):
    """Control cells then ``rows`` labelled ``condition``, as one AnnData (cell-eval's input layout)."""
    import anndata as ad
    import pandas as pd

    X = np.vstack([ctrl, rows]).astype(np.float32, copy=False)
    labels = ["ctrl"] * len(ctrl) + [condition] * len(rows)
    obs = pd.DataFrame({PERT_COL: pd.Categorical(labels)}, index=[f"c{i}" for i in range(len(X))])
    return ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=[str(v) for v in var_names]))


def predicted_cells(pred: np.ndarray, n_truth: int) -> np.ndarray:
    """The predicted cells of a condition: its rows, a single row repeated once per true cell."""
    return np.repeat(pred, n_truth, axis=0) if pred.shape[0] == 1 else pred


class CellEvalScorer:
    """Scores conditions one at a time (:meth:`add`) and gives the metrics (:meth:`results`).

    ``baseline_vector``: the reference baseline's prediction (one row, every condition) for the VCC score;
    ``None`` leaves the score out (noted).
    """

    def __init__(self, ctrl: np.ndarray, var_names: Sequence[str], log1p: bool,
                 baseline_vector: Optional[np.ndarray], n_threads: int = 1, baseline_note: str = "") -> None:
        self.ctrl = ctrl
        self.var_names = [str(v) for v in var_names]
        self.log1p = bool(log1p)
        self.baseline_vector = None if baseline_vector is None else np.asarray(baseline_vector)[None, :]
        self.baseline_note = baseline_note
        self.n_threads = int(n_threads)
        self.conditions: List[str] = []
        self.values: Dict[str, List[Optional[float]]] = {m: [] for m in PER_CONDITION.values()}
        self.base_values: Dict[str, List[Optional[float]]] = {m: [] for m in ("mae", "overlap_at_N")}
        self.bulk = {"real": [], "pred": [], "base": []}
        self.ctrl_bulk: Dict[str, np.ndarray] = {}
        self.negative_values_clipped = 0
        self._workdir = tempfile.TemporaryDirectory(prefix="czb-cell-eval-")

    def _evaluate(self, pred_cells: np.ndarray, real, condition: str, metrics: Sequence[str], de_real=None):
        """(per-condition values, {group: pseudobulk} of each side) of cell-eval on one condition."""
        from cell_eval import MetricsEvaluator, metrics_registry

        pred = _pair_adata(self.ctrl, pred_cells, condition, self.var_names)
        with _quiet():
            evaluator = MetricsEvaluator(
                adata_pred=pred, adata_real=real, de_real=de_real, control_pert="ctrl", pert_col=PERT_COL,
                num_threads=self.n_threads, outdir=self._workdir.name, allow_discrete=True,
                pdex_kwargs={"is_log1p": self.log1p},
            )
            skip = [m for m in metrics_registry.list_metrics() if m not in metrics]
            # A metric that fails for this condition is missing from the results: undefined here, noted.
            results, _ = evaluator.compute(profile="full", skip_metrics=skip, write_csv=False)
        rows = results.filter(results["perturbation"] == condition).to_dicts() if results.height else []
        row = rows[0] if rows else {}
        pair = evaluator.anndata_pair
        bulks = {}
        for side, (keys, matrix) in (("real", pair.bulk_real["_default"]), ("pred", pair.bulk_pred["_default"])):
            bulks[side] = {str(k): matrix[i] for i, k in enumerate(keys)}
        return {m: _finite(row.get(m)) for m in metrics}, bulks, evaluator

    def add(self, condition: str, truth: np.ndarray, pred: np.ndarray) -> None:
        """Score one condition: its true cells and its predicted rows."""
        real = _pair_adata(self.ctrl, truth, condition, self.var_names)
        negative = int(np.count_nonzero(pred < 0))
        if negative:
            self.negative_values_clipped += negative
            pred = np.maximum(pred, 0)
        values, bulks, evaluator = self._evaluate(predicted_cells(pred, len(truth)), real, condition,
                                                  list(PER_CONDITION.values()))
        self.conditions.append(condition)
        for metric, value in values.items():
            self.values[metric].append(value)
        self.bulk["real"].append(bulks["real"][condition])
        self.bulk["pred"].append(bulks["pred"][condition])
        self.ctrl_bulk.setdefault("real", bulks["real"]["ctrl"])
        self.ctrl_bulk.setdefault("pred", bulks["pred"]["ctrl"])
        if self.baseline_vector is not None:
            base, base_bulks, _ = self._evaluate(
                predicted_cells(self.baseline_vector, len(truth)), real, condition, ["mae", "overlap_at_N"],
                de_real=evaluator.de_comparison.real.data)
            for metric, value in base.items():
                self.base_values[metric].append(value)
            self.bulk["base"].append(base_bulks["pred"][condition])
            self.ctrl_bulk.setdefault("base", base_bulks["pred"]["ctrl"])

    def _discrimination(self, side: str) -> List[Optional[float]]:
        """cell-eval's ``discrimination_score_l1`` of every scored condition, on a pair made of the
        pseudobulks (one row per group: cell-eval's own pseudobulk of it is the row itself)."""
        from cell_eval import PerturbationAnndataPair, metrics_registry

        if len(self.conditions) < 2:
            return [None] * len(self.conditions)
        real = _pair_adata(self.ctrl_bulk["real"][None, :], np.vstack(self.bulk["real"]), "x", self.var_names)
        pred = _pair_adata(self.ctrl_bulk[side][None, :], np.vstack(self.bulk[side]), "x", self.var_names)
        labels = ["ctrl", *self.conditions]
        real.obs[PERT_COL] = labels
        pred.obs[PERT_COL] = labels
        with _quiet():
            pair = PerturbationAnndataPair(real=real, pred=pred, pert_col=PERT_COL, control_pert="ctrl")
            scores = metrics_registry.compute(DISCRIMINATION[1], pair)
        return [_finite(scores.get(c)) for c in self.conditions]

    def _vcc_score(self, discrimination: List[Optional[float]]) -> MetricResult:
        """The VCC score of the prediction against the reference baseline (means over the scored conditions)."""
        import polars as pl
        from cell_eval import score_agg_metrics

        from .embedding_tasks import ComputedMetric

        params = {"condition": "MEAN", "cell_eval_metric": "score_agg_metrics(vcc)",
                  "baseline": "perturbation_mean(train)"}
        if self.baseline_vector is None:
            return MetricResult(VCC_SCORE, None, params, note=self.baseline_note or "no reference baseline")
        if len(self.conditions) < 2:
            return MetricResult(VCC_SCORE, None, params, note="needs 2+ scored conditions (discrimination score)")
        user = {"mae": self.values["mae"], "discrimination_score_l1": discrimination,
                "overlap_at_N": self.values["overlap_at_N"]}
        base = {"mae": self.base_values["mae"], "discrimination_score_l1": self._discrimination("base"),
                "overlap_at_N": self.base_values["overlap_at_N"]}

        def agg(columns: Dict[str, List[Optional[float]]]) -> "pl.DataFrame":
            frame = pl.DataFrame({"perturbation": self.conditions,
                                  **{m: pl.Series(m, columns[m], dtype=pl.Float64) for m in VCC_METRICS}})
            return frame.drop("perturbation").describe()  # cell-eval's aggregate table (MetricPipeline)

        with _quiet():
            scored = score_agg_metrics(agg(user), agg(base)).to_dicts()
        parts = {row["metric"]: float(row["from_baseline"]) for row in scored}
        computation = {"components": {m: parts[m] for m in VCC_METRICS if m in parts},
                       "baseline_means": {m: _mean(base[m]) for m in VCC_METRICS}}
        return ComputedMetric(VCC_SCORE, parts["avg_score"], params, computation=computation)

    def results(self) -> List[MetricResult]:
        """MEAN entries (each metric's mean over the conditions where it is defined), then per condition."""
        discrimination = self._discrimination("pred")
        columns = {name: self.values[metric] for name, metric in PER_CONDITION.items()}
        columns[DISCRIMINATION[0]] = discrimination
        cell_eval_names = {**PER_CONDITION, DISCRIMINATION[0]: DISCRIMINATION[1]}
        means, per_condition = [], []
        for name, values in columns.items():
            params = {"cell_eval_metric": cell_eval_names[name]}
            defined = [v for v in values if v is not None]
            note = "" if defined else "undefined for every condition"
            if name == DISCRIMINATION[0] and len(self.conditions) < 2:
                note = "needs 2+ scored conditions"
            means.append(MetricResult(name, float(np.mean(defined)) if defined else None,
                                      {"condition": "MEAN", **params}, note=note))
            for condition, value in zip(self.conditions, values):
                per_condition.append(MetricResult(
                    name, value, {"condition": condition, **params},
                    note="" if value is not None else "undefined for this condition (e.g. no significant DE genes)"))
        return [*means, self._vcc_score(discrimination), *per_condition]

    def facts(self) -> Dict[str, Any]:
        """What the metrics rest on (for the document's ``cell_eval`` entry)."""
        return {"version": cell_eval_version(), "is_log1p": self.log1p, "fdr_threshold": 0.05,
                "vcc_baseline": "perturbation_mean(train)" if self.baseline_vector is not None else None,
                "negative_values_clipped": self.negative_values_clipped}

    def close(self) -> None:
        self._workdir.cleanup()


class GuardedCellEval:
    """A :class:`CellEvalScorer` whose failure never fails the task: the first error (building it, a
    condition, the results) stops cell-eval, its traceback goes to stderr, and :meth:`finish` gives every
    cell-eval metric as undefined with the reason (and the document's ``cell_eval`` entry the ``error``)."""

    def __init__(self, make_scorer: Callable[[], CellEvalScorer]) -> None:
        self.scorer: Optional[CellEvalScorer] = None
        self.error = ""
        try:
            self.scorer = make_scorer()
        except Exception as err:  # e.g. cell-eval not installed
            self._fail(err)

    def _fail(self, err: Exception, where: str = "") -> None:
        import traceback

        traceback.print_exc()
        self.error = f"{where}{type(err).__name__}: {err}"

    def add(self, condition: str, truth: np.ndarray, pred: np.ndarray) -> None:
        if self.scorer is None or self.error:
            return
        try:
            self.scorer.add(condition, truth, pred)
        except Exception as err:
            self._fail(err, f"condition {condition}: ")

    def finish(self, mean_note: str = "") -> Tuple[List[MetricResult], Dict[str, Any]]:
        """(metric entries, facts); ``mean_note`` is added to the MEAN entries' notes (e.g. conditions missing)."""
        entries: List[MetricResult] = []
        facts: Dict[str, Any] = {}
        if self.scorer is not None and not self.error:
            try:
                entries, facts = self.scorer.results(), self.scorer.facts()
            except Exception as err:
                self._fail(err)
        if self.scorer is not None:
            self.scorer.close()
        if self.error:
            return [MetricResult(name, None, {"condition": "MEAN"}, note=f"cell-eval not computed: {self.error}")
                    for name in METRIC_NAMES], {"error": self.error}
        for m in entries:
            if mean_note and m.params.get("condition") == "MEAN":
                m.note = "; ".join(n for n in (m.note, mean_note) if n)
        return entries, facts


def _finite(value: Any) -> Optional[float]:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None
