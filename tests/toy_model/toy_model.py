#!/usr/bin/env python3
"""Toy model: a seeded random projection of log-normalised counts.

Written the way czbenchmarks' model developer guide shows a model — a validator mixed into a
``BaseModelImplementation`` subclass, a ``parse_args`` override, weights routed per variant —
so that the test suite can check such a model joins the pipeline with one registry entry.
Its "weights" are a JSON file (seed, number of components) and a gene vocabulary.
"""

import argparse
import json
from pathlib import Path
from typing import Set

from czbenchmarks.datasets import DataType, Organism, SingleCellDataset
from czbenchmarks.models.implementations.base_model_implementation import BaseModelImplementation
from czbenchmarks.models.types import ModelType
from czbenchmarks.models.validators import BaseSingleCellValidator


class ToyValidator(BaseSingleCellValidator):
    """Human and mouse data, raw counts, and at least half of the genes in the toy vocabulary."""

    available_organisms = [Organism.HUMAN, Organism.MOUSE]
    required_obs_keys = []
    required_var_keys = []
    model_type = ModelType("TOY")  # a registry model: no edit of czbenchmarks' ModelType needed
    requires_raw_counts = True
    vocabulary_file = "genes.txt"  # inside the weights folder
    min_vocabulary_overlap = 0.5

    @property
    def inputs(self) -> Set[DataType]:
        return {DataType.ANNDATA, DataType.METADATA}

    @property
    def outputs(self) -> Set[DataType]:
        return {DataType.EMBEDDING}


class ToyModel(ToyValidator, BaseModelImplementation):
    def parse_args(self):
        parser = argparse.ArgumentParser()
        parser.add_argument("--model_variant", type=str, default="toy_v1")
        return parser.parse_args()

    def get_model_weights_subdir(self, dataset: SingleCellDataset) -> str:
        return self.args.model_variant

    def _download_model_weights(self, dataset: SingleCellDataset) -> None:
        import shutil

        from omegaconf import OmegaConf

        from czbenchmarks.utils import sync_s3_to_local

        config_path = Path(self.args.model_config or Path(__file__).with_name("config.yaml"))
        config = OmegaConf.load(config_path)
        model_uri = str(config.models[self.args.model_variant].model_uri)
        if model_uri.startswith("s3://"):
            bucket, _, key = model_uri[len("s3://"):].partition("/")
            sync_s3_to_local(bucket, key, self.model_weights_dir)
        else:
            source = config_path.parent / model_uri
            shutil.copytree(source, self.model_weights_dir, dirs_exist_ok=True)

    def run_model(self, dataset: SingleCellDataset) -> None:
        import numpy as np
        import scipy.sparse as sp

        weights = Path(self.model_weights_dir)
        params = json.loads((weights / "projection.json").read_text())
        vocabulary = [g for g in (weights / self.vocabulary_file).read_text().split() if g]
        adata = dataset.adata
        genes = [str(g) for g in dataset.gene_ids]
        column = {gene: i for i, gene in enumerate(vocabulary)}
        keep = [i for i, gene in enumerate(genes) if gene in column]
        counts = sp.csr_matrix(adata.X)[:, keep].astype(np.float64)
        # Genes in vocabulary order; genes the dataset lacks stay zero.
        align = sp.csr_matrix(
            (np.ones(len(keep)), ([*range(len(keep))], [column[genes[i]] for i in keep])),
            shape=(len(keep), len(vocabulary)),
        )
        x = (counts @ align).tocsr()
        totals = np.asarray(x.sum(axis=1)).ravel()
        totals[totals == 0] = 1.0
        x = sp.diags(params["target_sum"] / totals) @ x
        x.data = np.log1p(x.data)
        rng = np.random.default_rng(params["seed"])
        projection = rng.normal(size=(len(vocabulary), params["n_components"])) / np.sqrt(params["n_components"])
        embedding = np.asarray(x @ projection, dtype=np.float32)
        dataset.set_output(self.model_type, DataType.EMBEDDING, embedding)


if __name__ == "__main__":
    ToyModel().run()
