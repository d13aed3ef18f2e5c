"""UCE inference from explicit paths: loader, gene plan, cell filter and embedding.

Uses the ``uce-model`` package for the network (``uce.model.TransformerModel``) and for the cell
sentences (``uce.eval_data.sample_cell_sentences`` and ``MultiDatasetSentenceCollator``), with
this project's own loading: nothing is downloaded, no path is relative to the working folder, the
network's dimensions come from the settings (checked against the checkpoint), and only the
dataset's species' protein-embedding file is read (for its gene order).

What differs from UCE's ``uce-eval-single-anndata`` (the reference's path):

* the species follows the dataset's organism (the reference always used ``human``);
* cells UCE's ``filter`` step drops (fewer than ``min_genes`` expressed genes among the genes
  expressed in at least ``min_cells`` cells), cells with no count on any gene UCE can embed, and
  cells whose sampled sentence does not fit ``pad_length`` (UCE itself fails on the last two) keep
  their row: the result is aligned to the input cells, with ``embedded`` False and NaN there. The
  sentence length is checked per cell, after sampling (1 + ``sample_size`` + 2 per chromosome the
  sampled genes fall on), not over the chromosomes of the whole dataset;
* the gene sampling is seeded (``numpy``'s global generator, seeded once per run, consumed in
  cell order exactly as UCE's data loader does, then restored);
* X is read in row chunks (backed h5ad) instead of being written to an int64 memmap.

Kept as UCE does it, so that the embeddings equal UCE's own: the counts are cast to int64,
genes are drawn with probability ``log1p(count)`` normalised, and the padding mask is UCE's float
mask (a cell's embedding therefore depends on the longest sentence in its batch: cells are
batched ``batch_size`` at a time in input order, as UCE's data loader does).
"""

from __future__ import annotations

import argparse
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ...safe_pickle import load_pickle
from .config import MODEL_FILES_DIR
from .species import PROTEIN_EMBEDDING_FILES

logger = logging.getLogger(__name__)

#: State-dict prefixes of UCE's gene-expression prediction head: unused for cell embeddings, so
#: a checkpoint may omit them (the tiny test checkpoint does; the class fixes their widths at
#: sizes a tiny file cannot hold).
PREDICTION_HEAD_PREFIXES = ("binary_decoder.",)
#: State-dict key of the token-embedding table the checkpoint carries.
TABLE_KEY = "pe_embedding.weight"


def _torch_load(path: Path) -> Any:
    """``torch.load`` on CPU, tensors only; memory-mapped when the file format allows it."""
    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:
        if "mmap" not in str(err) and "zip" not in str(err).lower():
            raise
        return torch.load(str(path), map_location="cpu", weights_only=True)


def import_uce() -> Any:
    """Import the ``uce`` modules used here and return ``uce``.

    Each of uce's modules calls ``warnings.filterwarnings("ignore")`` when imported, silencing
    warnings process-wide; importing inside ``catch_warnings`` undoes that.
    """
    with warnings.catch_warnings():
        import uce.data_proc.data_utils  # noqa: F401
        import uce.eval_data  # noqa: F401
        import uce.model  # noqa: F401

    return uce


# -- model ---------------------------------------------------------------------------------------
@dataclass
class LoadedUce:
    """A UCE network ready for inference.

    Attributes:
        model: ``uce.model.TransformerModel`` in eval mode, ``pe_embedding`` set.
        settings: the variant settings it was built with.
        device: ``"cpu"`` or ``"cuda"``.
        table_source: where the token-embedding table came from.
        missing_keys: checkpoint keys absent (only the unused prediction head may be).
        n_params: parameters loaded from the checkpoint (token table and absent head excluded).
    """

    model: Any
    settings: Dict[str, Any]
    device: str
    table_source: str
    missing_keys: List[str] = field(default_factory=list)
    n_params: int = 0


def checkpoint_dims(state: Dict[str, Any]) -> Dict[str, int]:
    """The network dimensions a UCE state dict implies (``nhead`` cannot be read from it)."""
    layers = {key.split(".")[2] for key in state if key.startswith("transformer_encoder.layers.")}
    try:
        return {
            "token_dim": int(state["encoder.0.weight"].shape[1]),
            "d_model": int(state["encoder.0.weight"].shape[0]),
            "d_hid": int(state["transformer_encoder.layers.0.linear1.weight"].shape[0]),
            "output_dim": int(state["decoder.3.weight"].shape[0]),
            "nlayers": len(layers),
        }
    except KeyError as err:
        raise ValueError(f"not a UCE TransformerModel state dict: no {err.args[0]}") from None


