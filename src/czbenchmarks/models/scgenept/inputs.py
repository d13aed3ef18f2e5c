"""The dataset view scGenePT reads: control cells in memory, every cell's obs, no truth matrices."""

from __future__ import annotations

import numpy as np

from ...datasets.single_cell import PerturbationSingleCellDataset
from ...datasets.types import DataType


class ControlCellsDataset(PerturbationSingleCellDataset):
    """A :class:`PerturbationSingleCellDataset` whose ``load_data`` keeps only what the model reads.

    The base class reads the whole file and builds a dense truth matrix per test condition; the
    model needs neither. Here the h5ad is opened backed, only the control cells are read into
    ``ANNDATA`` and ``METADATA`` holds every cell's obs; ``PERTURBATION_TRUTH`` is not set. The
    perturbation task reads the truth itself, condition by condition.
    """

    def load_data(self, backed: bool = False) -> None:
        """Fill ``ANNDATA`` (control cells, in memory) and ``METADATA`` (all cells' obs)."""
        import anndata as ad

        adata = ad.read_h5ad(self.path, backed="r")
        try:
            obs = adata.obs
            for key, label in ((self.condition_key, "Condition"), (self.split_key, "Split")):
                if key not in obs.columns:
                    raise ValueError(f"{self.path}: {label} key {key} not found in adata.obs")
            control_rows = np.flatnonzero(obs[self.condition_key].astype(str).to_numpy() == "ctrl")
            control = adata[control_rows].to_memory()
        finally:
            adata.file.close()
        self.set_input(DataType.METADATA, obs)
        self.set_input(DataType.ANNDATA, control)
