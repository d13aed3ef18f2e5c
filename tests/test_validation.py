"""The validation gate (VALIDATE): one verdict per dataset x model — pass, incompatible or error —
with one clear reason per problem naming the dataset, from metadata and a sample of X only."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Optional

import anndata as ad
import numpy as np
import pytest

from conftest import BIN, ROOT, TEST_H5AD
from czbenchmarks.validation import ERROR, INCOMPATIBLE, PASS, Verdict, check_vocabulary, validate_pair
from czbenchmarks.weights import weight_sources

TOY = ROOT / "tests" / "toy_model"
MIRROR = ROOT / "assets" / "test" / "weights"

MODELS = {
    "scvi": dict(model_script=BIN / "scvi_model.py", model_class="SCVI",
                 model_config=ROOT / "containers" / "scvi" / "config.yaml", requested_variant="", needs_weights=True),
    "baseline": dict(model_script=BIN / "baseline_pca.py", model_class="PcaBaseline",
                     model_config=ROOT / "containers" / "baseline" / "config.yaml", requested_variant="pca",
                     needs_weights=False),
    "toy": dict(model_script=TOY / "toy_model.py", model_class="ToyModel", model_config=TOY / "config.yaml",
                requested_variant="toy_v1", needs_weights=True),
}

PERTURB_MODEL = '''
from typing import Set
from czbenchmarks.datasets import DataType, Organism, PerturbationSingleCellDataset
from czbenchmarks.models.implementations.base_model_implementation import BaseModelImplementation
from czbenchmarks.models.types import ModelType
from czbenchmarks.models.validators import BaseSingleCellValidator


class PertValidator(BaseSingleCellValidator):
    dataset_type = PerturbationSingleCellDataset
    available_organisms = [Organism.HUMAN]
    required_obs_keys = []
    required_var_keys = ["feature_name"]
    model_type = ModelType.SCGENEPT

    @property
    def inputs(self) -> Set[DataType]:
        return {DataType.ANNDATA, DataType.CONDITION_KEY, DataType.SPLIT_KEY}

    @property
    def outputs(self) -> Set[DataType]:
        return {DataType.PERTURBATION_PRED}


class Pert(PertValidator, BaseModelImplementation):
    def get_model_weights_subdir(self, dataset):
        return "v1"

    def _download_model_weights(self, dataset):
        pass

    def run_model(self, dataset):
        import torch  # heavy imports live inside run_model


if __name__ == "__main__":
    Pert().run()
'''


@pytest.fixture(scope="module")
def pbmc() -> ad.AnnData:
    return ad.read_h5ad(TEST_H5AD)


@pytest.fixture(scope="module")
def pert_model(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("pert_model")
    (folder / "pert_model.py").write_text(PERTURB_MODEL)
    (folder / "config.yaml").write_text("models:\n  v1:\n    model_uri: s3://bucket/pert/v1/\n")
    return dict(model_script=folder / "pert_model.py", model_class="Pert", model_config=folder / "config.yaml",
                requested_variant="", needs_weights=True)


def check_vocab(h5ad: Path, spec: dict, weights_dir: Path, model: str = "toy") -> Verdict:
    return check_vocabulary(dataset_id="ds1", h5ad=Path(h5ad), organism="homo_sapiens", model=model,
                            model_script=spec["model_script"], model_class=spec["model_class"],
                            model_config=spec["model_config"], variant="toy_v1", weights_dir=Path(weights_dir))


def check(h5ad: Path, model: str = "scvi", dataset_id: str = "ds1", organism: str = "homo_sapiens",
          label_key: str = "cell_type", spec: Optional[dict] = None, **kwargs) -> Verdict:
    return validate_pair(dataset_id=dataset_id, h5ad=Path(h5ad), organism=organism, label_key=label_key,
                         batch_keys=kwargs.pop("batch_keys", []), model=model,
                         weights_mirror=kwargs.pop("weights_mirror", str(MIRROR)),
                         **(spec or MODELS[model]), **kwargs)


def variant_file(pbmc: ad.AnnData, tmp_path: Path, name: str = "v.h5ad", edit=None) -> Path:
    adata = pbmc.copy()
    if edit is not None:
        result = edit(adata)
        adata = result if result is not None else adata
    path = tmp_path / name
    adata.write_h5ad(path)
    return path


def assert_one_reason(verdict: Verdict, status: str, *fragments: str, dataset: str = "ds1") -> str:
    assert verdict.verdict == status, verdict.to_json()
    joined = " | ".join(verdict.reasons)
    assert f"dataset '{dataset}'" in joined, joined
    for fragment in fragments:
        assert fragment in joined, joined
    return joined


# -- pass --------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["scvi", "baseline", "toy"])
def test_valid_pbmc_passes(model):
    verdict = check(TEST_H5AD, model)
    assert verdict.verdict == PASS and verdict.reasons == [], verdict.to_json()
    assert verdict.checks["n_cells"] == 700 and verdict.checks["sampled_cells"] == 700
    if model == "scvi":
        assert verdict.variant == "homo_sapiens"
        assert verdict.weights.sources == [[str(MIRROR / "scvi" / "homo_sapiens"), ""]]
        assert verdict.weights.weights_key.startswith("homo_sapiens-")
        assert not verdict.vocabulary_check and "weights" not in json.loads(verdict.to_json())
    if model == "toy":  # local model_uri relative to config.yaml; the vocabulary is checked after the fetch
        assert verdict.weights.sources == [[str(TOY / "weights" / "toy_v1"), ""]]
        assert verdict.vocabulary_check and "vocabulary" not in verdict.checks
        after = check_vocab(TEST_H5AD, MODELS["toy"], TOY / "weights" / "toy_v1")
        assert after.verdict == PASS and after.checks["vocabulary"] == "genes.txt", after.to_json()


# -- the file itself is broken: error ---------------------------------------------------------


def test_not_a_file(tmp_path):
    folder = tmp_path / "folder.h5ad"
    folder.mkdir()
    assert_one_reason(check(folder), ERROR, "not a file")


def test_missing_file(tmp_path):
    assert_one_reason(check(tmp_path / "nope.h5ad"), ERROR, "file not found")


def test_not_hdf5(tmp_path):
    path = tmp_path / "table.h5ad"
    path.write_text("id,value\n1,2\n")
    assert_one_reason(check(path), ERROR, "not an HDF5/h5ad file: table.h5ad")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.h5ad"
    path.touch()
    assert_one_reason(check(path), ERROR, "empty file")


def test_truncated_h5ad(tmp_path):
    path = tmp_path / "cut.h5ad"
    data = TEST_H5AD.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_one_reason(check(path), ERROR, "unreadable h5ad (truncated or corrupt?): cut.h5ad")


def test_hdf5_that_is_not_an_h5ad(tmp_path):
    import h5py

    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as handle:
        handle["numbers"] = np.arange(3)
    assert_one_reason(check(path), ERROR, "plain.h5 has no X matrix")


def test_missing_organism():
    assert_one_reason(check(TEST_H5AD, organism=""), ERROR, "organism is not specified")


def test_unknown_organism():
    assert_one_reason(check(TEST_H5AD, organism="martian"), ERROR, "Unknown organism 'martian'")


def test_unknown_organism_and_broken_file_are_both_reported(tmp_path):
    path = tmp_path / "junk.h5ad"
    path.write_text("junk")
    verdict = check(path, organism="martian")
    assert len(verdict.reasons) == 2
    assert_one_reason(verdict, ERROR, "Unknown organism", "not an HDF5")


def test_samplesheet_label_key_missing_from_obs():
    assert_one_reason(check(TEST_H5AD, label_key="celltype"), ERROR,
                      "obs column 'celltype' (named in the samplesheet) not found")


def test_duplicated_var_names(pbmc, tmp_path):
    def edit(adata):
        names = list(adata.var_names)
        names[1] = names[0]
        adata.var_names = names

    path = variant_file(pbmc, tmp_path, edit=edit)
    assert_one_reason(check(path), ERROR, "1 duplicated var names, e.g. ['ENSG00000188290']")


def test_duplicated_obs_names_are_caught_before_inference(pbmc, tmp_path):
    """scVI raised InvalidIndexError on such a file in RUN_MODEL; the gate now says so first."""
    def edit(adata):
        names = list(adata.obs_names)
        names[5] = names[4]
        adata.obs_names = names

    path = variant_file(pbmc, tmp_path, edit=edit)
    assert_one_reason(check(path), ERROR, "1 duplicated obs names (cell ids)", "obs_names_make_unique")


ALL_TASKS = ["clustering", "embedding", "label_prediction", "integration", "cross_species"]


def test_tasks_the_dataset_cannot_support_are_not_applicable(pbmc, tmp_path):
    """One label class: every label task is not applicable (decided before any GPU); one batch: integration."""
    def edit(adata):
        adata.obs["one"] = "T cell"
        adata.obs["lonely_batch"] = "b1"

    path = variant_file(pbmc, tmp_path, edit=edit)
    verdict = check(path, label_key="one", batch_keys=["lonely_batch"], tasks=ALL_TASKS)
    assert verdict.verdict == PASS, verdict.to_json()
    assert set(verdict.not_applicable) == set(ALL_TASKS), verdict.not_applicable
    assert "needs 2+ classes with at least 10 cells in obs['one']; found 1 (T cell: 700)" in verdict.not_applicable["label_prediction"]
    assert "needs 2+ batches in obs['lonely_batch']; found 1" in verdict.not_applicable["integration"] or \
        "classes" in verdict.not_applicable["integration"]
    good = check(TEST_H5AD, batch_keys=["donor_id"], tasks=ALL_TASKS)
    assert good.not_applicable == {}, good.not_applicable


def test_label_prediction_needs_two_classes_of_ten(pbmc, tmp_path):
    """Classes below the reference's MIN_CLASS_SIZE do not count: clustering applies, label prediction does not."""
    def edit(adata):
        adata.obs["rare"] = ["a"] * 695 + ["b"] * 5

    path = variant_file(pbmc, tmp_path, edit=edit)
    verdict = check(path, label_key="rare", tasks=["clustering", "label_prediction"])
    assert list(verdict.not_applicable) == ["label_prediction"], verdict.not_applicable


