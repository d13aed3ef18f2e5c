"""Geneformer's rank-value encoding, streamed from an h5ad in row batches.

A cell becomes the list of its expressed, in-vocabulary genes ordered by how far their
expression stands above that gene's typical level:

1. each dataset gene is resolved to a vocabulary key (an Ensembl ID without version suffix;
   gene symbols go through the mapping dictionary); columns that resolve to the same key are
   summed, as upstream's ``collapse_gene_ids`` does;
2. the cell's counts are normalised by its total (``obs['n_counts']`` when present, otherwise the
   sum over *all* of the dataset's genes), scaled by ``target_sum`` (10,000) and by each gene's
   median from the gene median dictionary;
3. genes with a non-zero value are sorted by that value, descending, and mapped to token ids;
4. the list is cut to the model input size; the 4096-input (gc95M) dictionaries get ``<cls>``
   in front and ``<eos>`` behind (then ``input_size - 2`` genes fit).

Cells whose ``obs['filter_pass']`` is present and not equal to 1 are not tokenized (upstream
leaves them out of its dataset; here they yield no gene tokens, so they keep their row and are
recorded as not embedded).

**Arithmetic.** Upstream writes ``X / n_counts * target_sum / medians``. On a sparse X (every
CELLxGENE h5ad) scipy evaluates ``sparse / dense`` as a multiplication by the reciprocal, so the
values upstream ranks are ``((x * (1 / n)) * target_sum) * (1 / median)``; on a dense X numpy
divides. The two differ in the last bit often enough to swap near-equal neighbours (a count pair
such as 22 and 17 on genes with medians 0.7833 and 0.6053 in a cell of 28,856 counts ranks one way
by division and the other by reciprocal), so the tokenizer applies the same operations, in the same
dtypes, as upstream does for the way X is stored: reciprocal multiplication for sparse X, division
for dense X. The ranks then agree with Geneformer's tokenizer to the bit wherever upstream's order
is defined.

**Ties.** Where two genes of a cell end with exactly equal values, upstream's order is not defined:
``np.argsort`` (not stable) leaves it to the sort implementation, which differs with array length
and CPU (numpy dispatches to SIMD sorts). Exact ties come from equal counts on genes with equal
medians: the real gc95M median dictionary has 9 groups of genes sharing one median (107 genes, the
largest group 72), gc30M has 11 (22 genes). Here ties are broken by dataset column order (a stable
sort), and each batch reports which cells' emitted tokens depend on a tie-break (``tied``).

A cell with nothing to rank (no known gene expressed, or a zero total) yields no gene tokens instead
of ``NaN`` ranks. X is read ``batch_size`` rows at a time and only ever densified one batch at a time
when it is stored dense, so memory does not grow with the number of cells.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]

PAD_TOKEN = "<pad>"
MASK_TOKEN = "<mask>"
CLS_TOKEN = "<cls>"
EOS_TOKEN = "<eos>"
#: Geneformer's default normalisation target (counts per 10,000).
TARGET_SUM = 10_000
#: Column of var that holds Ensembl IDs in CELLxGENE-style datasets (and upstream's tokenizer).
ENSEMBL_ID_COLUMN = "ensembl_id"
#: Column of var that holds gene symbols in CELLxGENE-style datasets.
SYMBOL_COLUMN = "feature_name"
#: Column of obs that, when present, selects the cells to tokenize (value 1), as upstream.
FILTER_PASS_KEY = "filter_pass"


def strip_version(gene_id: str) -> str:
    """``ENSG00000141510.17`` → ``ENSG00000141510``; symbols (which may contain dots) are left alone."""
    gene_id = str(gene_id)
    if gene_id.upper().startswith("ENS") and "." in gene_id:
        return gene_id.split(".", 1)[0]
    return gene_id


def filter_pass_mask(obs: pd.DataFrame, key: str = FILTER_PASS_KEY) -> Optional[np.ndarray]:
    """Per cell, whether upstream would tokenize it: ``obs[key] == 1`` (True and 1.0 pass; False,
    0, NaN and strings do not); ``None`` when the column is absent (every cell passes)."""
    if not key or key not in obs.columns:
        return None
    return np.array([value == 1 for value in obs[key]], dtype=bool)


def _load_pickle(path: PathLike) -> Dict[Any, Any]:
    # Upstream's pickles; weights may come from a mirror, so only plain data is unpickled.
    from ...safe_pickle import load_pickle

    value = load_pickle(path)
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a pickled dict, found {type(value).__name__}")
    return value


@dataclass
class GeneDictionaries:
    """Geneformer's three gene dictionaries.

    ``token``: vocabulary key (Ensembl ID or special token) → token id;
    ``median``: Ensembl ID → non-zero median expression used to scale that gene;
    ``mapping``: Ensembl ID *or* gene symbol → Ensembl ID (upstream's ``ensembl_mapping_dict``,
    or a symbol → ID table such as V1's ``gene_name_id_dict``); ``None``: identity.
    """

    token: Dict[str, int]
    median: Dict[str, float]
    mapping: Optional[Dict[str, str]] = None

    @classmethod
    def load(
        cls,
        token_file: PathLike,
        median_file: PathLike,
        mapping_file: Optional[PathLike] = None,
        name_file: Optional[PathLike] = None,
    ) -> "GeneDictionaries":
        """Read the pickles (numpy scalar values are turned into plain ints and floats).

        ``name_file`` (upstream's ``gene_name_id_dict``: symbol -> Ensembl ID) adds the symbols the
        mapping dictionary lacks: the gc95M ``ensembl_mapping_dict`` maps symbols too, the gc30M one
        maps Ensembl IDs only. Entries of ``mapping_file`` win.
        """
        token = {str(k): int(v) for k, v in _load_pickle(token_file).items()}
        median = {str(k): float(v) for k, v in _load_pickle(median_file).items()}
        mapping = None
        if name_file is not None:
            mapping = {str(k): str(v) for k, v in _load_pickle(name_file).items() if v is not None}
        if mapping_file is not None:
            mapping = {**(mapping or {}),
                       **{str(k): str(v) for k, v in _load_pickle(mapping_file).items() if v is not None}}
        return cls(token=token, median=median, mapping=mapping)

    def special_id(self, name: str) -> Optional[int]:
        """Token id of a special token (``<pad>``, ``<cls>``, ...), ``None`` when absent."""
        return self.token.get(name)

    @property
    def gene_keys(self) -> List[str]:
        """Vocabulary keys that are genes (not special tokens) and have a median."""
        return [k for k in self.token if not k.startswith("<") and k in self.median]


def name_dictionary_beside(mapping_file: Optional[PathLike]) -> Optional[Path]:
    """Upstream's ``gene_name_id_dict_<corpus>.pkl`` next to ``ensembl_mapping_dict_<corpus>.pkl``, if present."""
    if mapping_file is None:
        return None
    path = Path(mapping_file)
    candidate = path.with_name(path.name.replace("ensembl_mapping_dict", "gene_name_id_dict"))
    return candidate if candidate != path and candidate.is_file() else None


@dataclass
class GenePlan:
    """How a dataset's columns feed the vocabulary.

    ``columns[j]`` (dataset column index) adds into output slot ``slots[j]``; slot ``s`` has token
    ``tokens[s]`` and median ``medians[s]``. Slots are in order of first appearance among the
    columns, which is the tie-break order of the ranking.
    """

    n_columns: int
    columns: np.ndarray
    slots: np.ndarray
    tokens: np.ndarray
    medians: np.ndarray
    source: str
    n_mapped_via_dictionary: int = 0
    n_collapsed: int = 0
    unknown_examples: List[str] = field(default_factory=list)

    @property
    def n_known_genes(self) -> int:
        """Distinct vocabulary genes the dataset contributes."""
        return int(len(self.tokens))

    def summary(self) -> Dict[str, Any]:
        """Facts for provenance: how many of the dataset's genes the model can see."""
        return {
            "gene_id_source": self.source,
            "n_dataset_genes": int(self.n_columns),
            "n_genes_in_vocabulary": self.n_known_genes,
            "n_columns_used": int(len(self.columns)),
            "n_mapped_via_dictionary": int(self.n_mapped_via_dictionary),
            "n_collapsed_duplicates": int(self.n_collapsed),
        }


def dataset_gene_keys(var_names: Sequence[str], var: Optional[pd.DataFrame] = None) -> tuple[List[str], str]:
    """The per-column gene names to look up, and where they came from.

    Preference: ``var['ensembl_id']`` (upstream's input contract), then ``var_names`` when they are
    Ensembl IDs, then gene symbols (``var['feature_name']``, else ``var_names``) for the mapping
    dictionary to resolve. Version suffixes of Ensembl IDs are stripped.
    """
    names = pd.Index([str(x) for x in var_names])
    if var is not None and ENSEMBL_ID_COLUMN in var.columns:
        column = var[ENSEMBL_ID_COLUMN].astype(str)
        if column.str.upper().str.startswith("ENS").all():
            return [strip_version(x) for x in column], f"var['{ENSEMBL_ID_COLUMN}']"
    if len(names) and names.str.upper().str.startswith("ENS").all():
        return [strip_version(x) for x in names], "var_names"
    if var is not None and SYMBOL_COLUMN in var.columns:
        return [str(x) for x in var[SYMBOL_COLUMN].astype(str)], f"var['{SYMBOL_COLUMN}'] (symbols)"
    return list(names), "var_names (symbols)"


def plan_genes(
    var_names: Sequence[str],
    var: Optional[pd.DataFrame],
    dictionaries: GeneDictionaries,
) -> GenePlan:
    """Resolve every dataset column to a vocabulary gene (or to nothing).

    A key goes through the mapping dictionary first (upper-cased, as upstream), and is used as-is
    when the mapping does not know it; either way it must end in the token and median dictionaries.
    """
    keys, source = dataset_gene_keys(var_names, var)
    vocabulary = set(dictionaries.gene_keys)
    mapping = dictionaries.mapping or {}
    slot_of: Dict[str, int] = {}
    columns: List[int] = []
    slots: List[int] = []
    n_mapped = 0
    unknown: List[str] = []
    for column, key in enumerate(keys):
        mapped = mapping.get(key.upper()) or mapping.get(key)
        if mapped is not None:
            mapped = strip_version(mapped)
        if mapped in vocabulary:
            resolved = mapped
            n_mapped += int(mapped != key)
        elif key in vocabulary:
            resolved = key
        else:
            if len(unknown) < 10:
                unknown.append(key)
            continue
        if resolved not in slot_of:
            slot_of[resolved] = len(slot_of)
        columns.append(column)
        slots.append(slot_of[resolved])
    genes = list(slot_of)
    return GenePlan(
        n_columns=len(keys),
        columns=np.asarray(columns, dtype=np.int64),
        slots=np.asarray(slots, dtype=np.int64),
        tokens=np.asarray([dictionaries.token[g] for g in genes], dtype=np.int64),
        medians=np.asarray([dictionaries.median[g] for g in genes], dtype=np.float64),
        source=source,
        n_mapped_via_dictionary=n_mapped,
        n_collapsed=len(columns) - len(genes),
        unknown_examples=unknown,
    )


@dataclass
class TokenizedBatch:
    """Rows ``start .. start + len(input_ids)`` of the dataset, tokenized.

    ``n_genes[i]`` counts the gene tokens of cell ``i`` (specials excluded): 0 means the cell
    had nothing the model knows (or failed ``filter_pass``) and must not be embedded.
    """

    start: int
    input_ids: List[np.ndarray]
    n_genes: np.ndarray
    #: per cell: the emitted gene order depends on how exact ties are broken (upstream: undefined)
    tied: Optional[np.ndarray] = None
    #: per cell: left out by ``obs['filter_pass']``
    filtered: Optional[np.ndarray] = None

    @property
    def stop(self) -> int:
        return self.start + len(self.input_ids)


class RankValueTokenizer:
    """Streaming Geneformer tokenizer (rank-value encoding) over an AnnData, in memory or backed.

    ``special_token=None`` decides from the dictionary: ``<cls>``/``<eos>`` are added when the token
    dictionary has them (the gc95M dictionaries of the 4096-input models).
    """

    def __init__(
        self,
        dictionaries: GeneDictionaries,
        model_input_size: int = 4096,
        special_token: Optional[bool] = None,
        target_sum: float = TARGET_SUM,
        n_counts_key: str = "n_counts",
        batch_size: int = 1024,
        filter_pass_key: Optional[str] = FILTER_PASS_KEY,
    ) -> None:
        self.dictionaries = dictionaries
        self.model_input_size = int(model_input_size)
        has_specials = CLS_TOKEN in dictionaries.token and EOS_TOKEN in dictionaries.token
        self.special_token = has_specials if special_token is None else bool(special_token)
        if self.special_token and not has_specials:
            raise ValueError(f"special_token=True needs {CLS_TOKEN} and {EOS_TOKEN} in the token dictionary")
        self.cls_id = dictionaries.special_id(CLS_TOKEN)
        self.eos_id = dictionaries.special_id(EOS_TOKEN)
        self.max_genes = self.model_input_size - 2 if self.special_token else self.model_input_size
        if self.max_genes < 1:
            raise ValueError(f"model_input_size {model_input_size} leaves no room for genes")
        self.target_sum = target_sum
        self.n_counts_key = n_counts_key
        self.batch_size = int(batch_size)
        self.filter_pass_key = filter_pass_key

    # -- planning --------------------------------------------------------------------------
    def plan(self, adata: Any) -> GenePlan:
        """Map the AnnData's genes onto the vocabulary (reads var only)."""
        return plan_genes(adata.var_names, adata.var, self.dictionaries)

    def _selector(self, plan: GenePlan, dtype: Any):
        import scipy.sparse as sp

        # One sparse product both picks the vocabulary columns and sums duplicate columns;
        # a single 1.0 term leaves every value bit-identical.
        ones = np.ones(len(plan.columns), dtype=dtype)
        return sp.csr_matrix((ones, (plan.columns, plan.slots)), shape=(plan.n_columns, len(plan.tokens)))

    # -- tokenizing ------------------------------------------------------------------------
    def iter_batches(self, adata: Any, plan: Optional[GenePlan] = None, matrix: Any = None) -> Iterator[TokenizedBatch]:
        """Yield :class:`TokenizedBatch` es of ``batch_size`` cells, in dataset order.

        Works on in-memory and backed AnnData (sparse or dense X); reads one row slice at a time.
        ``matrix`` is the count matrix to read (default ``adata.X``; e.g. a layer holding the raw
        counts, see :func:`czbenchmarks.datasets.inputs.counts_matrix`).
        """
        import scipy.sparse as sp

        plan = plan if plan is not None else self.plan(adata)
        matrix = adata.X if matrix is None else matrix
        n_obs = int(adata.n_obs)
        n_counts_obs = None
        if self.n_counts_key and self.n_counts_key in adata.obs.columns:
            n_counts_obs = adata.obs[self.n_counts_key].to_numpy()
        passing = filter_pass_mask(adata.obs, self.filter_pass_key) if self.filter_pass_key else None
        selector = None
        for start in range(0, n_obs, self.batch_size):
            stop = min(start + self.batch_size, n_obs)
            block = matrix[start:stop]
            sparse_source = sp.issparse(block)
            if n_counts_obs is not None:
                n_counts = np.asarray(n_counts_obs[start:stop])
            else:
                # Upstream's total: the sum over all of the dataset's genes (not only known ones),
                # summed by scipy or numpy as X is stored, in X's dtype.
                n_counts = np.asarray(block.sum(axis=1)).ravel()
            block = sp.csr_matrix(block)  # dense slices become sparse; sparse ones are not copied
            if selector is None:
                selector = self._selector(plan, block.dtype)
            yield self._tokenize_block(
                block @ selector, n_counts, plan, start, reciprocal=sparse_source,
                passing=None if passing is None else passing[start:stop],
            )

    def scale(self, data: np.ndarray, rows: np.ndarray, slots: np.ndarray, n_counts: np.ndarray,
              medians: np.ndarray, reciprocal: bool = True) -> np.ndarray:
        """Median-scaled values of the non-zero entries ``data`` (cell ``rows``, gene ``slots``).

        ``reciprocal=True`` is what upstream's ``X / n_counts * target_sum / medians`` computes on a
        sparse X (scipy multiplies by ``1 / n`` and ``1 / median``); ``False``, what it computes on a
        dense X (numpy divides). Dtypes follow numpy's promotion as upstream's do.
        """
        n_counts = np.asarray(n_counts)
        with np.errstate(divide="ignore", invalid="ignore"):
            if reciprocal:
                return (data * np.divide(1, n_counts)[rows]) * self.target_sum * np.divide(1, medians)[slots]
            return (data / n_counts[rows]) * self.target_sum / medians[slots]

    def _tokenize_block(self, known, n_counts: np.ndarray, plan: GenePlan, start: int,
                        reciprocal: bool = True, passing: Optional[np.ndarray] = None) -> TokenizedBatch:
        known = known.tocsr()
        known.sum_duplicates()  # sorts indices too: tie order = first-appearance column order
        known.eliminate_zeros()
        n_rows = known.shape[0]
        row_nnz = np.diff(known.indptr)
        rows = np.repeat(np.arange(n_rows), row_nnz)
        values = self.scale(known.data, rows, known.indices, n_counts, plan.medians, reciprocal)
        usable = np.isfinite(values) & (values != 0)
        bad_rows = np.unique(rows[~usable]) if not usable.all() else np.empty(0, dtype=np.int64)
        # A row with a zero or missing total has no meaningful ranks: it gets no genes at all.
        keep = usable & ~np.isin(rows, bad_rows)
        filtered = np.zeros(n_rows, dtype=bool) if passing is None else ~np.asarray(passing, dtype=bool)
        if filtered.any():
            keep &= ~filtered[rows]
        rows, values, slots = rows[keep], values[keep], known.indices[keep]
        order = np.lexsort((-values, rows))  # by row, then value descending; stable for ties
        tokens = plan.tokens[slots[order]]
        counts = np.bincount(rows, minlength=n_rows)
        bounds = np.concatenate([[0], np.cumsum(counts)])
        n_genes = np.minimum(counts, self.max_genes)
        # An exact tie matters when it touches the emitted window: sorted neighbours p, p+1 of one
        # cell with equal values and p inside the window (p + 1 may be the first one cut off).
        sorted_rows, sorted_values = rows[order], values[order]
        equal_next = (sorted_rows[1:] == sorted_rows[:-1]) & (sorted_values[1:] == sorted_values[:-1])
        position = np.arange(len(order)) - bounds[sorted_rows]
        tied_rows = sorted_rows[:-1][equal_next & (position[:-1] < self.max_genes)]
        tied = np.zeros(n_rows, dtype=bool)
        tied[tied_rows] = True
        input_ids: List[np.ndarray] = []
        for i in range(n_rows):
            genes = tokens[bounds[i]: bounds[i] + n_genes[i]]
            if self.special_token:
                genes = np.concatenate([[self.cls_id], genes, [self.eos_id]])
            input_ids.append(np.ascontiguousarray(genes, dtype=np.int64))
        bad_rows = bad_rows[~filtered[bad_rows]] if len(bad_rows) else bad_rows
        if len(bad_rows):
            logger.warning("%d cell(s) from row %d have a zero or non-finite total count", len(bad_rows), start)
        return TokenizedBatch(start=start, input_ids=input_ids, n_genes=n_genes.astype(np.int64),
                              tied=tied, filtered=filtered)

    def tokenize(self, adata: Any) -> List[np.ndarray]:
        """Every cell's token ids, in dataset order (convenience; keeps all cells in memory)."""
        cells: List[np.ndarray] = []
        for batch in self.iter_batches(adata):
            cells.extend(batch.input_ids)
        return cells


def tokenizer_for_variant(
    dictionaries: GeneDictionaries, variant_config: Mapping[str, Any], **kwargs: Any
) -> RankValueTokenizer:
    """A tokenizer set up from a variant's block of ``containers/geneformer/config.yaml``."""
    return RankValueTokenizer(
        dictionaries,
        model_input_size=int(variant_config["input_size"]),
        special_token=bool(variant_config["special_token"]),
        **kwargs,
    )
