"""The scGenePT network on top of scgpt's building blocks, and checkpoint loading.

This module imports torch at import time; :mod:`czbenchmarks.models.scgenept` imports it only
inside the functions that need it. The network is a re-implementation (not a copy) of the
architecture described in :mod:`.variants`: per gene token, scGPT's gene-token embedding, its
expression-value encoder, a projected text embedding of the gene and a perturbation-flag
embedding are summed, layer-normalised, passed through a post-norm ``nn.TransformerEncoder`` and
decoded per gene by scGPT's ``ExprDecoder`` into the predicted post-perturbation expression.
Attribute names equal scGenePT's, so its fine-tuned checkpoints load with ``strict=True``.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import torch
from torch import Tensor, nn

from .variants import (
    ARGS_FILE,
    DEFAULT_ARCHITECTURE,
    N_PERTURBAGENS,
    PAD_TOKEN,
    PERT_PAD_ID,
    SPECIAL_TOKENS,
    VOCAB_FILE,
    VariantSpec,
)

logger = logging.getLogger(__name__)


def _scgpt_blocks():
    """scgpt's encoder/decoder classes (imported with the torchtext stand-in on the path)."""
    from ..scgpt import import_scgpt

    import_scgpt()
    from scgpt.model.model import ClsDecoder, ContinuousValueEncoder, ExprDecoder, GeneEncoder

    return GeneEncoder, ContinuousValueEncoder, ExprDecoder, ClsDecoder


@dataclass
class Architecture:
    """Sizes of a scGenePT network (defaults: scGenePT's scGPT settings)."""

    ntoken: int
    d_model: int = DEFAULT_ARCHITECTURE["d_model"]
    nhead: int = DEFAULT_ARCHITECTURE["nhead"]
    d_hid: int = DEFAULT_ARCHITECTURE["d_hid"]
    nlayers: int = DEFAULT_ARCHITECTURE["nlayers"]
    nlayers_cls: int = DEFAULT_ARCHITECTURE["nlayers_cls"]
    n_cls: int = DEFAULT_ARCHITECTURE["n_cls"]
    text_dim: int = 1536
    text_dtype: str = "float32"
    pad_id: int = 0


