"""Metadata label prediction (czbenchmarks ``MetadataLabelPredictionTask``, v0.10 behaviour).

Stratified ``n_folds``-fold CV (shuffled, seeded) of three scikit-learn classifiers on the embedding:
``lr`` (StandardScaler + LogisticRegression), ``knn`` (StandardScaler + 5-NN), ``rf`` (random forest,
seeded — the reference's A era left it unseeded). Scores: accuracy, F1, precision, recall (binary
average for two classes, macro otherwise) and macro one-vs-rest AUROC from ``predict_proba``.
Emitted as ``mean_fold_<metric>`` first averaged over all classifier x fold rows
(``{"classifier": "MEAN(knn,lr,rf)"}``), then per classifier in the order lr, knn, rf.

Sparse features (the raw-expression baseline's CSR counts) are never densified; the three pipelines
give the dense pipelines' results (``tests/test_tasks.py`` compares them):

* ``lr``: :class:`SparseStandardizedLogisticRegression` runs scikit-learn's own L-BFGS logistic
  regression on ``(X - mean) / scale`` held as a product-only operator (CSR + two vectors), so the
  optimiser takes the dense pipeline's steps;
* ``knn``: scaling without centring — Euclidean distances do not change under a shift;
* ``rf``: scikit-learn's trees split sparse columns exactly as dense ones.
"""

from __future__ import annotations

import functools
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .constants import MIN_CLASS_SIZE, N_FOLDS, RANDOM_SEED
from .seeds import over_seeds
from .types import MetricResult

SCORES = ("accuracy", "f1", "precision", "recall", "auroc")
CLASSIFIERS = ("lr", "knn", "rf")


def filter_minimum_class(features: np.ndarray, labels: Iterable, min_class_size: int = MIN_CLASS_SIZE):
    """Drop cells of labels with fewer than ``min_class_size`` cells: ``(features, labels)`` (``features``
    dense or sparse; not copied when every cell is kept)."""
    import pandas as pd

    labels = pd.Series(np.asarray(labels).astype(str))
    counts = labels.value_counts()
    mask = labels.map(counts).to_numpy() >= min_class_size
    return (features if mask.all() else features[mask]), pd.Categorical(labels[mask].to_numpy())


def stratified_cell_sample(labels: Sequence, max_cells: int, seed: int = RANDOM_SEED,
                           min_class_size: int = MIN_CLASS_SIZE, n_folds: int = N_FOLDS) -> Optional[np.ndarray]:
    """Sorted row indices of a seeded sample of about ``max_cells`` cells stratified by label, or
    ``None`` when there are no more cells than that (then every cell is scored, as the reference does).

    Each label keeps its share of the sample, and never fewer than ``min_class_size × n_folds`` cells (or
    all of its cells), so that a class the full data would score stays in every fold. The sample
    depends only on the labels and the seed: every model of a dataset is scored on the same cells.
    """
    import pandas as pd

    labels = pd.Series(np.asarray(labels).astype(str))
    if max_cells <= 0 or len(labels) <= max_cells:
        return None
    rng = np.random.default_rng(seed)
    fraction = max_cells / len(labels)
    chosen = []
    for _, rows in sorted(labels.groupby(labels).indices.items()):
        quota = min(len(rows), max(int(round(len(rows) * fraction)), min_class_size * n_folds))
        chosen.append(rng.choice(rows, size=quota, replace=False))
    return np.sort(np.concatenate(chosen))


