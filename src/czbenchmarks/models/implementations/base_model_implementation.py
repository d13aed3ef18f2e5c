"""``BaseModelImplementation``: load → validate → weights → inference → write, for one model.

A model is written as in czbenchmarks' model developer guide::

    class MyModel(MyValidator, BaseModelImplementation):
        def create_parser(self): ...
        def get_model_weights_subdir(self, dataset): ...
        def _download_model_weights(self, dataset): ...
        def run_model(self, dataset): dataset.set_output(self.model_type, DataType.EMBEDDING, emb)

    if __name__ == "__main__":
        MyModel().run()

In the pipeline, ``run()`` takes its input, output and weights locations from the command line
the Nextflow process passes (``--input``, ``--output``, ``--weights_dir``, ...), not from
fixed container mounts.
"""

from __future__ import annotations

import argparse
import logging
import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ...constants import MODEL_WEIGHTS_CACHE_PATH, RANDOM_SEED
from ...datasets.base import BaseDataset
from ...datasets.single_cell import PerturbationSingleCellDataset
from ..validators.base_model_validator import BaseModelValidator

logger = logging.getLogger(__name__)


def pipeline_parser() -> argparse.ArgumentParser:
    """Options every model script accepts from the pipeline's inference process."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--input", help="dataset h5ad")
    parser.add_argument("--output", help="where to write the model output h5ad")
    parser.add_argument("--dataset_id", default=None, help="dataset name, recorded in provenance")
    parser.add_argument("--organism", default=None, help="dataset organism, e.g. homo_sapiens")
    parser.add_argument("--weights_dir", default=None, help="folder FETCH_WEIGHTS filled")
    parser.add_argument("--model_variant", default=None)
    parser.add_argument("--model_config", default=None, help="the model's config.yaml (standalone downloads)")
    parser.add_argument("--seed", type=int, default=RANDOM_SEED)
    parser.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"],
        help="cuda fails fast when no usable GPU (the gpu profile passes it)",
    )
    parser.add_argument("--condition_key", default="condition")
    parser.add_argument("--split_key", default="split")
    return parser


class BaseModelImplementation(BaseModelValidator, ABC):
    """Base class of every model; mix a validator in before it."""

    datasets: List[BaseDataset]
    model_weights_dir: str
    args: argparse.Namespace

    def __init__(self, argv: Optional[Sequence[str]] = None, **user_kwargs: Any) -> None:
        cli_args = self.parse_args(argv)
        # Keyword arguments override the command line, as in the reference.
        self.args = argparse.Namespace(**self._merge_arguments(vars(cli_args), user_kwargs))
        self.datasets = []
        self.model_weights_dir = ""

    # -- arguments -------------------------------------------------------------------------
    def create_parser(self) -> Optional[argparse.ArgumentParser]:
        """Model-specific options (e.g. ``--model_variant``, ``--gene_pert``); ``None`` for none."""
        return None

    def parse_args(self, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
        """Parse the pipeline options plus ``create_parser()``'s; unknown options are ignored."""
        argv = list(sys.argv[1:] if argv is None else argv)
        namespace, _ = pipeline_parser().parse_known_args(argv)
        model_parser = self.create_parser()
        if model_parser is not None:
            model_args, _ = model_parser.parse_known_args(argv)
            for key, value in vars(model_args).items():
                # A model's own default for a shared option (e.g. model_variant) fills a None.
                if value is not None or getattr(namespace, key, None) is None:
                    setattr(namespace, key, value)
        return namespace

    @staticmethod
    def _merge_arguments(cli_args: Dict[str, Any], user_args: Dict[str, Any]) -> Dict[str, Any]:
        return {**cli_args, **user_args}

    # -- weights ---------------------------------------------------------------------------
    @abstractmethod
    def get_model_weights_subdir(self, dataset: BaseDataset) -> str:
        """Sub-folder of the weights cache for this dataset (per variant or organism); ``""``: the root."""

    @abstractmethod
    def _download_model_weights(self, dataset: BaseDataset) -> None:
        """Fill ``self.model_weights_dir`` (typically with ``sync_s3_to_local``)."""

    def download_model_weights(self, dataset: BaseDataset) -> None:
        """Point ``model_weights_dir`` at usable weights, downloading only when they are not verified.

        In the pipeline ``--weights_dir`` names the folder FETCH_WEIGHTS filled and verified. Standalone,
        weights go under ``MODEL_WEIGHTS_CACHE_PATH``; unlike the reference (which reused any
        non-empty folder), a folder whose manifest does not verify is downloaded again.
        """
        from ...weights import verify_manifest

        if getattr(self.args, "weights_dir", None):
            self.model_weights_dir = str(self.args.weights_dir)
            problems = verify_manifest(Path(self.model_weights_dir), require=False)
            if problems:
                raise ValueError(f"Model weights in {self.model_weights_dir} failed verification: {problems[0]}")
            return
        subdir = self.get_model_weights_subdir(dataset)
        target = MODEL_WEIGHTS_CACHE_PATH / subdir if subdir else MODEL_WEIGHTS_CACHE_PATH
        self.model_weights_dir = str(target)
        if target.is_dir() and any(target.iterdir()) and not verify_manifest(target, require=True):
            logger.info("Model weights already downloaded and verified in %s", target)
            return
        logger.info("Downloading model weights to %s", target)
        target.mkdir(parents=True, exist_ok=True)
        self._download_model_weights(dataset)

    # -- inference -------------------------------------------------------------------------
    @abstractmethod
    def run_model(self, dataset: BaseDataset) -> None:
        """Run inference and ``dataset.set_output(self.model_type, DataType.EMBEDDING, ...)``."""

    def load_dataset(self) -> BaseDataset:
        """Build the dataset named by ``--input``/``--organism`` (of the validator's dataset type)."""
        if not self.args.input or not self.args.organism:
            raise ValueError("--input and --organism are required when run() is given no datasets")
        if issubclass(self.dataset_type, PerturbationSingleCellDataset):
            return self.dataset_type(
                self.args.input,
                self.args.organism,
                condition_key=self.args.condition_key,
                split_key=self.args.split_key,
            )
        return self.dataset_type(self.args.input, self.args.organism)

    def run(self, datasets: Optional[BaseDataset | List[BaseDataset]] = None):
        """Load, validate, fetch weights and run the model; in pipeline mode also write ``--output``.

        Given datasets (interactive use) they are returned with the outputs attached.
        """
        from ...outputs import write_model_output

        pipeline_mode = datasets is None
        if pipeline_mode:
            self.datasets = [self.load_dataset()]
        else:
            self.datasets = datasets if isinstance(datasets, list) else [datasets]
        for dataset in self.datasets:
            if pipeline_mode:
                dataset.load_data()
            dataset.validate()
            self.validate_dataset(dataset)
        for dataset in self.datasets:
            self.download_model_weights(dataset)
            self.run_model(dataset)
        if pipeline_mode:
            if not self.args.output:
                raise ValueError("--output is required when run() is given no datasets")
            write_model_output(self.datasets[0], self, Path(self.args.output))
            return None
        return self.datasets if isinstance(datasets, list) else self.datasets[0]
