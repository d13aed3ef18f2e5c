#!/usr/bin/env python3
"""Build a tiny scGenePT weights folder for tests (deterministic, ~100 KB).

Writes ``assets/test/weights/scgenept/scgenept_go_c_gpt_concat__adamson/`` laid out as
FETCH_WEIGHTS lays out the real variant:

* ``best_model.pt``: a state_dict with scGenePT's parameter names for the GO-C variant
  (see ``czbenchmarks.models.scgenept.variants.checkpoint_keys``), width 16, 2 heads, 2 layers,
  feed-forward 32, text embeddings of 24 dims (float64, as scGenePT's numpy-initialised table);
  built tensor by tensor from the key names, not from the project's network class, so that
  loading it strictly tests the class;
* ``pretrained/scgpt/vocab.json``: ``{token: index}`` with ``<pad>``, ``<cls>``, ``<eoc>``, 290 of
  the 300 genes of ``assets/test/perturb_test.h5ad`` (never a perturbed one) and 5 genes the
  dataset does not have;
* ``gene_embeddings/GO_C_gene_embeddings-gpt3.5-ada-concat.pickle``: ``{symbol: [floats]}``;
* ``scgenept_args.json``: ``{"nhead": 2}`` (the one size a checkpoint does not reveal).

The perturbation dataset itself comes from ``scripts/make_perturbation_assets.py``.
Run: ``python scripts/make_tiny_scgenept.py``. With ``--vocab <vocab.json>`` (e.g. scGPT's real
60,697-token vocabulary) the checkpoint indexes that vocabulary instead (specials appended when
missing, as scGenePT does) and the text table covers the dataset's genes it holds; tests build
such weights in a temporary folder, they are not committed.
"""

from __future__ import annotations

import argparse
import json
import pickle
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VARIANT_KEY = "scgenept_go_c_gpt_concat__adamson"
SEED = 0
D_MODEL, NHEAD, D_HID, NLAYERS, NLAYERS_CLS, TEXT_DIM = 16, 2, 32, 2, 3, 24
N_LEFT_OUT = 10  # dataset genes missing from the vocabulary
LAYER_NORM = re.compile(r"(enc_norm|\.norm|norm1|norm2|^ln|_decoder\.[25])\.weight$")
EXTRA_GENES = ["TINYGENE1", "TINYGENE2", "TINYGENE3", "TINYGENE4", "TINYGENE5"]


def tensor_shape(key: str, ntoken: int) -> tuple:
    """The shape of one checkpoint tensor, from its name alone."""
    if key == "encoder.embedding.weight":
        return (ntoken, D_MODEL)
    if key.endswith(".embedding.weight"):  # the text encoder's table
        return (ntoken, TEXT_DIM)
    if key.endswith(".fc.weight") and key.startswith("gopt_"):
        return (D_MODEL, TEXT_DIM)
    if key == "pert_encoder.weight":
        return (3, D_MODEL)
    if key == "value_encoder.linear1.weight":
        return (D_MODEL, 1)
    if key.endswith("in_proj_weight"):
        return (3 * D_MODEL, D_MODEL)
    if key.endswith("in_proj_bias"):
        return (3 * D_MODEL,)
    if re.search(r"layers\.\d+\.linear1\.weight$", key):
        return (D_HID, D_MODEL)
    if re.search(r"layers\.\d+\.linear1\.bias$", key):
        return (D_HID,)
    if re.search(r"layers\.\d+\.linear2\.weight$", key):
        return (D_MODEL, D_HID)
    if key == "decoder.fc.4.weight":
        return (1, D_MODEL)
    if key in ("decoder.fc.4.bias", "cls_decoder.out_layer.bias"):
        return (1,)
    if key == "cls_decoder.out_layer.weight":
        return (1, D_MODEL)
    if key.endswith(".weight") and not LAYER_NORM.search(key):
        return (D_MODEL, D_MODEL)
    return (D_MODEL,)


