"""Datasets and their typed slots."""

from .base import BaseDataset
from .single_cell import PerturbationSingleCellDataset, SingleCellDataset
from .types import DataType, DataValue, Organism

__all__ = [
    "BaseDataset",
    "DataType",
    "DataValue",
    "Organism",
    "PerturbationSingleCellDataset",
    "SingleCellDataset",
]
