"""scVI model script: pipeline mode on the PBMC test data, checked against scvi-tools called directly."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from conftest import BIN, TEST_H5AD, TEST_WEIGHTS
from czbenchmarks.validation import load_model_class
from czbenchmarks.weights import fetch_weights

SCVI_WEIGHTS = TEST_WEIGHTS / "scvi" / "homo_sapiens"
#: A Census-shaped model written by scvi-tools 1.1 (scripts/make_scvi11_model.py; README there).
SCVI_1_1 = Path(__file__).parent / "fixtures" / "scvi_1_1"


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("weights") / "homo_sapiens"
    fetch_weights([(str(SCVI_WEIGHTS), "")], dest, extra={"model": "scvi", "variant": "homo_sapiens"})
    return dest


def run_script(tmp_path: Path, weights_dir: Path, h5ad: Path = TEST_H5AD, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BIN / "scvi_model.py"), "--input", str(h5ad), "--output", str(tmp_path / "out.h5ad"),
         "--dataset_id", "pbmc68k", "--organism", "homo_sapiens", "--weights_dir", str(weights_dir),
         "--model_variant", "homo_sapiens", "--seed", "42", "--device", "cpu", *extra],
        capture_output=True, text=True,
    )


def reference_latent(h5ad: Path, weights: Path, seed: int = 42) -> np.ndarray:
    """What czbenchmarks' scVI model computes, written out with scvi-tools directly.

    Seeded: load_query_data initialises the new batches' weights at random, which the reference
    left unseeded; with the Census architecture (``encode_covariates=False``) those weights never
    reach the encoder, so the latent does not depend on them.
    """
    import scvi

    scvi.settings.seed = seed
    adata = ad.read_h5ad(h5ad)
    keys = ["dataset_id", "assay", "suspension_type", "donor_id"]
    adata.obs["batch"] = adata.obs[keys].astype(str).agg("".join, axis=1)
    del adata.varm
    scvi.model.SCVI.prepare_query_anndata(adata, str(weights), return_reference_var_names=False)
    model = scvi.model.SCVI.load_query_data(adata, str(weights))
    model.is_trained = True
    latent, _ = model.get_latent_representation(return_dist=True)
    return np.asarray(latent)


def test_pipeline_mode_matches_scvi_tools_called_directly(tmp_path, weights_dir):
    proc = run_script(tmp_path, weights_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = ad.read_h5ad(tmp_path / "out.h5ad")
    source = ad.read_h5ad(TEST_H5AD)
    assert list(out.obs_names) == list(source.obs_names)
    assert list(out.obs["cell_type"]) == list(source.obs["cell_type"])
    expected = reference_latent(TEST_H5AD, weights_dir)
    np.testing.assert_allclose(out.obsm["X_emb"], expected, rtol=1e-4, atol=1e-5)
    provenance = json.loads(out.uns["czbenchmarks"]["json"])
    assert provenance["model"] == "scvi" and provenance["model_type"] == "SCVI"
    assert provenance["weights"]["files"]["model.pt"] == json.loads(
        (weights_dir / "czb_manifest.json").read_text())["files"][0]["sha256"]
    assert provenance["run_info"]["device"] == "cpu"
    # The user's var_names are never rewritten; the query genes were padded to the reference.
    assert "scvi-tools" in provenance["software"]


def test_tiny_reference_has_the_census_architecture(weights_dir):
    """The test model is built as the Census models are (scripts/make_test_assets.py), so the numbers
    the tests check are those of the real architecture, not of a friendlier one."""
    import torch

    saved = torch.load(weights_dir / "model.pt", map_location="cpu", weights_only=False)
    init = saved["attr_dict"]["init_params_"]
    assert init["kwargs"]["kwargs"] == {"encode_covariates": False}
    assert {k: init["non_kwargs"][k] for k in ("n_latent", "n_layers", "gene_likelihood", "dispersion")} == {
        "n_latent": 50, "n_layers": 1, "gene_likelihood": "nb", "dispersion": "gene"}
    assert all(str(g).startswith("ENSG") for g in saved["var_names"])
    batches = saved["attr_dict"]["registry_"]["field_registries"]["batch"]["state_registry"]["categorical_mapping"]
    # Census-style labels: dataset_id + assay + suspension_type + donor_id, no separator.
    assert all(str(b).startswith("census_reference_human10x 3' v2cell") for b in batches) and len(batches) == 3


def test_embedding_does_not_depend_on_the_seed_or_the_batch_labels(tmp_path, weights_dir):
    """With encode_covariates=False (Census) the seeded initialisation of the query's new batches
    never reaches the encoder: every seed, and any batch labelling, gives the same latent."""
    first = reference_latent(TEST_H5AD, weights_dir, seed=7)
    assert first.shape == (700, 50) and np.isfinite(first).all()
    np.testing.assert_allclose(reference_latent(TEST_H5AD, weights_dir, seed=8), first, rtol=1e-5, atol=1e-6)
    proc = run_script(tmp_path, weights_dir, TEST_H5AD, "--seed", "7")
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_allclose(ad.read_h5ad(tmp_path / "out.h5ad").obsm["X_emb"], first, rtol=1e-4, atol=1e-5)
    relabelled = ad.read_h5ad(TEST_H5AD)
    relabelled.obs["donor_id"] = relabelled.obs["donor_id"].cat.rename_categories(lambda d: f"other_{d}")
    h5ad = tmp_path / "relabelled.h5ad"
    relabelled.write_h5ad(h5ad)
    np.testing.assert_allclose(reference_latent(h5ad, weights_dir, seed=7), first, rtol=1e-5, atol=1e-6)
    # The cells still differ from one another: the latent is not a constant.
    assert first.std(axis=0).mean() > 0.05


def test_model_written_by_scvi_tools_1_1_maps_as_1_1_does(tmp_path):
    """The Census models were saved by scvi-tools ~1.1: the pipeline's loader (this scvi-tools) must
    read such a file and give the latent that scvi-tools 1.1 itself gives."""
    if not (SCVI_1_1 / "model.pt").is_file():
        pytest.skip(f"{SCVI_1_1}/model.pt absent: run scripts/make_scvi11_model.py in a scvi-tools 1.1 environment")
    import torch

    saved = torch.load(SCVI_1_1 / "model.pt", map_location="cpu", weights_only=False)
    assert saved["attr_dict"]["registry_"]["scvi_version"].startswith("1.1.")
    weights = tmp_path / "weights"
    fetch_weights([(str(SCVI_1_1), "")], weights, extra={"model": "scvi", "variant": "homo_sapiens"})
    proc = run_script(tmp_path, weights)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = ad.read_h5ad(tmp_path / "out.h5ad")
    assert out.obsm["X_emb"].shape == (700, 50)
    expected = np.load(SCVI_1_1 / "expected_latent.npy")
    np.testing.assert_allclose(out.obsm["X_emb"][: len(expected)], expected, rtol=1e-4, atol=1e-5)
    run_info = json.loads(out.uns["czbenchmarks"]["json"])["run_info"]
    assert run_info["n_reference_genes"] == 305


def test_dataset_with_only_an_ensembl_id_column_is_mapped(tmp_path, weights_dir):
    adata = ad.read_h5ad(TEST_H5AD)
    adata.var_names = adata.var["feature_name"].astype(str).to_numpy()  # symbols; Ensembl IDs only in a column
    h5ad = tmp_path / "symbols.h5ad"
    adata.write_h5ad(h5ad)
    proc = run_script(tmp_path, weights_dir, h5ad)
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_allclose(
        ad.read_h5ad(tmp_path / "out.h5ad").obsm["X_emb"], reference_latent(TEST_H5AD, weights_dir), rtol=1e-4, atol=1e-5
    )


def test_corrupted_weights_are_refused_with_a_clear_message(tmp_path, weights_dir):
    broken = tmp_path / "broken"
    shutil.copytree(weights_dir, broken)
    with open(broken / "model.pt", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01\x02\x03")
    proc = run_script(tmp_path, broken)
    assert proc.returncode != 0
    assert "failed verification" in proc.stderr and "model.pt" in proc.stderr


def test_validator_rules():
    scvi_cls = load_model_class(BIN / "scvi_model.py", "SCVI")
    assert scvi_cls.requires_raw_counts
    assert [o.name for o in scvi_cls.available_organisms] == ["homo_sapiens", "mus_musculus"]
    assert scvi_cls.required_obs_keys == ["dataset_id", "assay", "suspension_type", "donor_id"]


def test_gpu_requested_without_cuda_fails_fast(tmp_path, weights_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    proc = run_script(tmp_path, weights_dir, TEST_H5AD, "--device", "cuda")
    assert proc.returncode != 0
    assert "GPU requested (--device cuda) but CUDA is unusable" in proc.stderr
    assert not (tmp_path / "out.h5ad").exists()
