#!/usr/bin/env python3
"""The model skeleton of czbenchmarks' model developer guide, unchanged but for the one line the
guide leaves open (``embeddings = ...``), here a log-transform of the first 32 genes' counts.

``tests/test_toy_model_e2e.py`` adds it to a copy of the pipeline by following
``docs/adding_a_model.md`` (this script in bin/, ``containers/mymodel/``, one registry entry) and runs
it through ``nextflow run``. ``ModelType.MYMODEL`` is not in the enum: the registry entry's
``model_type: MYMODEL`` registers it.
"""

import argparse

import numpy as np
from omegaconf import OmegaConf

from czbenchmarks.datasets import BaseDataset, DataType, Organism
from czbenchmarks.models.implementations.base_model_implementation import BaseModelImplementation
from czbenchmarks.models.types import ModelType
from czbenchmarks.models.validators import BaseSingleCellValidator
from czbenchmarks.utils import sync_s3_to_local


class MyModelValidator(BaseSingleCellValidator):
    available_organisms = [Organism.HUMAN]
    required_obs_keys = []
    required_var_keys = ["feature_name"]
    model_type = ModelType.MYMODEL


class MyModel(MyModelValidator, BaseModelImplementation):
    def parse_args(self):
        parser = argparse.ArgumentParser()
        parser.add_argument("--model_variant", type=str, default="default")
        return parser.parse_args()

    def get_model_weights_subdir(self, dataset: BaseDataset) -> str:
        return self.args.model_variant

    def _download_model_weights(self, dataset: BaseDataset):
        config = OmegaConf.load("config.yaml")
        model_uri = config.models[self.args.model_variant].model_uri
        bucket = model_uri.split("/")[2]
        key = "/".join(model_uri.split("/")[3:])
        sync_s3_to_local(bucket, key, self.model_weights_dir)

    def run_model(self, dataset: BaseDataset):
        adata = dataset.adata
        embeddings = np.log1p(adata.X[:, :32].toarray())  # np.ndarray
        dataset.set_output(self.model_type, DataType.EMBEDDING, embeddings)

    def run(self):
        super().run()


if __name__ == "__main__":
    MyModel().run()
