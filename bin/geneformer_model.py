#!/usr/bin/env python3
"""Geneformer: zero-shot cell embeddings from a pretrained Geneformer (BERT) checkpoint.

Follows czbenchmarks' Geneformer model (rank-value tokenization with the variant's gene
dictionaries, embeddings from the second-to-last layer; ``<cls>`` for V2, the mean over gene tokens
for the older variants) with the project's own streaming tokenizer and ``transformers``' BERT in
place of the upstream ``geneformer`` package (``czbenchmarks.models.geneformer``).

Input contract: human cells, raw counts (X, a layer or raw.X: where VALIDATE found them), Ensembl
gene IDs in ``var_names`` or ``var['ensembl_id']`` (version suffixes are ignored) or gene symbols
(``var['feature_name']`` or symbol ``var_names``), which are mapped to Ensembl IDs through the
variant's ``gene_mapping_dictionary`` (upstream's ``ensembl_mapping_dict``, which maps symbols as
well as IDs); CHECK_VOCABULARY counts how many map and provenance records it. Cells none of whose expressed genes the model knows, and cells whose
``obs['filter_pass']`` is present and not 1 (upstream does not tokenize them), are kept in the output
with ``embedded = False`` (NaN rows) and counted in provenance. The forward pass runs in float32
unless ``--precision`` asks for bfloat16/float16 autocast.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

from czbenchmarks.datasets import DataType, Organism, SingleCellDataset
from czbenchmarks.models.geneformer import DEFAULT_VARIANT, PRECISIONS, check_precision
from czbenchmarks.models.implementations import BaseModelImplementation
from czbenchmarks.models.types import ModelType
from czbenchmarks.models.validators import BaseSingleCellValidator

logger = logging.getLogger("geneformer_model")


class GeneformerValidator(BaseSingleCellValidator):
    """Geneformer's vocabulary is human Ensembl genes; ranks are computed from raw counts."""

    available_organisms = [Organism.HUMAN]
    required_obs_keys: List[str] = []
    required_var_keys: List[str] = []
    model_type = ModelType.GENEFORMER
    # Upstream's tokenizer only warns on non-count input; it normalises by each cell's total and
    # ranks by value / gene median, so log-normalised input can rank genes differently.
    requires_raw_counts = False
    raw_counts_reason = ("upstream Geneformer only warns; it normalises each cell by its total and ranks genes by "
                         "value / median, so log-normalised values may rank genes differently than counts")
    # Ensembl IDs in var_names or var['ensembl_id'], or symbols the weights' mapping dictionary maps.
    gene_identifiers = "ensembl_or_mapped_symbols"
    gene_identifiers_reason = "Geneformer's vocabulary is keyed by Ensembl ID"

    @property
    def inputs(self) -> Set[DataType]:
        return {DataType.ANNDATA}

    @property
    def outputs(self) -> Set[DataType]:
        return {DataType.EMBEDDING}


