"""End to end: real-world dataset layouts through one `nextflow run -profile test` with every
embedding model. (a) counts only in layers['counts'] with log-normalised X (the CELLxGENE/scanpy
layout): every model and the PCA baseline is scored, each reading the layer; (b) a symbols-only
10x/Seurat-style export (symbols as var_names, no feature_name, no Ensembl IDs): scGPT, UCE,
Geneformer (symbols mapped to Ensembl IDs through its dictionary) and the baseline are scored, scVI
is not applicable with its reason. Both datasets are derived from the test data in tmp."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from conftest import TEST_H5AD, run_nextflow

pytestmark = pytest.mark.e2e

EMBEDDING_MODELS = ("scvi", "geneformer", "scgpt", "uce")


def write_inputs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pbmc = ad.read_h5ad(TEST_H5AD)
    layered = pbmc.copy()
    layered.layers["counts"] = layered.X.copy()
    counts = sp.csr_matrix(layered.X, dtype=np.float64)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    normalised = sp.csr_matrix(sp.diags(1e4 / totals) @ counts)
    normalised.data = np.log1p(normalised.data)
    layered.X = normalised.astype(np.float32)
    layered.write_h5ad(folder / "layered.h5ad")
    symbols = pbmc.copy()
    symbols.var_names = list(symbols.var["feature_name"].astype(str))
    symbols.var_names_make_unique()
    symbols.var = symbols.var.drop(columns=["feature_name", "ensembl_id"])
    symbols.write_h5ad(folder / "symbols.h5ad")
    sheet = folder / "samplesheet.csv"
    with open(sheet, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "h5ad", "organism", "label_key", "batch_key"])
        writer.writerow(["pbmc_layered", "layered.h5ad", "homo_sapiens", "cell_type", "donor_id"])
        writer.writerow(["pbmc_symbols", "symbols.h5ad", "homo_sapiens", "cell_type", "donor_id"])
    return sheet


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    launch = tmp_path_factory.mktemp("real_datasets")
    sheet = write_inputs(launch / "inputs")
    run = run_nextflow(launch, "-profile", "test", "--input", str(sheet), "--models", ",".join(EMBEDDING_MODELS),
                       "--tasks", "clustering", "--weights_cache", str(launch / "weights_cache"), timeout=3000)
    assert run.returncode == 0, run.explain()
    return run


def provenance(path: Path) -> dict:
    return json.loads(ad.read_h5ad(path).uns["czbenchmarks"]["json"])


def verdict(run, dataset: str, entry: str, stage: str = "verdict") -> dict:
    return json.loads((run.outdir / "validation" / f"{dataset}.{entry}.{stage}.json").read_text())


def test_counts_in_a_layer_are_read_by_every_model_and_the_baseline(real_run):
    scored = {(r["dataset"], r["model"]) for r in real_run.results()["results"]}
    for model in (*EMBEDDING_MODELS, "baseline"):
        assert ("pbmc_layered", model) in scored, (model, sorted(scored))
    for model in EMBEDDING_MODELS:
        gate = verdict(real_run, "pbmc_layered", model)
        assert gate["verdict"] == "pass" and gate["inputs"]["counts_layer"] == "counts", gate
        out = real_run.outdir / "outputs" / "pbmc_layered" / f"pbmc_layered.{model}.h5ad"
        info = provenance(out)["run_info"]
        assert info["counts_location"] == "layers/counts", (model, info)
        # Weights were hashed at fetch; inference checked size and mtime only.
        assert provenance(out)["weights"]["verification"]["rehashed"] == [], model
    baseline = provenance(real_run.outdir / "outputs" / "pbmc_layered" / "pbmc_layered.baseline.pca.h5ad")
    assert baseline["run_info"]["counts_location"] == "layers/counts"


def test_symbols_only_dataset_is_scored_by_every_model_that_reads_symbols(real_run):
    results = real_run.results()
    scored = {(r["dataset"], r["model"]) for r in results["results"]}
    for model in ("geneformer", "scgpt", "uce", "baseline"):
        assert ("pbmc_symbols", model) in scored, (model, sorted(scored))
    assert ("pbmc_symbols", "scvi") not in scored
    skipped = {(s["dataset"], s["model"]): s for s in results["skipped"]}
    scvi = skipped[("pbmc_symbols", "scvi")]
    assert scvi["verdict"] == "incompatible"
    assert "keyed by Ensembl gene ID" in " | ".join(scvi["reasons"]), scvi
    assert {(c["dataset"], c["model"]) for c in results["completeness"]["not_applicable"]} == {("pbmc_symbols", "scvi")}
    for model in ("scgpt", "uce"):
        gate = verdict(real_run, "pbmc_symbols", model)
        assert gate["inputs"]["gene_names"] == "gene symbols from var_names (symbols)", gate
        info = provenance(real_run.outdir / "outputs" / "pbmc_symbols" / f"pbmc_symbols.{model}.h5ad")["run_info"]
        assert info["gene_source"] == "var_names (symbols)"
    vocabulary = verdict(real_run, "pbmc_symbols", "geneformer", "vocabulary")
    assert vocabulary["verdict"] == "pass" and vocabulary["checks"]["genes"]["n_mapped_via_dictionary"] > 600
    info = provenance(real_run.outdir / "outputs" / "pbmc_symbols" / "pbmc_symbols.geneformer.h5ad")["run_info"]
    assert info["gene_id_source"] == "var_names (symbols)" and info["n_mapped_via_dictionary"] > 600
