"""The protocol's splits: a held-out test split (made by the data's provider, ``samples.csv``'s ``split``
column) that nothing ever trains, stops or tunes on, and repeated stratified (group-aware) k-fold inside the
training split. Augmented copies follow their source sample into its fold's training part, never into a
validation fold.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from shared.errors import UserError


def fold_splits(labels: np.ndarray, groups: np.ndarray | None, folds: int, repeats: int, seed: int,
                key: str = "folds") -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """[(repeat, fold, train_idx, val_idx)]: stratified (group-aware when groups exist) k-fold, repeated with new
    shuffles. ``key`` names the config key of ``folds`` in the error a too-small class gives."""
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < folds:
        raise UserError(f"class index {classes[counts.argmin()]} has {counts.min()} training samples, fewer than "
                        f"{key}={folds}; lower the folds")
    if groups is not None and len(np.unique(groups)) < folds:
        raise UserError(f"{len(np.unique(groups))} training groups, fewer than {key}={folds}")
    out = []
    for r in range(repeats):
        splitter = (StratifiedGroupKFold(folds, shuffle=True, random_state=seed + r) if groups is not None
                    else StratifiedKFold(folds, shuffle=True, random_state=seed + r))
        for k, (tr, va) in enumerate(splitter.split(labels, labels, groups)):
            out.append((r, k, tr, va))
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
        self.splits = fold_splits(self.labels[self.train_rows], groups, self.folds, self.repeats, self.seed, self.key)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def fold_rows(self, tr: np.ndarray, va: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A fold's (training rows with their augmented copies, validation rows), as rows of ``samples``."""
        return with_augmented(self.samples, self.train_rows[tr]), self.train_rows[va]

    @property
    def sizes(self) -> tuple[float, float]:
        """Mean (training, validation) fold sizes, for the corrected resampled t-test."""
        return (float(np.mean([len(tr) for _, _, tr, _ in self.splits])),
                float(np.mean([len(va) for _, _, _, va in self.splits])))

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
        return {"text": (f"{self.folds}-fold CV x {self.repeats} on the training split (stratified"
                         f"{', group-aware' if self.groups is not None else ''}); the fold models' mean scored on "
                         "the held-out test split"),
                "folds": self.folds, "repeats": self.repeats, "n_train_mean": n_train, "n_val_mean": n_val,
                "n_test": int(len(self.test_rows)), "splits": self.fingerprint()}
