"""The baselines' scikit-learn models and their settings, in one place: train_torch trains them through the protocol
(shared.evaluation.baselines) and explain refits them for the biology checks (stages/explain/biology/), so both
use the same hyperparameters. Kept apart from the protocol code so that explain does not depend on it."""

from __future__ import annotations

from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

BASELINES = ("logistic_regression", "random_forest")


def make_baseline(name: str, seed: int):
    """The baseline ``name``, seeded. The random forest considers sqrt(n_genes) genes at each split
    (``max_features="sqrt"``: 141 of 20,000), so the cost of a split grows with the square root of the number of
    input genes, not with it."""
    if name == "logistic_regression":
        return LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced")
    if name == "random_forest":
        return RandomForestClassifier(
            n_estimators=300, max_features="sqrt", class_weight="balanced", n_jobs=-1, random_state=seed
        )
    raise ValueError(f"unknown baseline {name!r}")
