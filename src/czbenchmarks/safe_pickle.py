"""Restricted unpickling for the pickles that ship with model weights.

Geneformer's gene dictionaries, UCE's ``species_offsets.pkl`` and scGenePT's gene-embedding tables
are pickles. Weights can come from a mirror, and an ordinary ``pickle.load`` runs whatever callable
a pickle names, so a tampered file could execute code. :func:`load_pickle` admits only plain data:
the builtin containers and scalars, and numpy scalars and arrays as numpy pickles them (the real
median dictionaries hold ``numpy.float64`` values, pickled through ``numpy.core.multiarray.scalar``
and ``numpy.dtype``). Anything else is refused with :class:`UnsafePickleError` before it is called.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import gzip
import os
import pickle
from typing import Any, Callable, Dict, Optional, Tuple, Union

PathLike = Union[str, "os.PathLike[str]"]

#: Builtins a data pickle may name (protocols < 4 spell sets, frozensets and bytes through them).
_BUILTINS = ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray",
             "int", "float", "complex", "bool")


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle names a callable outside the plain-data allow-list."""


def _allowed_globals() -> Dict[Tuple[str, str], Any]:
    """(module, name) -> object for every global a data pickle may reference."""
    import builtins
    import collections

    import numpy as np

    try:  # numpy >= 2 moved the internals to numpy._core; old pickles still name numpy.core
        from numpy._core import multiarray, numeric
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]

    allowed: Dict[Tuple[str, str], Any] = {("builtins", name): getattr(builtins, name) for name in _BUILTINS}
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    allowed[("_codecs", "encode")] = codecs.encode  # protocols < 3 spell bytes as encode(str, "latin1")
    allowed[("numpy", "dtype")] = np.dtype
    allowed[("numpy", "ndarray")] = np.ndarray
    for package in ("numpy.core", "numpy._core"):
        # scalar: numpy scalars; _reconstruct: arrays (protocols < 5); _frombuffer: arrays (protocol 5,
        # which refuses object dtypes, so it cannot smuggle objects in).
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` resolves only the plain-data allow-list."""

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file)
        self.source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (__builtin__.set in protocols < 3), mapped as pickle's own fix_imports does.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.source}: refused to unpickle {module}.{name}; a model file may hold only plain data "
                "(dict, list, tuple, set, str, numbers, numpy scalars and arrays)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: refused a persistent reference ({pid!r}) in a data pickle")


def load_pickle(path: PathLike, opener: Optional[Callable[..., Any]] = None) -> Any:
    """Unpickle ``path`` allowing plain data only; ``.gz`` files are decompressed.

    Raises:
        UnsafePickleError: the pickle names anything but builtin containers/scalars or numpy
            scalars/arrays (nothing it names has been called).
        ValueError: the file is not a readable pickle.
    """
    path_str = os.fspath(path)
    if opener is None:
        opener = gzip.open if path_str.endswith(".gz") else open
    with opener(path_str, "rb") as handle:
        try:
            return RestrictedUnpickler(handle, path_str).load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError) as err:
            raise ValueError(f"{path_str}: not a readable data pickle ({type(err).__name__}: {err})") from err
