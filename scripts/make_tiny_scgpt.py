#!/usr/bin/env python3
"""Write a tiny scGPT checkpoint in the real file formats to assets/test/weights/scgpt/human/.

The folder looks like the whole-human model's (s3://cz-benchmarks-data/models/v1/scgpt/human):

* ``vocab.json`` — flat ``{token: index}``: ``<pad>``, ``<cls>``, ``<eoc>`` then the test data's
  gene symbols, leaving out every 10th gene so that vocabulary filtering is exercised;
* ``args.json`` — the keys ``embed_data`` reads plus the whole-human model's other settings;
* ``best_model.pt`` — a state_dict of a randomly initialised (seeded) ``TransformerModel`` with
  the attention projections named ``Wqkv`` as in flash-attn-trained checkpoints such as the real one.

Deterministic: the same inputs give byte-identical files. Usage::

    python scripts/make_tiny_scgpt.py [--h5ad assets/test/pbmc68k_test.h5ad] [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

#: Hyper-parameters of the tiny model (the real one: embsize 512, 12 layers, 8 heads).
TINY_ARGS: Dict[str, object] = {
    "embsize": 32,
    "nheads": 2,
    "d_hid": 64,
    "nlayers": 2,
    "n_layers_cls": 1,
    "dropout": 0.2,
    "pad_token": "<pad>",
    "pad_value": -2,
    "mask_value": -1,
    "n_bins": 51,
    "max_seq_len": 1200,
    "input_emb_style": "continuous",
    "fast_transformer": True,
    "note": "tiny random test checkpoint made by scripts/make_tiny_scgpt.py; not a trained model",
}
SPECIALS = ["<pad>", "<cls>", "<eoc>"]


def build_vocab(symbols: List[str]) -> Dict[str, int]:
    """Specials first, then every gene symbol except each 10th (left out on purpose)."""
    genes = [s for i, s in enumerate(dict.fromkeys(symbols)) if i % 10 != 9]
    return {token: index for index, token in enumerate(SPECIALS + genes)}


def tiny_state_dict(vocab: Dict[str, int], seed: int = 0) -> Dict[str, object]:
    """A seeded, randomly initialised TransformerModel's parameters under flash-attn key names."""
    import torch

    from czbenchmarks.models.scgpt import import_scgpt
    from czbenchmarks.models.scgpt.inference import build_transformer

    import_scgpt()
    from scgpt.tokenizer import GeneVocab

    torch.manual_seed(seed)
    gene_vocab = GeneVocab.from_dict(vocab)
    model = build_transformer(gene_vocab, TINY_ARGS)
    # Bigger value-encoder weights than the default init, so that expression (not just which genes
    # are present) visibly moves the <cls> output of this untrained model.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith("value_encoder.") and param.dim() > 1:
                param.normal_(0.0, 1.0)
    return {k.replace("in_proj_", "Wqkv."): v.detach().clone() for k, v in model.state_dict().items()}


def write_checkpoint(h5ad: Path, out: Path, seed: int = 0) -> Dict[str, str]:
    """Write the three files into ``out``; return their sha256."""
    import anndata as ad
    import torch

    adata = ad.read_h5ad(h5ad, backed="r")
    symbols = [str(s) for s in adata.var["feature_name"]]
    adata.file.close()
    vocab = build_vocab(symbols)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, indent=1) + "\n")
    (out / "args.json").write_text(json.dumps(TINY_ARGS, indent=2, sort_keys=True) + "\n")
    buffer = io.BytesIO()
    torch.save(tiny_state_dict(vocab, seed), buffer)
    (out / "best_model.pt").write_bytes(buffer.getvalue())
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir()) if p.is_file()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--h5ad", type=Path, default=ROOT / "assets" / "test" / "pbmc68k_test.h5ad")
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "test" / "weights" / "scgpt" / "human")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name, digest in write_checkpoint(args.h5ad, args.out, args.seed).items():
        print(f"{digest}  {args.out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
