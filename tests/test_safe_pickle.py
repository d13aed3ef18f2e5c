"""Restricted unpickling of the pickles that ship with model weights, and explicit ``weights_only`` loads.

A pickle from a weights mirror must not be able to run code: every call site that reads one
(Geneformer's dictionaries, UCE's species offsets, scGenePT's gene-embedding table, the validator's
vocabulary reader) goes through :func:`czbenchmarks.safe_pickle.load_pickle`.
"""

from __future__ import annotations

import ast
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import BIN, ROOT, TEST_WEIGHTS
from czbenchmarks.safe_pickle import UnsafePickleError, load_pickle

REAL_DICTIONARIES = Path(os.environ.get("CZB_REAL_ARTIFACTS", "/work/shared/real-artifacts")) / "geneformer" / "gene_dictionaries"


class RunsACommand:
    """Unpickling this runs ``touch <marker>`` through os.system (what a tampered file could do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class EvalsCode:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


def write_malicious(path: Path, marker: Path, protocol: int = 4) -> Path:
    payload = {"<pad>": 0, "ENSG00000000003": RunsACommand(marker)}
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_a_pickle_that_runs_a_command_is_refused_and_nothing_runs(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = write_malicious(tmp_path / "token_dictionary.pkl", marker, protocol)
    with pytest.raises(UnsafePickleError) as err:
        load_pickle(path)
    assert str(path) in str(err.value) and "system" in str(err.value)
    assert not marker.exists()
    # the same file, unpickled without restriction, does run the command: the test payload is real
    pickle.loads(path.read_bytes())
    assert marker.exists()


def test_eval_and_other_callables_are_refused(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(EvalsCode()))
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        load_pickle(path)
    path.write_bytes(pickle.dumps({"f": np.load}))
    with pytest.raises(UnsafePickleError, match="numpy"):
        load_pickle(path)


def test_plain_data_and_numpy_values_round_trip(tmp_path):
    data = {
        "ints": [1, 2, 3], "floats": (1.5, float("inf")), "set": {1, 2}, "frozen": frozenset({"a"}),
        "bytes": b"\x00\x01", "none": None, "bool": True, "complex": 1 + 2j,
        "np_float": np.float64(0.25), "np_int": np.int64(7), "np_f32": np.float32(1.5),
        "vector": np.arange(5, dtype=np.float32), "matrix": np.eye(3), "strings": np.array(["a", "bc"]),
    }
    for protocol in (2, 4, 5):
        path = tmp_path / f"data{protocol}.pkl"
        path.write_bytes(pickle.dumps(data, protocol=protocol))
        loaded = load_pickle(path)
        assert loaded.keys() == data.keys()
        for key, value in data.items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(loaded[key], value)
                assert loaded[key].dtype == value.dtype
            else:
                assert loaded[key] == value and type(loaded[key]) is type(value), key


def test_a_broken_file_is_a_clear_error(tmp_path):
    path = tmp_path / "truncated.pkl"
    path.write_bytes(pickle.dumps({"a": list(range(100))})[:20])
    with pytest.raises(ValueError, match="truncated.pkl: not a readable data pickle"):
        load_pickle(path)


# -- the real files ----------------------------------------------------------------------------------
def test_all_eight_real_geneformer_dictionaries_load():
    files = sorted(REAL_DICTIONARIES.glob("*.pkl")) if REAL_DICTIONARIES.is_dir() else []
    if len(files) != 8:
        pytest.skip(f"real Geneformer dictionaries unavailable (expected 8 .pkl in {REAL_DICTIONARIES})")
    for path in files:
        restricted = load_pickle(path)
        with open(path, "rb") as handle:
            reference = pickle.load(handle)  # trusted copy of the upstream file
        assert isinstance(restricted, dict) and len(restricted) > 20_000, path.name
        assert restricted == reference, path.name
    medians = load_pickle(REAL_DICTIONARIES / "gene_median_dictionary_gc95M.pkl")
    assert isinstance(next(iter(medians.values())), np.floating)  # numpy scalars, as upstream pickled them


def test_every_test_asset_pickle_loads():
    files = [p for p in TEST_WEIGHTS.rglob("*") if p.suffix in (".pkl", ".pickle")]
    assert len(files) >= 7  # Geneformer dictionaries of two variants, UCE offsets, scGenePT table
    for path in files:
        with open(path, "rb") as handle:
            assert load_pickle(path) == pickle.load(handle), path


# -- every call site uses it -------------------------------------------------------------------------
def test_geneformer_dictionaries_refuse_code(tmp_path):
    from czbenchmarks.models.geneformer import GeneDictionaries

    marker = tmp_path / "pwned"
    source = TEST_WEIGHTS / "geneformer" / "Geneformer-V2-316M" / "gene_dictionaries"
    bad = write_malicious(tmp_path / "token_dictionary_gc95M.pkl", marker)
    with pytest.raises(UnsafePickleError, match="token_dictionary_gc95M.pkl"):
        GeneDictionaries.load(bad, source / "gene_median_dictionary_gc95M.pkl")
    assert not marker.exists()


def test_validator_vocabulary_refuses_code(tmp_path):
    import gzip

    from czbenchmarks.models.validators.base_single_cell_model_validator import read_vocabulary

    marker = tmp_path / "pwned"
    bad = write_malicious(tmp_path / "vocab.pkl", marker)
    with pytest.raises(UnsafePickleError):
        read_vocabulary(bad)
    compressed = tmp_path / "vocab.pkl.gz"
    compressed.write_bytes(gzip.compress(bad.read_bytes()))
    with pytest.raises(UnsafePickleError):
        read_vocabulary(compressed)
    assert not marker.exists()
    good = tmp_path / "good.pkl.gz"
    good.write_bytes(gzip.compress(pickle.dumps({"ENSG1": 1, "ENSG2": 2})))
    assert read_vocabulary(good) == {"ENSG1", "ENSG2"}


def test_uce_species_offsets_refuse_code(tmp_path):
    pytest.importorskip("uce")
    from czbenchmarks.models.uce import plan_genes

    weights = tmp_path / "uce"
    shutil.copytree(TEST_WEIGHTS / "uce" / "4l", weights)
    marker = tmp_path / "pwned"
    write_malicious(weights / "model_files" / "species_offsets.pkl", marker)
    with pytest.raises(UnsafePickleError, match="species_offsets.pkl"):
        plan_genes(["CD3E"], "human", weights / "model_files")
    assert not marker.exists()


def test_scgenept_gene_embeddings_refuse_code(tmp_path):
    pytest.importorskip("torch")
    from czbenchmarks.models.scgenept import VARIANTS
    from czbenchmarks.validation import load_model_class

    model = load_model_class(BIN / "scgenept_model.py", "ScGenePT")(argv=[])
    spec = VARIANTS["scgenept_go_c_gpt_concat"]
    good = TEST_WEIGHTS / "scgenept" / "scgenept_go_c_gpt_concat__adamson"
    model.model_weights_dir = str(good)
    with open(good / "gene_embeddings" / spec.embedding_file, "rb") as handle:
        genes = list(pickle.load(handle))[:3]
    assert model._embedding_coverage(genes + ["NOT_A_GENE"], spec)["perturbed_genes_with_text_embedding"] == 3
    marker = tmp_path / "pwned"
    (tmp_path / "gene_embeddings").mkdir()
    write_malicious(tmp_path / "gene_embeddings" / spec.embedding_file, marker)
    model.model_weights_dir = str(tmp_path)
    with pytest.raises(UnsafePickleError, match=spec.embedding_file.replace("+", r"\+").replace(".", r"\.")):
        model._embedding_coverage(genes, spec)
    assert not marker.exists()


def test_no_unrestricted_pickle_load_and_every_torch_load_says_weights_only():
    """Source scan of src/, bin/ and scripts/: torch.load always states weights_only=True, and
    pickle.load / pickle.loads appear nowhere but the dataset cache (the project's own files)."""
    offenders = []
    for folder in ("src", "bin", "scripts"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                owner = node.func.value.id if isinstance(node.func.value, ast.Name) else None
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                if owner == "torch" and node.func.attr == "load":
                    flag = next((k.value for k in node.keywords if k.arg == "weights_only"), None)
                    if not (isinstance(flag, ast.Constant) and flag.value is True):
                        offenders.append(f"{where} torch.load without weights_only=True")
                if owner in ("pickle", "dill", "pickler") and node.func.attr in ("load", "loads"):
                    if path.name != "base.py" or path.parent.name != "datasets":
                        offenders.append(f"{where} {owner}.{node.func.attr}")
    assert not offenders, offenders