class _CentredScaled:
    """``(X - mean) / scale`` of a sparse ``X``, never formed: only the two products scikit-learn's
    logistic loss takes (``Z @ W`` and ``G @ Z``, and ``Z.T @ g`` for two classes), each one sparse product
    plus a rank-one correction, in float64, returned in ``X``'s dtype as the dense loss computes."""

    __array_ufunc__ = None  # ``ndarray @ self`` defers to ``__rmatmul__``

    def __init__(self, X, mean: np.ndarray, scale: np.ndarray, transposed: bool = False) -> None:
        self.X = X
        self.inv_scale = 1.0 / np.asarray(scale, dtype=np.float64)
        self.offset = np.asarray(mean, dtype=np.float64) * self.inv_scale
        self.dtype = X.dtype
        self.transposed = transposed
        self.shape = X.shape[::-1] if transposed else X.shape
        self.ndim = 2

    @property
    def T(self) -> "_CentredScaled":
        out = _CentredScaled(self.X, np.zeros(1), np.ones(1), not self.transposed)
        out.inv_scale, out.offset = self.inv_scale, self.offset
        return out

    def __matmul__(self, W: np.ndarray) -> np.ndarray:
        W = np.asarray(W, dtype=np.float64)
        if self.transposed:  # Z.T @ g = D (X.T @ g) - offset * sum(g)
            out = (self.X.T @ W) * (self.inv_scale if W.ndim == 1 else self.inv_scale[:, None])
            out -= np.multiply.outer(self.offset, W.sum(axis=0))
        else:  # Z @ W = X @ (D W) - offset @ W
            scaled = W * (self.inv_scale if W.ndim == 1 else self.inv_scale[:, None])
            out = self.X @ scaled - self.offset @ W
        return np.asarray(out, dtype=self.dtype)

    def __rmatmul__(self, G: np.ndarray) -> np.ndarray:
        if self.transposed:
            raise NotImplementedError("G @ Z.T is not used by the logistic loss")
        G = np.asarray(G, dtype=np.float64)  # G @ Z = (G @ X) D - (G 1) offset
        out = np.asarray(self.X.T @ G.T).T * self.inv_scale - np.multiply.outer(G.sum(axis=-1), self.offset)
        return np.asarray(out, dtype=self.dtype)


@functools.lru_cache(maxsize=None)
def _sparse_lr_type() -> type:
    """:class:`SparseStandardizedLogisticRegression`, defined on first use (scikit-learn is imported lazily)."""
    from sklearn.linear_model import LogisticRegression

    class SparseStandardizedLogisticRegression(LogisticRegression):
        """``Pipeline([StandardScaler(), LogisticRegression()])`` for a sparse ``X``, without densifying it.

        The scaler's mean and scale are taken from ``X`` (``StandardScaler(with_mean=False)`` computes both
        for sparse input); scikit-learn's own L-BFGS path (``_logistic_regression_path``, the code
        ``LogisticRegression.fit`` runs) then fits the centred, scaled matrix held as :class:`_CentredScaled`,
        so it follows the dense pipeline's iterations (same loss, same stopping rule, ``max_iter``). The fitted
        model is stored for the unscaled ``X`` (``coef / scale`` and the intercept less ``coef . mean / scale``):
        predictions are LogisticRegression's own, on CSR rows. Memory: ``X`` plus a few ``n_cells x n_classes``
        and ``n_genes x n_classes`` float64 arrays.
        """

        def fit(self, X, y, sample_weight=None) -> "SparseStandardizedLogisticRegression":
            import scipy.sparse as sp
            from sklearn.linear_model._logistic import _logistic_regression_path
            from sklearn.preprocessing import StandardScaler

            if not sp.issparse(X):
                raise TypeError("SparseStandardizedLogisticRegression needs a sparse matrix; use the dense pipeline")
            if sample_weight is not None or self.solver != "lbfgs" or self.class_weight is not None:
                raise ValueError("only the reference's configuration (lbfgs, no weights) is supported")
            X = X.tocsr()
            y = np.asarray(y)
            scaler = StandardScaler(with_mean=False).fit(X)
            self.classes_ = np.unique(y)
            if len(self.classes_) < 2:
                raise ValueError(f"logistic regression needs 2+ classes in a fold, got {len(self.classes_)}")
            coefs, _, n_iter = _logistic_regression_path(
                _CentredScaled(X, scaler.mean_, scaler.scale_), y, classes=self.classes_, Cs=[self.C],
                fit_intercept=self.fit_intercept, max_iter=self.max_iter, tol=self.tol, solver="lbfgs",
                check_input=False, penalty="l2", n_threads=1,
            )
            coef = np.atleast_2d(coefs[0])  # (1 or n_classes, n_genes + 1), intercept last
            weights, intercept = coef[:, :-1], coef[:, -1]
            inv_scale = 1.0 / scaler.scale_
            self.coef_ = weights * inv_scale
            self.intercept_ = intercept - weights @ (scaler.mean_ * inv_scale)
            self.n_iter_ = np.asarray(n_iter, dtype=np.int32)
            self.n_features_in_ = X.shape[1]
            return self
    return SparseStandardizedLogisticRegression


