"""Simple models on the same splits and genes as the deep models: logistic regression and a random forest."""
from __future__ import annotations

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression


def make_baseline(name: str, seed: int):
    if name == "logistic_regression":
        return LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced")
    if name == "random_forest":
        return RandomForestClassifier(n_estimators=300, class_weight="balanced", n_jobs=-1, random_state=seed)
    raise ValueError(f"unknown baseline {name!r}")


def fit_predict(name: str, X_train: np.ndarray, y_train: np.ndarray, X_eval: list[np.ndarray], n_classes: int,
                seed: int) -> list[np.ndarray]:
    """Fit on the training rows; class probabilities (n, n_classes) for each evaluation set (absent classes 0)."""
    model = make_baseline(name, seed).fit(X_train, y_train)
    out = []
    for X in X_eval:
        proba = np.zeros((len(X), n_classes))
        proba[:, model.classes_] = model.predict_proba(X)
        out.append(proba)
    return out
