"""The perturbation task's cell-eval metrics equal cell-eval's own evaluation of the whole prediction at once
(its public API: ``MetricsEvaluator``, ``build_base_mean_adata``, ``score_agg_metrics``), on the test data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT

PERTURB_H5AD = ROOT / "assets" / "test" / "perturb_test.h5ad"
TEST_CONDITIONS = ["CTSS+ctrl", "GSTP1+SRP14", "GSTP1+ctrl"]
PER_CONDITION = {
    "cell_eval_overlap_at_n": "overlap_at_N", "cell_eval_precision_at_n": "precision_at_N",
    "cell_eval_de_direction_match": "de_direction_match", "cell_eval_de_spearman_lfc_sig": "de_spearman_lfc_sig",
    "cell_eval_mae": "mae", "cell_eval_discrimination_score_l1": "discrimination_score_l1",
}

pytest.importorskip("cell_eval", reason="cell-eval is in requirements/base.txt; install it to run these checks")


def _prediction(path, kind):
    """A prediction file: several rows per condition (as scGenePT writes), or a control baseline."""
    import anndata as ad

    from czbenchmarks.tasks.perturbation import prediction_output, write_control_baseline

    if kind in ("control_mean", "control_median"):
        write_control_baseline(PERTURB_H5AD, path, kind)
        return path
    source = ad.read_h5ad(PERTURB_H5AD)
    truth = source.X.toarray()
    conditions = source.obs["condition"].astype(str).to_numpy()
    rng = np.random.default_rng(1)
    labels, rows = [], []
    for condition in TEST_CONDITIONS:  # true cells of the condition, thinned: a prediction with real signal
        cells = truth[conditions == condition][:30]
        labels += [condition] * len(cells)
        rows.append(rng.binomial(cells.astype(np.int64), 0.8).astype(np.float32))
    prediction_output(labels, np.vstack(rows), source.var_names, {"model": "test"}).write_h5ad(path)
    return path


def _rows(adata, keep):
    """Dense rows ``keep`` of ``adata.X`` (cell-eval's baseline AnnData is partly sparse)."""
    import scipy.sparse as sp

    X = adata.X[keep]
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def _whole(conditions, ctrl, blocks, var_names):
    """One AnnData: the control cells then each condition's block (cell-eval's input layout)."""
    import anndata as ad

    X = np.vstack([ctrl, *blocks]).astype(np.float32)
    labels = ["ctrl"] * len(ctrl) + [c for c, b in zip(conditions, blocks) for _ in range(len(b))]
    obs = pd.DataFrame({"condition": pd.Categorical(labels)}, index=[f"c{i}" for i in range(len(X))])
    return ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=var_names))


