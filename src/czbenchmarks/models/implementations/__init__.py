"""Model implementation base class."""

from .base_model_implementation import BaseModelImplementation

__all__ = ["BaseModelImplementation"]
