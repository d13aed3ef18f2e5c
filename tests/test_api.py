"""The seed's model API: names, import paths and behaviour kept from czbenchmarks, and its
known defects (reference section 11) fixed — each fix pinned by a test here."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Set

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from czbenchmarks.constants import get_base_name, get_numbered_path, numbered_sort_key, sort_numbered
from czbenchmarks.datasets import (
    BaseDataset,
    DataType,
    Organism,
    PerturbationSingleCellDataset,
    SingleCellDataset,
)
from czbenchmarks.datasets.base import BaseDataset as BaseDatasetAtPath
from czbenchmarks.datasets.single_cell import SingleCellDataset as SingleCellAtPath
from czbenchmarks.datasets.types import DataType as DataTypeAtPath
from czbenchmarks.datasets.types import Organism as OrganismAtPath
from czbenchmarks.models.implementations.base_model_implementation import BaseModelImplementation
from czbenchmarks.models.types import ModelType
from czbenchmarks.models.validators import BaseModelValidator, BaseSingleCellValidator
from czbenchmarks.models.validators.base_model_validator import BaseModelValidator as ValidatorAtPath
from czbenchmarks.models.validators.base_single_cell_model_validator import (
    BaseSingleCellValidator as SingleCellValidatorAtPath,
)
from czbenchmarks.utils import sync_s3_to_local

# -- helpers ---------------------------------------------------------------------------------


def small_adata(n_obs: int = 6, n_vars: int = 5, prefix: str = "ENSG", ensembl: bool = True) -> ad.AnnData:
    rng = np.random.default_rng(0)
    X = sp.csr_matrix(rng.poisson(2.0, size=(n_obs, n_vars)).astype(np.float32))
    var_names = [f"{prefix}{i:011d}" for i in range(n_vars)]
    var = pd.DataFrame({"feature_name": [f"GENE{i}" for i in range(n_vars)]}, index=var_names)
    if ensembl:
        var["ensembl_id"] = [f"ENSG{i:011d}" for i in range(n_vars)]
    obs = pd.DataFrame(
        {"cell_type": ["a", "b"] * (n_obs // 2) + ["a"] * (n_obs % 2)},
        index=[f"cell{i}" for i in range(n_obs)],
    )
    return ad.AnnData(X=X, obs=obs, var=var)


def write(adata: ad.AnnData, path: Path) -> Path:
    adata.write_h5ad(path)
    return path


class EmbedValidator(BaseSingleCellValidator):
    available_organisms = [Organism.HUMAN]
    required_obs_keys: List[str] = []
    required_var_keys: List[str] = []
    model_type = ModelType.SCVI

    @property
    def inputs(self) -> Set[DataType]:
        return {DataType.ANNDATA, DataType.METADATA}

    @property
    def outputs(self) -> Set[DataType]:
        return {DataType.EMBEDDING}


class EmbedModel(EmbedValidator, BaseModelImplementation):
    """Embeds each cell as (row sum, n_obs of its dataset): outputs reveal which input they came from."""

    downloads = 0

    def create_parser(self):
        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("--model_variant", default="v1")
        parser.add_argument("--gene_pert", default="CEBPB+ctrl")
        return parser

    def get_model_weights_subdir(self, dataset):
        return self.args.model_variant

    def _download_model_weights(self, dataset):
        type(self).downloads += 1
        Path(self.model_weights_dir, "weights.bin").write_bytes(b"w" * 16)

    def run_model(self, dataset):
        X = dataset.adata.X
        sums = np.asarray(X.sum(axis=1)).ravel()
        emb = np.stack([sums, np.full(len(sums), dataset.adata.n_obs)], axis=1).astype(np.float32)
        dataset.set_output(self.model_type, DataType.EMBEDDING, emb)


# -- import paths ----------------------------------------------------------------------------


def test_reference_import_paths_name_the_same_objects():
    assert BaseDataset is BaseDatasetAtPath and SingleCellDataset is SingleCellAtPath
    assert DataType is DataTypeAtPath and Organism is OrganismAtPath
    assert BaseModelValidator is ValidatorAtPath and BaseSingleCellValidator is SingleCellValidatorAtPath
    assert callable(sync_s3_to_local)
    import inspect

    assert list(inspect.signature(sync_s3_to_local).parameters)[:4] == ["bucket", "prefix", "local_dir", "unsigned"]
    for name in ("create_parser", "parse_args", "get_model_weights_subdir", "_download_model_weights",
                 "download_model_weights", "run_model", "run"):
        assert callable(getattr(BaseModelImplementation, name)), name


# -- Organism --------------------------------------------------------------------------------

ORGANISMS = {
    "HUMAN": ("homo_sapiens", "ENSG"),
    "MOUSE": ("mus_musculus", "ENSMUSG"),
    "TROPICAL_CLAWED_FROG": ("xenopus_tropicalis", "ENSXETG"),
    "AFRICAN_CLAWED_FROG": ("xenopus_laevis", "ENSXLAG"),
    "ZEBRAFISH": ("danio_rerio", "ENSDARG"),
    "MOUSE_LEMUR": ("microcebus_murinus", "ENSMICG"),
    "WILD_BOAR": ("sus_scrofa", "ENSSSCG"),
    "CRAB_EATING_MACAQUE": ("macaca_fascicularis", "ENSMFAG"),
    "RHESUS_MACAQUE": ("macaca_mulatta", "ENSMMUG"),
    "PLATYPUS": ("ornithorhynchus_anatinus", "ENSOANG"),
    "OPOSSUM": ("monodelphis_domestica", "ENSMODG"),
    "GORILLA": ("gorilla_gorilla", "ENSGGOG"),
    "CHIMPANZEE": ("pan_troglodytes", "ENSPTRG"),
    "MARMOSET": ("callithrix_jacchus", "ENSCJAG"),
    "CHICKEN": ("gallus_gallus", "ENSGALG"),
    "RABBIT": ("oryctolagus_cuniculus", "ENSOCUG"),
    "FRUIT_FLY": ("drosophila_melanogaster", "FBgn"),
    "RAT": ("rattus_norvegicus", "ENSRNOG"),
    "NAKED_MOLE_RAT": ("heterocephalus_glaber", "ENSHGLG"),
    "CAENORHABDITIS_ELEGANS": ("caenorhabditis_elegans", "WBGene"),
    "YEAST": ("saccharomyces_cerevisiae", ""),
    "MALARIA_PARASITE": ("plasmodium_falciparum", "PF3D7"),
    "SEA_LAMPREY": ("petromyzon_marinus", "ENSPMAG"),
    "FRESHWATER_SPONGE": ("spongilla_lacustris", "ENSLPGG"),
    "CORAL": ("stylophora_pistillata", "LOC"),
    "SEA_URCHIN": ("lytechinus_variegatus", ""),
}


def test_26_organisms_with_their_names_and_gene_prefixes():
    assert len(Organism) == 26
    assert {member._name_: (member.name, member.prefix) for member in Organism} == ORGANISMS


@pytest.mark.parametrize("member", list(ORGANISMS))
def test_organism_name_str_repr_and_lookup(member):
    organism = Organism[member]
    latin, prefix = ORGANISMS[member]
    assert organism.name == latin and str(organism) == latin and repr(organism) == latin
    assert organism.prefix == prefix
    assert Organism.from_name(latin) is organism and Organism.from_name(member) is organism
    assert Organism.from_name(member.lower()) is organism


def test_unknown_organism_is_a_value_error_listing_the_known_ones():
    with pytest.raises(ValueError, match=r"Unknown organism 'martian'\. Known organisms: homo_sapiens, mus_musculus"):
        Organism.from_name("martian")


# -- ModelType and DataType ------------------------------------------------------------------


def test_model_type_members_and_string_equality():
    names = ["BASELINE", "SCVI", "SCGPT", "GENEFORMER", "SCGENEPT", "UCE", "AIDO", "TRANSCRIPTFORMER"]
    assert [m.name for m in ModelType][: len(names)] == names
    assert ModelType.SCVI == "SCVI" and ModelType.SCVI != "UCE"
    assert str(ModelType.UCE) == "UCE" and repr(ModelType.UCE) == "ModelType.UCE"
    assert {ModelType.SCGPT: 1}["SCGPT"] == 1
    assert hash(ModelType.SCVI) == hash("SCVI")
    assert ModelType("SCVI") is ModelType.SCVI and ModelType("scvi") is ModelType.SCVI


def test_model_type_of_a_registry_model_needs_no_enum_edit():
    toy = ModelType("MY_TOY")
    assert toy is ModelType("my_toy") and toy == "MY_TOY" and str(toy) == "MY_TOY"
    import pickle

    assert pickle.loads(pickle.dumps(toy)) is toy
    with pytest.raises(ValueError):
        ModelType("not a name!")


def test_data_type_specs():
    assert [d.name for d in DataType] == [
        "METADATA", "ANNDATA", "ORGANISM", "EMBEDDING", "CONDITION_KEY", "SPLIT_KEY",
        "PERTURBATION_PRED", "PERTURBATION_TRUTH",
    ]
    assert {d.name for d in DataType if d.is_output} == {"EMBEDDING", "PERTURBATION_PRED"}
    assert DataType.EMBEDDING.spec.name == "embedding" and DataType.PERTURBATION_PRED.spec.name == "perturbation"
    assert DataType.ANNDATA.dtype is ad.AnnData and DataType.METADATA.dtype is pd.DataFrame
    assert DataType.EMBEDDING.dtype is np.ndarray and DataType.ORGANISM.dtype is Organism
    assert DataType.ANNDATA == "ANNDATA" and str(DataType.ANNDATA) == "ANNDATA" and repr(DataType.ANNDATA) == "ANNDATA"
    assert {DataType.EMBEDDING: 1}["EMBEDDING"] == 1
    assert DataType.METADATA.description == "Sample metadata"


# -- BaseDataset typed slots -----------------------------------------------------------------


def test_set_input_and_set_output_refuse_the_wrong_direction(tmp_path):
    dataset = SingleCellDataset(str(tmp_path / "x.h5ad"), Organism.HUMAN)
    with pytest.raises(ValueError, match="^Cannot set output type as input: EMBEDDING$"):
        dataset.set_input(DataType.EMBEDDING, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="^Cannot set input type as output: ANNDATA$"):
        dataset.set_output(ModelType.SCVI, DataType.ANNDATA, small_adata())


def test_typed_checks_raise_type_errors(tmp_path):
    dataset = SingleCellDataset(str(tmp_path / "x.h5ad"), "homo_sapiens")
    assert dataset.organism is Organism.HUMAN  # organism accepted by name
    with pytest.raises(TypeError, match="Input ANNDATA has incorrect type: expected .*AnnData.*, got <class 'str'>"):
        dataset.set_input(DataType.ANNDATA, "not anndata")
    with pytest.raises(TypeError, match="Output EMBEDDING has incorrect type"):
        dataset.set_output(ModelType.SCVI, DataType.EMBEDDING, [[1.0, 2.0]])
    with pytest.raises(TypeError, match="Dict key has incorrect type"):
        dataset.set_input(DataType.PERTURBATION_TRUTH, {1: pd.DataFrame()})
    with pytest.raises(TypeError, match="Dict value has incorrect type"):
        dataset.set_input(DataType.PERTURBATION_TRUTH, {"A+ctrl": np.zeros(2)})
    with pytest.raises(TypeError, match="Tuple item 1 of Output PERTURBATION_PRED"):
        dataset.set_output(ModelType.SCGENEPT, DataType.PERTURBATION_PRED, ("A+ctrl", np.zeros(2)))
    dataset.set_output(ModelType.SCGENEPT, DataType.PERTURBATION_PRED, ("A+ctrl", pd.DataFrame()))
    with pytest.raises(TypeError, match="Input ORGANISM has incorrect type"):
        dataset.set_input(DataType.ORGANISM, "homo_sapiens")


def test_get_input_and_get_output_key_errors(tmp_path):
    dataset = SingleCellDataset(str(tmp_path / "x.h5ad"), Organism.HUMAN)
    with pytest.raises(KeyError, match="Input ANNDATA not found"):
        dataset.get_input(DataType.ANNDATA)
    with pytest.raises(KeyError, match="Outputs for model SCVI not found"):
        dataset.get_output(ModelType.SCVI, DataType.EMBEDDING)
    dataset.set_output(ModelType.SCVI, DataType.EMBEDDING, np.zeros((2, 3)))
    with pytest.raises(KeyError, match="Output PERTURBATION_PRED not found for model SCVI"):
        dataset.get_output(ModelType.SCVI, DataType.PERTURBATION_PRED)
    assert dataset.get_output("SCVI", DataType.EMBEDDING).shape == (2, 3)
    assert dataset.outputs[ModelType.SCVI][DataType.EMBEDDING].shape == (2, 3)
    assert dataset.inputs[DataType.ORGANISM] is Organism.HUMAN


def test_validate_requires_an_existing_path(tmp_path):
    dataset = SingleCellDataset(str(tmp_path / "missing.h5ad"), Organism.HUMAN)
    with pytest.raises(ValueError, match="Dataset path does not exist"):
        dataset.validate()


def test_serialize_round_trip(tmp_path):
    dataset = SingleCellDataset(str(tmp_path / "x.h5ad"), Organism.MOUSE)
    dataset.set_output(ModelType.UCE, DataType.EMBEDDING, np.ones((2, 2)))
    path = dataset.serialize(str(tmp_path / "saved"))
    assert path.endswith(".dill")
    loaded = BaseDataset.deserialize(str(tmp_path / "saved"))
    assert loaded.organism is Organism.MOUSE
    assert loaded.get_output(ModelType.UCE, DataType.EMBEDDING).sum() == 4
    with pytest.raises(FileNotFoundError, match="Dataset file not found at"):
        BaseDataset.deserialize(str(tmp_path / "nope"))


# -- SingleCellDataset -----------------------------------------------------------------------


def test_single_cell_load_validate_and_unload(tmp_path):
    dataset = SingleCellDataset(str(write(small_adata(), tmp_path / "a.h5ad")), Organism.HUMAN)
    dataset.load_data()
    dataset.validate()
    assert dataset.adata.n_obs == 6 and DataType.METADATA in dataset.inputs
    dataset.unload_data()
    assert DataType.ANNDATA not in dataset.inputs and dataset.organism is Organism.HUMAN


def test_backed_load_reads_metadata_and_leaves_x_on_disk(tmp_path):
    adata = small_adata()
    adata.layers["counts"] = adata.X.copy()
    dataset = SingleCellDataset(str(write(adata, tmp_path / "a.h5ad")), Organism.HUMAN)
    dataset.load_data(backed=True)
    assert dataset.adata.isbacked and len(dataset.adata.layers) == 0
    assert list(dataset.adata.obs.columns) == ["cell_type"]
    dataset.validate()
    dataset.unload_data()


def test_gene_id_fallback_does_not_mutate_var_names(tmp_path):
    """Defect 5: the reference rewrote adata.var_names to var['ensembl_id'] while validating."""
    adata = small_adata(prefix="SYM")
    dataset = SingleCellDataset(str(write(adata, tmp_path / "a.h5ad")), Organism.HUMAN)
    dataset.load_data()
    before = list(dataset.adata.var_names)
    dataset.validate()
    assert list(dataset.adata.var_names) == before and before[0].startswith("SYM")
    assert list(dataset.gene_ids) == list(dataset.adata.var["ensembl_id"])


def test_gene_names_without_prefix_anywhere_fail_with_the_reference_message(tmp_path):
    dataset = SingleCellDataset(str(write(small_adata(prefix="SYM", ensembl=False), tmp_path / "a.h5ad")), Organism.HUMAN)
    dataset.load_data()
    with pytest.raises(ValueError, match=r"Gene names must start with ENSG and be stored in either adata.var_names "
                                         r"or adata.var\['ensembl_id'\]"):
        dataset.validate()


def test_non_raw_counts_only_warn(tmp_path, caplog):
    adata = small_adata()
    adata.X = adata.X * 0.5
    dataset = SingleCellDataset(str(write(adata, tmp_path / "a.h5ad")), Organism.HUMAN)
    dataset.load_data()
    dataset.validate()
    assert "does not contain raw counts" in caplog.text


# -- PerturbationSingleCellDataset -----------------------------------------------------------


def perturbation_adata(conditions, splits) -> ad.AnnData:
    adata = small_adata(n_obs=len(conditions))
    adata.obs["condition"] = conditions
    adata.obs["split"] = splits
    return adata


def test_perturbation_dataset_keeps_controls_and_test_truth(tmp_path):
    conditions = ["ctrl", "ctrl", "A+ctrl", "A+ctrl", "A+B", "C+ctrl"]
    splits = ["train", "train", "test", "test", "val", "train"]
    path = write(perturbation_adata(conditions, splits), tmp_path / "p.h5ad")
    dataset = PerturbationSingleCellDataset(str(path), Organism.HUMAN)
    assert dataset.condition_key == "condition" and dataset.split_key == "split"
    dataset.load_data()
    dataset.validate()
    assert dataset.adata.n_obs == 2
    assert set(dataset.perturbation_truth) == {"A+ctrl"}
    assert dataset.perturbation_truth["A+ctrl"].shape == (2, 5)
    assert len(dataset.get_input(DataType.METADATA)) == 6
    dataset.unload_data()
    assert DataType.PERTURBATION_TRUTH not in dataset.inputs


@pytest.mark.parametrize(
    "conditions, splits, message",
    [
        (["ctrl", "A+ctrl", "A_B", "ctrl"], ["train", "test", "train", "val"],
         r"Invalid perturbation condition format: 'A_B'\. Must be 'ctrl', '\{gene\}\+ctrl', or '\{gene1\}\+\{gene2\}'"),
        (["ctrl", "A+ctrl", "A+B+C", "ctrl"], ["train", "test", "train", "val"], r"format: 'A\+B\+C'"),
        (["ctrl", "A+ctrl", "A+ctrl", "ctrl"], ["train", "test", "holdout", "val"], r"Invalid split value\(s\): \['holdout'\]"),
    ],
)
def test_perturbation_validation_errors(tmp_path, conditions, splits, message):
    path = write(perturbation_adata(conditions, splits), tmp_path / "p.h5ad")
    dataset = PerturbationSingleCellDataset(str(path), Organism.HUMAN)
    dataset.load_data()
    with pytest.raises(ValueError, match=message):
        dataset.validate()


def test_perturbation_missing_condition_key(tmp_path):
    path = write(small_adata(), tmp_path / "p.h5ad")
    dataset = PerturbationSingleCellDataset(str(path), Organism.HUMAN, condition_key="perturbation")
    with pytest.raises(ValueError, match="Condition key perturbation not found in adata.obs"):
        dataset.load_data()


# -- validators ------------------------------------------------------------------------------


def loaded(adata: ad.AnnData, tmp_path: Path, organism=Organism.HUMAN, cls=SingleCellDataset) -> BaseDataset:
    dataset = cls(str(write(adata, tmp_path / "d.h5ad")), organism)
    dataset.load_data()
    return dataset


def test_unsupported_organism_message_is_interpolated(tmp_path):
    """Defect 4: the reference printed a literal '{self.__class__.__name__}'."""
    dataset = loaded(small_adata(prefix="ENSMUSG"), tmp_path, Organism.MOUSE)
    with pytest.raises(ValueError) as err:
        EmbedModel(argv=[]).validate_dataset(dataset)
    assert str(err.value).startswith("Dataset organism mus_musculus is not supported for EmbedModel")
    assert "{" not in str(err.value)


def test_validator_accepts_a_subclass_of_its_dataset_type(tmp_path):
    """Defect 4: the reference required the exact class, rejecting a perturbation dataset."""
    adata = perturbation_adata(["ctrl", "ctrl", "A+ctrl", "A+ctrl", "ctrl", "ctrl"], ["train"] * 6)
    dataset = loaded(adata, tmp_path, cls=PerturbationSingleCellDataset)
    EmbedModel(argv=[]).validate_dataset(dataset)  # no error


def test_validator_rejects_an_unrelated_dataset_type(tmp_path):
    class OtherDataset(BaseDataset):
        def load_data(self): ...
        def unload_data(self): ...
        def _validate(self): ...

    with pytest.raises(ValueError, match="^Dataset type mismatch. Expected SingleCellDataset, got OtherDataset$"):
        EmbedModel(argv=[]).validate_dataset(OtherDataset("x", Organism.HUMAN))


def test_validator_lists_missing_obs_and_var_keys_and_gene_prefix(tmp_path):
    class Strict(EmbedValidator):
        required_obs_keys = ["donor_id", "cell_type"]
        required_var_keys = ["feature_id"]

    dataset = loaded(small_adata(prefix="SYM", ensembl=False), tmp_path)
    reasons = Strict().incompatibility_reasons(dataset)
    assert reasons[0] == "Missing required obs keys: ['donor_id']"
    assert reasons[1] == "Missing required var keys: ['feature_id']"
    assert reasons[2].startswith("Dataset does not contain valid gene names. Gene names must start with ENSG")
    assert "5 of 5 var_names lack 'ENSG', e.g. 'SYM00000000000'" in reasons[2]
    with pytest.raises(ValueError, match="Missing required obs keys: \\['donor_id'\\]; Missing required var keys"):
        Strict().validate_dataset(dataset)


def test_missing_required_inputs(tmp_path):
    dataset = SingleCellDataset(str(tmp_path / "x.h5ad"), Organism.HUMAN)
    with pytest.raises(ValueError, match="Missing required inputs: \\['ANNDATA', 'METADATA'\\]"):
        EmbedModel(argv=[]).validate_dataset(dataset)


def test_custom_validate_dataset_override_is_honoured(tmp_path):
    class Picky(EmbedValidator):
        def _validate_dataset(self, dataset):
            super()._validate_dataset(dataset)
            if "batch" not in dataset.adata.obs:
                raise ValueError("needs a batch column")

    assert Picky().incompatibility_reasons(loaded(small_adata(), tmp_path)) == ["needs a batch column"]


@pytest.mark.parametrize("attr", ["available_organisms", "required_obs_keys", "required_var_keys"])
def test_single_cell_validator_requires_its_class_variables(attr):
    body = {"available_organisms": [Organism.HUMAN], "required_obs_keys": [], "required_var_keys": []}
    del body[attr]
    with pytest.raises(TypeError, match=f"Can't instantiate Broken without {attr} class variable"):
        type("Broken", (BaseSingleCellValidator,), body)


def test_validator_requires_dataset_type():
    with pytest.raises(TypeError, match="Can't instantiate NoType without dataset_type class variable"):
        type("NoType", (BaseModelValidator,), {})


def test_vocabulary_overlap_hook(tmp_path):
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps({f"ENSG{i:011d}": i for i in range(2)}))

    class Vocab(EmbedValidator):
        vocabulary_file = str(vocab)
        min_vocabulary_overlap = 0.5

    dataset = loaded(small_adata(), tmp_path)
    (reason,) = Vocab().vocabulary_reasons(dataset)
    assert reason == "only 2 of 5 genes (gene IDs) are in the model's vocabulary (2 genes); at least 50% of its 5 genes needed"
    Vocab.min_vocabulary_overlap = 2
    assert Vocab().vocabulary_reasons(dataset) == []

    class Symbols(EmbedValidator):
        vocabulary_file = "genes.txt"
        vocabulary_var_key = "feature_name"
        min_vocabulary_overlap = 3

    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "genes.txt").write_text("GENE0\nGENE1\n")
    validator = Symbols()
    assert validator.vocabulary_reasons(dataset) == []  # vocabulary not available: not checked
    validator.model_weights_dir = str(folder)
    assert "only 2 of 5 genes (var['feature_name'])" in validator.vocabulary_reasons(dataset)[0]


# -- BaseModelImplementation -----------------------------------------------------------------


def test_keyword_arguments_override_the_command_line():
    model = EmbedModel(argv=["--model_variant", "cli", "--gene_pert", "A+ctrl", "--unknown", "x"], model_variant="kw")
    assert model.args.model_variant == "kw" and model.args.gene_pert == "A+ctrl"
    assert model.args.seed == 42 and model.args.device == "auto"
    assert EmbedModel(argv=[]).args.model_variant == "v1"  # the model's default fills the shared option


def test_parse_args_override_written_as_the_guide_shows(monkeypatch):
    """The guide's parse_args() takes no argument and parses sys.argv strictly."""

    class GuideModel(EmbedModel):
        def parse_args(self):
            parser = argparse.ArgumentParser()
            parser.add_argument("--model_variant", type=str, default="default_variant")
            return parser.parse_args()

    pipeline_argv = ["--input", "a.h5ad", "--output", "o.h5ad", "--dataset_id", "d", "--organism", "homo_sapiens",
                     "--weights_dir", "w", "--model_variant", "big", "--seed", "7", "--device", "cpu"]
    model = GuideModel(argv=pipeline_argv)
    assert model.args.model_variant == "big" and model.args.input == "a.h5ad" and model.args.seed == 7
    # An empty variant (the registry's default) leaves the model's own default.
    assert GuideModel(argv=["--model_variant", ""]).args.model_variant == "default_variant"
    monkeypatch.setattr(sys, "argv", ["toy.py", "--model_variant", "fromsys", "--seed", "3"])
    assert GuideModel().args.model_variant == "fromsys"

    class NoVariants(EmbedModel):
        def parse_args(self):
            parser = argparse.ArgumentParser()
            parser.add_argument("--batch_size", type=int, default=4)
            return parser.parse_args()

    model = NoVariants(argv=["--model_variant", "x", "--batch_size", "8"])
    assert model.args.batch_size == 8


