"""Provenance recorded in every output: software versions, seeds, weights."""

from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from typing import Dict, Iterable

from . import __version__

#: Distributions whose versions are worth recording when their module is loaded.
TRACKED = {
    "anndata": "anndata",
    "numpy": "numpy",
    "pandas": "pandas",
    "scanpy": "scanpy",
    "scipy": "scipy",
    "sklearn": "scikit-learn",
    "torch": "torch",
    "scvi": "scvi-tools",
    "transformers": "transformers",
    "scgpt": "scgpt",
    "uce": "uce-model",
    "igraph": "igraph",
    "leidenalg": "leidenalg",
    "scib_metrics": "scib-metrics",
}


def software_versions(extra: Iterable[str] = ()) -> Dict[str, str]:
    """Versions of Python, czbenchmarks and every tracked library this process imported."""
    versions = {"python": platform.python_version(), "czbenchmarks": __version__}
    for module, dist in TRACKED.items():
        if module in sys.modules or module in extra:
            try:
                versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
    return versions


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()
