#!/usr/bin/env python3
"""GPU benchmark: cells/s, peak GPU memory and the fraction of the bfloat16 roofline of the real-shape
foundation models, in float32 and in the reduced-precision fast path.

Models (random weights of the real shapes, built in code: the GPU machine only has the repository):

* **Geneformer-V2-316M**: ``BertForMaskedLM`` of the real ``config.json`` (:data:`GENEFORMER_V2_316M`:
  18 layers, hidden 1152, 18 heads, intermediate 4608, 4096 positions, 20,275 tokens), saved to a
  temporary folder and loaded by the project's ``load_encoder`` (which keeps the layers up to
  ``emb_layer`` -2, i.e. 17 of 18, as the V2 variant is configured); cells go through
  ``embed_token_batches`` (``<cls>`` pooling). Reduced precision = the project's ``--precision``:
  ``torch.autocast`` + SDPA attention (``attn_implementation="sdpa"``, flash kernels on H100/H200).
* **scGPT whole-human**: the project's ``build_transformer`` (scgpt's ``TransformerModel``) with the
  real ``args.json`` numbers (:data:`SCGPT_HUMAN`: 12 layers, d_model 512, 8 heads, d_hid 512) and a
  60,697-token vocabulary; ``model._encode`` as the project's ``embed_matrix`` calls it, on 1,200-token
  cells. Reduced precision: ``torch.autocast`` (PyTorch's attention then runs SDPA).
* **UCE-33L**: ``uce.model.TransformerModel`` with the arguments the project's ``load_uce`` passes
  (:data:`UCE_33L`: 33 layers, d_model 1280, 20 heads, d_hid 5120, token_dim 5120, output 1280) and a
  145,469 × 5,120 token table; the forward of the project's ``embed_matrix`` (table lookup, normalise,
  ``model.forward``) on 1,536-token sentences (``pad_length``). Reduced precision: ``torch.autocast``.

Cells are synthetic and full length (every cell fills the model's window), so the numbers are the
model's bound, not a dataset's: real cells are often shorter. Tokenisation is not timed (CPU work
that overlaps the GPU in a pipeline task): one batch of token ids is drawn once and fed again. Each (model, precision) run embeds up to ``--cells`` cells
after one warm-up batch and stops early after ``--seconds``; cells/s = cells / seconds timed.

Forward FLOPs per cell (multiply-adds × 2), for L layers run, width d, feed-forward width f, T tokens
and P_x matrix parameters per token outside the layers (input/output projections run on every token):

    FLOPs = 2 · T · (L · (4 d² + 2 d f) + P_x)  +  4 · L · d · T²

the first term the matrix products (Q, K, V, output: 4d²; feed-forward: 2df), the second the
attention scores and their product with V (2 · T² · d each). Roofline fraction = cells/s × FLOPs /
peak, against the bfloat16 dense tensor peak (H100/H200 SXM: 989 TFLOP/s; ``--peak_tflops`` for
others) for every precision, so float32 rows show how far the default is from the bound.

Usage (GPU): ``bash bench/gpu/run.sh`` (or ``python bench/gpu/bench_gpu_models.py``); CPU check:
``python bench/gpu/bench_gpu_models.py --tiny``. Writes ``gpu_models.json`` and ``gpu_models.md`` to
``$OUT`` when set, else ``bench/out/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

#: Geneformer-V2-316M's config.json (real-artifacts geneformer/configs/Geneformer-V2-316M), the fields
#: that shape the network; tests/test_bench_gpu.py checks them against the real file when present.
GENEFORMER_V2_316M: Dict[str, Any] = {
    "architectures": ["BertForMaskedLM"], "model_type": "bert", "hidden_act": "relu",
    "hidden_size": 1152, "intermediate_size": 4608, "num_attention_heads": 18, "num_hidden_layers": 18,
    "max_position_embeddings": 4096, "vocab_size": 20275, "type_vocab_size": 2, "pad_token_id": 0,
    "layer_norm_eps": 1e-12, "position_embedding_type": "absolute", "initializer_range": 0.02,
    "attention_probs_dropout_prob": 0.1, "hidden_dropout_prob": 0.1,
}
#: scGPT whole-human args.json (real-artifacts scgpt/human/args.json): the keys build_transformer reads.
SCGPT_HUMAN: Dict[str, Any] = {"embsize": 512, "nheads": 8, "d_hid": 512, "nlayers": 12, "n_layers_cls": 3,
                               "dropout": 0.2, "pad_token": "<pad>", "pad_value": -2, "max_seq_len": 1200}
#: scGPT whole-human vocabulary size (60,694 genes + <pad>, <cls>, <eoc>).
SCGPT_VOCAB_SIZE = 60_697
#: UCE-33L: the project's UCE defaults (src/czbenchmarks/models/uce/config.py) with 33 layers.
UCE_33L: Dict[str, Any] = {"nlayers": 33, "d_model": 1280, "nhead": 20, "d_hid": 5120, "token_dim": 5120,
                           "output_dim": 1280, "pad_length": 1536, "n_tokens": 145_469, "batch_size": 40}
#: UCE's decoder hard-codes a 1024-wide first block (uce.model.TransformerModel).
UCE_DECODER_WIDTH = 1024
#: bfloat16 dense tensor-core peak (TFLOP/s) by GPU name.
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}

TINY = {
    "geneformer": {**GENEFORMER_V2_316M, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
                   "num_hidden_layers": 2, "max_position_embeddings": 64, "vocab_size": 200},
    "scgpt": {**SCGPT_HUMAN, "embsize": 32, "nheads": 2, "d_hid": 64, "nlayers": 2, "n_layers_cls": 1, "max_seq_len": 48},
    "scgpt_vocab": 300,
    "uce": {**UCE_33L, "nlayers": 2, "d_model": 32, "nhead": 2, "d_hid": 64, "token_dim": 16, "output_dim": 32,
            "pad_length": 40, "n_tokens": 500, "batch_size": 8},
}


@dataclass
class Shape:
    """What the FLOP count needs: layers run, width, feed-forward width, tokens, per-token extras."""

    layers: int
    d_model: int
    d_ff: int
    tokens: int
    extra_params_per_token: int = 0


def forward_flops_per_cell(shape: Shape) -> int:
    """``2 T (L (4d² + 2df) + P_x) + 4 L d T²`` (see the module docstring)."""
    L, d, f, T = shape.layers, shape.d_model, shape.d_ff, shape.tokens
    return 2 * T * (L * (4 * d * d + 2 * d * f) + shape.extra_params_per_token) + 4 * L * d * T * T


def geneformer_shape(config: Dict[str, Any], layers_run: int) -> Shape:
    """Geneformer: embeddings are lookups, so only the encoder layers run count."""
    return Shape(layers_run, config["hidden_size"], config["intermediate_size"], config["max_position_embeddings"])


def scgpt_shape(configs: Dict[str, Any]) -> Shape:
    """scGPT ``_encode``: the value encoder's Linear(1, d) and Linear(d, d) on every token."""
    d = configs["embsize"]
    return Shape(configs["nlayers"], d, configs["d_hid"], configs["max_seq_len"], d + d * d)


