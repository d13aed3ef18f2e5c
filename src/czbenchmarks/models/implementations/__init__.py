"""Model implementation base class (``czbenchmarks.models.implementations``)."""

from .base_model_implementation import BaseModelImplementation

__all__ = ["BaseModelImplementation"]
