"""scGenePT (perturbation prediction) as a pipeline model.

scGenePT (czi-ai/scGenePT) fine-tunes scGPT with text embeddings of genes (GenePT NCBI /
NCBI+UniProt summaries or Gene Ontology annotations) to predict expression after a genetic
perturbation from control cells. There is no installable package: the network is re-implemented
in :mod:`.network` on scgpt's building blocks with scGenePT's parameter names, so its fine-tuned
checkpoints load strictly. Importing this package is cheap: torch is imported only by
:mod:`.network` and inside functions. ``bin/scgenept_model.py`` is the pipeline's entry point.
"""

from .predict import (
    ConditionCheck,
    ConditionPrediction,
    PredictionResult,
    PredictionWriter,
    check_conditions,
    condition_rng,
    dataset_test_conditions,
    iter_predictions,
    pool_size_for,
    predict_conditions,
    prediction_anndata,
    requested_conditions,
)
from .variants import (
    AUTO_FINETUNE,
    DEFAULT_FINETUNE_DATASET,
    DEFAULT_VARIANT,
    FINETUNE_DATASETS,
    VARIANTS,
    VOCAB_FILE,
    VariantSpec,
    checkpoint_keys,
    finetune_match,
    named_finetune_dataset,
    parse_condition,
    parse_variant,
    resolve_variant,
    variant_key,
    weight_uris,
)


def load_scgenept(weights_dir, spec, device: str = "cpu"):
    """Load a scGenePT weights folder (see :func:`.network.load_scgenept`; imports torch)."""
    from .network import load_scgenept as _load

    return _load(weights_dir, spec, device=device)


__all__ = [
    "AUTO_FINETUNE",
    "ConditionCheck",
    "ConditionPrediction",
    "PredictionWriter",
    "DEFAULT_FINETUNE_DATASET",
    "DEFAULT_VARIANT",
    "FINETUNE_DATASETS",
    "PredictionResult",
    "VARIANTS",
    "VOCAB_FILE",
    "VariantSpec",
    "check_conditions",
    "checkpoint_keys",
    "finetune_match",
    "iter_predictions",
    "named_finetune_dataset",
    "pool_size_for",
    "resolve_variant",
    "condition_rng",
    "dataset_test_conditions",
    "load_scgenept",
    "parse_condition",
    "parse_variant",
    "predict_conditions",
    "prediction_anndata",
    "requested_conditions",
    "variant_key",
    "weight_uris",
]
