#!/usr/bin/env python3
"""Write random-weight checkpoints of the real models' shapes, in the file formats the pipeline loads.

Nothing is downloaded or committed: the shapes come from the real artifacts
(``../shared/real-artifacts``, README there; ``$CZB_REAL_ARTIFACTS`` elsewhere) and the models'
published settings, the weights are seeded random draws, and the folders go to a git-ignored
directory (default ``bench/out/checkpoints/``), each written under a temporary name and renamed when
complete. ``bench/bench_real_shapes.py`` loads them through the pipeline's loaders.

* ``geneformer/Geneformer-V2-316M/``: ``BertForMaskedLM`` of the real ``config.json`` (18 layers, hidden
  1152, 4096 positions, 20,275 tokens) saved by transformers (``model.safetensors``), built by
  ``bench/bench_geneformer_precision.build_random_checkpoint``; ``gene_dictionaries/`` links to the
  real gc95M dictionaries.
* ``scgpt/human/``: scgpt's ``TransformerModel`` as ``build_transformer`` makes it from the real
  ``args.json`` and 60,697-token ``vocab.json`` (linked), saved as ``best_model.pt`` with the
  flash-attention key names of the real file (``self_attn.Wqkv.*``).
* ``uce/4l/``, ``uce/33l/``: ``uce.model.TransformerModel`` state dicts (d_model 1280, 20 heads, d_hid
  5120, token_dim 5120, output 1280; prediction head included) with the 145,469 x 5,120 token table
  (``pe_embedding.weight``: the 143,574 rows of ``all_tokens.torch`` + UCE's 1,895 seeded chromosome
  tokens); ``model_files/`` (shared, linked from each variant) holds ``all_tokens.torch``,
  ``species_offsets.pkl`` (the gene rows split over UCE's eight species), ``species_chrom.csv`` and the
  human protein-embedding file (5,120-d vectors for the PBMC test genes only: UCE reads only the
  dataset's species' file, for its gene order). 4l: ~0.4 + 3.0 GB; 33l: ~2.7 + 3.0 GB;
  ``all_tokens.torch`` 2.9 GB.
* ``scvi/homo_sapiens/``: scVI of the Census shape (8,000 Ensembl genes: the PBMC test genes + others
  of the gc95M dictionary; ``CENSUS_SCVI_ARCHITECTURE`` with scVI's default hidden width 128;
  ``--scvi_batches`` Census-style batch labels), initialised and saved without training
  (``model.pt``).

Usage: python scripts/make_real_shape_checkpoints.py [--models geneformer,scgpt,uce4l,uce33l,scvi]
       [--out bench/out/checkpoints] [--seed 0] [--scvi_batches 1000]
Peak memory (measured): 8.5 GiB for uce33l, 5.7 GiB for uce4l, 2 GiB for geneformer; the others less. One model at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "scripts"), str(ROOT / "bench")]
ARTIFACTS = Path(os.environ.get("CZB_REAL_ARTIFACTS", ROOT.parent / "shared" / "real-artifacts"))
TEST_H5AD = ROOT / "assets" / "test" / "pbmc68k_test.h5ad"
DEFAULT_OUT = ROOT / "bench" / "out" / "checkpoints"
GENEFORMER_CONFIG = ARTIFACTS / "geneformer" / "configs" / "Geneformer-V2-316M" / "config.json"
GENEFORMER_DICTIONARIES = ARTIFACTS / "geneformer" / "gene_dictionaries"
SCGPT_DIR = ARTIFACTS / "scgpt" / "human"
#: UCE token rows: 4 specials + the genes of all species (= CHROM_TOKEN_OFFSET); 1,895 chromosome
#: tokens follow in the checkpoint's table.
UCE_GENE_TOKEN_ROWS, UCE_CHROMOSOMES = 143_574, [str(c) for c in range(1, 23)] + ["X", "Y", "MT"]
#: The Census scVI gene count (scvi-config.yaml: top_n_hvg 8000).
CENSUS_SCVI_GENES = 8000


def require_artifacts(*paths: Path) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        sys.exit(f"real artifacts not found ({', '.join(missing)}); set CZB_REAL_ARTIFACTS")


def uce_settings(variant: str) -> Dict[str, Any]:
    """The variant's settings from the project's UCE config (containers/uce/config.yaml)."""
    from czbenchmarks.models.uce import find_config, load_config, variant_settings

    return variant_settings(load_config(find_config(script=ROOT / "bin" / "uce_model.py")), variant)


def pbmc_var():
    """The PBMC test genes (var with ``feature_name`` and Ensembl var_names)."""
    import anndata as ad

    adata = ad.read_h5ad(TEST_H5AD, backed="r")
    try:
        return adata.var.copy()
    finally:
        adata.file.close()


def build_geneformer(folder: Path, seed: int) -> Dict[str, Any]:
    from bench_geneformer_precision import build_random_checkpoint

    require_artifacts(GENEFORMER_CONFIG, GENEFORMER_DICTIONARIES)
    n_params = build_random_checkpoint(GENEFORMER_CONFIG, folder, seed)
    (folder / "gene_dictionaries").symlink_to(GENEFORMER_DICTIONARIES.resolve(), target_is_directory=True)
    return {"n_params": n_params}


def build_scgpt(folder: Path, seed: int) -> Dict[str, Any]:
    import torch

    from czbenchmarks.models.scgpt import import_scgpt
    from czbenchmarks.models.scgpt.inference import build_transformer

    require_artifacts(SCGPT_DIR / "vocab.json", SCGPT_DIR / "args.json")
    import_scgpt()
    from scgpt.tokenizer import GeneVocab

    torch.manual_seed(seed)
    vocab = GeneVocab.from_file(SCGPT_DIR / "vocab.json")
    configs = json.loads((SCGPT_DIR / "args.json").read_text())
    model = build_transformer(vocab, configs)
    n_params = sum(p.numel() for p in model.parameters())
    # The real best_model.pt was trained with flash-attn: its fused projection is named Wqkv.
    state = {k.replace("in_proj_", "Wqkv."): v for k, v in model.state_dict().items()}
    folder.mkdir(parents=True)
    torch.save(state, folder / "best_model.pt")
    for name in ("vocab.json", "args.json"):
        (folder / name).symlink_to((SCGPT_DIR / name).resolve())
    return {"n_params": int(n_params), "vocab_size": len(vocab)}


def build_uce_model_files(folder: Path, seed: int) -> Dict[str, Any]:
    """The shared model_files/: token table, species offsets, chromosome positions, human protein file."""
    import pandas as pd
    import torch

    from czbenchmarks.models.uce.species import PROTEIN_EMBEDDING_FILES

    settings = uce_settings("4l")
    assert settings["CHROM_TOKEN_OFFSET"] == UCE_GENE_TOKEN_ROWS, settings["CHROM_TOKEN_OFFSET"]
    token_dim = settings["token_dim"]
    (folder / "protein_embeddings").mkdir(parents=True)
    generator = torch.Generator().manual_seed(seed)
    torch.save(torch.randn(UCE_GENE_TOKEN_ROWS, token_dim, generator=generator), folder / "all_tokens.torch")
    # Gene rows after the 4 specials, split over the eight species in UCE's order (human first).
    n_species = len(PROTEIN_EMBEDDING_FILES)
    per_species = (UCE_GENE_TOKEN_ROWS - 4) // n_species
    offsets = {species: 4 + i * per_species for i, species in enumerate(PROTEIN_EMBEDDING_FILES)}
    with open(folder / "species_offsets.pkl", "wb") as handle:
        pickle.dump(offsets, handle)
    symbols = list(dict.fromkeys(str(s).upper() for s in pbmc_var()["feature_name"]))
    vectors = torch.randn(len(symbols), token_dim, generator=generator)
    torch.save({s: vectors[i].clone() for i, s in enumerate(symbols)},
               folder / "protein_embeddings" / PROTEIN_EMBEDDING_FILES["human"])
    rng = np.random.default_rng(seed)
    pd.DataFrame({"species": "human", "gene_symbol": symbols,
                  "chromosome": rng.choice(UCE_CHROMOSOMES, len(symbols)),
                  "start": rng.integers(1_000, 200_000_000, len(symbols))}).to_csv(folder / "species_chrom.csv", index=False)
    return {"token_rows": UCE_GENE_TOKEN_ROWS, "human_genes": len(symbols)}


def build_uce(variant: str) -> Callable[[Path, int], Dict[str, Any]]:
    def build(folder: Path, seed: int) -> Dict[str, Any]:
        import torch
        from torch import nn

        from czbenchmarks.models.uce.inference import TABLE_KEY, import_uce, token_table

        settings = uce_settings(variant)
        shared = folder.parent / "model_files"
        if not (shared / "species_chrom.csv").is_file():
            staged_build(shared, build_uce_model_files, seed)
        torch.manual_seed(seed)
        model = import_uce().model.TransformerModel(
            token_dim=settings["token_dim"], d_model=settings["d_model"], nhead=settings["nhead"],
            d_hid=settings["d_hid"], nlayers=settings["nlayers"], output_dim=settings["output_dim"], dropout=0.05)
        n_params = sum(p.numel() for p in model.parameters())
        # The checkpoint's own table: the token file's rows + the seeded chromosome tokens, as UCE builds it.
        model.pe_embedding = nn.Embedding.from_pretrained(token_table(shared / "all_tokens.torch", settings))
        folder.mkdir(parents=True)
        state = model.state_dict()
        torch.save(state, folder / settings["model_filename"])
        table_shape = list(state[TABLE_KEY].shape)
        del state, model
        (folder / "model_files").symlink_to(Path("..") / "model_files", target_is_directory=True)
        return {"n_params": int(n_params), "n_params_with_table": int(n_params + np.prod(table_shape)),
                "token_table": table_shape}
    return build


def build_scvi(n_batches: int) -> Callable[[Path, int], Dict[str, Any]]:
    def build(folder: Path, seed: int) -> Dict[str, Any]:
        import anndata as ad
        import pandas as pd
        import scipy.sparse as sp
        import scvi
        from make_test_assets import CENSUS_BATCH_KEYS, CENSUS_SCVI_ARCHITECTURE

        from czbenchmarks.models.geneformer import GeneDictionaries

        require_artifacts(GENEFORMER_DICTIONARIES)
        scvi.settings.seed = seed
        pbmc = list(pbmc_var().index)
        dictionaries = GeneDictionaries.load(GENEFORMER_DICTIONARIES / "token_dictionary_gc95M.pkl",
                                             GENEFORMER_DICTIONARIES / "gene_median_dictionary_gc95M.pkl")
        others = sorted(set(g for g in dictionaries.gene_keys if str(g).startswith("ENSG")) - set(pbmc))
        rng = np.random.default_rng(seed)
        genes = pbmc + list(rng.choice(others, CENSUS_SCVI_GENES - len(pbmc), replace=False))
        obs = pd.DataFrame({"dataset_id": [f"dataset{i % 97}" for i in range(n_batches)], "assay": "10x 3' v3",
                            "suspension_type": "cell", "donor_id": [f"donor{i}" for i in range(n_batches)]},
                           index=[f"cell{i}" for i in range(n_batches)])
        obs["batch"] = obs[CENSUS_BATCH_KEYS].astype(str).agg("".join, axis=1)
        counts = sp.random(n_batches, len(genes), density=0.05, format="csr", random_state=seed, dtype=np.float32)
        counts.data = np.ceil(counts.data * 10)
        reference = ad.AnnData(X=counts, obs=obs)
        reference.var_names = genes
        scvi.model.SCVI.setup_anndata(reference, batch_key="batch")
        model = scvi.model.SCVI(reference, **CENSUS_SCVI_ARCHITECTURE)  # n_hidden: scVI's default, 128
        model.is_trained = True  # random weights: the shape is what is benchmarked
        n_params = sum(p.numel() for p in model.module.parameters())
        model.save(str(folder), save_anndata=False)
        return {"n_params": int(n_params), "n_genes": len(genes), "n_batches": n_batches}
    return build


def staged_build(folder: Path, build: Callable[[Path, int], Dict[str, Any]], seed: int) -> Dict[str, Any]:
    """Run ``build`` into a temporary sibling of ``folder`` and rename it into place when complete."""
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    info = build(staging, seed)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(staging, folder)
    return info


def builders(scvi_batches: int) -> Dict[str, Any]:
    """Model name -> (folder under the output directory, builder)."""
    return {
        "geneformer": ("geneformer/Geneformer-V2-316M", build_geneformer),
        "scgpt": ("scgpt/human", build_scgpt),
        "uce4l": ("uce/4l", build_uce("4l")),
        "uce33l": ("uce/33l", build_uce("33l")),
        "scvi": ("scvi/homo_sapiens", build_scvi(scvi_batches)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="geneformer,scgpt,uce4l,uce33l,scvi")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scvi_batches", type=int, default=1000,
                        help="batch categories of the scVI reference (the Census models' count is not published here)")
    args = parser.parse_args()
    table = builders(args.scvi_batches)
    unknown = [m for m in args.models.split(",") if m not in table]
    if unknown:
        sys.exit(f"unknown models {unknown}; choose from {', '.join(table)}")
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    for name in args.models.split(","):
        subdir, build = table[name]
        started = time.perf_counter()
        info = staged_build(args.out / subdir, build, args.seed)
        size = sum(p.stat().st_size for p in (args.out / subdir).rglob("*") if p.is_file() and not p.is_symlink())
        info.update({"folder": str(args.out / subdir), "bytes": size, "seconds": round(time.perf_counter() - started, 1)})
        (args.out / subdir / "real_shape.json").write_text(json.dumps(info, indent=2) + "\n")
        print(name, json.dumps(info), flush=True)


if __name__ == "__main__":
    main()
