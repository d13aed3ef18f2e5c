"""scGPT zero-shot cell embeddings, streamed from an h5ad in row slices.

The model, vocabulary, checkpoint loading and expression binning are scgpt 0.2.4's own
(``scgpt.model.TransformerModel``, ``scgpt.tokenizer.GeneVocab``, ``scgpt.utils.load_pretrained``,
``scgpt.preprocess.binning``); the input pipeline mirrors ``scgpt.tasks.embed_data`` step by step:

1. genes whose symbol (``var[gene_col]``) is not in the vocabulary are ignored;
2. each cell becomes ``<cls>`` + its expressed in-vocabulary genes in ``var`` order, with the
   counts binned into 51 bins per cell (``pad_value`` at the ``<cls>`` position);
3. cells with more than ``max_length - 1`` expressed genes are randomly subsampled;
4. a batch is padded to its longest cell, encoded, and the ``<cls>`` output is L2-normalised.

Differences, all on purpose:

* Cells are read ``chunk_size`` rows at a time (backed mode works), so memory does not grow with
  the dataset; the reference densified the whole matrix.
* Both random steps (tie-breaking inside ``binning`` and the gene subsampling, scGPT issue #281)
  draw from a generator seeded per cell from ``(seed, cell index)``: a cell's embedding does not
  depend on batch size, chunking, worker count or the other cells.
* Cells with no expressed gene in the vocabulary are not fed to the model (the reference crashes
  on them); they come back with ``embedded = False``.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import numpy as np

logger = logging.getLogger(__name__)

#: Tokens ``embed_data`` adds to the vocabulary when the checkpoint's ``vocab.json`` lacks them.
SPECIAL_TOKENS: Tuple[str, ...] = ("<pad>", "<cls>", "<eoc>")
#: scgpt's DataCollator bins into 51 bins whatever ``args.json`` says; keep that.
N_BINS = 51
#: Keys of ``args.json`` that the model needs.
REQUIRED_ARGS = ("embsize", "nheads", "d_hid", "nlayers", "n_layers_cls", "dropout", "pad_token", "pad_value")
#: Parameter prefixes ``_encode`` uses: a checkpoint must supply all of them.
ENCODER_PREFIXES = ("encoder.", "value_encoder.", "transformer_encoder.")

_SHIM_DIR = Path(__file__).resolve().parent / "_torchtext"


def import_scgpt() -> ModuleType:
    """Import ``scgpt`` with the pure-Python ``torchtext`` stand-in on ``sys.path``.

    torchtext has no build for torch >= 2.4, but scgpt imports ``torchtext.vocab`` at import
    time. The stand-in goes first on the path unless a ``torchtext`` is already imported.
    """
    if "torchtext" not in sys.modules and str(_SHIM_DIR) not in sys.path:
        sys.path.insert(0, str(_SHIM_DIR))
    with warnings.catch_warnings():
        # flash-attn is deliberately absent (the PyTorch attention path is used): not news.
        warnings.filterwarnings("ignore", message=".*flash_attn is not installed.*")
        import scgpt
    logging.getLogger("scGPT").setLevel(logging.WARNING)  # its per-cell "row of zeros" chatter
    return scgpt


def cell_seed(seed: int, cell_index: int) -> int:
    """The 32-bit seed of one cell's random draws, derived from the run seed and the cell's row."""
    return int(np.random.SeedSequence([int(seed), int(cell_index)]).generate_state(1)[0])


@dataclass
class ScGPTModel:
    """A loaded scGPT checkpoint: model in eval mode, vocabulary and the ``args.json`` settings."""

    model: Any
    vocab: Any
    configs: Dict[str, Any]
    device: str
    n_params_loaded: int
    n_params_total: int

    @property
    def embsize(self) -> int:
        return int(self.configs["embsize"])

    @property
    def pad_id(self) -> int:
        return int(self.vocab[self.configs["pad_token"]])

    @property
    def cls_id(self) -> int:
        return int(self.vocab["<cls>"])

    @property
    def pad_value(self) -> float:
        return float(self.configs["pad_value"])

    def gene_ids(self, symbols: Sequence[str]) -> np.ndarray:
        """Vocabulary index of each gene symbol; ``-1`` where the symbol is not in the vocabulary."""
        stoi = self.vocab.get_stoi()
        return np.array([stoi.get(str(s), -1) for s in symbols], dtype=np.int64)


def build_transformer(vocab: Any, configs: Dict[str, Any]):
    """scgpt's ``TransformerModel`` as the whole-human checkpoints were built (``configs``: args.json).

    PyTorch attention: flash-attn 1.x does not install with current torch; flash checkpoints load
    after renaming their fused projection (see :func:`load_scgpt`).
    """
    from scgpt.model import TransformerModel

    return TransformerModel(
        ntoken=len(vocab),
        d_model=configs["embsize"],
        nhead=configs["nheads"],
        d_hid=configs["d_hid"],
        nlayers=configs["nlayers"],
        nlayers_cls=configs["n_layers_cls"],
        n_cls=1,
        vocab=vocab,
        dropout=configs["dropout"],
        pad_token=configs["pad_token"],
        pad_value=configs["pad_value"],
        do_mvc=True,
        do_dab=False,
        use_batch_labels=False,
        domain_spec_batchnorm=False,
        explicit_zero_prob=False,
        use_fast_transformer=False,
        fast_transformer_backend="flash",
        pre_norm=False,
    )


def load_scgpt(model_dir: Path | str, device: str = "cpu") -> ScGPTModel:
    """Load ``vocab.json``, ``args.json`` and ``best_model.pt`` from ``model_dir`` as ``embed_data`` does.

    Unlike scgpt's ``load_pretrained`` (which silently skips parameters whose name or shape does
    not match), this raises ``ValueError`` when the checkpoint leaves any encoder parameter unset,
    e.g. because ``args.json`` does not describe it.
    """
    import torch

    import_scgpt()
    from scgpt.tokenizer import GeneVocab
    from scgpt.utils import load_pretrained

    model_dir = Path(model_dir)
    missing_files = [n for n in ("vocab.json", "args.json", "best_model.pt") if not (model_dir / n).is_file()]
    if missing_files:
        raise FileNotFoundError(f"scGPT model folder {model_dir} lacks {', '.join(missing_files)}")
    vocab = GeneVocab.from_file(model_dir / "vocab.json")
    for token in SPECIAL_TOKENS:
        if token not in vocab:
            vocab.append_token(token)
    configs = json.loads((model_dir / "args.json").read_text())
    absent = [k for k in REQUIRED_ARGS if k not in configs]
    if absent:
        raise ValueError(f"{model_dir / 'args.json'} lacks {absent}")
    vocab.set_default_index(vocab["<pad>"])

    model = build_transformer(vocab, configs)
    state = torch.load(model_dir / "best_model.pt", map_location="cpu", weights_only=True)
    # Checkpoints trained with flash-attn name the fused projection "Wqkv"; load_pretrained renames it.
    renamed = {k.replace("Wqkv.", "in_proj_"): v for k, v in state.items()}
    expected = model.state_dict()
    loaded = [k for k, v in renamed.items() if k in expected and tuple(v.shape) == tuple(expected[k].shape)]
    unset = [k for k in expected if k.startswith(ENCODER_PREFIXES) and k not in set(loaded)]
    if unset:
        raise ValueError(
            f"checkpoint {model_dir / 'best_model.pt'} does not match args.json/vocab.json: "
            f"{len(unset)} encoder parameters missing or of another shape, e.g. {unset[:3]}"
        )
    load_pretrained(model, state, verbose=False)
    model.to(device)
    model.eval()
    return ScGPTModel(model, vocab, configs, device, len(loaded), len(expected))


def iter_row_chunks(matrix: Any, chunk_size: int) -> Iterator[Tuple[int, Any]]:
    """Yield ``(first_row, CSR block)`` for consecutive blocks of ``chunk_size`` rows.

    Works on scipy matrices, dense arrays and anndata's backed datasets (only the block is read).
    """
    import scipy.sparse as sp

    n_rows = int(matrix.shape[0])
    for start in range(0, n_rows, chunk_size):
        block = matrix[start: min(start + chunk_size, n_rows)]
        block = sp.csr_matrix(block) if sp.issparse(block) else sp.csr_matrix(np.asarray(block))
        yield start, block


def tokenize_cell(
    gene_ids: np.ndarray,
    counts: np.ndarray,
    *,
    cls_id: int,
    pad_value: float,
    max_length: int,
    seed: int,
) -> Tuple[Any, Any, bool]:
    """One cell -> (gene tokens, binned values, subsampled?) as ``embed_data``'s Dataset + collator.

    ``gene_ids``/``counts`` are the cell's expressed in-vocabulary genes in ``var`` order. The
    tie-breaking of ``binning`` and the subsampling both draw from ``seed``.
    """
    import torch
    from scgpt.preprocess import binning

    genes = torch.from_numpy(np.concatenate(([cls_id], gene_ids)).astype(np.int64))
    values = torch.from_numpy(np.concatenate(([pad_value], counts)).astype(np.float32))
    # binning breaks ties with the legacy global numpy RNG: seed it for this cell only
    # (the caller saves and restores the global state around a run).
    np.random.seed(seed)
    values[1:] = binning(row=values[1:], n_bins=N_BINS)
    if len(genes) <= max_length:
        return genes, values, False
    generator = torch.Generator().manual_seed(seed)
    keep = torch.randperm(len(genes) - 1, generator=generator)[: max_length - 1] + 1
    keep = torch.cat([torch.zeros(1, dtype=torch.long), keep])  # <cls> always stays first
    return genes[keep], values[keep], True


def pad_batch(
    cells: List[Tuple[Any, Any]], *, pad_id: int, pad_value: float
) -> Tuple[Any, Any]:
    """Stack cells padded to the longest one (as scgpt's collator): (genes, values), each (n, L)."""
    import torch

    length = max(len(g) for g, _ in cells)
    genes = torch.full((len(cells), length), pad_id, dtype=torch.long)
    values = torch.full((len(cells), length), pad_value, dtype=torch.float32)
    for row, (g, v) in enumerate(cells):
        genes[row, : len(g)] = g
        values[row, : len(v)] = v
    return genes, values


@dataclass
class EmbeddingResult:
    """Embeddings for every input row (zeros where ``embedded`` is False) and what happened."""

    embedding: np.ndarray
    embedded: np.ndarray
    stats: Dict[str, Any] = field(default_factory=dict)


def embed_matrix(
    loaded: ScGPTModel,
    matrix: Any,
    gene_symbols: Sequence[str],
    *,
    seed: int,
    max_length: int = 1200,
    batch_size: int = 32,
    chunk_size: int = 2048,
    sort_by_length: bool = True,
) -> EmbeddingResult:
    """Embed every row of ``matrix`` (cells x genes counts, in memory or backed) with ``loaded``.

    Rows are read ``chunk_size`` at a time. Within a chunk, cells are batched by similar length
    when ``sort_by_length`` (less padding; padded positions are masked, so results are unchanged).
    On CUDA the forward pass runs under float16 autocast, as the reference does.
    """
    import torch

    if max_length < 2:
        raise ValueError("max_length must be at least 2 (<cls> plus one gene)")
    n_cells = int(matrix.shape[0])
    vocab_ids = loaded.gene_ids(gene_symbols)
    columns = np.flatnonzero(vocab_ids >= 0)
    column_ids = vocab_ids[columns]
    embedding = np.zeros((n_cells, loaded.embsize), dtype=np.float32)
    embedded = np.zeros(n_cells, dtype=bool)
    stats: Dict[str, Any] = {
        "n_genes": int(len(vocab_ids)),
        "n_genes_in_vocab": int(len(columns)),
        "n_cells_subsampled": 0,
        "max_expressed_genes": 0,
    }
    use_cuda = str(loaded.device).startswith("cuda")
    model = loaded.model
    saved_state = np.random.get_state()
    try:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=use_cuda):
            for start, block in iter_row_chunks(matrix, chunk_size):
                block = block[:, columns] if len(columns) < block.shape[1] else block
                block.eliminate_zeros()  # explicit zeros are not expressed genes
                block.sort_indices()  # var order, as the reference's np.nonzero on dense rows
                cells, rows = [], []
                for offset in range(block.shape[0]):
                    lo, hi = block.indptr[offset], block.indptr[offset + 1]
                    if hi == lo:
                        continue  # nothing expressed in the vocabulary: recorded, not embedded
                    index = start + offset
                    stats["max_expressed_genes"] = max(stats["max_expressed_genes"], int(hi - lo))
                    genes, values, sampled = tokenize_cell(
                        column_ids[block.indices[lo:hi]],
                        block.data[lo:hi],
                        cls_id=loaded.cls_id,
                        pad_value=loaded.pad_value,
                        max_length=max_length,
                        seed=cell_seed(seed, index),
                    )
                    stats["n_cells_subsampled"] += int(sampled)
                    cells.append((genes, values))
                    rows.append(index)
                if not cells:
                    continue
                order = np.argsort([len(g) for g, _ in cells], kind="stable") if sort_by_length else np.arange(len(cells))
                for first in range(0, len(order), batch_size):
                    members = order[first: first + batch_size]
                    genes, values = pad_batch([cells[i] for i in members], pad_id=loaded.pad_id, pad_value=loaded.pad_value)
                    genes = genes.to(loaded.device, non_blocking=True)
                    out = model._encode(
                        genes,
                        values.to(loaded.device, non_blocking=True),
                        src_key_padding_mask=genes.eq(loaded.pad_id),
                        batch_labels=None,
                    )
                    cls = out[:, 0, :].float().cpu().numpy()
                    target = np.asarray(rows)[members]
                    embedding[target] = cls
                    embedded[target] = True
    finally:
        np.random.set_state(saved_state)
    # L2-normalise in float32 as the reference does (after the loop, over embedded rows).
    norms = np.linalg.norm(embedding[embedded], axis=1, keepdims=True)
    embedding[embedded] = embedding[embedded] / norms
    stats["n_cells_embedded"] = int(embedded.sum())
    return EmbeddingResult(embedding, embedded, stats)
