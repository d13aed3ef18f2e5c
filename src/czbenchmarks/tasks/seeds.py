"""Repeating a task's stochastic parts over several seeds (``--seeds N``).

EVALUATE scores one output with the seeds ``seed, seed + 1, ..., seed + N - 1`` in one process (the
output and the dataset are read once). Only the parts that depend on the seed are repeated:

* ``clustering``: Leiden (its ``random_state``) on one kNN graph, built once;
* ``label_prediction``: the shuffled stratified folds and the random forest;
* ``embedding`` / ``integration`` / ``cross_species``: the silhouettes' cell samples and the approximate
  kNN (pynndescent, with its recall sample) above their size thresholds (:mod:`.metrics`); below them the
  metrics are exact and computed once;
* ``perturbation``: nothing (no sampling): computed once.

Each repeated metric entry gets ``values`` (one float per seed, in the order of the document's ``seeds``;
``null`` where the metric is undefined for that seed), ``value`` = their mean, and ``interval`` = the
Student-t 95% interval of that mean over the seeds (:func:`t_interval`). A metric computed once (it does
not depend on the seed) and every metric of a one-seed run carry neither ``values`` nor ``interval``:
``value`` is then exactly today's single-seed value.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence

from .types import MetricResult

#: Confidence level of the intervals over seeds.
INTERVAL_LEVEL = 0.95


def seed_list(seed: int, n_seeds: int = 1) -> List[int]:
    """The seeds ``seed, seed + 1, ..., seed + n_seeds - 1``."""
    if int(n_seeds) < 1:
        raise ValueError(f"--seeds must be at least 1, got {n_seeds}")
    return [int(seed) + i for i in range(int(n_seeds))]


def t_interval(values: Sequence[float], level: float = INTERVAL_LEVEL) -> Optional[Dict[str, object]]:
    """Student-t interval of the mean of ``values`` (``mean +- t_{(1+level)/2, n-1} * sd / sqrt(n)``, sample
    sd): ``{"low", "high", "level", "method": "t"}``; ``None`` for fewer than two values."""
    from scipy.stats import t

    n = len(values)
    if n < 2:
        return None
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
    return {"low": mean - half, "high": mean + half, "level": level, "method": "t"}


def combine_seeds(per_seed: Sequence[Sequence[MetricResult]]) -> List[MetricResult]:
    """One metric list from the same metrics computed once per seed (same order, types and params).

    The first seed's entries are kept (their params, note and ``computation``) with ``values``, the mean as
    ``value`` and the t interval (of the seeds where the metric is defined). A single list is returned as is.
    """
    if len(per_seed) == 1:
        return list(per_seed[0])
    first = per_seed[0]
    for other in per_seed[1:]:
        if [(m.metric_type, m.params) for m in other] != [(m.metric_type, m.params) for m in first]:
            raise RuntimeError("a task returned different metrics for different seeds")
    combined = []
    for i, metric in enumerate(first):
        values = [run[i].value for run in per_seed]
        defined = [v for v in values if v is not None]
        metric.values = values
        metric.value = math.fsum(defined) / len(defined) if defined else None
        metric.interval = t_interval(defined)
        if len(defined) < len(values):
            undefined = f"undefined for {len(values) - len(defined)} of {len(values)} seeds"
            metric.note = "; ".join(n for n in (metric.note, undefined) if n)
        combined.append(metric)
    return combined


def over_seeds(run: Callable[[int], List[MetricResult]], seeds: Sequence[int],
               seed_dependent: Callable[[List[MetricResult]], bool] = lambda _: True) -> List[MetricResult]:
    """``run(seed)`` for the first seed, and for the others when ``seed_dependent(first result)``;
    combined by :func:`combine_seeds`."""
    first = run(seeds[0])
    if len(seeds) == 1 or not seed_dependent(first):
        return first
    return combine_seeds([first, *(run(s) for s in seeds[1:])])
