"""Every metric against a direct call of the library that defines it, on the same inputs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import BIN, ROOT, TEST_H5AD

PERTURB_H5AD = ROOT / "assets" / "test" / "perturb_test.h5ad"
MOUSE_H5AD = ROOT / "assets" / "test" / "pbmc_mouse_test.h5ad"


@pytest.fixture(scope="module")
def blobs():
    """300 cells x 8 dims, 4 labels, 3 batches; labels separated, batches partly."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.array(list("ABCD")), 75)
    batch = np.tile(np.array(["b1", "b2", "b3"]), 100)
    centers = rng.normal(0, 3, size=(4, 8))
    X = centers[pd.Categorical(labels).codes] + rng.normal(0, 1, size=(300, 8))
    X[batch == "b3"] += 0.7
    return X.astype(np.float32), labels, batch


def test_silhouette_samples_equals_sklearn(blobs):
    from sklearn.metrics import silhouette_samples as sk

    from czbenchmarks.tasks.metrics import silhouette_samples

    X, labels, _ = blobs
    np.testing.assert_allclose(silhouette_samples(X, labels, block=64), sk(X, labels), atol=1e-5)


@pytest.mark.parametrize("block,threads", [(64, 1), (37, 2), (7, 3), (1024, 2)])
def test_silhouette_samples_is_the_same_for_any_tiling_and_thread_count(blobs, block, threads):
    from sklearn.metrics import silhouette_samples as sk

    from czbenchmarks.tasks.metrics import silhouette_samples

    X, labels, _ = blobs
    # Far from the origin: the centring is what keeps float32 tiles exact enough here.
    got = silhouette_samples(X + 1000.0, labels, block=block, n_threads=threads)
    np.testing.assert_allclose(got, sk(X.astype(np.float64), labels), atol=1e-5)


def test_metric_threads_follow_the_argument_then_omp_num_threads_then_the_usable_cores(monkeypatch):
    import os

    from czbenchmarks.tasks.metrics import _n_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert _n_threads(5) == 5
    assert _n_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert _n_threads() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("include_self", [True, False])
def test_exact_knn_equals_sklearn_brute_force(blobs, include_self):
    from sklearn.neighbors import NearestNeighbors

    from czbenchmarks.tasks.metrics import exact_knn

    X, _, _ = blobs
    X = X.astype(np.float64)
    nn = NearestNeighbors(n_neighbors=20, algorithm="brute").fit(X)
    expected_dist, expected_idx = nn.kneighbors(X) if include_self else nn.kneighbors()
    dist, idx = exact_knn(X, 20, include_self=include_self, n_threads=2, block_rows=16)
    np.testing.assert_array_equal(idx, expected_idx)
    np.testing.assert_allclose(dist, expected_dist, atol=1e-6)
    assert (idx[:, 0] == np.arange(len(X))).all() == include_self


def test_exact_knn_bounds_candidates_on_column_samples_exactly_even_for_sorted_clusters():
    """4,000 cells stored cluster by cluster: every 8th column bounds the k-th distance (never below it)."""
    from sklearn.neighbors import NearestNeighbors

    from czbenchmarks.tasks.metrics import exact_knn

    rng = np.random.default_rng(3)
    X = np.repeat(rng.normal(0, 4, size=(8, 10)), 500, axis=0) + rng.normal(0, 1, size=(4000, 10))
    expected_dist, expected_idx = NearestNeighbors(n_neighbors=30, algorithm="brute").fit(X).kneighbors(X)
    dist, idx = exact_knn(X, 30, include_self=True, n_threads=2)
    np.testing.assert_array_equal(idx, expected_idx)
    np.testing.assert_allclose(dist, expected_dist, atol=1e-5)


def test_exact_knn_keeps_self_first_among_duplicates_and_breaks_ties_by_index():
    from czbenchmarks.tasks.metrics import exact_knn

    X = np.zeros((6, 3), dtype=np.float32)  # every distance is 0: a pure tie
    _, idx = exact_knn(X, 3, include_self=True, n_threads=1)
    assert idx.tolist() == [[0, 1, 2], [1, 0, 2], [2, 0, 1], [3, 0, 1], [4, 0, 1], [5, 0, 1]]
    _, idx = exact_knn(X, 10, include_self=False, n_threads=1)
    assert idx.shape == (6, 5) and not (idx == np.arange(6)[:, None]).any()


def test_silhouette_label_and_batch_equal_scib_metrics(blobs):
    import scib_metrics  # pinned in requirements/test.lock.txt: a missing install must fail, not skip

    from czbenchmarks.tasks.metrics import silhouette_batch, silhouette_label

    X, labels, batch = blobs
    assert silhouette_label(X, labels) == pytest.approx(float(scib_metrics.silhouette_label(X, labels)), abs=1e-5)
    assert silhouette_batch(X, labels, batch) == pytest.approx(
        float(scib_metrics.silhouette_batch(X, labels, batch)), abs=1e-5)


