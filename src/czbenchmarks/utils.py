"""Utilities kept at the reference's import path (``czbenchmarks.utils.sync_s3_to_local``), and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

from .weights import sync_s3_to_local

__all__ = ["sync_s3_to_local", "write_atomic"]


def write_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary sibling, then rename it: a partial file never looks finished."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
