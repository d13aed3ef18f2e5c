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
    """An h5ad file of one organism. ``load_data`` fills ``ANNDATA`` and ``METADATA``.

    ``counts_location`` (keyword, ``""`` by default) names the matrix holding the raw counts
    (``X``, ``raw.X`` or ``layers/<name>``, as VALIDATE found it; see
    :mod:`czbenchmarks.datasets.inputs`); :attr:`counts` reads it. Empty: detected on first use.
    """

    #: Where the raw counts are (VALIDATE passes it; ``""``: detect once, on first use).
    counts_location: str = ""
    #: The reference's rule: ``validate()`` refuses gene names without the organism's Ensembl prefix.
    #: ``BaseModelImplementation.run`` lifts it for models whose validator reads other identifiers
    #: (``gene_identifiers`` other than ``"ensembl"``: symbols, mapped symbols, any).
    require_gene_ids: bool = True

    def __init__(self, path: str, organism: Organism | str, **kwargs: Any) -> None:
        super().__init__(path, organism, **kwargs)
        self._counts_finding = None

    @property
    def counts_finding(self):
        """Where the counts are: the location given, or detected once from a sample of rows."""
        from .inputs import find_counts_in_adata

        if self._counts_finding is None:
            self._counts_finding = find_counts_in_adata(self.adata, self.counts_location)
        return self._counts_finding

    @property
    def counts(self):
        """The count matrix models read (``X``, ``raw.X`` or a layer; on disk for a backed dataset)."""
        from .inputs import counts_matrix

        location = self.counts_location or self.counts_finding.location
        return counts_matrix(self.adata, location)

    def gene_symbols(self):
        """The dataset's gene symbols (``var['feature_name']``, or symbol ``var_names``); ``ValueError`` if none."""
        from .inputs import find_gene_symbols, gene_symbols_error

        found = find_gene_symbols(self.adata.var_names, self.adata.var, self.organism.prefix)
        if found.symbols is None:
            raise ValueError(gene_symbols_error())
        return found

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

        Raises ``ValueError`` for a missing AnnData or organism and, while ``require_gene_ids``
        (the default, as the reference), for gene names without the organism's prefix (in
        ``var_names`` and in ``var['ensembl_id']``). Counts that are not raw only log a warning, as
        some models take normalised data (``requires_raw_counts`` on the validator decides).
        """
        if DataType.ANNDATA not in self._inputs:
            raise ValueError("Dataset does not contain anndata object")
        if DataType.ORGANISM not in self._inputs:
            raise ValueError("Organism is not specified")
        if not isinstance(self.organism, Organism):
            raise ValueError("Organism is not a valid Organism enum")
        adata = self.adata
        if self.counts_location:
            values, _ = sample_rows(self.counts)
            not_counts = bool(count_problems(values))
        else:
            not_counts = not self.counts_finding.is_counts
        if not_counts:
            logger.warning(
                "Dataset X matrix does not contain raw counts. Some models may require raw counts as "
                "input. Check the corresponding model card for more details."
            )
        if find_gene_ids(adata.var_names, adata.var, self.organism).ids is None:
            if self.require_gene_ids:
                raise ValueError(gene_name_error(self.organism))
            logger.info("%s: %s", self.path, gene_name_error(self.organism))


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