def test_entropy_per_cell_matches_a_direct_computation(blobs):
    from scipy.stats import entropy
    from sklearn.neighbors import NearestNeighbors

    from czbenchmarks.tasks.metrics import entropy_per_cell

    X, _, batch = blobs
    _, idx = NearestNeighbors(n_neighbors=200).fit(X).kneighbors(X)
    expected = np.mean([entropy(pd.Series(batch[row]).value_counts().to_numpy()) / np.log(3) for row in idx])
    assert entropy_per_cell(X, batch, random_seed=1) == pytest.approx(expected, abs=1e-9)
    # Perfectly separated batches -> 0; the seed is recorded but exact kNN makes it irrelevant.
    sep = np.vstack([np.zeros((250, 2)), np.full((250, 2), 100.0)]) + np.random.default_rng(1).normal(0, 0.1, (500, 2))
    assert entropy_per_cell(sep, np.repeat(["x", "y"], 250)) == pytest.approx(0.0, abs=1e-12)


@pytest.fixture(scope="module")
def many_cells():
    """3,000 cells x 20 dims, 8 overlapping labels, 3 batches: big enough to force the scaled paths."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 8, 3000)
    batch = rng.integers(0, 3, 3000)
    X = rng.normal(0, 1.5, size=(8, 20))[labels] + rng.normal(0, 0.4, size=(3, 20))[batch]
    X = (X + rng.normal(0, 1, size=(3000, 20))).astype(np.float32)
    return X, np.array([f"t{i}" for i in labels]), np.array([f"b{i}" for i in batch])


def test_below_the_thresholds_the_metrics_are_the_exact_ones_and_say_so(blobs):
    from czbenchmarks.tasks import metrics

    X, labels, batch = blobs
    record = {}
    dist, idx = metrics.knn(X, 20, include_self=True, record=record)
    want_dist, want_idx = metrics.exact_knn(X, 20, include_self=True)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(dist, want_dist)
    assert record == {"method": "exact", "n_cells": 300, "k": 20}
    record = {}
    assert metrics.silhouette_label(X, labels, record=record) == (np.mean(metrics.silhouette_samples(X, labels)) + 1) / 2
    assert record == {"method": "exact", "n_cells": 300}
    record = {}
    metrics.silhouette_batch(X, labels, batch, record=record)
    assert record == {"method": "exact", "n_cells": 300}
    assert 300 <= metrics.KNN_EXACT_MAX_CELLS and 300 <= metrics.SILHOUETTE_EXACT_MAX_CELLS


def test_metric_entries_record_their_computation_and_keep_the_reference_params(blobs):
    from czbenchmarks.tasks.embedding_tasks import run_embedding_task

    X, labels, batch = blobs
    obs = pd.DataFrame({"cell_type": labels, "batch": batch})
    body = run_embedding_task("integration", obs, X, "cell_type", seed=3, batch_key="batch")
    by = {m["metric_type"]: m for m in body["metrics"]}
    assert by["entropy_per_cell"]["params"] == {} and by["batch_silhouette"]["params"] == {}
    assert by["entropy_per_cell"]["computation"] == {"method": "exact", "n_cells": 300, "k": 200}
    assert by["batch_silhouette"]["computation"]["method"] == "exact"
    body = run_embedding_task("clustering", obs, X, "cell_type", seed=3)
    assert all(m["computation"] == {"method": "exact", "n_cells": 300, "k": 15} for m in body["metrics"])


def test_exact_knn_and_silhouette_of_chosen_rows_equal_the_full_results(many_cells):
    from czbenchmarks.tasks.metrics import exact_knn, silhouette_of_rows, silhouette_samples

    X, labels, _ = many_cells
    rows = np.array([0, 7, 999, 1500, 2999])
    full_d, full_i = exact_knn(X, 12, include_self=False)
    d, i = exact_knn(X, 12, include_self=False, rows=rows)
    np.testing.assert_array_equal(i, full_i[rows])
    np.testing.assert_allclose(d, full_d[rows])
    np.testing.assert_allclose(silhouette_of_rows(X, labels, rows, block=2), silhouette_samples(X, labels)[rows],
                               atol=1e-6)


def test_above_the_knn_threshold_pynndescent_neighbours_are_used_with_their_recall(many_cells):
    from czbenchmarks.tasks.metrics import exact_knn, knn

    X, _, batch = many_cells
    record = {}
    dist, idx = knn(X, 30, include_self=True, random_seed=4, max_exact_cells=1000, record=record)
    assert record["method"] == "approximate" and record["library"].startswith("pynndescent")
    assert record["recall_sample"] == 1000 and record["k"] == 30 and record["seed"] == 4
    _, exact = exact_knn(X, 30, include_self=True)
    true_recall = np.mean([len(np.intersect1d(a, b)) / 30 for a, b in zip(idx, exact)])
    assert record["recall_at_k"] >= 0.9
    assert abs(record["recall_at_k"] - true_recall) < 0.02  # the sample's recall estimates all cells'
    assert (idx[:, 0] == np.arange(3000)).all() and (np.diff(dist, axis=1) >= -1e-6).all()


def test_above_the_knn_threshold_the_entropy_averages_sampled_cells_exact_neighbourhoods(many_cells):
    """A mean over cells: each sampled cell's term is the full computation's, the interval holds the exact value."""
    from czbenchmarks.tasks.metrics import entropy_per_cell, exact_knn, neighbourhood_entropy

    X, _, batch = many_cells
    _, exact = exact_knn(X, 30, include_self=True)
    full = neighbourhood_entropy(exact, batch)
    record = {}
    sampled = entropy_per_cell(X, batch, n_neighbors=30, random_seed=4, max_exact_cells=1000, sample_cells=600,
                               record=record)
    assert record["method"] == "sampled" and record["n_sampled"] == 600 and record["seed"] == 4
    assert record["k"] == 30 and record["n_cells"] == 3000
    low, high = record["ci95"]
    assert low < full < high and low <= sampled <= high
    rows = np.sort(np.random.default_rng(4).choice(3000, size=600, replace=False))
    assert sampled == pytest.approx(neighbourhood_entropy(exact[rows], batch), abs=1e-12)
    # Every cell sampled: the exact value, with a zero-width interval.
    record = {}
    assert entropy_per_cell(X, batch, n_neighbors=30, max_exact_cells=1000, sample_cells=3000,
                            record=record) == pytest.approx(full, abs=1e-12)
    assert record["ci95"][0] == pytest.approx(record["ci95"][1])


def test_above_the_silhouette_threshold_the_sampled_interval_holds_the_exact_value(many_cells):
    from czbenchmarks.tasks.metrics import silhouette_batch, silhouette_label

    X, labels, batch = many_cells
    exact = silhouette_label(X, labels)
    record = {}
    sampled = silhouette_label(X, labels, random_seed=9, max_exact_cells=1000, sample_cells=600, record=record)
    assert record["method"] == "sampled" and record["n_sampled"] == 600 and record["seed"] == 9
    low, high = record["ci95"]
    assert low < exact < high and low < sampled < high and high - low < 0.05
    assert sampled != exact  # really the sample
    exact_batch = silhouette_batch(X, labels, batch)
    record = {}
    sampled_batch = silhouette_batch(X, labels, batch, random_seed=9, max_exact_cells=300, sample_cells=150,
                                     record=record)
    assert record["method"] == "sampled" and record["labels_sampled"] == 8 and record["n_sampled"] == 8 * 150
    assert record["ci95"][0] < exact_batch < record["ci95"][1] and sampled_batch != exact_batch


def test_exact_knn_transformer_gives_scanpys_sklearn_graph(blobs):
    import anndata as ad
    import scanpy as sc

    from czbenchmarks.tasks.metrics import ExactKNNTransformer

    X, _, _ = blobs
    graphs = []
    for transformer in ("sklearn", ExactKNNTransformer(15)):
        adata = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(len(X))]))
        adata.obsm["emb"] = X
        sc.pp.neighbors(adata, use_rep="emb", n_neighbors=15, transformer=transformer)
        graphs.append(adata.obsp["connectivities"])
    assert (graphs[0] != 0).nnz > 0
    np.testing.assert_array_equal(graphs[0].nonzero(), graphs[1].nonzero())
    np.testing.assert_allclose(graphs[0].toarray(), graphs[1].toarray(), atol=1e-5)


def test_clustering_equals_scanpy_leiden_and_sklearn_scores(blobs):
    import anndata as ad
    import scanpy as sc
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from czbenchmarks.tasks.embedding_tasks import clustering_task

    X, labels, _ = blobs
    adata = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(len(X))]))
    adata.obsm["emb"] = X
    sc.pp.neighbors(adata, use_rep="emb", n_neighbors=15, random_state=7, transformer="sklearn")
    sc.tl.leiden(adata, flavor="igraph", n_iterations=2, random_state=7, directed=False)
    clusters = adata.obs["leiden"].to_numpy()
    got = {m.metric_type: m.value for m in clustering_task(X, labels, random_seed=7)}
    assert got == {
        "adjusted_rand_index": pytest.approx(adjusted_rand_score(labels, clusters)),
        "normalized_mutual_info": pytest.approx(normalized_mutual_info_score(labels, clusters)),
    }


def test_label_prediction_equals_sklearn_cross_validate(blobs):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score, make_scorer, roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_validate
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from czbenchmarks.tasks.label_prediction import label_prediction_task

    X, labels, _ = blobs
    labels = labels.astype(object)
    labels[:5] = "rare"  # dropped: fewer than 10 cells
    metrics = label_prediction_task(X, labels, random_seed=3)
    assert len(metrics) == 20
    assert metrics[0].params == {"classifier": "MEAN(knn,lr,rf)"}
    assert [m.params["classifier"] for m in metrics[5::5]] == ["lr", "knn", "rf"]
    keep = labels != "rare"
    y = pd.Categorical(labels[keep]).codes
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=3)
    scoring = {"accuracy": make_scorer(accuracy_score), "f1": make_scorer(f1_score, average="macro"),
               "auroc": make_scorer(roc_auc_score, average="macro", multi_class="ovr", response_method="predict_proba")}
    by = {(m.metric_type, m.params["classifier"]): m.value for m in metrics}
    for name, clf in {"lr": make_pipeline(StandardScaler(), LogisticRegression()),
                      "knn": make_pipeline(StandardScaler(), KNeighborsClassifier()),
                      "rf": make_pipeline(RandomForestClassifier(random_state=3))}.items():
        scores = cross_validate(clf, X[keep], y, cv=folds, scoring=scoring)
        for score in scoring:
            assert by[(f"mean_fold_{score}", name)] == pytest.approx(scores[f"test_{score}"].mean())


def _dense_and_sparse_rows(X_sparse, labels, seed):
    from czbenchmarks.tasks.label_prediction import cross_validation_table

    dense, _ = cross_validation_table(X_sparse.toarray(), labels, random_seed=seed)
    sparse, info = cross_validation_table(X_sparse, labels, random_seed=seed)
    return dense, sparse, info


def test_sparse_label_prediction_equals_the_dense_pipelines_on_the_test_data():
    """The raw-expression baseline without densifying X: every classifier x fold score as the dense run's."""
    import anndata as ad
    import scipy.sparse as sp

    adata = ad.read_h5ad(TEST_H5AD)
    assert sp.issparse(adata.X)
    dense, sparse, info = _dense_and_sparse_rows(sp.csr_matrix(adata.X, dtype=np.float32),
                                                 adata.obs["cell_type"].to_numpy(), seed=42)
    assert info["n_classes"] == 9 and len(sparse) == 15  # CD4+/CD45RA+ (8 cells) dropped
    assert [(r["classifier"], r["fold"]) for r in sparse] == [(r["classifier"], r["fold"]) for r in dense]
    for got, want in zip(sparse, dense):
        assert got == pytest.approx(want, abs=1e-12), got["classifier"]


