"""Bring your own embeddings: turn a user's h5ad into a standard model output (no inference).

The user's file must hold the embedding in ``obsm[<key>]`` for exactly the dataset's cells
(``obs_names``); rows are put into the dataset's order. Anything else is a clear error that names
the dataset.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict

import numpy as np

from .evaluate import alignment_error


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_embedding(
    embedding_h5ad: Path, dataset_h5ad: Path, dataset_id: str, obsm_key: str, model: str,
    output: Path, organism: str = "", seed: int = 42,
) -> Dict[str, Any]:
    """Check and copy a user embedding into the pipeline's output format; returns its provenance."""
    import anndata as ad

    from ..outputs import atomic_write_h5ad, embedding_output
    from ..provenance import software_versions, utc_now

    dataset = ad.read_h5ad(dataset_h5ad, backed="r")
    try:
        obs = dataset.obs.copy()
    finally:
        dataset.file.close()
    user = ad.read_h5ad(embedding_h5ad)
    if obsm_key not in user.obsm:
        keys = ", ".join(user.obsm.keys()) or "none"
        raise ValueError(f"dataset '{dataset_id}': {embedding_h5ad.name} has no obsm['{obsm_key}'] (obsm keys: {keys})")
    got = list(map(str, user.obs_names))
    expected = list(map(str, obs.index))
    alignment_error(got, expected, dataset_id, ordered=False)
    position = {name: i for i, name in enumerate(got)}
    order = np.array([position[name] for name in expected])
    matrix = user.obsm[obsm_key]
    matrix = matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)
    if matrix.ndim != 2:
        raise ValueError(f"dataset '{dataset_id}': obsm['{obsm_key}'] is not a 2-D matrix")
    embedding = np.asarray(matrix, dtype=np.float32)[order]
    embedded = ~np.isnan(embedding).any(axis=1)
    provenance = {
        "model": model, "model_type": "EXTERNAL", "variant": "", "dataset": dataset_id, "organism": organism,
        "seed": seed, "source": "user embeddings (--embeddings)",
        "weights": {"source": str(embedding_h5ad.name), "files": {embedding_h5ad.name: _sha256(embedding_h5ad)}},
        "software": software_versions(), "created": utc_now(),
        "run_info": {"obsm_key": obsm_key, "reordered": bool((order != np.arange(len(order))).any()),
                     "dims": int(embedding.shape[1])},
    }
    atomic_write_h5ad(embedding_output(obs, embedding, provenance, embedded), Path(output))
    return provenance
