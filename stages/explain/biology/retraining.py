"""Keep and remove, then retrain: a cheap classifier on only, or without, the classes' top-k genes, scored on the
held-out test split beside random and DE genes."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from shared.errors import UserError
from shared.evaluation.baseline_models import make_baseline, small_problem_blas
from shared.logs import get_logger

from .differential import TrainingData, order

log = get_logger("stages.explain")


class Retrainer:
    """Held-out macro-F1 of the cheap model trained on a subset of genes; fits cached by gene set."""

    def __init__(self, data: TrainingData, model: str, seed: int):
        self.data, self.model, self.seed, self.cache = data, model, seed, {}
        # z-scored on the training split: the same model, and lbfgs converges in a fraction of the iterations
        mean, sd = data.x_train.mean(0), data.x_train.std(0)
        sd[sd == 0] = 1.0
        self.x_train, self.x_test = (data.x_train - mean) / sd, (data.x_test - mean) / sd

    def fit(self, genes: np.ndarray):
        """The cheap model fitted on the training split's ``genes`` (never a test value)."""
        genes = np.sort(np.asarray(genes, dtype=int))
        return make_baseline(self.model, self.seed).fit(np.ascontiguousarray(self.x_train[:, genes]), self.data.y_train)

    def score(self, genes: np.ndarray) -> float:
        """Held-out macro-F1 of ``fit(genes)`` (NaN for no genes)."""
        genes = np.sort(np.asarray(genes, dtype=int))
        key = genes.tobytes()
        if key not in self.cache:
            if not len(genes):
                self.cache[key] = float("nan")
            else:
                with small_problem_blas(self.x_train):
                    pred = self.fit(genes).predict(np.ascontiguousarray(self.x_test[:, genes]))
                self.cache[key] = float(
                    f1_score(
                        self.data.y_test, pred, average="macro", labels=np.unique(self.data.y_test), zero_division=0
                    )
                )
        return self.cache[key]


def union_top(class_scores: np.ndarray, k: int) -> np.ndarray:
    """The union of every class's top-k genes."""
    return np.unique(np.concatenate([order(s)[:k] for s in class_scores if not np.isnan(s).all()]))


def keep_remove(
    class_scores: np.ndarray, de_scores: np.ndarray, ks: list[int], retrainer: Retrainer, draws: int, seed: int
) -> pd.DataFrame:
    """Per k: held-out macro-F1 with only (keep) and without (remove) the union of the classes' top-k genes, beside
    the same number of random genes (``draws`` seeded draws: mean and sd) and the DE top-k union."""
    n = class_scores.shape[1]
    everything = retrainer.score(np.arange(n))
    rows = []
    for k in ks:
        chosen, de = union_top(class_scores, k), union_top(de_scores, k)
        rng = np.random.default_rng(seed + k)
        randoms = [rng.choice(n, len(chosen), replace=False) for _ in range(draws)]
        keep_r = [retrainer.score(r) for r in randoms]
        remove_r = [retrainer.score(np.setdiff1d(np.arange(n), r)) for r in randoms]
        keep, remove = retrainer.score(chosen), retrainer.score(np.setdiff1d(np.arange(n), chosen))
        rows.append(
            {
                "k": k,
                "n_genes_kept": len(chosen),
                "keep_f1": keep,
                "remove_f1": remove,
                "random_keep_f1": float(np.mean(keep_r)),
                "random_keep_sd": float(np.std(keep_r)),
                "random_keep_max": float(np.max(keep_r)),
                "random_remove_f1": float(np.mean(remove_r)),
                "random_remove_sd": float(np.std(remove_r)),
                "de_keep_f1": retrainer.score(de),
                "de_remove_f1": retrainer.score(np.setdiff1d(np.arange(n), de)),
                "all_genes_f1": everything,
                "remove_drop": everything - remove,
                "keep_beats_random": bool(keep > np.max(keep_r)),
            }
        )
    return pd.DataFrame(rows)


def verdict(retrain: pd.DataFrame, min_drop: float) -> dict:
    """Flags of one ranking's keep/remove table: kept genes no better than random at the smallest k; removal costing
    less than ``min_drop`` macro-F1 at every k where genes remain."""
    first = retrain.iloc[0]
    drops = retrain["remove_drop"].dropna()
    return {
        "keep_no_better_than_random": not bool(first["keep_beats_random"]),
        "removal_costs_nothing": bool(len(drops) and (drops < min_drop).all()),
    }


def usable_ks(settings, key: str, n_genes: int, model: str) -> list[int]:
    """The k values of ``explain.biology.<key>`` for a model of ``n_genes`` genes. A k larger than that is an error
    when the user set the list; from the default list such values are dropped (a small gene panel keeps working)."""
    ks = getattr(settings, key)
    ks = ks if isinstance(ks, list) else [ks]
    too_big = [k for k in ks if k > n_genes]
    if not too_big:
        return ks
    if getattr(settings, key) != type(settings).model_fields[key].get_default(call_default_factory=True):
        raise UserError(
            f"explain.biology.{key}: k = {', '.join(map(str, too_big))} is larger than the {n_genes} genes "
            f"model '{model}' reads; use values up to {n_genes}"
        )
    kept = [k for k in ks if k <= n_genes] or [n_genes]
    log.info("explain.biology.%s: %s left out (model '%s' reads %d genes)", key, too_big, model, n_genes)
    return kept