def test_sparse_label_prediction_equals_dense_for_two_classes_and_constant_genes():
    """Synthetic counts, binary labels (the binomial loss and its ``Z.T @ g`` product), an all-zero and a
    constant gene (scale 1, as StandardScaler), several library sizes."""
    import scipy.sparse as sp

    rng = np.random.default_rng(5)
    n, genes = 240, 60
    labels = np.repeat(["a", "b"], n // 2)
    rates = rng.gamma(0.3, 2.0, size=(2, genes))
    counts = rng.poisson(rates[(labels == "b").astype(int)] * rng.uniform(0.5, 2.0, size=(n, 1)))
    counts[:, 0] = 0
    counts[:, 1] = 3
    X = sp.csr_matrix(counts.astype(np.float32))
    assert X.nnz < 0.6 * n * genes
    dense, sparse, info = _dense_and_sparse_rows(X, labels, seed=11)
    assert info["n_classes"] == 2
    for got, want in zip(sparse, dense):
        assert got == pytest.approx(want, abs=1e-12), got["classifier"]
    assert 0.5 < np.mean([r["accuracy"] for r in sparse]) <= 1.0  # the classes are learnable, not a constant


def test_sparse_logistic_regression_is_the_dense_pipelines_model():
    """Same iterations and the same probabilities as StandardScaler + LogisticRegression on dense X."""
    import warnings

    import scipy.sparse as sp
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from czbenchmarks.tasks.label_prediction import SparseStandardizedLogisticRegression

    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 400)
    X = sp.random(400, 300, density=0.05, random_state=3, format="csr", dtype=np.float32)
    X = X + sp.csr_matrix((np.ones(400, dtype=np.float32) * 5, (np.arange(400), y)), shape=(400, 300))
    X = sp.csr_matrix(X, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dense = make_pipeline(StandardScaler(), LogisticRegression()).fit(X.toarray(), y)
        sparse = SparseStandardizedLogisticRegression().fit(X, y)
    assert sparse.n_iter_.tolist() == dense[-1].n_iter_.tolist()
    np.testing.assert_allclose(sparse.predict_proba(X[:50]), dense.predict_proba(X[:50].toarray()), atol=1e-5)
    with pytest.raises(TypeError, match="sparse"):
        SparseStandardizedLogisticRegression().fit(X.toarray(), y)


def test_evaluate_raw_expression_label_prediction_keeps_x_sparse(monkeypatch):
    """EVALUATE's raw-expression baseline hands label prediction the CSR X (not a dense copy), same numbers."""
    import anndata as ad
    import scipy.sparse as sp

    from czbenchmarks.tasks import label_prediction
    from czbenchmarks.tasks.evaluate import evaluate

    seen = []
    real = label_prediction.cross_validation_table

    def spy(features, *args, **kwargs):
        seen.append(sp.issparse(features))
        return real(features, *args, **kwargs)

    monkeypatch.setattr(label_prediction, "cross_validation_table", spy)
    doc = evaluate("label_prediction", [TEST_H5AD], ["pbmc68k"], "baseline", label_key="cell_type",
                   variant="raw_expression", input_kind="expression", seed=42)
    assert doc["status"] == "ok", doc.get("error")
    assert seen == [True]
    adata = ad.read_h5ad(TEST_H5AD)
    dense = label_prediction.label_prediction_task(adata.X.toarray().astype(np.float32),
                                                   adata.obs["cell_type"].astype(str).to_numpy(), random_seed=42)
    assert [m["value"] for m in doc["metrics"]] == pytest.approx([m.value for m in dense], abs=1e-12)


def test_perturbation_metrics_equal_sklearn_scipy_scanpy():
    import anndata as ad
    import scanpy as sc
    from scipy.stats import pearsonr
    from sklearn.metrics import mean_squared_error

    from czbenchmarks.tasks.perturbation import condition_metrics, control_baseline, load_perturbation_data

    ctrl_adata, truth, genes = load_perturbation_data(PERTURB_H5AD)
    ctrl = ctrl_adata.X.toarray()
    assert sorted(truth) == ["CTSS+ctrl", "GSTP1+SRP14", "GSTP1+ctrl"]
    pred = control_baseline(ctrl_adata.X, "control_median")[None, :]
    metrics = condition_metrics(ctrl, truth["GSTP1+ctrl"], pred, genes)
    by = {(m.metric_type, m.params["subset"]): m.value for m in metrics}
    assert [m.metric_type for m in metrics][:2] == ["mean_squared_error", "pearson_correlation"]
    t_mean, c_mean, p_mean = truth["GSTP1+ctrl"].mean(0), ctrl.mean(0), pred[0]
    assert by[("mean_squared_error", "all")] == pytest.approx(mean_squared_error(t_mean, p_mean))
    assert by[("pearson_correlation", "all")] == pytest.approx(pearsonr(t_mean - c_mean, p_mean - c_mean).statistic)
    both = ad.AnnData(np.vstack([ctrl, truth["GSTP1+ctrl"]]).astype(np.float32),
                      obs=pd.DataFrame({"condition": pd.Categorical(["ctrl"] * len(ctrl) + ["truth"] * 40)},
                                       index=[f"c{i}" for i in range(len(ctrl) + 40)]))
    both.var_names = genes
    sc.tl.rank_genes_groups(both, groupby="condition", groups=["truth"], reference="ctrl", method="wilcoxon")
    table = sc.get.rank_genes_groups_df(both, group="truth")
    top20 = table.sort_values("scores", ascending=False)["names"][:20]
    idx = [list(genes).index(g) for g in top20]
    assert by[("mean_squared_error", "top20")] == pytest.approx(mean_squared_error(t_mean[idx], p_mean[idx]))
    assert 0.0 <= by[("jaccard", "top20")] <= 1.0
    # The knocked-down target is among the truth's most down-regulated genes (known effect of the generator).
    symbol = dict(zip(genes, ad.read_h5ad(PERTURB_H5AD).var["feature_name"]))
    assert "GSTP1" in {symbol[g] for g in table.sort_values("scores")["names"][:20]}
    # A perfect prediction: MSE 0, Pearson 1, Jaccard 1.
    perfect = {(m.metric_type, m.params["subset"]): m.value
               for m in condition_metrics(ctrl, truth["GSTP1+ctrl"], truth["GSTP1+ctrl"], genes)}
    assert perfect[("mean_squared_error", "all")] == pytest.approx(0.0)
    assert perfect[("pearson_correlation", "top100")] == pytest.approx(1.0)
    assert perfect[("jaccard", "top100")] == pytest.approx(1.0)


def test_control_mean_baseline_pearson_is_undefined_not_noise():
    from czbenchmarks.tasks.perturbation import condition_metrics, control_baseline, load_perturbation_data

    ctrl_adata, truth, genes = load_perturbation_data(PERTURB_H5AD)
    pred = control_baseline(ctrl_adata.X, "control_mean").astype(np.float32)[None, :]
    metrics = condition_metrics(ctrl_adata.X.toarray(), truth["CTSS+ctrl"], pred, genes)
    pearson = [m for m in metrics if m.metric_type == "pearson_correlation"]
    assert all(m.value is None and "constant" in m.note for m in pearson)


def _interleaved_prediction(path, conditions, rows_per_condition=25, seed=0):
    """A multi-row prediction file (truth-like noise) whose conditions' rows are interleaved."""
    import anndata as ad

    from czbenchmarks.tasks.perturbation import prediction_output

    source = ad.read_h5ad(PERTURB_H5AD)
    rng = np.random.default_rng(seed)
    labels = [conditions[i % len(conditions)] for i in range(rows_per_condition * len(conditions))]
    rows = rng.gamma(1.0, 1.0, size=(len(labels), source.n_vars)).astype(np.float32)
    prediction_output(labels, rows, source.var_names, {"model": "test"}).write_h5ad(path)
    return path


def _scores_read_whole(dataset_h5ad, prediction_h5ad):
    """The task as it was before streaming: both files read whole as float64, one dict of copies."""
    import anndata as ad

    from czbenchmarks.tasks.perturbation import condition_metrics

    data = ad.read_h5ad(dataset_h5ad)
    conditions = data.obs["condition"].astype(str).to_numpy()
    splits = data.obs["split"].astype(str).to_numpy()
    dense = np.asarray(data.X.toarray(), dtype=np.float64)
    ctrl = dense[conditions == "ctrl"]
    pred = ad.read_h5ad(prediction_h5ad)
    pred_X = np.asarray(pred.X, dtype=np.float64)
    pred_conditions = pred.obs["condition"].astype(str).to_numpy()
    values = {}
    for condition in sorted(set(conditions[splits == "test"]) - {"ctrl"}):
        if condition not in set(pred_conditions):
            continue
        for m in condition_metrics(ctrl, dense[conditions == condition], pred_X[pred_conditions == condition],
                                   data.var_names.astype(str)):
            values[(condition, m.metric_type, m.params["subset"])] = m.value
    return values


@pytest.mark.parametrize("kind", ["interleaved rows", "control_median baseline"])
def test_perturbation_task_streamed_equals_the_whole_file_computation(tmp_path, kind):
    from czbenchmarks.tasks.perturbation import run_perturbation_task, write_control_baseline

    conditions = ["CTSS+ctrl", "GSTP1+SRP14", "GSTP1+ctrl"]
    pred = tmp_path / "pred.h5ad"
    if kind == "interleaved rows":
        _interleaved_prediction(pred, conditions)
    else:
        write_control_baseline(PERTURB_H5AD, pred, "control_median")
    result = run_perturbation_task(PERTURB_H5AD, pred, cell_eval=False)  # cell-eval's: tests/test_cell_eval.py
    expected = _scores_read_whole(PERTURB_H5AD, pred)
    got = {(m["params"]["condition"], m["metric_type"], m["params"]["subset"]): m["value"]
           for m in result["metrics"] if m["params"]["condition"] != "MEAN"}
    assert got.keys() == expected.keys() and len(got) == 24
    for key, value in expected.items():  # float64 means of float32 data: the same numbers
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15) if value is not None else got[key] is None, key
    assert result["missing_conditions"] == [] and result["n_conditions_scored"] == 3
    assert result["n_cells"] == 270 and result["n_cells_scored"] == 120


