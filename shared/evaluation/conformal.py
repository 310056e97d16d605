"""Split-conformal prediction sets: which classes a held-out sample could be, at a chosen coverage.

The method is split conformal prediction (Vovk, Gammerman & Shafer, *Algorithmic Learning in a Random World*, 2005;
Angelopoulos & Bates, "A gentle introduction to conformal prediction and distribution-free uncertainty
quantification", 2021/2023, section 1 and 3). The score is the LAC score ("least ambiguous set-valued classifier",
Sadinle, Lei & Wasserman, JASA 2019), ``s(x, y) = 1 - p_y(x)``: one minus the probability the model gives the true
class. Calibration takes the finite-sample quantile ``q`` of the calibration scores, the ``ceil((n + 1)(1 - alpha))``-th
smallest of ``n`` (infinite when that exceeds ``n``: every class is in every set), and a test sample's set is every
class with ``1 - p_y <= q``. When the calibration and test samples are exchangeable, the set holds the true class with
probability at least ``1 - alpha`` (and below ``1 - alpha + 1 / (n + 1)`` with ties broken at random). LAC gives the
smallest sets on average of the usual scores; its sets may be empty (no class reaches the threshold: the model is
less sure of any class than it was of the true class of ``1 - alpha`` of the calibration samples) or hold several
classes (ambiguous). Both are sets of size other than one, the samples the report says not to trust blindly.

Calibration here uses a model's out-of-fold predictions on the training split (each fold model predicting its own
validation fold; with repeats, a row's probabilities averaged over the repeats first), and the sets are applied to
the held-out test probabilities, which are the fold models' mean. Two departures from exchangeability are known and
are why coverage is measured on the test rather than assumed: the mean of the fold models is usually a little surer
and more accurate than one fold model (coverage tends to come out above the target; cf. the cross-conformal
predictors of Vovk 2015 and the CV+ of Barber, Candès, Ramdas & Tibshirani 2021), and a deep fold model early-stopped
on its validation fold has seen those rows' loss (a little below the target).

The check against a null: given the calibration, a test sample is covered with probability distributed as
``Beta(k, n + 1 - k)`` over calibration draws, ``k = ceil((n + 1)(1 - alpha))`` (Vovk 2012, "Conditional validity of
inductive conformal predictors"; Angelopoulos & Bates section 3.2), so the number covered of ``m`` test samples is
beta-binomial ``BetaBinom(m, k, n + 1 - k)`` under exchangeability. ``coverage_p`` is the two-sided p-value of the
observed count under it; ``off_target`` flags p < ``OFF_TARGET_P``: calibration and test do not look exchangeable.

Class-conditional (Mondrian, Vovk et al. 2005 ch. 4; Angelopoulos & Bates section 4.1) calibration is offered
(``by_class``): one threshold per true class, each from that class's calibration scores, so each class is covered at
the target, not only the samples overall. It is not the default: it needs ``1/alpha - 1`` calibration samples of a
class or more (9 at 90%) for a finite threshold and many more for a stable one (Ding, Angelopoulos, Bates, Jordan &
Tibshirani, "Class-conditional conformal prediction with many classes", NeurIPS 2023, who find it unstable with
few samples per class and larger sets), and the data sets here are a few hundred samples with small classes. The
marginal default may under-cover a small, hard class; the per-class coverage is reported beside the overall so that
shows, and ``by_class`` is the remedy when every class has enough training samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import betabinom

#: the default target coverage (1 - alpha)
DEFAULT_COVERAGE = 0.9
#: a two-sided p-value of the test coverage under exchangeability below this flags the calibration as off target
OFF_TARGET_P = 0.01
#: random tie-breaking: scores are moved by at most this (a random forest's probabilities are multiples of
#: 1/trees; a tie at the threshold would otherwise cover every tied sample and push coverage above the target)
_JITTER = 1e-9


def lac_scores(proba: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The LAC nonconformity score of each sample's true class: ``1 - p_true``."""
    proba = np.asarray(proba, dtype=float)
    return 1.0 - proba[np.arange(len(proba)), np.asarray(labels, dtype=int)]


