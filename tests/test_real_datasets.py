"""Real-world dataset layouts at the gate and in the models' input loading: counts outside X
(layers['counts'], raw.X), per-model raw-count and gene-identifier policies, symbol var_names,
scVI batch roles, and weights hashed once (at fetch, not at every inference)."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from conftest import BIN, ROOT, TEST_H5AD, TEST_WEIGHTS
from czbenchmarks.datasets.h5ad import open_backed
from czbenchmarks.datasets.inputs import (
    counts_matrix,
    find_counts_in_adata,
    find_gene_symbols,
    parse_counts_location,
)
from czbenchmarks.validation import ERROR, INCOMPATIBLE, PASS, check_vocabulary, validate_pair

REAL_GENEFORMER = ROOT.parent / "shared" / "real-artifacts" / "geneformer" / "gene_dictionaries"
if not REAL_GENEFORMER.is_dir():
    REAL_GENEFORMER = Path("/work/shared/real-artifacts/geneformer/gene_dictionaries")

SPECS = {
    "scvi": (BIN / "scvi_model.py", "SCVI", ROOT / "containers" / "scvi" / "config.yaml", "", True),
    "baseline": (BIN / "baseline_pca.py", "PcaBaseline", ROOT / "containers" / "baseline" / "config.yaml", "pca", False),
    "scgpt": (BIN / "scgpt_model.py", "ScGPT", ROOT / "containers" / "scgpt" / "config.yaml", "human", True),
    "uce": (BIN / "uce_model.py", "UCE", ROOT / "containers" / "uce" / "config.yaml", "4l", True),
    "geneformer": (BIN / "geneformer_model.py", "Geneformer", ROOT / "containers" / "geneformer" / "config.yaml",
                   "gf-6L-30M-i2048", True),
}


def check(h5ad: Path, model: str, **kwargs):
    script, cls, config, variant, weights = SPECS[model]
    return validate_pair(dataset_id="ds1", h5ad=Path(h5ad), organism="homo_sapiens", label_key="cell_type",
                         batch_keys=[], model=model, model_script=script, model_class=cls, model_config=config,
                         requested_variant=variant, needs_weights=weights, weights_mirror=str(TEST_WEIGHTS),
                         **kwargs)


@pytest.fixture(scope="module")
def pbmc() -> ad.AnnData:
    return ad.read_h5ad(TEST_H5AD)


def lognormalised(counts) -> sp.csr_matrix:
    """log1p(normalize_total(counts, 1e4)), as scanpy writes it into X."""
    counts = sp.csr_matrix(counts, dtype=np.float64)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    scaled = sp.diags(1e4 / np.where(totals > 0, totals, 1)) @ counts
    scaled = sp.csr_matrix(scaled, dtype=np.float64)
    scaled.sort_indices()
    scaled.data = np.log1p(scaled.data)
    return sp.csr_matrix(scaled, dtype=np.float32)


@pytest.fixture(scope="module")
def layered(pbmc, tmp_path_factory) -> Path:
    """Counts only in layers['counts']; X log-normalised (the CELLxGENE/scanpy layout)."""
    adata = pbmc.copy()
    adata.layers["counts"] = adata.X.copy()
    adata.X = lognormalised(adata.X)
    path = tmp_path_factory.mktemp("layered") / "layered.h5ad"
    adata.write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def in_raw(pbmc, tmp_path_factory) -> Path:
    adata = pbmc.copy()
    adata.raw = adata.copy()
    adata.X = lognormalised(adata.X)
    path = tmp_path_factory.mktemp("raw") / "raw.h5ad"
    adata.write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def normalised_only(pbmc, tmp_path_factory) -> Path:
    adata = pbmc.copy()
    adata.X = lognormalised(adata.X)
    path = tmp_path_factory.mktemp("norm") / "normalised.h5ad"
    adata.write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def symbols_only(pbmc, tmp_path_factory) -> Path:
    """A 10x/Seurat-style export: symbols as var_names, no feature_name, no Ensembl IDs."""
    adata = pbmc.copy()
    adata.var_names = list(adata.var["feature_name"].astype(str))
    adata.var_names_make_unique()
    adata.var = adata.var.drop(columns=["feature_name", "ensembl_id"])
    path = tmp_path_factory.mktemp("symbols") / "symbols.h5ad"
    adata.write_h5ad(path)
    return path


# -- counts location ---------------------------------------------------------------------------
def test_parse_counts_location():
    assert parse_counts_location("") == ""
    assert parse_counts_location("X") == "X"
    assert parse_counts_location("raw.X") == parse_counts_location("raw") == "raw.X"
    assert parse_counts_location("counts") == parse_counts_location("layers['counts']") == "layers/counts"


def test_counts_in_a_layer_are_found_and_scvi_passes(layered):
    verdict = check(layered, "scvi")
    assert verdict.verdict == PASS, verdict.to_json()
    assert verdict.inputs["counts_layer"] == "counts"
    assert verdict.checks["counts_location"] == "layers['counts']"
    assert verdict.checks["counts_looked_at"]["X"].startswith("non-integer")
    assert any("counts read from layers['counts'], detected" in note for note in verdict.notes), verdict.notes


def test_counts_in_raw_x_are_found(in_raw):
    verdict = check(in_raw, "scvi")
    assert verdict.verdict == PASS, verdict.to_json()
    assert verdict.inputs["counts_layer"] == "raw.X"
    assert verdict.checks["counts_looked_at"]["layers['counts']"] == "absent"


def test_raw_with_other_genes_than_var_is_not_taken(pbmc, tmp_path):
    adata = pbmc.copy()
    adata.raw = adata.copy()
    adata = adata[:, :500].copy()  # var subset, raw keeps all 700 genes (a common HVG-subset export)
    adata.X = lognormalised(adata.X)
    path = tmp_path / "raw_more_genes.h5ad"
    adata.write_h5ad(path)
    scvi = check(path, "scvi")
    assert scvi.verdict == INCOMPATIBLE, scvi.to_json()
    assert "raw.X has 700 genes but var has 500" in scvi.checks["counts_looked_at"]["raw.X"]


def test_a_named_counts_layer_wins_and_a_missing_one_is_an_error(layered):
    # Named X (normalised): the user's word is taken, and scVI then cannot run.
    named_x = check(layered, "scvi", counts_layer="X")
    assert named_x.verdict == INCOMPATIBLE and "the model needs raw counts" in named_x.reasons[0]
    missing = check(layered, "baseline", counts_layer="spliced")
    assert missing.verdict == ERROR
    assert "counts_layer 'spliced'" in missing.reasons[0] and "no layer 'spliced'" in missing.reasons[0]


def test_no_counts_anywhere_per_model_policy(normalised_only):
    scvi = check(normalised_only, "scvi")
    assert scvi.verdict == INCOMPATIBLE
    assert "negative binomial" in scvi.reasons[0] and "no integer-valued matrix was found" in scvi.reasons[0]
    assert "layers['counts']: absent" in scvi.reasons[0] and "counts_layer" in scvi.reasons[0]
    for model, why in (("scgpt", "own quantiles"), ("uce", "upstream UCE only warns"),
                       ("geneformer", "upstream Geneformer only warns"), ("baseline", "PCA normalises")):
        verdict = check(normalised_only, model)
        assert verdict.verdict == PASS, (model, verdict.to_json())
        assert any("not raw counts" in n and why in n for n in verdict.notes), (model, verdict.notes)


def test_counts_matrix_reads_the_layer_lazily_from_a_backed_file(layered, pbmc):
    backed = open_backed(layered)
    try:
        finding = find_counts_in_adata(backed)
        assert finding.location == "layers/counts" and finding.is_counts
        matrix = counts_matrix(backed, finding.location)
        assert not sp.issparse(matrix) and hasattr(matrix, "group")  # anndata's on-disk CSR dataset
        np.testing.assert_array_equal(matrix[10:20].toarray(), pbmc.X[10:20].toarray())
    finally:
        backed.file.close()
    memory = ad.read_h5ad(layered)
    assert (counts_matrix(memory, "counts") != pbmc.X).nnz == 0


def test_the_baseline_reads_counts_where_validate_found_them(layered, pbmc, tmp_path):
    """PCA of the layered file (counts in the layer, as VALIDATE passes them) equals PCA of the original."""
    from czbenchmarks.outputs import read_embedding
    from czbenchmarks.validation import load_model_class

    cls = load_model_class(BIN / "baseline_pca.py", "PcaBaseline")
    embeddings = {}
    for name, path, extra in (("original", TEST_H5AD, []), ("layered", layered, ["--counts_layer", "counts"])):
        out = tmp_path / f"{name}.h5ad"
        cls(argv=["--input", str(path), "--output", str(out), "--organism", "homo_sapiens", "--n_pcs", "10",
                  "--n_top_genes", "300", *extra]).run()
        _, embeddings[name], provenance = read_embedding(out)
    np.testing.assert_allclose(np.abs(embeddings["layered"]), np.abs(embeddings["original"]), atol=1e-4)
    assert provenance["run_info"]["counts_location"] == "layers/counts"


# -- scGPT's binning claim -----------------------------------------------------------------------
def test_scgpt_bins_of_counts_equal_bins_of_log_normalised_counts(pbmc):
    """The reason scGPT takes normalised input: per cell, bins of counts == bins of log1p(normalize(counts))."""
    from czbenchmarks.models.scgpt import cell_seed, import_scgpt
    from czbenchmarks.models.scgpt.inference import tokenize_cell

    import_scgpt()
    counts = sp.csr_matrix(pbmc.X[:60])
    normalised = lognormalised(counts)
    assert not np.allclose(counts.data, normalised.data)  # the inputs really differ
    compared = 0
    for row in range(counts.shape[0]):
        a, b = counts[row], normalised[row]
        assert np.array_equal(a.indices, b.indices)
        genes = np.arange(len(a.indices))
        _, bins_a, _ = tokenize_cell(genes, a.data, cls_id=-1, pad_value=-2.0, max_length=10_000,
                                     seed=cell_seed(0, row))
        _, bins_b, _ = tokenize_cell(genes, b.data, cls_id=-1, pad_value=-2.0, max_length=10_000,
                                     seed=cell_seed(0, row))
        assert np.array_equal(bins_a.numpy(), bins_b.numpy()), row
        compared += int(len(a.data) > 1)
    assert compared > 50


# -- gene identifiers ----------------------------------------------------------------------------
def test_symbol_var_names_are_recognised_and_ensembl_ones_are_not(pbmc):
    symbols = find_gene_symbols(pbmc.var_names.__class__(pbmc.var["feature_name"].astype(str)),
                                pbmc.var.drop(columns=["feature_name"]), "ENSG")
    assert symbols.source == "var_names (symbols)" and symbols.symbols[0] == "HES4"
    assert find_gene_symbols(pbmc.var_names, pbmc.var.drop(columns=["feature_name"]), "ENSG").symbols is None
    assert find_gene_symbols(pbmc.var_names, pbmc.var, "ENSG").source == "var['feature_name']"


def test_symbol_only_dataset_per_model_policy(symbols_only):
    scvi = check(symbols_only, "scvi")
    assert scvi.verdict == INCOMPATIBLE and "keyed by Ensembl gene ID" in scvi.reasons[0], scvi.to_json()
    for model, genes in (("baseline", None), ("scgpt", "gene symbols from var_names (symbols)"),
                         ("uce", "gene symbols from var_names (symbols)"),
                         ("geneformer", "gene symbols from var_names (symbols), mapped to Ensembl IDs")):
        verdict = check(symbols_only, model)
        assert verdict.verdict == PASS, (model, verdict.to_json())
        if genes:
            assert verdict.inputs["gene_names"].startswith(genes), (model, verdict.inputs)
    assert check(symbols_only, "geneformer").vocabulary_check  # the mapping is counted on the fetched weights


def test_vocabulary_checks_map_symbols(symbols_only):
    geneformer = check_vocabulary(
        dataset_id="ds1", h5ad=symbols_only, organism="homo_sapiens", model="geneformer",
        model_script=SPECS["geneformer"][0], model_class="Geneformer", model_config=SPECS["geneformer"][2],
        variant="gf-6L-30M-i2048", weights_dir=TEST_WEIGHTS / "geneformer" / "gf-6L-30M-i2048")
    assert geneformer.verdict == PASS, geneformer.to_json()
    genes = geneformer.checks["genes"]
    assert genes["gene_id_source"] == "var_names (symbols)"
    assert genes["n_mapped_via_dictionary"] == genes["n_genes_in_vocabulary"] > 600
    assert "mapped to Ensembl IDs" in geneformer.notes[0]
    scgpt = check_vocabulary(
        dataset_id="ds1", h5ad=symbols_only, organism="homo_sapiens", model="scgpt",
        model_script=SPECS["scgpt"][0], model_class="ScGPT", model_config=SPECS["scgpt"][2],
        variant="human", weights_dir=TEST_WEIGHTS / "scgpt" / "human")
    assert scgpt.verdict == PASS, scgpt.to_json()


@pytest.mark.skipif(not REAL_GENEFORMER.is_dir(), reason="real Geneformer dictionaries (shared/real-artifacts) absent")
def test_real_geneformer_mapping_turns_the_test_symbols_into_their_ensembl_ids(pbmc):
    """Through the real gc95M mapping dictionary the test data's symbols land on its own Ensembl IDs."""
    from czbenchmarks.models.geneformer import GeneDictionaries
    from czbenchmarks.models.geneformer.tokenizer import plan_genes

    real = GeneDictionaries.load(REAL_GENEFORMER / "token_dictionary_gc95M.pkl",
                                 REAL_GENEFORMER / "gene_median_dictionary_gc95M.pkl",
                                 REAL_GENEFORMER / "ensembl_mapping_dict_gc95M.pkl")
    symbols = list(pbmc.var["feature_name"].astype(str))
    plan = plan_genes(symbols, None, real)
    by_ids = plan_genes(list(pbmc.var_names), None, real)
    assert plan.source == "var_names (symbols)" and plan.n_mapped_via_dictionary == plan.n_known_genes
    assert plan.n_known_genes >= 0.9 * by_ids.n_known_genes
    ids_of = {g: int(t) for g, t in zip(np.asarray(by_ids.columns), by_ids.tokens[by_ids.slots])}
    agree = sum(ids_of.get(int(c)) == int(t) for c, t in zip(plan.columns, plan.tokens[plan.slots]))
    assert agree >= 0.9 * len(plan.columns)


