"""scGPT (scgpt 0.2.4) as a pipeline model: checkpoint loading and streamed zero-shot embedding.

Importing this package is cheap; torch and scgpt are imported inside the functions that use them.
``bin/scgpt_model.py`` is the pipeline's entry point.
"""

from .inference import (
    N_BINS,
    SPECIAL_TOKENS,
    EmbeddingResult,
    ScGPTModel,
    cell_seed,
    embed_matrix,
    import_scgpt,
    iter_row_chunks,
    load_scgpt,
)

__all__ = [
    "EmbeddingResult",
    "N_BINS",
    "SPECIAL_TOKENS",
    "ScGPTModel",
    "cell_seed",
    "embed_matrix",
    "import_scgpt",
    "iter_row_chunks",
    "load_scgpt",
]