class TextEmbeddingEncoder(nn.Module):
    """A gene's text embedding (looked up by vocabulary index), projected and layer-normalised.

    ``projection`` is the attribute name of the linear layer (``proj_layer`` for GenePT, ``fc``
    for GO embeddings), kept for checkpoint compatibility.
    """

    def __init__(self, ntoken: int, d_model: int, text_dim: int, projection: str, padding_idx: int,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.embedding = nn.Embedding(ntoken, text_dim, padding_idx=padding_idx, dtype=dtype)
        self.projection_name = projection
        setattr(self, projection, nn.Linear(text_dim, d_model))
        self.enc_norm = nn.LayerNorm(d_model)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.embedding(tokens).float()
        return self.enc_norm(getattr(self, self.projection_name)(x))


class ScGenePTNetwork(nn.Module):
    """scGenePT for inference: ``forward(tokens, values, pert_flags) -> predicted expression``.

    Args:
        spec: the variant (names the text encoder).
        arch: sizes; see :class:`Architecture`.
    """

    def __init__(self, spec: VariantSpec, arch: Architecture) -> None:
        super().__init__()
        GeneEncoder, ContinuousValueEncoder, ExprDecoder, ClsDecoder = _scgpt_blocks()
        self.spec = spec
        self.arch = arch
        self.text_encoder_name = spec.text_encoder
        # Registration order follows the reference's summation order (token, value, text, flags).
        self.encoder = GeneEncoder(arch.ntoken, arch.d_model, padding_idx=arch.pad_id)
        self.value_encoder = ContinuousValueEncoder(arch.d_model, 0.0)
        setattr(self, spec.text_encoder, TextEmbeddingEncoder(
            arch.ntoken, arch.d_model, arch.text_dim, spec.projection, arch.pad_id,
            dtype=getattr(torch, arch.text_dtype),
        ))
        self.pert_encoder = nn.Embedding(N_PERTURBAGENS + 1, arch.d_model, padding_idx=PERT_PAD_ID)
        self.ln = nn.LayerNorm(arch.d_model)
        layer = nn.TransformerEncoderLayer(arch.d_model, arch.nhead, arch.d_hid, 0.0, batch_first=True)
        self.transformer_encoder = nn.TransformerEncoder(layer, arch.nlayers, enable_nested_tensor=False)
        self.decoder = ExprDecoder(arch.d_model, explicit_zero_prob=False)
        self.cls_decoder = ClsDecoder(arch.d_model, arch.n_cls, nlayers=arch.nlayers_cls)

    def forward(self, tokens: Tensor, values: Tensor, pert_flags: Tensor,
                padding_mask: Optional[Tensor] = None) -> Tensor:
        """Predicted expression per gene token, shape ``(batch, n_genes)``.

        Args:
            tokens: vocabulary indices, ``(batch, n_genes)``.
            values: control-cell expression of those genes, ``(batch, n_genes)``.
            pert_flags: 1 where the gene is perturbed, else 0, ``(batch, n_genes)``.
            padding_mask: ``True`` at padded positions (``None``: no padding).
        """
        total = self.encoder(tokens)
        total = total + self.value_encoder(values)
        total = total + getattr(self, self.text_encoder_name)(tokens)
        total = total + self.pert_encoder(pert_flags)
        hidden = self.transformer_encoder(self.ln(total.float()), src_key_padding_mask=padding_mask)
        return self.decoder(hidden)["pred"]


@dataclass
class LoadedScGenePT:
    """A scGenePT checkpoint ready for inference."""

    network: Any
    vocab: Dict[str, int]
    spec: VariantSpec
    arch: Architecture
    checkpoint: str
    device: str
    n_params: int
    notes: List[str] = field(default_factory=list)

    @property
    def pad_id(self) -> int:
        return int(self.vocab[PAD_TOKEN])

    def describe(self) -> Dict[str, Any]:
        """Facts for provenance."""
        return {"checkpoint": self.checkpoint, "architecture": asdict(self.arch), "vocab_size": len(self.vocab),
                "n_params": self.n_params, "text_encoder": self.spec.text_encoder, "notes": list(self.notes)}


def read_vocab(path: Path) -> Dict[str, int]:
    """scGPT's ``vocab.json`` (``{token: index}``) with the special tokens appended when missing.

    Same indices as scGenePT's ``GeneVocab.from_file`` followed by ``append_token`` per special.
    """
    with open(path) as handle:
        vocab = {str(k): int(v) for k, v in json.load(handle).items()}
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise ValueError(f"{path}: vocabulary indices are not 0..{len(vocab) - 1}")
    for token in SPECIAL_TOKENS:
        if token not in vocab:
            vocab[token] = len(vocab)
    return vocab


def find_checkpoint(weights_dir: Path) -> Path:
    """The fine-tuned checkpoint (``*.pt``) at the root of a weights folder.

    The reference took the first of an unsorted glob; several files are reported and the
    first in name order is used.
    """
    found = sorted(Path(weights_dir).glob("*.pt"))
    if not found:
        raise FileNotFoundError(f"no scGenePT checkpoint (*.pt) in {weights_dir}")
    if len(found) > 1:
        logger.warning("several checkpoints in %s; using %s", weights_dir, found[0].name)
    return found[0]


def normalise_state_dict(state: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Strip a DataParallel ``module.`` prefix and rename flash-attention ``Wqkv.`` to ``in_proj_``."""
    out = {}
    for key, value in state.items():
        key = key[len("module."):] if key.startswith("module.") else key
        out[key.replace("Wqkv.", "in_proj_")] = value
    return out


def infer_architecture(state: Mapping[str, Tensor], spec: VariantSpec, vocab: Mapping[str, int],
                       overrides: Optional[Mapping[str, Any]] = None) -> Architecture:
    """Sizes read off a checkpoint (``nhead`` from ``overrides`` or scGenePT's default of 8).

    Raises:
        ValueError: the checkpoint is not one of ``spec``'s, or does not match the vocabulary.
    """
    overrides = dict(overrides or {})
    text_key = f"{spec.text_encoder}.embedding.weight"
    for key in ("encoder.embedding.weight", text_key, "transformer_encoder.layers.0.linear1.weight"):
        if key not in state:
            raise ValueError(f"checkpoint has no '{key}': not a scGenePT {spec.name} checkpoint "
                             f"(text encoders present: {sorted({k.split('.')[0] for k in state if 'encoder_' in k})})")
    if any(k.startswith(("decoder.zero_logit", "mvc_decoder")) for k in state):
        raise ValueError("checkpoint has explicit-zero-probability or MVC decoders, which scGenePT never uses")
    ntoken, d_model = state["encoder.embedding.weight"].shape
    if ntoken != len(vocab):
        raise ValueError(f"checkpoint embeds {ntoken} tokens but {VOCAB_FILE} (with specials) has {len(vocab)}")
    layers = {int(m.group(1)) for k in state if (m := re.match(r"transformer_encoder\.layers\.(\d+)\.", k))}
    n_linear = len({k.split(".")[2] for k in state if k.startswith("cls_decoder._decoder.") and k.endswith(".weight")
                    and state[k].dim() == 2})
    arch = Architecture(
        ntoken=int(ntoken), d_model=int(d_model),
        nhead=int(overrides.get("nhead", DEFAULT_ARCHITECTURE["nhead"])),
        d_hid=int(state["transformer_encoder.layers.0.linear1.weight"].shape[0]),
        nlayers=len(layers), nlayers_cls=n_linear + 1,
        n_cls=int(state["cls_decoder.out_layer.weight"].shape[0]) if "cls_decoder.out_layer.weight" in state else 1,
        text_dim=int(state[text_key].shape[1]), text_dtype=str(state[text_key].dtype).replace("torch.", ""),
        pad_id=int(vocab[PAD_TOKEN]),
    )
    if d_model % arch.nhead:
        raise ValueError(f"model width {d_model} is not divisible by nhead {arch.nhead} (set it in {ARGS_FILE})")
    return arch


def load_scgenept(weights_dir: Path, spec: VariantSpec, device: str = "cpu") -> LoadedScGenePT:
    """Load the fine-tuned checkpoint of a weights folder into :class:`ScGenePTNetwork` (strict).

    The folder holds the checkpoint (``*.pt``) at its root and ``pretrained/scgpt/vocab.json``;
    an optional ``scgenept_args.json`` overrides ``nhead``.
    """
    weights_dir = Path(weights_dir)
    vocab_path = weights_dir / VOCAB_FILE
    if not vocab_path.is_file():
        raise FileNotFoundError(f"scGenePT vocabulary not found: {vocab_path}")
    vocab = read_vocab(vocab_path)
    overrides: Dict[str, Any] = {}
    if (weights_dir / ARGS_FILE).is_file():
        overrides = json.loads((weights_dir / ARGS_FILE).read_text())
    checkpoint = find_checkpoint(weights_dir)
    state = normalise_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    arch = infer_architecture(state, spec, vocab, overrides)
    network = ScGenePTNetwork(spec, arch)
    network.load_state_dict(state, strict=True)
    network.eval().to(device)
    n_params = sum(p.numel() for p in network.parameters())
    logger.info("scGenePT %s: %s loaded (%d parameters, %d layers, width %d, vocabulary %d)",
                spec.name, checkpoint.name, n_params, arch.nlayers, arch.d_model, len(vocab))
    return LoadedScGenePT(network=network, vocab=vocab, spec=spec, arch=arch, checkpoint=checkpoint.name,
                          device=device, n_params=n_params)