class Geneformer(GeneformerValidator, BaseModelImplementation):
    model_name = "geneformer"
    streams_input = True  # X is read in row slices, never loaded whole

    def create_parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("--model_variant", default=DEFAULT_VARIANT)
        parser.add_argument("--tokenize_batch_size", type=int, default=1024,
                            help="cells read, tokenized and embedded together (bounds memory)")
        parser.add_argument("--forward_batch_size", type=int, default=16,
                            help="cells per forward pass (czbenchmarks: 16)")
        parser.add_argument("--precision", default=None, choices=list(PRECISIONS),
                            help="forward-pass precision (default float32, as upstream); bfloat16/float16: "
                                 "autocast with SDPA attention, on GPU or CPU (bfloat16)")
        parser.add_argument("--amp_dtype", default=None, choices=list(PRECISIONS),
                            help="deprecated alias of --precision")
        return parser

    def precision(self) -> str:
        """The forward-pass precision: --precision, else the deprecated --amp_dtype, else float32."""
        chosen = getattr(self.args, "precision", None) or getattr(self.args, "amp_dtype", None) or PRECISIONS[0]
        return check_precision(chosen)

    # -- configuration ---------------------------------------------------------------------
    def variant_settings(self) -> Dict[str, Any]:
        """This variant's block of containers/geneformer/config.yaml."""
        from czbenchmarks.models.geneformer import find_config, load_config, variant_config

        path = find_config(getattr(self.args, "model_config", None), script=__file__)
        return variant_config(load_config(path), self.args.model_variant)

    def get_model_weights_subdir(self, dataset: SingleCellDataset) -> str:
        return self.args.model_variant

    @property
    def vocabulary_file(self) -> Optional[str]:  # type: ignore[override]
        """The variant's token dictionary, relative to the weights folder: CHECK_VOCABULARY then maps
        the dataset's genes (symbols included) on the fetched dictionaries."""
        try:
            return str(self.variant_settings()["token_dictionary"])
        except (FileNotFoundError, ValueError, KeyError):
            return None

    def find_vocabulary_file(self) -> Optional[Path]:
        """The variant's token dictionary in the weights folder (for the vocabulary-overlap check)."""
        if self.vocabulary_path is not None:
            return super().find_vocabulary_file()
        try:
            relative = self.variant_settings()["token_dictionary"]
        except (FileNotFoundError, ValueError):
            return None
        for folder in self.vocabulary_search_dirs():
            if (folder / relative).is_file():
                return folder / relative
        return None

    def gene_plan(self, dataset: SingleCellDataset):
        """How the dataset's genes map onto the fetched variant's vocabulary (``None``: weights not local)."""
        from czbenchmarks.models.geneformer.tokenizer import plan_genes

        token_file = self.find_vocabulary_file()
        if token_file is None:
            return None
        settings = self.variant_settings()
        root = token_file.parents[len(Path(settings["token_dictionary"]).parts) - 1]
        dictionaries = self.load_dictionaries(root, settings)
        adata = dataset.adata
        return plan_genes(adata.var_names, adata.var, dictionaries)

    @staticmethod
    def load_dictionaries(root: Path, settings: Dict[str, Any]):
        """The variant's token, median and mapping dictionaries under ``root`` (the weights folder);
        upstream's ``gene_name_id_dict`` beside the mapping dictionary, when fetched with it, adds
        the symbol -> ID entries the mapping lacks."""
        from czbenchmarks.models.geneformer import GeneDictionaries
        from czbenchmarks.models.geneformer.tokenizer import name_dictionary_beside

        mapping = settings.get("gene_mapping_dictionary")
        mapping_file = root / mapping if mapping and (root / mapping).is_file() else None
        return GeneDictionaries.load(root / settings["token_dictionary"], root / settings["gene_median_dictionary"],
                                     mapping_file, name_dictionary_beside(mapping_file))

    def vocabulary_reasons(self, dataset: SingleCellDataset) -> List[str]:
        """No dataset gene resolves to the vocabulary, directly or through the mapping dictionary."""
        plan = self.gene_plan(dataset)
        if plan is None:
            return []
        self.vocabulary_facts = plan.summary()
        if plan.n_known_genes:
            return []
        return [f"none of the dataset's {plan.n_columns} genes ({plan.source}, e.g. {plan.unknown_examples[:3]}) "
                f"is in the {self.args.model_variant} vocabulary, directly or through its gene mapping dictionary"]

    def _download_model_weights(self, dataset: SingleCellDataset) -> None:
        from czbenchmarks.utils import sync_s3_to_local
        from czbenchmarks.weights import split_s3_uri, weight_sources

        # Standalone runs: the same layout FETCH_WEIGHTS builds (model at the root, dictionaries
        # in the extra_uris subfolder).
        settings = self.variant_settings()
        for uri, subdir in weight_sources(self.model_name, self.args.model_variant, settings, None):
            bucket, prefix = split_s3_uri(uri)
            sync_s3_to_local(bucket, prefix, str(Path(self.model_weights_dir) / subdir))

    # -- inference -------------------------------------------------------------------------
    def run_model(self, dataset: SingleCellDataset) -> None:
        import time

        import numpy as np
        import torch

        from czbenchmarks.device import select_device
        from czbenchmarks.models.geneformer import (
            PAD_TOKEN,
            embed_token_batches,
            filter_pass_mask,
            load_encoder,
            tokenizer_for_variant,
        )
        from czbenchmarks.models.geneformer.embedding import run_info
        from czbenchmarks.models.geneformer.tokenizer import name_dictionary_beside

        settings = self.variant_settings()
        device = select_device(self.args.device)
        torch.manual_seed(self.args.seed)  # inference is deterministic; this only pins any RNG use
        weights = Path(self.model_weights_dir)
        mapping = settings.get("gene_mapping_dictionary")
        dictionaries = self.load_dictionaries(weights, settings)
        tokenizer = tokenizer_for_variant(dictionaries, settings, batch_size=self.args.tokenize_batch_size)
        adata = dataset.adata
        plan = tokenizer.plan(adata)
        if plan.n_known_genes == 0:
            raise ValueError(
                f"none of the dataset's {plan.n_columns} genes ({plan.source}, e.g. {plan.unknown_examples[:3]}) "
                f"is in the {self.args.model_variant} vocabulary"
            )
        emb_layer, emb_mode = int(settings["emb_layer"]), str(settings["emb_mode"])
        precision = self.precision()
        loaded = load_encoder(weights, device=device, emb_layer=emb_layer, precision=precision)
        specials = [dictionaries.token[t] for t in ("<cls>", "<eos>") if t in dictionaries.token]
        embeddings = np.zeros((adata.n_obs, loaded.hidden_size), dtype=np.float32)
        embedded = np.zeros(adata.n_obs, dtype=bool)
        started = time.perf_counter()
        for start, block, ok in embed_token_batches(
            loaded,
            tokenizer.iter_batches(adata, plan, matrix=dataset.counts),
            pad_id=dictionaries.token.get(PAD_TOKEN, 0),
            emb_mode=emb_mode,
            special_ids=specials,
            forward_batch_size=self.args.forward_batch_size,
        ):
            embeddings[start: start + len(block)] = block
            embedded[start: start + len(block)] = ok
        seconds = time.perf_counter() - started
        passing = filter_pass_mask(adata.obs, tokenizer.filter_pass_key)
        n_failing = 0 if passing is None else int((~passing).sum())
        if not embedded.any():
            if passing is not None and not passing.any():
                raise ValueError(f"no cell has obs['{tokenizer.filter_pass_key}'] == 1: nothing to tokenize")
            raise ValueError("no cell expresses a gene in the model's vocabulary")
        if n_failing:
            logger.warning("%d of %d cells fail obs['%s'] and are not tokenized (NaN rows, as upstream leaves them out)",
                           n_failing, adata.n_obs, tokenizer.filter_pass_key)
        logger.info("embedded %d of %d cells (%s, %s)", embedded.sum(), adata.n_obs, self.args.model_variant, device)
        self.embedded_mask = embedded
        self.run_info = {
            "device": device,
            "input_size": tokenizer.model_input_size,
            "special_token": tokenizer.special_token,
            "tokenize_batch_size": tokenizer.batch_size,
            "inference_seconds": round(seconds, 3),  # reading, tokenizing and embedding
            "filter_pass_column": tokenizer.filter_pass_key if passing is not None else None,
            "n_cells_failing_filter_pass": n_failing,
            "n_cells_without_known_genes": int((~embedded).sum()) - n_failing,
            "counts_location": dataset.counts_location or dataset.counts_finding.location,
            "gene_mapping_dictionary": mapping,
            "gene_name_dictionary": getattr(name_dictionary_beside(weights / mapping if mapping else None), "name", None),
            **plan.summary(),
            **run_info(loaded, emb_layer, emb_mode, self.args.forward_batch_size),
        }
        dataset.set_output(self.model_type, DataType.EMBEDDING, embeddings)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    Geneformer().run()
