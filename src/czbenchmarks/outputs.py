"""The files passed between pipeline stages: model outputs as h5ad with provenance."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .constants import EMBEDDED_OBS_KEY, EMBEDDING_OBSM_KEY, PROVENANCE_UNS_KEY
from .datasets.types import DataType
from .provenance import software_versions, utc_now
from .weights import read_manifest


def atomic_write_h5ad(adata, path: Path) -> None:
    """Write an h5ad under a temporary name, then rename: a partial file never looks finished."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.h5ad")
    adata.write_h5ad(tmp)
    os.replace(tmp, path)


def weights_provenance(weights_dir: Optional[str]) -> Dict[str, Any]:
    """The manifest facts worth carrying into outputs: source and per-file sha256."""
    if not weights_dir:
        return {}
    manifest = read_manifest(Path(weights_dir)) or {}
    return {
        "source": manifest.get("source", str(weights_dir)),
        "files": {entry["path"]: entry["sha256"] for entry in manifest.get("files", [])},
    }


def embedding_output(
    obs,
    embedding: np.ndarray,
    provenance: Dict[str, Any],
    embedded: Optional[np.ndarray] = None,
):
    """An AnnData with ``obs`` (same cells, same order), the embedding in ``obsm`` and provenance in ``uns``.

    ``embedded`` marks cells the model could embed; rows of the others are NaN and the cells
    are listed in provenance, never silently dropped.
    """
    import anndata as ad

    embedding = np.asarray(embedding, dtype=np.float32)
    if embedding.ndim != 2 or embedding.shape[0] != len(obs):
        raise ValueError(
            f"embedding has shape {embedding.shape}, expected ({len(obs)}, dims): one row per input cell"
        )
    if embedded is None:
        embedded = np.ones(len(obs), dtype=bool)
    embedded = np.asarray(embedded, dtype=bool)
    embedding = embedding.copy()
    embedding[~embedded] = np.nan
    out = ad.AnnData(obs=obs.copy())
    out.obs[EMBEDDED_OBS_KEY] = embedded
    out.obsm[EMBEDDING_OBSM_KEY] = embedding
    provenance = dict(provenance)
    provenance["n_cells"] = int(len(obs))
    provenance["n_dropped_cells"] = int((~embedded).sum())
    provenance["dropped_cells"] = [str(x) for x in obs.index[~embedded][:1000]]
    out.uns[PROVENANCE_UNS_KEY] = {"json": json.dumps(provenance, sort_keys=True, default=str)}
    return out


def model_provenance(dataset, model, variant: Optional[str] = None) -> Dict[str, Any]:
    """What every model output records: model, variant, dataset, seed, weight checksums, versions, run info."""
    args = vars(model.args)
    return {
        "model": getattr(model, "model_name", type(model).__name__.lower()),
        "model_type": str(model.model_type),
        "variant": variant if variant is not None else args.get("model_variant"),
        "dataset": args.get("dataset_id"),
        "organism": str(dataset.organism),
        "seed": args.get("seed"),
        "weights": {**weights_provenance(model.model_weights_dir),
                    **({"verification": model.weights_verification} if getattr(model, "weights_verification", None) else {})},
        "software": software_versions(),
        "created": utc_now(),
        "run_info": getattr(model, "run_info", {}),
    }


def write_model_output(dataset, model, path: Path) -> None:
    """Write a model's EMBEDDING output for ``dataset`` (pipeline mode of ``BaseModelImplementation.run``)."""
    provenance = model_provenance(dataset, model)
    value = dataset.get_output(model.model_type, DataType.EMBEDDING)
    embedded = getattr(model, "embedded_mask", None)
    obs = dataset.get_input(DataType.METADATA)
    atomic_write_h5ad(embedding_output(obs, value, provenance, embedded), path)


def read_embedding(path: Path) -> Tuple[Any, np.ndarray, Dict[str, Any]]:
    """(obs, embedding, provenance) from a model or baseline output h5ad."""
    import anndata as ad

    adata = ad.read_h5ad(path)
    provenance = json.loads(adata.uns.get(PROVENANCE_UNS_KEY, {}).get("json", "{}"))
    return adata.obs, np.asarray(adata.obsm[EMBEDDING_OBSM_KEY]), provenance
