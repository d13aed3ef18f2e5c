"""Metadata label prediction (czbenchmarks ``MetadataLabelPredictionTask``, v0.10 behaviour).

Stratified ``n_folds``-fold CV (shuffled, seeded) of three scikit-learn classifiers on the embedding:
``lr`` (StandardScaler + LogisticRegression), ``knn`` (StandardScaler + 5-NN), ``rf`` (random forest,
seeded — the reference's A era left it unseeded). Scores: accuracy, F1, precision, recall (binary
average for two classes, macro otherwise) and macro one-vs-rest AUROC from ``predict_proba``.
Emitted as ``mean_fold_<metric>`` first averaged over all classifier x fold rows
(``{"classifier": "MEAN(knn,lr,rf)"}``), then per classifier in the order lr, knn, rf.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Tuple

import numpy as np

from .constants import MIN_CLASS_SIZE, N_FOLDS, RANDOM_SEED
from .types import MetricResult

SCORES = ("accuracy", "f1", "precision", "recall", "auroc")
CLASSIFIERS = ("lr", "knn", "rf")


def filter_minimum_class(features: np.ndarray, labels: Iterable, min_class_size: int = MIN_CLASS_SIZE):
    """Drop cells of labels with fewer than ``min_class_size`` cells: ``(features, labels)``."""
    import pandas as pd

    labels = pd.Series(np.asarray(labels).astype(str))
    counts = labels.value_counts()
    mask = labels.map(counts).to_numpy() >= min_class_size
    return features[mask], pd.Categorical(labels[mask].to_numpy())


def classifiers(random_seed: int = RANDOM_SEED) -> Dict[str, Any]:
    """The reference's three classifier pipelines (scikit-learn defaults, RF seeded)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "lr": Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression())]),
        "knn": Pipeline([("scale", StandardScaler()), ("knn", KNeighborsClassifier())]),
        "rf": Pipeline([("rf", RandomForestClassifier(random_state=random_seed))]),
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
    """One row per classifier x fold with the five scores, and facts about the run."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold, cross_validate

    X, y = filter_minimum_class(np.asarray(features), labels, min_class_size)
    n_classes = len(y.categories)
    if n_classes < 2:
        raise ValueError(
            f"label prediction needs at least 2 labels with >= {min_class_size} cells; found {n_classes}"
        )
    codes = y.codes
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=random_seed)
    rows: List[Dict[str, Any]] = []
    for name, clf in classifiers(random_seed).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            scores = cross_validate(clf, X, codes, cv=folds, scoring=scorers(n_classes))
        for fold in range(n_folds):
            rows.append({"classifier": name, "fold": fold, **{s: float(scores[f"test_{s}"][fold]) for s in SCORES}})
    info = {"n_classes": int(n_classes), "n_cells_used": int(len(codes)), "classes": [str(c) for c in y.categories]}
    return rows, info


def label_prediction_task(
    embedding: np.ndarray,
    labels: np.ndarray,
    random_seed: int = RANDOM_SEED,
    n_folds: int = N_FOLDS,
    min_class_size: int = MIN_CLASS_SIZE,
    **_: Any,
) -> List[MetricResult]:
    """The 20 label-prediction metrics (5 scores x (mean + lr + knn + rf))."""
    rows, _info = cross_validation_table(embedding, labels, n_folds, min_class_size, random_seed)
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
