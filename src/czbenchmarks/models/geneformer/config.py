"""Geneformer variant settings, read from ``containers/geneformer/config.yaml``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

#: czbenchmarks' default (reference B).
DEFAULT_VARIANT = "Geneformer-V2-316M"
#: Environment variable naming the config file (beats the search below, loses to --model_config).
CONFIG_ENV = "CZB_GENEFORMER_CONFIG"
#: Keys every variant block must have for inference.
REQUIRED_KEYS = (
    "input_size", "special_token", "emb_layer", "emb_mode",
    "token_dictionary", "gene_median_dictionary",
)


def config_candidates(script: Optional[Union[str, Path]] = None) -> List[Path]:
    """Where the config is looked for: the repository layout (``bin/`` next to ``containers/``),
    then the container's copy at ``/app/config.yaml``."""
    found: List[Path] = []
    if os.environ.get(CONFIG_ENV):
        found.append(Path(os.environ[CONFIG_ENV]))
    if script is not None:
        found.append(Path(script).resolve().parent.parent / "containers" / "geneformer" / "config.yaml")
    found.append(Path(__file__).resolve().parents[4] / "containers" / "geneformer" / "config.yaml")
    found.append(Path("/app/config.yaml"))
    return found


def find_config(explicit: Optional[Union[str, Path]] = None, script: Optional[Union[str, Path]] = None) -> Path:
    """The config file to use: ``explicit`` when given, else the first candidate that exists."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"Geneformer config not found: {path}")
        return path
    for path in config_candidates(script):
        if path.is_file():
            return path
    raise FileNotFoundError(
        "Geneformer config.yaml not found; pass --model_config or set "
        f"{CONFIG_ENV} (looked in: {', '.join(str(p) for p in config_candidates(script))})"
    )


def load_config(path: Union[str, Path]) -> Dict[str, Any]:
    """The whole config as plain containers, interpolations (``${vocabs_uri}``) resolved."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(str(path)), resolve=True)  # type: ignore[return-value]


def variant_config(config: Dict[str, Any], variant: str) -> Dict[str, Any]:
    """One variant's block; ``ValueError`` naming the known variants when it is absent or incomplete."""
    variants = config.get("models") or {}
    if variant not in variants:
        raise ValueError(f"Model {variant} not found in config. Variants: {', '.join(sorted(variants))}")
    block = dict(variants[variant])
    missing = [key for key in REQUIRED_KEYS if key not in block]
    if missing:
        raise ValueError(f"Geneformer variant {variant}: config lacks {missing}")
    return block