def uce_shape(settings: Dict[str, Any]) -> Shape:
    """UCE: the input projection (token_dim → d) and the decoder (d → 1024 → out → out → out) on every token."""
    d, out = settings["d_model"], settings["output_dim"]
    extra = settings["token_dim"] * d + d * UCE_DECODER_WIDTH + UCE_DECODER_WIDTH * out + 2 * out * out
    return Shape(settings["nlayers"], d, settings["d_hid"], settings["pad_length"], extra)


# -- runs -----------------------------------------------------------------------------------------
def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_batches(step: Callable[[int], None], device: str, n_cells: int, batch: int, seconds: float) -> Dict[str, Any]:
    """One warm-up ``step(batch)``, then steps until ``n_cells`` cells or ``seconds`` have passed."""
    import torch

    step(batch)
    _sync(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    done, started = 0, time.perf_counter()
    while done < n_cells:
        size = min(batch, n_cells - done)
        step(size)
        done += size
        if time.perf_counter() - started > seconds:
            break
    _sync(device)
    elapsed = time.perf_counter() - started
    return {"cells": done, "seconds": elapsed, "cells_per_s": done / elapsed}


def autocast(device: str, precision: str):
    """The project's reduced-precision context (no-op for float32)."""
    import torch

    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu",
                          dtype=getattr(torch, precision), enabled=precision != "float32")