def chrom_token_rows(n_rows: int, token_dim: int, seed: int) -> "Any":
    """UCE's chromosome tokens: ``normal(0, 1)`` rows drawn after seeding torch with ``seed``
    (what ``uce.evaluate.get_ESM2_embeddings`` appends), without touching torch's global RNG."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.normal(mean=0.0, std=1.0, size=(n_rows, token_dim), generator=generator)


def token_table_shape(token_file: Path, settings: Dict[str, Any]) -> tuple:
    """(rows, dim) of :func:`token_table` without building it: the file is memory-mapped, so
    only its header is read."""
    import torch

    tokens = _torch_load(token_file)
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2:
        raise ValueError(f"{token_file}: expected a 2-d tensor of token embeddings")
    rows = int(tokens.shape[0])
    if rows == settings["CHROM_TOKEN_OFFSET"]:
        rows += int(settings["n_chrom_tokens"])
    return rows, int(tokens.shape[1])


def token_table(token_file: Path, settings: Dict[str, Any]) -> "Any":
    """``all_tokens.torch`` as UCE uses it: when it holds exactly ``CHROM_TOKEN_OFFSET`` rows,
    the ``n_chrom_tokens`` chromosome tokens are appended."""
    import torch

    tokens = _torch_load(token_file)
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2:
        raise ValueError(f"{token_file}: expected a 2-d tensor of token embeddings")
    if tokens.shape[0] == settings["CHROM_TOKEN_OFFSET"]:
        extra = chrom_token_rows(settings["n_chrom_tokens"], int(tokens.shape[1]), settings["chrom_token_seed"])
        tokens = torch.vstack((tokens.float(), extra))
    return tokens


def load_uce(weights_dir: Union[str, Path], settings: Dict[str, Any], device: str = "cpu") -> LoadedUce:
    """Build UCE from ``<weights_dir>/<model_filename>`` and ``<weights_dir>/model_files/``.

    The checkpoint is UCE's state dict (its token table ``pe_embedding.weight`` included). As in
    UCE's ``run_eval``, the checkpoint's token table is used when it has as many rows as the
    token file (after appending the chromosome tokens), else the token file's (new species).

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: the checkpoint does not match the settings' dimensions, or has keys the
            network lacks, or lacks keys other than the unused prediction head.
    """
    from torch import nn

    TransformerModel = import_uce().model.TransformerModel
    weights = Path(weights_dir)
    model_path = weights / settings["model_filename"]
    token_file = weights / MODEL_FILES_DIR / "all_tokens.torch"
    for path in (model_path, token_file):
        if not path.is_file():
            raise FileNotFoundError(f"UCE weights incomplete: {path} not found")
    state = dict(_torch_load(model_path))
    found = checkpoint_dims(state)
    wrong = {k: (settings[k], v) for k, v in found.items() if settings[k] != v}
    if wrong:
        detail = ", ".join(f"{k}: settings {a}, checkpoint {b}" for k, (a, b) in wrong.items())
        raise ValueError(
            f"{model_path.name} does not match the UCE settings ({detail}); "
            "a checkpoint of other dimensions needs a uce_config.json beside it"
        )
    if settings["d_model"] % settings["nhead"]:
        raise ValueError(f"d_model {settings['d_model']} is not divisible by nhead {settings['nhead']}")
    with warnings.catch_warnings():
        # UCE's encoder is sequence-first, so torch's nested-tensor fast path is off (and says so).
        warnings.filterwarnings("ignore", message="enable_nested_tensor is True")
        model = TransformerModel(
            token_dim=settings["token_dim"], d_model=settings["d_model"], nhead=settings["nhead"],
            d_hid=settings["d_hid"], nlayers=settings["nlayers"], output_dim=settings["output_dim"],
            dropout=float(settings.get("dropout", 0.05)),
        )
    checkpoint_table = state.pop(TABLE_KEY, None)
    result = model.load_state_dict(state, strict=False)
    unexpected = list(result.unexpected_keys)
    missing = [k for k in result.missing_keys if not k.startswith(PREDICTION_HEAD_PREFIXES)]
    if unexpected or missing:
        raise ValueError(
            f"{model_path.name} does not fit uce.model.TransformerModel: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    n_params = sum(p.numel() for name, p in model.named_parameters()
                   if not name.startswith(PREDICTION_HEAD_PREFIXES))
    # Shapes first: the file's table (2.9 GB for the real one) is built only when the checkpoint's
    # own does not fit, which saves reading and copying it on every run with a matching checkpoint.
    shape = token_table_shape(token_file, settings)
    if shape[1] != settings["token_dim"]:
        raise ValueError(f"{token_file.name} has {shape[1]}-d tokens, the model takes {settings['token_dim']}")
    if checkpoint_table is not None and tuple(checkpoint_table.shape) == shape:
        table, source = checkpoint_table, f"checkpoint {TABLE_KEY}"
    else:
        table = token_table(token_file, settings)
        source = "model_files/all_tokens.torch" + (
            " + chromosome tokens" if table.shape[0] != _rows(token_file) else "")
    model.pe_embedding = nn.Embedding.from_pretrained(table.float().contiguous())
    model = model.eval().to(device)
    return LoadedUce(model, settings, device, source, list(result.missing_keys), n_params)


def _rows(token_file: Path) -> int:
    return int(_torch_load(token_file).shape[0])


# -- genes ---------------------------------------------------------------------------------------
@dataclass
class GenePlan:
    """The dataset genes UCE can embed for one species.

    Attributes:
        species: UCE species name.
        embeddable: per var column, whether the gene has a protein embedding and a chromosome.
        token_idx: per var column, its row in the token table (-1 when not embeddable).
        chrom: per var column, UCE's chromosome code (``species_chromosome`` category code).
        start: per var column, the genomic start.
    """

    species: str
    embeddable: np.ndarray
    token_idx: np.ndarray
    chrom: np.ndarray
    start: np.ndarray


def species_gene_order(model_files: Union[str, Path], species: str) -> List[str]:
    """The species' protein-embedding genes, upper-cased, in file order (duplicates after
    upper-casing keep their first position, as UCE's ``get_species_to_pe`` does)."""
    path = Path(model_files) / "protein_embeddings" / PROTEIN_EMBEDDING_FILES[species]
    if not path.is_file():
        raise FileNotFoundError(f"UCE protein embeddings for {species} not found: {path}")
    genes = _torch_load(path)
    return list(dict.fromkeys(str(key).upper() for key in genes))


