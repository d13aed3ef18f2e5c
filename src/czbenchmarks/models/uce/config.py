"""UCE variant settings: ``containers/uce/config.yaml``, overridable per weights folder.

Each variant block of the config holds the reference's hyperparameters (``nlayers``,
``d_model``, ``nhead``, ``d_hid``, ``token_dim``, ``output_dim``, ``pad_length``,
``sample_size``, ``CHROM_TOKEN_OFFSET``, the special token indices, ``batch_size``, the
``filter`` step's thresholds) plus the weight URIs the pipeline fetches. A weights folder may
carry ``uce_config.json`` with keys that replace the variant's (the tiny test checkpoint uses it
for its small dimensions), so one loader serves real and tiny checkpoints.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

#: czbenchmarks' default variant.
DEFAULT_VARIANT = "4l"
#: Environment variable naming the config file (beats the search, loses to --model_config).
CONFIG_ENV = "CZB_UCE_CONFIG"
#: Optional file in a weights folder whose keys replace the variant's settings.
OVERRIDE_FILE = "uce_config.json"
#: Sub-folder of the weights folder holding UCE's token, offset, chromosome and protein files.
MODEL_FILES_DIR = "model_files"

#: Settings inference needs, with the reference's values where a variant leaves one out.
DEFAULTS: Dict[str, Any] = {
    "d_model": 1280,
    "nhead": 20,
    "d_hid": 5120,
    "token_dim": 5120,
    "output_dim": 1280,
    "dropout": 0.05,
    "pad_length": 1536,
    "sample_size": 1024,
    "pad_token_idx": 0,
    "chrom_token_left_idx": 1,
    "chrom_token_right_idx": 2,
    "cls_token_idx": 3,
    "CHROM_TOKEN_OFFSET": 143574,
    "n_chrom_tokens": 1895,
    "chrom_token_seed": 23,
    "batch_size": 40,
    "filter": True,
    "min_cells": 10,
    "min_genes": 25,
}
#: Keys a variant must give itself (no default).
REQUIRED_KEYS = ("model_filename", "nlayers")
#: Integer settings (checked after merging).
INT_KEYS = (
    "nlayers", "d_model", "nhead", "d_hid", "token_dim", "output_dim", "pad_length", "sample_size",
    "pad_token_idx", "chrom_token_left_idx", "chrom_token_right_idx", "cls_token_idx",
    "CHROM_TOKEN_OFFSET", "n_chrom_tokens", "chrom_token_seed", "batch_size", "min_cells", "min_genes",
)


def config_candidates(script: Optional[Union[str, Path]] = None) -> List[Path]:
    """Where the config is looked for: ``$CZB_UCE_CONFIG``, the repository layout next to
    ``script`` (``bin/`` beside ``containers/``), the package's repository, ``/app/config.yaml``."""
    found: List[Path] = []
    if os.environ.get(CONFIG_ENV):
        found.append(Path(os.environ[CONFIG_ENV]))
    if script is not None:
        found.append(Path(script).resolve().parent.parent / "containers" / "uce" / "config.yaml")
    found.append(Path(__file__).resolve().parents[4] / "containers" / "uce" / "config.yaml")
    found.append(Path("/app/config.yaml"))
    return found


def find_config(explicit: Optional[Union[str, Path]] = None, script: Optional[Union[str, Path]] = None) -> Path:
    """The config file: ``explicit`` when given, else the first candidate that exists.

    Raises:
        FileNotFoundError: no config found (the message lists where it looked).
    """
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"UCE config not found: {path}")
        return path
    for path in config_candidates(script):
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"UCE config.yaml not found; pass --model_config or set {CONFIG_ENV} "
        f"(looked in: {', '.join(str(p) for p in config_candidates(script))})"
    )


def load_config(path: Union[str, Path]) -> Dict[str, Any]:
    """The whole config as plain containers (interpolations resolved)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(str(path)), resolve=True)  # type: ignore[return-value]


def variant_settings(
    config: Dict[str, Any], variant: str, weights_dir: Optional[Union[str, Path]] = None
) -> Dict[str, Any]:
    """The inference settings of ``variant``: defaults < the config's block < ``uce_config.json``.

    Raises:
        ValueError: unknown variant, a required key missing, or a non-integer where an integer
            belongs.
    """
    variants = config.get("models") or {}
    if variant not in variants:
        raise ValueError(f"Model {variant} not found in config. Variants: {', '.join(sorted(map(str, variants)))}")
    settings: Dict[str, Any] = {**DEFAULTS, **dict(variants[variant] or {})}
    overrides = read_overrides(weights_dir) if weights_dir else {}
    settings.update(overrides)
    settings["overrides"] = sorted(overrides)
    missing = [key for key in REQUIRED_KEYS if key not in settings]
    if missing:
        raise ValueError(f"UCE variant '{variant}' lacks {', '.join(missing)}")
    for key in INT_KEYS:
        value = settings[key]
        if isinstance(value, bool) or int(value) != value:
            raise ValueError(f"UCE setting {key} must be an integer, got {value!r}")
        settings[key] = int(value)
    return settings


def read_overrides(weights_dir: Union[str, Path]) -> Dict[str, Any]:
    """The ``uce_config.json`` of a weights folder (``{}`` when there is none).

    Raises:
        ValueError: the file is not a JSON object.
    """
    path = Path(weights_dir) / OVERRIDE_FILE
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of UCE settings")
    return data