@pytest.mark.parametrize(
    "value, fragment",
    [(np.nan, "X contains NaN values"), (-3.0, "X contains negative values"), (np.inf, "X contains infinite values")],
)
@pytest.mark.parametrize("model", ["scvi", "baseline"])
def test_broken_counts_are_errors_for_every_model(pbmc, tmp_path, value, fragment, model):
    def edit(adata):
        adata.X.data[5] = value

    assert_one_reason(check(variant_file(pbmc, tmp_path, edit=edit), model), ERROR, fragment)


def test_dense_x_with_nan(pbmc, tmp_path):
    def edit(adata):
        adata.X = adata.X.toarray()
        adata.X[3, 4] = np.nan

    assert_one_reason(check(variant_file(pbmc, tmp_path, edit=edit)), ERROR, "NaN")


def test_zero_cells(pbmc, tmp_path):
    path = variant_file(pbmc, tmp_path, edit=lambda a: a[:0].copy())
    assert_one_reason(check(path), ERROR, "has zero cells")


def test_zero_genes(pbmc, tmp_path):
    path = variant_file(pbmc, tmp_path, edit=lambda a: a[:, :0].copy())
    assert_one_reason(check(path, "baseline"), ERROR, "has zero genes")


# -- the model cannot take the dataset: incompatible -----------------------------------------


