#!/usr/bin/env python3
"""Write tiny Geneformer checkpoints for the tests: the real architecture in the real file format.

For each variant below, ``assets/test/weights/geneformer/<variant>/`` is laid out the way
FETCH_WEIGHTS lays out the real S3 weights (``containers/geneformer/config.yaml``):

    config.json, model.safetensors          BertForMaskedLM (transformers ``save_pretrained``)
    gene_dictionaries/token_dictionary_<gc>.pkl        <pad>=0, <mask>=1 (+ <cls>=2, <eos>=3 for gc95M), genes
    gene_dictionaries/gene_median_dictionary_<gc>.pkl  per-gene non-zero median of counts per 10k, made distinct
    gene_dictionaries/ensembl_mapping_dict_<gc>.pkl    Ensembl ID -> itself, gene symbol -> Ensembl ID

The vocabulary holds the test data's genes except the last ``N_UNKNOWN`` (so the tests meet genes the
model does not know), in sorted Ensembl ID order as upstream's dictionaries are. Weights come from
numpy's seeded generator, not torch's initialisers, so the files do not change with the torch version.

Usage: python scripts/make_tiny_geneformer.py [--h5ad assets/test/pbmc68k_test.h5ad] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path
from typing import Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
N_UNKNOWN = 20  # test genes left out of the vocabulary
SEED = 20240601
# variant -> (dictionary suffix, input size, special tokens, layers): the two code paths of the
# real variants (4096-input <cls> pooling and 2048-input mean pooling), at toy scale.
VARIANTS = {
    "Geneformer-V2-316M": ("gc95M", 4096, True, 3),
    "gf-6L-30M-i2048": ("gc30M", 2048, False, 2),
}
HIDDEN = 32


def gene_medians(h5ad: Path) -> Dict[str, float]:
    """Non-zero median of counts per 10,000 for each gene (1.0 for genes never seen)."""
    import anndata as ad
    import scipy.sparse as sp

    adata = ad.read_h5ad(h5ad)
    counts = sp.csc_matrix(adata.X, dtype=np.float64)  # column access: one gene at a time
    totals = np.asarray(counts.sum(axis=1)).ravel()
    genes = [str(g).split(".")[0] for g in adata.var["ensembl_id"]]
    medians: Dict[str, float] = {}
    for j, gene in enumerate(genes):
        start, stop = counts.indptr[j], counts.indptr[j + 1]
        rows = counts.indices[start:stop]
        values = counts.data[start:stop] / totals[rows] * 1e4
        values = values[values > 0]
        medians[gene] = float(np.median(values)) if values.size else 1.0
    return medians


def dictionaries(h5ad: Path, special: bool) -> tuple[dict, dict, dict]:
    import anndata as ad

    adata = ad.read_h5ad(h5ad, backed="r")
    ids = [str(g).split(".")[0] for g in adata.var["ensembl_id"]]
    symbols = [str(s) for s in adata.var["feature_name"]]
    known: List[str] = ids[: len(ids) - N_UNKNOWN]
    token = {"<pad>": 0, "<mask>": 1}
    if special:
        token.update({"<cls>": 2, "<eos>": 3})
    for gene in sorted(known):
        token[gene] = len(token)
    all_medians = gene_medians(h5ad)
    # Rare genes in 700 cells share medians exactly (e.g. one count in the same cell); real medians
    # (Genecorpus) are distinct. A 1e-6 relative nudge keeps them distinct here too, so that no
    # two genes tie and upstream's unstable sort cannot order a tie differently from ours.
    medians = {gene: all_medians[gene] * (1.0 + 1e-6 * k) for k, gene in enumerate(sorted(known))}
    mapping = {gene: gene for gene in sorted(known)}
    for gene, symbol in zip(ids, symbols):
        if gene in medians:
            mapping[symbol.upper()] = gene
    return token, medians, mapping


def write_checkpoint(folder: Path, vocab_size: int, input_size: int, layers: int) -> None:
    import torch
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * HIDDEN,
        max_position_embeddings=input_size,
        hidden_act="relu",  # Geneformer's activation
        hidden_dropout_prob=0.02,
        attention_probs_dropout_prob=0.02,
        layer_norm_eps=1e-12,
        pad_token_id=0,
        architectures=["BertForMaskedLM"],
    )
    model = BertForMaskedLM(config)
    rng = np.random.default_rng(SEED + layers)
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters()):
            if "LayerNorm.weight" in name:
                values = np.ones(parameter.shape)
            elif name.endswith("bias"):
                values = rng.normal(0.0, 0.02, parameter.shape)
            else:
                values = rng.normal(0.0, 0.2, parameter.shape)
            parameter.copy_(torch.from_numpy(values.astype(np.float32)))
    model.save_pretrained(str(folder))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--h5ad", type=Path, default=ROOT / "assets" / "test" / "pbmc68k_test.h5ad")
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "test" / "weights" / "geneformer")
    args = parser.parse_args()
    for variant, (suffix, input_size, special, layers) in VARIANTS.items():
        folder = args.out / variant
        dict_dir = folder / "gene_dictionaries"
        dict_dir.mkdir(parents=True, exist_ok=True)
        token, medians, mapping = dictionaries(args.h5ad, special)
        for name, value in (
            (f"token_dictionary_{suffix}.pkl", token),
            (f"gene_median_dictionary_{suffix}.pkl", medians),
            (f"ensembl_mapping_dict_{suffix}.pkl", mapping),
        ):
            (dict_dir / name).write_bytes(pickle.dumps(value, protocol=4))
        write_checkpoint(folder, len(token), input_size, layers)
        config = json.loads((folder / "config.json").read_text())
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        print(f"{variant}: vocab {len(token)}, layers {config['num_hidden_layers']}, "
              f"input {input_size}, {size / 1e6:.2f} MB in {folder}")


if __name__ == "__main__":
    main()
