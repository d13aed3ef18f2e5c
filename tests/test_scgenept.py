"""scGenePT: checkpoint names and strict loading, seeded predictions, validator, pipeline mode, e2e.

The tiny weights come from ``scripts/make_tiny_scgenept.py``; the dataset from
``scripts/make_perturbation_assets.py`` (``assets/test/perturb_test.h5ad``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from conftest import BIN, ROOT, TEST_WEIGHTS

torch = pytest.importorskip("torch")
try:  # scgpt imports only with the project's torchtext stand-in on the path
    from czbenchmarks.models.scgpt import import_scgpt

    import_scgpt()
except ImportError as err:  # pragma: no cover - environment without scgpt
    pytest.skip(f"scgpt not importable: {err}", allow_module_level=True)

PERTURB_H5AD = ROOT / "assets" / "test" / "perturb_test.h5ad"
VARIANT_KEY = "scgenept_go_c_gpt_concat__adamson"
WEIGHTS = TEST_WEIGHTS / "scgenept" / VARIANT_KEY
SCRIPT = BIN / "scgenept_model.py"
CONFIG = ROOT / "containers" / "scgenept" / "config.yaml"
TEST_CONDITIONS = ["CTSS+ctrl", "GSTP1+SRP14", "GSTP1+ctrl"]

#: Every parameter of a scGenePT GO-C checkpoint with 2 transformer layers and a 3-layer
#: classification head, as derived from czi-ai/scGenePT@5847c57 (models/scGenePT.py: attributes
#: encoder, value_encoder, gopt_encoder_c, pert_encoder, ln, transformer_encoder, decoder,
#: cls_decoder; scgpt's GeneEncoder / ContinuousValueEncoder / ExprDecoder / ClsDecoder; torch's
#: TransformerEncoderLayer). The 12-layer public checkpoints repeat the layer block for 0..11.
GO_C_KEYS_2_LAYERS = [
    "encoder.embedding.weight", "encoder.enc_norm.weight", "encoder.enc_norm.bias",
    "value_encoder.linear1.weight", "value_encoder.linear1.bias",
    "value_encoder.linear2.weight", "value_encoder.linear2.bias",
    "value_encoder.norm.weight", "value_encoder.norm.bias",
    "gopt_encoder_c.embedding.weight", "gopt_encoder_c.fc.weight", "gopt_encoder_c.fc.bias",
    "gopt_encoder_c.enc_norm.weight", "gopt_encoder_c.enc_norm.bias",
    "pert_encoder.weight", "ln.weight", "ln.bias",
    *[f"transformer_encoder.layers.{i}.{name}" for i in (0, 1) for name in (
        "self_attn.in_proj_weight", "self_attn.in_proj_bias",
        "self_attn.out_proj.weight", "self_attn.out_proj.bias",
        "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
        "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias",
    )],
    "decoder.fc.0.weight", "decoder.fc.0.bias", "decoder.fc.2.weight", "decoder.fc.2.bias",
    "decoder.fc.4.weight", "decoder.fc.4.bias",
    "cls_decoder._decoder.0.weight", "cls_decoder._decoder.0.bias",
    "cls_decoder._decoder.2.weight", "cls_decoder._decoder.2.bias",
    "cls_decoder._decoder.3.weight", "cls_decoder._decoder.3.bias",
    "cls_decoder._decoder.5.weight", "cls_decoder._decoder.5.bias",
    "cls_decoder.out_layer.weight", "cls_decoder.out_layer.bias",
]

#: The text-encoder keys of each variant (the rest is shared).
TEXT_KEYS = {
    "scgenept_ncbi_gpt": ("genept_encoder", "proj_layer"),
    "scgenept_ncbi+uniprot_gpt": ("genept_encoder", "proj_layer"),
    "scgenept_go_f_gpt_concat": ("gopt_encoder_f", "fc"),
    "scgenept_go_p_gpt_concat": ("gopt_encoder_p", "fc"),
    "scgenept_go_c_gpt_concat": ("gopt_encoder_c", "fc"),
    "scgenept_go_all_gpt_concat": ("gopt_encoder_f", "fc"),  # scGenePT reuses the GO-F name
}


@pytest.fixture(scope="module")
def loaded():
    from czbenchmarks.models.scgenept import VARIANTS, load_scgenept

    return load_scgenept(WEIGHTS, VARIANTS["scgenept_go_c_gpt_concat"], device="cpu")


@pytest.fixture(scope="module")
def dataset():
    from czbenchmarks.datasets import PerturbationSingleCellDataset

    ds = PerturbationSingleCellDataset(str(PERTURB_H5AD), "homo_sapiens")
    ds.load_data()
    return ds


# -- checkpoint names and strict loading ---------------------------------------------------------------
def test_network_state_dict_keys_equal_the_documented_scgenept_names(loaded):
    from czbenchmarks.models.scgenept import VARIANTS, checkpoint_keys

    assert checkpoint_keys(VARIANTS["scgenept_go_c_gpt_concat"], 2, 3) == GO_C_KEYS_2_LAYERS
    assert list(loaded.network.state_dict().keys()) == GO_C_KEYS_2_LAYERS
    state = torch.load(WEIGHTS / "best_model.pt", map_location="cpu", weights_only=True)
    assert sorted(state) == sorted(GO_C_KEYS_2_LAYERS)
    assert state["gopt_encoder_c.embedding.weight"].dtype == torch.float64  # numpy-initialised table


@pytest.mark.parametrize("variant", sorted(TEXT_KEYS))
def test_every_variant_builds_with_its_text_encoder_names(variant, loaded):
    from czbenchmarks.models.scgenept import VARIANTS, checkpoint_keys
    from czbenchmarks.models.scgenept.network import Architecture, ScGenePTNetwork

    spec = VARIANTS[variant]
    net = ScGenePTNetwork(spec, Architecture(ntoken=10, d_model=8, nhead=2, d_hid=16, nlayers=1, text_dim=12))
    prefix, projection = TEXT_KEYS[variant]
    shared = [k for k in GO_C_KEYS_2_LAYERS if not k.startswith("gopt_encoder_c.") and ".layers.1." not in k]
    text = [f"{prefix}.embedding.weight"] + [f"{prefix}.{p}.{w}" for p in (projection, "enc_norm") for w in ("weight", "bias")]
    assert set(net.state_dict()) == set(shared + text) == set(checkpoint_keys(spec, 1, 3))


def test_tiny_checkpoint_loads_strictly_and_wrong_checkpoints_fail(loaded, tmp_path):
    from czbenchmarks.models.scgenept import VARIANTS, load_scgenept

    assert loaded.arch.nlayers == 2 and loaded.arch.d_model == 16 and loaded.arch.nhead == 2
    assert loaded.arch.text_dim == 24 and len(loaded.vocab) == 298
    state = torch.load(WEIGHTS / "best_model.pt", map_location="cpu", weights_only=True)
    copy = tmp_path / "w"
    for sub in ("pretrained/scgpt",):
        (copy / sub).mkdir(parents=True)
        (copy / sub / "vocab.json").write_text((WEIGHTS / sub / "vocab.json").read_text())
    (copy / "scgenept_args.json").write_text('{"nhead": 2}')
    # flash-attention names load after renaming, as scGenePT does
    flash = {k.replace("self_attn.in_proj_", "self_attn.Wqkv."): v for k, v in state.items()}
    torch.save(flash, copy / "best_model.pt")
    assert load_scgenept(copy, VARIANTS["scgenept_go_c_gpt_concat"]).arch.nlayers == 2
    # another variant's checkpoint is refused, naming what it holds
    with pytest.raises(ValueError, match="not a scGenePT scgenept_ncbi_gpt checkpoint"):
        load_scgenept(copy, VARIANTS["scgenept_ncbi_gpt"])
    # a missing parameter fails the strict load
    del flash["ln.bias"]
    torch.save(flash, copy / "best_model.pt")
    with pytest.raises(RuntimeError, match="ln.bias"):
        load_scgenept(copy, VARIANTS["scgenept_go_c_gpt_concat"])


# -- predictions -----------------------------------------------------------------------------------------
def _predict(loaded, dataset, seed, conditions=TEST_CONDITIONS, pool_size=20):
    from czbenchmarks.models.scgenept import predict_conditions

    ctrl = dataset.adata
    return predict_conditions(loaded, ctrl.X, ctrl.obs_names, ctrl.var["feature_name"].astype(str).tolist(),
                              conditions, seed=seed, pool_size=pool_size, batch_size=16)


def test_predictions_are_seeded_and_cover_the_requested_conditions(loaded, dataset):
    first, again, other = _predict(loaded, dataset, 0), _predict(loaded, dataset, 0), _predict(loaded, dataset, 1)
    assert first.rows.shape == (60, dataset.adata.n_vars) and first.rows.dtype == np.float32
    assert np.isfinite(first.rows).all()
    assert first.conditions == [c for c in TEST_CONDITIONS for _ in range(20)]
    np.testing.assert_array_equal(first.rows, again.rows)
    assert first.control_cells == again.control_cells
    assert first.control_cells != other.control_cells and not np.array_equal(first.rows, other.rows)
    # a condition's draw does not depend on the other conditions requested
    alone = _predict(loaded, dataset, 0, conditions=["GSTP1+ctrl"])
    np.testing.assert_array_equal(alone.rows, first.rows[40:])
    # the perturbation flag changes the prediction
    ctrl = _predict(loaded, dataset, 0, conditions=["ctrl"])
    assert not np.allclose(ctrl.rows, alone.rows)


def test_condition_selection_and_checks(dataset):
    from czbenchmarks.models.scgenept import check_conditions, parse_condition, requested_conditions

    obs = dataset.get_input(__import__("czbenchmarks.datasets", fromlist=["DataType"]).DataType.METADATA)
    assert requested_conditions("", obs, "condition", "split") == TEST_CONDITIONS
    assert requested_conditions("CTSS+ctrl, CALM1+ctrl", obs, "condition", "split") == ["CTSS+ctrl", "CALM1+ctrl"]
    assert parse_condition("A+ctrl") == ["A"] and parse_condition("A+B") == ["A", "B"] and parse_condition("ctrl") == []
    check = check_conditions(["CTSS+ctrl", "NOPE+ctrl", "CTSS+TINY", "ctrl"], ["CTSS", "TINY"], vocab={"CTSS"})
    # scGenePT's one rule: the perturbed gene is measured; a gene outside the vocabulary gets <pad>
    assert check.predictable == ["CTSS+ctrl", "CTSS+TINY", "ctrl"]
    assert list(check.skipped) == ["NOPE+ctrl"] and "not among the dataset's genes" in check.skipped["NOPE+ctrl"]
    assert check.pad_token == {"CTSS+TINY": ["TINY"]}


# -- variants and config ---------------------------------------------------------------------------------
def test_config_lists_twelve_variants_with_the_reference_uris():
    from omegaconf import OmegaConf

    from czbenchmarks.models.scgenept import parse_variant

    config = OmegaConf.to_container(OmegaConf.load(CONFIG), resolve=True)
    assert len(config["models"]) == 12 and config["default_variant"] == VARIANT_KEY
    entry = config["models"][VARIANT_KEY]
    assert entry["model_uri"] == "s3://czi-scgenept-public/models/finetuned/scgenept_go_c/adamson"
    assert entry["extra_uris"] == {
        "pretrained/scgpt": "s3://czi-scgenept-public/models/pretrained/scgpt/vocab.json",
        "gene_embeddings": "s3://czi-scgenept-public/models/gene_embeddings/GO_C_gene_embeddings-gpt3.5-ada-concat.pickle",
    }
    assert config["models"]["scgenept_ncbi+uniprot_gpt__norman"]["model_uri"].endswith("/scgenept_ncbi+uniprot/norman")
    assert parse_variant("scgenept_go_p_gpt_concat", "norman")[1] == "norman"
    with pytest.raises(ValueError, match="fine-tuning dataset"):
        parse_variant("scgenept_go_c_gpt_concat__dixit")


# -- validator -------------------------------------------------------------------------------------------
def _validate(h5ad: Path, organism: str = "homo_sapiens", mirror: Path = TEST_WEIGHTS):
    """VALIDATE, then (as the pipeline does after FETCH_WEIGHTS) CHECK_VOCABULARY on the weights folder."""
    from czbenchmarks.validation import check_vocabulary, validate_pair

    verdict = validate_pair(
        dataset_id="d", h5ad=h5ad, organism=organism, label_key="", batch_keys=[], model="scgenept",
        model_script=SCRIPT, model_class="ScGenePT", model_config=CONFIG, weights_mirror=str(mirror),
    )
    if verdict.verdict != "pass":
        return verdict
    assert verdict.vocabulary_check
    return check_vocabulary(dataset_id="d", h5ad=h5ad, organism=organism, model="scgenept", model_script=SCRIPT,
                            model_class="ScGenePT", model_config=CONFIG, variant=verdict.variant, weights_dir=WEIGHTS)


def test_validator_passes_the_test_dataset_and_names_its_weights():
    verdict = _validate(PERTURB_H5AD)
    assert verdict.verdict == "pass", verdict.reasons
    assert verdict.variant == VARIANT_KEY
    assert verdict.checks["vocabulary"].endswith("pretrained/scgpt/vocab.json")


def test_validator_rejects_mouse_unmeasured_perturbed_genes_and_plain_datasets(tmp_path):
    adata = ad.read_h5ad(PERTURB_H5AD)
    verdict = _validate(PERTURB_H5AD, organism="mus_musculus")
    assert verdict.verdict == "incompatible" and any("organism" in r for r in verdict.reasons)
    # a test condition whose gene the vocabulary lacks is predicted with <pad>: the pair passes
    vocab = json.loads((WEIGHTS / "pretrained" / "scgpt" / "vocab.json").read_text())
    missing = next(s for s in adata.var["feature_name"].astype(str) if s not in vocab)
    renamed = adata.obs["condition"].astype(str).replace({"CTSS+ctrl": f"{missing}+ctrl"})
    adata.obs["condition"] = renamed.astype("category")
    adata.write_h5ad(tmp_path / "unknown.h5ad")
    assert _validate(tmp_path / "unknown.h5ad").verdict == "pass"
    # one test condition perturbing an unmeasured gene: skipped at inference, the pair passes
    partly = adata.obs["condition"].astype(str).replace({"GSTP1+SRP14": "GSTP1+NOTMEASURED"})
    adata.obs["condition"] = partly.astype("category")
    adata.write_h5ad(tmp_path / "partly.h5ad")
    assert _validate(tmp_path / "partly.h5ad").verdict == "pass"
    # every test condition unmeasured: nothing to predict, incompatible
    test = adata.obs["split"].astype(str) == "test"
    none = adata.obs["condition"].astype(str).where(~test, "NOTMEASURED+ctrl")
    adata.obs["condition"] = none.astype("category")
    adata.write_h5ad(tmp_path / "none.h5ad")
    verdict = _validate(tmp_path / "none.h5ad")
    assert verdict.verdict == "incompatible"
    assert any("none of the 1 test conditions can be predicted: NOTMEASURED+ctrl: gene(s) NOTMEASURED not among "
               "the dataset's genes" in r for r in verdict.reasons), verdict.reasons
    # no condition column: not a perturbation dataset
    plain = ad.read_h5ad(PERTURB_H5AD)
    del plain.obs["condition"]
    plain.write_h5ad(tmp_path / "plain.h5ad")
    assert _validate(tmp_path / "plain.h5ad").verdict == "incompatible"


# -- pipeline mode ---------------------------------------------------------------------------------------
def test_pipeline_mode_writes_a_prediction_the_perturbation_task_scores(tmp_path):
    from czbenchmarks.tasks.perturbation import run_perturbation_task

    out = tmp_path / "perturb.scgenept.h5ad"
    cmd = [sys.executable, str(SCRIPT), "--input", str(PERTURB_H5AD), "--output", str(out), "--dataset_id", "perturb",
           "--organism", "homo_sapiens", "--weights_dir", str(WEIGHTS), "--model_variant", VARIANT_KEY,
           "--seed", "7", "--device", "cpu", "--pool_size", "30", "--num_threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pred = ad.read_h5ad(out)
    source = ad.read_h5ad(PERTURB_H5AD, backed="r")
    assert list(pred.var_names) == list(source.var_names)
    assert pred.shape == (90, 300) and sorted(set(pred.obs["condition"])) == TEST_CONDITIONS
    assert set(pred.obs["control_cell"]) <= set(source.obs_names[source.obs["condition"] == "ctrl"])
    prov = json.loads(pred.uns["czbenchmarks"]["json"])
    assert prov["model"] == "scgenept" and prov["model_type"] == "SCGENEPT" and prov["variant"] == VARIANT_KEY
    assert prov["seed"] == 7 and prov["run_info"]["sampling_seed"] == 7
    info = prov["run_info"]
    assert info["conditions"] == TEST_CONDITIONS and info["skipped_conditions"] == {}
    assert info["pad_token_conditions"] == {}
    assert info["pool_size"] == 30 and info["pool_size_requested"] == 30 and info["n_control_cells"] == 150
    assert info["perturbed_genes_with_text_embedding"] >= 1
    # the adamson checkpoint on a dataset named neither adamson nor norman: flagged
    assert info["variant_finetune_dataset"] == "adamson" and info["variant_selection"] == "explicit"
    assert info["dataset_label"] == "perturb" and info["variant_dataset_mismatch"] is True
    # the streamed file holds exactly what the in-memory prediction gives (same seed and draw)
    from czbenchmarks.models.scgenept import VARIANTS, load_scgenept, predict_conditions

    ctrl = source[source.obs["condition"] == "ctrl"].to_memory()
    expected = predict_conditions(load_scgenept(WEIGHTS, VARIANTS["scgenept_go_c_gpt_concat"]), ctrl.X,
                                  ctrl.obs_names, ctrl.var["feature_name"].astype(str).tolist(), TEST_CONDITIONS,
                                  seed=7, pool_size=30, batch_size=64)
    np.testing.assert_array_equal(pred.X, expected.rows)
    assert list(pred.obs["control_cell"].astype(str)) == expected.control_cells
    result = run_perturbation_task(PERTURB_H5AD, out)
    means = [m for m in result["metrics"] if m["params"]["condition"] == "MEAN"
             and not m["metric_type"].startswith("cell_eval_")]
    assert len(means) == 8 and all(np.isfinite(m["value"]) for m in means)
    # cell-eval scores the same predicted rows (tests/test_cell_eval.py checks its values)
    assert "error" not in result["cell_eval"], result["cell_eval"]
    assert result["missing_conditions"] == [] and result["variant_dataset_mismatch"] is True


# -- end to end ------------------------------------------------------------------------------------------
# -- GEARS' old symbols, missing conditions, streaming -----------------------------------------------------
REAL_VOCAB = Path("/work/shared/real-artifacts/scgpt/human/vocab.json")
#: GEARS adamson/norman symbols and the names scGPT's vocabulary has for them.
GEARS_SYMBOLS = {"DARS": "DARS1", "TARS": "TARS1", "C3orf72": None, "ELMSAN1": "MIDEAS", "RHOXF2BB": "RHOXF2B"}


def _load_script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _gears_style(path: Path) -> Path:
    """The test data with GEARS' symbols: CTSS is DARS and CALM1 is TARS (test DARS+ctrl, CTSS gone),
    and the double's second gene is one the dataset does not measure."""
    adata = ad.read_h5ad(PERTURB_H5AD)
    symbols = adata.var["feature_name"].astype(str).replace({"CTSS": "DARS", "CALM1": "TARS"})
    adata.var["feature_name"] = symbols.to_numpy()
    renamed = {"CTSS+ctrl": "DARS+ctrl", "GSTP1+SRP14": "GSTP1+NOTMEASURED"}
    adata.obs["condition"] = adata.obs["condition"].astype(str).replace(renamed).astype("category")
    adata.write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def real_vocab_mirror(tmp_path_factory):
    """A weights mirror whose tiny scGenePT checkpoint indexes scGPT's real 60,697-token vocabulary."""
    if not REAL_VOCAB.is_file():
        pytest.skip(f"real scGPT vocabulary not available ({REAL_VOCAB} missing; see /work/shared/real-artifacts)")
    mirror = tmp_path_factory.mktemp("mirror")
    _load_script("make_tiny_scgenept").build(mirror / "scgenept", PERTURB_H5AD, REAL_VOCAB)
    return mirror


