"""Simple models on the same splits and genes as the deep models: logistic regression and a random forest."""

from __future__ import annotations

import numpy as np
import pandas as pd

from shared.logs import get_logger

from .baseline_models import BASELINES, make_baseline, small_problem_blas
from .results import ModelResult, fold_row
from .splits import Protocol

log = get_logger(__name__)
__all__ = ["BASELINES", "make_baseline", "fit_predict", "train_sklearn", "train_baseline"]


def fit_predict(
    model, X_train: np.ndarray, y_train: np.ndarray, X_eval: list[np.ndarray], n_classes: int
) -> list[np.ndarray]:
    """Fit a scikit-learn classifier on the training rows; class probabilities (n, n_classes) for each evaluation
    set (classes absent from the fold's training rows get 0)."""
    out = []
    with small_problem_blas(X_train):
        model = model.fit(X_train, y_train)
        for X in X_eval:
            proba = np.zeros((len(X), n_classes))
            proba[:, model.classes_] = model.predict_proba(X)
            out.append(proba)
    return out


def train_sklearn(proto: Protocol, name: str, make, X: np.ndarray, seed: int, kind: str = "baseline") -> ModelResult:
    """Any scikit-learn classifier (``make(seed)`` builds a fresh one) through the protocol: one model per fold,
    their mean probability on the held-out test rows. X: (n_samples, n_features), rows as the protocol's samples."""
    X_test = np.asarray(X[proto.test_rows])
    folds, cv, test_folds = [], [], []
    for r, k, tr, va in proto.splits:
        tr_rows, va_rows = proto.fold_rows(tr, va)
        tr_rows = np.sort(tr_rows)
        val_proba, test_proba = fit_predict(
            make(seed + 1000 * r + k),
            np.asarray(X[tr_rows]),
            proto.labels[tr_rows],
            [np.asarray(X[va_rows]), X_test],
            proto.n_classes,
        )
        cv.append(pd.DataFrame({"repeat": r, "fold": k, "row": va_rows, "proba": list(val_proba)}))
        test_folds.append(test_proba)
        folds.append(fold_row(proto, r, k, va_rows, val_proba, test_proba))
        log.info("%s r%d fold %d: val macro-F1 %.3f", name, r, k + 1, folds[-1]["val_macro_f1"])
    return ModelResult(
        name=name,
        kind=kind,
        framework="sklearn",
        spec={"arch": name, "input": {"kind": "vector"}},
        folds=pd.DataFrame(folds),
        cv=cv,
        test_proba=np.mean(test_folds, axis=0),
    )


def train_baseline(proto: Protocol, name: str, X: np.ndarray, seed: int) -> ModelResult:
    return train_sklearn(proto, name, lambda s: make_baseline(name, s), X, seed)
