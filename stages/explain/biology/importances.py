"""The baselines' own gene importances, refit on the whole training split: logistic-regression coefficients and
random-forest permutation importance."""

from __future__ import annotations

import numpy as np

from shared.evaluation.baseline_models import make_baseline, small_problem_blas

from .differential import TrainingData


def baseline_importances(name: str, data: TrainingData, seed: int, repeats: int) -> np.ndarray:
    """(n_classes, n_genes) per-class importances of a baseline refit on the whole training split (train_torch keeps
    no fold model): logistic-regression coefficients; random-forest permutation importance on the held-out test
    split, per class the mean fall of the true-class probability of that class's test samples when a gene's values
    are permuted across the test samples (``permutation_importance``)."""
    n_classes = len(data.classes)
    with small_problem_blas(data.x_train):
        clf = make_baseline(name, seed).fit(data.x_train, data.y_train)
    out = np.full((n_classes, len(data.genes)), np.nan)
    if name == "logistic_regression":
        coef = clf.coef_ if clf.coef_.shape[0] > 1 else np.vstack([-clf.coef_, clf.coef_])
        out[clf.classes_] = coef
        return out
    cols = {int(c): i for i, c in enumerate(clf.classes_)}
    present = np.array([c for c in range(n_classes) if (data.y_test == c).any() and c in cols], dtype=int)
    drop = permutation_importance(
        clf.predict_proba, data.x_test, data.y_test, [cols[c] for c in present], present, repeats, seed
    )
    out[present] = drop
    return out


def permutation_importance(
    predict_proba,
    x: np.ndarray,
    y: np.ndarray,
    columns: list[int],
    classes: np.ndarray,
    repeats: int,
    seed: int,
    chunk: int = 32,
) -> np.ndarray:
    """(len(classes), n_genes) mean fall, over ``repeats`` seeded permutations of one gene's values across the
    samples, of the mean probability that each class's samples get for their class (``columns``: that class's
    column of ``predict_proba``). The same quantity as scikit-learn's ``permutation_importance`` with a per-class
    scorer, but the permuted copies of ``chunk`` genes go through the model in one call: a random forest's
    per-call overhead otherwise dominates (one call per gene and repeat, 10x slower on the demo)."""
    rng = np.random.default_rng(seed)
    n, n_genes = x.shape
    masks = [y == c for c in classes]

    def score(proba: np.ndarray) -> np.ndarray:
        return np.array([proba[m, col].mean() for m, col in zip(masks, columns, strict=False)])

    base = score(predict_proba(x))
    drops = np.zeros((len(classes), n_genes))
    for _ in range(repeats):
        perms = [rng.permutation(n) for _ in range(n_genes)]
        for start in range(0, n_genes, chunk):
            genes = range(start, min(start + chunk, n_genes))
            stacked = np.repeat(x[None], len(genes), axis=0)
            for j, g in enumerate(genes):
                stacked[j, :, g] = x[perms[g], g]
            proba = predict_proba(stacked.reshape(-1, x.shape[1])).reshape(len(genes), n, -1)
            for j, g in enumerate(genes):
                drops[:, g] += base - score(proba[j])
    return drops / repeats
