"""The protocol's splits: a held-out test split (made by the data's provider with ``holdout_split``, written as
``samples.csv``'s ``split`` column) that nothing ever trains, stops or tunes on, and repeated stratified
(group-aware) k-fold inside the training split, or one stratified training / validation split (``folds`` 1).
Augmented copies follow their source sample into its fold's training part, never into a validation fold.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from shared.errors import UserError


def fold_splits(
    labels: np.ndarray,
    groups: np.ndarray | None,
    folds: int,
    repeats: int,
    seed: int,
    key: str = "folds",
    validation_fraction: float = 0.15,
) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """[(repeat, fold, train_idx, val_idx)]: stratified (group-aware when groups exist) k-fold, repeated with new
    shuffles; ``folds`` 1: one split per repeat with the first fold of a round(1 / validation_fraction)-fold split
    as validation. ``key`` names the config key of ``folds`` in the error a too-small class gives."""
    n_splits = folds if folds > 1 else max(2, int(round(1 / validation_fraction)))
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < min(n_splits, folds if folds > 1 else 2):
        raise UserError(
            f"class index {classes[counts.argmin()]} has {counts.min()} training samples, fewer than "
            f"{key}={folds} needs; lower the folds"
        )
    if groups is not None and len(np.unique(groups)) < n_splits:
        raise UserError(f"{len(np.unique(groups))} training groups, fewer than {key}={folds} needs ({n_splits})")
    out = []
    for r in range(repeats):
        if folds == 1 and groups is None:
            idx = np.arange(len(labels))
            tr, va = train_test_split(idx, test_size=validation_fraction, stratify=labels, random_state=seed + r)
            out.append((r, 0, np.sort(tr), np.sort(va)))
            continue
        splitter = (
            StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed + r)
            if groups is not None
            else StratifiedKFold(n_splits, shuffle=True, random_state=seed + r)
        )
        for k, (tr, va) in enumerate(splitter.split(labels, labels, groups)):
            out.append((r, k, tr, va))
            if folds == 1:
                break
    return out


def with_augmented(samples: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """``rows`` plus the augmented rows made from them (and only from them)."""
    if "augmented_from" not in samples:
        return np.asarray(rows)
    source_ids = set(samples["sample"].to_numpy()[rows])
    augmented = np.flatnonzero(samples["augmented_from"].isin(source_ids).to_numpy())
    return np.concatenate([rows, augmented])


@dataclass
class Protocol:
    """The rows every model of an experiment is trained and scored on.

    samples: the provider's table (``sample``, ``label_index``, ``split``; optional ``group``, ``augmented_from``),
    one row per row of its input arrays.
    """

    samples: pd.DataFrame
    classes: list[str]
    folds: int
    repeats: int
    seed: int
    key: str = "folds"
    #: with folds 1: the validation share of the training split
    validation_fraction: float = 0.15
    splits: list = field(init=False)

    def __post_init__(self):
        s = self.samples
        self.labels = s["label_index"].to_numpy(np.int64)
        self.groups = s["group"].astype(str).to_numpy() if "group" in s else None
        split = s["split"].to_numpy()
        original = (s["augmented_from"].fillna("").to_numpy() == "") if "augmented_from" in s else np.ones(len(s), bool)
        self.train_rows = np.flatnonzero((split == "train") & original)
        self.test_rows = np.flatnonzero(split == "test")
        groups = None if self.groups is None else self.groups[self.train_rows]
        self.splits = fold_splits(
            self.labels[self.train_rows],
            groups,
            self.folds,
            self.repeats,
            self.seed,
            self.key,
            self.validation_fraction,
        )

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def fold_rows(self, tr: np.ndarray, va: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A fold's (training rows with their augmented copies, validation rows), as rows of ``samples``."""
        return with_augmented(self.samples, self.train_rows[tr]), self.train_rows[va]

    @property
    def sizes(self) -> tuple[float, float]:
        """Mean (training, validation) fold sizes, for the corrected resampled t-test."""
        return (
            float(np.mean([len(tr) for _, _, tr, _ in self.splits])),
            float(np.mean([len(va) for _, _, _, va in self.splits])),
        )

    def fingerprint(self) -> str:
        """A hash of the validation samples of every fold and of the test samples: two models are compared fold
        by fold only when theirs are equal."""
        ids = self.samples["sample"].astype(str).to_numpy()
        digest = hashlib.sha256()
        for r, k, _, va in self.splits:
            digest.update(f"{r}/{k}:".encode() + "\x1f".join(sorted(ids[self.train_rows[va]])).encode())
        digest.update(b"test:" + "\x1f".join(sorted(ids[self.test_rows])).encode())
        return digest.hexdigest()[:16]

    def describe(self) -> dict:
        n_train, n_val = self.sizes
        aware = ", group-aware" if self.groups is not None else ""
        if self.folds == 1:
            text = (
                f"one stratified{aware} training / validation split of the training split "
                f"({n_val:.0f} validation samples) x {self.repeats}; the model"
                f"{'s' if self.repeats > 1 else ''} scored on the held-out test split"
            )
        else:
            text = (
                f"{self.folds}-fold CV x {self.repeats} on the training split (stratified{aware}); the fold "
                "models' mean scored on the held-out test split"
            )
        return {
            "text": text,
            "folds": self.folds,
            "repeats": self.repeats,
            "n_train_mean": n_train,
            "n_val_mean": n_val,
            "n_test": int(len(self.test_rows)),
            "splits": self.fingerprint(),
        }


def holdout_split(labels: np.ndarray, groups: np.ndarray | None, test_size: float, seed: int) -> np.ndarray:
    """Return a boolean mask of test samples (about ``test_size`` of them, class proportions kept)."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < 2:
        raise UserError(
            f"class '{classes[counts.argmin()]}' has {counts.min()} sample; every class needs at least 2 "
            "for a held-out test split"
        )
    idx = np.arange(len(labels))
    if groups is None:
        _, test = train_test_split(idx, test_size=test_size, stratify=labels, random_state=seed)
    else:
        n_splits = max(2, int(round(1 / test_size)))
        if len(np.unique(groups)) < n_splits:
            raise UserError(
                f"only {len(np.unique(groups))} groups; a group-aware split with test_size={test_size} "
                f"needs at least {n_splits}"
            )
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        _, test = next(splitter.split(idx, labels, groups))
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test] = True
    missing = [c for c in classes if not (~is_test & (labels == c)).any()]
    if missing:
        raise UserError(
            f"classes {missing} have no training samples after the group-aware split; they sit in too few groups"
        )
    return is_test
