#!/usr/bin/env python3
"""Benchmark: how far Geneformer's bfloat16 autocast embeddings stray from float32 (CPU).

A Geneformer-V2-316M of the real shape (``config.json`` from the real artifacts: 18 layers, hidden
1152, 18 heads, 4096 positions, vocabulary 20,275) is built with random weights (transformers' own
initialisation, seeded) and saved to a temporary folder, so the real loader runs; no weights are
committed or downloaded. Cells:

* ``--cells`` PBMC test cells (``assets/test/pbmc68k_test.h5ad``), tokenized with the real gc95M
  dictionaries (their own lengths: the test data has 700 genes);
* ``--full_length_cells`` synthetic cells of the full 4096-token input: Poisson counts on genes drawn
  from the gc95M dictionary (every gene expressed, so the window is full).

Each set is embedded with ``precision="float32"`` and ``"bfloat16"`` (autocast on CPU, SDPA attention)
through ``load_encoder`` / ``embed_token_batches`` (the ``<cls>`` state of layer -2, as the V2 variant
is configured) and the element-wise ``|Δ|`` (max, mean), the relative error and the cosine similarity
per cell are reported. The baseline is float32 on the same weights and tokens.

Usage: python bench/bench_geneformer_precision.py [--cells 100] [--full_length_cells 2] [--full_length_tokens 4096]
       [--threads 2]
Writes bench/out/geneformer_precision.{json,md} (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
TEST_H5AD = ROOT / "assets" / "test" / "pbmc68k_test.h5ad"
ARTIFACTS = Path(os.environ.get("CZB_REAL_ARTIFACTS", ROOT.parent / "shared" / "real-artifacts"))
OUT = ROOT / "bench" / "out"


def build_random_checkpoint(config_file: Path, folder: Path, seed: int) -> int:
    """A BertForMaskedLM of ``config_file``'s shape with seeded random weights, saved to ``folder``."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    model = BertForMaskedLM(BertConfig.from_json_file(str(config_file)))
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(str(folder))
    return int(n_params)


def full_length_cells(dictionaries: Any, n_cells: int, seed: int):
    """AnnData of ``n_cells`` cells expressing 6,000 dictionary genes each (more than fit in any window)."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    genes = rng.choice(np.array(dictionaries.gene_keys), 6000, replace=False)
    counts = rng.poisson(rng.gamma(1.0, 3.0, len(genes)), size=(n_cells, len(genes))) + 1
    return ad.AnnData(sp.csr_matrix(counts.astype(np.float32)),
                      obs=pd.DataFrame(index=[f"synthetic{i}" for i in range(n_cells)]),
                      var=pd.DataFrame({"ensembl_id": genes}, index=genes))


def embed(model_dir: Path, batches: List[Any], precision: str, forward_batch_size: int, pad_id: int,
          specials: List[int]) -> Dict[str, Any]:
    from czbenchmarks.models.geneformer import embed_token_batches, load_encoder

    loaded = load_encoder(model_dir, "cpu", emb_layer=-2, precision=precision)
    started = time.perf_counter()
    rows = [out for _, out, _ in embed_token_batches(loaded, batches, pad_id=pad_id, emb_mode="cls",
                                                     special_ids=specials, forward_batch_size=forward_batch_size)]
    seconds = time.perf_counter() - started
    info = {"attn_implementation": loaded.attn_implementation, "seconds": round(seconds, 2)}
    del loaded
    return {"embedding": np.concatenate(rows), **info}


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _nearest(x: np.ndarray) -> np.ndarray:
    """Each row's nearest other row (Euclidean)."""
    distances = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    return distances.argmin(axis=1)