def test_organism_not_supported_by_the_model(pbmc, tmp_path):
    def edit(adata):
        adata.var_names = [n.replace("ENSG", "ENSDARG") for n in adata.var_names]
        adata.var["ensembl_id"] = list(adata.var_names)

    verdict = check(variant_file(pbmc, tmp_path, edit=edit), organism="danio_rerio")
    assert_one_reason(verdict, INCOMPATIBLE, "ds1' x scvi: Dataset organism danio_rerio is not supported for SCVI")
    assert check(variant_file(pbmc, tmp_path, "b.h5ad", edit=edit), "baseline", organism="danio_rerio").verdict == PASS


def test_missing_required_obs_keys(pbmc, tmp_path):
    path = variant_file(pbmc, tmp_path, edit=lambda a: a.obs.drop(columns=["assay", "donor_id"], inplace=True))
    assert_one_reason(check(path), INCOMPATIBLE, "Missing required obs keys: ['assay', 'donor_id']")


def test_missing_required_var_keys(pbmc, tmp_path, pert_model):
    def edit(adata):
        adata.var.drop(columns=["feature_name"], inplace=True)
        adata.obs["condition"] = ["ctrl", "A+ctrl"] * 350
        adata.obs["split"] = "train"

    verdict = check(variant_file(pbmc, tmp_path, edit=edit), "pert", spec=pert_model)
    assert_one_reason(verdict, INCOMPATIBLE, "x pert: Missing required var keys: ['feature_name']")


