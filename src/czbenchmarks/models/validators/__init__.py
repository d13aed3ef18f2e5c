"""Model validators."""

from .base_model_validator import BaseModelValidator
from .base_single_cell_model_validator import BaseSingleCellValidator

__all__ = ["BaseModelValidator", "BaseSingleCellValidator"]
