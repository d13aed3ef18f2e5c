#!/usr/bin/env python3
"""A test model that fails on purpose, for the end-to-end test of a run that loses one pair.

It embeds cells as the log counts of their first 16 genes, except on the datasets named in
``CZB_TEST_FAULTS`` (``dataset:raise`` or ``dataset:kill``, comma-separated): there it raises, or it
kills itself with SIGKILL as the kernel's OOM killer would. The variable lives in the launch
environment, not in the task's inputs, so ``-resume`` without it reruns exactly the failed pairs.
"""

import argparse
import os
import signal

from czbenchmarks.datasets import DataType, Organism, SingleCellDataset
from czbenchmarks.models.implementations.base_model_implementation import BaseModelImplementation
from czbenchmarks.models.types import ModelType
from czbenchmarks.models.validators import BaseSingleCellValidator


class FaultValidator(BaseSingleCellValidator):
    available_organisms = [Organism.HUMAN]
    required_obs_keys = []
    required_var_keys = []
    model_type = ModelType("FAULT")


class FaultModel(FaultValidator, BaseModelImplementation):
    def create_parser(self) -> argparse.ArgumentParser:
        return argparse.ArgumentParser(add_help=False)

    def get_model_weights_subdir(self, dataset: SingleCellDataset) -> str:
        return "v1"

    def _download_model_weights(self, dataset: SingleCellDataset) -> None:
        return None

    def run_model(self, dataset: SingleCellDataset) -> None:
        import numpy as np

        faults = dict(item.split(":", 1) for item in os.environ.get("CZB_TEST_FAULTS", "").split(",") if ":" in item)
        fault = faults.get(self.args.dataset_id)
        if fault == "raise":
            raise RuntimeError(f"fault model: injected failure on dataset '{self.args.dataset_id}'")
        if fault == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        dataset.set_output(self.model_type, DataType.EMBEDDING, np.log1p(dataset.adata.X[:, :16].toarray()))


if __name__ == "__main__":
    FaultModel().run()