def test_gene_ids_without_prefix_but_usable_ensembl_id_column_pass(pbmc, tmp_path):
    def edit(adata):
        adata.var_names = list(adata.var["feature_name"].astype(str))
        adata.var_names_make_unique()

    path = variant_file(pbmc, tmp_path, edit=edit)
    assert check(path).verdict == PASS
    assert ad.read_h5ad(path, backed="r").var_names[0] == "HES4"  # the file is never rewritten


def test_gene_ids_without_prefix_and_no_ensembl_id_column(pbmc, tmp_path):
    def edit(adata):
        adata.var_names = list(adata.var["feature_name"].astype(str))
        adata.var_names_make_unique()
        adata.var.drop(columns=["ensembl_id"], inplace=True)

    path = variant_file(pbmc, tmp_path, edit=edit)
    verdict = check(path)
    assert_one_reason(verdict, INCOMPATIBLE, "Gene names must start with ENSG", "e.g. 'HES4'",
                      "no var['ensembl_id'] column")
    # scVI says why it needs the IDs; the baseline needs no gene IDs at all and takes the dataset.
    assert "keyed by Ensembl gene ID" in verdict.reasons[0]
    assert check(path, "baseline").verdict == PASS


def test_non_integer_counts_incompatible_only_for_count_models(pbmc, tmp_path):
    def edit(adata):
        adata.X = adata.X.multiply(1.0 / 3.0).tocsr()

    path = variant_file(pbmc, tmp_path, edit=edit)
    assert_one_reason(check(path, "scvi"), INCOMPATIBLE, "the model needs raw counts", "non-integer")
    baseline = check(path, "baseline")
    assert baseline.verdict == PASS and "non-integer" in baseline.checks["counts"]


def test_too_few_genes_in_the_model_vocabulary(tmp_path):
    folder = tmp_path / "toy"
    (folder / "weights" / "toy_v1").mkdir(parents=True)
    for name in ("toy_model.py", "config.yaml"):
        (folder / name).write_text((TOY / name).read_text())
    (folder / "weights" / "toy_v1" / "genes.txt").write_text("ENSG00000188290\nENSG00000186827\n")
    (folder / "weights" / "toy_v1" / "projection.json").write_text("{}")
    spec = dict(MODELS["toy"], model_script=folder / "toy_model.py", model_config=folder / "config.yaml")
    # VALIDATE never reads the vocabulary (it may be on S3): it passes and asks for the check.
    gate = check(TEST_H5AD, "toy", spec=spec)
    assert gate.verdict == PASS and gate.vocabulary_check
    verdict = check_vocab(TEST_H5AD, spec, folder / "weights" / "toy_v1")
    assert_one_reason(verdict, INCOMPATIBLE, "only 2 of 700 genes (gene IDs) are in the model's vocabulary",
                      "at least 50% of its 700 genes needed")
    assert verdict.stage == "vocabulary"


def test_vocabulary_verdict_does_not_depend_on_the_cache(tmp_path):
    """A remote model_uri: VALIDATE gives the same verdict whether or not the weights were fetched before;
    the vocabulary verdict is a function of the fetched folder alone."""
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "toy_model.py").write_text((TOY / "toy_model.py").read_text())
    (folder / "config.yaml").write_text("models:\n  toy_v1:\n    model_uri: s3://bucket/toy/v1/\n")
    spec = dict(MODELS["toy"], model_script=folder / "toy_model.py", model_config=folder / "config.yaml")
    cold = check(TEST_H5AD, "toy", spec=spec, weights_mirror=None)
    fetched = tmp_path / "cache" / "toy" / cold.weights.weights_key
    fetched.mkdir(parents=True)
    (fetched / "genes.txt").write_text("ENSG00000188290\n")
    warm = check(TEST_H5AD, "toy", spec=spec, weights_mirror=None)
    assert cold.to_json() == warm.to_json() and cold.verdict == PASS and cold.vocabulary_check
    assert_one_reason(check_vocab(TEST_H5AD, spec, fetched), INCOMPATIBLE, "only 1 of 700 genes")
    assert_one_reason(check_vocab(TEST_H5AD, spec, tmp_path / "empty"), ERROR, "has no vocabulary file genes.txt")


# -- perturbation datasets (the validator's dataset_type is PerturbationSingleCellDataset) ------


