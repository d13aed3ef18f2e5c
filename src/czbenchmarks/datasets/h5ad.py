"""Open h5ad files cheaply: metadata in memory, X left on disk.

``anndata.read_h5ad(path, backed="r")`` keeps only X on disk; ``layers``, ``obsm``, ``obsp``,
``raw`` and ``uns`` are still read into memory, which for a million-cell atlas can be
gigabytes. :func:`open_backed` reads ``obs`` and ``var`` only and attaches X in backed mode,
so a check costs the metadata plus the rows of X it actually reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Tuple, Union


class H5adError(ValueError):
    """A file that is not a readable h5ad; the message is one line naming the file and the problem."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _read_elem():
    try:  # anndata >= 0.11
        from anndata.io import read_elem
    except ImportError:  # pragma: no cover - older anndata
        from anndata.experimental import read_elem
    return read_elem


def x_shape(group: Any) -> Tuple[int, int]:
    """Shape of the X element of an open h5ad (dense dataset or sparse group)."""
    import h5py

    if isinstance(group, h5py.Dataset):
        return tuple(int(n) for n in group.shape)  # type: ignore[return-value]
    shape = group.attrs.get("shape", group.attrs.get("h5sparse_shape"))
    if shape is None:
        raise H5adError("X has no shape attribute")
    return int(shape[0]), int(shape[1])


def _check_file(path: Path) -> None:
    """Raise :class:`H5adError` unless ``path`` is a non-empty HDF5 file."""
    import h5py

    if not path.exists():
        raise H5adError(f"file not found: {path}")
    if not path.is_file():
        raise H5adError(f"not a file: {path}")
    if path.stat().st_size == 0:
        raise H5adError(f"empty file: {path.name}")
    if not h5py.is_hdf5(path):
        raise H5adError(f"not an HDF5/h5ad file: {path.name}")


def open_backed(path: Union[str, os.PathLike]):
    """An AnnData with ``obs`` and ``var`` in memory and X in backed (read-only) mode.

    Nothing else (layers, obsm, raw, uns) is read. Close it with ``adata.file.close()``.

    Raises:
        H5adError: (a ``ValueError``) for a missing path, a folder, a non-HDF5 file, a truncated
            or corrupt file, or an h5ad whose X does not match its obs/var.
    """
    import anndata as ad
    import h5py

    path = Path(path)
    _check_file(path)
    try:
        with h5py.File(path, "r") as handle:
            if "X" not in handle:
                raise H5adError(f"{path.name} has no X matrix")
            shape = x_shape(handle["X"])
            read_elem = _read_elem()
            obs = read_elem(handle["obs"])
            var = read_elem(handle["var"])
    except H5adError:
        raise
    except Exception as err:
        # Files written by old anndata versions: let anndata's own backed reader try.
        try:
            return ad.read_h5ad(path, backed="r")
        except Exception:
            raise H5adError(f"unreadable h5ad (truncated or corrupt?): {path.name}: {_first_line(err)}") from None
    if shape != (len(obs), len(var)):
        raise H5adError(
            f"{path.name}: X has shape {shape} but obs has {len(obs)} rows and var {len(var)} rows"
        )
    try:
        return ad.AnnData(obs=obs, var=var, filename=path, filemode="r")
    except Exception as err:
        raise H5adError(f"unreadable h5ad (truncated or corrupt?): {path.name}: {_first_line(err)}") from None


def close_backed(adata: Any) -> None:
    """Close the file behind a backed AnnData (no-op for in-memory ones)."""
    manager = getattr(adata, "file", None)
    if manager is not None and getattr(adata, "isbacked", False):
        try:
            manager.close()
        except Exception:  # pragma: no cover - closing is best effort
            pass


# -- the validation view: column arrays, var, and a sample of cells --------------------------------
@dataclass
class H5adView:
    """What the validation gate reads from an h5ad.

    ``obs`` holds every obs column of every cell as arrays, with a positional index (cell
    names are not read: no check needs them, and a million Python strings would cost more
    than everything else together). ``sample`` is an in-memory AnnData of ``rows`` — real
    cell names, every obs column, every gene, their X — which is what model validators see.
    """

    path: Path
    n_obs: int
    n_vars: int
    obs: Any
    var: Any
    sample: Any
    rows: Any
    #: Cell names that occur more than once (the first few), and how many there are.
    duplicate_obs_names: List[str] = field(default_factory=list)
    n_duplicate_obs_names: int = 0
    #: Where the raw counts are (``sample.X`` holds the sampled rows of that matrix); see
    #: :mod:`czbenchmarks.datasets.inputs`.
    counts: Any = None

    @property
    def sampled_cells(self) -> int:
        """How many cells' rows of X were read."""
        return len(self.rows)


