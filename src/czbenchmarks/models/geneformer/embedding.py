"""Cell embeddings from a Geneformer checkpoint (a ``transformers`` BERT masked-LM).

Upstream's ``EmbExtractor`` is mirrored: the encoder output at ``emb_layer`` (an index into
``hidden_states``; -2, the second-to-last layer, is upstream's ``emb_layer=-1``) is pooled either
as the ``<cls>`` position (``emb_mode="cls"``, V2) or as the mean over the cell's gene tokens
(``emb_mode="mean"``, upstream's "cell"; padding, ``<cls>`` and ``<eos>`` excluded).

Precision: float32 by default, as upstream's ``EmbExtractor`` runs. ``precision="bfloat16"`` or
``"float16"`` runs the forward pass under ``torch.autocast`` (CUDA, or CPU for bfloat16) with the
checkpoint loaded for PyTorch's scaled-dot-product attention (``attn_implementation="sdpa"``);
pooling is float32 either way. The precision, autocast dtype and attention implementation in use
are part of :func:`run_info`.

Only the encoder runs (``BertForMaskedLM(...).bert``): projecting every token onto the 20k-gene
vocabulary in the MLM head is the bulk of the work and useless here. Encoder layers past
``emb_layer`` are dropped instead of run, which gives the same numbers for less work.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

    from .tokenizer import TokenizedBatch

logger = logging.getLogger(__name__)

EMB_MODES = ("cls", "mean")
#: Forward-pass precisions; the first is the default (upstream's).
PRECISIONS = ("float32", "bfloat16", "float16")


def check_precision(precision: str) -> str:
    """``precision`` when it is one of :data:`PRECISIONS` (``ValueError`` otherwise)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    return precision


@dataclass
class LoadedEncoder:
    """A BERT encoder ready for inference and the facts about it worth recording."""

    encoder: Any
    device: str
    n_layers_total: int
    n_layers_run: int
    hidden_size: int
    max_positions: int
    checkpoint_file: str
    precision: str = "float32"
    attn_implementation: Optional[str] = None


def load_encoder(model_dir: Union[str, Path], device: str = "cpu", emb_layer: int = -2,
                 precision: str = "float32") -> LoadedEncoder:
    """Load ``BertForMaskedLM`` from ``model_dir`` and keep its encoder up to ``emb_layer``.

    ``emb_layer`` indexes ``hidden_states`` (``0`` = embeddings, ``-1`` = last layer), so the
    encoder keeps ``n_layers + 1 + emb_layer`` layers when negative, ``emb_layer`` when positive.
    The weights stay float32; a reduced ``precision`` loads the model with SDPA attention (when
    this transformers supports it for BERT) for :func:`embed_token_batches` to autocast.
    """
    import torch
    from transformers import BertForMaskedLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a progress bar per checkpoint only clutters task logs
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"no Geneformer checkpoint (config.json) in {model_dir}")
    checkpoint = next(
        (name for name in ("model.safetensors", "pytorch_model.bin") if (model_dir / name).is_file()), "?"
    )
    check_precision(precision)
    options: Dict[str, Any] = {}
    if precision != "float32":
        options["attn_implementation"] = "sdpa"
    try:
        mlm = BertForMaskedLM.from_pretrained(str(model_dir), **options)
    except (ValueError, ImportError) as err:
        if not options:
            raise
        # transformers without SDPA for BERT: autocast still applies, attention stays eager.
        logger.warning("SDPA attention unavailable for this BERT (%s); using the default", err)
        mlm = BertForMaskedLM.from_pretrained(str(model_dir))
    encoder = mlm.bert
    del mlm  # drops the MLM head's reference; its vocabulary projection is not needed
    n_layers = len(encoder.encoder.layer)
    keep = n_layers + 1 + emb_layer if emb_layer < 0 else emb_layer
    if not 1 <= keep <= n_layers:
        raise ValueError(f"emb_layer {emb_layer} does not name an encoder layer of a {n_layers}-layer model")
    encoder.encoder.layer = torch.nn.ModuleList(list(encoder.encoder.layer)[:keep])
    encoder.eval().to(device)
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    return LoadedEncoder(
        encoder=encoder,
        device=device,
        n_layers_total=n_layers,
        n_layers_run=keep,
        hidden_size=int(encoder.config.hidden_size),
        max_positions=int(encoder.config.max_position_embeddings),
        checkpoint_file=checkpoint,
        precision=precision,
        attn_implementation=getattr(encoder.config, "_attn_implementation", None),
    )


