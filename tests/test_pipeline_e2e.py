"""End-to-end: real `nextflow run main.nf -profile test`, then -resume, then -stub-run."""

from __future__ import annotations

import math
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from conftest import TEST_H5AD, run_nextflow

pytestmark = pytest.mark.e2e

PROCESSES = ["VALIDATE", "FETCH_WEIGHTS", "RUN_MODEL", "RUN_BASELINE", "EVALUATE", "REPORT", "CHECK_RESULTS"]


@pytest.fixture(scope="module")
def test_run(test_profile_run):
    return test_profile_run


def rows_for(results: dict, dataset: str, model: str, task: str) -> dict:
    return {
        r["metric"]: r
        for r in results["results"]
        if r["dataset"] == dataset and r["model"] == model and r["task"] == task
    }


def test_report_has_scvi_and_pca_rows_with_real_numbers(test_run):
    results = test_run.results()
    for model, model_type in (("scvi", "SCVI"), ("baseline", "BASELINE")):
        clustering = rows_for(results, "pbmc68k", model, "clustering")
        assert set(clustering) >= {"adjusted_rand_index", "normalized_mutual_info"}, results["results"]
        ari = clustering["adjusted_rand_index"]["value"]
        nmi = clustering["normalized_mutual_info"]["value"]
        assert math.isfinite(ari) and -1.0 <= ari <= 1.0
        assert math.isfinite(nmi) and 0.0 <= nmi <= 1.0
        # PBMC cell types are well separated: a working embedding clusters far better than chance.
        assert ari > 0.1 and nmi > 0.3, (model, ari, nmi)
        silhouette = rows_for(results, "pbmc68k", model, "embedding")["silhouette_score"]["value"]
        assert 0.0 <= silhouette <= 1.0
        assert clustering["adjusted_rand_index"]["model_type"] == model_type
    scvi_row = rows_for(results, "pbmc68k", "scvi", "clustering")["adjusted_rand_index"]
    assert scvi_row["variant"] == "homo_sapiens"
    assert scvi_row["weights_sha256"].startswith("model.pt=")
    csv_text = (test_run.outdir / "benchmark_results.csv").read_text()
    assert csv_text.splitlines()[0].startswith("dataset,model,model_type,variant,task,metric,value")
    assert "pbmc68k,scvi,SCVI,homo_sapiens,clustering,adjusted_rand_index" in csv_text


def test_trace_lists_every_process_and_pipeline_info_is_published(test_run):
    trace = test_run.trace()
    names = {row["process"].split(":")[-1] for row in trace}
    assert set(PROCESSES) <= names, names
    assert all(row["status"] == "COMPLETED" for row in trace), trace
    info = test_run.outdir / "pipeline_info"
    assert list(info.glob("execution_report_*.html")) and list(info.glob("execution_timeline_*.html"))


def test_model_output_is_aligned_to_the_input_cells_with_provenance(test_run):
    source = ad.read_h5ad(TEST_H5AD, backed="r")
    output = ad.read_h5ad(test_run.outdir / "outputs" / "pbmc68k" / "pbmc68k.scvi.h5ad")
    assert list(output.obs_names) == list(source.obs_names)
    assert output.obsm["X_emb"].shape == (source.n_obs, 50)  # the Census latent width
    assert np.isfinite(output.obsm["X_emb"]).all()
    assert output.obs["czb_embedded"].all()
    provenance = output.uns["czbenchmarks"]["json"]
    for key in ('"model": "scvi"', '"variant": "homo_sapiens"', '"seed": 42', "scvi-tools", "model.pt"):
        assert key in provenance


def test_resume_caches_every_task(test_run):
    again = run_nextflow(
        test_run.launch_dir, "-profile", "test", "-resume",
        "--weights_cache", str(test_run.launch_dir / "weights_cache"),
    )
    assert again.returncode == 0, again.explain()
    trace = again.trace()
    assert trace and all(row["status"] == "CACHED" for row in trace), [(r["name"], r["status"]) for r in trace]
    # FETCH_WEIGHTS is skipped through its storeDir cache (it is then absent from the trace).
    assert "[skipping] Stored process > CZBENCHMARKS:GATE:FETCH_WEIGHTS" in again.log
    assert again.results()["results"] == test_run.results()["results"]


def test_stub_run_covers_the_whole_dag(tmp_path: Path):
    run = run_nextflow(tmp_path, "-profile", "test", "-stub-run", "--weights_cache", str(tmp_path / "stub_cache"))
    assert run.returncode == 0, run.explain()
    trace = run.trace()
    names = {row["process"].split(":")[-1] for row in trace}
    assert set(PROCESSES) <= names, names
    assert all(row["status"] == "COMPLETED" for row in trace)
    assert run.results()["results"], "stub metrics should flow through to the report"
