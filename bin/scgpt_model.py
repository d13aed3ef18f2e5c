#!/usr/bin/env python3
"""scGPT: zero-shot cell embeddings (``<cls>`` token, L2-normalised) from a pretrained scGPT.

Follows czbenchmarks' scGPT model, which called ``scgpt.tasks.embed_data`` on ``var['feature_name']``
(gene symbols) with batch size 32 and ``max_length`` 1200, using scgpt's own model class, vocabulary
and binning. Here cells are streamed from the h5ad in row slices instead of densified whole, the
random steps (binning tie-breaks, gene subsampling of cells longer than ``max_length``) are seeded
per cell from ``--seed``, and cells with no expressed gene in the vocabulary are recorded rather
than crashing the run. See ``czbenchmarks.models.scgpt.inference``.
"""

from __future__ import annotations

import argparse
import logging
from typing import List, Set

from czbenchmarks.datasets import DataType, Organism, SingleCellDataset
from czbenchmarks.models.implementations import BaseModelImplementation
from czbenchmarks.models.types import ModelType
from czbenchmarks.models.validators import BaseSingleCellValidator

logger = logging.getLogger("scgpt_model")

#: The column of gene symbols scGPT's vocabulary is keyed on (symbol var_names are used when absent).
GENE_COLUMN = "feature_name"


class ScGPTValidator(BaseSingleCellValidator):
    """The whole-human scGPT: human cells, gene symbols (``var['feature_name']`` or symbol ``var_names``)."""

    available_organisms = [Organism.HUMAN]
    required_obs_keys: List[str] = []
    required_var_keys: List[str] = []
    model_type = ModelType.SCGPT
    # Binning (scgpt.preprocess.binning) puts each cell's non-zero values into bins at that cell's own
    # quantiles: any increasing per-cell transform, normalize_total + log1p included, gives the same
    # bins (tests/test_real_datasets.py checks this on our binning code), so non-count input is taken.
    requires_raw_counts = False
    raw_counts_reason = ("scGPT bins each cell by its own quantiles, so normalised or log1p-normalised "
                         "values give the same bins as counts")
    gene_identifiers = "symbols"
    gene_identifiers_reason = "scGPT's vocabulary is keyed by gene symbol"
    # Gene symbols are matched against the checkpoint's vocab.json (checked before inference, and in
    # VALIDATE when the weights are already local). Below a tenth of the genes the embedding is noise.
    vocabulary_file = "vocab.json"
    vocabulary_var_key = GENE_COLUMN
    min_vocabulary_overlap = 0.1

    @property
    def inputs(self) -> Set[DataType]:
        return {DataType.ANNDATA}

    @property
    def outputs(self) -> Set[DataType]:
        return {DataType.EMBEDDING}


class ScGPT(ScGPTValidator, BaseModelImplementation):
    model_name = "scgpt"
    streams_input = True  # X is read in row slices, never loaded whole

    def create_parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("--model_variant", default="human")
        parser.add_argument("--batch_size", type=int, default=32, help="cells per forward pass")
        parser.add_argument("--max_length", type=int, default=1200, help="tokens per cell, <cls> included")
        parser.add_argument("--chunk_size", type=int, default=2048, help="cells read from the h5ad at a time")
        parser.add_argument(
            "--num_threads", type=int, default=0,
            help="CPU threads for torch (0: torch's default); pass the task's cpus on shared CPU hosts",
        )
        return parser

    def get_model_weights_subdir(self, dataset: SingleCellDataset) -> str:
        # One folder per variant (the reference used models[variant].model_name, equal to the key).
        return self.args.model_variant or "human"

    def _download_model_weights(self, dataset: SingleCellDataset) -> None:
        from omegaconf import OmegaConf

        from czbenchmarks.utils import sync_s3_to_local
        from czbenchmarks.weights import split_s3_uri

        if not self.args.model_config:
            raise ValueError("standalone runs need --model_config (containers/scgpt/config.yaml)")
        config = OmegaConf.load(self.args.model_config)
        variant = self.get_model_weights_subdir(dataset)
        if variant not in config.models:
            raise ValueError(f"Model {variant} not found in config; variants: {sorted(config.models)}")
        bucket, prefix = split_s3_uri(config.models[variant].model_uri)
        sync_s3_to_local(bucket, prefix, self.model_weights_dir)

    def run_model(self, dataset: SingleCellDataset) -> None:
        import time

        import torch

        from czbenchmarks.device import select_device
        from czbenchmarks.models.scgpt import N_BINS, embed_matrix, load_scgpt

        device = select_device(self.args.device)
        torch.manual_seed(self.args.seed)
        if self.args.num_threads > 0:
            # More intra-op threads than free cores makes CPU inference many times slower.
            torch.set_num_threads(self.args.num_threads)
        loaded = load_scgpt(self.model_weights_dir, device=device)
        symbols = dataset.gene_symbols()
        started = time.perf_counter()
        result = embed_matrix(
            loaded,
            dataset.counts,  # backed in pipeline mode: read chunk_size rows at a time
            symbols.symbols.tolist(),
            seed=self.args.seed,
            max_length=self.args.max_length,
            batch_size=self.args.batch_size,
            chunk_size=self.args.chunk_size,
        )
        elapsed = time.perf_counter() - started
        if result.stats["n_cells_embedded"] == 0:
            raise ValueError(
                f"scGPT embedded no cell: {result.stats['n_genes_in_vocab']} of {result.stats['n_genes']} "
                f"genes of {symbols.source} are in the model vocabulary and no cell expresses one"
            )
        self.embedded_mask = result.embedded
        self.run_info = {
            "device": device,
            "autocast": "float16" if device == "cuda" else "off",
            "embedding": "<cls> token of the last layer, L2-normalised",
            "gene_column": GENE_COLUMN,
            "gene_source": symbols.source,
            "counts_location": dataset.counts_location or dataset.counts_finding.location,
            "max_length": self.args.max_length,
            "batch_size": self.args.batch_size,
            "chunk_size": self.args.chunk_size,
            "torch_threads": torch.get_num_threads(),
            "n_bins": N_BINS,
            "random_draws": "binning tie-breaks and gene subsampling seeded per cell by SeedSequence([seed, row])",
            "sampling_seed": self.args.seed,
            "vocab_size": len(loaded.vocab),
            "checkpoint_params_loaded": f"{loaded.n_params_loaded}/{loaded.n_params_total}",
            "inference_seconds": round(elapsed, 3),
            **result.stats,
        }
        logger.info(
            "scGPT: %d/%d cells embedded, %d/%d genes in vocabulary, %d cells subsampled to %d tokens",
            result.stats["n_cells_embedded"], len(result.embedded), result.stats["n_genes_in_vocab"],
            result.stats["n_genes"], result.stats["n_cells_subsampled"], self.args.max_length,
        )
        dataset.set_output(self.model_type, DataType.EMBEDDING, result.embedding)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ScGPT().run()
