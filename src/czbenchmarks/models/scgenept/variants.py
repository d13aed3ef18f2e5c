"""scGenePT variants, weight layout and checkpoint parameter names (no torch needed here).

Everything below was read off scGenePT's public source at commit
``5847c57e4cccd9949a7f0b5f3775d5dcae5a5eac`` (``models/scGenePT.py``, ``utils/data_loading.py``,
``utils/scgpt_config.py``) and czbenchmarks' ``docker/scgenept/config.yaml``:

* a variant name picks which gene representations are summed into each token's input: scGPT's
  learned gene-token embedding and its expression-value encoder, plus one *text* embedding of
  the gene (GenePT NCBI / NCBI+UniProt summaries, or Gene Ontology C / F / P / all annotations,
  each embedded with GPT-3.5 ada, 1536 dims) projected to the model width;
* the text encoder's attribute name differs per variant (``genept_encoder`` with a
  ``proj_layer``; ``gopt_encoder_<c|f|p>`` with an ``fc``), and the GO "all" variant reuses the
  attribute name ``gopt_encoder_f`` — the checkpoint keys follow these names, so they are kept;
* fine-tuned checkpoints live in ``s3://czi-scgenept-public/models/finetuned/<dir>/<dataset>``
  for the GEARS datasets ``adamson`` and ``norman``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

#: Public bucket of the scGenePT weights.
MODEL_BUCKET = "s3://czi-scgenept-public"
#: scGPT whole-human vocabulary the checkpoints index genes with (60,697 tokens incl. specials).
VOCAB_URI = f"{MODEL_BUCKET}/models/pretrained/scgpt/vocab.json"
GENE_EMBEDDINGS_URI = f"{MODEL_BUCKET}/models/gene_embeddings"
FINETUNED_URI = f"{MODEL_BUCKET}/models/finetuned"

#: Where things lie inside a fetched weights folder (the reference's ``/weights/`` layout, with the
#: fine-tuned checkpoint folder at the root instead of ``<variant>/<dataset>/``).
VOCAB_FILE = "pretrained/scgpt/vocab.json"
GENE_EMBEDDINGS_DIR = "gene_embeddings"
#: Optional architecture overrides (only ``nhead`` cannot be read off the weights); tiny test
#: checkpoints ship one, the public checkpoints use scGenePT's fixed scGPT settings.
ARGS_FILE = "scgenept_args.json"

#: GEARS datasets the public checkpoints were fine-tuned on.
FINETUNE_DATASETS = ("adamson", "norman")
DEFAULT_VARIANT = "scgenept_go_c_gpt_concat"
DEFAULT_FINETUNE_DATASET = "adamson"
VARIANT_SEPARATOR = "__"
#: In place of a fine-tuning dataset: the one the dataset's id or file name names (see
#: :func:`resolve_variant`), else :data:`DEFAULT_FINETUNE_DATASET`.
AUTO_FINETUNE = "auto"

#: Special tokens scGenePT appends to the vocabulary when missing, in this order.
SPECIAL_TOKENS = ("<pad>", "<cls>", "<eoc>")
PAD_TOKEN = "<pad>"
#: Perturbation-flag embedding: flags 0 (not perturbed) and 1 (perturbed); index 2 is padding.
PERT_PAD_ID = 2
N_PERTURBAGENS = 2

#: scGenePT's scGPT settings (``utils/scgpt_config.py``), used when the weights carry no override.
DEFAULT_ARCHITECTURE = {"d_model": 512, "nhead": 8, "d_hid": 512, "nlayers": 12, "nlayers_cls": 3, "n_cls": 1}
#: Width of the GPT-3.5 ada text embeddings.
TEXT_EMBEDDING_DIM = 1536


@dataclass(frozen=True)
class VariantSpec:
    """How one scGenePT variant represents genes.

    Attributes:
        name: variant name as scGenePT's ``model_type`` (e.g. ``scgenept_go_c_gpt_concat``).
        finetuned_dir: folder under ``models/finetuned/`` holding its checkpoints.
        text_encoder: attribute (and checkpoint key prefix) of the text-embedding encoder.
        projection: name of that encoder's linear projection (``proj_layer`` or ``fc``).
        embedding_file: the text-embedding pickle scGenePT initialised the encoder from, under
            ``gene_embeddings/`` (the fine-tuned checkpoint carries the trained copy).
        display: human-readable name (czbenchmarks' display names).
    """

    name: str
    finetuned_dir: str
    text_encoder: str
    projection: str
    embedding_file: str
    display: str


VARIANTS: Dict[str, VariantSpec] = {
    spec.name: spec
    for spec in (
        VariantSpec("scgenept_ncbi_gpt", "scgenept_ncbi", "genept_encoder", "proj_layer",
                    "NCBI_gene_embeddings-gpt3.5-ada.pickle", "scGenePT_{NCBI}"),
        VariantSpec("scgenept_ncbi+uniprot_gpt", "scgenept_ncbi+uniprot", "genept_encoder", "proj_layer",
                    "NCBI+UniProt_embeddings-gpt3.5-ada.pkl", "scGenePT_{NCBI+UniProt}"),
        VariantSpec("scgenept_go_f_gpt_concat", "scgenept_go_f", "gopt_encoder_f", "fc",
                    "GO_F_gene_embeddings-gpt3.5-ada-concat.pickle", "scGenePT_{GO-F}"),
        VariantSpec("scgenept_go_p_gpt_concat", "scgenept_go_p", "gopt_encoder_p", "fc",
                    "GO_P_gene_embeddings-gpt3.5-ada-concat.pickle", "scGenePT_{GO-P}"),
        VariantSpec("scgenept_go_c_gpt_concat", "scgenept_go_c", "gopt_encoder_c", "fc",
                    "GO_C_gene_embeddings-gpt3.5-ada-concat.pickle", "scGenePT_{GO-C}"),
        # scGenePT stores the GO-all encoder under the GO-F attribute name.
        VariantSpec("scgenept_go_all_gpt_concat", "scgenept_go_all", "gopt_encoder_f", "fc",
                    "GO_all_gene_embeddings-gpt3.5-ada-concat.pickle", "scGenePT_{GO-all}"),
    )
}


def variant_key(variant: str, finetune_dataset: str) -> str:
    """The config key of a variant fine-tuned on a dataset: ``<variant>__<dataset>``."""
    return f"{variant}{VARIANT_SEPARATOR}{finetune_dataset}"


def parse_variant(value: str, finetune_dataset: str = DEFAULT_FINETUNE_DATASET) -> Tuple[VariantSpec, str]:
    """``(spec, fine-tune dataset)`` of ``scgenept_go_c_gpt_concat__norman`` or of a bare variant name.

    A bare name takes ``finetune_dataset`` (the reference's ``--dataset_name``).

    Raises:
        ValueError: unknown variant or fine-tune dataset, naming the known ones.
    """
    name, sep, dataset = str(value or DEFAULT_VARIANT).partition(VARIANT_SEPARATOR)
    dataset = dataset if sep else (finetune_dataset or DEFAULT_FINETUNE_DATASET)
    if name not in VARIANTS:
        raise ValueError(f"unknown scGenePT variant '{name}'; known: {', '.join(VARIANTS)}")
    if dataset not in FINETUNE_DATASETS:
        raise ValueError(
            f"unknown scGenePT fine-tuning dataset '{dataset}'; known: {', '.join(FINETUNE_DATASETS)}"
        )
    return VARIANTS[name], dataset


def named_finetune_dataset(dataset_label: str) -> Optional[str]:
    """The fine-tuning dataset (``adamson``/``norman``) a dataset id or file name names, if exactly one.

    Case-insensitive substring match (``norman``, ``gears_norman_2019``, ``Adamson-test``).
    """
    label = str(dataset_label or "").lower()
    named = [name for name in FINETUNE_DATASETS if name in label]
    return named[0] if len(named) == 1 else None


def resolve_variant(value: str, finetune_dataset: str = DEFAULT_FINETUNE_DATASET,
                    dataset_label: str = "") -> Tuple[VariantSpec, str, bool]:
    """As :func:`parse_variant`, also accepting :data:`AUTO_FINETUNE` for the fine-tuning dataset.

    ``<variant>__auto`` (or a bare variant with ``finetune_dataset="auto"``) picks the checkpoint
    fine-tuned on the dataset ``dataset_label`` names (:func:`named_finetune_dataset`), and
    :data:`DEFAULT_FINETUNE_DATASET` when it names neither. Returns ``(spec, dataset, auto)``.
    """
    name, sep, dataset = str(value or DEFAULT_VARIANT).partition(VARIANT_SEPARATOR)
    dataset = dataset if sep else (finetune_dataset or DEFAULT_FINETUNE_DATASET)
    auto = dataset == AUTO_FINETUNE
    if auto:
        dataset = named_finetune_dataset(dataset_label) or DEFAULT_FINETUNE_DATASET
    spec, dataset = parse_variant(variant_key(name, dataset))
    return spec, dataset, auto


def finetune_match(finetune_dataset: str, dataset_label: str) -> Dict[str, object]:
    """Provenance facts on whether a checkpoint was fine-tuned on the dataset it predicts.

    ``variant_dataset_mismatch`` is true unless ``dataset_label`` names ``finetune_dataset``,
    i.e. also for a dataset that is neither adamson nor norman.
    """
    named = named_finetune_dataset(dataset_label)
    return {
        "variant_finetune_dataset": finetune_dataset,
        "dataset_label": str(dataset_label or ""),
        "dataset_names_finetune_dataset": named,
        "variant_dataset_mismatch": named != finetune_dataset,
    }


def weight_uris(spec: VariantSpec, finetune_dataset: str) -> Dict[str, str]:
    """``{sub-folder: URI}`` of everything a variant's weights folder holds (``""``: the root)."""
    return {
        "": f"{FINETUNED_URI}/{spec.finetuned_dir}/{finetune_dataset}",
        "pretrained/scgpt": VOCAB_URI,
        GENE_EMBEDDINGS_DIR: f"{GENE_EMBEDDINGS_URI}/{spec.embedding_file}",
    }


def checkpoint_keys(spec: VariantSpec, nlayers: int, nlayers_cls: int = 3) -> List[str]:
    """Every ``state_dict`` key of a scGenePT checkpoint of ``spec`` (PyTorch attention, no MVC).

    The names follow scGenePT's module attributes: ``encoder`` (scGPT ``GeneEncoder``),
    ``value_encoder`` (``ContinuousValueEncoder``), the variant's text encoder, ``pert_encoder``,
    ``ln``, ``transformer_encoder`` (``nn.TransformerEncoder`` of post-norm layers; flash
    checkpoints' ``Wqkv.`` is renamed to ``in_proj_`` on load, as scGenePT does), ``decoder``
    (``ExprDecoder`` without zero-probabilities) and ``cls_decoder`` (``ClsDecoder``, present
    although unused for perturbation prediction).
    """
    wb = ("weight", "bias")
    keys = ["encoder.embedding.weight", "encoder.enc_norm.weight", "encoder.enc_norm.bias"]
    keys += [f"value_encoder.{part}.{p}" for part in ("linear1", "linear2", "norm") for p in wb]
    text = spec.text_encoder
    keys += [f"{text}.embedding.weight"]
    keys += [f"{text}.{part}.{p}" for part in (spec.projection, "enc_norm") for p in wb]
    keys += ["pert_encoder.weight", "ln.weight", "ln.bias"]
    for i in range(nlayers):
        layer = f"transformer_encoder.layers.{i}"
        keys += [f"{layer}.self_attn.in_proj_weight", f"{layer}.self_attn.in_proj_bias"]
        keys += [f"{layer}.{part}.{p}" for part in ("self_attn.out_proj", "linear1", "linear2", "norm1", "norm2")
                 for p in wb]
    keys += [f"decoder.fc.{i}.{p}" for i in (0, 2, 4) for p in wb]
    for block in range(nlayers_cls - 1):
        keys += [f"cls_decoder._decoder.{3 * block + offset}.{p}" for offset in (0, 2) for p in wb]
    keys += ["cls_decoder.out_layer.weight", "cls_decoder.out_layer.bias"]
    return keys


def parse_condition(condition: str) -> List[str]:
    """The perturbed genes of a condition: ``G+ctrl`` -> ``[G]``, ``G1+G2`` -> ``[G1, G2]``, ``ctrl`` -> ``[]``."""
    return [gene for gene in str(condition).split("+") if gene and gene != "ctrl"]