def test_weights_routed_per_variant_and_reused_only_when_verified(tmp_path, monkeypatch):
    """Defect 8: the reference reused any non-empty weights folder without a check."""
    import czbenchmarks.models.implementations.base_model_implementation as bmi

    monkeypatch.setattr(bmi, "MODEL_WEIGHTS_CACHE_PATH", tmp_path / "cache")
    EmbedModel.downloads = 0
    dataset = SingleCellDataset(str(tmp_path / "x.h5ad"), Organism.HUMAN)
    model = EmbedModel(argv=["--model_variant", "v2"])
    model.download_model_weights(dataset)
    assert Path(model.model_weights_dir) == tmp_path / "cache" / "v2" and EmbedModel.downloads == 1
    assert (tmp_path / "cache" / "v2" / "czb_manifest.json").is_file()
    EmbedModel(argv=["--model_variant", "v2"]).download_model_weights(dataset)
    assert EmbedModel.downloads == 1  # verified: reused
    (tmp_path / "cache" / "v2" / "weights.bin").write_bytes(b"corrupt!" * 2)  # same size, other bytes
    EmbedModel(argv=["--model_variant", "v2"]).download_model_weights(dataset)
    assert EmbedModel.downloads == 2  # checksum mismatch: fetched again
    stale = tmp_path / "cache" / "v3"
    stale.mkdir()
    (stale / "weights.bin").write_bytes(b"old")  # non-empty but no manifest
    EmbedModel(argv=["--model_variant", "v3"]).download_model_weights(dataset)
    assert EmbedModel.downloads == 3