def __getattr__(name: str) -> Any:
    if name == "SparseStandardizedLogisticRegression":
        return _sparse_lr_type()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def classifiers(random_seed: int = RANDOM_SEED, sparse: bool = False) -> Dict[str, Any]:
    """The reference's three classifier pipelines (scikit-learn defaults, RF seeded).

    ``sparse``: the same pipelines for a CSR matrix (see the module docstring): lr by
    :class:`SparseStandardizedLogisticRegression`, knn scaled without centring. kNN and the forest use
    the task's cores (``n_jobs``; the same predictions and trees as on one core).
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from .metrics import _n_threads

    cores = _n_threads()

    if sparse:
        return {
            "lr": _sparse_lr_type()(),
            "knn": Pipeline([("scale", StandardScaler(with_mean=False)), ("knn", KNeighborsClassifier(n_jobs=cores))]),
            "rf": Pipeline([("rf", RandomForestClassifier(random_state=random_seed, n_jobs=cores))]),
        }
    return {
        "lr": Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression())]),
        "knn": Pipeline([("scale", StandardScaler()), ("knn", KNeighborsClassifier(n_jobs=cores))]),
        "rf": Pipeline([("rf", RandomForestClassifier(random_state=random_seed, n_jobs=cores))]),
    }


def scorers(n_classes: int) -> Dict[str, Any]:
    """scikit-learn scorers: binary average for 2 classes, macro otherwise; macro OvR AUROC."""
    from sklearn.metrics import accuracy_score, f1_score, make_scorer, precision_score, recall_score, roc_auc_score

    average = "binary" if n_classes == 2 else "macro"
    return {
        "accuracy": make_scorer(accuracy_score),
        "f1": make_scorer(f1_score, average=average),
        "precision": make_scorer(precision_score, average=average, zero_division=0),
        "recall": make_scorer(recall_score, average=average),
        "auroc": make_scorer(roc_auc_score, average="macro", multi_class="ovr", response_method="predict_proba"),
    }


def cross_validation_table(
    features: np.ndarray,
    labels: Iterable,
    n_folds: int = N_FOLDS,
    min_class_size: int = MIN_CLASS_SIZE,
    random_seed: int = RANDOM_SEED,
) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """One row per classifier x fold with the five scores, and facts about the run.

    ``features``: a dense array, or a scipy sparse matrix (kept sparse: :func:`classifiers` ``sparse``)."""
    import warnings

    import scipy.sparse as sp
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold, cross_validate

    sparse = sp.issparse(features)
    features = features.tocsr() if sparse else np.asarray(features)
    X, y = filter_minimum_class(features, labels, min_class_size)
    n_classes = len(y.categories)
    if n_classes < 2:
        raise ValueError(
            f"label prediction needs at least 2 labels with >= {min_class_size} cells; found {n_classes}"
        )
    codes = y.codes
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=random_seed)
    rows: List[Dict[str, Any]] = []
    for name, clf in classifiers(random_seed, sparse=sparse).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            scores = cross_validate(clf, X, codes, cv=folds, scoring=scorers(n_classes))
        for fold in range(len(scores["fit_time"])):
            rows.append({"classifier": name, "fold": fold, **{s: float(scores[f"test_{s}"][fold]) for s in SCORES}})
    info = {"n_classes": int(n_classes), "n_cells_used": int(len(codes)), "classes": [str(c) for c in y.categories]}
    return rows, info


def label_prediction_task(
    embedding: np.ndarray,
    labels: np.ndarray,
    random_seed: int = RANDOM_SEED,
    n_folds: int = N_FOLDS,
    min_class_size: int = MIN_CLASS_SIZE,
    seeds: Optional[Sequence[int]] = None,
    **_: Any,
) -> List[MetricResult]:
    """The 20 label-prediction metrics (5 scores x (mean + lr + knn + rf)); with ``seeds``, the whole
    cross-validation (folds and random forest) once per seed."""
    def run(seed: int) -> List[MetricResult]:
        rows, _info = cross_validation_table(embedding, labels, n_folds, min_class_size, seed)
        metrics: List[MetricResult] = []
        for score in SCORES:
            metrics.append(
                MetricResult(f"mean_fold_{score}", float(np.mean([r[score] for r in rows])),
                             {"classifier": "MEAN(" + ",".join(sorted(CLASSIFIERS)) + ")"})
            )
        for name in CLASSIFIERS:
            for score in SCORES:
                values = [r[score] for r in rows if r["classifier"] == name]
                metrics.append(MetricResult(f"mean_fold_{score}", float(np.mean(values)), {"classifier": name}))
        return metrics

    return over_seeds(run, list(seeds) if seeds else [random_seed])
