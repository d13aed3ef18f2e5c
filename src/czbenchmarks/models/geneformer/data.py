"""A single-cell dataset whose X stays on disk, so that Geneformer reads it in row batches."""

from __future__ import annotations

from ...datasets.single_cell import SingleCellDataset


class BackedSingleCellDataset(SingleCellDataset):
    """``SingleCellDataset`` whose ``load_data()`` opens the h5ad in backed (read-only) mode.

    ``BaseModelImplementation.run()`` calls ``load_data()`` without arguments; returning this
    class from ``load_dataset`` keeps the count matrix out of memory (obs and var are loaded).
    """

    def load_data(self, backed: bool = True) -> None:
        super().load_data(backed=backed)