def pert_file(pbmc, tmp_path, conditions=None, splits=None, drop=None) -> Path:
    def edit(adata):
        adata.obs["condition"] = conditions or (["ctrl", "ctrl", "A+ctrl", "A+B"] * 175)
        adata.obs["split"] = splits or (["train", "test", "val", "test"] * 175)
        adata.obs["condition"] = adata.obs["condition"].astype("category")
        if drop:
            adata.obs.drop(columns=[drop], inplace=True)

    return variant_file(pbmc, tmp_path, edit=edit)


def test_valid_perturbation_dataset_passes(pbmc, tmp_path, pert_model):
    verdict = check(pert_file(pbmc, tmp_path), "pert", spec=pert_model)
    assert verdict.verdict == PASS, verdict.to_json()
    assert verdict.checks["n_conditions"] == 3 and verdict.weights.sources == [["s3://bucket/pert/v1/", ""]]


def test_malformed_perturbation_conditions(pbmc, tmp_path, pert_model):
    path = pert_file(pbmc, tmp_path, conditions=["ctrl", "A+ctrl", "A_B", "A+B+C"] * 175)
    assert_one_reason(check(path, "pert", spec=pert_model), ERROR,
                      "Invalid perturbation condition format: 'A+B+C', 'A_B'. Must be 'ctrl', '{gene}+ctrl'")


def test_invalid_split_values(pbmc, tmp_path, pert_model):
    path = pert_file(pbmc, tmp_path, splits=["train", "test", "holdout", "valid"] * 175)
    assert_one_reason(check(path, "pert", spec=pert_model), ERROR, "Invalid split value(s): ['holdout', 'valid']")


def test_missing_condition_column(pbmc, tmp_path, pert_model):
    path = pert_file(pbmc, tmp_path, drop="condition")
    assert_one_reason(check(path, "pert", spec=pert_model), INCOMPATIBLE,
                      "x pert: Condition key condition not found in adata.obs")
    renamed = check(pert_file(pbmc, tmp_path), "pert", spec=pert_model, condition_key="perturbation")
    assert_one_reason(renamed, INCOMPATIBLE, "Condition key perturbation not found")


def test_single_cell_models_ignore_perturbation_columns(pbmc, tmp_path):
    path = pert_file(pbmc, tmp_path, splits=["x"] * 700)
    assert check(path, "scvi").verdict == PASS


# -- reads only metadata and a sample -------------------------------------------------------


def test_reads_obs_columns_var_and_at_most_max_cells_rows(pbmc, tmp_path, monkeypatch):
    import czbenchmarks.datasets.h5ad as h5ad_module

    def edit(adata):
        adata.layers["counts"] = adata.X.copy()
        adata.obsm["X_pca"] = np.zeros((adata.n_obs, 5))

    path = variant_file(pbmc, tmp_path, edit=edit)
    views = []
    real = h5ad_module.read_view

    def spy(p, max_cells, counts_layer=""):
        view = real(p, max_cells, counts_layer)
        views.append(view)
        return view

    monkeypatch.setattr("czbenchmarks.validation._read_view", spy)
    verdict = check(path, max_cells=100)
    assert verdict.verdict == PASS and verdict.checks["sampled_cells"] <= 100
    assert verdict.checks["n_cells"] == 700
    (view,) = views
    assert view.n_obs == 700 and len(view.obs) == 700 and list(view.obs.columns) == list(pbmc.obs.columns)
    assert view.sample.n_obs == view.sampled_cells <= 100
    assert len(view.sample.layers) == 0 and len(view.sample.obsm) == 0
    # The sampled cells keep their names and values.
    first = view.sample.obs_names[0]
    assert first in pbmc.obs_names
    assert np.array_equal(view.sample[first].X.toarray(), pbmc[first].X.toarray())


def test_backed_opener_keeps_x_on_disk(pbmc, tmp_path):
    from czbenchmarks.validation import open_backed

    path = variant_file(pbmc, tmp_path, edit=lambda a: a.layers.__setitem__("counts", a.X.copy()))
    adata = open_backed(path)
    assert adata.isbacked and len(adata.layers) == 0 and adata.n_obs == 700
    adata.file.close()


