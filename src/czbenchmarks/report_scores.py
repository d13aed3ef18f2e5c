"""Scaled scores and the ranking: every headline value placed between its task's baseline and the
metric's ideal, averaged per task and overall, with seed intervals where EVALUATE repeated the run.

Scaling (in the spirit of Open Problems, whose negative controls score 0 and positive control 1):

* **0 = the negative control**: the best baseline of the same dataset x task x metric (baselines are
  this benchmark's negative controls). A task without baselines (``cross_species``) uses the worst
  end of the metric's range, or the worst value observed when that end is unbounded.
* **1 = the positive control**: the metric's ideal value (the best end of its range in
  ``conf/metrics.yaml``), or the best value observed when that end is unbounded.
* ``scaled = (value - negative) / (positive - negative)``; the sign of the denominator carries the
  metric's direction. Unclipped per metric (below 0: worse than the baseline); the per-task and overall
  means clip each score to [0, 1] first, as Open Problems does, so one bad metric cannot swamp a mean.
* Seeds: each seed's value is scaled with the same controls, so the scaled score gets an interval
  (the affine image of the metric's interval, or a t interval over the scaled seed values), and so do
  the per-task and overall means (a t interval over the per-seed means).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Where the metric catalogue lives in a checkout (the pipeline passes its own copy to REPORT).
DEFAULT_METRIC_CATALOGUE = Path(__file__).resolve().parents[2] / "conf" / "metrics.yaml"
#: Confidence level of the intervals REPORT computes itself.
INTERVAL_LEVEL = 0.95
#: Controls closer than this cannot scale a value (the score would be noise over nothing).
CONTROL_GAP = 1e-12


@dataclass(frozen=True)
class MetricSpec:
    """One entry of ``conf/metrics.yaml``."""

    name: str
    direction: str
    range: tuple[float | None, float | None]
    description: str
    tasks: tuple[str, ...]
    czbenchmarks: str = ""
    at_worst: str = ""

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "higher"

    @property
    def ideal(self) -> float | None:
        """The best attainable value (``None``: unbounded)."""
        return self.range[1] if self.higher_is_better else self.range[0]

    @property
    def worst(self) -> float | None:
        """The worst attainable value (``None``: unbounded)."""
        return self.range[0] if self.higher_is_better else self.range[1]

    def best_of(self, values: Sequence[float]) -> float:
        return max(values) if self.higher_is_better else min(values)

    def worst_of(self, values: Sequence[float]) -> float:
        return min(values) if self.higher_is_better else max(values)


def load_metric_catalogue(path: str | Path | None = None) -> dict[str, MetricSpec]:
    """Metric name -> :class:`MetricSpec` from ``path`` (default: the checkout's ``conf/metrics.yaml``)."""
    import yaml

    source = Path(path) if path else DEFAULT_METRIC_CATALOGUE
    doc = yaml.safe_load(source.read_text()) or {}
    specs: dict[str, MetricSpec] = {}
    for name, entry in (doc.get("metrics") or {}).items():
        entry = entry or {}
        direction = entry.get("direction")
        bounds = entry.get("range", [None, None])
        if direction not in ("higher", "lower"):
            raise ValueError(f"{source}: metric '{name}' needs direction: higher | lower, got {direction!r}")
        if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
            raise ValueError(f"{source}: metric '{name}' needs range: [lo, hi] (null for an unbounded end), got {bounds!r}")
        lo, hi = (None if b is None else float(b) for b in bounds)
        if lo is not None and hi is not None and lo >= hi:
            raise ValueError(f"{source}: metric '{name}' has an empty range [{lo}, {hi}]")
        tasks = entry.get("tasks", entry.get("task", []))
        specs[name] = MetricSpec(
            name=name, direction=direction, range=(lo, hi), description=str(entry.get("description", "")),
            tasks=tuple([tasks] if isinstance(tasks, str) else tasks or []),
            czbenchmarks=str(entry.get("czbenchmarks", "") or ""), at_worst=str(entry.get("at_worst", "") or ""))
    return specs


def model_label(row: dict[str, Any]) -> str:
    """``model``, or ``BASELINE:variant`` for baselines (they all share the model name ``baseline``)."""
    if row["model"] == "baseline":
        return f"BASELINE:{row['variant']}"
    return row["model"]


def headline(row: dict[str, Any]) -> bool:
    """Rows that summarise a task: label prediction averaged over classifiers, perturbation over
    conditions; every other row. Scaled scores and the summary use only these."""
    params = row.get("metric_params") or {}
    if row["task"] == "label_prediction":
        return str(params.get("classifier", "")).startswith("MEAN")
    if row["task"] == "perturbation":
        return params.get("condition") == "MEAN"
    return True


def metric_label(row: dict[str, Any]) -> str:
    """The metric and the parameters that tell its headline variants apart (e.g. ``jaccard (subset=top20)``)."""
    params = {k: v for k, v in (row.get("metric_params") or {}).items() if k not in ("classifier", "condition")}
    return row["metric"] + (" (" + ", ".join(f"{k}={v}" for k, v in sorted(params.items())) + ")" if params else "")


def t_interval(values: Sequence[float], level: float = INTERVAL_LEVEL) -> dict[str, Any] | None:
    """Student-t interval of the mean of ``values`` (``None`` for fewer than two)."""
    clean = [float(v) for v in values if v is not None and math.isfinite(v)]
    if len(clean) < 2:
        return None
    from scipy import stats

    n = len(clean)
    mean = sum(clean) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in clean) / (n - 1))
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
    return {"low": mean - half, "high": mean + half, "level": level, "method": "t"}


