"""``BaseSingleCellValidator``: organism, obs/var keys and gene naming of a single-cell dataset."""

from __future__ import annotations

from typing import ClassVar, List

from ...datasets.base import BaseDataset
from ...datasets.checks import find_gene_ids, gene_name_error
from ...datasets.single_cell import SingleCellDataset
from ...datasets.types import Organism
from .base_model_validator import BaseModelValidator


class BaseSingleCellValidator(BaseModelValidator):
    """Validator for models that take a :class:`SingleCellDataset`.

    Subclasses set ``available_organisms``, ``required_obs_keys`` and ``required_var_keys``.
    """

    dataset_type = SingleCellDataset
    available_organisms: ClassVar[List[Organism]]
    required_obs_keys: ClassVar[List[str]]
    required_var_keys: ClassVar[List[str]]

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__name__ == "BaseModelImplementation":
            return
        for attr in ("available_organisms", "required_obs_keys", "required_var_keys"):
            if not hasattr(cls, attr):
                raise TypeError(f"Can't instantiate {cls.__name__} without {attr} class variable")

    def _validate_dataset(self, dataset: BaseDataset) -> None:
        reasons = self._reasons(dataset)
        if reasons:
            raise ValueError(reasons[0])

    def _reasons(self, dataset: BaseDataset) -> List[str]:
        reasons: List[str] = []
        if dataset.organism not in self.available_organisms:
            reasons.append(
                f"Dataset organism {dataset.organism} is not supported for {self.__class__.__name__}"
            )
        adata = dataset.adata
        missing_obs = [key for key in self.required_obs_keys if key not in adata.obs.columns]
        if missing_obs:
            reasons.append(f"Missing required obs keys: {missing_obs}")
        missing_var = [key for key in self.required_var_keys if key not in adata.var.columns]
        if missing_var:
            reasons.append(f"Missing required var keys: {missing_var}")
        if find_gene_ids(adata.var_names, adata.var, dataset.organism).ids is None:
            reasons.append(gene_name_error(dataset.organism))
        return reasons