def test_validation_imports_no_model_library(tmp_path):
    """VALIDATE runs on CPU images without torch: the model scripts import it inside run_model."""
    code = textwrap.dedent(f"""
        import importlib.abc, json, runpy, sys
        class Forbid(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in ("torch", "scvi", "scanpy", "jax", "transformers"):
                    raise ImportError("forbidden during validation: " + name)
        sys.meta_path.insert(0, Forbid())
        validate = runpy.run_path({str(BIN / 'czb_validate.py')!r}, run_name="czb_validate")
        for model, script, cls, config, variant, needs in [
            ("scvi", "scvi_model.py", "SCVI", "containers/scvi/config.yaml", "", "true"),
            ("baseline", "baseline_pca.py", "PcaBaseline", "containers/baseline/config.yaml", "pca", "false")]:
            out = {str(tmp_path)!r} + "/" + model + ".json"
            validate["main"](["--dataset_id", "pbmc", "--h5ad", {str(TEST_H5AD)!r}, "--organism", "homo_sapiens",
                "--label_key", "cell_type", "--model", model, "--model_script", {str(BIN)!r} + "/" + script,
                "--model_class", cls, "--model_config", {str(ROOT)!r} + "/" + config, "--variant", variant,
                "--needs_weights", needs, "--weights_mirror", {str(MIRROR)!r}, "--output", out])
            verdict = json.load(open(out))
            assert verdict["verdict"] == "pass", verdict
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "scvi", "scanpy"))
        assert not heavy, heavy
        print("OK")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr


# -- the bin/ script --------------------------------------------------------------------------


def run_cli(tmp_path: Path, h5ad: Path, organism: str = "homo_sapiens") -> subprocess.CompletedProcess:
    out = tmp_path / "verdict.json"
    cmd = [sys.executable, str(BIN / "czb_validate.py"), "--dataset_id", "broken", "--h5ad", str(h5ad),
           "--organism", organism, "--label_key", "cell_type", "--model", "scvi",
           "--model_script", str(BIN / "scvi_model.py"), "--model_class", "SCVI",
           "--model_config", str(ROOT / "containers" / "scvi" / "config.yaml"),
           "--weights_mirror", str(MIRROR), "--output", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_cli_writes_an_error_verdict_and_exits_zero(tmp_path):
    path = tmp_path / "x.h5ad"
    path.write_text("not hdf5")
    proc = run_cli(tmp_path, path)
    assert proc.returncode == 0, proc.stderr
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    assert verdict["verdict"] == "error" and verdict["dataset"] == "broken"
    assert verdict["reasons"] == ["dataset 'broken': not an HDF5/h5ad file: x.h5ad"]
    assert "broken x scvi: error" in proc.stdout


def test_cli_reports_a_crashing_validator_as_an_error(tmp_path):
    script = tmp_path / "bad_model.py"
    script.write_text("raise RuntimeError('boom at import')\n")
    out = tmp_path / "v.json"
    proc = subprocess.run(
        [sys.executable, str(BIN / "czb_validate.py"), "--dataset_id", "pbmc", "--h5ad", str(TEST_H5AD),
         "--organism", "homo_sapiens", "--model", "bad", "--model_script", str(script), "--model_class", "X",
         "--model_config", str(ROOT / "containers" / "scvi" / "config.yaml"), "--output", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0
    verdict = json.loads(out.read_text())
    assert verdict["verdict"] == "error"
    assert "dataset 'pbmc' x bad: validation crashed in the model's validator (bad_model.py)" in verdict["reasons"][0]
    assert "boom at import" in verdict["reasons"][0]


# -- weight sources ----------------------------------------------------------------------------


def test_weight_sources_mirror_and_fallback(tmp_path):
    config = {"model_uri": "weights/v1", "extra_uris": {"vocab": "s3://b/vocab/"}}
    assert weight_sources("m", "v1", config, "s3://mirror/root/") == [("s3://mirror/root/m/v1", "")]
    (tmp_path / "mirror" / "m" / "v1").mkdir(parents=True)
    assert weight_sources("m", "v1", config, str(tmp_path / "mirror")) == [(f"{tmp_path}/mirror/m/v1", "")]
    # A local mirror without this model falls back to the variant's own (config-relative) URIs.
    assert weight_sources("other", "v1", config, str(tmp_path / "mirror"), base_dir=tmp_path / "cfg") == [
        (str(tmp_path / "cfg" / "weights" / "v1"), ""), ("s3://b/vocab/", "vocab")]
