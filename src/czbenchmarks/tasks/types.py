"""Result types of the tasks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional


@dataclass
class MetricResult:
    """One metric value; ``params`` tell apart variants of the same metric (e.g. per classifier).

    ``value`` is ``None`` when the metric is undefined for these inputs (e.g. Pearson of a
    constant); ``note`` then says why.
    """

    metric_type: str
    value: Optional[float]
    params: Dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        if self.value is not None:
            self.value = float(self.value)
            if not math.isfinite(self.value):
                self.note = self.note or "undefined for these inputs"
                self.value = None

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"metric_type": self.metric_type, "value": self.value, "params": dict(self.params)}
        if self.note:
            out["note"] = self.note
        return out


class TaskNotApplicable(ValueError):
    """The dataset(s) cannot support the task (EVALUATE writes ``status: "not_applicable"``, not an error)."""
