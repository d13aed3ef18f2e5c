"""Pure-Python stand-in for the parts of ``torchtext`` that scgpt 0.2.4 uses (``torchtext.vocab``).

Not the real torchtext: it exists so scgpt imports with a modern torch. See ``vocab.py``.
"""

from . import vocab

__version__ = "0.0.0+czbenchmarks.shim"

__all__ = ["vocab"]
