"""Model identifiers (``czbenchmarks.models.types``)."""

from __future__ import annotations

import os
import re
from enum import Enum, EnumMeta
from typing import Any

_MODEL_TYPE_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
#: Set by the pipeline's processes to the registry entry's ``model_type`` (comma list allowed).
REGISTERED_ENV = "CZB_MODEL_TYPE"


class _ModelTypeMeta(EnumMeta):
    """``ModelType.MYMODEL`` for a type the model registry declares (czbenchmarks' developer guide
    writes it so after "registering the model in ModelType"; here the registry entry registers it)."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        declared = {n.strip().upper() for n in os.environ.get(REGISTERED_ENV, "").split(",") if n.strip()}
        if name in declared and _MODEL_TYPE_NAME.fullmatch(name):
            return cls(name)
        raise AttributeError(
            f"ModelType has no member {name!r}: declare it as `model_type: {name}` in the model's entry in "
            f"conf/models.yaml (the pipeline then registers it), or write ModelType({name!r})"
        )


class ModelType(Enum, metaclass=_ModelTypeMeta):
    """The models the benchmark knows. ``BASELINE`` marks baseline outputs (PCA, control mean, ...).

    A member equals its name as a string, so ``"SCVI"`` works as a lookup key, and ``str()``
    gives the name. A model added through the registry needs no edit here:
    ``ModelType("MY_MODEL")`` returns a stable member for any upper-case identifier
    (``ModelType("scvi")`` returns the existing ``ModelType.SCVI``).
    """

    BASELINE = "BASELINE"
    SCVI = "SCVI"
    SCGPT = "SCGPT"
    GENEFORMER = "GENEFORMER"
    SCGENEPT = "SCGENEPT"
    UCE = "UCE"
    AIDO = "AIDO"
    TRANSCRIPTFORMER = "TRANSCRIPTFORMER"

    @classmethod
    def _missing_(cls, value: object) -> ModelType | None:
        """Look names up case-insensitively; register a new member for an unknown identifier."""
        if not isinstance(value, str):
            return None
        text = value.strip().upper()
        if text in cls.__members__:
            return cls.__members__[text]
        if text in cls._value2member_map_:
            return cls._value2member_map_[text]
        if not _MODEL_TYPE_NAME.fullmatch(text):
            return None
        member = object.__new__(cls)
        member._name_ = text
        member._value_ = text
        cls._value2member_map_[text] = member
        return member

    def __hash__(self) -> int:
        return hash(self._name_)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return self._name_ == other
        if isinstance(other, ModelType):
            return self._name_ == other._name_
        return NotImplemented

    def __str__(self) -> str:
        return self._name_

    def __repr__(self) -> str:
        return f"ModelType.{self._name_}"


#: Outputs attached to a dataset: ``{model_type (None for un-attributed): {DataType: value}}``.
ModelOutputs = dict[ModelType | None, dict[Any, Any]]