@pytest.mark.skipif(not REAL_GENEFORMER.is_dir(), reason="real Geneformer dictionaries (shared/real-artifacts) absent")
def test_v1_symbols_map_through_the_name_dictionary_beside_the_mapping(pbmc, tmp_path):
    """The gc30M ensembl_mapping_dict maps IDs only: symbols need gene_name_id_dict, fetched beside it."""
    import shutil

    from czbenchmarks.validation import load_model_class

    folder = tmp_path / "gene_dictionaries"
    folder.mkdir()
    for name in ("token_dictionary", "gene_median_dictionary", "ensembl_mapping_dict"):
        shutil.copy(REAL_GENEFORMER / f"{name}_gc30M.pkl", folder)
    settings = {"token_dictionary": "gene_dictionaries/token_dictionary_gc30M.pkl",
                "gene_median_dictionary": "gene_dictionaries/gene_median_dictionary_gc30M.pkl",
                "gene_mapping_dictionary": "gene_dictionaries/ensembl_mapping_dict_gc30M.pkl"}
    cls = load_model_class(BIN / "geneformer_model.py", "Geneformer")
    from czbenchmarks.models.geneformer.tokenizer import plan_genes

    symbols = list(pbmc.var["feature_name"].astype(str))
    without = plan_genes(symbols, None, cls.load_dictionaries(tmp_path, settings))
    shutil.copy(REAL_GENEFORMER / "gene_name_id_dict_gc30M.pkl", folder)
    with_names = plan_genes(symbols, None, cls.load_dictionaries(tmp_path, settings))
    assert without.n_known_genes == 0
    assert with_names.n_known_genes >= 0.9 * plan_genes(list(pbmc.var_names), None,
                                                         cls.load_dictionaries(tmp_path, settings)).n_known_genes


