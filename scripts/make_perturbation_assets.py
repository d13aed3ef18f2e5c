#!/usr/bin/env python3
"""Build a small synthetic Perturb-seq-like test dataset (deterministic).

``assets/test/perturb_test.h5ad``: 300 genes of the PBMC test data (Ensembl ``var_names``, symbols
in ``var['feature_name']``), raw integer counts (sparse), ``obs['condition']`` in czbenchmarks'
format (``ctrl``, ``G+ctrl``, ``G1+G2``) and ``obs['split']`` (``train``/``val``/``test``):

* 150 control cells (``ctrl``, split ``train``);
* 6 single perturbations of genes among the 300, 40 cells each: the target drops to 10 % and a fixed,
  known set of 15 downstream genes moves up (x3) or down (x0.3);
* 3 double perturbations (``G1+G2``): both targets knocked down, effects multiplied;
* test split: 2 singles and 1 double; val: 1 single; the rest train.

The known effects are written to ``uns['perturbation_effects']`` so tests can check that the
perturbation metrics see them. Run: ``python scripts/make_perturbation_assets.py``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 0
N_GENES = 300
N_CTRL = 150
N_PER_CONDITION = 40
N_DOWNSTREAM = 15


def build(human_h5ad: Path):
    import anndata as ad
    import scipy.sparse as sp

    rng = np.random.default_rng(SEED)
    source = ad.read_h5ad(human_h5ad)
    means = np.asarray(source.X.mean(axis=0)).ravel()
    order = np.argsort(-means, kind="stable")[:N_GENES]  # the most expressed genes
    genes = source.var_names[order]
    symbols = source.var["feature_name"].astype(str).to_numpy()[order]
    base = np.maximum(means[order], 0.05)

    targets = [symbols[i] for i in rng.choice(np.arange(10, 60), size=6, replace=False)]
    effects = {}
    for target in targets:
        factor = np.ones(N_GENES)
        factor[list(symbols).index(target)] = 0.1
        downstream = rng.choice(N_GENES, size=N_DOWNSTREAM, replace=False)
        factor[downstream] *= np.where(rng.random(N_DOWNSTREAM) < 0.5, 3.0, 0.3)
        effects[target] = factor
    singles = [f"{t}+ctrl" for t in targets]
    doubles = [f"{targets[0]}+{targets[1]}", f"{targets[2]}+{targets[3]}", f"{targets[4]}+{targets[5]}"]
    split = {singles[0]: "test", singles[2]: "test", doubles[0]: "test", singles[4]: "val"}

    blocks, conditions, splits = [], [], []

    def cells(mu: np.ndarray, n: int) -> np.ndarray:
        # Negative binomial counts (dispersion 0.5) around mu, scaled by a per-cell library factor.
        size = rng.lognormal(0.0, 0.3, size=(n, 1))
        lam = rng.gamma(shape=2.0, scale=(mu * size) / 2.0)
        return rng.poisson(lam)

    blocks.append(cells(base, N_CTRL))
    conditions += ["ctrl"] * N_CTRL
    splits += ["train"] * N_CTRL
    for condition in singles + doubles:
        factor = np.ones(N_GENES)
        for gene in condition.split("+"):
            if gene != "ctrl":
                factor = factor * effects[gene]
        blocks.append(cells(base * factor, N_PER_CONDITION))
        conditions += [condition] * N_PER_CONDITION
        splits += [split.get(condition, "train")] * N_PER_CONDITION

    X = sp.csr_matrix(np.vstack(blocks).astype(np.float32))
    obs = pd.DataFrame(
        {"condition": pd.Categorical(conditions), "split": pd.Categorical(splits)},
        index=[f"cell_{i}" for i in range(X.shape[0])],
    )
    obs["cell_type"] = pd.Categorical(["K562"] * len(obs))
    var = pd.DataFrame({"feature_name": symbols, "ensembl_id": np.asarray(genes)}, index=pd.Index(np.asarray(genes)))
    adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.uns["perturbation_effects"] = json.dumps({t: effects[t].round(4).tolist() for t in targets})
    return adata


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "assets" / "test"))
    args = parser.parse_args()
    out = Path(args.out)
    adata = build(out / "pbmc68k_test.h5ad")
    adata.write_h5ad(out / "perturb_test.h5ad", compression="gzip")
    counts = adata.obs.groupby(["condition", "split"], observed=True).size()
    print(f"wrote {out / 'perturb_test.h5ad'}: {adata.n_obs} cells x {adata.n_vars} genes\n{counts}")


if __name__ == "__main__":
    main()