def run_geneformer(config: Dict[str, Any], device: str, precision: str, n_cells: int, batch: int,
                   seconds: float, seed: int) -> Dict[str, Any]:
    """Random-weight checkpoint → ``load_encoder`` → ``embed_token_batches`` on full-window cells."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from czbenchmarks.models.geneformer.embedding import embed_token_batches, load_encoder
    from czbenchmarks.models.geneformer.tokenizer import TokenizedBatch

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(seed)
        with torch.device(device):
            model = BertForMaskedLM(BertConfig(**config))
        n_params = sum(p.numel() for p in model.parameters())
        model.save_pretrained(folder)
        del model
        loaded = load_encoder(folder, device=device, emb_layer=-2, precision=precision)
    T, vocab = config["max_position_embeddings"], config["vocab_size"]

    # <cls>=2 + genes (ids past the 4 specials) + <eos>=3: the V2 layout, the window full. One batch
    # of cells is drawn once and fed again (the cost does not depend on which genes), so drawing
    # tokens on the CPU never paces the GPU.
    pool = [np.concatenate(([2], rng.choice(np.arange(4, vocab), T - 2, replace=False), [3])) for _ in range(batch)]

    def step(size: int) -> None:
        tokens = TokenizedBatch(0, pool[:size], np.full(size, T - 2))
        for _ in embed_token_batches(loaded, [tokens], pad_id=0, emb_mode="cls", special_ids=[2, 3],
                                     forward_batch_size=size):
            pass

    result = timed_batches(step, device, n_cells, batch, seconds)
    shape = geneformer_shape(config, loaded.n_layers_run)
    return {**result, "n_params": int(n_params), "layers_run": loaded.n_layers_run,
            "attn_implementation": loaded.attn_implementation, "shape": asdict(shape),
            "flops_per_cell": forward_flops_per_cell(shape)}


def run_scgpt(configs: Dict[str, Any], vocab_size: int, device: str, precision: str, n_cells: int, batch: int,
              seconds: float, seed: int) -> Dict[str, Any]:
    """The project's ``build_transformer`` with random weights; ``_encode`` on ``max_seq_len``-token cells."""
    import torch

    from czbenchmarks.models.scgpt.inference import SPECIAL_TOKENS, build_transformer, import_scgpt

    import_scgpt()
    from scgpt.tokenizer import GeneVocab

    genes = {f"GENE{i}": i for i in range(vocab_size - len(SPECIAL_TOKENS))}
    genes.update({token: len(genes) + i for i, token in enumerate(SPECIAL_TOKENS)})
    vocab = GeneVocab.from_dict(genes)
    vocab.set_default_index(vocab["<pad>"])
    torch.manual_seed(seed)
    model = build_transformer(vocab, configs).to(device).eval()
    n_params = sum(p.numel() for p in model.parameters())
    pad_id, cls_id = vocab["<pad>"], vocab["<cls>"]
    T = configs["max_seq_len"]
    generator = torch.Generator(device="cpu").manual_seed(seed)

    # PyTorch's fused encoder-layer kernel (its inference "fast path") takes float32 only; under
    # CPU autocast it is still chosen and fails, so reduced precision runs the unfused layer (SDPA).
    fastpath = precision == "float32"
    set_fastpath = getattr(torch.backends.mha, "set_fastpath_enabled", lambda enabled: None)  # torch < 2.1: no switch
    set_fastpath(fastpath)

    # One batch drawn once and fed again (see run_geneformer): distinct genes, bins 1..50, <cls> first.
    pool_ids = torch.stack([torch.randperm(vocab_size - len(SPECIAL_TOKENS), generator=generator)[:T] for _ in range(batch)])
    pool_ids[:, 0] = cls_id
    pool_values = torch.randint(1, 51, (batch, T), generator=generator).float()
    pool_values[:, 0] = configs["pad_value"]
    pool_ids, pool_values = pool_ids.to(device), pool_values.to(device)

    def step(size: int) -> None:
        ids, values = pool_ids[:size], pool_values[:size]
        with torch.inference_mode(), autocast(device, precision):
            out = model._encode(ids, values, src_key_padding_mask=ids.eq(pad_id), batch_labels=None)
            out[:, 0, :].float().cpu()

    try:
        result = timed_batches(step, device, n_cells, batch, seconds)
    finally:
        set_fastpath(True)
    shape = scgpt_shape(configs)
    return {**result, "n_params": int(n_params), "vocab_size": vocab_size, "mha_fastpath": fastpath, "shape": asdict(shape),
            "flops_per_cell": forward_flops_per_cell(shape)}


