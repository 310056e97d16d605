"""The held-out test split: stratified by class and, when a group key is given, never cutting a group."""
from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from shared.errors import UserError


def holdout_split(labels: np.ndarray, groups: np.ndarray | None, test_size: float, seed: int) -> np.ndarray:
    """Return a boolean mask of test samples (about ``test_size`` of them, class proportions kept)."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < 2:
        raise UserError(f"class '{classes[counts.argmin()]}' has {counts.min()} sample; every class needs at least 2 "
                        "for a held-out test split")
    idx = np.arange(len(labels))
    if groups is None:
        _, test = train_test_split(idx, test_size=test_size, stratify=labels, random_state=seed)
    else:
        n_splits = max(2, int(round(1 / test_size)))
        if len(np.unique(groups)) < n_splits:
            raise UserError(f"only {len(np.unique(groups))} groups; a group-aware split with test_size={test_size} "
                            f"needs at least {n_splits}")
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        _, test = next(splitter.split(idx, labels, groups))
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test] = True
    missing = [c for c in classes if not (~is_test & (labels == c)).any()]
    if missing:
        raise UserError(f"classes {missing} have no training samples after the group-aware split; "
                        "they sit in too few groups")
    return is_test