def test_perturbation_task_lists_missing_conditions_and_fails_only_without_any(tmp_path):
    from czbenchmarks.tasks.perturbation import run_perturbation_task

    partial = _interleaved_prediction(tmp_path / "partial.h5ad", ["GSTP1+ctrl", "NOT+A_TEST", "CTSS+ctrl"])
    result = run_perturbation_task(PERTURB_H5AD, partial, cell_eval=False)
    assert result["missing_conditions"] == ["GSTP1+SRP14"] and result["n_conditions_scored"] == 2
    assert result["params"]["ignored_predictions"] == ["NOT+A_TEST"] and result["n_cells_scored"] == 80
    by_condition = {}
    for m in result["metrics"]:
        by_condition.setdefault(m["params"]["condition"], []).append(m)
    assert set(by_condition) == {"MEAN", "CTSS+ctrl", "GSTP1+ctrl"} and len(by_condition["MEAN"]) == 8
    mse = [m for m in result["metrics"] if m["metric_type"] == "mean_squared_error" and m["params"]["subset"] == "all"]
    assert mse[0]["value"] == pytest.approx(np.mean([m["value"] for m in mse[1:]]))
    assert "mean over the 2 of 3 test conditions that have a prediction" in mse[0]["note"]
    nothing = _interleaved_prediction(tmp_path / "nothing.h5ad", ["NOT+A_TEST"])
    with pytest.raises(ValueError, match="no prediction for any of the 3 test conditions"):
        run_perturbation_task(PERTURB_H5AD, nothing, cell_eval=False)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def test_cli_scores_baselines_and_reports_failures(tmp_path):
    out = tmp_path / "pert.h5ad"
    run = _run(BIN / "czb_perturbation_baseline.py", "--input", PERTURB_H5AD, "--output", out,
               "--baseline_type", "control_median", "--dataset_id", "perturb")
    assert run.returncode == 0, run.stderr
    metrics = tmp_path / "m.json"
    run = _run(BIN / "czb_evaluate.py", "--task", "perturbation", "--outputs", out, "--dataset_ids", "perturb",
               "--datasets", PERTURB_H5AD, "--model", "baseline", "--variant", "control_median",
               "--input_kind", "prediction", "--seed", "5", "--output", metrics)
    assert run.returncode == 0, run.stderr
    doc = json.loads(metrics.read_text())
    assert doc["status"] == "ok" and doc["seed"] == 5 and doc["model_type"] == "BASELINE"
    czb = [m for m in doc["metrics"] if not m["metric_type"].startswith("cell_eval_")]
    assert len(czb) == 8 * 4  # mean + 3 test conditions
    # cell-eval's 6 metrics (mean + 3 conditions) and the VCC score (tests/test_cell_eval.py checks the values)
    assert len(doc["metrics"]) - len(czb) == 6 * 4 + 1 and doc["cell_eval"]["version"]
    # Integration without a batch column: an error document, exit 0 (reported, not hidden).
    run = _run(BIN / "czb_evaluate.py", "--task", "integration", "--outputs", TEST_H5AD, "--dataset_ids", "pbmc68k",
               "--model", "baseline", "--variant", "raw_expression", "--input_kind", "expression",
               "--label_key", "cell_type", "--output", metrics)
    assert run.returncode == 0
    doc = json.loads(metrics.read_text())
    assert doc["status"] == "error" and "batch" in doc["error"]


