#!/usr/bin/env python3
"""UCE: zero-shot Universal Cell Embeddings (the CLS output, L2-normalised) from a pretrained UCE.

Follows czbenchmarks' UCE model (gene symbols from ``var['feature_name']``, UCE's filter step,
1024 genes sampled per cell, batch size 40), with the network and cell sentences of the
``uce-model`` package and the project's own loader (no downloads, explicit paths). Fixes the
reference's two defects: the species follows the dataset's organism (the reference always used
human; ``--species_mode czbenchmarks`` restores that), and cells UCE filters out keep their row
(NaN, recorded as not embedded) instead of shifting the rows of every later cell. See
``czbenchmarks.models.uce``.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any, Dict, List, Set

from czbenchmarks.datasets import DataType, Organism, SingleCellDataset
from czbenchmarks.models.implementations import BaseModelImplementation
from czbenchmarks.models.types import ModelType
from czbenchmarks.models.validators import BaseSingleCellValidator

logger = logging.getLogger("uce_model")

#: The column of gene symbols UCE's protein embeddings are keyed on (upper-cased).
GENE_COLUMN = "feature_name"


class UCEValidator(BaseSingleCellValidator):
    """UCE's eight species, gene symbols (``var['feature_name']`` or symbol ``var_names``)."""

    available_organisms = [
        Organism.HUMAN,
        Organism.MOUSE,
        Organism.TROPICAL_CLAWED_FROG,
        Organism.ZEBRAFISH,
        Organism.MOUSE_LEMUR,
        Organism.WILD_BOAR,
        Organism.CRAB_EATING_MACAQUE,
        Organism.RHESUS_MACAQUE,
    ]
    required_obs_keys: List[str] = []
    required_var_keys: List[str] = []
    model_type = ModelType.UCE
    # Upstream UCE only warns on non-count input; genes are drawn with weights log1p(value), so the
    # embedding of normalised input is not the one the model was trained for: accepted, with a note.
    requires_raw_counts = False
    raw_counts_reason = ("upstream UCE only warns; genes are sampled with weights log1p(value), so embeddings of "
                         "normalised values differ from those of counts")
    gene_identifiers = "symbols"
    gene_identifiers_reason = "UCE's protein embeddings are keyed by gene symbol"

    @property
    def inputs(self) -> Set[DataType]:
        return {DataType.ANNDATA}

    @property
    def outputs(self) -> Set[DataType]:
        return {DataType.EMBEDDING}


