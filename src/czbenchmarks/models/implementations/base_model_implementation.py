"""``BaseModelImplementation``: load -> validate -> weights -> inference -> write, for one model.

A model is written as in czbenchmarks' model developer guide::

    class MyModel(MyValidator, BaseModelImplementation):
        def create_parser(self): ...            # or override parse_args() as the guide shows
        def get_model_weights_subdir(self, dataset): return self.args.model_variant
        def _download_model_weights(self, dataset): sync_s3_to_local(...)
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
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Dict, Iterator, List, Optional, Sequence, Union

from ...constants import MODEL_WEIGHTS_CACHE_PATH, RANDOM_SEED, get_numbered_path, sort_numbered
from ...datasets.base import BaseDataset
from ...datasets.single_cell import BackedSingleCellDataset, PerturbationSingleCellDataset, SingleCellDataset
from ..validators.base_model_validator import BaseModelValidator

logger = logging.getLogger(__name__)

#: Options only the pipeline uses; they are hidden from a model's own strict parser.
PIPELINE_ONLY_OPTIONS = (
    "input", "output", "dataset_id", "organism", "weights_dir", "model_config",
    "seed", "device", "condition_key", "split_key", "counts_layer", "scvi_batch_columns",
)


def pipeline_parser() -> argparse.ArgumentParser:
    """Options every model script accepts from the pipeline's inference process."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--input", help="dataset h5ad; several: comma-separated, or a folder of .h5ad files")
    parser.add_argument("--output", help="where to write the model output h5ad (numbered for several inputs)")
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
    parser.add_argument(
        "--counts_layer", default="",
        help="where the raw counts are: X, raw.X or a layer name (VALIDATE's verdict; empty: detect)",
    )
    parser.add_argument(
        "--scvi_batch_columns", default="",
        help="scVI batch roles: 'role=obs_column' or 'role==constant', ';'-separated (see bin/scvi_model.py)",
    )
    return parser


def strip_options(argv: Sequence[str], names: Sequence[str], drop_empty: Sequence[str] = ()) -> List[str]:
    """``argv`` without the ``--name value`` / ``--name=value`` pairs of ``names``.

    Options in ``drop_empty`` are removed only when their value is empty.
    """
    out: List[str] = []
    tokens = list(argv)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        name, has_value, value = token[2:].partition("=") if token.startswith("--") else ("", False, "")
        if name in names or name in drop_empty:
            if not has_value and index + 1 < len(tokens):
                value = tokens[index + 1]
                skip = 2
            else:
                skip = 1
            if name in names or value == "":
                index += skip
                continue
        out.append(token)
        index += 1
    return out


@contextmanager
def _patched_argv(argv: Sequence[str]) -> Iterator[None]:
    saved = sys.argv
    sys.argv = [saved[0] if saved else "model", *argv]
    try:
        yield
    finally:
        sys.argv = saved