def run_uce(settings: Dict[str, Any], device: str, precision: str, n_cells: int, batch: int, seconds: float,
            seed: int) -> Dict[str, Any]:
    """``uce.model.TransformerModel`` as ``load_uce`` builds it, with a random token table."""
    import torch
    from torch import nn

    from czbenchmarks.models.uce.inference import import_uce

    TransformerModel = import_uce().model.TransformerModel
    torch.manual_seed(seed)
    with torch.device(device):
        model = TransformerModel(token_dim=settings["token_dim"], d_model=settings["d_model"], nhead=settings["nhead"],
                                 d_hid=settings["d_hid"], nlayers=settings["nlayers"], output_dim=settings["output_dim"],
                                 dropout=0.05)
        model.pe_embedding = nn.Embedding(settings["n_tokens"], settings["token_dim"])
    model = model.eval()
    n_params = sum(p.numel() for name, p in model.named_parameters()
                   if not name.startswith(("binary_decoder.", "pe_embedding.")))
    T = settings["pad_length"]
    generator = torch.Generator(device="cpu").manual_seed(seed)

    # One batch drawn once and fed again (see run_geneformer); full sentences, no padding.
    pool = torch.randint(4, settings["n_tokens"], (batch, T), generator=generator)
    pool[:, 0] = 3  # <cls>
    pool, pool_mask = pool.to(device), torch.ones(batch, T, device=device)

    def step(size: int) -> None:
        with torch.no_grad(), autocast(device, precision):
            tokens = model.pe_embedding(pool[:size].permute(1, 0))
            tokens = nn.functional.normalize(tokens, dim=2)
            _, cell = model.forward(tokens, mask=pool_mask[:size])
            cell.float().cpu()

    result = timed_batches(step, device, n_cells, batch, seconds)
    shape = uce_shape(settings)
    return {**result, "n_params": int(n_params), "token_table": [settings["n_tokens"], settings["token_dim"]],
            "shape": asdict(shape), "flops_per_cell": forward_flops_per_cell(shape)}


# -- driver ---------------------------------------------------------------------------------------
def peak_tflops_for(device_name: str, override: Optional[float]) -> Optional[float]:
    """The bfloat16 dense peak of the GPU (``override`` first); None when unknown (CPU)."""
    if override:
        return override
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device_name), None)


