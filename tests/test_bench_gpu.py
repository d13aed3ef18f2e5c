"""bench/gpu/bench_gpu_models.py on CPU at tiny size: its output fields, its FLOP formula, its real shapes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench" / "gpu"))

import bench_gpu_models as bench  # noqa: E402

ARTIFACTS = Path(os.environ.get("CZB_REAL_ARTIFACTS", ROOT.parent / "shared" / "real-artifacts"))


def test_flop_formula_matches_a_hand_count_for_the_tiny_geneformer():
    # 1 layer run (2 layers, emb_layer -2), d = 32, f = 64, T = 64; multiply-adds × 2:
    #   Q, K, V, O projections: 4 × T·d·d = 4 × 65,536 = 262,144
    #   feed-forward:           2 × T·d·f = 2 × 131,072 = 262,144
    #   scores QKᵀ and A·V:     2 × T·T·d = 2 × 131,072 = 262,144
    hand = 2 * (262_144 + 262_144 + 262_144)
    shape = bench.geneformer_shape(bench.TINY["geneformer"], layers_run=1)
    assert bench.forward_flops_per_cell(shape) == hand == 1_572_864


def test_flop_formula_matches_torchs_count_of_each_tiny_model():
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = bench.TINY["geneformer"]
    encoder = BertForMaskedLM(BertConfig(**config, attn_implementation="eager")).bert.eval()
    T = config["max_position_embeddings"]
    ids = torch.randint(4, config["vocab_size"], (1, T))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        encoder(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert counter.get_total_flops() == bench.forward_flops_per_cell(bench.geneformer_shape(config, 2))

    # UCE and scGPT: the counter sees the products but not PyTorch's fused CPU attention (SDPA),
    # so the attention term 4·L·d·T² is added by hand.
    from czbenchmarks.models.uce.inference import import_uce

    settings = bench.TINY["uce"]
    model = import_uce().model.TransformerModel(
        token_dim=settings["token_dim"], d_model=settings["d_model"], nhead=settings["nhead"],
        d_hid=settings["d_hid"], nlayers=settings["nlayers"], output_dim=settings["output_dim"]).eval()
    T = settings["pad_length"]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(T, 1, settings["token_dim"]), mask=torch.ones(1, T))
    attention = 4 * settings["nlayers"] * settings["d_model"] * T * T
    assert counter.get_total_flops() + attention == bench.forward_flops_per_cell(bench.uce_shape(settings))

    from czbenchmarks.models.scgpt.inference import SPECIAL_TOKENS, build_transformer, import_scgpt

    import_scgpt()
    from scgpt.tokenizer import GeneVocab

    configs, n_vocab = bench.TINY["scgpt"], bench.TINY["scgpt_vocab"]
    n_genes = n_vocab - len(SPECIAL_TOKENS)
    vocab = GeneVocab.from_dict({**{f"G{i}": i for i in range(n_genes)},
                                 **{t: n_genes + i for i, t in enumerate(SPECIAL_TOKENS)}})
    model = build_transformer(vocab, configs).eval()
    T = configs["max_seq_len"]
    ids = torch.randint(0, n_genes, (1, T))
    torch.backends.mha.set_fastpath_enabled(False)  # the fused layer kernel is opaque to the counter
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model._encode(ids, torch.rand(1, T), src_key_padding_mask=ids.eq(vocab["<pad>"]), batch_labels=None)
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    attention = 4 * configs["nlayers"] * configs["embsize"] * T * T
    assert counter.get_total_flops() + attention == bench.forward_flops_per_cell(bench.scgpt_shape(configs))


def test_real_shapes_give_the_physical_bounds_the_issue_quotes():
    # 18 layers × 4096 tokens: ~3.7 TFLOP a cell, ~265 cells/s at 989 TFLOP/s (the issue: ~250).
    full = bench.forward_flops_per_cell(bench.geneformer_shape(bench.GENEFORMER_V2_316M, 18))
    assert 240 < 989e12 / full < 290
    scgpt = bench.forward_flops_per_cell(bench.scgpt_shape(bench.SCGPT_HUMAN))
    assert 11_000 < 989e12 / scgpt < 13_000  # the issue: ~12,000


def test_constructed_configs_match_the_real_artifacts():
    config_file = ARTIFACTS / "geneformer" / "configs" / "Geneformer-V2-316M" / "config.json"
    args_file = ARTIFACTS / "scgpt" / "human" / "args.json"
    if not config_file.is_file() or not args_file.is_file():
        pytest.skip(f"real artifacts not found under {ARTIFACTS} (set CZB_REAL_ARTIFACTS)")
    real = json.loads(config_file.read_text())
    assert {k: real[k] for k in bench.GENEFORMER_V2_316M} == bench.GENEFORMER_V2_316M
    args = json.loads(args_file.read_text())
    assert {k: args[k] for k in bench.SCGPT_HUMAN} == bench.SCGPT_HUMAN
    assert len(json.loads((args_file.parent / "vocab.json").read_text())) == bench.SCGPT_VOCAB_SIZE


def test_tiny_run_on_cpu_writes_every_field(tmp_path):
    code = bench.main(["--tiny", "--device", "cpu", "--peak_tflops", "1", "--seconds", "60", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "gpu_models.json").read_text())
    errors = [r for r in report["runs"] if "error" in r]
    assert code == 0 and not errors, errors
    assert {(r["model"], r["precision"]) for r in report["runs"]} == {
        (m, p) for m in ("geneformer", "scgpt", "uce") for p in ("float32", "bfloat16")}
    for run in report["runs"]:
        assert run["cells"] == 32 and run["seconds"] > 0
        assert run["cells_per_s"] == pytest.approx(run["cells"] / run["seconds"], rel=1e-9)
        assert run["peak_gpu_memory_bytes"] is None and run["peak_rss_bytes"] > 0  # CPU: no GPU memory
        assert run["flops_per_cell"] == bench.forward_flops_per_cell(bench.Shape(**run["shape"]))
        assert run["roofline_fraction"] == pytest.approx(run["cells_per_s"] * run["flops_per_cell"] / 1e12)
        assert run["bound_cells_per_s"] == pytest.approx(1e12 / run["flops_per_cell"])
    geneformer = {r["precision"]: r for r in report["runs"] if r["model"] == "geneformer"}
    assert geneformer["float32"]["layers_run"] == 1  # emb_layer -2 of 2 layers
    assert geneformer["bfloat16"]["attn_implementation"] == "sdpa"  # the --precision fast path
    table = (tmp_path / "gpu_models.md").read_text()
    assert table.count("\n| ") == 7 and "roofline fraction" in table