def test_pipeline_weights_dir_is_verified(tmp_path):
    from czbenchmarks.weights import build_manifest, write_manifest

    folder = tmp_path / "w"
    folder.mkdir()
    (folder / "model.pt").write_bytes(b"abc")
    write_manifest(folder, build_manifest(folder, "test"))
    model = EmbedModel(argv=["--weights_dir", str(folder)])
    model.download_model_weights(None)
    assert model.model_weights_dir == str(folder)
    (folder / "model.pt").write_bytes(b"abd")
    with pytest.raises(ValueError, match="failed verification: sha256 mismatch for model.pt"):
        EmbedModel(argv=["--weights_dir", str(folder)]).download_model_weights(None)


def test_run_interactive_returns_datasets_with_outputs(tmp_path, monkeypatch):
    import czbenchmarks.models.implementations.base_model_implementation as bmi

    monkeypatch.setattr(bmi, "MODEL_WEIGHTS_CACHE_PATH", tmp_path / "cache")
    dataset = SingleCellDataset(str(write(small_adata(), tmp_path / "a.h5ad")), Organism.HUMAN)
    dataset.load_data()
    out = EmbedModel(argv=[]).run(dataset)
    assert out is dataset and dataset.get_output(ModelType.SCVI, DataType.EMBEDDING).shape == (6, 2)
    both = EmbedModel(argv=[]).run([dataset, dataset])
    assert isinstance(both, list) and len(both) == 2


