"""Paths and names shared by the package, the bin/ scripts and the pipeline."""

from __future__ import annotations

import os
from pathlib import Path

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
