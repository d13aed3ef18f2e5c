"""Model API: types, validators and the implementation base class.

Import paths follow czbenchmarks: ``czbenchmarks.models.types.ModelType``,
``czbenchmarks.models.validators.{BaseModelValidator, BaseSingleCellValidator}``,
``czbenchmarks.models.implementations.base_model_implementation.BaseModelImplementation``.
"""

from .types import ModelOutputs, ModelType

__all__ = ["ModelOutputs", "ModelType"]
