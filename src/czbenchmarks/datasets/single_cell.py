"""Single-cell datasets stored as h5ad files."""

from __future__ import annotations

import logging
from typing import Any, Dict

from .base import BaseDataset
from .checks import (
    count_problems,
    find_gene_ids,
    gene_name_error,
    perturbation_condition_problems,
    sample_rows,
    split_problems,
)
from .types import DataType, Organism

logger = logging.getLogger(__name__)


class SingleCellDataset(BaseDataset):
    """An h5ad file of one organism. ``load_data`` fills ``ANNDATA`` and ``METADATA``."""

    def __init__(self, path: str, organism: Organism | str, **kwargs: Any) -> None:
        super().__init__(path, organism, **kwargs)

    @property
    def adata(self):
        """The ``ANNDATA`` input (``KeyError`` before :meth:`load_data`)."""
        return self.get_input(DataType.ANNDATA)

    def load_data(self, backed: bool = False) -> None:
        """Read the h5ad into ``ANNDATA`` and its ``obs`` into ``METADATA``.

        ``backed=True`` reads obs/var only and leaves X on disk (see
        :func:`czbenchmarks.datasets.h5ad.open_backed`), for metadata checks of large files.
        """
        if backed:
            from .h5ad import open_backed

            adata = open_backed(self.path)
        else:
            import anndata as ad

            adata = ad.read_h5ad(self.path)
        self.set_input(DataType.ANNDATA, adata)
        self.set_input(DataType.METADATA, adata.obs)

    def unload_data(self) -> None:
        """Drop ``ANNDATA`` and ``METADATA`` (closing a backed file); organism and outputs stay."""
        from .h5ad import close_backed

        adata = self._inputs.pop(DataType.ANNDATA, None)
        if adata is not None:
            close_backed(adata)
        self._inputs.pop(DataType.METADATA, None)

    @property
    def gene_ids(self):
        """The dataset's organism-prefixed gene IDs (``var_names`` or ``var['ensembl_id']``).

        Unlike the reference, ``var_names`` are never rewritten behind the caller's back.
        """
        adata = self.adata
        found = find_gene_ids(adata.var_names, adata.var, self.organism)
        if found.ids is None:
            raise ValueError(gene_name_error(self.organism))
        return found.ids

    def _validate(self) -> None:
        """The reference's checks, without its side effect on ``var_names``.

        Raises ``ValueError`` for a missing AnnData or organism and for gene names without
        the organism's prefix (in ``var_names`` and in ``var['ensembl_id']``); non-raw counts
        only log a warning, as some models take normalised data.
        """
        if DataType.ANNDATA not in self._inputs:
            raise ValueError("Dataset does not contain anndata object")
        if DataType.ORGANISM not in self._inputs:
            raise ValueError("Organism is not specified")
        if not isinstance(self.organism, Organism):
            raise ValueError("Organism is not a valid Organism enum")
        adata = self.adata
        values, _ = sample_rows(adata.X)
        if count_problems(values):
            logger.warning(
                "Dataset X matrix does not contain raw counts. Some models may require raw counts as "
                "input. Check the corresponding model card for more details."
            )
        self.gene_ids  # noqa: B018 - raises with the reference's message when no prefixed IDs exist


class BackedSingleCellDataset(SingleCellDataset):
    """``SingleCellDataset`` whose ``load_data()`` opens the h5ad backed: obs and var in memory, X on disk.

    Models that stream cells (``BaseModelImplementation.streams_input``) get this class, so the
    count matrix is read in row slices during inference instead of being loaded whole.
    """

    def load_data(self, backed: bool = True) -> None:
        super().load_data(backed=backed)


class PerturbationSingleCellDataset(SingleCellDataset):
    """A Perturb-seq h5ad: a condition column (``ctrl``, ``G+ctrl``, ``G1+G2``) and a split column.

    After ``load_data`` the ``ANNDATA`` slot holds the control cells only and
    ``PERTURBATION_TRUTH`` maps each test condition to its cells' expression.
    """

    def __init__(
        self,
        path: str,
        organism: Organism | str,
        condition_key: str = "condition",
        split_key: str = "split",
        **kwargs: Any,
    ) -> None:
        super().__init__(path, organism, **kwargs)
        self.set_input(DataType.CONDITION_KEY, condition_key)
        self.set_input(DataType.SPLIT_KEY, split_key)

    @property
    def condition_key(self) -> str:
        return self.get_input(DataType.CONDITION_KEY)

    @property
    def split_key(self) -> str:
        return self.get_input(DataType.SPLIT_KEY)

    @property
    def perturbation_truth(self) -> Dict[str, Any]:
        return self.get_input(DataType.PERTURBATION_TRUTH)

    def load_data(self, backed: bool = False) -> None:
        """Read the h5ad; keep control cells in ``ANNDATA`` and test conditions in ``PERTURBATION_TRUTH``.

        ``METADATA`` keeps the obs of every cell. ``backed`` is accepted for signature
        compatibility; the truth matrices need X in memory.
        """
        import pandas as pd
        import scipy.sparse as sp

        super().load_data(backed=False)
        adata = self.adata
        obs = adata.obs
        for key, label in ((self.condition_key, "Condition"), (self.split_key, "Split")):
            if key not in obs.columns:
                raise ValueError(f"{label} key {key} not found in adata.obs")
        conditions = obs[self.condition_key].astype(str)
        test_conditions = sorted(set(conditions[obs[self.split_key].astype(str) == "test"]) - {"ctrl"})
        truth = {}
        for condition in test_conditions:
            subset = adata[(conditions == condition).to_numpy()]
            matrix = subset.X.toarray() if sp.issparse(subset.X) else subset.X
            truth[condition] = pd.DataFrame(matrix, index=subset.obs_names, columns=adata.var_names)
        self.set_input(DataType.PERTURBATION_TRUTH, truth)
        self.set_input(DataType.ANNDATA, adata[(conditions == "ctrl").to_numpy()].copy())

    def unload_data(self) -> None:
        """Drop AnnData, metadata and truth."""
        super().unload_data()
        self._inputs.pop(DataType.PERTURBATION_TRUTH, None)

    def _validate(self) -> None:
        """Single-cell checks, then condition format and split values over all cells."""
        super()._validate()
        obs = self.get_input(DataType.METADATA)
        for key, label in ((self.condition_key, "Condition"), (self.split_key, "Split")):
            if key not in obs.columns:
                raise ValueError(f"{label} key {key} not found in adata.obs")
        problems = split_problems(obs[self.split_key]) + perturbation_condition_problems(obs[self.condition_key])
        if problems:
            raise ValueError("; ".join(problems))
