"""UCE as a pipeline model: loader, species routing, cell alignment, and UCE's own code as oracle."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from types import SimpleNamespace

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from conftest import BIN, TEST_H5AD, TEST_WEIGHTS

UCE_WEIGHTS = TEST_WEIGHTS / "uce" / "4l"
SCRIPT = BIN / "uce_model.py"
SEED = 7
N_CELLS = 100
LOW_GENE_CELLS = [3, 17, 50]  # given fewer than min_genes=25 expressed genes


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core box more threads than free cores is many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def load_class():
    from czbenchmarks.validation import load_model_class

    return load_model_class(SCRIPT, "UCE")


def small_dataset(organism: str = "homo_sapiens") -> ad.AnnData:
    """The first PBMC cells, some thinned below min_genes; mouse: the same cells relabeled."""
    adata = ad.read_h5ad(TEST_H5AD)[:N_CELLS].copy()
    X = adata.X.toarray()
    for row in LOW_GENE_CELLS:
        expressed = np.flatnonzero(X[row])
        X[row, expressed[10:]] = 0
    adata.X = sp.csr_matrix(X)
    if organism == "mus_musculus":
        ids = [f"ENSMUSG{i:011d}" for i in range(adata.n_vars)]
        adata.var["ensembl_id"] = ids
        adata.var_names = ids
    return adata


def run_pipeline(tmp_path: Path, adata: ad.AnnData, organism: str, weights: Path = UCE_WEIGHTS,
                 *extra: str, name: str = "") -> ad.AnnData:
    """bin/uce_model.py in pipeline mode (in-process); returns the output h5ad."""
    data = tmp_path / f"in_{organism}{name}.h5ad"
    out = tmp_path / f"out_{organism}{name}.h5ad"
    adata.write_h5ad(data)
    model = load_class()(argv=[
        "--input", str(data), "--output", str(out), "--dataset_id", "tiny", "--organism", organism,
        "--weights_dir", str(weights), "--model_variant", "4l", "--seed", str(SEED), "--device", "cpu", *extra,
    ])
    model.run()
    return ad.read_h5ad(out)


def uce_reference(tmp_path: Path, adata: ad.AnnData, species: str, weights: Path = UCE_WEIGHTS) -> ad.AnnData:
    """UCE's own evaluation path on the same cells: uce-eval-single-anndata's steps, run offline.

    process_raw_anndata (UCE's filter), get_species_to_pe / adata_path_to_prot_chrom_starts,
    MultiDatasetSentences + MultiDatasetSentenceCollator in a DataLoader, and the forward pass of
    run_eval; the checkpoint is loaded as run_eval does (its token table kept when the token file
    plus UCE's chromosome tokens has as many rows). Returns the processed AnnData, obsm['X_uce'].
    """
    import torch
    from torch import nn
    from torch.utils.data import DataLoader
    from uce.data_proc.data_utils import (
        adata_path_to_prot_chrom_starts,
        get_spec_chrom_csv,
        get_species_to_pe,
        process_raw_anndata,
    )
    from uce.eval_data import MultiDatasetSentenceCollator, MultiDatasetSentences
    from uce.model import TransformerModel

    settings = json.loads((weights / "uce_config.json").read_text())
    work = tmp_path / f"uce_{species}"
    work.mkdir()
    # UCE reads model_files/protein_embeddings relative to the working folder.
    (work / "model_files").symlink_to(weights / "model_files")
    symbols = adata.copy()
    symbols.var_names = symbols.var["feature_name"].astype(str).tolist()
    symbols.write_h5ad(work / "data.h5ad")
    import os

    cwd = os.getcwd()
    os.chdir(work)
    try:
        row = SimpleNamespace(path="data.h5ad", covar_col=np.nan, species=species)
        proc, n_cells, n_genes = process_raw_anndata(row, f"{work}/", f"{work}/", "", False, True, root=str(work))
    finally:
        os.chdir(cwd)
    files = weights / "model_files"
    species_to_pe = get_species_to_pe(files / "protein_embeddings")
    with open(files / "species_offsets.pkl", "rb") as handle:
        offset = pickle.load(handle)[species]
    pe_idx, chroms, starts = adata_path_to_prot_chrom_starts(
        proc, species, list(species_to_pe[species].keys()), get_spec_chrom_csv(str(files / "species_chrom.csv")),
        offset)
    torch.save({"data": pe_idx}, work / "pe_idx.torch")
    with open(work / "chroms.pkl", "wb") as handle:
        pickle.dump({"data": chroms}, handle)
    with open(work / "starts.pkl", "wb") as handle:
        pickle.dump({"data": starts}, handle)

    args = SimpleNamespace(
        pad_length=settings["pad_length"], sample_size=settings["sample_size"], cls_token_idx=3,
        CHROM_TOKEN_OFFSET=settings["CHROM_TOKEN_OFFSET"], chrom_token_left_idx=1, chrom_token_right_idx=2,
        pad_token_idx=0,
    )
    model = TransformerModel(token_dim=settings["token_dim"], d_model=settings["d_model"], nhead=settings["nhead"],
                             d_hid=settings["d_hid"], nlayers=settings["nlayers"], dropout=0.05,
                             output_dim=settings["output_dim"])
    state = torch.load(weights / "4layer_model.torch", map_location="cpu")
    model.pe_embedding = nn.Embedding.from_pretrained(torch.zeros(state["pe_embedding.weight"].shape))
    result = model.load_state_dict(state, strict=False)
    assert not result.unexpected_keys and all(k.startswith("binary_decoder.") for k in result.missing_keys)
    all_pe = torch.load(files / "all_tokens.torch")
    torch.manual_seed(23)  # get_ESM2_embeddings, with the tiny token count in place of 143574
    all_pe = torch.vstack((all_pe, torch.normal(mean=0, std=1, size=(1895, settings["token_dim"]))))
    if all_pe.shape[0] != state["pe_embedding.weight"].shape[0]:
        model.pe_embedding = nn.Embedding.from_pretrained(all_pe)
    model = model.eval()

    dataset = MultiDatasetSentences(
        sorted_dataset_names=["data"], shapes_dict={"data": (n_cells, n_genes)}, args=args,
        npzs_dir=f"{work}/", dataset_to_protein_embeddings_path=str(work / "pe_idx.torch"),
        datasets_to_chroms_path=str(work / "chroms.pkl"), datasets_to_starts_path=str(work / "starts.pkl"))
    loader = DataLoader(dataset, batch_size=40, shuffle=False, collate_fn=MultiDatasetSentenceCollator(args),
                        num_workers=0)
    embeds = []
    np.random.seed(SEED)
    with torch.no_grad():
        for batch in loader:
            sentences = model.pe_embedding(batch[0].permute(1, 0).long())
            sentences = nn.functional.normalize(sentences, dim=2)
            _, embedding = model.forward(sentences, mask=batch[1])
            embeds.append(embedding.numpy())
    proc.obsm["X_uce"] = np.vstack(embeds)
    return proc


def provenance(output: ad.AnnData) -> dict:
    from czbenchmarks.constants import PROVENANCE_UNS_KEY

    return json.loads(output.uns[PROVENANCE_UNS_KEY]["json"])


# -- unit tests ------------------------------------------------------------------------------
def test_species_table_matches_uce_and_validator():
    from uce.data_proc.gene_embeddings import MODEL_TO_SPECIES_TO_GENE_EMBEDDING_PATH

    from czbenchmarks.datasets import Organism
    from czbenchmarks.models.uce import PROTEIN_EMBEDDING_FILES, SPECIES_BY_ORGANISM, species_for_organism

    assert PROTEIN_EMBEDDING_FILES == {s: p.name for s, p in MODEL_TO_SPECIES_TO_GENE_EMBEDDING_PATH["ESM2"].items()}
    cls = load_class()
    assert set(cls.available_organisms) == set(SPECIES_BY_ORGANISM)
    # Symbols from var['feature_name'] or symbol var_names; non-count input accepted with a note (upstream warns).
    assert cls.gene_identifiers == "symbols" and not cls.requires_raw_counts and "only warns" in cls.raw_counts_reason
    assert species_for_organism("mus_musculus") == "mouse" and species_for_organism(Organism.WILD_BOAR) == "pig"
    with pytest.raises(ValueError, match="no protein embeddings"):
        species_for_organism(Organism.RAT)


def test_chromosome_tokens_match_uce(tmp_path):
    """At the real token count, the table gets the chromosome rows uce's get_ESM2_embeddings appends."""
    import torch
    from uce.evaluate import get_ESM2_embeddings

    from czbenchmarks.models.uce import DEFAULTS, token_table

    tokens = torch.arange(143574 * 2, dtype=torch.float32).reshape(143574, 2)
    torch.save(tokens, tmp_path / "all_tokens.torch")
    ours = token_table(tmp_path / "all_tokens.torch", dict(DEFAULTS))
    theirs = get_ESM2_embeddings(SimpleNamespace(token_file=str(tmp_path / "all_tokens.torch"), token_dim=2))
    assert ours.shape == (145469, 2) and torch.equal(ours, theirs)


def test_settings_and_overrides(tmp_path):
    from czbenchmarks.models.uce import find_config, load_config, load_uce, variant_settings

    config = load_config(find_config(script=SCRIPT))
    real = variant_settings(config, "4l")
    assert (real["nlayers"], real["d_model"], real["token_dim"], real["batch_size"]) == (4, 1280, 5120, 40)
    assert real["model_filename"] == "4layer_model.torch"
    assert variant_settings(config, "33l")["nlayers"] == 33
    with pytest.raises(ValueError, match="not found"):
        variant_settings(config, "12l")
    tiny = variant_settings(config, "4l", UCE_WEIGHTS)
    assert tiny["d_model"] == 32 and "d_model" in tiny["overrides"]
    with pytest.raises(ValueError, match="uce_config.json"):
        load_uce(UCE_WEIGHTS, real)  # the full-size dimensions do not fit the tiny checkpoint


def test_tiny_weights_are_small_and_in_the_real_layout():
    from czbenchmarks.models.uce import PROTEIN_EMBEDDING_FILES

    files = [p for p in UCE_WEIGHTS.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 3_000_000
    for name in PROTEIN_EMBEDDING_FILES.values():
        assert (UCE_WEIGHTS / "model_files" / "protein_embeddings" / name).is_file()
    chrom = (UCE_WEIGHTS / "model_files" / "species_chrom.csv").read_text()
    assert ",X," in chrom and ",MT," in chrom


# -- against UCE's own code ------------------------------------------------------------------
def test_embeddings_equal_uce_and_dropped_cells_stay_aligned(tmp_path):
    from czbenchmarks.constants import EMBEDDED_OBS_KEY, EMBEDDING_OBSM_KEY

    adata = small_dataset()
    output = run_pipeline(tmp_path, adata, "homo_sapiens")
    reference = uce_reference(tmp_path, adata, "human")

    assert list(output.obs_names) == list(adata.obs_names)
    dropped = adata.obs_names[LOW_GENE_CELLS]
    assert set(reference.obs_names) == set(adata.obs_names) - set(dropped)  # UCE drops them too
    embedded = output.obs[EMBEDDED_OBS_KEY].to_numpy()
    assert (~embedded).sum() == len(LOW_GENE_CELLS) and not embedded[LOW_GENE_CELLS].any()
    emb = output.obsm[EMBEDDING_OBSM_KEY]
    assert np.isnan(emb[LOW_GENE_CELLS]).all() and np.isfinite(emb[embedded]).all()
    ours = emb[output.obs_names.get_indexer(reference.obs_names)]
    np.testing.assert_allclose(ours, reference.obsm["X_uce"], atol=1e-5, rtol=0)

    prov = provenance(output)
    assert prov["n_dropped_cells"] == 3 and prov["dropped_cells"] == list(dropped)
    info = prov["run_info"]
    assert info["species"] == "human" and info["n_cells_dropped_min_genes"] == 3
    assert prov["variant"] == "4l" and prov["seed"] == SEED and prov["model"] == "uce"


def test_species_follows_organism(tmp_path):
    from czbenchmarks.constants import EMBEDDING_OBSM_KEY

    human = run_pipeline(tmp_path, small_dataset(), "homo_sapiens")
    mouse_data = small_dataset("mus_musculus")
    mouse = run_pipeline(tmp_path, mouse_data, "mus_musculus")
    assert provenance(mouse)["run_info"]["species"] == "mouse"
    reference = uce_reference(tmp_path, mouse_data, "mouse")
    ours = mouse.obsm[EMBEDDING_OBSM_KEY][mouse.obs_names.get_indexer(reference.obs_names)]
    np.testing.assert_allclose(ours, reference.obsm["X_uce"], atol=1e-5, rtol=0)
    kept = mouse.obs["czb_embedded"].to_numpy()
    assert not np.allclose(human.obsm[EMBEDDING_OBSM_KEY][kept], mouse.obsm[EMBEDDING_OBSM_KEY][kept], atol=1e-3)


def test_cells_without_embeddable_genes_are_recorded(tmp_path):
    """UCE fails on a cell whose counts all fall on genes without protein embeddings; here it is NaN."""
    from czbenchmarks.constants import EMBEDDED_OBS_KEY
    from czbenchmarks.models.uce import species_gene_order

    weights = tmp_path / "weights"
    shutil.copytree(UCE_WEIGHTS, weights)
    settings = json.loads((weights / "uce_config.json").read_text())
    (weights / "uce_config.json").write_text(json.dumps({**settings, "filter": False}))
    adata = ad.read_h5ad(TEST_H5AD)[:20].copy()
    known = set(species_gene_order(weights / "model_files", "human"))
    X = adata.X.toarray()
    unknown = np.array([str(s).upper() not in known for s in adata.var["feature_name"]])
    X[4] = 0  # no counts at all
    X[9, ~unknown] = 0  # counts only on genes without a protein embedding
    assert X[9].sum() > 0
    adata.X = sp.csr_matrix(X)
    output = run_pipeline(tmp_path, adata, "homo_sapiens", weights=weights)
    assert list(output.obs_names) == list(adata.obs_names)
    assert list(np.flatnonzero(~output.obs[EMBEDDED_OBS_KEY].to_numpy())) == [4, 9]
    info = provenance(output)["run_info"]
    assert info["n_cells_dropped_no_embeddable_gene"] == 2 and info["n_cells_dropped_min_genes"] == 0


def many_chromosome_weights(tmp_path: Path, symbols) -> Path:
    """The tiny weights with the test genes' human rows moved onto one chromosome per 10 columns
    (70 chromosomes; a tiny sentence, pad_length 128 and sample_size 64, holds at most 31)."""
    import pandas as pd

    weights = tmp_path / "weights_many_chromosomes"
    shutil.copytree(UCE_WEIGHTS, weights)
    table_file = weights / "model_files" / "species_chrom.csv"
    table = pd.read_csv(table_file)
    column = table["gene_symbol"].astype(str).str.upper().map({str(s).upper(): j for j, s in enumerate(symbols)})
    rows = (table["species"] == "human") & column.notna()
    table.loc[rows, "chromosome"] = "C" + (column[rows] // 10).astype(int).astype(str)
    table.to_csv(table_file, index=False)
    return weights


def test_sentence_length_is_checked_per_cell_not_over_the_dataset(tmp_path):
    """70 chromosomes overall (more than a sentence holds) no longer fails the run: cells whose genes lie
    on few chromosomes embed (equal to UCE's own code), a cell whose sample spans too many is dropped."""
    from czbenchmarks.constants import EMBEDDED_OBS_KEY, EMBEDDING_OBSM_KEY

    source = ad.read_h5ad(TEST_H5AD)
    weights = many_chromosome_weights(tmp_path, source.var["feature_name"])
    rng = np.random.default_rng(0)
    X = np.zeros((101, source.n_vars), dtype=np.float32)
    for cell in range(100):  # ten groups of ten cells, each group on 70 genes = 7 chromosomes
        group = cell // 10
        X[cell, 70 * group: 70 * group + 70] = rng.poisson(3.0, 70) + 1
    X[100] = 1  # last: one cell on every gene, so its 64 draws fall on ~40 of the 70 chromosomes
    adata = ad.AnnData(sp.csr_matrix(X), obs=source.obs.iloc[:101].copy(), var=source.var.copy())
    output = run_pipeline(tmp_path, adata, "homo_sapiens", weights)
    embedded = output.obs[EMBEDDED_OBS_KEY].to_numpy()
    assert embedded[:100].all() and not embedded[100]
    info = provenance(output)["run_info"]
    assert info["n_chromosomes_used"] > info["max_chromosomes_per_sentence"] == 31
    assert info["n_cells_dropped_sentence_too_long"] == 1 and info["n_cells_dropped_min_genes"] == 0
    # UCE itself, on the cells it can take (the dropped cell is last, so the draws before it agree)
    reference = uce_reference(tmp_path, adata[:100].copy(), "human", weights)
    assert len(reference) == 100
    ours = output.obsm[EMBEDDING_OBSM_KEY][output.obs_names.get_indexer(reference.obs_names)]
    np.testing.assert_allclose(ours, reference.obsm["X_uce"], atol=1e-5, rtol=0)


def test_species_mode_czbenchmarks_embeds_every_organism_as_human(tmp_path):
    from czbenchmarks.constants import EMBEDDING_OBSM_KEY
    from czbenchmarks.models.uce import species_for_mode

    human = run_pipeline(tmp_path, small_dataset(), "homo_sapiens")
    assert provenance(human)["run_info"]["species_mode"] == "organism"
    mouse = run_pipeline(tmp_path, small_dataset("mus_musculus"), "mus_musculus", UCE_WEIGHTS,
                         "--species_mode", "czbenchmarks", name="_as_human")
    info = provenance(mouse)["run_info"]
    assert info["species"] == "human" and info["species_mode"] == "czbenchmarks"
    # the same symbols through the human protein embeddings: exactly the human run
    np.testing.assert_array_equal(mouse.obsm[EMBEDDING_OBSM_KEY], human.obsm[EMBEDDING_OBSM_KEY])
    assert species_for_mode("danio_rerio", "czbenchmarks") == "human"
    assert species_for_mode("danio_rerio") == "zebrafish"
    with pytest.raises(ValueError, match="species_mode"):
        species_for_mode("homo_sapiens", "both")