# -- scVI batch roles ------------------------------------------------------------------------------
def test_scvi_batch_roles_from_columns_and_constants(pbmc, tmp_path):
    from czbenchmarks.validation import load_model_class

    adata = pbmc.copy()
    adata.obs = adata.obs.rename(columns={"dataset_id": "sample", "donor_id": "donor"}).drop(
        columns=["assay", "suspension_type"])
    path = tmp_path / "plain.h5ad"
    adata.write_h5ad(path)
    plain = check(path, "scvi")
    assert plain.verdict == INCOMPATIBLE and "scvi_batch_columns" in plain.reasons[0], plain.to_json()
    roles = "dataset_id=sample;assay==10x 3' v3;suspension_type==cell;donor_id=donor"
    mapped = check(path, "scvi", scvi_batch_columns=roles)
    assert mapped.verdict == PASS, mapped.to_json()
    assert any("assay: constant \"10x 3' v3\"" in n and "dataset_id: obs['sample']" in n for n in mapped.notes)
    wrong = check(path, "scvi", scvi_batch_columns="donor_id=nobody")
    assert wrong.verdict == INCOMPATIBLE and "donor_id (obs['nobody'])" in wrong.reasons[0]
    bad = check(path, "scvi", scvi_batch_columns="tissue=organ")
    assert bad.verdict == INCOMPATIBLE and "is not role=column or role==value" in bad.reasons[0]

    # Inference with the roles: the batch is built from them and unseen batches are counted.
    cls = load_model_class(BIN / "scvi_model.py", "SCVI")
    out = tmp_path / "scvi.h5ad"
    cls(argv=["--input", str(path), "--output", str(out), "--organism", "homo_sapiens",
              "--weights_dir", str(TEST_WEIGHTS / "scvi" / "homo_sapiens"), "--scvi_batch_columns", roles,
              "--device", "cpu"]).run()
    from czbenchmarks.outputs import read_embedding

    _, embedding, provenance = read_embedding(out)
    assert embedding.shape[0] == adata.n_obs and np.isfinite(embedding).all()
    info = provenance["run_info"]
    assert info["batch_roles"].startswith("dataset_id: obs['sample']")
    assert info["n_query_batches"] == adata.obs["donor"].nunique()
    assert info["n_query_batches_unseen"] == info["n_query_batches"]  # the query's donors are not the reference's
    assert info["encode_covariates"] is False  # the tiny reference has the Census models' setting


# -- weights hashed once ------------------------------------------------------------------------------
def test_inference_trusts_the_fetch_manifest_and_does_not_rehash(tmp_path, monkeypatch):
    import czbenchmarks.weights as W
    from czbenchmarks.validation import load_model_class

    dest = tmp_path / "weights" / "homo_sapiens"
    W.fetch_weights([(str(TEST_WEIGHTS / "scvi" / "homo_sapiens"), "")], dest)
    manifest = json.loads((dest / W.WEIGHTS_MANIFEST).read_text())
    assert all("mtime_ns" in entry for entry in manifest["files"])

    calls = []
    real = W.sha256_file
    monkeypatch.setattr(W, "sha256_file", lambda path: calls.append(Path(path).name) or real(path))
    cls = load_model_class(BIN / "scvi_model.py", "SCVI")
    model = cls(argv=["--weights_dir", str(dest), "--organism", "homo_sapiens"])
    model.download_model_weights(None)
    assert calls == []  # size and mtime matched: no content re-read for hashing
    assert model.weights_verification["rehashed"] == []

    # A file whose mtime changed (a copy that did not keep it) is hashed again, and still verifies.
    (dest / "model.pt").touch()
    model = cls(argv=["--weights_dir", str(dest), "--organism", "homo_sapiens"])
    model.download_model_weights(None)
    assert calls == ["model.pt"] and model.weights_verification["rehashed"] == ["model.pt"]
    # Same size, other content, new mtime: caught.
    data = bytearray((dest / "model.pt").read_bytes())
    data[-1] ^= 0xFF
    (dest / "model.pt").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256 mismatch for model.pt"):
        cls(argv=["--weights_dir", str(dest), "--organism", "homo_sapiens"]).download_model_weights(None)
