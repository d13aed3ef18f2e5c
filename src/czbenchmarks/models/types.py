"""Model identifiers."""

from __future__ import annotations

from enum import Enum
from typing import Any, Dict


class ModelType(Enum):
    """The models the benchmark knows. ``BASELINE`` marks baseline outputs (PCA, control mean, ...).

    A member equals its name as a string, so ``"SCVI"`` works as a lookup key.
    """

    BASELINE = "BASELINE"
    SCVI = "SCVI"
    SCGPT = "SCGPT"
    GENEFORMER = "GENEFORMER"
    SCGENEPT = "SCGENEPT"
    UCE = "UCE"
    AIDO = "AIDO"
    TRANSCRIPTFORMER = "TRANSCRIPTFORMER"

    def __hash__(self) -> int:
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return self.name == other
        return Enum.__eq__(self, other)

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"ModelType.{self.name}"


ModelOutputs = Dict[ModelType, Dict[Any, Any]]
