"""Model validators (``czbenchmarks.models.validators``)."""

from .base_model_validator import BaseModelValidator
from .base_single_cell_model_validator import BaseSingleCellValidator, read_vocabulary

__all__ = ["BaseModelValidator", "BaseSingleCellValidator", "read_vocabulary"]