def _embedding_file(path, obs_names, dims=4, key="X_mine"):
    import anndata as ad

    user = ad.AnnData(obs=pd.DataFrame(index=list(obs_names)))
    user.obsm[key] = np.random.default_rng(0).normal(size=(len(obs_names), dims)).astype(np.float32)
    user.write_h5ad(path)
    return user


def test_bring_your_own_embeddings_are_aligned_or_rejected(tmp_path):
    import anndata as ad

    from czbenchmarks.outputs import read_embedding

    names = ad.read_h5ad(TEST_H5AD, backed="r").obs_names.tolist()
    shuffled = list(reversed(names))
    user = _embedding_file(tmp_path / "mine.h5ad", shuffled)
    out = tmp_path / "out.h5ad"
    run = _run(BIN / "czb_import_embeddings.py", "--embedding", tmp_path / "mine.h5ad", "--dataset", TEST_H5AD,
               "--dataset_id", "pbmc68k", "--obsm_key", "X_mine", "--model", "mymodel", "--output", out)
    assert run.returncode == 0, run.stderr
    obs, emb, prov = read_embedding(out)
    assert list(obs.index) == names
    np.testing.assert_array_equal(emb[0], user.obsm["X_mine"][-1])
    assert prov["model"] == "mymodel" and len(next(iter(prov["weights"]["files"].values()))) == 64
    _embedding_file(tmp_path / "bad.h5ad", names[:-3] + ["x1", "x2", "x3"])
    run = _run(BIN / "czb_import_embeddings.py", "--embedding", tmp_path / "bad.h5ad", "--dataset", TEST_H5AD,
               "--dataset_id", "pbmc68k", "--obsm_key", "X_mine", "--model", "m", "--output", tmp_path / "o2.h5ad")
    assert run.returncode == 1
    assert "dataset 'pbmc68k'" in run.stderr and "3 missing" in run.stderr and "3 unknown" in run.stderr
    run = _run(BIN / "czb_import_embeddings.py", "--embedding", tmp_path / "mine.h5ad", "--dataset", TEST_H5AD,
               "--dataset_id", "pbmc68k", "--obsm_key", "X_nope", "--model", "m", "--output", tmp_path / "o3.h5ad")
    assert run.returncode == 1 and "obsm['X_nope']" in run.stderr


