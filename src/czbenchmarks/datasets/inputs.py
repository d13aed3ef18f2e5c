"""Where a dataset keeps what models read: its raw counts, and its gene symbols.

Real h5ad files differ from the CELLxGENE layout the models were written against:

* **Counts.** Many files keep normalised values in ``X`` and the raw counts in ``layers['counts']``
  or in ``raw.X``. A *counts location* names the matrix: ``"X"``, ``"raw.X"`` or ``"layers/<name>"``
  (the samplesheet column ``counts_layer`` takes ``X``, ``raw.X`` or a layer name). Left empty, the
  gate detects it, in this order, taking the first whose sampled rows are integer-valued:
  ``X``, ``layers['counts']``, ``layers['raw_counts']``, ``raw.X`` (:data:`COUNTS_CANDIDATES`).
  When none is, the location is ``X`` and its values are "not raw counts" (each model's validator
  says whether it can take that). VALIDATE records the location; every consumer then reads that
  matrix through :func:`counts_matrix` instead of detecting again.
* **Gene symbols.** scGPT, UCE and scGenePT read gene symbols from ``var['feature_name']``
  (CELLxGENE). 10x/Seurat exports carry the symbols as ``var_names`` instead; when no var name
  looks like an Ensembl ID those are used (:func:`find_gene_symbols`), and the source is recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pandas as pd

#: Detection order of the counts matrix when the samplesheet names none.
COUNTS_CANDIDATES = ("X", "layers/counts", "layers/raw_counts", "raw.X")
#: The var column of gene symbols in CELLxGENE-style files.
SYMBOL_COLUMN = "feature_name"
#: An Ensembl gene ID of any species (ENSG, ENSMUSG, ENSDARG, ...), version suffix allowed.
ENSEMBL_LIKE = re.compile(r"^ENS[A-Z]*G\d+")


class CountsLocationError(ValueError):
    """A counts location that does not exist in the dataset (or cannot be aligned with its genes)."""


class CountsAbsentError(CountsLocationError):
    """The dataset has no matrix at that counts location."""


def parse_counts_location(value: Optional[str]) -> str:
    """Canonical counts location from a samplesheet value: ``""`` (detect), ``X``, ``raw.X`` or ``layers/<name>``.

    Accepts ``X``, ``raw.X`` (or ``raw``), ``layers/<name>``, ``layers['<name>']`` and a bare layer name.
    """
    text = str(value or "").strip()
    if not text:
        return ""
    if text == "X":
        return "X"
    if text in ("raw.X", "raw", "raw/X"):
        return "raw.X"
    match = re.fullmatch(r"layers\[['\"]?(.+?)['\"]?\]", text)
    if match:
        return f"layers/{match.group(1)}"
    if text.startswith("layers/"):
        return text
    return f"layers/{text}"


def describe_counts_location(location: str) -> str:
    """How messages name a counts location: ``X``, ``raw.X`` or ``layers['counts']``."""
    if location.startswith("layers/"):
        return f"layers['{location[len('layers/'):]}']"
    return location or "X"


def counts_cli_value(location: str) -> str:
    """The samplesheet/CLI spelling of a canonical location (``layers/counts`` -> ``counts``)."""
    return location[len("layers/"):] if location.startswith("layers/") else location


def h5_counts_element(handle: Any, location: str, n_vars: int, var_names: Optional[pd.Index] = None) -> Any:
    """The HDF5 element (dataset or sparse group) of ``location`` in an open h5ad.

    Raises :class:`CountsLocationError` when it is absent, or when ``raw.X`` has other genes than ``var``
    (consumers index genes by ``var``; a raw with extra genes is not supported).
    """
    from .h5ad import x_shape

    if location == "X":
        return handle["X"]
    if location == "raw.X":
        if "raw" not in handle or "X" not in handle["raw"]:
            raise CountsAbsentError("the file has no raw.X")
        element = handle["raw"]["X"]
        if x_shape(element)[1] != n_vars:
            raise CountsLocationError(
                f"raw.X has {x_shape(element)[1]} genes but var has {n_vars}; subset raw to var's genes first")
        if var_names is not None and "var" in handle["raw"]:
            raw_var = handle["raw"]["var"]
            key = raw_var.attrs.get("_index", "_index")
            if key in raw_var:
                raw_names = pd.Index([n.decode() if isinstance(n, bytes) else str(n) for n in raw_var[key][:]])
                if not raw_names.equals(pd.Index(var_names.astype(str))):
                    raise CountsLocationError("raw.var names differ from var names; raw.X columns cannot be matched")
        return element
    if location.startswith("layers/"):
        name = location[len("layers/"):]
        layers = list(handle["layers"].keys()) if "layers" in handle else []
        if name not in layers:
            raise CountsAbsentError(f"the file has no layer '{name}' (layers: {layers})")
        return handle["layers"][name]
    raise CountsLocationError(f"unknown counts location '{location}'")


def lazy_matrix(element: Any) -> Any:
    """An HDF5 matrix element as something that reads only the rows it is sliced by."""
    import h5py

    if isinstance(element, h5py.Group):
        try:
            from anndata.io import sparse_dataset
        except ImportError:  # pragma: no cover - older anndata
            from anndata.experimental import sparse_dataset
        return sparse_dataset(element)
    return element


def in_memory(matrix: Any) -> Any:
    """``matrix`` read whole into memory (a backed sparse or HDF5 dense element), else unchanged."""
    if hasattr(matrix, "to_memory"):
        return matrix.to_memory()
    if type(matrix).__module__.startswith("h5py"):
        return matrix[()]
    return matrix


#: Rows per block when a matrix is read in slices (a sparse 10x block: ~200 MB at 1,300 non-zeros per cell).
ROW_BLOCK_ROWS = 20_000
#: Values held per row block when a dense matrix is read in slices (~256 MiB of float32).
DENSE_BLOCK_VALUES = 1 << 26


def row_blocks(matrix: Any, chunk_rows: int = ROW_BLOCK_ROWS) -> Iterator[Tuple[int, Any]]:
    """``matrix`` as ``(first row, float32 CSR block)`` pairs of up to ``chunk_rows`` rows.

    ``matrix`` is in memory (scipy sparse, numpy) or on disk (a backed sparse dataset, an HDF5 dense
    dataset): only one block is read at a time, so a pass over a 10⁶-cell file holds one block. Dense
    matrices are read in blocks of at most :data:`DENSE_BLOCK_VALUES` values, whatever ``chunk_rows``.
    """
    import numpy as np
    import scipy.sparse as sp

    n_rows, n_cols = matrix.shape
    sparse = sp.issparse(matrix) or hasattr(matrix, "to_memory")
    step = chunk_rows if sparse else max(1, min(chunk_rows, DENSE_BLOCK_VALUES // max(n_cols, 1)))
    for start in range(0, n_rows, step):
        block = matrix[start: start + step]
        block = block if sp.issparse(block) else sp.csr_matrix(np.asarray(block))
        yield start, sp.csr_matrix(block, dtype=np.float32)


def counts_matrix(adata: Any, where: str) -> Any:
    """The matrix at counts location ``where`` (see :func:`parse_counts_location`) of an AnnData.

    In memory: ``adata.X``, ``adata.raw.X`` or ``adata.layers[name]``. For a backed AnnData (X on disk,
    as :func:`czbenchmarks.datasets.h5ad.open_backed` opens it) the matrix stays on disk too and is
    read row slice by row slice. ``""`` means ``X``.

    Raises:
        CountsLocationError: the location does not exist in this AnnData.
    """
    location = parse_counts_location(where) or "X"
    if location == "X":
        return adata.X
    if getattr(adata, "isbacked", False):
        return lazy_matrix(h5_counts_element(adata.file._file, location, adata.n_vars, adata.var_names))
    if location == "raw.X":
        if adata.raw is None:
            raise CountsAbsentError("the dataset has no raw.X")
        if adata.raw.n_vars != adata.n_vars or not adata.raw.var_names.equals(adata.var_names):
            raise CountsLocationError("raw.var names differ from var names; raw.X columns cannot be matched")
        return adata.raw.X
    name = location[len("layers/"):]
    if name not in adata.layers:
        raise CountsAbsentError(f"the dataset has no layer '{name}' (layers: {list(adata.layers.keys())})")
    return adata.layers[name]


@dataclass
class CountsFinding:
    """Where the gate found the counts, and what each candidate it looked at held."""

    location: str
    #: count_problems of the chosen matrix's sample (empty: integer-valued)
    problems: List[str]
    #: candidate -> "integer" or why not (absent, non-integer, ...), in the order looked at
    looked_at: Dict[str, str]
    requested: bool = False

    @property
    def is_counts(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One sentence for reasons and provenance."""
        where = describe_counts_location(self.location)
        if self.requested:
            how = "as the samplesheet's counts_layer names"
        else:
            others = [f"{describe_counts_location(k)}: {v}" for k, v in self.looked_at.items() if k != self.location]
            how = "detected" + (f" ({'; '.join(others)})" if others else "")
        state = "integer-valued in the sampled cells" if self.is_counts else f"not raw counts ({self.problems[0]})"
        return f"counts read from {where}, {how}; {state}"