def test_gears_symbols_are_outside_the_real_vocabulary_and_predicted_with_pad():
    from czbenchmarks.models.scgenept import check_conditions
    from czbenchmarks.models.scgenept.network import read_vocab

    if not REAL_VOCAB.is_file():
        pytest.skip(f"real scGPT vocabulary not available ({REAL_VOCAB} missing)")
    vocab = read_vocab(REAL_VOCAB)
    assert len(vocab) == 60697
    for old, new in GEARS_SYMBOLS.items():
        assert old not in vocab and (new is None or new in vocab), old
    conditions = ["DARS+ctrl", "C3orf72+ELMSAN1", "RHOXF2BB+ctrl", "CTSS+ctrl"]
    check = check_conditions(conditions, ["DARS", "C3orf72", "ELMSAN1", "RHOXF2BB", "CTSS"], vocab)
    assert check.predictable == conditions and check.skipped == {}
    assert check.pad_token == {"DARS+ctrl": ["DARS"], "C3orf72+ELMSAN1": ["C3orf72", "ELMSAN1"],
                               "RHOXF2BB+ctrl": ["RHOXF2BB"]}


def test_gears_style_dataset_is_predicted_and_scored_with_the_real_vocabulary(tmp_path, real_vocab_mirror):
    from czbenchmarks.tasks.perturbation import run_perturbation_task

    h5ad = _gears_style(tmp_path / "adamson_like.h5ad")
    weights = real_vocab_mirror / "scgenept" / VARIANT_KEY
    assert _validate(h5ad, mirror=real_vocab_mirror).verdict == "pass"
    out = tmp_path / "pred.h5ad"
    cmd = [sys.executable, str(SCRIPT), "--input", str(h5ad), "--output", str(out), "--dataset_id", "gears_adamson",
           "--organism", "homo_sapiens", "--weights_dir", str(weights), "--model_variant", VARIANT_KEY,
           "--seed", "3", "--device", "cpu", "--n_control_cells", "12", "--num_threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "DARS+ctrl: DARS not in the vocabulary, predicted with the <pad> token" in proc.stderr
    pred = ad.read_h5ad(out)
    assert pred.shape == (24, 300) and list(pred.obs["condition"].cat.categories) == ["DARS+ctrl", "GSTP1+ctrl"]
    assert np.isfinite(pred.X).all()
    info = json.loads(pred.uns["czbenchmarks"]["json"])["run_info"]
    assert info["vocab_size"] == 60697 and info["pad_token_conditions"] == {"DARS+ctrl": ["DARS"]}
    assert list(info["skipped_conditions"]) == ["GSTP1+NOTMEASURED"] and info["pool_size"] == 12
    # the adamson checkpoint on a dataset named adamson: no mismatch
    assert info["variant_finetune_dataset"] == "adamson" and info["variant_dataset_mismatch"] is False
    result = run_perturbation_task(h5ad, out)
    assert result["missing_conditions"] == ["GSTP1+NOTMEASURED"] and result["n_conditions_scored"] == 2
    assert result["pad_token_conditions"] == {"DARS+ctrl": ["DARS"]}
    scored = {m["params"]["condition"] for m in result["metrics"]}
    assert scored == {"MEAN", "DARS+ctrl", "GSTP1+ctrl"}
    mean = next(m for m in result["metrics"] if m["params"]["condition"] == "MEAN")
    assert "2 of 3 test conditions" in mean["note"]


def test_pad_token_prediction_still_sets_the_perturbation_flag(loaded, dataset):
    """A gene outside the vocabulary keeps its flag: from the same control cell, it differs from ctrl."""
    from czbenchmarks.models.scgenept import iter_predictions

    symbols = dataset.adata.var["feature_name"].astype(str).tolist()
    outside = next(s for s in symbols if s not in loaded.vocab)
    one_cell = dataset.adata.X[:1]  # every draw is this cell
    plain, flagged = (next(iter_predictions(loaded, one_cell, symbols, [c], seed=0, pool_size=2))
                      for c in ("ctrl", f"{outside}+ctrl"))
    np.testing.assert_array_equal(plain.drawn, flagged.drawn)
    assert not np.allclose(plain.rows, flagged.rows)


def test_prediction_writer_streams_conditions_and_never_leaves_a_partial_file(tmp_path):
    from czbenchmarks.models.scgenept import ConditionPrediction, PredictionWriter
    from czbenchmarks.tasks.perturbation import read_prediction

    genes, controls = ["g1", "g2", "g3"], ["c0", "c1", "c2", "c3"]
    rng = np.random.default_rng(0)
    parts = [ConditionPrediction(f"G{i}+ctrl", rng.integers(0, 4, 5), rng.normal(size=(5, 3)).astype(np.float32))
             for i in range(3)]
    out = tmp_path / "pred.h5ad"
    with PredictionWriter(out, genes, controls) as writer:
        for part in parts:
            writer.write(part)
        assert not out.exists() and writer.n_rows == 15
        writer.finish({"model": "x"})
    assert not list(tmp_path.glob(".*tmp*"))
    pred = ad.read_h5ad(out)
    assert list(pred.var_names) == genes and list(pred.obs_names[:2]) == ["pred_0", "pred_1"]
    np.testing.assert_array_equal(pred.X, np.concatenate([p.rows for p in parts]))
    assert list(pred.obs["control_cell"].astype(str)) == [controls[i] for p in parts for i in p.drawn]
    rows, var_names, provenance = read_prediction(out)
    assert list(rows) == [p.condition for p in parts] and provenance == {"model": "x"}
    np.testing.assert_array_equal(rows["G1+ctrl"], parts[1].rows)
    rows.close()
    # an error mid-way removes the temporary file; nothing at the final name
    failed = tmp_path / "failed.h5ad"
    with pytest.raises(ValueError, match="written twice"):
        with PredictionWriter(failed, genes, controls) as writer:
            writer.write(parts[0])
            writer.write(parts[0])
    assert not failed.exists() and not list(tmp_path.glob(".failed*"))


def test_fine_tune_dataset_match_and_auto_selection(tmp_path):
    from czbenchmarks.models.scgenept import finetune_match, named_finetune_dataset, resolve_variant

    assert named_finetune_dataset("gears_Norman_2019") == "norman"
    assert named_finetune_dataset("adamson") == "adamson"
    assert named_finetune_dataset("replogle_k562") is None and named_finetune_dataset("adamson+norman") is None
    assert finetune_match("adamson", "norman")["variant_dataset_mismatch"] is True
    assert finetune_match("norman", "norman")["variant_dataset_mismatch"] is False
    assert finetune_match("adamson", "dixit") == {"variant_finetune_dataset": "adamson", "dataset_label": "dixit",
                                                  "dataset_names_finetune_dataset": None,
                                                  "variant_dataset_mismatch": True}
    spec, dataset, auto = resolve_variant("scgenept_ncbi_gpt__auto", dataset_label="norman")
    assert (spec.name, dataset, auto) == ("scgenept_ncbi_gpt", "norman", True)
    assert resolve_variant("scgenept_ncbi_gpt", "auto", "dixit")[1:] == ("adamson", True)
    assert resolve_variant("scgenept_ncbi_gpt__norman", dataset_label="adamson")[1:] == ("norman", False)
    with pytest.raises(ValueError, match="fine-tuning dataset 'dixit'"):
        resolve_variant("scgenept_ncbi_gpt__dixit")
    # the model resolves auto from --dataset_id, else from the file name
    from czbenchmarks.datasets import PerturbationSingleCellDataset
    from czbenchmarks.validation import load_model_class

    model_cls = load_model_class(SCRIPT, "ScGenePT")
    by_file = PerturbationSingleCellDataset(str(tmp_path / "norman_gears.h5ad"), "homo_sapiens")
    model = model_cls(argv=["--model_variant", "scgenept_go_c_gpt_concat__auto"])
    assert model.get_model_weights_subdir(by_file) == "scgenept_go_c_gpt_concat__norman"
    model = model_cls(argv=["--model_variant", "scgenept_go_c_gpt_concat__auto", "--dataset_id", "adamson"])
    assert model.get_model_weights_subdir(by_file) == "scgenept_go_c_gpt_concat__adamson"
    model = model_cls(argv=["--model_variant", "scgenept_go_c_gpt_concat", "--dataset_name", "auto"])
    assert model.get_model_weights_subdir(by_file) == "scgenept_go_c_gpt_concat__norman"