def plan_genes(symbols: Sequence[str], species: str, model_files: Union[str, Path]) -> GenePlan:
    """Map gene symbols (``var['feature_name']``) onto UCE's tokens and chromosome positions.

    A gene is embeddable when its upper-cased symbol has a protein embedding for ``species``
    and a row of that species in ``species_chrom.csv`` (UCE itself fails on the latter).
    """
    get_spec_chrom_csv = import_uce().data_proc.data_utils.get_spec_chrom_csv
    model_files = Path(model_files)
    offsets = load_pickle(model_files / "species_offsets.pkl")
    if not isinstance(offsets, dict):
        raise ValueError(f"{model_files / 'species_offsets.pkl'}: expected a dict species -> offset")
    if species not in offsets:
        raise ValueError(f"species_offsets.pkl has no offset for {species}")
    order = {gene: i for i, gene in enumerate(species_gene_order(model_files, species))}
    positions = get_spec_chrom_csv(str(model_files / "species_chrom.csv"))
    spec = positions[positions["species"] == species].set_index("gene_symbol")
    spec = spec[~spec.index.duplicated(keep="first")]
    codes = spec["spec_chrom"].cat.codes
    code_of = dict(zip(spec.index.astype(str), codes.to_numpy()))
    start_of = dict(zip(spec.index.astype(str), spec["start"].to_numpy()))

    upper = [str(s).upper() for s in symbols]
    embeddable = np.array([g in order and g in code_of for g in upper], dtype=bool)
    token_idx = np.array([order[g] + int(offsets[species]) if ok else -1 for g, ok in zip(upper, embeddable)],
                         dtype=np.int64)
    chrom = np.array([code_of[g] if ok else -1 for g, ok in zip(upper, embeddable)], dtype=codes.dtype)
    start_dtype = spec["start"].dtype if len(spec) else np.int64
    start = np.array([start_of[g] if ok else 0 for g, ok in zip(upper, embeddable)], dtype=start_dtype)
    return GenePlan(species, embeddable, token_idx, chrom, start)