def test_run_with_many_inputs_keeps_numeric_order(tmp_path):
    """Defect 3: the reference sorted data*.dill as text (data_10 before data_2) and mismatched outputs."""
    from czbenchmarks.weights import build_manifest, write_manifest

    folder = tmp_path / "inputs"
    folder.mkdir()
    names = ["data.h5ad"] + [f"data_{i}.h5ad" for i in range(1, 12)]
    for index, name in enumerate(names):
        write(small_adata(n_obs=index + 2), folder / name)
    weights = tmp_path / "w"
    weights.mkdir()
    (weights / "x.bin").write_bytes(b"1")
    write_manifest(weights, build_manifest(weights, "t"))
    model = EmbedModel(argv=["--input", str(folder), "--output", str(tmp_path / "out" / "emb.h5ad"),
                             "--organism", "homo_sapiens", "--weights_dir", str(weights)])
    assert [Path(p).name for p in model.input_paths()] == names
    model.run()
    for index in range(len(names)):
        out = ad.read_h5ad(tmp_path / "out" / f"emb_{index}.h5ad")
        assert out.n_obs == index + 2  # output i belongs to input i
        assert out.obsm["X_emb"][0, 1] == index + 2


def test_numbered_paths_helpers():
    assert get_numbered_path("/input/data.dill", 3) == "/input/data_3.dill"
    assert get_base_name("/input/data.dill") == "data*.dill"
    paths = [f"/in/data_{i}.dill" for i in (10, 2, 1, 11)] + ["/in/data.dill"]
    assert sort_numbered(paths) == ["/in/data.dill", "/in/data_1.dill", "/in/data_2.dill", "/in/data_10.dill",
                                    "/in/data_11.dill"]
    assert sorted(paths) != sort_numbered(paths)  # the reference's text order is wrong
    assert numbered_sort_key("a_2.h5ad") < numbered_sort_key("a_10.h5ad")