class UCE(UCEValidator, BaseModelImplementation):
    model_name = "uce"
    streams_input = True  # X is read in row slices, never loaded whole

    def create_parser(self) -> argparse.ArgumentParser:
        from czbenchmarks.models.uce import DEFAULT_VARIANT

        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("--model_variant", default=DEFAULT_VARIANT, help="4l or 33l")
        parser.add_argument("--batch_size", type=int, default=None,
                            help="cells per forward pass (default: the variant's, 40)")
        parser.add_argument("--chunk_size", type=int, default=2048, help="cells read from the h5ad at a time")
        parser.add_argument(
            "--species_mode", default="organism", choices=["organism", "czbenchmarks"],
            help="organism: each organism's own protein embeddings (default); czbenchmarks: every "
                 "dataset as human, as czbenchmarks' UCE does",
        )
        parser.add_argument(
            "--num_threads", type=int, default=0,
            help="CPU threads for torch (0: torch's default); pass the task's cpus on shared CPU hosts",
        )
        return parser

    def variant_settings(self) -> Dict[str, Any]:
        """This variant's settings: containers/uce/config.yaml, then the weights' uce_config.json."""
        from czbenchmarks.models.uce import find_config, load_config, variant_settings

        path = find_config(getattr(self.args, "model_config", None), script=__file__)
        settings = variant_settings(load_config(path), self.args.model_variant, self.model_weights_dir or None)
        if self.args.batch_size:
            settings["batch_size"] = int(self.args.batch_size)
        return settings

    def get_model_weights_subdir(self, dataset: SingleCellDataset) -> str:
        # One folder per variant, each laid out as the reference's /weights.
        return self.args.model_variant

    def _download_model_weights(self, dataset: SingleCellDataset) -> None:
        from czbenchmarks.models.uce import find_config, load_config
        from czbenchmarks.utils import sync_s3_to_local
        from czbenchmarks.weights import split_s3_uri, weight_sources

        config = load_config(find_config(getattr(self.args, "model_config", None), script=__file__))
        variants = config.get("models") or {}
        if self.args.model_variant not in variants:
            raise ValueError(f"Model {self.args.model_variant} not found in config; variants: {sorted(variants)}")
        for uri, subdir in weight_sources(self.model_name, self.args.model_variant,
                                          variants[self.args.model_variant], None):
            bucket, prefix = split_s3_uri(uri)
            target = f"{self.model_weights_dir}/{subdir}" if subdir else self.model_weights_dir
            sync_s3_to_local(bucket, prefix, target)

    def run_model(self, dataset: SingleCellDataset) -> None:
        import time

        import torch

        from czbenchmarks.device import select_device
        from czbenchmarks.models.uce import MODEL_FILES_DIR, embed_matrix, load_uce, plan_genes, species_for_mode

        device = select_device(self.args.device)
        torch.manual_seed(self.args.seed)
        if self.args.num_threads > 0:
            torch.set_num_threads(self.args.num_threads)
        settings = self.variant_settings()
        species_mode = getattr(self.args, "species_mode", None) or "organism"
        species = species_for_mode(dataset.organism, species_mode)
        loaded = load_uce(self.model_weights_dir, settings, device=device)
        symbols = dataset.gene_symbols()
        plan = plan_genes(symbols.symbols.tolist(), species, f"{self.model_weights_dir}/{MODEL_FILES_DIR}")
        started = time.perf_counter()
        result = embed_matrix(loaded, dataset.counts, plan, seed=self.args.seed, chunk_size=self.args.chunk_size)
        elapsed = time.perf_counter() - started
        stats = result.stats
        if stats["n_cells_embedded"] == 0:
            raise ValueError(
                f"UCE embedded no cell: {stats['n_cells_dropped_min_genes']} cells have fewer than "
                f"{settings['min_genes']} expressed genes, {stats['n_cells_dropped_no_embeddable_gene']} "
                f"express no gene with a {species} protein embedding, {stats['n_cells_dropped_sentence_too_long']} "
                f"sampled genes on more than {stats['max_chromosomes_per_sentence']} chromosomes"
            )
        dropped = len(result.embedded) - stats["n_cells_embedded"]
        if dropped:
            logger.warning(
                "UCE: %d of %d cells not embedded (%d below min_genes=%d, %d without an embeddable gene, "
                "%d with a sentence longer than pad_length); their rows are NaN and they are listed in the "
                "output's provenance",
                dropped, len(result.embedded), stats["n_cells_dropped_min_genes"], settings["min_genes"],
                stats["n_cells_dropped_no_embeddable_gene"], stats["n_cells_dropped_sentence_too_long"],
            )
        self.embedded_mask = result.embedded
        self.run_info = {
            "device": device,
            "embedding": "CLS output of the decoder, L2-normalised (uce.model.TransformerModel)",
            "gene_column": GENE_COLUMN,
            "gene_source": symbols.source,
            "counts_location": dataset.counts_location or dataset.counts_finding.location,
            "species": species,
            "species_mode": species_mode,
            "settings": {k: v for k, v in settings.items() if k not in ("display", "model_uri", "extra_uris")},
            "token_table": loaded.table_source,
            "checkpoint_keys_absent": sorted({k.split(".")[0] + ".*" for k in loaded.missing_keys}),
            "n_params": loaded.n_params,
            "random_draws": "gene sampling: numpy's global generator seeded once with the seed, cells in input order",
            "sampling_seed": self.args.seed,
            "torch_threads": torch.get_num_threads(),
            "chunk_size": self.args.chunk_size,
            "inference_seconds": round(elapsed, 3),
            **stats,
        }
        logger.info("UCE (%s, species %s): %d/%d cells embedded with %d genes", self.args.model_variant,
                    species, stats["n_cells_embedded"], len(result.embedded), stats["n_genes_used"])
        dataset.set_output(self.model_type, DataType.EMBEDDING, result.embedding)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    UCE().run()