def markdown(report: Dict[str, Any]) -> str:
    """The results as one markdown table."""
    lines = [f"Device: {report['device_name']}; torch {report['torch']}; bf16 peak "
             f"{report['peak_bf16_tflops'] or 'unknown'} TFLOP/s. FLOPs/cell = {report['flops_formula']}.", "",
             "| model | precision | tokens/cell | batch | cells | s | cells/s | peak GPU memory | GFLOP/cell | "
             "bound cells/s (bf16 peak) | roofline fraction |", "|" + "---|" * 11]
    for r in report["runs"]:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['precision']} | | | | | error: {r['error'][:120]} | | | | |")
            continue
        memory = f"{r['peak_gpu_memory_bytes'] / 2**30:.1f} GiB" if r["peak_gpu_memory_bytes"] else "—"
        bound = f"{r['bound_cells_per_s']:,.0f}" if r["bound_cells_per_s"] else "—"
        fraction = f"{r['roofline_fraction']:.3f}" if r["roofline_fraction"] is not None else "—"
        lines.append(f"| {r['model']} | {r['precision']} | {r['shape']['tokens']:,} | {r['batch']} | {r['cells']:,} | "
                     f"{r['seconds']:.1f} | {r['cells_per_s']:,.1f} | {memory} | {r['flops_per_cell'] / 1e9:,.1f} | "
                     f"{bound} | {fraction} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    """Run the selected models × precisions and write gpu_models.{json,md}."""
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="geneformer,scgpt,uce")
    parser.add_argument("--precisions", default="float32,bfloat16", help="float32, bfloat16, float16")
    parser.add_argument("--cells", type=int, default=10_000, help="cells per run (at most)")
    parser.add_argument("--seconds", type=float, default=40.0, help="stop a run after this long (timed part)")
    parser.add_argument("--batch", default="geneformer=16,scgpt=64,uce=40", help="cells per forward pass, per model")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--peak_tflops", type=float, default=None, help="bf16 dense peak, when the GPU is not known")
    parser.add_argument("--tiny", action="store_true", help="2-layer tiny shapes, 32 cells (CPU check)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="default: $OUT, else bench/out")
    args = parser.parse_args(argv)

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.tiny:
        args.cells = min(args.cells, 32)
    batches = {k: int(v) for k, v in (item.split("=") for item in args.batch.split(","))}
    if args.tiny:
        batches = {k: min(v, 8) for k, v in batches.items()}
    gf_config = TINY["geneformer"] if args.tiny else GENEFORMER_V2_316M
    sc_configs = TINY["scgpt"] if args.tiny else SCGPT_HUMAN
    sc_vocab = TINY["scgpt_vocab"] if args.tiny else SCGPT_VOCAB_SIZE
    uce_settings = TINY["uce"] if args.tiny else UCE_33L
    device_name = torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or "cpu"
    peak = peak_tflops_for(device_name, args.peak_tflops)
    if device == "cpu":
        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    runners = {
        "geneformer": lambda p, b: run_geneformer(gf_config, device, p, args.cells, b, args.seconds, args.seed),
        "scgpt": lambda p, b: run_scgpt(sc_configs, sc_vocab, device, p, args.cells, b, args.seconds, args.seed),
        "uce": lambda p, b: run_uce(uce_settings, device, p, args.cells, b, args.seconds, args.seed),
    }
    runs: List[Dict[str, Any]] = []
    report = {
        "device": device, "device_name": device_name, "torch": torch.__version__,
        "transformers": __import__("transformers").__version__, "tiny": args.tiny,
        "peak_bf16_tflops": peak, "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "flops_formula": "2·T·(L·(4d² + 2·d·f) + P_x) + 4·L·d·T²", "runs": runs,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = args.out or Path(os.environ.get("OUT") or ROOT / "bench" / "out")
    out.mkdir(parents=True, exist_ok=True)

    def write() -> None:
        # After every run: a timeout keeps what finished.
        for name, text in (("gpu_models.json", json.dumps(report, indent=1)), ("gpu_models.md", markdown(report))):
            tmp = out / (name + ".part")
            tmp.write_text(text)
            tmp.replace(out / name)

    for model in [m for m in args.models.split(",") if m]:
        for precision in [p for p in args.precisions.split(",") if p]:
            print(f"{model} {precision} ...", flush=True)
            row: Dict[str, Any] = {"model": model, "precision": precision, "batch": batches[model]}
            try:
                row.update(runners[model](precision, batches[model]))
            except Exception as err:  # one failing model must not lose the others' numbers
                row["error"] = f"{type(err).__name__}: {err}"
                runs.append(row)
                write()
                print("  failed:", row["error"], flush=True)
                continue
            row["peak_gpu_memory_bytes"] = torch.cuda.max_memory_allocated() if device.startswith("cuda") else None
            row["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            row["achieved_tflops"] = row["cells_per_s"] * row["flops_per_cell"] / 1e12
            row["bound_cells_per_s"] = peak * 1e12 / row["flops_per_cell"] if peak else None
            row["roofline_fraction"] = row["achieved_tflops"] / peak if peak else None
            runs.append(row)
            write()
            print(f"  {row['cells_per_s']:.1f} cells/s, fraction {row['roofline_fraction']}", flush=True)
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    write()
    print(markdown(report))
    return 0 if all("error" not in r for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