def test_cross_species_stacks_organisms(tmp_path):
    import anndata as ad

    from czbenchmarks.outputs import atomic_write_h5ad, embedding_output
    from czbenchmarks.tasks.evaluate import evaluate
    from czbenchmarks.tasks.metrics import entropy_per_cell, silhouette_batch

    files, embs, labs = [], [], []
    for i, path in enumerate([TEST_H5AD, MOUSE_H5AD]):
        obs = ad.read_h5ad(path, backed="r").obs.copy()
        emb = np.random.default_rng(i).normal(size=(len(obs), 6)).astype(np.float32)
        out = tmp_path / f"{i}.h5ad"
        atomic_write_h5ad(embedding_output(obs, emb, {"model": "m", "model_type": "X"}), out)
        files.append(out)
        embs.append(emb)
        labs.append(obs["cell_type"].astype(str).to_numpy())
    doc = evaluate("cross_species", files, ["pbmc68k", "pbmc_mouse"], "m", label_key="cell_type",
                   organisms=["homo_sapiens", "mus_musculus"])
    assert doc["status"] == "ok", doc.get("error")
    species = np.repeat(["homo_sapiens", "mus_musculus"], [len(e) for e in embs])
    X, labels = np.vstack(embs), np.concatenate(labs)
    got = {m["metric_type"]: m["value"] for m in doc["metrics"]}
    assert got["entropy_per_cell"] == pytest.approx(entropy_per_cell(X, species))
    assert got["batch_silhouette"] == pytest.approx(silhouette_batch(X, labels, species))
    assert doc["dataset"] == "pbmc68k+pbmc_mouse"


