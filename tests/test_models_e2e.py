"""End to end: every registered model through one real `nextflow run -profile test`.

One run (`--models scvi,geneformer,scgpt,uce,scgenept`) instead of one per model keeps CI time down;
each test reads what that run published.
"""

from __future__ import annotations

import json
import math

import anndata as ad
import pytest

from conftest import ALL_MODELS

pytestmark = pytest.mark.e2e

MODELS = {
    # model: (model_type, variant, embedding dims of the tiny checkpoint or None for predictions)
    "scvi": ("SCVI", "homo_sapiens", 50),  # Census latent width
    "geneformer": ("GENEFORMER", "Geneformer-V2-316M", None),
    "scgpt": ("SCGPT", "human", 32),
    "uce": ("UCE", "4l", 32),
    "scgenept": ("SCGENEPT", "scgenept_go_c_gpt_concat__adamson", None),
}


@pytest.fixture(scope="module")
def models_run(all_models_run):
    assert set(MODELS) == set(ALL_MODELS.split(","))
    return all_models_run


def provenance(path):
    return json.loads(ad.read_h5ad(path).uns["czbenchmarks"]["json"])


@pytest.mark.parametrize("model", sorted(MODELS))
def test_each_model_publishes_rows(models_run, model):
    model_type, variant, _ = MODELS[model]
    rows = [r for r in models_run.results()["results"] if r["model"] == model]
    assert rows, f"no {model} rows"
    assert {r["model_type"] for r in rows} == {model_type}
    # scVI picks its variant by organism; cross-species rows join variants: check the human/perturbation rows.
    assert {r["variant"] for r in rows if r["dataset"] in ("pbmc68k", "perturb")} == {variant}
    assert all(r["value"] is None or math.isfinite(r["value"]) for r in rows)
    assert all(r["weights_sha256"] for r in rows), "weights checksums must reach the results"


@pytest.mark.parametrize("model", ["scvi", "geneformer", "scgpt", "uce"])
def test_embedding_models_run_on_the_pbmc_cells(models_run, model):
    out = ad.read_h5ad(models_run.outdir / "outputs" / "pbmc68k" / f"pbmc68k.{model}.h5ad")
    assert out.n_obs == 700 and out.obs["czb_embedded"].all()
    dims = MODELS[model][2]
    if dims:
        assert out.obsm["X_emb"].shape == (700, dims)
    tasks = {r["task"] for r in models_run.results()["results"] if r["model"] == model and r["dataset"] == "pbmc68k"}
    assert {"clustering", "embedding", "label_prediction"} <= tasks


def test_geneformer_records_its_weights(models_run):
    info = provenance(models_run.outdir / "outputs" / "pbmc68k" / "pbmc68k.geneformer.h5ad")
    assert info["variant"] == "Geneformer-V2-316M" and "model.safetensors" in info["weights"]["files"]


def test_uce_species_follows_the_organism(models_run):
    info = provenance(models_run.outdir / "outputs" / "pbmc_mouse" / "pbmc_mouse.uce.h5ad")
    assert info["run_info"]["species"] == "mouse"


def test_scgenept_predicts_the_test_conditions(models_run):
    out = ad.read_h5ad(models_run.outdir / "outputs" / "perturb" / "perturb.scgenept.h5ad")
    assert sorted(set(out.obs["condition"])) == ["CTSS+ctrl", "GSTP1+SRP14", "GSTP1+ctrl"]
    rows = [r for r in models_run.results()["results"] if r["model"] == "scgenept"]
    assert {r["task"] for r in rows} == {"perturbation"}


EMBEDDERS = {"scvi": "homo_sapiens", "geneformer": "Geneformer-V2-316M", "scgpt": "human", "uce": "4l"}
#: The cells `-profile test --models scvi,geneformer,scgpt,uce,scgenept` schedules: exactly these.
PRODUCED = {
    *{("pbmc68k", m, v, t) for m, v in EMBEDDERS.items()
      for t in ("clustering", "embedding", "label_prediction", "integration")},
    *{("pbmc68k", "baseline", "pca", t) for t in ("clustering", "embedding", "integration")},
    ("pbmc68k", "baseline", "raw_expression", "label_prediction"),
    *{("pbmc_mouse", m, v, t) for m, v in (("scvi", "mus_musculus"), ("uce", "4l"), ("baseline", "pca"))
      for t in ("clustering", "embedding")},
    ("pbmc68k+pbmc_mouse", "scvi", "homo_sapiens+mus_musculus", "cross_species"),
    ("pbmc68k+pbmc_mouse", "uce", "4l", "cross_species"),
    ("perturb", "baseline", "control_mean", "perturbation"), ("perturb", "baseline", "control_median", "perturbation"),
    ("perturb", "scgenept", "scgenept_go_c_gpt_concat__adamson", "perturbation"),
}
#: Human-only models on the mouse dataset, and the cross-species cells they then cannot fill.
NOT_APPLICABLE = {
    *{("pbmc_mouse", m, EMBEDDERS[m], t) for m in ("geneformer", "scgpt") for t in ("clustering", "embedding")},
    *{("pbmc68k", m, EMBEDDERS[m], "cross_species") for m in ("geneformer", "scgpt")},
}


def test_completeness_is_exact(models_run):
    """scGenePT's perturbation cell is expected and produced; no cell is expected that cannot apply."""
    check = models_run.results()["completeness"]
    assert check["complete"] and check["missing"] == [], check["missing"]
    key = lambda c: (c["dataset"], c["model"], c["variant"], c["task"])  # noqa: E731
    assert {key(c) for c in check["produced_cells"]} == PRODUCED
    assert {key(c) for c in check["not_applicable"]} == NOT_APPLICABLE
    assert check["expected"] == len(PRODUCED)
    reasons = {key(c): c["reason"] for c in check["not_applicable"]}
    assert "organism mus_musculus is not supported for ScGPT" in reasons[("pbmc_mouse", "scgpt", "human", "clustering")]
    assert "has 1 organism(s) the model can embed" in reasons[("pbmc68k", "scgpt", "human", "cross_species")]


def test_only_pairs_some_task_scores_are_run(models_run):
    """Embedding models never meet the perturbation-only dataset; scGenePT never meets the PBMCs."""
    validated = {tuple(r["tag"].split(":")[:2]) for r in models_run.trace() if r["process"].endswith("VALIDATE")}
    assert not {(d, m) for d, m in validated if d == "perturb" and m in EMBEDDERS}, validated
    assert not {(d, m) for d, m in validated if m == "scgenept" and d != "perturb"}, validated
    skipped = models_run.results()["skipped"]
    assert any(s["dataset"] == "pbmc_mouse" and s["model"] == "scgpt" for s in skipped)
    assert all(s["reasons"] for s in skipped)


def test_weights_are_fetched_once_per_variant(models_run):
    fetches = [r for r in models_run.trace() if r["process"].endswith("FETCH_WEIGHTS")]
    tags = [r["tag"] for r in fetches]
    assert len(tags) == len(set(tags)), tags
    assert {t.split("/")[0] for t in tags} == set(MODELS)
