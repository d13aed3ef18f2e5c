"""Model API: types, validators and the implementation base class."""

from .types import ModelType

__all__ = ["ModelType"]