def pool(
    hidden: "torch.Tensor",
    input_ids: "torch.Tensor",
    attention_mask: "torch.Tensor",
    emb_mode: str,
    special_ids: Iterable[int] = (),
) -> "torch.Tensor":
    """Pool token states ``(batch, length, hidden)`` into cell embeddings ``(batch, hidden)`` in float32."""
    hidden = hidden.float()
    if emb_mode == "cls":
        return hidden[:, 0, :]
    if emb_mode != "mean":
        raise ValueError(f"emb_mode must be one of {EMB_MODES}, not {emb_mode!r}")
    genes = attention_mask.bool()
    for token in special_ids:
        genes &= input_ids != int(token)
    weights = genes.unsqueeze(-1).to(hidden.dtype)
    # clamp: a row without gene tokens (never fed here, but cheap to guard) divides by 1, not 0
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def _pad(cells: List[np.ndarray], pad_id: int) -> Tuple[np.ndarray, np.ndarray]:
    length = max(len(c) for c in cells)
    ids = np.full((len(cells), length), pad_id, dtype=np.int64)
    mask = np.zeros((len(cells), length), dtype=np.int64)
    for row, cell in enumerate(cells):
        ids[row, : len(cell)] = cell
        mask[row, : len(cell)] = 1
    return ids, mask


def embed_token_batches(
    loaded: LoadedEncoder,
    batches: Iterable["TokenizedBatch"],
    *,
    pad_id: int,
    emb_mode: str = "cls",
    special_ids: Iterable[int] = (),
    forward_batch_size: int = 16,
) -> Iterator[Tuple[int, np.ndarray, np.ndarray]]:
    """Embed tokenized batches as they stream in; yields ``(start, embeddings, embedded)`` per batch.

    Within a batch, cells are run longest first so that each forward pass pads little; the rows
    come back in dataset order. Cells without gene tokens are not run: their rows are zero and
    ``embedded`` is False. The forward pass runs in ``loaded.precision`` (reduced precisions
    under ``torch.autocast`` on the encoder's device); pooling is always float32.
    """
    import torch

    if emb_mode not in EMB_MODES:
        raise ValueError(f"emb_mode must be one of {EMB_MODES}, not {emb_mode!r}")
    special_ids = [int(s) for s in special_ids]
    device = loaded.device
    use_amp = loaded.precision != "float32"
    autocast_dtype = getattr(torch, loaded.precision) if use_amp else None
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    for batch in batches:
        n_cells = len(batch.input_ids)
        out = np.zeros((n_cells, loaded.hidden_size), dtype=np.float32)
        embedded = batch.n_genes > 0
        runnable = np.flatnonzero(embedded)
        too_long = [i for i in runnable if len(batch.input_ids[i]) > loaded.max_positions]
        if too_long:
            raise ValueError(
                f"cell {batch.start + too_long[0]} has {len(batch.input_ids[too_long[0]])} tokens; "
                f"the model takes at most {loaded.max_positions}: input_size does not fit this checkpoint"
            )
        # Longest first (stable, so equal lengths keep dataset order): less padding per pass.
        order = runnable[np.argsort(-batch.n_genes[runnable], kind="stable")]
        for first in range(0, len(order), forward_batch_size):
            rows = order[first: first + forward_batch_size]
            ids, mask = _pad([batch.input_ids[i] for i in rows], pad_id)
            ids_t = torch.from_numpy(ids).to(device)
            mask_t = torch.from_numpy(mask).to(device)
            with torch.inference_mode(), torch.autocast(
                device_type=device_type, dtype=autocast_dtype, enabled=use_amp
            ):
                hidden = loaded.encoder(input_ids=ids_t, attention_mask=mask_t).last_hidden_state
                pooled = pool(hidden, ids_t, mask_t, emb_mode, special_ids)
            out[rows] = pooled.float().cpu().numpy()
        yield batch.start, out, embedded


def run_info(loaded: LoadedEncoder, emb_layer: int, emb_mode: str, forward_batch_size: int) -> Dict[str, Any]:
    """What the embedding step did, for provenance."""
    import torch

    return {
        "checkpoint_file": loaded.checkpoint_file,
        "n_layers": loaded.n_layers_total,
        "n_layers_run": loaded.n_layers_run,
        "emb_layer": emb_layer,
        "emb_mode": emb_mode,
        "hidden_size": loaded.hidden_size,
        "forward_batch_size": forward_batch_size,
        "precision": loaded.precision,
        "autocast": None if loaded.precision == "float32" else loaded.precision,
        "attn_implementation": loaded.attn_implementation,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }
