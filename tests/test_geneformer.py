"""Geneformer: the project's tokenizer against Geneformer's own, embedding extraction, the bin script.

The oracle is helical 2.2.0's copy of Geneformer's ``TranscriptomeTokenizer`` (a test-only dependency,
``requirements/no-deps.txt``), loaded from its file so that helical's heavy package imports are
skipped. The real V1 gene dictionaries come from the scfoundry 0.2.1 wheel.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import subprocess
import sys
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from conftest import BIN, ROOT, TEST_H5AD, TEST_WEIGHTS
from czbenchmarks.models.geneformer import (
    GeneDictionaries,
    RankValueTokenizer,
    embed_token_batches,
    load_encoder,
    pool,
    strip_version,
)
from czbenchmarks.validation import INCOMPATIBLE, PASS, load_model_class, validate_pair

SCRIPT = BIN / "geneformer_model.py"
CONFIG = ROOT / "containers" / "geneformer" / "config.yaml"
GF_WEIGHTS = TEST_WEIGHTS / "geneformer"
V2, V1 = "Geneformer-V2-316M", "gf-6L-30M-i2048"
SUFFIX = {V2: "gc95M", V1: "gc30M"}
SPECIAL = {V2: True, V1: False}
INPUT_SIZE = {V2: 4096, V1: 2048}
REAL_DICTIONARIES = Path(os.environ.get("CZB_REAL_ARTIFACTS", "/work/shared/real-artifacts")) / "geneformer" / "gene_dictionaries"


def dictionary_files(variant: str) -> dict:
    folder = GF_WEIGHTS / variant / "gene_dictionaries"
    suffix = SUFFIX[variant]
    return {
        "token": folder / f"token_dictionary_{suffix}.pkl",
        "median": folder / f"gene_median_dictionary_{suffix}.pkl",
        "mapping": folder / f"ensembl_mapping_dict_{suffix}.pkl",
    }


def tiny_dictionaries(variant: str) -> GeneDictionaries:
    files = dictionary_files(variant)
    return GeneDictionaries.load(files["token"], files["median"], files["mapping"])


# -- the oracle ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def oracle():
    """helical's geneformer_tokenizer module, imported from its file (not via ``import helical``)."""
    spec = importlib.util.find_spec("helical")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("oracle unavailable: helical is not installed (pip install --no-deps helical==2.2.0)")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "geneformer" / "geneformer_tokenizer.py"
    module_spec = importlib.util.spec_from_file_location("geneformer_tokenizer_oracle", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except ImportError as err:  # e.g. `datasets` missing
        pytest.skip(f"oracle unavailable: helical's tokenizer does not import ({err})")
    return module


def oracle_tokens(oracle, adata, size: int, special: bool, token_file, median_file, mapping_file=None):
    tokenizer = oracle.TranscriptomeTokenizer(
        model_input_size=size,
        special_token=special,
        gene_median_file=median_file,
        token_dictionary_file=token_file,
        gene_mapping_file=mapping_file,
    )
    cells, metadata = tokenizer.tokenize_anndata(adata.copy())
    dataset = tokenizer.create_dataset(cells, metadata)
    return [np.asarray(ids, dtype=np.int64) for ids in dataset["input_ids"]]


@pytest.fixture(scope="module")
def pbmc():
    return ad.read_h5ad(TEST_H5AD)


def assert_same_tokens(expected, actual):
    assert len(expected) == len(actual)
    differing = [i for i, (e, a) in enumerate(zip(expected, actual)) if not np.array_equal(e, a)]
    assert not differing, f"{len(differing)} cells differ, first {differing[0]}: {expected[differing[0]][:12]} vs {actual[differing[0]][:12]}"


@pytest.mark.parametrize("variant", [V2, V1])
@pytest.mark.parametrize("size", ["full", 64])
def test_tokens_match_geneformer_tokenizer_with_tiny_dictionaries(oracle, pbmc, variant, size):
    size = INPUT_SIZE[variant] if size == "full" else size
    files = dictionary_files(variant)
    expected = oracle_tokens(oracle, pbmc, size, SPECIAL[variant], files["token"], files["median"], files["mapping"])
    backed = ad.read_h5ad(TEST_H5AD, backed="r")
    # 97 does not divide 700: batches of every size, read from disk
    mine = RankValueTokenizer(tiny_dictionaries(variant), size, SPECIAL[variant], batch_size=97).tokenize(backed)
    assert_same_tokens(expected, mine)
    if SPECIAL[variant]:
        tokens = tiny_dictionaries(variant).token
        assert all(t[0] == tokens["<cls>"] and t[-1] == tokens["<eos>"] for t in mine)
    assert max(len(t) for t in mine) == min(size, max(len(t) for t in expected))


@pytest.fixture(scope="module")
def real_v1_dictionaries():
    spec = importlib.util.find_spec("scfoundry")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("real dictionaries unavailable: scfoundry is not installed (pip install --no-deps scfoundry==0.2.1)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "pipeline" / "bin" / "langcell" / "geneformer_001" / "geneformer"
    files = {
        "token": folder / "token_dictionary.pkl",
        "median": folder / "gene_median_dictionary.pkl",
        "symbols": folder / "gene_name_id_dict.pkl",
    }
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        pytest.skip(f"real dictionaries unavailable: {missing}")
    return files


@pytest.mark.parametrize("size", [2048, 100])
def test_tokens_match_geneformer_tokenizer_with_real_v1_dictionaries(oracle, pbmc, real_v1_dictionaries, size):
    files = real_v1_dictionaries
    expected = oracle_tokens(oracle, pbmc, size, False, files["token"], files["median"], None)
    dictionaries = GeneDictionaries.load(files["token"], files["median"], files["symbols"])
    assert len(dictionaries.token) == 25426  # the real vocabulary, not a stand-in
    mine = RankValueTokenizer(dictionaries, size, special_token=False, batch_size=256).tokenize(pbmc)
    assert_same_tokens(expected, mine)
    assert np.median([len(t) for t in mine]) > 50  # real cells, real ranks


def test_symbols_only_and_versioned_ids_resolve_to_the_same_tokens(pbmc):
    # The tiny mapping dictionary holds this data's own symbol -> Ensembl pairs (as upstream's
    # ensembl_mapping_dict holds symbols and IDs), so the symbol route must land on the same genes.
    tokenizer = RankValueTokenizer(tiny_dictionaries(V2), 4096)
    reference = tokenizer.tokenize(pbmc)
    symbols = ad.AnnData(pbmc.X, obs=pbmc.obs, var=pd.DataFrame(index=pbmc.var["feature_name"].astype(str).values))
    plan = tokenizer.plan(symbols)
    assert plan.source == "var_names (symbols)" and plan.n_known_genes == 680
    assert_same_tokens(reference, tokenizer.tokenize(symbols))
    with_symbol_column = ad.AnnData(pbmc.X, obs=pbmc.obs, var=pbmc.var[["feature_name"]].set_axis([f"g{i}" for i in range(pbmc.n_vars)]))
    assert tokenizer.plan(with_symbol_column).source == "var['feature_name'] (symbols)"
    assert_same_tokens(reference, tokenizer.tokenize(with_symbol_column))

    versioned = pbmc.copy()
    versioned.var["ensembl_id"] = [f"{g}.{i % 9 + 1}" for i, g in enumerate(pbmc.var["ensembl_id"])]
    assert_same_tokens(reference, tokenizer.tokenize(versioned))
    assert strip_version("ENSG00000141510.17") == "ENSG00000141510" and strip_version("RP11-34P13.7") == "RP11-34P13.7"


def test_real_symbol_table_resolves_most_pbmc_symbols(pbmc, real_v1_dictionaries):
    files = real_v1_dictionaries
    tokenizer = RankValueTokenizer(GeneDictionaries.load(files["token"], files["median"], files["symbols"]), 2048, False)
    symbols = ad.AnnData(pbmc.X, obs=pbmc.obs, var=pd.DataFrame(index=pbmc.var["feature_name"].astype(str).values))
    by_symbol, by_id = tokenizer.plan(symbols), tokenizer.plan(pbmc)
    assert by_symbol.n_mapped_via_dictionary == by_symbol.n_known_genes
    assert by_symbol.n_known_genes >= 0.9 * by_id.n_known_genes, (by_symbol.summary(), by_id.summary())


def test_ties_are_broken_by_dataset_column_order():
    # Upstream's np.argsort leaves the order of equal values to the sort implementation (it can
    # differ between CPUs); ours is stable. Equal counts and equal medians make an exact tie.
    genes = [f"ENSG{i:011d}" for i in range(40)]
    dictionaries = GeneDictionaries(
        token={"<pad>": 0, "<mask>": 1, **{g: i + 2 for i, g in enumerate(genes)}},
        median={g: 1.0 for g in genes},
    )
    rng = np.random.default_rng(3)
    columns = [genes[i] for i in rng.permutation(40)]  # dataset order differs from token order
    high = np.sort(rng.choice(40, 5, replace=False))
    x = np.ones((1, 40), dtype=np.float32)
    x[0, high] = 2  # five genes above the rest; two groups of exact ties
    cells = ad.AnnData(sp.csr_matrix(x), var=pd.DataFrame(index=columns))
    (tokens,) = RankValueTokenizer(dictionaries, 2048, special_token=False).tokenize(cells)
    low = [c for c in range(40) if c not in set(high)]
    assert tokens.tolist() == [dictionaries.token[columns[c]] for c in [*high, *low]]


def test_tied_flag_marks_cells_whose_emitted_window_depends_on_a_tie_break():
    genes = [f"ENSG{i:011d}" for i in range(6)]
    dictionaries = GeneDictionaries(token={"<pad>": 0, **{g: i + 1 for i, g in enumerate(genes)}},
                                    median={g: 1.0 for g in genes})
    x = np.array([
        [6, 5, 4, 3, 2, 1],  # all distinct
        [6, 5, 4, 3, 1, 1],  # a tie, but only after the 4-gene window: same tokens whatever the order
        [6, 5, 4, 3, 3, 1],  # a tie straddling the cut: which gene is kept is a tie-break
        [6, 6, 4, 3, 2, 1],  # a tie inside the window
    ], dtype=np.float32)
    cells = ad.AnnData(sp.csr_matrix(x), var=pd.DataFrame(index=genes))
    (batch,) = list(RankValueTokenizer(dictionaries, 4, special_token=False).iter_batches(cells))
    assert batch.tied.tolist() == [False, False, True, True]
    assert not batch.filtered.any()


def test_duplicate_gene_columns_are_summed(pbmc):
    dictionaries = tiny_dictionaries(V1)
    tokenizer = RankValueTokenizer(dictionaries, 2048, special_token=False)
    counts = sp.csr_matrix(pbmc.X).toarray()
    split = counts[:, :50]
    first = np.floor(split / 2)
    # The first 50 genes are split over two columns each, the second one with a version suffix.
    x = np.hstack([first, counts[:, 50:], split - first]).astype(np.float32)
    ids = list(pbmc.var["ensembl_id"][:50]) + list(pbmc.var["ensembl_id"][50:]) + [f"{g}.3" for g in pbmc.var["ensembl_id"][:50]]
    duplicated = ad.AnnData(sp.csr_matrix(x), obs=pbmc.obs, var=pd.DataFrame({"ensembl_id": ids}, index=[f"c{i}" for i in range(len(ids))]))
    plan = tokenizer.plan(duplicated)
    assert plan.n_collapsed == 50
    assert_same_tokens(tokenizer.tokenize(pbmc), tokenizer.tokenize(duplicated))


def test_cells_without_known_genes_get_no_gene_tokens(pbmc):
    dictionaries = tiny_dictionaries(V2)
    tokenizer = RankValueTokenizer(dictionaries, 4096)
    plan = tokenizer.plan(pbmc)
    unknown_columns = np.setdiff1d(np.arange(pbmc.n_vars), plan.columns)
    assert len(unknown_columns) == 20  # the tiny vocabulary leaves out 20 test genes on purpose
    x = sp.lil_matrix((3, pbmc.n_vars), dtype=np.float32)
    x[0, unknown_columns[:3]] = 5  # expressed, but nothing the model knows
    x[2, plan.columns[:4]] = [1, 2, 3, 4]
    cells = ad.AnnData(sp.csr_matrix(x), var=pbmc.var)
    (batch,) = list(tokenizer.iter_batches(cells))
    assert batch.n_genes.tolist() == [0, 0, 4]  # row 1 has no counts at all
    cls, eos = dictionaries.token["<cls>"], dictionaries.token["<eos>"]
    assert batch.input_ids[0].tolist() == [cls, eos]
    assert len(batch.input_ids[2]) == 6


# -- upstream's arithmetic, ties and filter_pass, against the oracle ------------------------------
def real_dictionary_files(suffix: str) -> dict:
    files = {
        "token": REAL_DICTIONARIES / f"token_dictionary_{suffix}.pkl",
        "median": REAL_DICTIONARIES / f"gene_median_dictionary_{suffix}.pkl",
        "mapping": REAL_DICTIONARIES / f"ensembl_mapping_dict_{suffix}.pkl",
    }
    missing = [p.name for p in files.values() if not p.is_file()]
    if missing:
        pytest.skip(f"real Geneformer dictionaries unavailable in {REAL_DICTIONARIES}: {missing}")
    return files


def upstream_ids(adata, mapping_file) -> ad.AnnData:
    """The dataset with var['ensembl_id'] replaced by the mapping dictionary's IDs.

    Upstream Geneformer looks genes up by the mapped ``ensembl_id_collapsed``; helical's copy looks
    up the raw ``ensembl_id`` (and so loses genes the gc95M mapping renames: 10 of the test data's).
    Handing helical the mapped IDs makes its lookup upstream's."""
    with open(mapping_file, "rb") as handle:
        mapping = pickle.load(handle)  # the trusted upstream file
    mapped = adata.copy()
    mapped.var["ensembl_id"] = [mapping.get(str(g).upper(), g) for g in adata.var["ensembl_id"]]
    return mapped


@pytest.mark.parametrize("suffix,size,special,n_counts", [
    ("gc95M", 4096, True, None), ("gc95M", 64, True, "float64"), ("gc30M", 2048, False, None),
    ("gc30M", 100, False, "float32"),
])
def test_tokens_match_geneformer_tokenizer_with_real_gc95M_and_gc30M_dictionaries(oracle, pbmc, suffix, size,
                                                                                   special, n_counts):
    files = real_dictionary_files(suffix)
    data = pbmc.copy()
    if n_counts:  # obs['n_counts'] instead of the row sums (upstream's input contract), in that dtype
        data.obs["n_counts"] = (np.asarray(data.X.sum(axis=1)).ravel() * 1.25).astype(n_counts)
    expected = oracle_tokens(oracle, upstream_ids(data, files["mapping"]), size, special, files["token"],
                             files["median"], files["mapping"])
    dictionaries = GeneDictionaries.load(files["token"], files["median"], files["mapping"])
    tokenizer = RankValueTokenizer(dictionaries, size, special, batch_size=256)
    batches = list(tokenizer.iter_batches(data))
    mine = [ids for batch in batches for ids in batch.input_ids]
    tied = np.concatenate([batch.tied for batch in batches])
    assert len(expected) == len(mine) == data.n_obs
    defined = np.flatnonzero(~tied)
    assert len(defined) > 0.5 * data.n_obs  # most cells have a defined order
    assert_same_tokens([expected[i] for i in defined], [mine[i] for i in defined])
    for i in np.flatnonzero(tied):  # a tie-break may order them differently, not choose other genes
        if len(mine[i]) < size:
            assert sorted(expected[i].tolist()) == sorted(mine[i].tolist()), i
    assert np.median([len(t) for t in mine]) > min(size, 50) * 0.5  # real cells, real ranks


#: (n_counts, count a, count b, median a, median b): real gc95M medians on which upstream's
#: reciprocal arithmetic and plain division rank the two genes in opposite orders.
SWAPPING_PAIRS = [
    (28856.0, 22, 17, 0.783344080933045, 0.6053113516335283),
    (28729.0, 37, 31, 1.2202868994992286, 1.0224025818659466),
    (11060.0, 20, 32, 1.88448914630609, 3.015182470689214),
]


@pytest.mark.parametrize("storage", ["sparse", "dense"])
def test_arithmetic_is_upstreams_where_division_would_swap_ranks(oracle, tmp_path, storage):
    genes = [f"ENSG{i:011d}" for i in range(2 * len(SWAPPING_PAIRS))]
    token = {"<pad>": 0, "<mask>": 1, **{g: i + 2 for i, g in enumerate(genes)}}
    median = {g: m for g, m in zip(genes, [m for pair in SWAPPING_PAIRS for m in pair[3:]])}
    (tmp_path / "token.pkl").write_bytes(pickle.dumps(token))
    (tmp_path / "median.pkl").write_bytes(pickle.dumps(median))
    x = np.zeros((len(SWAPPING_PAIRS), len(genes)), dtype=np.float32)
    for row, (_, a, b, _, _) in enumerate(SWAPPING_PAIRS):
        x[row, 2 * row: 2 * row + 2] = [a, b]
    n_counts = np.array([pair[0] for pair in SWAPPING_PAIRS], dtype=np.float32)
    cells = ad.AnnData(sp.csr_matrix(x) if storage == "sparse" else x,
                       obs=pd.DataFrame({"n_counts": n_counts}, index=[f"c{i}" for i in range(len(n_counts))]),
                       var=pd.DataFrame({"ensembl_id": genes}, index=genes))
    expected = oracle_tokens(oracle, cells, 2048, False, tmp_path / "token.pkl", tmp_path / "median.pkl")
    dictionaries = GeneDictionaries.load(tmp_path / "token.pkl", tmp_path / "median.pkl")
    mine = RankValueTokenizer(dictionaries, 2048, special_token=False).tokenize(cells)
    assert_same_tokens(expected, mine)
    # the cases have teeth: the other arithmetic ranks every pair the other way round
    for row, (n, a, b, ma, mb) in enumerate(SWAPPING_PAIRS):
        pair = np.array([a, b], dtype=np.float32)
        n_pair = np.array([n, n], dtype=np.float32)
        if storage == "sparse":  # division would have been wrong here
            other = (pair / n_pair) * 10_000 / np.array([ma, mb])
        else:  # and reciprocal multiplication wrong on dense X
            other = (pair * np.divide(1, n_pair)) * 10_000 * np.divide(1, np.array([ma, mb]))
        first = 2 + 2 * row if other[0] > other[1] else 3 + 2 * row
        assert mine[row][0] != first, (storage, row)


def test_filter_pass_cells_are_not_tokenized_as_upstream(oracle, pbmc):
    data = pbmc[:12].copy()
    values = [1, 0, True, False, 1.0, np.nan, "1", 2, 1, 0, 1, 1]
    data.obs["filter_pass"] = pd.Series(values, index=data.obs_names, dtype=object)
    files = dictionary_files(V1)
    expected = oracle_tokens(oracle, data, 2048, False, files["token"], files["median"], files["mapping"])
    tokenizer = RankValueTokenizer(tiny_dictionaries(V1), 2048, special_token=False)
    (batch,) = list(tokenizer.iter_batches(data))
    passing = np.array([v == 1 for v in values])
    assert batch.filtered.tolist() == (~passing).tolist()
    assert (batch.n_genes[~passing] == 0).all() and (batch.n_genes[passing] > 0).all()
    assert all(len(batch.input_ids[i]) == 0 for i in np.flatnonzero(~passing))
    assert_same_tokens(expected, [batch.input_ids[i] for i in np.flatnonzero(passing)])  # upstream drops them
    # without the column (or with the key switched off) every cell is tokenized
    assert RankValueTokenizer(tiny_dictionaries(V1), 2048, False, filter_pass_key=None).tokenize(data)[1].size > 0


# -- streaming -------------------------------------------------------------------------------
class RowSlicesOnly:
    """Stands in for X: hands out row slices of at most ``limit`` rows and refuses whole-matrix access."""

    def __init__(self, matrix, limit: int) -> None:
        self.matrix = sp.csr_matrix(matrix)
        self.shape = self.matrix.shape
        self.limit = limit
        self.reads = []

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise AssertionError(f"X read with {key!r}, not a row slice")
        start, stop, _ = key.indices(self.shape[0])
        if stop - start > self.limit:
            raise AssertionError(f"X read {stop - start} rows at once (limit {self.limit})")
        self.reads.append(stop - start)
        return self.matrix[key]

    def _whole(self, *args, **kwargs):
        raise AssertionError("the whole X was densified")

    toarray = todense = __array__ = _whole


def test_tokenizer_reads_x_in_row_batches_only(pbmc):
    guarded = RowSlicesOnly(pbmc.X, limit=128)
    stand_in = SimpleNamespace(X=guarded, n_obs=pbmc.n_obs, obs=pbmc.obs, var=pbmc.var, var_names=pbmc.var_names)
    tokenizer = RankValueTokenizer(tiny_dictionaries(V2), 4096, batch_size=128)
    streamed = tokenizer.tokenize(stand_in)
    assert guarded.reads == [128] * 5 + [60]
    assert_same_tokens(RankValueTokenizer(tiny_dictionaries(V2), 4096, batch_size=700).tokenize(pbmc), streamed)


def synthetic_h5ad(path: Path, n_cells: int, var: pd.DataFrame, seed: int = 0) -> Path:
    """Poisson counts, about 15% non-zero, as a sparse h5ad."""
    rng = np.random.default_rng(seed)
    rates = rng.gamma(0.3, 2.0, len(var))
    x = sp.vstack([sp.csr_matrix(rng.poisson(rates, size=(min(2000, n_cells - s), len(var))).astype(np.float32))
                   for s in range(0, n_cells, 2000)]).tocsr()
    ad.AnnData(x, obs=pd.DataFrame(index=[f"cell{i}" for i in range(n_cells)]), var=var).write_h5ad(path)
    return path


def traced_peak(tokenizer: RankValueTokenizer, path: Path) -> int:
    adata = ad.read_h5ad(path, backed="r")  # opened (obs and var read) before tracing
    tracemalloc.start()
    try:
        for batch in tokenizer.iter_batches(adata):
            del batch
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        adata.file.close()


def test_tokenizer_peak_memory_does_not_grow_with_cells(tmp_path, pbmc):
    small = synthetic_h5ad(tmp_path / "small.h5ad", 1_000, pbmc.var[["ensembl_id"]])
    large = synthetic_h5ad(tmp_path / "large.h5ad", 16_000, pbmc.var[["ensembl_id"]])
    tokenizer = RankValueTokenizer(tiny_dictionaries(V2), 4096, batch_size=250)
    peak_small, peak_large = traced_peak(tokenizer, small), traced_peak(tokenizer, large)
    # 16x the cells; a loader that read all of X (sparse: ~20 MB here) would blow well past this.
    assert peak_large < 1.5 * peak_small + 2_000_000, (peak_small, peak_large)


# -- embedding extraction --------------------------------------------------------------------
@pytest.mark.parametrize("variant,mode", [(V2, "cls"), (V1, "mean")])
def test_truncated_encoder_matches_full_model_hidden_states(pbmc, variant, mode):
    import torch
    from transformers import BertForMaskedLM

    dictionaries = tiny_dictionaries(variant)
    tokenizer = RankValueTokenizer(dictionaries, INPUT_SIZE[variant], SPECIAL[variant], batch_size=12)
    batch = next(tokenizer.iter_batches(pbmc))
    specials = [dictionaries.token[t] for t in ("<cls>", "<eos>") if t in dictionaries.token]
    loaded = load_encoder(GF_WEIGHTS / variant, "cpu", emb_layer=-2)
    assert loaded.n_layers_run == loaded.n_layers_total - 1
    ((start, embeddings, embedded),) = list(
        embed_token_batches(loaded, [batch], pad_id=0, emb_mode=mode, special_ids=specials, forward_batch_size=5)
    )
    assert start == 0 and embedded.all() and embeddings.shape == (12, 32)

    full = BertForMaskedLM.from_pretrained(str(GF_WEIGHTS / variant)).eval()
    expected = []
    with torch.inference_mode():
        for ids in batch.input_ids:  # one cell at a time: no padding at all
            t = torch.from_numpy(ids)[None]
            hidden = full.bert(input_ids=t, attention_mask=torch.ones_like(t), output_hidden_states=True).hidden_states[-2]
            if mode == "cls":
                expected.append(hidden[0, 0].numpy())
            else:
                genes = ~np.isin(ids, specials)
                expected.append(hidden[0, torch.from_numpy(genes)].mean(0).numpy())
    np.testing.assert_allclose(embeddings, np.stack(expected), rtol=1e-4, atol=1e-5)


def test_mean_pooling_excludes_padding_and_special_tokens():
    import torch

    hidden = torch.arange(2 * 4 * 2, dtype=torch.float32).reshape(2, 4, 2)
    ids = torch.tensor([[2, 10, 11, 3], [2, 12, 3, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    pooled = pool(hidden, ids, mask, "mean", special_ids=[2, 3])
    np.testing.assert_allclose(pooled.numpy(), [[3.0, 4.0], [10.0, 11.0]])
    np.testing.assert_allclose(pool(hidden, ids, mask, "cls").numpy(), [[0.0, 1.0], [8.0, 9.0]])


# -- the bin script in pipeline mode ---------------------------------------------------------
def read_output(path: Path):
    out = ad.read_h5ad(path)
    return out, json.loads(out.uns["czbenchmarks"]["json"])


def test_bin_script_pipeline_mode_default_variant(tmp_path):
    output = tmp_path / "pbmc.geneformer.h5ad"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--input", str(TEST_H5AD), "--output", str(output), "--dataset_id", "pbmc68k",
         "--organism", "homo_sapiens", "--weights_dir", str(GF_WEIGHTS / V2), "--seed", "7", "--device", "cpu"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    source = ad.read_h5ad(TEST_H5AD, backed="r")
    out, provenance = read_output(output)
    assert list(out.obs_names) == list(source.obs_names)
    assert out.obsm["X_emb"].shape == (700, 32) and np.isfinite(out.obsm["X_emb"]).all()
    assert out.obs["czb_embedded"].all()
    # not a constant vector: cells differ
    assert np.linalg.matrix_rank(out.obsm["X_emb"][:50].astype(np.float64), tol=1e-4) > 5
    assert provenance["model"] == "geneformer" and provenance["variant"] == V2 and provenance["seed"] == 7
    info = provenance["run_info"]
    assert info["emb_mode"] == "cls" and info["emb_layer"] == -2 and info["input_size"] == 4096
    assert info["special_token"] is True and info["n_genes_in_vocabulary"] == 680
    assert info["device"] == "cpu" and info["checkpoint_file"] == "model.safetensors"
    assert info["precision"] == "float32" and info["autocast"] is None  # upstream's precision by default
    assert info["filter_pass_column"] is None and info["n_cells_failing_filter_pass"] == 0
    assert {"torch", "transformers"} <= set(provenance["software"])


@pytest.fixture(scope="module")
def unknown_cells_h5ad(tmp_path_factory, pbmc):
    """60 PBMC cells; two express only genes outside the tiny vocabulary, one expresses nothing."""
    plan = RankValueTokenizer(tiny_dictionaries(V1), 2048, False).plan(pbmc)
    unknown = np.setdiff1d(np.arange(pbmc.n_vars), plan.columns)
    x = sp.lil_matrix(pbmc.X[:60])
    for row in (5, 40):
        x[row, :] = 0
        x[row, unknown[:4]] = 3
    x[17, :] = 0
    adata = ad.AnnData(sp.csr_matrix(x, dtype=np.float32), obs=pbmc.obs.iloc[:60].copy(), var=pbmc.var.copy())
    path = tmp_path_factory.mktemp("gf_unknown") / "unknown.h5ad"
    adata.write_h5ad(path)
    return path


def test_bin_script_records_cells_it_cannot_embed(tmp_path, unknown_cells_h5ad):
    output = tmp_path / "out.h5ad"
    model_class = load_model_class(SCRIPT, "Geneformer")
    model = model_class(argv=["--input", str(unknown_cells_h5ad), "--output", str(output), "--dataset_id", "x",
                              "--organism", "homo_sapiens", "--weights_dir", str(GF_WEIGHTS / V1),
                              "--model_variant", V1, "--device", "cpu", "--tokenize_batch_size", "16"])
    model.run()
    assert model.datasets[0].adata.isbacked  # X was streamed from disk, not loaded
    assert model.find_vocabulary_file() == GF_WEIGHTS / V1 / "gene_dictionaries" / "token_dictionary_gc30M.pkl"
    assert model.vocabulary_reasons(model.datasets[0]) == []
    source = ad.read_h5ad(unknown_cells_h5ad, backed="r")
    out, provenance = read_output(output)
    assert list(out.obs_names) == list(source.obs_names)  # nobody dropped
    not_embedded = np.flatnonzero(~out.obs["czb_embedded"].to_numpy())
    assert not_embedded.tolist() == [5, 17, 40]
    assert np.isnan(out.obsm["X_emb"][not_embedded]).all()
    assert np.isfinite(np.delete(out.obsm["X_emb"], not_embedded, axis=0)).all()
    assert provenance["n_dropped_cells"] == 3
    assert provenance["dropped_cells"] == [str(source.obs_names[i]) for i in (5, 17, 40)]
    assert provenance["run_info"]["emb_mode"] == "mean" and provenance["run_info"]["special_token"] is False


def run_in_process(tmp_path: Path, adata: ad.AnnData, variant: str, *extra: str, name: str = "out"):
    data, output = tmp_path / f"{name}.in.h5ad", tmp_path / f"{name}.h5ad"
    adata.write_h5ad(data)
    model = load_model_class(SCRIPT, "Geneformer")(argv=[
        "--input", str(data), "--output", str(output), "--dataset_id", "x", "--organism", "homo_sapiens",
        "--weights_dir", str(GF_WEIGHTS / variant), "--model_variant", variant, "--device", "cpu", *extra])
    model.run()
    return read_output(output)


def test_bin_script_keeps_filter_pass_failures_as_unembedded_rows(tmp_path, pbmc):
    data = pbmc[:30].copy()
    baseline, _ = run_in_process(tmp_path, data, V1, name="all")
    data.obs["filter_pass"] = [0 if i in (2, 9) else 1 for i in range(30)]
    out, provenance = run_in_process(tmp_path, data, V1, name="filtered")
    assert list(out.obs_names) == list(data.obs_names)
    assert np.flatnonzero(~out.obs["czb_embedded"].to_numpy()).tolist() == [2, 9]
    assert np.isnan(out.obsm["X_emb"][[2, 9]]).all()
    keep = np.setdiff1d(np.arange(30), [2, 9])
    # others untouched (up to the padding of their forward batch)
    np.testing.assert_allclose(out.obsm["X_emb"][keep], baseline.obsm["X_emb"][keep], rtol=1e-5, atol=1e-6)
    info = provenance["run_info"]
    assert info["filter_pass_column"] == "filter_pass" and info["n_cells_failing_filter_pass"] == 2
    assert info["n_cells_without_known_genes"] == 0
    assert provenance["n_dropped_cells"] == 2 and provenance["dropped_cells"] == [data.obs_names[2], data.obs_names[9]]
    data.obs["filter_pass"] = False
    with pytest.raises(ValueError, match="filter_pass"):
        run_in_process(tmp_path, data, V1, name="none")


def test_bfloat16_autocast_on_cpu_runs_and_is_recorded(tmp_path, pbmc):
    data = pbmc[:24].copy()
    full, full_prov = run_in_process(tmp_path, data, V2, "--precision", "float32", name="fp32")
    half, half_prov = run_in_process(tmp_path, data, V2, "--precision", "bfloat16", name="bf16")
    assert full_prov["run_info"]["precision"] == "float32" and full_prov["run_info"]["autocast"] is None
    info = half_prov["run_info"]
    assert info["precision"] == "bfloat16" and info["autocast"] == "bfloat16"
    assert info["attn_implementation"] == "sdpa"
    a, b = full.obsm["X_emb"], half.obsm["X_emb"]
    assert np.isfinite(b).all()
    difference = np.abs(a - b).max()
    assert 0 < difference < 0.1 * np.abs(a).max(), difference  # reduced precision really ran, and is close
    # the deprecated --amp_dtype still selects the precision; unknown precisions are refused
    alias = load_model_class(SCRIPT, "Geneformer")(argv=["--amp_dtype", "bfloat16"])
    assert alias.precision() == "bfloat16"
    assert load_model_class(SCRIPT, "Geneformer")(argv=[]).precision() == "float32"
    from czbenchmarks.models.geneformer import check_precision

    with pytest.raises(ValueError, match="precision"):
        check_precision("int8")


# -- validation gate -------------------------------------------------------------------------
def _validate(h5ad: Path, organism: str = "homo_sapiens", variant: str = "", mirror=None):
    return validate_pair(
        dataset_id="d", h5ad=h5ad, organism=organism, label_key="cell_type", batch_keys=[],
        model="geneformer", model_script=SCRIPT, model_class="Geneformer", model_config=CONFIG,
        requested_variant=variant, weights_mirror=mirror,
    )


def test_validation_passes_pbmc_and_names_model_and_dictionary_sources():
    verdict = _validate(TEST_H5AD)
    assert verdict.verdict == PASS, verdict.reasons
    assert verdict.variant == V2
    assert verdict.weights.sources == [
        ["s3://cz-benchmarks-data/models/v1/geneformer/Geneformer-V2-316M", ""],
        ["s3://cz-benchmarks-data/models/v1/geneformer/vocabs/gene_dictionaries/", "gene_dictionaries"],
    ]
    mirrored = _validate(TEST_H5AD, variant=V1, mirror=str(TEST_WEIGHTS))
    assert mirrored.variant == V1 and mirrored.weights.sources == [[f"{TEST_WEIGHTS}/geneformer/{V1}", ""]]


def test_validation_turns_away_mouse_and_takes_symbols_only_and_normalised_data_with_notes(tmp_path, pbmc):
    assert _validate(TEST_H5AD, organism="mus_musculus").verdict == INCOMPATIBLE
    # Symbols only: mapped to Ensembl IDs through the weights' dictionary (counted at CHECK_VOCABULARY).
    symbols = ad.AnnData(pbmc.X, obs=pbmc.obs, var=pd.DataFrame(index=pbmc.var["feature_name"].astype(str).values))
    symbols.write_h5ad(tmp_path / "symbols.h5ad")
    verdict = _validate(tmp_path / "symbols.h5ad")
    assert verdict.verdict == PASS and verdict.vocabulary_check, verdict.to_json()
    assert "mapped to Ensembl IDs" in verdict.inputs["gene_names"]
    # Normalised values: upstream only warns, so the pair runs, with the note saying so.
    normalised = pbmc.copy()
    normalised.X = sp.csr_matrix(np.log1p(pbmc.X.toarray()))
    normalised.write_h5ad(tmp_path / "log.h5ad")
    verdict = _validate(tmp_path / "log.h5ad")
    assert verdict.verdict == PASS and any("not raw counts" in n and "only warns" in n for n in verdict.notes)
    assert _validate(TEST_H5AD, variant="gf-99L").verdict == "error"


def test_every_configured_variant_is_complete():
    from czbenchmarks.models.geneformer import load_config, variant_config

    config = load_config(CONFIG)
    assert set(config["models"]) == {V2, "gf-20L-95M-i4096", "gf-12L-95M-i4096", "gf-12L-30M-i2048", V1}
    for name in config["models"]:
        block = variant_config(config, name)
        gc = "gc95M" if block["input_size"] == 4096 else "gc30M"
        assert block["special_token"] == (gc == "gc95M")
        assert block["emb_mode"] == ("cls" if name == V2 else "mean")
        assert all(gc in block[k] for k in ("token_dictionary", "gene_median_dictionary", "gene_mapping_dictionary"))
        assert block["extra_uris"] == {"gene_dictionaries": config["vocabs_uri"]}


def test_tiny_checkpoints_are_laid_out_like_fetched_weights():
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(OmegaConf.load(CONFIG), resolve=True)
    total = 0
    for variant in (V2, V1):
        folder = GF_WEIGHTS / variant
        block = config["models"][variant]
        for key in ("token_dictionary", "gene_median_dictionary", "gene_mapping_dictionary"):
            assert (folder / block[key]).is_file()
        assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
        model_config = json.loads((folder / "config.json").read_text())
        assert model_config["max_position_embeddings"] == block["input_size"]
        total += sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert total < 2_000_000


# -- end to end ------------------------------------------------------------------------------