def conformal_quantile(scores: np.ndarray, coverage: float) -> float:
    """The ``ceil((n + 1) * coverage)``-th smallest score of ``n`` (``inf`` when that is more than ``n``)."""
    scores = np.sort(np.asarray(scores, dtype=float))
    n = len(scores)
    k = _rank(n, coverage)
    return float("inf") if k > n else float(scores[k - 1])


def _rank(n: int, coverage: float) -> int:
    # round first: (n + 1) * 0.9 is 90.00000000000001 for n = 99 in floating point, which ceil would make 91
    return math.ceil(round((n + 1) * coverage, 9))


def _jittered(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return scores + rng.uniform(-_JITTER, _JITTER, size=np.shape(scores))


def calibrate(
    proba: np.ndarray,
    labels: np.ndarray,
    coverage: float = DEFAULT_COVERAGE,
    by_class: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """Thresholds on the score, one per class (all equal unless ``by_class``), from calibration probabilities
    ``proba`` (n, n_classes) and true labels (class indices)."""
    if not 0 < coverage < 1:
        raise ValueError(f"coverage {coverage} is not between 0 and 1")
    proba = np.asarray(proba, dtype=float)
    labels = np.asarray(labels, dtype=int)
    scores = _jittered(lac_scores(proba, labels), np.random.default_rng(seed))
    n_classes = proba.shape[1]
    if not by_class:
        return np.full(n_classes, conformal_quantile(scores, coverage))
    return np.array([conformal_quantile(scores[labels == c], coverage) for c in range(n_classes)])


def prediction_sets(proba: np.ndarray, thresholds: np.ndarray, seed: int = 1) -> np.ndarray:
    """(n, n_classes) booleans: class y is in a sample's set when ``1 - p_y <= thresholds[y]``."""
    proba = np.asarray(proba, dtype=float)
    scores = _jittered(1.0 - proba, np.random.default_rng(seed))
    return scores <= np.asarray(thresholds, dtype=float)[None, :]


def out_of_fold(cv: Sequence[pd.DataFrame] | pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, proba)`` from out-of-fold frames (columns repeat, fold, row, proba): each row once, its
    probabilities averaged over the repeats that predicted it."""
    frame = cv if isinstance(cv, pd.DataFrame) else pd.concat(list(cv), ignore_index=True)
    rows = frame["row"].to_numpy(np.int64)
    proba = np.stack(frame["proba"].to_numpy()).astype(float)
    unique, inverse = np.unique(rows, return_inverse=True)
    sums = np.zeros((len(unique), proba.shape[1]))
    np.add.at(sums, inverse, proba)
    return unique, sums / np.bincount(inverse)[:, None]


def _null_pmf(m_by_group: Sequence[int], n_by_group: Sequence[int], coverage: float) -> np.ndarray | None:
    """The number of test samples covered under exchangeability: the sum over groups (one group, or one per class
    with ``by_class``) of ``BetaBinom(m, k, n + 1 - k)``; None when a group's threshold is infinite (always
    covered: nothing to test)."""
    pmf = np.ones(1)
    for m, n in zip(m_by_group, n_by_group, strict=True):
        if m == 0:
            continue
        k = _rank(n, coverage)
        if k > n:
            return None
        pmf = np.convolve(pmf, betabinom.pmf(np.arange(m + 1), m, k, n + 1 - k))
    return pmf


def _two_sided_p(pmf: np.ndarray, observed: int) -> float:
    return float(min(1.0, 2 * min(pmf[: observed + 1].sum(), pmf[observed:].sum())))


def evaluate(
    sets: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    coverage: float,
    calibration_labels: np.ndarray,
    by_class: bool = False,
) -> dict:
    """Coverage and mean set size of the sets on the test samples, overall and per true class, with the count of
    empty and ambiguous (more than one class) sets and the check against exchangeability (``coverage_p``,
    ``off_target``)."""
    sets = np.asarray(sets, dtype=bool)
    labels = np.asarray(labels, dtype=int)
    calibration_labels = np.asarray(calibration_labels, dtype=int)
    covered = sets[np.arange(len(labels)), labels]
    size = sets.sum(1)
    n_cal = len(calibration_labels)
    if by_class:
        groups_m = [int((labels == c).sum()) for c in range(len(classes))]
        groups_n = [int((calibration_labels == c).sum()) for c in range(len(classes))]
    else:
        groups_m, groups_n = [len(labels)], [n_cal]
    pmf = _null_pmf(groups_m, groups_n, coverage) if len(labels) else None
    p = _two_sided_p(pmf, int(covered.sum())) if pmf is not None else None
    per_class = {}
    for c, name in enumerate(classes):
        mask = labels == c
        per_class[str(name)] = {
            "n": int(mask.sum()),
            "n_calibration": int((calibration_labels == c).sum()),
            "coverage": float(covered[mask].mean()) if mask.any() else None,
            "mean_set_size": float(size[mask].mean()) if mask.any() else None,
        }
    return {
        "target_coverage": float(coverage),
        "score": "LAC (1 - probability of the true class)",
        "calibration": "class-conditional (Mondrian)" if by_class else "marginal",
        "calibrated_on": "out-of-fold predictions of the training split",
        "n_calibration": n_cal,
        "n": int(len(labels)),
        "coverage": float(covered.mean()) if len(labels) else None,
        "mean_set_size": float(size.mean()) if len(labels) else None,
        "n_single": int((size == 1).sum()),
        "n_empty": int((size == 0).sum()),
        "n_ambiguous": int((size > 1).sum()),
        "coverage_p": p,
        "off_target": bool(p is not None and p < OFF_TARGET_P),
        "per_class": per_class,
    }


def sets_table(
    samples: Sequence[str], labels: np.ndarray, proba: np.ndarray, sets: np.ndarray, classes
) -> pd.DataFrame:
    """One row per sample: sample, label, predicted, set (its classes joined by '|', '' when empty), set_size,
    covered (the label in the set)."""
    classes = np.asarray(classes)
    labels = np.asarray(labels, dtype=int)
    sets = np.asarray(sets, dtype=bool)
    return pd.DataFrame(
        {
            "sample": list(samples),
            "label": classes[labels],
            "predicted": classes[np.asarray(proba).argmax(1)],
            "set": ["|".join(classes[row]) for row in sets],
            "set_size": sets.sum(1),
            "covered": sets[np.arange(len(labels)), labels],
        }
    )


def conformal_sets(
    cal_proba: np.ndarray,
    cal_labels: np.ndarray,
    test_proba: np.ndarray,
    test_labels: np.ndarray,
    test_samples: Sequence[str],
    classes: Sequence[str],
    coverage: float = DEFAULT_COVERAGE,
    by_class: bool = False,
    seed: int = 0,
) -> tuple[dict, pd.DataFrame]:
    """Calibrate on (``cal_proba``, ``cal_labels``), apply to the test: (the figures of ``evaluate`` with the
    thresholds, the per-sample table of ``sets_table``)."""
    thresholds = calibrate(cal_proba, cal_labels, coverage, by_class, seed=seed)
    sets = prediction_sets(test_proba, thresholds, seed=seed + 1)
    figures = evaluate(sets, test_labels, classes, coverage, cal_labels, by_class)
    figures["thresholds"] = {
        str(name): (None if math.isinf(t) else float(t)) for name, t in zip(classes, thresholds, strict=True)
    }
    return figures, sets_table(test_samples, test_labels, test_proba, sets, classes)
