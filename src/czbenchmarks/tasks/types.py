"""Result types of the tasks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class MetricResult:
    """One metric value; ``params`` tell apart variants of the same metric (e.g. per classifier).

    ``value`` is ``None`` when the metric is undefined for these inputs (e.g. Pearson of a
    constant); ``note`` then says why. Computed over several seeds (:mod:`.seeds`): ``values`` per seed,
    ``value`` their mean and ``interval`` the t interval of the mean.
    """

    metric_type: str
    value: Optional[float]
    params: Dict[str, Any] = field(default_factory=dict)
    note: str = ""
    values: Optional[List[Optional[float]]] = None
    interval: Optional[Dict[str, Any]] = None

    def __post_init__(self) -> None:
        if self.value is not None:
            self.value = float(self.value)
            if not math.isfinite(self.value):
                self.note = self.note or "undefined for these inputs"
                self.value = None

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"metric_type": self.metric_type, "value": self.value, "params": dict(self.params)}
        if self.values is not None:
            out["values"] = list(self.values)
        if self.interval is not None:
            out["interval"] = dict(self.interval)
        if self.note:
            out["note"] = self.note
        return out


class TaskNotApplicable(ValueError):
    """The dataset(s) cannot support the task (EVALUATE writes ``status: "not_applicable"``, not an error)."""