def compare(reference: np.ndarray, other: np.ndarray) -> Dict[str, Any]:
    """Element-wise |Δ|, and how it compares with what tells cells apart.

    A random-weight encoder maps every cell near one common vector, so the plain cosine says little;
    the between-cell spread (per-dimension standard deviation over cells) and the cosine after
    removing the float32 mean cell measure the error against the cell-specific part."""
    reference, other = reference.astype(np.float64), other.astype(np.float64)
    delta = np.abs(reference - other)
    result: Dict[str, Any] = {
        "max_abs_delta": float(delta.max()),
        "mean_abs_delta": float(delta.mean()),
        "mean_abs_value_fp32": float(np.abs(reference).mean()),
        "min_cosine": float(_cosine(reference, other).min()),
    }
    if len(reference) > 2:
        spread = reference.std(axis=0).mean()
        centre = reference.mean(axis=0)
        centred = _cosine(reference - centre, other - centre)
        result.update({
            "between_cell_spread_fp32": float(spread),
            "mean_abs_delta_over_spread": float(delta.mean() / spread),
            "min_centred_cosine": float(centred.min()),
            "mean_centred_cosine": float(centred.mean()),
            "same_nearest_neighbour": float(np.mean(_nearest(reference) == _nearest(other))),
        })
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=100)
    parser.add_argument("--full_length_cells", type=int, default=2)
    parser.add_argument("--full_length_tokens", type=int, default=4096,
                        help="input size of the synthetic cells (4096: the model's full window)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import anndata as ad
    import torch

    from czbenchmarks.models.geneformer import GeneDictionaries, RankValueTokenizer

    torch.set_num_threads(args.threads)
    config_file = ARTIFACTS / "geneformer" / "configs" / "Geneformer-V2-316M" / "config.json"
    folder = ARTIFACTS / "geneformer" / "gene_dictionaries"
    if not config_file.is_file() or not folder.is_dir():
        sys.exit(f"real artifacts not found under {ARTIFACTS} (set CZB_REAL_ARTIFACTS)")
    dictionaries = GeneDictionaries.load(folder / "token_dictionary_gc95M.pkl",
                                         folder / "gene_median_dictionary_gc95M.pkl",
                                         folder / "ensembl_mapping_dict_gc95M.pkl")
    sets = {}
    if args.cells:
        tokenizer = RankValueTokenizer(dictionaries, 4096, special_token=True, batch_size=args.cells)
        pbmc = ad.read_h5ad(TEST_H5AD)[: args.cells].copy()
        sets["pbmc"] = (list(tokenizer.iter_batches(pbmc)), 8)
    if args.full_length_cells:
        synthetic = full_length_cells(dictionaries, args.full_length_cells, args.seed)
        long_tokenizer = RankValueTokenizer(dictionaries, args.full_length_tokens, special_token=True)
        sets[f"synthetic_{args.full_length_tokens}_tokens"] = (list(long_tokenizer.iter_batches(synthetic)), 1)
    specials = [dictionaries.token["<cls>"], dictionaries.token["<eos>"]]
    results: Dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
        "threads": args.threads, "load_average": os.getloadavg()[0], "torch": torch.__version__,
        "seed": args.seed, "sets": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "Geneformer-V2-316M-random"
        results["n_params"] = build_random_checkpoint(config_file, model_dir, args.seed)
        for name, (batches, forward_batch_size) in sets.items():
            lengths = [len(ids) for batch in batches for ids in batch.input_ids]
            runs = {p: embed(model_dir, batches, p, forward_batch_size, 0, specials) for p in ("float32", "bfloat16")}
            entry = {
                "n_cells": len(lengths), "tokens_per_cell": [int(min(lengths)), int(np.median(lengths)), int(max(lengths))],
                "seconds": {p: r["seconds"] for p, r in runs.items()},
                "attn_implementation": {p: r["attn_implementation"] for p, r in runs.items()},
                **compare(runs["float32"]["embedding"], runs["bfloat16"]["embedding"]),
            }
            results["sets"][name] = entry
            print(name, json.dumps(entry), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    suffix = os.environ.get("CZB_BENCH_SUFFIX", "")
    (OUT / f"geneformer_precision{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["| cells | tokens per cell (min/median/max) | max abs Δ | mean abs Δ | mean abs value | mean abs Δ / between-cell spread "
             "| centred cosine min / mean | same nearest neighbour | s fp32 / bf16 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, e in results["sets"].items():
        spread = f"{e['mean_abs_delta_over_spread']:.3g}" if "mean_abs_delta_over_spread" in e else "-"
        centred = f"{e['min_centred_cosine']:.4f} / {e['mean_centred_cosine']:.4f}" if "min_centred_cosine" in e else "-"
        nearest = f"{e['same_nearest_neighbour']:.0%}" if "same_nearest_neighbour" in e else "-"
        lines.append(f"| {name}: {e['n_cells']} | {'/'.join(map(str, e['tokens_per_cell']))} | {e['max_abs_delta']:.3g} | "
                     f"{e['mean_abs_delta']:.3g} | {e['mean_abs_value_fp32']:.3g} | {spread} | {centred} | {nearest} | "
                     f"{e['seconds']['float32']} / {e['seconds']['bfloat16']} |")
    (OUT / f"geneformer_precision{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