# -- cells ---------------------------------------------------------------------------------------
def iter_row_chunks(X: Any, chunk_size: int) -> Iterator[Tuple[int, Any]]:
    """``(start, rows)`` slices of X (in memory or backed), ``chunk_size`` rows at a time."""
    n_rows = X.shape[0]
    for start in range(0, n_rows, chunk_size):
        yield start, X[start:min(start + chunk_size, n_rows)]


def _dense(rows: Any, columns: Optional[np.ndarray] = None) -> np.ndarray:
    """``rows`` (sparse or dense) restricted to ``columns``, as a dense array."""
    if columns is not None:
        rows = rows[:, columns]
    return np.asarray(rows.toarray() if hasattr(rows, "toarray") else rows)


def _expressed_per_column(rows: Any) -> np.ndarray:
    """Per column, how many of ``rows`` are > 0 (sparse rows stay sparse)."""
    return np.asarray((rows > 0).sum(axis=0)).ravel().astype(np.int64)


def _expressed_per_row(rows: Any) -> np.ndarray:
    """Per row, how many columns are > 0."""
    return np.asarray((rows > 0).sum(axis=1)).ravel().astype(np.int64)


def cells_per_gene(X: Any, chunk_size: int = 2048) -> np.ndarray:
    """How many cells express (count > 0) each gene, read in row chunks."""
    total = np.zeros(X.shape[1], dtype=np.int64)
    for _, rows in iter_row_chunks(X, chunk_size):
        total += _expressed_per_column(rows)
    return total


@dataclass
class UceEmbedding:
    """Result of :func:`embed_matrix`.

    Attributes:
        embedding: (n_cells, output_dim) float32; NaN rows for cells not embedded.
        embedded: per cell, whether it was embedded.
        stats: counts for provenance (genes used, cells dropped and why).
    """

    embedding: np.ndarray
    embedded: np.ndarray
    stats: Dict[str, Any]


class _SeededNumpy:
    """Seed numpy's global generator (which UCE's sampler uses) and restore it afterwards."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __enter__(self) -> None:
        self.saved = np.random.get_state()
        np.random.seed(self.seed)

    def __exit__(self, *exc: Any) -> None:
        np.random.set_state(self.saved)


def sentence_length(sample_size: int, n_chromosomes: int) -> int:
    """Tokens of a UCE cell sentence: ``<cls>``, the sampled genes, and an open and a close token
    around each chromosome the sampled genes fall on."""
    return 1 + int(sample_size) + 2 * int(n_chromosomes)


def sentence_args(settings: Dict[str, Any]) -> argparse.Namespace:
    """The namespace UCE's sampler and collator read."""
    keys = ("pad_length", "sample_size", "cls_token_idx", "CHROM_TOKEN_OFFSET", "pad_token_idx",
            "chrom_token_left_idx", "chrom_token_right_idx")
    return argparse.Namespace(**{k: settings[k] for k in keys})