def test_mouse_test_data_uses_mouse_gene_ids():
    import anndata as ad

    mouse = ad.read_h5ad(MOUSE_H5AD, backed="r")
    assert mouse.var_names.str.startswith("ENSMUSG").all()
    assert {"cell_type", "donor_id", "dataset_id", "assay", "suspension_type"} <= set(mouse.obs.columns)


def test_the_task_catalogue_and_the_task_implementations_agree():
    """conf/tasks.yaml is the one list of tasks; every task it names has an implementation scoring its kind."""
    from czbenchmarks.tasks.catalogue import load_catalogue
    from czbenchmarks.tasks.constants import EMBEDDING_TASKS, MULTI_DATASET_TASK_NAMES, PERTURBATION_TASKS, TASK_NAMES

    catalogue = load_catalogue()
    assert set(catalogue) == set(TASK_NAMES)
    assert {n for n, t in catalogue.items() if t.scores == "prediction"} == set(PERTURBATION_TASKS)
    assert {n for n, t in catalogue.items() if t.multi_dataset} == set(MULTI_DATASET_TASK_NAMES)
    assert {n for n, t in catalogue.items() if t.scores == "embedding" and not t.multi_dataset} == set(EMBEDDING_TASKS)
    baselines = {b for t in catalogue.values() for b in t.baselines}
    import yaml

    from conftest import ROOT

    registry = yaml.safe_load((ROOT / "conf" / "models.yaml").read_text())["models"]
    assert baselines == {k for k, v in registry.items() if v.get("role") == "baseline"}