def sample_row_blocks(n_rows: int, max_cells: int = 2000, n_blocks: int = 8) -> List[Tuple[int, int]]:
    """Up to ``n_blocks`` contiguous ``(start, stop)`` row blocks, evenly spread, ``max_cells`` rows in all.

    All rows when ``n_rows <= max_cells``. Contiguous blocks read far faster than scattered rows.
    """
    import numpy as np

    if n_rows <= 0 or max_cells <= 0:
        return []
    if n_rows <= max_cells:
        return [(0, n_rows)]
    count = min(n_blocks, max_cells)
    block = max_cells // count
    starts = np.unique(np.linspace(0, n_rows - block, count).astype(int))
    blocks: List[Tuple[int, int]] = []
    for start in starts:
        start = max(int(start), blocks[-1][1] if blocks else 0)
        stop = min(start + block, n_rows)
        if stop > start:
            blocks.append((start, stop))
    return blocks


def _read_obs_columns(group: Any) -> Any:
    """Every column of an on-disk dataframe, positional index (the index itself is not read)."""
    import pandas as pd

    read_elem = _read_elem()
    order = [str(c) for c in group.attrs.get("column-order", [])]
    n_rows = None
    columns = {}
    for name in order:
        values = read_elem(group[name])
        columns[name] = values
        n_rows = len(values)
    if n_rows is None:
        index_key = group.attrs.get("_index", "_index")
        n_rows = len(group[index_key])
    return pd.DataFrame(columns, index=pd.RangeIndex(n_rows))[order] if order else pd.DataFrame(index=pd.RangeIndex(n_rows))


def _read_index_rows(group: Any, blocks: List[Tuple[int, int]]) -> List[str]:
    """The names (dataframe index) of the rows in ``blocks``."""
    dataset = group[group.attrs.get("_index", "_index")]
    names: List[str] = []
    for start, stop in blocks:
        try:
            part = dataset.asstr()[start:stop]
        except (TypeError, AttributeError):
            part = dataset[start:stop]
        names.extend(str(n) for n in part)
    return names


def duplicated_names(names: Any, examples: int = 5) -> Tuple[int, List[str]]:
    """How many distinct names occur more than once, and the first few of them."""
    import pandas as pd

    index = pd.Index(names)
    if index.is_unique:
        return 0, []
    dupes = index[index.duplicated()].unique()
    return len(dupes), [n.decode() if isinstance(n, bytes) else str(n) for n in dupes[:examples]]


def _x_rows(x: Any, blocks: List[Tuple[int, int]], n_vars: int) -> Any:
    """Rows of X in ``blocks`` as a CSR matrix (dense X is converted)."""
    import numpy as np
    import scipy.sparse as sp

    parts = []
    for start, stop in blocks:
        part = x[start:stop]
        parts.append(part if sp.issparse(part) else sp.csr_matrix(np.asarray(part)))
    if not parts:
        return sp.csr_matrix((0, n_vars), dtype=np.float32)
    return sp.vstack(parts, format="csr")


def _sampled_counts(read_rows: Any, requested: str, n_vars: int) -> Tuple[Any, Any]:
    """(CountsFinding, sampled CSR rows of the chosen matrix): ``read_rows(location)`` reads the sample."""
    from .inputs import find_counts

    samples: dict = {}

    def sample_of(location: str):
        samples[location] = read_rows(location)
        return samples[location].data

    if not n_vars:
        return None, None
    finding = find_counts(sample_of, requested)
    return finding, samples[finding.location]


def view_from_anndata(adata: Any, max_cells: int = 2000, path: Union[str, os.PathLike] = "",
                      counts_layer: str = "") -> H5adView:
    """The validation view of an AnnData already open (in memory or backed)."""
    import anndata as ad
    import numpy as np

    from .inputs import counts_matrix, parse_counts_location

    blocks = sample_row_blocks(adata.n_obs, max_cells)
    rows = np.concatenate([np.arange(a, b) for a, b in blocks]) if blocks else np.empty(0, dtype=int)
    finding, X = _sampled_counts(lambda where: _x_rows(counts_matrix(adata, where), blocks, adata.n_vars),
                                 parse_counts_location(counts_layer), adata.n_vars)
    obs = adata.obs.reset_index(drop=True)
    sample_obs = adata.obs.iloc[rows].copy()
    sample = ad.AnnData(X=X, obs=sample_obs, var=adata.var.copy()) if X is not None else \
        ad.AnnData(obs=sample_obs, var=adata.var.copy())
    n_dupes, dupes = duplicated_names(adata.obs_names)
    return H5adView(Path(path), int(adata.n_obs), int(adata.n_vars), obs, adata.var, sample, rows, dupes, n_dupes,
                    finding)


