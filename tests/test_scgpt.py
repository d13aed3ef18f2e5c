"""scGPT as a pipeline model: oracle against scgpt.tasks.embed_data, determinism, streaming, outputs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from conftest import BIN, TEST_H5AD, TEST_WEIGHTS

SCGPT_WEIGHTS = TEST_WEIGHTS / "scgpt" / "human"
SCRIPT = BIN / "scgpt_model.py"


def load_class():
    from czbenchmarks.validation import load_model_class

    return load_model_class(SCRIPT, "ScGPT")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core box more threads than free cores is many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny():
    from czbenchmarks.models.scgpt import load_scgpt

    return load_scgpt(SCGPT_WEIGHTS, device="cpu")


@pytest.fixture(scope="module")
def pbmc():
    return ad.read_h5ad(TEST_H5AD)


def write_subset(adata: ad.AnnData, path: Path, n_cells: int) -> Path:
    sub = adata[:n_cells].copy()
    sub.write_h5ad(path)
    return path


def run_pipeline(tmp_path: Path, h5ad: Path, *extra: str) -> ad.AnnData:
    """``ScGPT().run()`` in pipeline mode (as the RUN_MODEL process calls it), in-process."""
    out = tmp_path / "out.h5ad"
    argv = [
        "--input", str(h5ad), "--output", str(out), "--dataset_id", "pbmc", "--organism", "homo_sapiens",
        "--weights_dir", str(SCGPT_WEIGHTS), "--model_variant", "human", "--device", "cpu", *extra,
    ]
    load_class()(argv=argv).run()
    return ad.read_h5ad(out)


# -- the torchtext stand-in --------------------------------------------------------------------
def test_torchtext_standin_is_used_and_builds_a_60k_vocab_fast(tmp_path):
    from czbenchmarks.models.scgpt import import_scgpt

    import_scgpt()
    import torchtext
    from scgpt.tokenizer import GeneVocab

    assert "czbenchmarks" in torchtext.__file__
    tokens = {f"GENE{i}": i for i in range(60_000)}
    (tmp_path / "vocab.json").write_text(json.dumps(tokens))
    start = time.perf_counter()
    vocab = GeneVocab.from_file(tmp_path / "vocab.json")
    assert time.perf_counter() - start < 10  # a naive insert_token rebuild takes minutes
    assert len(vocab) == 60_000 and vocab["GENE59999"] == 59_999
    vocab.append_token("<pad>")
    vocab.set_default_index(vocab["<pad>"])
    assert vocab(["GENE1", "nope"]) == [1, 60_000]
    vocab.insert_token("FIRST", 0)
    assert vocab["FIRST"] == 0 and vocab["GENE0"] == 1 and vocab.get_itos()[1] == "GENE0"
    with pytest.raises(RuntimeError):
        vocab.append_token("GENE5")


# -- oracle --------------------------------------------------------------------------------------
def test_embedding_equals_scgpt_embed_data(tmp_path, pbmc, monkeypatch):
    """Same checkpoint, same cells: our pipeline output equals scgpt.tasks.embed_data's to 1e-5.

    embed_data breaks ties in its binning with the global numpy RNG; the reference's draws are
    seeded per cell exactly as ours are (single-process DataLoader, k-th binning call = k-th cell).
    max_length exceeds every cell's gene count, so no gene subsampling happens on either side.
    """
    from czbenchmarks.models.scgpt import cell_seed, import_scgpt

    seed, n_cells = 11, 96
    h5ad = write_subset(pbmc, tmp_path / "subset.h5ad", n_cells)
    output = run_pipeline(tmp_path, h5ad, "--seed", str(seed), "--batch_size", "20", "--chunk_size", "40")

    import_scgpt()
    import scgpt.data_collator as collator
    from scgpt.tasks import embed_data

    original, calls = collator.binning, []

    def seeded_binning(row, n_bins):
        np.random.seed(cell_seed(seed, len(calls)))
        calls.append(len(row))
        return original(row=row, n_bins=n_bins)

    monkeypatch.setattr(collator, "binning", seeded_binning)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set())  # DataLoader num_workers = 0
    reference = embed_data(
        ad.read_h5ad(h5ad), SCGPT_WEIGHTS, gene_col="feature_name", max_length=1200, batch_size=64,
        device="cpu", use_fast_transformer=False, return_new_adata=True,
    ).X
    assert len(calls) == n_cells
    ours = output.obsm["X_emb"]
    assert ours.shape == reference.shape == (n_cells, 32)
    np.testing.assert_allclose(ours, reference, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # And the oracle is not trivially satisfied: another seed changes the tie-breaking.
    other = run_pipeline(tmp_path, h5ad, "--seed", str(seed + 1)).obsm["X_emb"]
    assert np.abs(other - reference).max() > 1e-4


# -- determinism -----------------------------------------------------------------------------------
def test_subsampling_is_reproducible_for_a_seed_and_independent_of_batching(tiny, pbmc):
    from czbenchmarks.models.scgpt import embed_matrix

    X, symbols = pbmc.X[:64], list(pbmc.var["feature_name"])

    def embed(seed, batch_size=16, chunk_size=64):
        return embed_matrix(tiny, X, symbols, seed=seed, max_length=48, batch_size=batch_size, chunk_size=chunk_size)

    first = embed(3)
    assert first.stats["n_cells_subsampled"] == 64  # every cell has more than 47 genes
    again = embed(3, batch_size=5, chunk_size=7)  # other batches and chunks: scGPT issue #281
    np.testing.assert_allclose(again.embedding, first.embedding, atol=1e-5, rtol=0)
    changed = embed(4)
    assert np.abs(changed.embedding - first.embedding).max(axis=1).min() > 1e-4  # every cell moves
    state = np.random.get_state()[1].copy()
    embed(5)
    assert (np.random.get_state()[1] == state).all()  # the global numpy RNG is left as it was


# -- pipeline mode ------------------------------------------------------------------------------------
def test_pipeline_output_is_aligned_streamed_and_records_unembeddable_cells(tmp_path, pbmc, monkeypatch):
    import czbenchmarks.models.scgpt as scgpt_pkg

    adata = pbmc[:120].copy()
    tiny_vocab = json.loads((SCGPT_WEIGHTS / "vocab.json").read_text())
    in_vocab = adata.var["feature_name"].isin(list(tiny_vocab)).to_numpy()
    assert (~in_vocab).any()
    X = adata.X.tolil()
    X[3, in_vocab] = 0  # expresses only genes outside the vocabulary
    X[7, :] = 0  # expresses nothing
    adata.X = sp.csr_matrix(X)
    adata.obs_names = [f"cell-{i:03d}" for i in range(adata.n_obs)][::-1]  # order must be kept, not sorted
    h5ad = tmp_path / "input.h5ad"
    adata.write_h5ad(h5ad)

    reads = []
    real_embed = scgpt_pkg.embed_matrix

    class RowSliceSpy:
        """Stands in front of X: records each read, fails on anything but a row slice."""

        def __init__(self, matrix):
            self.matrix, self.shape = matrix, matrix.shape

        def __getitem__(self, key):
            assert isinstance(key, slice), f"X read with {key!r}, not a row slice"
            reads.append(key.stop - key.start)
            return self.matrix[key]

        def __array__(self, *args, **kwargs):
            raise AssertionError("X densified whole")

    def spying_embed(loaded, matrix, *args, **kwargs):
        from anndata.abc import CSRDataset

        assert isinstance(matrix, CSRDataset), f"X was loaded into memory ({type(matrix).__name__}), not streamed"
        return real_embed(loaded, RowSliceSpy(matrix), *args, **kwargs)

    monkeypatch.setattr(scgpt_pkg, "embed_matrix", spying_embed)
    output = run_pipeline(tmp_path, h5ad, "--seed", "5", "--chunk_size", "50")

    assert reads == [50, 50, 20]
    assert list(output.obs_names) == list(adata.obs_names)
    assert list(output.obs["cell_type"]) == list(adata.obs["cell_type"])
    embedded = output.obs["czb_embedded"].to_numpy()
    assert not embedded[3] and not embedded[7] and embedded.sum() == adata.n_obs - 2
    emb = output.obsm["X_emb"]
    assert emb.shape == (adata.n_obs, 32) and emb.dtype == np.float32
    assert np.isnan(emb[[3, 7]]).all() and np.isfinite(emb[embedded]).all()
    provenance = json.loads(output.uns["czbenchmarks"]["json"])
    assert provenance["model"] == "scgpt" and provenance["variant"] == "human" and provenance["seed"] == 5
    assert provenance["n_dropped_cells"] == 2 and set(provenance["dropped_cells"]) == {"cell-116", "cell-112"}
    assert provenance["software"]["scgpt"] == "0.2.4"
    info = provenance["run_info"]
    assert info["sampling_seed"] == 5 and info["max_length"] == 1200 and info["device"] == "cpu"
    assert info["n_genes_in_vocab"] == int(in_vocab.sum()) and info["n_cells_embedded"] == adata.n_obs - 2


def test_streaming_reads_every_cell_in_bounded_slices(tiny, pbmc):
    """Backed X, tiny chunks: the result equals the in-memory one and no read exceeds a chunk."""
    from czbenchmarks.models.scgpt import embed_matrix

    backed = ad.read_h5ad(TEST_H5AD, backed="r")
    sizes = []

    class Spy:
        shape = backed.X.shape

        def __getitem__(self, key):
            sizes.append(key.stop - key.start)
            return backed.X[key]

    symbols = list(pbmc.var["feature_name"])
    streamed = embed_matrix(tiny, Spy(), symbols, seed=1, chunk_size=128, batch_size=32)
    in_memory = embed_matrix(tiny, pbmc.X, symbols, seed=1, chunk_size=10_000, batch_size=32)
    assert max(sizes) == 128 and sum(sizes) == pbmc.n_obs
    np.testing.assert_allclose(streamed.embedding, in_memory.embedding, atol=1e-5, rtol=0)
    dense = embed_matrix(tiny, pbmc.X[:50].toarray(), symbols, seed=1, chunk_size=16)
    np.testing.assert_allclose(dense.embedding, in_memory.embedding[:50], atol=1e-5, rtol=0)


# -- validation and checkpoint checks ---------------------------------------------------------------
def test_validator_wants_human_cells_with_feature_names(pbmc):
    from czbenchmarks.datasets import DataType, Organism, SingleCellDataset

    model = load_class()(argv=[])
    assert model.args.model_variant == "human" and model.args.max_length == 1200

    def dataset(adata, organism):
        ds = SingleCellDataset(str(TEST_H5AD), organism)
        ds.set_input(DataType.ANNDATA, adata)
        ds.set_input(DataType.METADATA, adata.obs)
        return ds

    assert model.incompatibility_reasons(dataset(pbmc, Organism.HUMAN)) == []
    assert "not supported" in " ".join(model.incompatibility_reasons(dataset(pbmc, Organism.MOUSE)))
    no_names = pbmc.copy()
    del no_names.var["feature_name"]
    assert "feature_name" in " ".join(model.incompatibility_reasons(dataset(no_names, Organism.HUMAN)))
    # Vocabulary overlap, once the weights are local: symbols the checkpoint does not know are refused.
    with_weights = load_class()(argv=["--weights_dir", str(SCGPT_WEIGHTS)])
    assert with_weights.vocabulary_reasons(dataset(pbmc, Organism.HUMAN)) == []
    unknown = pbmc.copy()
    unknown.var["feature_name"] = [f"NOT_A_GENE_{i}" for i in range(unknown.n_vars)]
    reasons = with_weights.vocabulary_reasons(dataset(unknown, Organism.HUMAN))
    assert reasons and "vocabulary" in reasons[0]


def test_checkpoint_that_does_not_match_args_is_refused(tmp_path):
    from czbenchmarks.models.scgpt import load_scgpt

    for name in ("vocab.json", "best_model.pt"):
        (tmp_path / name).write_bytes((SCGPT_WEIGHTS / name).read_bytes())
    args = json.loads((SCGPT_WEIGHTS / "args.json").read_text())
    (tmp_path / "args.json").write_text(json.dumps({**args, "embsize": 64}))
    with pytest.raises(ValueError, match="encoder parameters missing"):
        load_scgpt(tmp_path)
    (tmp_path / "args.json").unlink()
    with pytest.raises(FileNotFoundError, match="args.json"):
        load_scgpt(tmp_path)


def test_tiny_checkpoint_is_small_and_in_the_real_format():
    import torch

    sizes = {p.name: p.stat().st_size for p in SCGPT_WEIGHTS.iterdir()}
    assert set(sizes) == {"vocab.json", "args.json", "best_model.pt"} and sum(sizes.values()) < 2_000_000
    vocab = json.loads((SCGPT_WEIGHTS / "vocab.json").read_text())
    assert {"<pad>", "<cls>", "<eoc>"} <= set(vocab) and sorted(vocab.values()) == list(range(len(vocab)))
    state = torch.load(SCGPT_WEIGHTS / "best_model.pt", map_location="cpu")
    assert any("self_attn.Wqkv." in k for k in state)  # flash-attn key names, as the real checkpoint


# -- end to end ------------------------------------------------------------------------------------------