def test_stratified_cell_sample_keeps_shares_and_small_classes():
    from collections import Counter

    from czbenchmarks.tasks.label_prediction import stratified_cell_sample

    labels = np.array(["a"] * 9000 + ["b"] * 900 + ["c"] * 80 + ["d"] * 20)
    assert stratified_cell_sample(labels, 10_000) is None and stratified_cell_sample(labels, 0) is None
    rows = stratified_cell_sample(labels, 1000, seed=3)
    assert np.all(np.diff(rows) > 0)
    counts = Counter(labels[rows])
    # shares kept (a: 900, b: 90); small classes keep MIN_CLASS_SIZE x N_FOLDS = 50 cells, or all of theirs
    assert counts == {"a": 900, "b": 90, "c": 50, "d": 20}
    assert np.array_equal(rows, stratified_cell_sample(labels, 1000, seed=3))
    assert not np.array_equal(rows, stratified_cell_sample(labels, 1000, seed=4))


def test_label_prediction_samples_the_same_cells_for_expression_and_embeddings(tmp_path):
    """Above --label_prediction_max_cells, the raw-expression counts (read from the counts layer VALIDATE
    found) and an embedding are scored on the same stratified sample, recorded per metric; the numbers
    equal scoring that sample directly."""
    import anndata as ad
    import scipy.sparse as sp

    from czbenchmarks.outputs import atomic_write_h5ad, embedding_output
    from czbenchmarks.tasks import label_prediction
    from czbenchmarks.tasks.evaluate import evaluate

    adata = ad.read_h5ad(TEST_H5AD)
    counts = sp.csr_matrix(adata.X, dtype=np.float32)
    layered = ad.AnnData(X=sp.csr_matrix(np.log1p(counts.toarray())), obs=adata.obs, var=adata.var,
                         layers={"counts": counts})
    path = tmp_path / "layered.h5ad"
    layered.write_h5ad(path)
    doc = evaluate("label_prediction", [path], ["pbmc68k"], "baseline", label_key="cell_type",
                   variant="raw_expression", input_kind="expression", seed=42, counts_location="counts",
                   label_prediction_max_cells=300)
    assert doc["status"] == "ok", doc.get("error")
    assert doc["provenance"]["run_info"]["counts_location"] == "layers/counts"
    rows = label_prediction.stratified_cell_sample(adata.obs["cell_type"].to_numpy(), 300, seed=42)
    record = doc["metrics"][0]["computation"]
    assert record == {"method": "sampled", "cells": rows.size, "of_cells": adata.n_obs, "max_cells": 300,
                      "stratified_by": "cell_type", "sample_seed": 42}
    assert all(m["computation"] == record for m in doc["metrics"]) and doc["n_cells"] == adata.n_obs
    direct = label_prediction.label_prediction_task(counts[rows], adata.obs["cell_type"].astype(str).to_numpy()[rows],
                                                    random_seed=42)
    assert [m["value"] for m in doc["metrics"]] == pytest.approx([m.value for m in direct], abs=1e-12)

    embedding = np.random.default_rng(1).normal(size=(adata.n_obs, 8)).astype(np.float32)
    output = tmp_path / "emb.h5ad"
    atomic_write_h5ad(embedding_output(adata.obs, embedding, {"model": "mine", "model_type": "X", "variant": ""}),
                      output)
    doc = evaluate("label_prediction", [output], ["pbmc68k"], "mine", label_key="cell_type", datasets=[TEST_H5AD],
                   seed=42, label_prediction_max_cells=300)
    assert doc["status"] == "ok", doc.get("error")
    assert doc["metrics"][0]["computation"] == record
    direct = label_prediction.label_prediction_task(embedding[rows], adata.obs["cell_type"].astype(str).to_numpy()[rows],
                                                    random_seed=42)
    assert [m["value"] for m in doc["metrics"]] == pytest.approx([m.value for m in direct], abs=1e-12)