def read_view(path: Union[str, os.PathLike], max_cells: int = 2000, counts_layer: str = "") -> H5adView:
    """Read what validation needs from an h5ad: obs columns, var, and ``max_cells`` rows of the counts.

    The counts matrix is ``counts_layer`` (``X``, ``raw.X`` or a layer name) or, when empty, the first
    integer-valued of X, layers['counts'], layers['raw_counts'], raw.X
    (:func:`czbenchmarks.datasets.inputs.find_counts`); ``view.counts`` says which. Each is read
    through anndata's backed sparse dataset (or the dense HDF5 dataset), a few contiguous blocks at
    a time, and only the sampled rows; obsm and uns are never read.

    Raises:
        H5adError: (a ``ValueError``) naming the file: missing, a folder, empty, not HDF5,
            truncated or corrupt, no X, or X not matching obs/var.
    """
    import anndata as ad
    import h5py
    import numpy as np

    from .inputs import (
        CountsLocationError,
        describe_counts_location,
        h5_counts_element,
        lazy_matrix,
        parse_counts_location,
    )

    path = Path(path)
    _check_file(path)
    try:
        handle = h5py.File(path, "r")
    except Exception as err:
        raise H5adError(f"unreadable h5ad (truncated or corrupt?): {path.name}: {_first_line(err)}") from None
    with handle:
        if "X" not in handle:
            raise H5adError(f"{path.name} has no X matrix")
        try:
            shape = x_shape(handle["X"])
            obs = _read_obs_columns(handle["obs"])
            var = _read_elem()(handle["var"])
        except H5adError:
            raise
        except Exception as err:
            try:  # files written by old anndata versions: anndata's own backed reader
                adata = ad.read_h5ad(path, backed="r")
            except Exception:
                raise H5adError(
                    f"unreadable h5ad (truncated or corrupt?): {path.name}: {_first_line(err)}"
                ) from None
            try:
                return view_from_anndata(adata, max_cells, path, counts_layer)
            finally:
                close_backed(adata)
        if shape != (len(obs), len(var)):
            raise H5adError(f"{path.name}: X has shape {shape} but obs has {len(obs)} rows and var {len(var)} rows")
        blocks = sample_row_blocks(shape[0], max_cells)
        requested = parse_counts_location(counts_layer)

        def read_rows(location: str):
            element = h5_counts_element(handle, location, shape[1], var.index)
            if x_shape(element)[0] != shape[0]:
                raise CountsLocationError(f"{describe_counts_location(location)} has {x_shape(element)[0]} rows, "
                                          f"obs has {shape[0]}")
            return _x_rows(lazy_matrix(element), blocks, shape[1])

        try:
            finding, X = _sampled_counts(read_rows, requested, shape[1])
        except CountsLocationError as err:
            raise H5adError(f"counts_layer '{counts_layer}' (samplesheet): {err}") from None
        except Exception as err:
            raise H5adError(f"X cannot be read (truncated or corrupt file?): {path.name}: {_first_line(err)}") from None
        try:
            names = _read_index_rows(handle["obs"], blocks)
            # Every cell name, as raw bytes (no Python str per cell): only to find duplicates.
            obs_index = handle["obs"][handle["obs"].attrs.get("_index", "_index")]
            n_dupes, dupes = duplicated_names(obs_index[:])
        except Exception as err:
            raise H5adError(f"X cannot be read (truncated or corrupt file?): {path.name}: {_first_line(err)}") from None
    rows = np.concatenate([np.arange(a, b) for a, b in blocks]) if blocks else np.empty(0, dtype=int)
    sample_obs = obs.iloc[rows].copy()
    sample_obs.index = names
    sample = ad.AnnData(X=X, obs=sample_obs, var=var) if X is not None else ad.AnnData(obs=sample_obs, var=var)
    return H5adView(path, shape[0], shape[1], obs, var, sample, rows, dupes, n_dupes, finding)
