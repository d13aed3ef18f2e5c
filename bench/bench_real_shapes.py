#!/usr/bin/env python3
"""Benchmark: load time, peak memory and CPU throughput of the models at their real shapes.

The checkpoints are random-weight models of the real shapes in the real file formats, written by
``scripts/make_real_shape_checkpoints.py`` into ``bench/out/checkpoints/`` (run it first; one model at
a time, see its docstring for sizes). Each model is loaded and run in a fresh process through the
package functions the ``bin/*_model.py`` scripts call, on the first ``--cells`` PBMC test cells
(``assets/test/pbmc68k_test.h5ad``: 700 genes, mapped to each model's vocabulary as the pipeline
maps them):

* geneformer: ``GeneDictionaries`` (real gc95M) + ``tokenizer_for_variant`` + ``load_encoder`` +
  ``embed_token_batches`` with the Geneformer-V2-316M settings of ``containers/geneformer/config.yaml``;
* scgpt: ``load_scgpt`` + ``embed_matrix`` (symbols on the real 60,697-token vocabulary; max_length 1200,
  batch 32);
* uce4l / uce33l: ``variant_settings`` + ``load_uce`` + ``plan_genes`` + ``embed_matrix`` (UCE's
  ``filter`` step off: with a few cells it would drop every gene; it does not touch the network);
* scvi: what ``bin/scvi_model.py`` runs: ``SCVI.prepare_query_anndata`` + ``load_query_data`` (load)
  and ``get_latent_representation`` (embed), Census batch key.

Per model: load seconds (files to a ready network), embed seconds and cells/s (tokenising included),
and the process's peak RSS (``wait4``; imports included, so compare it with the checkpoint size). The
baseline is the checkpoint itself: peak RSS over the bytes of the checkpoint files.

Usage: python bench/bench_real_shapes.py [--models geneformer,scgpt,uce4l,uce33l,scvi] [--cells N]
       [--threads 2]   (per-model default cells: see DEFAULT_CELLS)
Writes bench/out/real_shapes.{json,md} (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
TEST_H5AD = ROOT / "assets" / "test" / "pbmc68k_test.h5ad"
CHECKPOINTS = ROOT / "bench" / "out" / "checkpoints"
OUT = ROOT / "bench" / "out"
FOLDERS = {"geneformer": "geneformer/Geneformer-V2-316M", "scgpt": "scgpt/human", "uce4l": "uce/4l",
           "uce33l": "uce/33l", "scvi": "scvi/homo_sapiens"}
#: Cells per model by default: what a shared 2-core CPU runs in a few minutes.
DEFAULT_CELLS = {"geneformer": 16, "scgpt": 32, "uce4l": 8, "uce33l": 2, "scvi": 700}


def pbmc(n_cells: int):
    import anndata as ad

    return ad.read_h5ad(TEST_H5AD)[:n_cells].copy()


def run_geneformer(folder: Path, n_cells: int) -> Dict[str, Any]:
    from czbenchmarks.models.geneformer import (
        PAD_TOKEN,
        GeneDictionaries,
        embed_token_batches,
        find_config,
        load_config,
        load_encoder,
        tokenizer_for_variant,
        variant_config,
    )

    settings = variant_config(load_config(find_config(script=ROOT / "bin" / "geneformer_model.py")), "Geneformer-V2-316M")
    adata = pbmc(n_cells)
    started = time.perf_counter()
    dictionaries = GeneDictionaries.load(folder / settings["token_dictionary"], folder / settings["gene_median_dictionary"],
                                         folder / settings["gene_mapping_dictionary"])
    loaded = load_encoder(folder, "cpu", emb_layer=int(settings["emb_layer"]))
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    tokenizer = tokenizer_for_variant(dictionaries, settings, batch_size=1024)
    specials = [dictionaries.token[t] for t in ("<cls>", "<eos>")]
    rows = [block for _, block, _ in embed_token_batches(
        loaded, tokenizer.iter_batches(adata, tokenizer.plan(adata)), pad_id=dictionaries.token[PAD_TOKEN],
        emb_mode=str(settings["emb_mode"]), special_ids=specials, forward_batch_size=16)]
    embedding = np.concatenate(rows)
    return {"load_s": load_s, "embed_s": time.perf_counter() - started, "embedding": embedding,
            "n_params": sum(p.numel() for p in loaded.encoder.parameters())}


def run_scgpt(folder: Path, n_cells: int) -> Dict[str, Any]:
    from czbenchmarks.models.scgpt import embed_matrix, load_scgpt

    adata = pbmc(n_cells)
    started = time.perf_counter()
    loaded = load_scgpt(folder, device="cpu")
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    result = embed_matrix(loaded, adata.X, adata.var["feature_name"].astype(str).tolist(), seed=0,
                          max_length=1200, batch_size=32)
    return {"load_s": load_s, "embed_s": time.perf_counter() - started, "embedding": result.embedding,
            "n_params": sum(p.numel() for p in loaded.model.parameters()),
            "genes_in_vocab": int(result.stats["n_genes_in_vocab"])}


def run_uce(variant: str):
    def run(folder: Path, n_cells: int) -> Dict[str, Any]:
        from czbenchmarks.models.uce import (
            MODEL_FILES_DIR,
            embed_matrix,
            find_config,
            load_config,
            load_uce,
            plan_genes,
            variant_settings,
        )

        settings = variant_settings(load_config(find_config(script=ROOT / "bin" / "uce_model.py")), variant, folder)
        settings["filter"] = False
        adata = pbmc(n_cells)
        started = time.perf_counter()
        loaded = load_uce(folder, settings, device="cpu")
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        plan = plan_genes(adata.var["feature_name"].astype(str).tolist(), "human", folder / MODEL_FILES_DIR)
        result = embed_matrix(loaded, adata.X, plan, seed=0)
        return {"load_s": load_s, "embed_s": time.perf_counter() - started, "embedding": result.embedding,
                "n_params": loaded.n_params, "table_source": loaded.table_source}
    return run


def run_scvi(folder: Path, n_cells: int) -> Dict[str, Any]:
    import anndata as ad
    import scvi
    import torch

    keys = ["dataset_id", "assay", "suspension_type", "donor_id"]
    source = pbmc(n_cells)
    query = ad.AnnData(X=source.X.copy(), obs=source.obs[keys].copy())
    query.var_names = source.var_names  # Ensembl IDs
    query.obs["batch"] = query.obs[keys].astype(str).agg("".join, axis=1)
    started = time.perf_counter()
    scvi.model.SCVI.prepare_query_anndata(query, str(folder), return_reference_var_names=False)
    model = scvi.model.SCVI.load_query_data(query, str(folder), accelerator="cpu")
    model.is_trained = True
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    with torch.inference_mode():
        latent = model.get_latent_representation(batch_size=1024)
    return {"load_s": load_s, "embed_s": time.perf_counter() - started, "embedding": np.asarray(latent),
            "n_params": sum(p.numel() for p in model.module.parameters())}


RUNNERS = {"geneformer": run_geneformer, "scgpt": run_scgpt, "uce4l": run_uce("4l"), "uce33l": run_uce("33l"),
           "scvi": run_scvi}


def worker(model: str, n_cells: int, threads: int) -> None:
    """Run one model in this process and print its numbers as one JSON line."""
    import logging
    import warnings

    import torch

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    torch.set_num_threads(threads)
    result = RUNNERS[model](CHECKPOINTS / FOLDERS[model], n_cells)
    embedding = result.pop("embedding")
    ok = np.isfinite(embedding).all(axis=1)
    result.update({"n_cells": int(len(embedding)), "n_embedded": int(ok.sum()), "dims": int(embedding.shape[1]),
                   "between_cell_spread": float(embedding[ok].std(axis=0).mean()) if ok.sum() > 1 else None})
    print("RESULT " + json.dumps(result), flush=True)


def _peak_rss_via_wait4(args: list) -> tuple:
    """Popen + wait4: (returncode, stdout, stderr, peak RSS bytes) of a child process."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(args, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read(), err.read(), usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="geneformer,scgpt,uce4l,uce33l,scvi")
    parser.add_argument("--cells", type=int, default=None, help="cells per model (default: DEFAULT_CELLS)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.cells, args.threads)
        return
    # Models run one invocation at a time (memory): each run updates its models' entries.
    previous = OUT / "real_shapes.json"
    results: Dict[str, Any] = json.loads(previous.read_text()) if previous.is_file() else {"models": {}}
    results.update({"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count()})
    for model in args.models.split(","):
        n_cells = args.cells or DEFAULT_CELLS[model]
        folder = CHECKPOINTS / FOLDERS[model]
        if not folder.is_dir():
            raise SystemExit(f"{folder} not found: run scripts/make_real_shape_checkpoints.py --models {model}")
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        if (folder / "model_files").is_symlink():  # UCE's shared token files are part of what loads
            size += sum(p.stat().st_size for p in (folder / "model_files").resolve().rglob("*") if p.is_file())
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        code, stdout, stderr, peak = _peak_rss_via_wait4(
            [sys.executable, __file__, "--worker", model, "--cells", str(n_cells), "--threads", str(args.threads)])
        if code:
            raise SystemExit(f"{model} failed:\n{stderr[-3000:]}")
        line = next(x for x in stdout.splitlines() if x.startswith("RESULT "))
        entry = json.loads(line[len("RESULT "):])
        entry.update({"date": time.strftime("%Y-%m-%d %H:%M"), "threads": args.threads, "load_average_before": load_before,
                      "process_s": round(time.perf_counter() - started, 1), "checkpoint_bytes": size,
                      "peak_rss_bytes": peak, "load_average_after": os.getloadavg()[0],
                      "cells_per_s": entry["n_embedded"] / entry["embed_s"]})
        results["models"][model] = entry
        print(model, json.dumps(entry), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "real_shapes.json").write_text(json.dumps(results, indent=2) + "\n")
    gib = 2.0 ** 30
    lines = ["| model | parameters | checkpoint | load | cells (embedded) | embed | cells/s | peak RSS | peak RSS / checkpoint "
             "| load average before / after |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for model, e in results["models"].items():
        lines.append(f"| {model} | {e['n_params'] / 1e6:.1f} M | {e['checkpoint_bytes'] / gib:.2f} GiB | {e['load_s']:.1f} s | "
                     f"{e['n_cells']} ({e['n_embedded']}) | {e['embed_s']:.1f} s | {e['cells_per_s']:.2f} | "
                     f"{e['peak_rss_bytes'] / gib:.2f} GiB | {e['peak_rss_bytes'] / e['checkpoint_bytes']:.2f} | "
                     f"{e.get('load_average_before', float('nan')):.1f} / {e['load_average_after']:.1f} |")
    (OUT / "real_shapes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
