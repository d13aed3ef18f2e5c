"""Datasets and their typed slots."""

from .base import BaseDataset
from .single_cell import BackedSingleCellDataset, PerturbationSingleCellDataset, SingleCellDataset
from .types import DataType, DataValue, Organism

__all__ = [
    "BackedSingleCellDataset",
    "BaseDataset",
    "DataType",
    "DataValue",
    "Organism",
    "PerturbationSingleCellDataset",
    "SingleCellDataset",
]