def find_counts(sample_of: Any, requested: str = "") -> CountsFinding:
    """Choose the counts location from sampled rows: ``sample_of(location)`` returns the stored values
    of that matrix's sampled rows, or raises :class:`CountsLocationError` when it is absent.

    A requested location is used as is (its absence raises). Otherwise :data:`COUNTS_CANDIDATES` are
    tried in order and the first integer-valued one wins; when none is, ``X`` with its problems.
    """
    from .checks import count_problems, is_broken_value_problem

    if requested:
        values = sample_of(requested)
        return CountsFinding(requested, count_problems(values), {requested: "named"}, requested=True)
    looked_at: Dict[str, str] = {}
    x_problems: List[str] = []
    for candidate in COUNTS_CANDIDATES:
        try:
            values = sample_of(candidate)
        except CountsLocationError as err:
            if candidate != "X":
                looked_at[candidate] = "absent" if isinstance(err, CountsAbsentError) else str(err)
            continue
        problems = count_problems(values)
        if candidate == "X":
            x_problems = problems
        if not problems:
            looked_at[candidate] = "integer"
            return CountsFinding(candidate, [], looked_at)
        broken = [p for p in problems if is_broken_value_problem(p)]
        looked_at[candidate] = (broken or problems)[0].replace("X contains ", "")
    return CountsFinding("X", x_problems, looked_at)