class BaseModelImplementation(BaseModelValidator, ABC):
    """Base class of every model; mix a validator in before it.

    Attributes:
        datasets: the datasets of the current :meth:`run`.
        model_weights_dir: folder holding the weights in use (set by :meth:`download_model_weights`).
        args: pipeline options, the model's own options and keyword arguments merged
            (keyword arguments win over the command line, as in the reference).
    """

    #: True for models that read X in row slices: their datasets open the h5ad backed.
    streams_input: ClassVar[bool] = False

    datasets: List[BaseDataset]
    model_weights_dir: str
    args: argparse.Namespace

    def __init__(self, argv: Optional[Sequence[str]] = None, **user_kwargs: Any) -> None:
        """Parse ``argv`` (default ``sys.argv[1:]``) and merge ``user_kwargs`` over it."""
        argv = list(sys.argv[1:] if argv is None else argv)
        cli_args = self._model_args(argv)
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

    def _model_args(self, argv: List[str]) -> argparse.Namespace:
        """Run ``parse_args`` — this class's, or a subclass override written as the guide shows.

        The guide's override takes no argument and parses ``sys.argv`` strictly. It is called
        with ``sys.argv`` set to ``argv`` minus the pipeline-only options (and an empty
        ``--model_variant``); the pipeline options are parsed here and merged underneath.
        """
        if type(self).parse_args is BaseModelImplementation.parse_args:
            return self.parse_args(argv)
        namespace, _ = pipeline_parser().parse_known_args(argv)
        model_argv = strip_options(argv, PIPELINE_ONLY_OPTIONS, drop_empty=("model_variant",))
        try:
            with _patched_argv(model_argv):
                model_args = self.parse_args()
        except SystemExit:
            # A strict parser without --model_variant (a model with no variants): retry without it.
            reduced = strip_options(model_argv, ("model_variant",))
            if reduced == model_argv:
                raise
            with _patched_argv(reduced):
                model_args = self.parse_args()
        for key, value in vars(model_args or argparse.Namespace()).items():
            if value is not None or getattr(namespace, key, None) is None:
                setattr(namespace, key, value)
        return namespace

    @staticmethod
    def _merge_arguments(cli_args: Dict[str, Any], user_args: Dict[str, Any]) -> Dict[str, Any]:
        """``{**cli_args, **user_args}``: keyword arguments override the command line."""
        return {**cli_args, **user_args}

    # -- weights ---------------------------------------------------------------------------
    @abstractmethod
    def get_model_weights_subdir(self, dataset: BaseDataset) -> str:
        """Sub-folder of the weights cache for this dataset (per variant or organism); ``""``: the root."""

    @abstractmethod
    def _download_model_weights(self, dataset: BaseDataset) -> None:
        """Fill ``self.model_weights_dir`` (typically with ``sync_s3_to_local``)."""

    def download_model_weights(self, dataset: BaseDataset) -> None:
        """Point ``model_weights_dir`` at usable weights, downloading only when they do not verify.

        In the pipeline ``--weights_dir`` names the folder FETCH_WEIGHTS filled; its manifest
        (when present) is checked: every file's size and modification time against the manifest
        written at fetch, where the sha256 was computed once; only a file whose size or mtime
        changed is hashed again (``weights_verification`` records which). Standalone, weights go under
        ``MODEL_WEIGHTS_CACHE_PATH/<subdir>``; unlike the reference (which reused any
        non-empty folder), a folder is reused only when its manifest verifies, and a manifest is
        written after each download.

        Raises:
            ValueError: the ``--weights_dir`` folder fails verification.
        """
        from ...weights import build_manifest, verify_manifest, write_manifest

        if getattr(self.args, "weights_dir", None):
            self.model_weights_dir = str(self.args.weights_dir)
            rehashed: List[str] = []
            problems = verify_manifest(Path(self.model_weights_dir), require=False, trust_unchanged=True,
                                       rehashed=rehashed)
            self.weights_verification = {
                "method": "size and mtime against the manifest written at fetch (sha256 computed there, once)",
                "rehashed": rehashed,
            }
            if problems:
                raise ValueError(f"Model weights in {self.model_weights_dir} failed verification: {problems[0]}")
            return
        subdir = self.get_model_weights_subdir(dataset)
        target = MODEL_WEIGHTS_CACHE_PATH / subdir if subdir else MODEL_WEIGHTS_CACHE_PATH
        self.model_weights_dir = str(target)
        if target.is_dir() and any(target.iterdir()):
            problems = verify_manifest(target, require=True, trust_unchanged=True)
            if not problems:
                logger.info("Model weights already downloaded and verified in %s", target)
                return
            logger.info("Model weights in %s not reused (%s); downloading again", target, problems[0])
        else:
            logger.info("Downloading model weights to %s", target)
        target.mkdir(parents=True, exist_ok=True)
        self._download_model_weights(dataset)
        write_manifest(target, build_manifest(target, f"{type(self).__name__}:{subdir or '.'}"))

    # -- inference -------------------------------------------------------------------------
    @abstractmethod
    def run_model(self, dataset: BaseDataset) -> None:
        """Run inference and ``dataset.set_output(self.model_type, DataType.EMBEDDING, ...)``."""

    def input_paths(self) -> List[str]:
        """The h5ad files named by ``--input``, in numeric order when there are several.

        ``--input`` is one path, a comma-separated list, or a folder (its ``*.h5ad`` files).
        The order is natural (``data_2`` before ``data_10``), and outputs are numbered in the
        same order, fixing the reference's text sort.
        """
        value = getattr(self.args, "input", None)
        if not value:
            raise ValueError("--input is required when run() is given no datasets")
        if Path(value).is_dir():
            paths = [str(p) for p in Path(value).glob("*.h5ad")]
            if not paths:
                raise FileNotFoundError(f"No input datasets found in {value}")
        else:
            paths = [part.strip() for part in str(value).split(",") if part.strip()]
        return sort_numbered(paths) if len(paths) > 1 else paths

    def output_paths(self, count: int) -> List[str]:
        """Where the outputs of ``count`` inputs go: ``--output`` itself, or numbered siblings of it."""
        output = getattr(self.args, "output", None)
        if not output:
            raise ValueError("--output is required when run() is given no datasets")
        if count == 1:
            return [str(output)]
        return [get_numbered_path(output, index) for index in range(count)]

    def make_dataset(self, path: str) -> BaseDataset:
        """A dataset of the validator's ``dataset_type`` for ``path`` and ``--organism``."""
        if not getattr(self.args, "organism", None):
            raise ValueError("--organism is required when run() is given no datasets")
        from ...datasets.inputs import parse_counts_location

        counts = parse_counts_location(getattr(self.args, "counts_layer", ""))
        if issubclass(self.dataset_type, PerturbationSingleCellDataset):
            dataset = self.dataset_type(
                path,
                self.args.organism,
                condition_key=getattr(self.args, "condition_key", "condition"),
                split_key=getattr(self.args, "split_key", "split"),
            )
        elif self.streams_input and self.dataset_type is SingleCellDataset:
            dataset = BackedSingleCellDataset(path, self.args.organism)
        else:
            dataset = self.dataset_type(path, self.args.organism)
        if counts and isinstance(dataset, SingleCellDataset):
            dataset.counts_location = counts  # where VALIDATE found the counts: not detected again
        return dataset

    def load_dataset(self) -> BaseDataset:
        """The (first) dataset named by ``--input``/``--organism``."""
        return self.make_dataset(self.input_paths()[0])

    def _record_gpu_peak_memory(self) -> None:
        """Put the CUDA allocator's peak (bytes) into ``run_info['gpu_peak_memory']`` when the model ran on
        a GPU (the report's cost table shows it), then reset it for the next dataset. Never imports torch."""
        torch = sys.modules.get("torch")
        cuda = getattr(torch, "cuda", None)
        if cuda is None or not cuda.is_available() or not cuda.is_initialized():
            return
        info = getattr(self, "run_info", None)
        self.run_info = {**(info or {}), "gpu_peak_memory": int(cuda.max_memory_allocated())}
        cuda.reset_peak_memory_stats()

    def run(self, datasets: Optional[Union[BaseDataset, List[BaseDataset]]] = None):
        """Load, validate, fetch weights and run the model; in pipeline mode also write ``--output``.

        Steps: load every dataset (pipeline mode) -> ``dataset.validate()`` and
        ``validate_dataset`` for all -> ``download_model_weights`` -> vocabulary check (when the
        validator declares one) -> ``run_model`` for each. Given datasets (interactive use) they
        are returned with the outputs attached; in pipeline mode nothing is returned.
        """
        from ...outputs import write_model_output

        pipeline_mode = datasets is None
        if pipeline_mode:
            self.datasets = [self.make_dataset(path) for path in self.input_paths()]
        else:
            self.datasets = list(datasets) if isinstance(datasets, list) else [datasets]
        for dataset in self.datasets:
            if pipeline_mode:
                dataset.load_data()
            if getattr(self, "gene_identifiers", "ensembl") != "ensembl" and isinstance(dataset, SingleCellDataset):
                dataset.require_gene_ids = False  # the validator's own gene rule applies (symbols, ...)
            dataset.validate()
            self.validate_dataset(dataset)
        for dataset in self.datasets:
            self.download_model_weights(dataset)
            check = getattr(self, "vocabulary_reasons", None)
            reasons = check(dataset) if callable(check) else []
            if reasons:
                raise ValueError("; ".join(reasons))
        for dataset in self.datasets:
            self.run_model(dataset)
            self._record_gpu_peak_memory()
        if pipeline_mode:
            for dataset, output in zip(self.datasets, self.output_paths(len(self.datasets))):
                write_model_output(dataset, self, Path(output))
            return None
        return self.datasets if isinstance(datasets, list) else self.datasets[0]
