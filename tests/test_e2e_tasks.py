"""End to end: `-profile test` runs every task, with BASELINE rows, a cross-species row and perturbation rows,
and writes a complete report; `--embeddings` scores user embeddings without inference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, TEST_H5AD, run_nextflow

DOCS_SCREENSHOT = ROOT / "docs" / "report_screenshot.png"

#: Every cell `-profile test` schedules (dataset, model, variant, task): exactly these, no more.
TEST_PROFILE_CELLS = {
    *{("pbmc68k", "scvi", "homo_sapiens", t) for t in ("clustering", "embedding", "label_prediction", "integration")},
    *{("pbmc68k", "baseline", "pca", t) for t in ("clustering", "embedding", "integration")},
    ("pbmc68k", "baseline", "raw_expression", "label_prediction"),
    *{("pbmc_mouse", "scvi", "mus_musculus", t) for t in ("clustering", "embedding")},
    *{("pbmc_mouse", "baseline", "pca", t) for t in ("clustering", "embedding")},
    ("perturb", "baseline", "control_mean", "perturbation"), ("perturb", "baseline", "control_median", "perturbation"),
    ("pbmc68k+pbmc_mouse", "scvi", "homo_sapiens+mus_musculus", "cross_species"),
}


def cells(entries):
    return {(c["dataset"], c["model"], c["variant"], c["task"]) for c in entries}


@pytest.fixture(scope="module")
def test_run(test_profile_run):
    return test_profile_run


@pytest.mark.e2e
def test_every_task_has_rows_beside_baselines(test_run):
    results = test_run.results()
    rows = results["results"]
    tasks = {(r["task"], r["model"]) for r in rows}
    for task in ("clustering", "embedding", "label_prediction", "integration"):
        assert (task, "scvi") in tasks and (task, "baseline") in tasks, task
    assert ("cross_species", "scvi") in tasks
    cross = [r for r in rows if r["task"] == "cross_species"]
    assert {r["metric"] for r in cross} == {"entropy_per_cell", "batch_silhouette"}
    assert cross[0]["dataset"] == "pbmc68k+pbmc_mouse"
    pert = [r for r in rows if r["task"] == "perturbation"]
    assert {r["variant"] for r in pert} == {"control_mean", "control_median"}
    czb_metrics = {r["metric"] for r in pert if not r["metric"].startswith("cell_eval_")}
    assert czb_metrics == {"mean_squared_error", "pearson_correlation", "jaccard"}
    cell_eval = {r["metric"] for r in pert if r["metric"].startswith("cell_eval_")}
    assert {"cell_eval_overlap_at_n", "cell_eval_de_direction_match", "cell_eval_vcc_score"} <= cell_eval
    assert all(r["value"] is not None for r in pert if r["metric"] == "cell_eval_mae")
    label_baseline = {r["variant"] for r in rows if r["task"] == "label_prediction" and r["model"] == "baseline"}
    assert label_baseline == {"raw_expression"}
    assert all(r["seed"] == 42 for r in rows)
    # -profile test runs 3 seeds: Leiden's seed-dependent scores carry one value per seed and an interval.
    import json

    clustering = json.loads(next((test_run.outdir / "metrics").glob("pbmc68k.scvi.*.clustering.metrics.json"))
                            .read_text())
    assert clustering["seeds"] == [42, 43, 44]
    assert all(len(m["values"]) == 3 and m["interval"]["method"] == "t" for m in clustering["metrics"])
    scvi = next(r for r in rows if r["model"] == "scvi")
    assert "model.pt=" in scvi["weights_sha256"] and results["provenance"][scvi["provenance_id"]]["software"]
    # Only pairs a requested task scores are run: scVI never meets the perturbation-only dataset.
    assert not any(s["dataset"] == "perturb" and s["model"] == "scvi" for s in results["skipped"])
    check = results["completeness"]
    assert check["complete"], check["missing"]
    assert cells(check["produced_cells"]) == TEST_PROFILE_CELLS
    assert check["not_applicable"] == [] and check["missing"] == []
    csv_text = (test_run.outdir / "benchmark_results.csv").read_text()
    assert "cross_species" in csv_text and "control_median" in csv_text


@pytest.mark.e2e
def test_report_html_is_published_with_plots(test_run):
    page = (test_run.outdir / "report.html").read_text()
    # The ranking figure, the quality-vs-cost scatter (the trace is read during the run), one plot per
    # task, one UMAP per embedding output (the perturbation dataset's outputs are predictions).
    embeddings = [p for d in ("pbmc68k", "pbmc_mouse") for p in (test_run.outdir / "outputs" / d).glob("*.h5ad")]
    assert len(embeddings) == 4
    assert page.count('src="data:image/png;base64,') == 2 + 6 + len(embeddings)
    for section in ("ranking", "cost", "summary", "plots", "umaps", "models", "glossary", "metadata"):
        assert f"id='{section}'" in page
    results = test_run.results()
    assert {c["label"] for c in results["cost"]["outputs"]} == {"scvi", "BASELINE:pca", "BASELINE:control_mean",
                                                               "BASELINE:control_median"}
    assert all(c["wall_seconds"] and c["peak_rss_bytes"] for c in results["cost"]["outputs"])
    assert results["ranking"]["models"][0]["rank"] == 1
    assert "https://" not in page and "http://" not in page


@pytest.mark.e2e
def test_bring_your_own_embeddings(tmp_path):
    import anndata as ad

    obs_names = ad.read_h5ad(TEST_H5AD, backed="r").obs_names
    user = ad.AnnData(obs=pd.DataFrame(index=list(obs_names)[::-1]))
    user.obsm["X_mine"] = np.random.default_rng(0).normal(size=(user.n_obs, 8)).astype(np.float32)
    user.write_h5ad(tmp_path / "mine.h5ad")
    sheet = tmp_path / "samplesheet.csv"
    sheet.write_text("id,h5ad,organism,label_key,batch_key,tasks\n"
                     f"pbmc68k,{TEST_H5AD},homo_sapiens,cell_type,donor_id,clustering;embedding\n")
    (tmp_path / "emb.csv").write_text("dataset,h5ad,obsm_key,model\npbmc68k,mine.h5ad,X_mine,my_model\n")
    run = run_nextflow(tmp_path / "run", "-profile", "test", "--input", str(sheet),
                       "--embeddings", str(tmp_path / "emb.csv"))
    assert run.returncode == 0, run.explain()
    results = run.results()
    models = {(r["model"], r["task"]) for r in results["results"]}
    assert models == {("my_model", "clustering"), ("my_model", "embedding"),
                      ("baseline", "clustering"), ("baseline", "embedding")}
    assert not any(r["process"].endswith("RUN_MODEL") for r in run.trace())
    assert results["completeness"]["complete"]

    # Cells that do not match the dataset: a clear error naming the dataset.
    bad = ad.AnnData(obs=pd.DataFrame(index=[f"x{i}" for i in range(10)]))
    bad.obsm["X_mine"] = np.zeros((10, 2), dtype=np.float32)
    bad.write_h5ad(tmp_path / "mine.h5ad")
    run = run_nextflow(tmp_path / "bad", "-profile", "test", "--input", str(sheet),
                       "--embeddings", str(tmp_path / "emb.csv"))
    assert run.returncode != 0
    assert "dataset 'pbmc68k'" in run.proc.stdout + run.proc.stderr + run.log