def test_a_validator_without_inputs_outputs_gets_the_defaults(monkeypatch):
    """czbenchmarks' developer guide declares neither property; here they default (and stay overridable)."""
    from czbenchmarks.models.validators import BaseSingleCellValidator

    monkeypatch.setenv("CZB_MODEL_TYPE", "GUIDED")

    class GuideValidator(BaseSingleCellValidator):
        available_organisms = [Organism.HUMAN]
        required_obs_keys = []
        required_var_keys = ["feature_name"]
        model_type = ModelType.GUIDED

    validator = GuideValidator()
    assert validator.inputs == {DataType.ANNDATA, DataType.METADATA}
    assert validator.outputs == {DataType.EMBEDDING}
    assert GuideValidator.model_type == ModelType("GUIDED") and str(GuideValidator.model_type) == "GUIDED"
    monkeypatch.delenv("CZB_MODEL_TYPE")
    with pytest.raises(AttributeError, match="declare it as `model_type: UNDECLARED` in the model's entry"):
        ModelType.UNDECLARED  # noqa: B018 - the attribute access is what is tested


def test_a_gpu_run_records_the_cuda_allocators_peak(tmp_path, monkeypatch):
    """run() puts torch.cuda.max_memory_allocated into run_info (the report's cost table reads it) and resets
    it per dataset; on a CPU-only run nothing is recorded."""
    import sys
    import types

    import czbenchmarks.models.implementations.base_model_implementation as bmi

    monkeypatch.setattr(bmi, "MODEL_WEIGHTS_CACHE_PATH", tmp_path / "cache")
    dataset = SingleCellDataset(str(write(small_adata(), tmp_path / "a.h5ad")), Organism.HUMAN)
    dataset.load_data()
    peaks, resets = iter([123, 456]), []
    cuda = types.SimpleNamespace(is_available=lambda: True, is_initialized=lambda: True,
                                 max_memory_allocated=lambda: next(peaks), reset_peak_memory_stats=lambda: resets.append(1))
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    model = EmbedModel(argv=[])
    model.run([dataset, dataset])
    assert model.run_info["gpu_peak_memory"] == 456 and len(resets) == 2
    cuda.is_initialized = lambda: False  # CUDA never used by the model: nothing recorded
    cpu_model = EmbedModel(argv=[])
    cpu_model.run(dataset)
    assert "gpu_peak_memory" not in (getattr(cpu_model, "run_info", None) or {})
