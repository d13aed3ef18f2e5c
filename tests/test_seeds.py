"""Uncertainty over seeds (``--seeds N``): the seed-dependent parts run once per seed, ``value`` is the mean
of ``values`` with a Student-t interval; one seed is exactly today's single-seed result."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import BIN, ROOT, TEST_H5AD

PERTURB_H5AD = ROOT / "assets" / "test" / "perturb_test.h5ad"


@pytest.fixture(scope="module")
def pca_output(tmp_path_factory):
    """The PCA baseline's embedding of the PBMC test data, as an EVALUATE input file."""
    import anndata as ad

    from czbenchmarks.outputs import atomic_write_h5ad, embedding_output
    from czbenchmarks.tasks.baselines import pca_baseline

    adata = ad.read_h5ad(TEST_H5AD)
    emb, info = pca_baseline(adata)
    path = tmp_path_factory.mktemp("seeds") / "pca.h5ad"
    atomic_write_h5ad(embedding_output(adata.obs, emb, {"model": "baseline", "model_type": "BASELINE",
                                                        "variant": "pca", "run_info": info}), path)
    return path


def _evaluate(task, output, n_seeds, **kwargs):
    from czbenchmarks.tasks.evaluate import evaluate

    doc = evaluate(task, [output], ["pbmc68k"], "baseline", label_key="cell_type", datasets=[TEST_H5AD],
                   variant="pca", seed=42, n_seeds=n_seeds, **kwargs)
    assert doc["status"] == "ok", doc.get("error")
    return doc


def _check_repeated(metric, n):
    values = metric["values"]
    assert len(values) == n and all(isinstance(v, float) for v in values)
    assert metric["value"] == pytest.approx(np.mean(values), rel=1e-12)
    interval = metric["interval"]
    assert interval["level"] == 0.95 and interval["method"] == "t"
    assert interval["low"] <= metric["value"] <= interval["high"]


def test_clustering_over_three_seeds_differs_and_one_seed_is_todays_value(pca_output):
    from czbenchmarks.outputs import read_embedding
    from czbenchmarks.tasks.metrics import leiden_clusters

    three = _evaluate("clustering", pca_output, 3)
    assert three["seeds"] == [42, 43, 44] and three["seed"] == 42
    for metric in three["metrics"]:
        _check_repeated(metric, 3)
    # Leiden's seed changes the partition of the real test data: the scores differ across seeds.
    assert any(len(set(m["values"])) > 1 for m in three["metrics"])

    one = _evaluate("clustering", pca_output, 1)
    assert one["seeds"] == [42]
    assert all("values" not in m and "interval" not in m for m in one["metrics"])
    by_type = {m["metric_type"]: m for m in three["metrics"]}
    for metric in one["metrics"]:  # the first seed of three is the single-seed run, exactly
        assert metric["value"] == by_type[metric["metric_type"]]["values"][0]
    # ... and the single-seed run is the clustering as it was computed before seeds (one Leiden call).
    from sklearn.metrics import adjusted_rand_score

    obs, emb, _ = read_embedding(pca_output)
    clusters = leiden_clusters(emb, random_seed=42)
    ari = next(m for m in one["metrics"] if m["metric_type"] == "adjusted_rand_index")
    assert ari["value"] == adjusted_rand_score(obs["cell_type"].astype(str).to_numpy(), clusters)


def test_label_prediction_repeats_folds_per_seed(pca_output):
    from czbenchmarks.tasks.label_prediction import label_prediction_task

    doc = _evaluate("label_prediction", pca_output, 2)
    assert len(doc["metrics"]) == 20
    for metric in doc["metrics"]:
        _check_repeated(metric, 2)
    assert any(len(set(m["values"])) > 1 for m in doc["metrics"])
    import anndata as ad

    from czbenchmarks.outputs import read_embedding

    obs, emb, _ = read_embedding(pca_output)
    labels = ad.read_h5ad(TEST_H5AD, backed="r").obs["cell_type"].astype(str).to_numpy()
    second = label_prediction_task(emb, labels, random_seed=43)
    assert [m["values"][1] for m in doc["metrics"]] == [m.value for m in second]


def test_exact_metrics_are_computed_once_sampled_ones_per_seed(pca_output, monkeypatch):
    from czbenchmarks.tasks import metrics

    exact = _evaluate("embedding", pca_output, 3)
    (sil,) = exact["metrics"]
    assert sil["computation"]["method"] == "exact" and "values" not in sil and "interval" not in sil
    assert exact["seeds"] == [42, 43, 44]

    monkeypatch.setattr(metrics, "SILHOUETTE_EXACT_MAX_CELLS", 200)
    monkeypatch.setattr(metrics, "SILHOUETTE_SAMPLE_CELLS", 100)
    sampled = _evaluate("embedding", pca_output, 3)
    (sil,) = sampled["metrics"]
    assert sil["computation"]["method"] == "sampled" and sil["computation"]["seed"] == 42
    _check_repeated(sil, 3)
    assert len(set(sil["values"])) == 3  # three different cell samples


def test_perturbation_has_nothing_random_and_is_computed_once(tmp_path):
    from czbenchmarks.tasks.evaluate import evaluate
    from czbenchmarks.tasks.perturbation import write_control_baseline

    pred = tmp_path / "pred.h5ad"
    write_control_baseline(PERTURB_H5AD, pred, "control_median")
    doc = evaluate("perturbation", [pred], ["perturb"], "baseline", datasets=[PERTURB_H5AD], variant="control_median",
                   input_kind="prediction", n_seeds=3)
    assert doc["status"] == "ok" and doc["seeds"] == [42, 43, 44]
    assert all("values" not in m for m in doc["metrics"])


def test_t_interval_is_scipys():
    from scipy import stats

    from czbenchmarks.tasks.seeds import seed_list, t_interval

    values = [0.51, 0.55, 0.49, 0.6]
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    got = t_interval(values)
    assert got["low"] == pytest.approx(low) and got["high"] == pytest.approx(high)
    assert t_interval([0.5]) is None
    assert seed_list(7, 3) == [7, 8, 9]
    with pytest.raises(ValueError, match="at least 1"):
        seed_list(7, 0)


def test_cli_takes_seeds(tmp_path, pca_output):
    out = tmp_path / "m.json"
    run = subprocess.run([sys.executable, str(BIN / "czb_evaluate.py"), "--task", "clustering", "--outputs",
                          str(pca_output), "--dataset_ids", "pbmc68k", "--model", "baseline", "--variant", "pca",
                          "--label_key", "cell_type", "--seed", "7", "--seeds", "2", "--output", str(out)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    doc = json.loads(out.read_text())
    assert doc["seed"] == 7 and doc["seeds"] == [7, 8]
    assert all(len(m["values"]) == 2 for m in doc["metrics"])