def overlap(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool | None:
    """Do two intervals overlap (``None`` when either is missing)?"""
    if not a or not b:
        return None
    return a["low"] <= b["high"] and b["low"] <= a["high"]


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))


def _controls(spec: MetricSpec, rows: list[dict[str, Any]]) -> tuple[tuple[float, str] | None, tuple[float, str] | None]:
    """(negative, positive) control of one dataset x task x metric group: value and where it came from."""
    values = [r["value"] for r in rows if r["value"] is not None]
    baselines = [r for r in rows if r["model"] == "baseline" and r["value"] is not None]
    if baselines:
        best = spec.best_of([r["value"] for r in baselines])
        source = next(model_label(r) for r in baselines if r["value"] == best)
        negative: tuple[float, str] | None = (best, source)
    elif spec.worst is not None:
        negative = (spec.worst, "worst of the metric's range (the task has no baseline)")
    elif values:
        negative = (spec.worst_of(values), "worst value observed (the task has no baseline)")
    else:
        negative = None
    if spec.ideal is not None:
        positive: tuple[float, str] | None = (spec.ideal, "ideal value of the metric's range")
    elif values:
        positive = (spec.best_of(values), "best value observed (the metric has no bounded ideal)")
    else:
        positive = None
    return negative, positive


def scaled_scores(rows: list[dict[str, Any]], catalogue: dict[str, MetricSpec]) -> list[dict[str, Any]]:
    """One entry per headline row: its scaled score (and per-seed scores and interval) with the controls used."""
    groups: OrderedDict[tuple[str, str, str], list[dict[str, Any]]] = OrderedDict()
    for row in rows:
        if headline(row) and row["metric"] in catalogue:
            groups.setdefault((row["dataset"], row["task"], metric_label(row)), []).append(row)
    out = []
    for (dataset, task, label), members in groups.items():
        spec = catalogue[members[0]["metric"]]
        negative, positive = _controls(spec, members)
        for row in members:
            entry: dict[str, Any] = {
                "dataset": dataset, "task": task, "metric": row["metric"], "metric_label": label,
                "model": row["model"], "variant": row.get("variant", ""), "label": model_label(row),
                "value": row["value"], "scaled": None, "scaled_values": None, "scaled_interval": None,
                "negative_control": None if negative is None else {"value": negative[0], "source": negative[1]},
                "positive_control": None if positive is None else {"value": positive[0], "source": positive[1]},
                "note": "",
            }
            if row["value"] is None:
                entry["note"] = "no value: " + (row.get("note") or "undefined")
            elif negative is None or positive is None or abs(positive[0] - negative[0]) < CONTROL_GAP:
                entry["note"] = "not scaled: the baseline already reaches the ideal value"
            else:
                lo, span = negative[0], positive[0] - negative[0]

                def scale(v: float, lo: float = lo, span: float = span) -> float:
                    return (v - lo) / span

                entry["scaled"] = scale(row["value"])
                seeds = [v for v in (row.get("values") or []) if v is not None]
                if seeds:
                    entry["scaled_values"] = [scale(v) for v in seeds]
                interval = row.get("interval")
                if interval and interval.get("low") is not None and interval.get("high") is not None:
                    ends = sorted((scale(interval["low"]), scale(interval["high"])))
                    entry["scaled_interval"] = {**interval, "low": ends[0], "high": ends[1]}
                elif entry["scaled_values"]:
                    entry["scaled_interval"] = t_interval(entry["scaled_values"])
            out.append(entry)
    return out


