"""The baselines' scikit-learn models and their settings, in one place: train_torch trains them through the protocol
(shared.evaluation.baselines) and explain refits them for the biology checks (stages/explain/biology/), so both
use the same hyperparameters. Kept apart from the protocol code so that explain does not depend on it."""

from __future__ import annotations

import contextlib

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

BASELINES = ("logistic_regression", "random_forest")
#: matrices with fewer entries than this are fitted with BLAS on one thread (``small_problem_blas``)
SMALL_PROBLEM = 1 << 22


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


def small_problem_blas(x: np.ndarray):
    """A context in which a model is fitted on ``x``: BLAS on one thread when ``x`` has under ``SMALL_PROBLEM``
    entries (4 M, e.g. 1,000 samples x 4,000 genes), else as it is. A small problem gains nothing from BLAS threads and
    loses much to their hand-offs: measured, one logistic regression on the demo's 800 samples x 216 genes fits in
    0.02 s on one thread and in 0.13 s on two, 100x slower than one while other work keeps the cores busy."""
    if x.size < SMALL_PROBLEM:
        return threadpool_limits(limits=1, user_api="blas")
    return contextlib.nullcontext()
