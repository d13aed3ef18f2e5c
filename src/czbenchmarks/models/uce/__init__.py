"""UCE (Universal Cell Embeddings) as a pipeline model.

The network and the cell-sentence construction come from the ``uce-model`` package; loading is
the project's own (:mod:`.inference`): explicit paths, no downloads, dimensions from
``containers/uce/config.yaml`` overridable by a weights folder's ``uce_config.json``
(:mod:`.config`), and the species taken from the dataset's organism or, as czbenchmarks does,
always human (:mod:`.species`).
Importing this package is cheap: torch and uce load inside the functions that use them.
``bin/uce_model.py`` is the pipeline's entry point.
"""

from .config import (
    CONFIG_ENV,
    DEFAULT_VARIANT,
    DEFAULTS,
    MODEL_FILES_DIR,
    OVERRIDE_FILE,
    find_config,
    load_config,
    read_overrides,
    variant_settings,
)
from .inference import (
    GenePlan,
    LoadedUce,
    UceEmbedding,
    cells_per_gene,
    checkpoint_dims,
    chrom_token_rows,
    embed_matrix,
    load_uce,
    plan_genes,
    species_gene_order,
    token_table,
)
from .species import (
    PROTEIN_EMBEDDING_FILES,
    REFERENCE_SPECIES,
    SPECIES_BY_ORGANISM,
    SPECIES_MODES,
    species_for_mode,
    species_for_organism,
)

__all__ = [
    "CONFIG_ENV",
    "DEFAULTS",
    "DEFAULT_VARIANT",
    "GenePlan",
    "LoadedUce",
    "MODEL_FILES_DIR",
    "OVERRIDE_FILE",
    "PROTEIN_EMBEDDING_FILES",
    "REFERENCE_SPECIES",
    "SPECIES_BY_ORGANISM",
    "SPECIES_MODES",
    "UceEmbedding",
    "cells_per_gene",
    "checkpoint_dims",
    "chrom_token_rows",
    "embed_matrix",
    "find_config",
    "load_config",
    "load_uce",
    "plan_genes",
    "read_overrides",
    "species_for_mode",
    "species_for_organism",
    "species_gene_order",
    "token_table",
    "variant_settings",
]