def build(out_dir: Path, dataset: Path, vocab_file: Path | None = None) -> Path:
    """Write the weights folder under ``out_dir`` and return it (see the module docstring)."""
    import anndata as ad
    import torch

    from czbenchmarks.models.scgenept.variants import VARIANTS, checkpoint_keys, parse_condition

    rng = np.random.default_rng(SEED)
    adata = ad.read_h5ad(dataset, backed="r")
    symbols = adata.var["feature_name"].astype(str).tolist()
    perturbed = {g for c in adata.obs["condition"].astype(str).unique() for g in parse_condition(c)}
    adata.file.close()
    candidates = [s for s in symbols if s not in perturbed]
    left_out = set(rng.choice(candidates, size=N_LEFT_OUT, replace=False).tolist())
    if vocab_file is None:
        tokens = ["<pad>", "<cls>", "<eoc>"] + [s for s in symbols if s not in left_out] + EXTRA_GENES
        vocab = {token: index for index, token in enumerate(tokens)}
        genes = [t for t in tokens[3:]]
    else:
        vocab = {str(k): int(v) for k, v in json.loads(Path(vocab_file).read_text()).items()}
        for special in ("<pad>", "<cls>", "<eoc>"):
            vocab.setdefault(special, len(vocab))
        genes = [s for s in symbols if s in vocab]
    ntoken = len(vocab)

    # Text embeddings of most genes (a few are missing, as in the real tables).
    embedded = [g for g in genes if rng.random() > 0.05]
    table = {g: rng.normal(0.0, 0.05, TEXT_DIM).round(6).tolist() for g in embedded}

    spec = VARIANTS["scgenept_go_c_gpt_concat"]
    generator = torch.Generator().manual_seed(SEED)
    state = {}
    for key in checkpoint_keys(spec, NLAYERS, NLAYERS_CLS):
        shape = tensor_shape(key, ntoken)
        if LAYER_NORM.search(key):
            value = torch.ones(shape) + 0.05 * torch.randn(shape, generator=generator)
        elif len(shape) == 1:
            value = 0.05 * torch.randn(shape, generator=generator)
        else:
            value = torch.randn(shape, generator=generator) / np.sqrt(shape[-1])
        state[key] = value
    text_key = f"{spec.text_encoder}.embedding.weight"
    text = np.random.default_rng(SEED + 1).uniform(-0.1, 0.1, (ntoken, TEXT_DIM))
    for gene, vector in table.items():
        text[vocab[gene]] = vector
    state[text_key] = torch.from_numpy(text)  # float64, like scGenePT's numpy-initialised table
    state["encoder.embedding.weight"][vocab["<pad>"]] = 0.0
    state["pert_encoder.weight"][2] = 0.0  # padding index of the flag embedding
    # Decoder bias near the typical log-scale expression, so predictions are in a plausible range.
    state["decoder.fc.4.bias"] = torch.tensor([1.0])

    folder = out_dir / VARIANT_KEY
    (folder / "pretrained" / "scgpt").mkdir(parents=True, exist_ok=True)
    (folder / "gene_embeddings").mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "best_model.pt")
    (folder / "pretrained" / "scgpt" / "vocab.json").write_text(json.dumps(vocab, indent=0) + "\n")
    with open(folder / "gene_embeddings" / spec.embedding_file, "wb") as handle:
        pickle.dump(table, handle, protocol=4)
    (folder / "scgenept_args.json").write_text(json.dumps({"nhead": NHEAD}) + "\n")
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"wrote {folder} ({total} bytes; vocabulary {ntoken}, {len(state)} tensors)")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "test" / "weights" / "scgenept")
    parser.add_argument("--dataset", type=Path, default=ROOT / "assets" / "test" / "perturb_test.h5ad")
    parser.add_argument("--vocab", type=Path, default=None, help="index this vocab.json instead of the tiny one")
    args = parser.parse_args()
    build(args.out, args.dataset, args.vocab)


if __name__ == "__main__":
    main()
