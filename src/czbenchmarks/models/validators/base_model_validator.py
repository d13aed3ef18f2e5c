"""``BaseModelValidator``: does a model accept a dataset?"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from ...datasets.base import BaseDataset
from ...datasets.types import DataType
from ..types import ModelType


class BaseModelValidator(ABC):
    """Checks a dataset against a model's requirements.

    Subclasses set ``dataset_type`` and ``model_type`` and implement ``_validate_dataset``
    (raise ``ValueError``); they may override the ``inputs``/``outputs`` properties. A model mixes its
    validator in before :class:`BaseModelImplementation`::

        class MyModel(MyValidator, BaseModelImplementation): ...

    Differences from the reference (its known defects): a dataset of a *subclass* of
    ``dataset_type`` is accepted (the reference compared exact classes), and
    :meth:`incompatibility_reasons` lists every reason instead of stopping at the first.
    """

    dataset_type: ClassVar[type[BaseDataset]]
    model_type: ClassVar[ModelType]

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__name__ == "BaseModelImplementation":
            return
        if not hasattr(cls, "dataset_type"):
            raise TypeError(f"Can't instantiate {cls.__name__} without dataset_type class variable")

    @property
    def inputs(self) -> set[DataType]:
        """Dataset slots the model reads; by default the expression matrix and the cell metadata.

        Overridable as in the reference; a default (which the reference lacked) lets a model written
        exactly as czbenchmarks' developer guide shows, without these properties, run.
        """
        return {DataType.ANNDATA, DataType.METADATA}

    @property
    def outputs(self) -> set[DataType]:
        """Dataset slots the model writes; by default a cell embedding."""
        return {DataType.EMBEDDING}

    @abstractmethod
    def _validate_dataset(self, dataset: BaseDataset) -> None:
        """Model-specific checks; raise ``ValueError`` when the dataset does not fit."""

    def validate_dataset(self, dataset: BaseDataset) -> None:
        """Raise ``ValueError`` with every reason the dataset does not fit this model (``"; "``-joined)."""
        reasons = self.incompatibility_reasons(dataset)
        if reasons:
            raise ValueError("; ".join(reasons))

    def incompatibility_reasons(self, dataset: BaseDataset) -> list[str]:
        """Every reason the dataset does not fit (empty list: compatible).

        Order: dataset type (``isinstance``, so subclasses pass), required inputs, then the
        validator's own checks (:meth:`_reasons`).
        """
        if not isinstance(dataset, self.dataset_type):
            return [
                f"Dataset type mismatch. Expected {self.dataset_type.__name__}, got {type(dataset).__name__}"
            ]
        missing = self.inputs - set(dataset.inputs.keys())
        if missing:
            return [f"Missing required inputs: {sorted(str(m) for m in missing)}"]
        return self._reasons(dataset)

    def _reasons(self, dataset: BaseDataset) -> list[str]:
        """The validator's own reasons; by default the ``ValueError`` of ``_validate_dataset``."""
        try:
            self._validate_dataset(dataset)
        except ValueError as err:
            return [str(err)]
        return []