@pytest.mark.parametrize("kind", ["predicted rows", "control_mean", "control_median"])
def test_cell_eval_metrics_equal_a_direct_cell_eval_call(tmp_path, kind):
    import anndata as ad
    from cell_eval import MetricsEvaluator, build_base_mean_adata, score_agg_metrics

    from czbenchmarks.tasks.perturbation import run_perturbation_task

    result = run_perturbation_task(PERTURB_H5AD, _prediction(tmp_path / "pred.h5ad", kind))
    assert result["cell_eval"]["version"] and result["cell_eval"]["is_log1p"] is False  # the test data: counts
    got = {(m["metric_type"], m["params"]["condition"]): m for m in result["metrics"]
           if m["metric_type"].startswith("cell_eval_")}

    # cell-eval on everything at once: the real cells, the predicted cells (one row repeated per true cell,
    # the real control cells as the prediction's control), X as stored (allow_discrete), pdex told the scale.
    data = ad.read_h5ad(PERTURB_H5AD)
    dense = data.X.toarray()
    conditions = data.obs["condition"].astype(str).to_numpy()
    splits = data.obs["split"].astype(str).to_numpy()
    genes = list(data.var_names.astype(str))
    ctrl = dense[conditions == "ctrl"]
    truths = [dense[conditions == c] for c in TEST_CONDITIONS]
    pred = ad.read_h5ad(tmp_path / "pred.h5ad")
    pred_labels = pred.obs["condition"].astype(str).to_numpy()
    preds = [np.asarray(pred.X)[pred_labels == c] for c in TEST_CONDITIONS]
    preds = [np.repeat(p, len(t), axis=0) if len(p) == 1 else p for p, t in zip(preds, truths)]
    real = _whole(TEST_CONDITIONS, ctrl, truths, genes)
    options = dict(control_pert="ctrl", pert_col="condition", num_threads=1, allow_discrete=True,
                   pdex_kwargs={"is_log1p": False})
    evaluator = MetricsEvaluator(_whole(TEST_CONDITIONS, ctrl, preds, genes), real,
                                 outdir=str(tmp_path / "user"), **options)
    results, _ = evaluator.compute(profile="full", write_csv=False)
    direct = {row["perturbation"]: row for row in results.to_dicts()}
    for ours, theirs in PER_CONDITION.items():
        for condition in TEST_CONDITIONS:
            expected = direct[condition][theirs]
            value = got[(ours, condition)]["value"]
            if expected is None or not np.isfinite(expected):
                assert value is None, (ours, condition)
            else:
                assert value == pytest.approx(expected, rel=1e-6, abs=1e-9), (ours, condition)
        defined = [direct[c][theirs] for c in TEST_CONDITIONS if np.isfinite(direct[c][theirs])]
        assert got[(ours, "MEAN")]["value"] == pytest.approx(np.mean(defined), rel=1e-6)
        assert got[(ours, "MEAN")]["params"]["cell_eval_metric"] == theirs

    # The VCC score: the prediction against cell-eval's perturbation-mean baseline of the train split.
    keep = (conditions == "ctrl") | ((splits == "train") & (conditions != "ctrl"))
    base_adata = build_base_mean_adata(data[keep].copy(), pert_col="condition", control_pert="ctrl",
                                       allow_discrete=True)
    base_labels = base_adata.obs["condition"].astype(str).to_numpy()
    base_vector = _rows(base_adata, base_labels != "ctrl")[0]
    base_blocks = [np.repeat(base_vector[None, :], len(t), axis=0) for t in truths]
    base = MetricsEvaluator(_whole(TEST_CONDITIONS, ctrl, base_blocks, genes), real,
                            outdir=str(tmp_path / "base"), **options)
    _, user_agg = evaluator.compute(profile="vcc", write_csv=False)
    _, base_agg = base.compute(profile="vcc", write_csv=False)
    scores = {r["metric"]: r["from_baseline"] for r in score_agg_metrics(user_agg, base_agg).to_dicts()}
    vcc = got[("cell_eval_vcc_score", "MEAN")]
    assert vcc["value"] == pytest.approx(scores["avg_score"], rel=1e-5, abs=1e-7)
    for metric in ("mae", "discrimination_score_l1", "overlap_at_N"):
        assert vcc["computation"]["components"][metric] == pytest.approx(scores[metric], rel=1e-5, abs=1e-7)
    if kind == "predicted rows":  # a prediction with the true effects beats the baseline; the baselines do not
        assert vcc["value"] > 0.2
        assert got[("cell_eval_overlap_at_n", "MEAN")]["value"] > 0.5


def test_the_vcc_baseline_is_cell_evals_perturbation_mean_of_the_train_split():
    import anndata as ad
    from cell_eval import build_base_mean_adata

    from czbenchmarks.tasks.perturbation import perturbation_mean_baseline

    data = ad.read_h5ad(PERTURB_H5AD)
    conditions = data.obs["condition"].astype(str).to_numpy()
    keep = (conditions == "ctrl") | ((data.obs["split"].astype(str).to_numpy() == "train") & (conditions != "ctrl"))
    expected = build_base_mean_adata(data[keep].copy(), pert_col="condition", control_pert="ctrl", allow_discrete=True)
    row = _rows(expected, expected.obs["condition"].astype(str).to_numpy() != "ctrl")[0]
    vector, note = perturbation_mean_baseline(PERTURB_H5AD)
    assert note == "" and vector.shape == (data.n_vars,)
    np.testing.assert_allclose(vector, row, rtol=1e-5)