def _mean_with_seeds(entries: list[tuple[float, list[float] | None]]) -> tuple[float | None, list[float] | None]:
    """Mean of clipped scores and, when every seeded entry has the same number of seeds, the per-seed
    means (an entry without seeds counts as the same value in every seed); the mean is then the mean
    of the per-seed means, so that it lies inside their interval."""
    if not entries:
        return None, None
    mean = sum(_clip(v) for v, _ in entries) / len(entries)
    lengths = {len(seeds) for _, seeds in entries if seeds}
    if len(lengths) != 1 or min(lengths) < 2:
        return mean, None
    n = lengths.pop()
    per_seed = [sum(_clip(seeds[i]) if seeds else _clip(v) for v, seeds in entries) / len(entries) for i in range(n)]
    return sum(per_seed) / n, per_seed


def ranking(rows: list[dict[str, Any]], catalogue: dict[str, MetricSpec]) -> dict[str, Any]:
    """The ``ranking`` section of ``benchmark_results.json``: scaled scores, per-model means per task,
    per task x metric and overall, the ranked models and which neighbours the intervals cannot separate."""
    scores = scaled_scores(rows, catalogue)
    tasks = list(OrderedDict.fromkeys(s["task"] for s in scores))
    columns = list(OrderedDict.fromkeys((s["task"], s["metric_label"]) for s in scores))
    labels = list(OrderedDict.fromkeys(s["label"] for s in scores))
    models = []
    for label in labels:
        mine = [s for s in scores if s["label"] == label and s["scaled"] is not None]
        per_task: dict[str, Any] = {}
        task_means: list[tuple[float, list[float] | None]] = []
        for task in tasks:
            mean, seeds = _mean_with_seeds([(s["scaled"], s["scaled_values"]) for s in mine if s["task"] == task])
            if mean is None:
                continue
            per_task[task] = {"mean": mean, "interval": t_interval(seeds) if seeds else None,
                              "n": sum(1 for s in mine if s["task"] == task)}
            task_means.append((mean, seeds))
        per_metric = {}
        for task, label_ in columns:
            mean, _ = _mean_with_seeds([(s["scaled"], None) for s in mine if (s["task"], s["metric_label"]) == (task, label_)])
            if mean is not None:
                per_metric[f"{task}/{label_}"] = mean
        overall, overall_seeds = _mean_with_seeds(task_means)
        first = next((s for s in scores if s["label"] == label), {})
        models.append({"label": label, "model": first.get("model", ""), "overall": overall,
                       "overall_interval": t_interval(overall_seeds) if overall_seeds else None,
                       "n_tasks": len(per_task), "tasks": per_task, "metrics": per_metric})
    models.sort(key=lambda m: (m["overall"] is None, -(m["overall"] or 0.0), m["label"]))
    for rank, (model, below) in enumerate(zip(models, models[1:] + [None]), start=1):
        model["rank"] = rank
        if below is None:
            model["separable_from_next"] = None
        else:
            overlapping = overlap(model["overall_interval"], below["overall_interval"])
            model["separable_from_next"] = None if overlapping is None else not overlapping
    return {
        "method": ("per dataset x task x metric: 0 = best baseline (no baseline: worst of the metric's range), "
                   "1 = the metric's ideal value (unbounded: best observed); task means and overall "
                   "(mean of task means) average scores clipped to [0, 1]; see docs/output.md"),
        "tasks": tasks,
        "columns": [f"{t}/{m}" for t, m in columns],
        "models": models,
        "scaled": scores,
    }
