#!/usr/bin/env python3
"""Write a tiny Census-shaped scVI model with scvi-tools 1.1, the version the Census models were saved with.

The CELLxGENE Census scVI ``model.pt`` files (2023-12-15) were written by scvi-tools ~1.1; the pipeline
loads them with the scvi-tools it pins (1.4). This script runs in an environment of that era and writes
``tests/fixtures/scvi_1_1/`` (committed: ~100 kB):

* ``model.pt``: scVI with the Census architecture (``make_test_assets.CENSUS_SCVI_ARCHITECTURE``:
  latent 50, ``encode_covariates=False``, one layer; hidden width 16), Census-style batch labels,
  trained on the PBMC test cells (``assets/test/pbmc68k_test.h5ad``) restricted to their 300 most
  expressed genes, in reversed order, plus 5 Ensembl-style IDs the query lacks (so the query
  mapping pads, drops and reorders genes);
* ``expected_latent.npy``: what scvi-tools 1.1 itself maps the first 64 PBMC test cells to
  (``prepare_query_anndata`` + ``load_query_data``, batch = the four Census columns concatenated,
  posterior mean), float32;
* ``versions.json``: the versions that wrote them.

Environment (Python 3.11; about 5.7 GB, torch with its CUDA libraries; CPU is enough)::

    python -m venv /tmp/scvi11
    /tmp/scvi11/bin/pip install torch==2.2.2 scvi-tools==1.1.2 lightning==2.1.4 anndata==0.10.5.post1 \\
        "numpy<2" "pandas<2.2" "scipy<1.13" jax==0.4.23 jaxlib==0.4.23 flax==0.8.0 optax==0.1.9 \\
        numpyro==0.13.2 pyro-ppl==1.8.6 torchmetrics==1.3.0 mudata==0.2.3 ml-collections==0.1.1 \\
        orbax-checkpoint==0.5.3 chex==0.1.85
    /tmp/scvi11/bin/python scripts/make_scvi11_model.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
N_GENES, N_ABSENT, N_EXPECTED_CELLS, N_HIDDEN = 300, 5, 64, 16


def reference_data(query):
    """The reference cells: the query's counts on its ``N_GENES`` most expressed genes (reversed)
    and ``N_ABSENT`` Ensembl-style IDs no query has, under Census-style batch labels."""
    import anndata as ad
    import scipy.sparse as sp
    from make_test_assets import SEED, census_batch_labels

    totals = np.asarray(query.X.sum(axis=0)).ravel()
    kept = np.sort(np.argsort(-totals, kind="stable")[:N_GENES])[::-1]
    absent = [f"ENSG{99_000_000_000 + i:011d}" for i in range(N_ABSENT)]
    rng = np.random.default_rng(SEED)
    counts = sp.hstack([query.X[:, kept], sp.csr_matrix(rng.poisson(0.2, (query.n_obs, N_ABSENT)).astype(np.float32))])
    reference = ad.AnnData(X=sp.csr_matrix(counts), obs=census_batch_labels(query.n_obs, "census_reference_scvi11"))
    reference.var_names = list(query.var_names[kept]) + absent
    return reference


def query_latent(query_h5ad: Path, model_dir: Path, n_cells: int):
    """scvi-tools' own mapping of the first ``n_cells`` query cells (Census batch key, no query training)."""
    import anndata as ad
    import scvi
    from make_test_assets import CENSUS_BATCH_KEYS

    query = ad.read_h5ad(query_h5ad)[:n_cells].copy()
    query.obs["batch"] = query.obs[CENSUS_BATCH_KEYS].astype(str).agg("".join, axis=1)
    scvi.model.SCVI.prepare_query_anndata(query, str(model_dir), return_reference_var_names=False)
    model = scvi.model.SCVI.load_query_data(query, str(model_dir))
    model.is_trained = True
    return np.asarray(model.get_latent_representation(), dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--query", type=Path, default=ROOT / "assets" / "test" / "pbmc68k_test.h5ad")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "scvi_1_1")
    args = parser.parse_args()

    from importlib.metadata import version

    import anndata as ad
    from make_test_assets import train_census_style_scvi

    if not version("scvi-tools").startswith("1.1."):
        sys.exit(f"this script writes a scvi-tools 1.1 model; this environment has {version('scvi-tools')}")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out.parent) as tmp:
        staged = Path(tmp)
        train_census_style_scvi(reference_data(ad.read_h5ad(args.query)), staged, n_hidden=N_HIDDEN)
        np.save(staged / "expected_latent.npy", query_latent(args.query, staged, N_EXPECTED_CELLS))
        packages = ("scvi-tools", "torch", "lightning", "anndata", "numpy", "pandas", "jax")
        (staged / "versions.json").write_text(json.dumps(
            {"python": sys.version.split()[0], **{p: version(p) for p in packages}}, indent=2) + "\n")
        for name in ("model.pt", "expected_latent.npy", "versions.json"):
            os.replace(staged / name, args.out / name)  # whole files only: a rerun never leaves a mix
    print(f"wrote {args.out}: " + ", ".join(f"{p.name} {p.stat().st_size} B" for p in sorted(args.out.iterdir())))


if __name__ == "__main__":
    main()
