"""A single-cell dataset that keeps X on disk, for models that stream cells."""

from __future__ import annotations

from ...datasets.single_cell import SingleCellDataset


class BackedSingleCellDataset(SingleCellDataset):
    """``SingleCellDataset`` whose ``load_data`` opens the h5ad in backed mode by default.

    ``BaseModelImplementation.run()`` calls ``load_data()`` without arguments; a streaming model
    returns this class from ``load_dataset`` so that X is read in row slices during inference
    instead of being loaded whole. obs and var are in memory either way.
    """

    def load_data(self, backed: bool = True) -> None:
        super().load_data(backed=backed)