def test_without_cell_eval_the_task_still_scores_and_says_why(monkeypatch, tmp_path):
    import builtins

    from czbenchmarks.tasks.perturbation import run_perturbation_task

    real_import = builtins.__import__

    def no_cell_eval(name, *args, **kwargs):
        level = kwargs.get("level", args[3] if len(args) > 3 else 0)
        if level == 0 and (name == "cell_eval" or name.startswith("cell_eval.")):
            raise ImportError("No module named 'cell_eval'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cell_eval)
    result = run_perturbation_task(PERTURB_H5AD, _prediction(tmp_path / "p.h5ad", "control_mean"))
    assert "cell_eval" in result["cell_eval"]["error"]
    ours = [m for m in result["metrics"] if m["metric_type"].startswith("cell_eval_")]
    assert ours and all(m["value"] is None and "cell-eval not computed" in m["note"] for m in ours)
    assert any(m["metric_type"] == "mean_squared_error" and m["value"] is not None for m in result["metrics"])


def test_negative_predictions_are_clipped_for_cell_eval_only(tmp_path):
    import anndata as ad

    from czbenchmarks.tasks.perturbation import prediction_output, run_perturbation_task

    source = ad.read_h5ad(_prediction(tmp_path / "rows.h5ad", "predicted rows"))
    shifted = np.asarray(source.X) - 0.5  # a regression model's output dips below 0
    labels = source.obs["condition"].astype(str).tolist()
    prediction_output(labels, shifted, source.var_names, {"model": "test"}).write_h5ad(tmp_path / "neg.h5ad")
    prediction_output(labels, np.maximum(shifted, 0), source.var_names, {"model": "test"}).write_h5ad(tmp_path / "clip.h5ad")
    negative = run_perturbation_task(PERTURB_H5AD, tmp_path / "neg.h5ad")
    clipped = run_perturbation_task(PERTURB_H5AD, tmp_path / "clip.h5ad")
    assert negative["cell_eval"]["negative_values_clipped"] == int((shifted < 0).sum()) > 0
    assert clipped["cell_eval"]["negative_values_clipped"] == 0

    def values(result, cell_eval):
        return [(m["metric_type"], m["params"].get("condition"), m["value"]) for m in result["metrics"]
                if m["metric_type"].startswith("cell_eval_") == cell_eval]

    assert values(negative, True) == values(clipped, True)
    assert all(v is not None for name, _, v in values(negative, True) if name == "cell_eval_mae")
    assert values(negative, False) != values(clipped, False)  # czbenchmarks' metrics score the values as given


def test_conditions_without_a_prediction_are_left_out_of_cell_evals_means(tmp_path):
    import anndata as ad

    from czbenchmarks.tasks.perturbation import prediction_output, run_perturbation_task

    source = ad.read_h5ad(_prediction(tmp_path / "rows.h5ad", "predicted rows"))
    keep = (source.obs["condition"] != "GSTP1+SRP14").to_numpy()
    prediction_output(source.obs["condition"].astype(str)[keep].tolist(), np.asarray(source.X)[keep],
                      source.var_names, {"model": "test"}).write_h5ad(tmp_path / "partial.h5ad")
    result = run_perturbation_task(PERTURB_H5AD, tmp_path / "partial.h5ad")
    ours = [m for m in result["metrics"] if m["metric_type"].startswith("cell_eval_")]
    assert {m["params"]["condition"] for m in ours} == {"MEAN", "CTSS+ctrl", "GSTP1+ctrl"}
    means = [m for m in ours if m["params"]["condition"] == "MEAN"]
    assert len(means) == 7 and all("mean over the 2 of 3 test conditions" in m["note"] for m in means)
    mae = {m["params"]["condition"]: m["value"] for m in ours if m["metric_type"] == "cell_eval_mae"}
    assert mae["MEAN"] == pytest.approx((mae["CTSS+ctrl"] + mae["GSTP1+ctrl"]) / 2)
