"""``BaseDataset``: typed inputs and per-model outputs around one data file."""

from __future__ import annotations

import os
import typing
from abc import ABC, abstractmethod
from typing import Any, Dict, Optional

from ..models.types import ModelType
from .types import DataType, DataValue, Organism


def _check_type(value: Any, expected: Any, what: str) -> None:
    """isinstance check that understands ``Dict[K, V]``, ``tuple[A, B]`` and other typing generics.

    Raises:
        TypeError: ``"<what> has incorrect type: expected <T>, got <type>"`` (or the
            ``Dict key``/``Dict value``/``Tuple item`` variants).
    """
    origin = typing.get_origin(expected)
    if origin is None:
        if not isinstance(value, expected):
            raise TypeError(f"{what} has incorrect type: expected {expected}, got {type(value)}")
        return
    if not isinstance(value, origin):
        raise TypeError(f"{what} has incorrect type: expected {expected}, got {type(value)}")
    args = typing.get_args(expected)
    if origin is dict and len(args) == 2:
        key_type, value_type = args
        for key, item in value.items():
            if not isinstance(key, key_type):
                raise TypeError(f"Dict key has incorrect type: expected {key_type}, got {type(key)}")
            if not isinstance(item, value_type):
                raise TypeError(f"Dict value has incorrect type: expected {value_type}, got {type(item)}")
    elif origin is tuple and args and Ellipsis not in args:
        if len(value) != len(args):
            raise TypeError(f"{what} has incorrect type: expected {expected}, got a tuple of {len(value)} items")
        for index, (item, item_type) in enumerate(zip(value, args)):
            if not isinstance(item, item_type):
                raise TypeError(
                    f"Tuple item {index} of {what} has incorrect type: expected {item_type}, got {type(item)}"
                )


class BaseDataset(ABC):
    """A dataset file plus the typed inputs read from it and the outputs models attach to it."""

    def __init__(self, path: str, organism: Organism | str, **kwargs: Any) -> None:
        self.path = os.path.expanduser(str(path))
        self._inputs: Dict[DataType, DataValue] = {}
        self._outputs: Dict[Optional[ModelType], Dict[DataType, DataValue]] = {}
        self.kwargs = kwargs
        for key, value in kwargs.items():
            setattr(self, key, value)
        if isinstance(organism, str):
            organism = Organism.from_name(organism)
        self.set_input(DataType.ORGANISM, organism)

    @property
    def inputs(self) -> Dict[DataType, DataValue]:
        """The typed inputs (``DataType`` -> value)."""
        return self._inputs

    @property
    def outputs(self) -> Dict[Optional[ModelType], Dict[DataType, DataValue]]:
        """The outputs models attached (``ModelType`` -> ``DataType`` -> value)."""
        return self._outputs

    @property
    def organism(self) -> Organism:
        """The dataset's :class:`Organism`."""
        return self.get_input(DataType.ORGANISM)

    def set_input(self, data_type: DataType, value: DataValue) -> None:
        """Store an input; output-only types and wrongly typed values are refused."""
        if not data_type.is_input:
            raise ValueError(f"Cannot set output type as input: {data_type.name}")
        _check_type(value, data_type.dtype, f"Input {data_type.name}")
        self._inputs[data_type] = value

    def set_output(self, model_type: Optional[ModelType], data_type: DataType, value: DataValue) -> None:
        """Store a model's output; input-only types and wrongly typed values are refused."""
        if data_type.is_input:
            raise ValueError(f"Cannot set input type as output: {data_type.name}")
        _check_type(value, data_type.dtype, f"Output {data_type.name}")
        if isinstance(model_type, str):
            model_type = ModelType(model_type)
        self._outputs.setdefault(model_type, {})[data_type] = value

    def get_input(self, data_type: DataType) -> DataValue:
        """The input stored for ``data_type``; ``KeyError("Input <NAME> not found")`` when absent."""
        if data_type not in self._inputs:
            raise KeyError(f"Input {data_type.name} not found")
        return self._inputs[data_type]

    def get_output(self, model_type: Optional[ModelType], data_type: DataType) -> DataValue:
        """A model's output; ``KeyError`` naming the model (and the data type) when absent.

        ``model_type`` may be given as its name (``"SCVI"``).
        """
        name = getattr(model_type, "name", str(model_type))
        if model_type not in self._outputs:
            raise KeyError(f"Outputs for model {name} not found")
        if data_type not in self._outputs[model_type]:
            raise KeyError(f"Output {data_type.name} not found for model {name}")
        return self._outputs[model_type][data_type]

    def validate(self) -> None:
        """Check the file exists, re-check every slot's type, then the subclass's own rules."""
        if not os.path.exists(self.path):
            raise ValueError(f"Dataset path does not exist: {self.path}")
        for data_type, value in self._inputs.items():
            _check_type(value, data_type.dtype, f"Input {data_type.name}")
        for outputs in self._outputs.values():
            for data_type, value in outputs.items():
                _check_type(value, data_type.dtype, f"Output {data_type.name}")
        self._validate()

    @staticmethod
    def _validate_type(value: Any, expected_type: Any, type_name: str) -> None:
        """The reference's name for the typed check used by ``set_input``/``set_output``."""
        _check_type(value, expected_type, type_name)

    def serialize(self, path: str) -> str:
        """Write the dataset object (inputs, outputs) to ``path`` (``.dill`` appended if missing).

        Uses dill when installed (as the reference), pickle otherwise. Returns the path written.
        """
        if not path.endswith(".dill"):
            path = f"{path}.dill"
        try:
            import dill as pickler
        except ImportError:
            import pickle as pickler
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as handle:
            pickler.dump(self, handle)
        return path

    @staticmethod
    def deserialize(path: str) -> "BaseDataset":
        """Read a dataset written by :meth:`serialize`; ``FileNotFoundError`` naming the path if absent."""
        if not path.endswith(".dill"):
            path = f"{path}.dill"
        if not os.path.exists(path):
            raise FileNotFoundError(f"Dataset file not found at {path}")
        try:
            import dill as pickler
        except ImportError:
            import pickle as pickler
        with open(path, "rb") as handle:
            return pickler.load(handle)

    @abstractmethod
    def load_data(self) -> None:
        """Read the data file into the input slots."""

    @abstractmethod
    def unload_data(self) -> None:
        """Drop the large input slots (keeps path, organism and outputs)."""

    @abstractmethod
    def _validate(self) -> None:
        """Subclass-specific checks; raise ``ValueError`` on invalid data."""
