"""Geneformer as a pipeline model: the project's own tokenizer and embedding extraction.

Upstream's ``geneformer`` package cannot be installed from a registry, so this package holds
what inference needs: the rank-value tokenizer (:mod:`.tokenizer`, streaming, checked against
Geneformer's tokenizer in the tests) and embedding extraction on ``transformers``' BERT
(:mod:`.embedding`). Importing it is cheap: torch and transformers load inside the functions
that use them. ``bin/geneformer_model.py`` is the pipeline's entry point.
"""

from .config import DEFAULT_VARIANT, find_config, load_config, variant_config
from .embedding import EMB_MODES, PRECISIONS, LoadedEncoder, check_precision, embed_token_batches, load_encoder, pool
from .tokenizer import (
    CLS_TOKEN,
    EOS_TOKEN,
    FILTER_PASS_KEY,
    MASK_TOKEN,
    PAD_TOKEN,
    GeneDictionaries,
    GenePlan,
    RankValueTokenizer,
    TokenizedBatch,
    dataset_gene_keys,
    filter_pass_mask,
    plan_genes,
    strip_version,
    tokenizer_for_variant,
)

__all__ = [
    "CLS_TOKEN",
    "DEFAULT_VARIANT",
    "EMB_MODES",
    "EOS_TOKEN",
    "FILTER_PASS_KEY",
    "GeneDictionaries",
    "GenePlan",
    "LoadedEncoder",
    "MASK_TOKEN",
    "PAD_TOKEN",
    "PRECISIONS",
    "RankValueTokenizer",
    "TokenizedBatch",
    "check_precision",
    "dataset_gene_keys",
    "embed_token_batches",
    "filter_pass_mask",
    "find_config",
    "load_config",
    "load_encoder",
    "plan_genes",
    "pool",
    "strip_version",
    "tokenizer_for_variant",
    "variant_config",
]
