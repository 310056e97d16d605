"""The protocol's splits: a held-out test split (made by the data's provider with ``holdout_split``, written as
``samples.csv``'s ``split`` column) that nothing ever trains, stops or tunes on, and repeated stratified
(group-aware) k-fold inside the training split, or one stratified training / validation split (``folds`` 1).
Augmented copies follow their source sample into its fold's training part, never into a validation fold.

Classes too small for the protocol (``small_classes``) are the provider's to declare: a policy stops on them or
leaves them out, with their counts, before the held-out split. Augmentation cannot rescue them: it adds copies of
training samples, never an independent sample a validation fold or the test split could hold.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from shared.dataset import measured, measured_training_rows, test_rows
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


#: what to do with classes under the threshold: error stops with their names and counts; leave_out drops their
#: samples before the held-out split. No "keep": augmented copies may never sit on both sides of a split, so a class
#: with fewer than `folds` training samples has folds without one to validate on, whatever augmentation adds.
SMALL_CLASS_POLICIES = ("error", "leave_out")


def too_small_classes(labels: np.ndarray, min_samples: int) -> dict[str, int]:
    """``{class: samples}`` of the classes with fewer than ``min_samples`` samples, in class order."""
    classes, counts = np.unique(np.asarray(labels).astype(str), return_counts=True)
    return {str(c): int(n) for c, n in zip(classes, counts, strict=True) if n < min_samples}


def _named(counts: dict[str, int]) -> str:
    return ", ".join(f"'{c}' ({n})" for c, n in counts.items())


def apply_small_class_policy(
    labels: np.ndarray, policy: str, min_samples: int, key: str = "preprocess.small_classes", source: str = ""
) -> tuple[np.ndarray, dict[str, int]]:
    """Return ``(kept, left_out)``: a boolean mask of the samples kept and ``{class: samples}`` of the classes left
    out (those with fewer than ``min_samples`` samples, counted before the held-out split). ``key`` names the config
    section of ``policy`` and ``min_samples`` in the errors, ``source`` the labels' file."""
    at = f"{source}: " if source else ""
    if policy not in SMALL_CLASS_POLICIES:
        raise UserError(f"{key}.policy: unknown policy {policy!r}; use one of {', '.join(SMALL_CLASS_POLICIES)}")
    if isinstance(min_samples, bool) or not isinstance(min_samples, (int, np.integer)) or min_samples < 2:
        raise UserError(
            f"{key}.min_samples: {min_samples!r} is not an integer >= 2 (the held-out split needs 2 samples a class)"
        )
    labels = np.asarray(labels).astype(str)
    small = too_small_classes(labels, min_samples)
    if small and policy == "error":
        raise UserError(
            f"{at}{len(small)} class{'es' if len(small) > 1 else ''} with fewer than {key}.min_samples={min_samples} "
            f"samples: {_named(small)}; set {key}.policy: leave_out to leave them out (named in the log, the "
            f"manifest and the report){', or lower min_samples (2 at least)' if min_samples > 2 else ''}"
        )
    kept = ~np.isin(labels, list(small))
    n_left = len(np.unique(labels[kept]))
    if n_left < 2:
        raise UserError(
            f"{at}{key}: min_samples={min_samples} leaves {n_left} class{'' if n_left == 1 else 'es'} of "
            f"{len(np.unique(labels))} (left out: {_named(small)}); a classifier needs two: lower min_samples"
        )
    return kept, small


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
    #: the provider's config section that leaves small classes out (its policy and min_samples), named in the error
    #: a class too small for the folds gives; None: the provider has none
    small_classes_key: str | None = None
    splits: list = field(init=False)

    def __post_init__(self):
        s = self.samples
        self.labels = s["label_index"].to_numpy(np.int64)
        self.groups = s["group"].astype(str).to_numpy() if "group" in s else None
        original = measured(s)
        self.train_rows = measured_training_rows(s)
        self.test_rows = test_rows(s)
        groups = None if self.groups is None else self.groups[self.train_rows]
        self._check_class_sizes(original)
        self.splits = fold_splits(
            self.labels[self.train_rows],
            groups,
            self.folds,
            self.repeats,
            self.seed,
            self.key,
            self.validation_fraction,
        )

    def _check_class_sizes(self, original: np.ndarray) -> None:
        """Every class needs ``folds`` training samples (2 with folds 1): one line naming those short of it, with
        the keys that fix it."""
        need = self.folds if self.folds > 1 else 2
        n_train = np.bincount(self.labels[self.train_rows], minlength=self.n_classes)
        n_all = np.bincount(self.labels[original], minlength=self.n_classes)
        short = [c for c in range(self.n_classes) if n_all[c] and n_train[c] < need]
        if not short:
            return
        named = ", ".join(
            f"'{self.classes[c]}' ({n_train[c]} training sample{'' if n_train[c] == 1 else 's'} of {n_all[c]})"
            for c in short
        )
        fix = f"lower {self.key}"
        if self.small_classes_key:
            fix += (
                f", or leave such classes out: {self.small_classes_key}.policy: leave_out with "
                f"{self.small_classes_key}.min_samples: {max(n_all[c] for c in short) + 1} or more"
            )
        plural = "es" if len(short) > 1 else ""
        raise UserError(f"class{plural} {named}: fewer than {self.key}={self.folds} needs; {fix}")

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