def embed_matrix(
    loaded: LoadedUce,
    X: Any,
    plan: GenePlan,
    *,
    seed: int,
    chunk_size: int = 2048,
) -> UceEmbedding:
    """Embed every row of ``X`` (raw counts; in memory or backed) with UCE.

    Cells UCE filters out, cells with no count on an embeddable gene, and cells whose sampled
    sentence is longer than ``pad_length`` (its genes fall on too many chromosomes: more than
    ``(pad_length - 1 - sample_size) / 2``, 255 for the real settings) get a NaN row and ``embedded``
    False; the others are embedded in input order, ``batch_size`` per forward pass.

    Raises:
        ValueError: no gene is embeddable, or ``pad_length`` cannot hold even a one-chromosome sentence.
    """
    import torch
    from torch import nn

    eval_data = import_uce().eval_data
    sample_cell_sentences = eval_data.sample_cell_sentences
    settings = loaded.settings
    n_cells, n_genes = X.shape
    if not plan.embeddable.any():
        raise ValueError(f"no gene of the dataset has a UCE protein embedding for {plan.species}")
    if settings["filter"]:
        gene_pass = cells_per_gene(X, chunk_size) >= settings["min_cells"]
    else:
        gene_pass = np.ones(n_genes, dtype=bool)
    used = np.flatnonzero(gene_pass & plan.embeddable)
    if used.size == 0:
        raise ValueError(
            f"no embeddable gene is expressed in at least {settings['min_cells']} cells "
            f"({int(plan.embeddable.sum())} genes have {plan.species} protein embeddings)")
    pad_length = settings["pad_length"]
    shortest = sentence_length(settings["sample_size"], 1)
    if pad_length < shortest:
        raise ValueError(f"pad_length {pad_length} cannot hold even a one-chromosome sentence of {shortest} tokens "
                         f"(sample_size {settings['sample_size']})")
    pass_cols = np.flatnonzero(gene_pass)
    args = sentence_args(settings)
    # A sentence's length depends on the chromosomes its sampled genes fall on, known only after
    # sampling. When the dataset's genes span more chromosomes than pad_length allows, sentences are
    # drawn into a buffer long enough for any draw (the draws themselves do not depend on its size),
    # then cut back to pad_length; a cell whose sentence is longer (UCE itself would fail) is dropped.
    n_chroms = int(np.unique(plan.chrom[used]).size)
    longest = sentence_length(settings["sample_size"], min(n_chroms, settings["sample_size"]))
    wide_args = argparse.Namespace(**{**vars(args), "pad_length": longest}) if longest > pad_length else args
    collate = eval_data.MultiDatasetSentenceCollator(args)
    name = "dataset"
    pe_idx = {name: torch.tensor(plan.token_idx[used]).long()}
    chroms = {name: plan.chrom[used]}
    starts = {name: plan.start[used]}
    device = loaded.device
    batch_size = settings["batch_size"]

    embedding = np.full((n_cells, settings["output_dim"]), np.nan, dtype=np.float32)
    embedded = np.zeros(n_cells, dtype=bool)
    dropped_min_genes = dropped_no_gene = dropped_too_long = 0
    pending: List[Tuple[Any, ...]] = []

    def flush() -> None:
        sentences, mask, idxs, _ = collate(pending)
        with torch.no_grad():
            tokens = loaded.model.pe_embedding(sentences.permute(1, 0).long().to(device))
            tokens = nn.functional.normalize(tokens, dim=2)
            _, cell = loaded.model.forward(tokens, mask=mask.to(device))
        rows = idxs.long().numpy()
        embedding[rows] = cell.float().cpu().numpy()
        embedded[rows] = True
        pending.clear()

    with _SeededNumpy(seed):
        for start, rows in iter_row_chunks(X, chunk_size):
            if settings["filter"]:
                keep = _expressed_per_row(rows[:, pass_cols]) >= settings["min_genes"]
            else:
                keep = np.ones(rows.shape[0], dtype=bool)
            dropped_min_genes += int((~keep).sum())
            # UCE stores counts as float32 and then int64 (truncating), and samples from those.
            counts_used = _dense(rows, used).astype(np.float32).astype(np.int64)
            for offset in np.flatnonzero(keep):
                row = counts_used[offset]
                if not (row > 0).any():
                    dropped_no_gene += 1
                    continue
                counts = torch.tensor(row).unsqueeze(0)
                weights = torch.log1p(counts)
                weights = weights / torch.sum(weights)
                sentence, mask, seq_len, cell_sentence = sample_cell_sentences(
                    counts, weights, name, wide_args, dataset_to_protein_embeddings=pe_idx,
                    dataset_to_chroms=chroms, dataset_to_starts=starts)
                if seq_len > pad_length:
                    dropped_too_long += 1
                    continue
                if wide_args is not args:  # past seq_len the buffer holds only padding: cut it back
                    sentence, mask, cell_sentence = (t[:, :pad_length] for t in (sentence, mask, cell_sentence))
                pending.append((sentence, mask, start + int(offset), seq_len, cell_sentence))
                if len(pending) == batch_size:
                    flush()
        if pending:
            flush()

    stats = {
        "species": plan.species,
        "n_genes": int(n_genes),
        "n_genes_with_protein_embedding": int(plan.embeddable.sum()),
        "n_genes_used": int(used.size),
        "n_cells_embedded": int(embedded.sum()),
        "n_cells_dropped_min_genes": dropped_min_genes,
        "n_cells_dropped_no_embeddable_gene": dropped_no_gene,
        "n_cells_dropped_sentence_too_long": dropped_too_long,
        "n_chromosomes_used": n_chroms,
        "max_chromosomes_per_sentence": (pad_length - 1 - settings["sample_size"]) // 2,
    }
    return UceEmbedding(embedding, embedded, stats)
