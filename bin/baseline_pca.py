#!/usr/bin/env python3
"""BASELINE: PCA on highly variable genes, as czbenchmarks' baseline; and the raw-expression baseline.

PCA: normalize_total -> log1p -> 3000 HVGs (seurat flavour) -> 50 PCs, seeded with --seed
(the reference fixed 42 whatever seed the run asked for).

Raw expression (registry entry ``raw_expression``, output ``expression``): the dataset itself is
scored by label prediction, so only its validator runs (in VALIDATE); no process runs this class.
"""

from __future__ import annotations

import argparse
import logging
from typing import List, Set

from czbenchmarks.datasets import DataType, Organism, SingleCellDataset
from czbenchmarks.models.implementations import BaseModelImplementation
from czbenchmarks.models.types import ModelType
from czbenchmarks.models.validators import BaseSingleCellValidator


class BaselineValidator(BaseSingleCellValidator):
    """Baselines take any organism; they need only an expression matrix."""

    available_organisms = list(Organism)
    required_obs_keys: List[str] = []
    required_var_keys: List[str] = []
    model_type = ModelType.BASELINE
    gene_identifiers = "any"  # PCA and raw expression work on any gene names
    raw_counts_reason = "PCA normalises (normalize_total, log1p) whatever matrix it is given"

    @property
    def inputs(self) -> Set[DataType]:
        return {DataType.ANNDATA}

    @property
    def outputs(self) -> Set[DataType]:
        return {DataType.EMBEDDING}

    def _reasons(self, dataset) -> List[str]:
        return []  # no gene-ID rule: PCA works on any gene names


class PcaBaseline(BaselineValidator, BaseModelImplementation):
    model_name = "baseline"
    # X stays on disk: pca_baseline reads it in row slices.
    streams_input = True

    def create_parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("--n_top_genes", type=int, default=3000)
        parser.add_argument("--n_pcs", type=int, default=50)
        return parser

    def get_model_weights_subdir(self, dataset: SingleCellDataset) -> str:
        return ""

    def _download_model_weights(self, dataset: SingleCellDataset) -> None:
        return None

    def download_model_weights(self, dataset: SingleCellDataset) -> None:
        self.model_weights_dir = ""  # nothing to fetch

    def run_model(self, dataset: SingleCellDataset) -> None:
        from czbenchmarks.tasks.baselines import pca_baseline

        # The counts where VALIDATE found them (X, a layer or raw.X), as the models read them, read in
        # row slices straight from the file: the whole matrix is never in memory.
        embedding, info = pca_baseline(
            dataset.counts, n_top_genes=self.args.n_top_genes, n_pcs=self.args.n_pcs, seed=self.args.seed
        )
        self.run_info = {**info, "counts_location": dataset.counts_location or dataset.counts_finding.location}
        dataset.set_output(self.model_type, DataType.EMBEDDING, embedding)


class RawExpressionBaseline(BaselineValidator, BaseModelImplementation):
    """The dataset's own expression as the baseline of label prediction (validated only)."""

    model_name = "baseline"

    @property
    def outputs(self) -> Set[DataType]:
        return set()  # the dataset is the output; nothing is written

    def get_model_weights_subdir(self, dataset: SingleCellDataset) -> str:
        return ""

    def _download_model_weights(self, dataset: SingleCellDataset) -> None:
        return None

    def run_model(self, dataset: SingleCellDataset) -> None:
        raise RuntimeError("raw_expression is scored on the dataset itself; EVALUATE reads it directly")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    PcaBaseline().run()
