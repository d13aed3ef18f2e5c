"""The real models' shapes, built from the real artifacts on torch's meta device (no memory, seconds).

The full load-and-run of random-weight checkpoints of these shapes is a benchmark
(``bench/bench_real_shapes.py``, checkpoints from ``scripts/make_real_shape_checkpoints.py``): it
needs ~6 GB of memory and minutes per model. Here only what can be checked cheaply: that the real
configuration files build networks of the published sizes, and that the loaders accept them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import ROOT
from czbenchmarks.models.scgpt.inference import ENCODER_PREFIXES

ARTIFACTS = Path(os.environ.get("CZB_REAL_ARTIFACTS", ROOT.parent / "shared" / "real-artifacts"))
#: Bytes of the real Geneformer-V2-316M model.safetensors (real-artifacts README).
V2_316M_SAFETENSORS_BYTES = 1_265_455_076


def artifact(*parts: str):
    path = ARTIFACTS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real artifacts absent ({path}); see ../shared/real-artifacts/README.md")
    return path


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_geneformer_v2_316m_config_builds_the_316m_model():
    import torch
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig.from_json_file(str(artifact("geneformer", "configs", "Geneformer-V2-316M", "config.json")))
    with torch.device("meta"):
        model = BertForMaskedLM(config)
    total = n_params(model)
    assert 315e6 < total < 318e6
    # float32 safetensors: 4 bytes a parameter (tied embeddings stored once) plus a header of tens of kB.
    assert 0 < V2_316M_SAFETENSORS_BYTES - 4 * total < 100_000


def test_scgpt_whole_human_args_and_vocab_build_a_model_the_loader_accepts():
    import torch

    from czbenchmarks.models.scgpt import import_scgpt
    from czbenchmarks.models.scgpt.inference import build_transformer

    vocab_file = artifact("scgpt", "human", "vocab.json")
    configs = json.loads(artifact("scgpt", "human", "args.json").read_text())
    import_scgpt()
    from scgpt.tokenizer import GeneVocab

    vocab = GeneVocab.from_file(vocab_file)
    with torch.device("meta"):
        model = build_transformer(vocab, configs)
    state = model.state_dict()
    assert tuple(state["encoder.embedding.weight"].shape) == (60_697, 512)
    layers = {k.split(".")[2] for k in state if k.startswith("transformer_encoder.layers.")}
    assert len(layers) == configs["nlayers"] == 12
    # The real file's flash-attention names map back onto every encoder parameter (load_scgpt's rule).
    flash = {k.replace("in_proj_", "Wqkv."): v for k, v in state.items()}
    renamed = {k.replace("Wqkv.", "in_proj_") for k in flash}
    assert any("Wqkv." in k for k in flash)
    assert {k for k in state if k.startswith(ENCODER_PREFIXES)} <= renamed
    # 31 M in the token table, ~19 M in 12 layers of width 512, a few M in the heads.
    assert 45e6 < n_params(model) < 60e6


def test_uce_33_layers_builds_the_650m_model():
    """UCE's paper: the 33-layer model has ~650 M parameters (token table excluded); the checkpoint
    also carries the 145,469 x 5,120 token table."""
    import torch

    from czbenchmarks.models.uce import find_config, load_config, variant_settings
    from czbenchmarks.models.uce.inference import import_uce

    settings = variant_settings(load_config(find_config(script=ROOT / "bin" / "uce_model.py")), "33l")
    with torch.device("meta"):
        model = import_uce().model.TransformerModel(
            token_dim=settings["token_dim"], d_model=settings["d_model"], nhead=settings["nhead"],
            d_hid=settings["d_hid"], nlayers=settings["nlayers"], output_dim=settings["output_dim"])
    assert 0.95 * 650e6 < n_params(model) < 1.05 * 650e6
    assert settings["CHROM_TOKEN_OFFSET"] + settings["n_chrom_tokens"] == 145_469
    assert settings["token_dim"] == 5_120
