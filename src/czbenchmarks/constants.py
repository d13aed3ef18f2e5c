"""Paths and names shared by the package, the bin/ scripts and the pipeline.

The reference's container-path constants are kept (with the same environment overrides) for
model code that imports them; inside this pipeline a model's locations come from the command
line the Nextflow process passes instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, List, Tuple, Union

PathLike = Union[str, os.PathLike]

# -- reference (docker-era) locations, kept for compatibility ----------------------------------
INPUT_DATA_PATH_DOCKER = os.environ.get("INPUT_DATA_PATH_DOCKER", "/input/data.dill")
RAW_INPUT_DIR_PATH_DOCKER = os.environ.get("RAW_INPUT_DIR_PATH_DOCKER", "/raw")
OUTPUT_DATA_PATH_DOCKER = os.environ.get("OUTPUT_DATA_PATH_DOCKER", "/output/data.dill")
ARTIFACTS_PATH_DOCKER = os.environ.get("ARTIFACTS_PATH_DOCKER", "/artifacts")
MODEL_WEIGHTS_PATH_DOCKER = os.environ.get("MODEL_WEIGHTS_PATH_DOCKER", "/weights")
DATASETS_CACHE_PATH = os.path.expanduser(os.environ.get("DATASETS_CACHE_PATH", "~/.cz-benchmarks/datasets"))
PROCESSED_DATASETS_CACHE_PATH = os.path.expanduser(
    os.environ.get("PROCESSED_DATASETS_CACHE_PATH", "~/.cz-benchmarks/processed_datasets")
)

#: Where standalone (non-pipeline) runs keep downloaded weights; the pipeline passes --weights_dir.
MODEL_WEIGHTS_CACHE_PATH = Path(
    os.environ.get("MODEL_WEIGHTS_CACHE_PATH", "~/.cz-benchmarks/weights")
).expanduser()

#: File FETCH_WEIGHTS writes beside the weights: source, sizes, sha256, variant config.
WEIGHTS_MANIFEST = "czb_manifest.json"

#: Where a model's output h5ad keeps its embedding, and the uns key holding provenance.
EMBEDDING_OBSM_KEY = "X_emb"
PROVENANCE_UNS_KEY = "czbenchmarks"
#: Boolean obs column of a model output: False for cells the model could not embed.
EMBEDDED_OBS_KEY = "czb_embedded"

RANDOM_SEED = 42


def get_numbered_path(base_path: PathLike, number: int) -> str:
    """``/path/data.dill`` -> ``/path/data_3.dill`` (the reference's numbering of multiple inputs)."""
    base = Path(base_path)
    suffix = "".join(base.suffixes)
    stem = base.name[: len(base.name) - len(suffix)] if suffix else base.name
    return str(base.with_name(f"{stem}_{number}{suffix}"))


def get_base_name(base_path: PathLike) -> str:
    """Glob pattern matching a base path and its numbered siblings: ``data.dill`` -> ``data*.dill``."""
    base = Path(base_path)
    suffix = "".join(base.suffixes)
    stem = base.name[: len(base.name) - len(suffix)] if suffix else base.name
    return f"{stem}*{suffix}"


_NUMBER = re.compile(r"(\d+)")


def numbered_sort_key(path: PathLike) -> Tuple:
    """Sort key that compares the digit runs of a file name as numbers ("natural" order).

    The reference sorted ``data*.dill`` as text, so ``data_10`` came before ``data_2`` and
    outputs were matched to the wrong inputs once a call held 11 or more datasets. With this
    key the order is ``data``, ``data_1``, ``data_2``, ..., ``data_10``.
    """
    parts = _NUMBER.split(Path(path).name)
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in parts if part)


def sort_numbered(paths: Iterable[PathLike]) -> List[str]:
    """``paths`` in numeric order (see :func:`numbered_sort_key`), as strings."""
    return [str(p) for p in sorted(paths, key=numbered_sort_key)]
