#!/usr/bin/env python3
"""Write a synthetic GEARS-style Perturb-seq h5ad (deterministic) for scGenePT checks and benchmarks.

Laid out like the GEARS adamson/norman files czbenchmarks serves: log-normalised expression (sparse
float32), Ensembl-like ``var_names`` with symbols in ``var['feature_name']``, ``obs['condition']``
(``ctrl``, ``G+ctrl``, ``G1+G2``) and ``obs['split']``. The gene symbols are the first genes of a
vocabulary (e.g. the tiny test checkpoint's ``vocab.json``) followed by GEARS' older symbols that
the scGPT vocabulary lacks (``DARS``, ``TARS``, ``C3orf72``, ``ELMSAN1``, ``RHOXF2BB``), and the
first test conditions perturb those old symbols, as the real adamson/norman splits do.

* ``n_control`` control cells (split ``train``);
* ``n_conditions`` test conditions (every third one a double ``G1+G2``), ``n_cells`` cells each:
  the targets drop to 10 % and 10 further genes per condition move up or down;
* two train conditions (never scored).

Run: ``python scripts/make_gears_style_dataset.py --out data.h5ad --vocab <vocab.json> --conditions 50``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import List, Sequence

import numpy as np

#: GEARS symbols (adamson/norman) whose current names (DARS1, TARS1, MIDEAS, ...) scGPT's vocabulary uses.
LEGACY_SYMBOLS = ("DARS", "TARS", "C3orf72", "ELMSAN1", "RHOXF2BB")
SPECIAL_TOKENS = {"<pad>", "<cls>", "<eoc>"}


def vocabulary_genes(vocab_file: Path, n_genes: int) -> List[str]:
    """The first ``n_genes`` gene tokens of a ``vocab.json`` (specials left out), in index order."""
    vocab = json.loads(Path(vocab_file).read_text())
    genes = [g for g, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if g not in SPECIAL_TOKENS]
    return genes[:n_genes]


def _conditions(targets: Sequence[str], n_conditions: int) -> List[str]:
    out: List[str] = []
    index = 0
    while len(out) < n_conditions:
        a = targets[index % len(targets)]
        if len(out) % 3 == 2:
            b = targets[(index + 1) % len(targets)]
            out.append(f"{a}+{b}" if a != b else f"{a}+ctrl")
            index += 2
        else:
            out.append(f"{a}+ctrl")
            index += 1
    return list(dict.fromkeys(out))


def build(out: Path, symbols: Sequence[str], n_conditions: int, n_control: int = 300, n_cells: int = 20,
          seed: int = 0, legacy_symbols: bool = True) -> Path:
    """Write the dataset to ``out`` (a temp name, then renamed) and return ``out``.

    Args:
        symbols: gene symbols in order; :data:`LEGACY_SYMBOLS` are appended when missing.
        n_conditions: test conditions (distinct; fewer when the genes cannot make that many).
        n_control: control cells.
        n_cells: cells per perturbed condition.
        legacy_symbols: add :data:`LEGACY_SYMBOLS` and perturb them first (off: only ``symbols``).
    """
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    legacy = list(LEGACY_SYMBOLS) if legacy_symbols else []
    symbols = list(dict.fromkeys(list(symbols) + legacy))
    n_genes = len(symbols)
    base = rng.gamma(1.2, 0.8, size=n_genes)
    others = [s for s in symbols if s not in legacy]
    targets = legacy + list(rng.permutation(others))
    # Reserve two targets for train conditions, so that train cells exist and are never scored.
    train = [f"{targets[-1]}+ctrl", f"{targets[-2]}+ctrl"]
    test = _conditions(targets[:-2], n_conditions)
    position = {s: i for i, s in enumerate(symbols)}

    def cells(mean: np.ndarray, n: int) -> sp.csr_matrix:
        counts = rng.poisson(np.broadcast_to(mean, (n, n_genes)))
        return sp.csr_matrix(np.log1p(counts).astype(np.float32))

    blocks = [cells(base, n_control)]
    conditions = ["ctrl"] * n_control
    splits = ["train"] * n_control
    for condition, split in [(c, "test") for c in test] + [(c, "train") for c in train]:
        mean = base.copy()
        for gene in condition.split("+"):
            if gene != "ctrl":
                mean[position[gene]] *= 0.1
        moved = rng.choice(n_genes, size=min(10, n_genes), replace=False)
        mean[moved] *= np.where(rng.random(len(moved)) < 0.5, 3.0, 0.3)
        blocks.append(cells(mean, n_cells))
        conditions += [condition] * n_cells
        splits += [split] * n_cells
    obs = pd.DataFrame({"condition": pd.Categorical(conditions), "split": pd.Categorical(splits)},
                       index=[f"cell{i}" for i in range(len(conditions))])
    var = pd.DataFrame({"feature_name": symbols}, index=[f"ENSG{900000 + i:011d}" for i in range(n_genes)])
    adata = ad.AnnData(X=sp.vstack(blocks, format="csr"), obs=obs, var=var)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.h5ad")
    adata.write_h5ad(tmp)
    tmp.replace(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--vocab", type=Path, required=True, help="vocab.json whose first genes are used")
    parser.add_argument("--genes", type=int, default=290, help="genes taken from the vocabulary")
    parser.add_argument("--conditions", type=int, default=20)
    parser.add_argument("--control_cells", type=int, default=300)
    parser.add_argument("--cells_per_condition", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no_legacy_symbols", action="store_true", help=f"leave out {', '.join(LEGACY_SYMBOLS)}")
    args = parser.parse_args()
    path = build(args.out, vocabulary_genes(args.vocab, args.genes), args.conditions, args.control_cells,
                 args.cells_per_condition, args.seed, legacy_symbols=not args.no_legacy_symbols)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
