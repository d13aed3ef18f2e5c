#!/usr/bin/env python3
"""Write the tiny UCE weights the tests and ``-profile test`` use: assets/test/weights/uce/4l/.

The files have the real layout and formats (what FETCH_WEIGHTS lays out from
``s3://cz-benchmarks-data/models/v1/uce``, reduced to what the 4l variant reads):

* ``4layer_model.torch``: a state dict of ``uce.model.TransformerModel`` (4 layers, token_dim 16,
  d_model 32, nhead 2, d_hid 64, output_dim 32) with its token table ``pe_embedding.weight``.
  The gene-expression prediction head (``binary_decoder``, whose input width the class fixes at
  output_dim + 1280) is left out: it is unused for embeddings and would be 15 MB.
* ``model_files/all_tokens.torch``: 4 special tokens + the genes of all 8 species
  (``CHROM_TOKEN_OFFSET`` rows; the loader appends UCE's seeded chromosome tokens).
* ``model_files/species_offsets.pkl``, ``model_files/species_chrom.csv`` (chromosomes as text,
  ``X`` and ``MT`` included), ``model_files/protein_embeddings/<UCE file name>.pt`` for all 8
  species: ``{UPPER-CASE symbol: vector}``; human and mouse cover the test datasets' genes (the
  mouse one also covers the human PBMC symbols, in another order), the others 100 genes.
* ``uce_config.json``: the small dimensions and sentence length (sample_size 64).

Deterministic: the same files (same sha256) on every run. Usage: ``python scripts/make_tiny_uce.py``.
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import sys
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

TOKEN_DIM, D_MODEL, NHEAD, D_HID, NLAYERS, OUTPUT_DIM = 16, 32, 2, 64, 4, 32
SAMPLE_SIZE, PAD_LENGTH = 64, 128
N_SPECIALS = 4
CHROMOSOMES = ["1", "2", "3", "4", "5", "X", "MT"]


def symbols(path: Path) -> List[str]:
    """Upper-cased ``var['feature_name']`` of a test h5ad, in file order, without duplicates."""
    import anndata as ad

    adata = ad.read_h5ad(path, backed="r")
    try:
        return list(dict.fromkeys(str(s).upper() for s in adata.var["feature_name"]))
    finally:
        adata.file.close()


def species_genes() -> Dict[str, List[str]]:
    """Each species' gene list (protein-embedding order): deterministic shuffles of the test genes."""
    import numpy as np

    from czbenchmarks.models.uce.species import PROTEIN_EMBEDDING_FILES

    test = ROOT / "assets" / "test"
    pbmc = symbols(test / "pbmc68k_test.h5ad")
    human = list(dict.fromkeys(pbmc + symbols(test / "perturb_test.h5ad")))
    # Every 20th PBMC gene has no protein embedding: such genes must simply be left out.
    missing = set(pbmc[::20])
    human = [g for g in human if g not in missing]
    mouse = list(dict.fromkeys(symbols(test / "pbmc_mouse_test.h5ad") + pbmc))
    rng = np.random.default_rng(7)
    genes = {"human": [human[i] for i in rng.permutation(len(human))],
             "mouse": [mouse[i] for i in rng.permutation(len(mouse))]}
    for species in PROTEIN_EMBEDDING_FILES:
        if species not in genes:
            genes[species] = [human[i] for i in rng.permutation(len(human))[:100]]
    return genes


def build(out: Path) -> None:
    """Write the tiny weights folder ``out`` (replaced if present)."""
    import numpy as np
    import pandas as pd
    import torch
    from uce.model import TransformerModel

    from czbenchmarks.models.uce.config import DEFAULTS
    from czbenchmarks.models.uce.inference import chrom_token_rows
    from czbenchmarks.models.uce.species import PROTEIN_EMBEDDING_FILES

    if out.exists():
        shutil.rmtree(out)
    files = out / "model_files"
    (files / "protein_embeddings").mkdir(parents=True)
    genes = species_genes()

    torch.manual_seed(0)
    offsets: Dict[str, int] = {}
    rows = [torch.randn(N_SPECIALS, TOKEN_DIM)]
    next_row = N_SPECIALS
    for species in PROTEIN_EMBEDDING_FILES:  # UCE's species order
        vectors = torch.randn(len(genes[species]), TOKEN_DIM)
        offsets[species] = next_row
        next_row += len(genes[species])
        rows.append(vectors)
        # One storage per file: the dict's values are rows of this species' own tensor.
        table = vectors.clone()
        torch.save({g: table[i] for i, g in enumerate(genes[species])},
                   files / "protein_embeddings" / PROTEIN_EMBEDDING_FILES[species])
    all_tokens = torch.vstack(rows)
    chrom_offset = int(all_tokens.shape[0])
    torch.save(all_tokens.clone(), files / "all_tokens.torch")
    with open(files / "species_offsets.pkl", "wb") as handle:
        pickle.dump(offsets, handle)

    rng = np.random.default_rng(11)
    records = []
    for species in PROTEIN_EMBEDDING_FILES:
        chroms = rng.choice(CHROMOSOMES, size=len(genes[species]))
        starts = rng.integers(1_000, 200_000_000, size=len(genes[species]))
        records += [(species, g, c, int(s)) for g, c, s in zip(genes[species], chroms, starts)]
    pd.DataFrame(records, columns=["species", "gene_symbol", "chromosome", "start"]).to_csv(
        files / "species_chrom.csv", index=False)

    model = TransformerModel(token_dim=TOKEN_DIM, d_model=D_MODEL, nhead=NHEAD, d_hid=D_HID,
                             nlayers=NLAYERS, output_dim=OUTPUT_DIM, dropout=0.05)
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("binary_decoder.")}
    n_chrom = int(DEFAULTS["n_chrom_tokens"])
    state["pe_embedding.weight"] = torch.vstack(
        (all_tokens, chrom_token_rows(n_chrom, TOKEN_DIM, int(DEFAULTS["chrom_token_seed"]))))
    torch.save(state, out / "4layer_model.torch")

    settings = {"token_dim": TOKEN_DIM, "d_model": D_MODEL, "nhead": NHEAD, "d_hid": D_HID,
                "nlayers": NLAYERS, "output_dim": OUTPUT_DIM, "sample_size": SAMPLE_SIZE,
                "pad_length": PAD_LENGTH, "CHROM_TOKEN_OFFSET": chrom_offset}
    (out / "uce_config.json").write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "test" / "weights" / "uce" / "4l")
    build(parser.parse_args().out)


if __name__ == "__main__":
    main()
