"""The streamed PCA baseline against scanpy's whole-matrix pipeline on the same counts."""

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_H5AD = ROOT / "assets" / "test" / "pbmc68k_test.h5ad"


def scanpy_whole_matrix(adata, n_top_genes, n_pcs, seed):
    """The baseline as scanpy runs it on the whole matrix in memory (the previous implementation)."""
    import scanpy as sc

    work = adata.copy()
    work.X = work.X.astype(np.float32)
    sc.pp.normalize_total(work)
    sc.pp.log1p(work)
    hvgs = min(n_top_genes, work.n_vars)
    mask = np.ones(work.n_vars, dtype=bool)
    if hvgs < work.n_vars:
        sc.pp.highly_variable_genes(work, n_top_genes=hvgs)
        mask = work.var["highly_variable"].to_numpy()
        work = work[:, mask].copy()
    sc.pp.pca(work, n_comps=min(n_pcs, work.n_obs - 1, work.n_vars - 1), random_state=seed)
    return work.obsm["X_pca"], mask


@pytest.fixture(scope="module")
def pbmc():
    import anndata as ad

    return ad.read_h5ad(TEST_H5AD)


@pytest.fixture(scope="module")
def wide_counts():
    """Negative-binomial counts, 1,500 cells × 6,000 genes with 3 groups, a few all-zero genes and cells."""
    import anndata as ad
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    base = rng.gamma(0.3, 1.0, size=6000)
    groups = rng.integers(0, 3, size=1500)
    shift = rng.gamma(1.0, 1.0, size=(3, 6000)) ** 2
    rate = base[None, :] * shift[groups] * rng.uniform(0.5, 2.0, size=(1500, 1))
    counts = rng.poisson(rate).astype(np.float32)
    counts[:, :7] = 0  # unexpressed genes: dispersion NaN, never selected
    counts[:3] = 0  # empty cells: normalize_total leaves them at zero
    return ad.AnnData(X=sp.csr_matrix(counts))


@pytest.mark.parametrize("n_top_genes", [3000, 200])
def test_pca_baseline_equals_scanpy_on_the_pbmc_counts(pbmc, n_top_genes):
    from czbenchmarks.tasks.baselines import pca_baseline

    expected, _ = scanpy_whole_matrix(pbmc, n_top_genes, 50, 42)
    embedding, info = pca_baseline(pbmc, n_top_genes=n_top_genes, chunk_rows=128)
    assert info == {"n_hvgs": min(n_top_genes, pbmc.n_vars), "n_pcs": 50}
    np.testing.assert_allclose(embedding, expected, rtol=1e-4, atol=1e-4)


def test_hvgs_and_embedding_equal_scanpy_read_backed_in_slices(wide_counts, tmp_path):
    import anndata as ad
    import scanpy as sc

    from czbenchmarks.datasets.inputs import lazy_matrix
    from czbenchmarks.tasks.baselines import pca_baseline, seurat_hvg_mask

    expected, expected_mask = scanpy_whole_matrix(wide_counts, 1000, 30, 7)
    path = tmp_path / "wide.h5ad"
    wide_counts.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    embedding, info = pca_baseline(backed.X, n_top_genes=1000, n_pcs=30, seed=7, chunk_rows=400)
    assert info == {"n_hvgs": 1000, "n_pcs": 30}
    np.testing.assert_allclose(embedding, expected, rtol=1e-4, atol=1e-4)

    # The selection itself, from the statistics scanpy computes.
    work = wide_counts.copy()
    sc.pp.normalize_total(work)
    sc.pp.log1p(work)
    stats = sc.pp.highly_variable_genes(work, n_top_genes=1000, inplace=False)
    values = np.expm1(work.X.toarray().astype(np.float64))
    mask = seurat_hvg_mask(values.mean(axis=0), values.var(axis=0, ddof=1), 1000)
    assert np.array_equal(mask, stats["highly_variable"].to_numpy())
    assert np.array_equal(mask, expected_mask)
    assert not mask[:7].any()

    # A dense HDF5 matrix is read in slices too.
    import h5py

    dense_path = tmp_path / "dense.h5"
    with h5py.File(dense_path, "w") as handle:
        handle["X"] = wide_counts.X.toarray()
    with h5py.File(dense_path, "r") as handle:
        dense_embedding, _ = pca_baseline(lazy_matrix(handle["X"]), n_top_genes=1000, n_pcs=30, seed=7,
                                          chunk_rows=500)
    np.testing.assert_allclose(dense_embedding, expected, rtol=1e-4, atol=1e-4)


def test_row_blocks_cover_every_row_once(wide_counts):
    from czbenchmarks.datasets.inputs import row_blocks

    blocks = list(row_blocks(wide_counts.X, chunk_rows=333))
    assert [start for start, _ in blocks] == list(range(0, 1500, 333))
    import scipy.sparse as sp

    stacked = sp.vstack([block for _, block in blocks])
    assert stacked.dtype == np.float32
    assert (stacked != wide_counts.X).nnz == 0
