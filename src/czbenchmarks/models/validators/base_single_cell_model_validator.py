"""``BaseSingleCellValidator``: organism, obs/var keys, gene naming and vocabulary of a single-cell dataset."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import ClassVar, Iterable, List, Optional, Set, Union

from ...datasets.base import BaseDataset
from ...datasets.checks import find_gene_ids, gene_name_error, gene_prefix_detail
from ...datasets.inputs import find_gene_symbols, gene_symbols_error
from ...datasets.single_cell import SingleCellDataset
from ...datasets.types import Organism
from .base_model_validator import BaseModelValidator

logger = logging.getLogger(__name__)


def read_vocabulary(path: Union[str, os.PathLike]) -> Set[str]:
    """The gene names of a vocabulary file.

    Formats: ``.json`` (a list, or a dict whose keys are the genes, as scGPT's ``vocab.json``),
    ``.pkl``/``.pickle`` (a dict or list, as Geneformer's token dictionary; plain data only,
    see :func:`czbenchmarks.safe_pickle.load_pickle`), ``.csv``/``.tsv`` (the first column, header skipped
    when it is not a gene), anything else: one gene per line. Optionally gzip-compressed.
    """
    import gzip
    import json

    path = Path(path)
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    opener = gzip.open if path.name.endswith(".gz") else open
    if name.endswith((".pkl", ".pickle")):
        from ...safe_pickle import load_pickle

        return {str(k) for k in load_pickle(path, opener)}
    with opener(path, "rt") as handle:
        text = handle.read()
    if name.endswith(".json"):
        data = json.loads(text)
        return {str(k) for k in data}
    lines = [line for line in text.splitlines() if line.strip()]
    if name.endswith((".csv", ".tsv")):
        sep = "\t" if name.endswith(".tsv") else ","
        cells = [line.split(sep)[0].strip().strip('"') for line in lines]
        return set(cells)
    return {line.strip() for line in lines}


class BaseSingleCellValidator(BaseModelValidator):
    """Validator for models that take a :class:`SingleCellDataset`.

    Subclasses set ``available_organisms``, ``required_obs_keys`` and ``required_var_keys``.
    Optional class variables:

    ``requires_raw_counts`` and ``raw_counts_reason``
        the model needs integer counts: VALIDATE marks a dataset in which no counts are found (X,
        layers['counts'], layers['raw_counts'], raw.X; see :mod:`czbenchmarks.datasets.inputs`)
        incompatible, giving ``raw_counts_reason``. When ``False``, ``raw_counts_reason`` (if set)
        is recorded as a note on a passing verdict whose input is not raw counts.
    ``gene_identifiers`` and ``gene_identifiers_reason``
        which gene names the model reads: ``"ensembl"`` (organism-prefixed Ensembl IDs in
        ``var_names`` or ``var['ensembl_id']``), ``"symbols"`` (``var['feature_name']``, or
        ``var_names`` that plainly are symbols), ``"ensembl_or_mapped_symbols"`` (Ensembl IDs, or
        symbols the weights' name->ID table maps; the mapping is counted once the weights are
        fetched) or ``"any"`` (no rule).
    ``vocabulary_file``
        a file in the model's weights listing the genes it knows (see :func:`read_vocabulary`);
        with ``min_vocabulary_overlap`` a dataset sharing too few genes is incompatible.
    ``vocabulary_var_key``
        what to match against the vocabulary: ``None`` for the organism-prefixed gene IDs
        (``var_names`` or ``var['ensembl_id']``), or a var column such as ``feature_name``.
    ``min_vocabulary_overlap``
        an ``int``: at least that many dataset genes in the vocabulary; a ``float`` in (0, 1]:
        at least that fraction of the dataset's genes.
    """

    dataset_type = SingleCellDataset
    available_organisms: ClassVar[List[Organism]]
    required_obs_keys: ClassVar[List[str]]
    required_var_keys: ClassVar[List[str]]
    requires_raw_counts: ClassVar[bool] = False
    raw_counts_reason: ClassVar[str] = ""
    gene_identifiers: ClassVar[str] = "ensembl"
    gene_identifiers_reason: ClassVar[str] = ""
    vocabulary_file: ClassVar[Optional[str]] = None
    vocabulary_var_key: ClassVar[Optional[str]] = None
    min_vocabulary_overlap: ClassVar[Union[int, float]] = 1
    #: Set by the caller (e.g. VALIDATE) to a vocabulary file it located; wins over the search.
    vocabulary_path: Optional[Path] = None

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__name__ == "BaseModelImplementation":
            return
        for attr in ("available_organisms", "required_obs_keys", "required_var_keys"):
            if not hasattr(cls, attr):
                raise TypeError(f"Can't instantiate {cls.__name__} without {attr} class variable")

    # -- the reference's checks (organism, obs keys, var keys) plus gene naming ----------------
    def single_cell_reasons(self, dataset: BaseDataset) -> List[str]:
        """Every reason among: organism, obs keys, var keys, organism gene-ID prefix."""
        reasons: List[str] = []
        if dataset.organism not in self.available_organisms:
            # The reference forgot the f-prefix on the second half and printed the braces.
            reasons.append(f"Dataset organism {dataset.organism} is not supported for {self.__class__.__name__}")
        adata = dataset.adata
        missing_obs = [key for key in self.required_obs_keys if key not in adata.obs.columns]
        if missing_obs:
            reasons.append(f"Missing required obs keys: {missing_obs}")
        missing_var = [key for key in self.required_var_keys if key not in adata.var.columns]
        if missing_var:
            reasons.append(f"Missing required var keys: {missing_var}")
        reasons.extend(self.gene_identifier_reasons(dataset))
        return reasons

    def gene_identifier_reasons(self, dataset: BaseDataset) -> List[str]:
        """Why the dataset's gene names do not suit ``gene_identifiers`` (empty list: they do)."""
        adata = dataset.adata
        policy = self.gene_identifiers
        if policy == "any":
            return []
        has_ids = find_gene_ids(adata.var_names, adata.var, dataset.organism).ids is not None
        symbols = find_gene_symbols(adata.var_names, adata.var, dataset.organism.prefix)
        why = f" ({self.gene_identifiers_reason})" if self.gene_identifiers_reason else ""
        if policy == "symbols":
            return [] if symbols.symbols is not None else [gene_symbols_error() + why]
        if policy == "ensembl_or_mapped_symbols" and (has_ids or symbols.symbols is not None):
            return []
        if has_ids:
            return []
        detail = gene_prefix_detail(adata.var_names, adata.var, dataset.organism)
        return [f"{gene_name_error(dataset.organism)} ({detail}){why}"]

    def gene_identifier_source(self, dataset: BaseDataset) -> str:
        """Where the gene names this model reads come from (for notes and provenance)."""
        adata = dataset.adata
        ids = find_gene_ids(adata.var_names, adata.var, dataset.organism)
        symbols = find_gene_symbols(adata.var_names, adata.var, dataset.organism.prefix)
        if self.gene_identifiers == "symbols":
            return f"gene symbols from {symbols.source}" if symbols.source else ""
        if self.gene_identifiers in ("ensembl", "ensembl_or_mapped_symbols") and ids.source:
            return f"Ensembl IDs from {ids.source}"
        if self.gene_identifiers == "ensembl_or_mapped_symbols" and symbols.source:
            return (f"gene symbols from {symbols.source}, mapped to Ensembl IDs through the weights' "
                    "name->ID table (counted by CHECK_VOCABULARY)")
        return ""

    def _validate_dataset(self, dataset: BaseDataset) -> None:
        """Raise ``ValueError`` with the reasons of :meth:`single_cell_reasons`."""
        reasons = self.single_cell_reasons(dataset)
        if reasons:
            raise ValueError("; ".join(reasons))

    def _reasons(self, dataset: BaseDataset) -> List[str]:
        # A subclass that overrides _validate_dataset (usually calling super) is honoured;
        # otherwise every base reason is listed separately.
        if type(self)._validate_dataset is BaseSingleCellValidator._validate_dataset:
            return self.single_cell_reasons(dataset)
        return super()._reasons(dataset)

    # -- vocabulary overlap (optional) ---------------------------------------------------------
    def vocabulary_search_dirs(self) -> List[Path]:
        """Folders searched for ``vocabulary_file``: the weights folder in use, then ``--weights_dir``."""
        dirs: List[Path] = []
        for value in (getattr(self, "model_weights_dir", None), getattr(getattr(self, "args", None), "weights_dir", None)):
            if value:
                dirs.append(Path(value))
        return dirs

    def find_vocabulary_file(self) -> Optional[Path]:
        """The vocabulary file if it is available locally now (``None`` otherwise or when none is declared)."""
        if self.vocabulary_path is not None:
            return Path(self.vocabulary_path) if Path(self.vocabulary_path).is_file() else None
        if not self.vocabulary_file:
            return None
        if os.path.isabs(self.vocabulary_file):
            path = Path(self.vocabulary_file)
            return path if path.is_file() else None
        for folder in self.vocabulary_search_dirs():
            path = folder / self.vocabulary_file
            if path.is_file():
                return path
        return None

    def load_vocabulary(self) -> Optional[Set[str]]:
        """The model's gene vocabulary, or ``None`` when it cannot be read yet (override to supply one)."""
        path = self.find_vocabulary_file()
        return read_vocabulary(path) if path is not None else None

    def dataset_genes(self, dataset: BaseDataset) -> List[str]:
        """The dataset's genes as matched against the vocabulary (see ``vocabulary_var_key``)."""
        adata = dataset.adata
        if self.gene_identifiers == "symbols":  # var['feature_name'], or symbol var_names
            found = find_gene_symbols(adata.var_names, adata.var, dataset.organism.prefix)
            return [] if found.symbols is None else [str(g) for g in found.symbols]
        if self.vocabulary_var_key:
            if self.vocabulary_var_key not in adata.var.columns:
                return []
            return [str(g) for g in adata.var[self.vocabulary_var_key]]
        found = find_gene_ids(adata.var_names, adata.var, dataset.organism)
        ids = found.ids if found.ids is not None else adata.var_names
        # Versioned Ensembl IDs (ENSG...15.3) match their unversioned vocabulary entries.
        return [str(g).split(".")[0] if str(g).startswith("ENS") else str(g) for g in ids]

    def vocabulary_overlap(self, dataset: BaseDataset, vocabulary: Iterable[str]) -> int:
        """How many of the dataset's distinct genes are in ``vocabulary``."""
        vocab = vocabulary if isinstance(vocabulary, (set, frozenset)) else set(vocabulary)
        return sum(1 for gene in set(self.dataset_genes(dataset)) if gene in vocab)

    def vocabulary_reasons(self, dataset: BaseDataset) -> List[str]:
        """A reason when too few of the dataset's genes are in the model's vocabulary.

        Returns ``[]`` when the model declares no vocabulary or it is not available locally
        yet (the check then runs again in ``run()`` once the weights are in place).
        """
        vocabulary = self.load_vocabulary()
        if vocabulary is None:
            logger.info("vocabulary of %s not available yet; overlap not checked", type(self).__name__)
            return []
        genes = set(self.dataset_genes(dataset))
        overlap = self.vocabulary_overlap(dataset, vocabulary)
        minimum = self.min_vocabulary_overlap
        if isinstance(minimum, float) and 0 < minimum <= 1:
            needed = max(1, math.ceil(minimum * len(genes)))
            rule = f"{minimum:.0%} of its {len(genes)} genes"
        else:
            needed = int(minimum)
            rule = f"{needed} genes"
        if overlap >= needed:
            return []
        if self.gene_identifiers == "symbols":
            adata = dataset.adata
            key = find_gene_symbols(adata.var_names, adata.var, dataset.organism.prefix).source or "gene symbols"
        else:
            key = f"var['{self.vocabulary_var_key}']" if self.vocabulary_var_key else "gene IDs"
        return [
            f"only {overlap} of {len(genes)} genes ({key}) are in the model's vocabulary "
            f"({len(vocabulary)} genes); at least {rule} needed"
        ]