def find_counts_in_adata(adata: Any, requested: str = "", max_cells: int = 2000) -> CountsFinding:
    """:func:`find_counts` on an AnnData (in memory or backed), reading ``max_cells`` rows per candidate."""
    from .checks import sample_rows

    def sample_of(location: str):
        return sample_rows(counts_matrix(adata, location), max_cells)[0]

    return find_counts(sample_of, parse_counts_location(requested))


# -- gene symbols ------------------------------------------------------------------------------
@dataclass(frozen=True)
class GeneSymbols:
    """A dataset's gene symbols (one per var row) and where they came from; ``symbols`` None: none found."""

    source: Optional[str]
    symbols: Optional[pd.Index]


def looks_like_ensembl(names: pd.Index) -> pd.Series:
    """Per name, whether it is an Ensembl gene ID (``ENS[A-Z]*G`` + digits)."""
    return pd.Series(pd.Index(names.astype(str)).str.match(ENSEMBL_LIKE.pattern), index=range(len(names)))


def find_gene_symbols(var_names: pd.Index, var: pd.DataFrame, prefix: str = "") -> GeneSymbols:
    """``var['feature_name']`` when present; else ``var_names`` when they plainly are symbols (no name
    looks like an Ensembl ID nor carries the organism's ID ``prefix``); else none."""
    if SYMBOL_COLUMN in var.columns:
        return GeneSymbols(f"var['{SYMBOL_COLUMN}']", pd.Index(var[SYMBOL_COLUMN].astype(str)))
    names = pd.Index(pd.Index(var_names).astype(str))
    if not len(names) or looks_like_ensembl(names).any():
        return GeneSymbols(None, None)
    if prefix and names.str.startswith(prefix).any():
        return GeneSymbols(None, None)
    return GeneSymbols("var_names (symbols)", names)


def gene_symbols_error() -> str:
    """The reason a symbol-reading model gives for a dataset without gene symbols."""
    return (f"no gene symbols: var has no '{SYMBOL_COLUMN}' column and var_names are not symbols "
            "(they look like Ensembl IDs); add var['feature_name']")
